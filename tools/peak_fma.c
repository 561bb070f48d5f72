/* peak_fma -- this machine's fp32 FMA throughput per core (the physical limit quoted next to
   convolution speeds by make bench). Runs 12 independent FMA chains per vector width and
   reports GFLOP/s for one thread and for all threads (OpenMP).  cc -O2 -fopenmp */
#include <stdio.h>
#include <time.h>
#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

#define CHAINS(T, FMA, SET1, ADD, W)                                                        \
    T a0 = SET1(1.0f), a1 = SET1(1.1f), a2 = SET1(1.2f), a3 = SET1(1.3f), a4 = SET1(1.4f),  \
      a5 = SET1(1.5f), a6 = SET1(1.6f), a7 = SET1(1.7f), a8 = SET1(1.8f), a9 = SET1(1.9f),  \
      a10 = SET1(2.0f), a11 = SET1(2.1f), m = SET1(0.999999f), c = SET1(1e-7f);             \
    long i;                                                                                  \
    for (i = 0; i < iters; i++) {                                                            \
        a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);     \
        a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);     \
        a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c); \
    }                                                                                        \
    a0 = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                  \
    a0 = ADD(a0, ADD(ADD(a8, a9), ADD(a10, a11)));                                           \
    { float out[16]; memcpy(out, &a0, sizeof a0); return out[0]; }

#include <string.h>
__attribute__((target("avx512f"))) static float run512(long iters) { CHAINS(__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_add_ps, 16) }
__attribute__((target("avx2,fma"))) static float run256(long iters) { CHAINS(__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_add_ps, 8) }

static double measure(int width, int threads) {
    long iters = 20000000;
    double best = 0;
    int rep;
    for (rep = 0; rep < 5; rep++) {
        double t0 = now(), t;
        volatile float sink = 0;
#pragma omp parallel num_threads(threads)
        { float r = width == 16 ? run512(iters) : run256(iters); sink += r; }
        t = now() - t0;
        t = 2.0 * 12 * width * (double)iters * threads / t / 1e9;
        if (t > best) best = t;
    }
    return best;
}

int main(void) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        printf("peak fp32 FMA  avx512  1 thread: %7.1f GFLOP/s   %d threads: %7.1f GFLOP/s\n", measure(16, 1), threads, measure(16, threads));
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        printf("peak fp32 FMA  avx2    1 thread: %7.1f GFLOP/s   %d threads: %7.1f GFLOP/s\n", measure(8, 1), threads, measure(8, threads));
    return 0;
}
