/* bench_index.c -- index search speed vs FAISS, side by side in one run.

   Hamming top-10 on 1M x 256-bit codes and cosine top-10 on 100k x 2048 (fp16 and fp32
   storage), 1 query and a batch of 64, at 1 and 2 threads; Hamming range search (flat and
   MIH) and duplicate grouping on the 1M codes; memory per entry; this machine's memory read
   bandwidth measured in the same run. FAISS (tools/bench_index_faiss.py, /usr/bin/python3)
   regenerates the same data from the same splitmix64 streams and times IndexBinaryFlat and
   IndexFlatIP. Medians of >= 20 runs (single queries: 25 different queries). Prints ratios
   FAISS time / imret time (> 1 = imret faster).

   build: cc -std=c99 -O2 -fopenmp -I. bench/bench_index.c -o build/bench_index -lm
   run:   build/bench_index [--quick] [--no-faiss]       (from the repository root) */
#define _POSIX_C_SOURCE 200809L
#define IMRET_IMPLEMENTATION
#include "imret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GAMMA 0x9e3779b97f4a7c15ull
static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* element i of stream s: mix(seed_s + (i + 1) * GAMMA); floats = top 24 bits / 2^24 - 0.5 */
static uint64_t stream(uint64_t seed, uint64_t i) { return mix(seed + (i + 1) * GAMMA); }
static float sfloat(uint64_t seed, uint64_t i) { return (float)(stream(seed, i) >> 40) / 16777216.0f - 0.5f; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, dcmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- memory read bandwidth: sum a 1 GiB array (first-touched by the reading thread) ---- */
#if IMRET__X86
__attribute__((target("avx2"))) static double sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i;
    float o[8];
    for (i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    }
    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}
#endif
static double sum_any(const float *p, size_t n) {
#if IMRET__X86
    if (imret__cpu_features() & IMRET__CPU_AVX2) return sum_avx2(p, n);
#endif
    {
        double s = 0;
        size_t i;
        for (i = 0; i < n; i++) s += p[i];
        return s;
    }
}
static double membw(int threads, volatile double *sink) {
    size_t n = (size_t)1 << 28; /* 1 GiB of floats */
    float *a = (float *)malloc(n * sizeof(float));
    double best = 0;
    int rep;
    if (!a) return 0;
#if IMRET__OMP
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        size_t lo = n / (size_t)T * (size_t)t, hi = t == T - 1 ? n : n / (size_t)T * (size_t)(t + 1);
        memset(a + lo, 1, (hi - lo) * sizeof(float));
    }
#else
    memset(a, 1, n * sizeof(float));
#endif
    for (rep = 0; rep < 7; rep++) {
        double t0 = now(), s = 0, dt;
#if IMRET__OMP
#pragma omp parallel num_threads(threads) reduction(+ : s)
        {
            int t = omp_get_thread_num(), T = omp_get_num_threads();
            size_t lo = n / (size_t)T * (size_t)t, hi = t == T - 1 ? n : n / (size_t)T * (size_t)(t + 1);
            s += sum_any(a + lo, hi - lo);
        }
#else
        (void)threads;
        s = sum_any(a, n);
#endif
        dt = now() - t0;
        *sink += s;
        if (n * 4.0 / dt / 1e9 > best) best = n * 4.0 / dt / 1e9;
    }
    free(a);
    return best;
}

typedef struct { char name[64]; int threads; double ms; double bytes; } result;
static result res[64];
static int nres = 0;
static void record(const char *name, int threads, double ms, double bytes) {
    snprintf(res[nres].name, sizeof res[nres].name, "%s", name);
    res[nres].threads = threads;
    res[nres].ms = ms;
    res[nres].bytes = bytes;
    nres++;
    printf("  imret %-28s %d thr: %9.3f ms", name, threads, ms);
    if (bytes > 0) printf("  (%.1f GB/s)", bytes / (ms * 1e-3) / 1e9);
    printf("\n");
}

