/* membw -- this machine's memory read bandwidth (the physical limit quoted next to the
   index/search speeds and the forward-pass numbers by make bench).

   usage: membw [MiB=1024] [REPS=7]
   Sums a MiB-sized float array (1 GiB by default, far beyond any cache) with 16 independent
   vector accumulators, on 1 thread and on every OpenMP thread (each summing its own slice,
   first-touched by the same thread), and prints the best of REPS passes:

     membw read  1 thread: 43.10 GB/s   2 threads: 61.20 GB/s   (1024 MiB, best of 7)

   GB = 1e9 bytes.  cc -O2 -fopenmp tools/membw.c -o build/membw */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MEMBW_X86 1
#endif

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

/* portable sum: 16 accumulators so the loop is load-bound, not add-latency-bound */
static float sum_plain(const float *p, size_t n) {
    float a[16] = {0};
    size_t i, j;
    for (i = 0; i + 16 <= n; i += 16)
        for (j = 0; j < 16; j++) a[j] += p[i + j];
    for (j = 1; j < 16; j++) a[0] += a[j];
    for (; i < n; i++) a[0] += p[i];
    return a[0];
}

#ifdef MEMBW_X86
__attribute__((target("avx2"))) static float sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i;
    float out[8], s = 0;
    for (i = 0; i + 64 <= n; i += 64) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
        a4 = _mm256_add_ps(a4, _mm256_loadu_ps(p + i + 32));
        a5 = _mm256_add_ps(a5, _mm256_loadu_ps(p + i + 40));
        a6 = _mm256_add_ps(a6, _mm256_loadu_ps(p + i + 48));
        a7 = _mm256_add_ps(a7, _mm256_loadu_ps(p + i + 56));
    }
    a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                       _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    _mm256_storeu_ps(out, a0);
    for (i = 0; i < 8; i++) s += out[i];
    for (i = n & ~(size_t)63; i < n; i++) s += p[i];
    return s;
}
#endif

static int use_avx2;
static float sum_any(const float *p, size_t n) {
#ifdef MEMBW_X86
    if (use_avx2) return sum_avx2(p, n);
#endif
    return sum_plain(p, n);
}

/* best bandwidth (GB/s) of reps passes over a[0..n) split across `threads` threads */
static double measure(const float *a, size_t n, int threads, int reps, volatile float *sink) {
    double best = 0;
    int r;
    for (r = 0; r < reps; r++) {
        double t0 = now(), t;
        float total = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            int id = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t lo = n / nt * id, hi = id == nt - 1 ? n : n / nt * (id + 1);
            total += sum_any(a + lo, hi - lo);
        }
#else
        (void)threads;
        total = sum_any(a, n);
#endif
        t = now() - t0;
        *sink += total;
        t = (double)n * sizeof(float) / t / 1e9;
        if (t > best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024, n;
    int reps = argc > 2 ? atoi(argv[2]) : 7, threads = 1;
    float *a;
    volatile float sink = 0;
    double bw1, bwn;
    if (mib < 1 || reps < 1) { fprintf(stderr, "usage: %s [MiB=1024] [REPS=7]\n", argv[0]); return 1; }
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
#ifdef MEMBW_X86
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2");
#endif
    n = mib * 1024 * 1024 / sizeof(float);
    a = (float *)malloc(n * sizeof(float));
    if (!a) { fprintf(stderr, "membw: cannot allocate %lu MiB\n", (unsigned long)mib); return 2; }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    { /* first touch by the thread that reads the slice in the multi-thread pass */
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo = n / nt * id, hi = id == nt - 1 ? n : n / nt * (id + 1), i;
        for (i = lo; i < hi; i++) a[i] = (float)(i & 1023) * (1.0f / 1024);
    }
#else
    { size_t i; for (i = 0; i < n; i++) a[i] = (float)(i & 1023) * (1.0f / 1024); }
#endif
    bw1 = measure(a, n, 1, reps, &sink);
    bwn = measure(a, n, threads, reps, &sink);
    printf("membw read  1 thread: %.2f GB/s   %d threads: %.2f GB/s   (%lu MiB, best of %d, %s)\n", bw1, threads, bwn,
           (unsigned long)mib, reps, use_avx2 ? "avx2" : "plain C");
    free(a);
    return sink == 12345.0f ? 3 : 0;
}