int main(int argc, char **argv) {
    int quick = 0, faiss = 1, a, th;
    size_t nh = 1000000, bits = 256, words = 4, nc = 100000, dim = 2048, nq = 64, k = 10, i;
    uint64_t *codes, *qcodes;
    float *vecs, *qv;
    double bw[3] = {0, 0, 0}, t0;
    volatile double sink = 0;
    imret_index_config cfg = imret_index_config_init();
    imret_index *H, *C16, *C32;
    imret_index_hit *hits;
    int reps = 25;
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--quick")) quick = 1;
        if (!strcmp(argv[a], "--no-faiss")) faiss = 0;
    }
    if (quick) { nh = 200000; nc = 20000; reps = 21; }
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("bench_index: %s, SIMD %s, OpenMP %s\n", quick ? "quick" : "full", imret_simd_name(imret_simd_detect()), IMRET__OMP ? "on" : "off");
    bw[1] = membw(1, &sink);
    bw[2] = membw(2, &sink);
    printf("memory read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (2 threads)\n", bw[1], bw[2]);

    /* data: the same streams as tools/bench_index_faiss.py */
    t0 = now();
    codes = (uint64_t *)malloc(nh * words * 8);
    qcodes = (uint64_t *)malloc(nq * words * 8);
    vecs = (float *)malloc(nc * dim * 4);
    qv = (float *)malloc(nq * dim * 4);
    hits = (imret_index_hit *)malloc(nq * k * sizeof *hits);
    for (i = 0; i < nh * words; i++) codes[i] = stream(1, i);
    for (i = 0; i < nq * words; i++) qcodes[i] = stream(2, i);
    for (i = 0; i < nc * dim; i++) vecs[i] = sfloat(3, i);
    for (i = 0; i < nq * dim; i++) qv[i] = sfloat(4, i);
    cfg.bits = bits;
    imret_index_create(&cfg, &H);
    {
        uint64_t *ids = (uint64_t *)malloc(nh * 8);
        for (i = 0; i < nh; i++) ids[i] = i;
        imret_index_add_batch(H, nh, ids, NULL, NULL, codes);
        cfg = imret_index_config_init();
        cfg.dim = dim;
        cfg.storage = IMRET_INDEX_FP16;
        imret_index_create(&cfg, &C16);
        imret_index_add_batch(C16, nc, ids, NULL, vecs, NULL);
        cfg.storage = IMRET_INDEX_FP32;
        imret_index_create(&cfg, &C32);
        imret_index_add_batch(C32, nc, ids, NULL, vecs, NULL);
        free(ids);
    }
    printf("data: %lu x %lu-bit codes, %lu x %lu floats (fp16 + fp32 indexes) built in %.1f s\n", (unsigned long)nh,
           (unsigned long)bits, (unsigned long)nc, (unsigned long)dim, now() - t0);
    printf("memory per entry: codes %lu B + id 8 B + slot/label/hash ~%lu B; fp16 vectors %lu B, fp32 %lu B\n", (unsigned long)(words * 8),
           (unsigned long)(8 + 4 + 1 + 16), (unsigned long)(dim * 2), (unsigned long)(dim * 4));

    for (th = 1; th <= 2; th++) {
        imret_search_options o = imret_search_options_init();
        double t[64];
        int r;
        o.threads = th;
        o.method = IMRET_SEARCH_FLAT;
        /* Hamming */
        for (r = 0; r < reps; r++) {
            t0 = now();
            imret_index_search_hamming(H, qcodes + (size_t)(r % (int)nq) * words, 1, k, &o, hits, NULL);
            t[r] = (now() - t0) * 1e3;
        }
        record("hamming_1q", th, median(t, reps), (double)nh * words * 8);
        for (r = 0; r < 20; r++) {
            t0 = now();
            imret_index_search_hamming(H, qcodes, nq, k, &o, hits, NULL);
            t[r] = (now() - t0) * 1e3;
        }
        record("hamming_64q", th, median(t, 20), 0);
        /* cosine */
        for (a = 0; a < 2; a++) {
            imret_index *C = a ? C32 : C16;
            char name[64];
            for (r = 0; r < reps; r++) {
                t0 = now();
                imret_index_search_cosine(C, qv + (size_t)(r % (int)nq) * dim, 1, k, &o, hits, NULL);
                t[r] = (now() - t0) * 1e3;
            }
            snprintf(name, sizeof name, "cosine_%s_1q", a ? "fp32" : "fp16");
            record(name, th, median(t, reps), (double)nc * dim * (a ? 4 : 2));
            for (r = 0; r < 20; r++) {
                t0 = now();
                imret_index_search_cosine(C, qv, nq, k, &o, hits, NULL);
                t[r] = (now() - t0) * 1e3;
            }
            snprintf(name, sizeof name, "cosine_%s_64q", a ? "fp32" : "fp16");
            record(name, th, median(t, 20), 0);
        }
    }
    /* range search and duplicate groups on the 1M codes (random codes: plant near-copies) */
    {
        imret_search_options o = imret_search_options_init();
        imret_index_results rr;
        imret_dedup_options dopt = imret_dedup_options_init();
        imret_dedup_result dr;
        double t[32];
        int r;
        size_t hitsum = 0;
        o.threads = 2;
        o.method = IMRET_SEARCH_FLAT;
        for (r = 0; r < 21; r++) {
            t0 = now();
            imret_index_range_hamming(H, qcodes + (size_t)(r % (int)nq) * words, 1, 100, &o, &rr);
            t[r] = (now() - t0) * 1e3;
            hitsum += rr.offsets[1];
            imret_index_results_free(&rr);
        }
        record("hamming_range_r100_flat", 2, median(t, 21), (double)nh * words * 8);
        t0 = now();
        imret_index_build_mih(H, 0);
        printf("  MIH tables built in %.2f s (%u-way)\n", now() - t0, H->mih ? H->mih->m : 0);
        o.method = IMRET_SEARCH_AUTO;
        for (r = 0; r < 21; r++) {
            /* queries = stored codes with 3 flipped bits: the near-duplicate lookup case */
            uint64_t q[4];
            memcpy(q, codes + (size_t)(r * 7919) * words, 32);
            q[0] ^= 0x10001;
            q[3] ^= 0x8;
            t0 = now();
            imret_index_range_hamming(H, q, 1, 8, &o, &rr);
            t[r] = (now() - t0) * 1e3;
            imret_index_results_free(&rr);
        }
        record("hamming_range_r8_mih", 2, median(t, 21), 0);
        o.method = IMRET_SEARCH_FLAT;
        for (r = 0; r < 21; r++) {
            uint64_t q[4];
            memcpy(q, codes + (size_t)(r * 7919) * words, 32);
            q[0] ^= 0x10001;
            q[3] ^= 0x8;
            t0 = now();
            imret_index_range_hamming(H, q, 1, 8, &o, &rr);
            t[r] = (now() - t0) * 1e3;
            imret_index_results_free(&rr);
        }
        record("hamming_range_r8_flat", 2, median(t, 21), (double)nh * words * 8);
        /* k-NN with the tables present (AUTO): random queries (MIH gives up, flat) and
           near-duplicate queries with k = 1 (found at radius 3) */
        o.method = IMRET_SEARCH_AUTO;
        for (r = 0; r < 21; r++) {
            t0 = now();
            imret_index_search_hamming(H, qcodes + (size_t)(r % (int)nq) * words, 1, k, &o, hits, NULL);
            t[r] = (now() - t0) * 1e3;
        }
        record("hamming_1q_auto_random", 2, median(t, 21), 0);
        for (r = 0; r < 21; r++) {
            uint64_t q[4];
            memcpy(q, codes + (size_t)(r * 7919) * words, 32);
            q[0] ^= 0x10001;
            q[3] ^= 0x8;
            t0 = now();
            imret_index_search_hamming(H, q, 1, 1, &o, hits, NULL);
            t[r] = (now() - t0) * 1e3;
        }
        record("hamming_1nn_auto_neardup", 2, median(t, 21), 0);
        /* plant 1% near-duplicates (<= 4 flipped bits) of random entries, then group at 8 bits */
        for (i = 0; i < nh / 100; i++) {
            size_t dst = (size_t)(stream(5, i) % nh), src = (size_t)(stream(6, i) % nh);
            uint64_t c[4];
            memcpy(c, codes + src * words, 32);
            c[stream(7, i) % 4] ^= (uint64_t)1 << (stream(8, i) % 64);
            c[stream(9, i) % 4] ^= (uint64_t)1 << (stream(10, i) % 64);
            imret_index_update(H, (uint64_t)dst, NULL, NULL, c);
        }
        dopt.threshold = 8;
        dopt.threads = 2;
        t0 = now();
        imret_index_dedup(H, &dopt, &dr);
        printf("  imret dedup 1M x 256 bits at <= 8 bits, 2 thr: %.2f s, %lu groups, %lu members\n", now() - t0,
               (unsigned long)dr.group_count, (unsigned long)dr.member_count);
        imret_dedup_result_free(&dr);
        (void)hitsum;
    }
    /* FAISS, same data, same machine, now */
    if (faiss) {
        char cmd[256];
        FILE *p;
        char line[512];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/bench_index_faiss.py %s", quick ? "--quick" : "");
        printf("running FAISS: %s\n", cmd);
        p = popen(cmd, "r");
        printf("\n%-24s %4s %12s %12s %10s %10s\n", "case", "thr", "imret ms", "FAISS ms", "FAISS/imret", "imret GB/s");
        while (p && fgets(line, sizeof line, p)) {
            char name[64];
            int fth;
            double fms;
            if (sscanf(line, "faiss %63s %d %lf", name, &fth, &fms) == 3) {
                for (a = 0; a < nres; a++)
                    if (!strcmp(res[a].name, name) && res[a].threads == fth) {
                        printf("%-24s %4d %12.3f %12.3f %9.2fx", name, fth, res[a].ms, fms, fms / res[a].ms);
                        if (res[a].bytes > 0)
                            printf(" %7.1f (%.0f%% of %.1f)", res[a].bytes / (res[a].ms * 1e-3) / 1e9,
                                   100.0 * res[a].bytes / (res[a].ms * 1e-3) / 1e9 / bw[fth], bw[fth]);
                        printf("\n");
                    }
            } else {
                printf("  %s", line);
            }
        }
        if (p) pclose(p);
    }
    imret_index_destroy(H);
    imret_index_destroy(C16);
    imret_index_destroy(C32);
    free(codes);
    free(qcodes);
    free(vecs);
    free(qv);
    free(hits);
    return sink == 12345.0;
}
