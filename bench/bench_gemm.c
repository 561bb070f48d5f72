/* bench_gemm -- fraction of this core's peak FMA rate reached by the packed convolution GEMM
   (imret__conv_gemm_fast, 1 thread) on the 1x1 and im2col layer shapes of ResNet-50 and
   VGG16 at 224x224. Rates are per CPU second of this thread (CLOCK_THREAD_CPUTIME_ID), so
   they stay meaningful when other processes share the cores; the peak is an FMA-chain loop
   timed the same way in the same run (see tools/peak_fma.c for the wall-clock version).
   usage: bench_gemm [RUNS=7]                                      (make bench-gemm)
   BENCH_GEMM_PLAIN_B=1: B gathered from the input as it is, not from phase or padded planes
   (imret__bsrc_mode_f32) as the forward pass does; padded planes also select the direct kernel
   (imret__gemm_direct) where it applies. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <time.h>

static double cpu_s(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

#if IMRET__X86
/* 12 independent FMA chains (2 FMA/cycle x 4-5 cycles latency is covered) at the width of the
   dispatched micro-kernel, so %peak compares like with like. */
#define CHAINS(T, FMA, SET1, ADD, STORE)                                                    \
    T a0 = SET1(1.0f), a1 = SET1(1.1f), a2 = SET1(1.2f), a3 = SET1(1.3f), a4 = SET1(1.4f),  \
      a5 = SET1(1.5f), a6 = SET1(1.6f), a7 = SET1(1.7f), a8 = SET1(1.8f), a9 = SET1(1.9f),  \
      a10 = SET1(2.0f), a11 = SET1(2.1f), m = SET1(0.999999f), c = SET1(1e-7f);             \
    long i;                                                                                  \
    float out[16];                                                                           \
    for (i = 0; i < iters; i++) { /* named variables: an array may be kept in memory */     \
        a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);     \
        a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);     \
        a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c); \
    }                                                                                        \
    a0 = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                  \
    a0 = ADD(a0, ADD(ADD(a8, a9), ADD(a10, a11)));                                           \
    STORE(out, a0);                                                                          \
    return out[0];
IMRET__AVX2 static float fma_chains256(long iters) { CHAINS(__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_add_ps, _mm256_storeu_ps) }
IMRET__AVX512 static float fma_chains512(long iters) { CHAINS(__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_add_ps, _mm512_storeu_ps) }
#endif

int main(int argc, char **argv) {
    static const struct { const char *name; int in_c, out_c, hw, k, stride, pad; } L[] = {
        {"r50 stem 7x7/2", 3, 64, 224, 7, 2, 3},     {"r50 l1 1x1 64>64", 64, 64, 56, 1, 1, 0},
        {"r50 l1 1x1 64>256", 64, 256, 56, 1, 1, 0}, {"r50 l1 1x1 256>64", 256, 64, 56, 1, 1, 0},
        {"r50 l1 3x3 64", 64, 64, 56, 3, 1, 1},      {"r50 l2 1x1 512>128", 512, 128, 28, 1, 1, 0},
        {"r50 l2 1x1 128>512", 128, 512, 28, 1, 1, 0}, {"r50 l2 3x3/2 128", 128, 128, 56, 3, 2, 1},
        {"r50 l3 1x1 1024>256", 1024, 256, 14, 1, 1, 0}, {"r50 l3 1x1 256>1024", 256, 1024, 14, 1, 1, 0},
        {"r50 l3 3x3 256", 256, 256, 14, 3, 1, 1},   {"r50 l4 1x1 2048>512", 2048, 512, 7, 1, 1, 0},
        {"r50 l4 1x1 512>2048", 512, 2048, 7, 1, 1, 0}, {"r50 l4 3x3 512", 512, 512, 7, 3, 1, 1},
        {"r50 l2 1x1/2 256>512", 256, 512, 56, 1, 2, 0}, {"r50 l3 3x3/2 256", 256, 256, 28, 3, 2, 1},
        {"r50 l4 3x3/2 512", 512, 512, 14, 3, 2, 1},  {"vgg conv3 3x3 256", 256, 256, 56, 3, 1, 1},
    };
    int runs = argc > 1 ? atoi(argv[1]) : 7, li, r;
    imret__kernels kern = imret__kernels_for(IMRET_SIMD_AUTO);
    double peak = 0, tot_flop = 0, tot_s = 0;
    if (!kern.nr) { printf("no SIMD micro-kernel on this CPU\n"); return 0; }
    if (runs > 64) runs = 64;
#if IMRET__X86
    {
        long iters = 20000000;
        int w = kern.level == IMRET_SIMD_AVX512 ? 16 : 8;
        double t0 = cpu_s();
        volatile float sink = w == 16 ? fma_chains512(iters) : fma_chains256(iters);
        (void)sink;
        peak = 12.0 * w * 2 * iters / (cpu_s() - t0) / 1e9;
    }
#endif
    printf("simd %s, micro-tile 8x%d, peak FMA (%d-lane chains, 1 thread, per CPU second) %.1f GFLOP/s\n", imret_simd_name(kern.level), kern.nr, kern.level == IMRET_SIMD_AVX512 ? 16 : 8, peak);
    printf("%-22s %6s %6s %6s  %8s %8s %6s\n", "layer", "M", "K", "N", "ms(cpu)", "GFLOP/s", "%peak");
    for (li = 0; li < (int)(sizeof L / sizeof L[0]); li++) {
        int ic = L[li].in_c, oc = L[li].out_c, hw = L[li].hw, k = L[li].k, K = ic * k * k;
        int ow = imret__out_dim(hw, k, L[li].stride, L[li].pad);
        long N = (long)ow * ow;
        size_t nin = (size_t)ic * hw * hw, i;
        float *x = malloc(nin * 4), *wt = malloc((size_t)oc * K * 4), *wp = calloc(imret__wp_floats(oc, K), 4);
        float *bias = calloc(oc, 4), *o = malloc((size_t)oc * N * 4), *pack = malloc(imret__gemm_plan(oc, N, K, 1, NULL, NULL) * 4);
        double t[64], flop = 2.0 * oc * K * N;
        imret__epilogue ep;
        imret__bsrc src;
        float *planes; /* phase or padded planes (imret__bsrc_mode_f32) */
        int mode;
        for (i = 0; i < nin; i++) x[i] = (float)(i % 7) * 0.1f;
        for (i = 0; i < (size_t)oc * K; i++) wt[i] = (float)(i % 5) * 0.1f;
        imret__pack_rows(wp, K, 0, oc, wt);
        ep.bias = bias; ep.residual = NULL; ep.relu = 1;
        mode = getenv("BENCH_GEMM_PLAIN_B") ? 0 : imret__bsrc_mode_f32(&kern, oc, k, L[li].stride, ow, N); /* as imret__conv_run */
        planes = mode ? malloc(imret__bsrc_floats(mode, ic, hw, hw, L[li].pad) * 4 + 4) : NULL;
        for (r = -1; r < runs; r++) {
            double t0 = cpu_s();
            imret__bsrc_init(&src, x, ic, hw, hw, k, L[li].stride, L[li].pad, ow);
            imret__bsrc_prepare(&src, mode, planes, 1);
            imret__conv_gemm_fast(&kern, oc, N, K, wp, &src, o, &ep, pack, 1);
            if (r >= 0) t[r] = cpu_s() - t0;
        }
        qsort(t, runs, sizeof *t, cmp);
        tot_flop += flop; tot_s += t[runs / 2];
        printf("%-22s %6d %6d %6ld  %8.3f %8.1f %5.0f%%\n", L[li].name, oc, K, N, t[runs / 2] * 1e3, flop / t[runs / 2] / 1e9,
               peak > 0 ? 100 * flop / t[runs / 2] / 1e9 / peak : 0);

        free(x); free(wt); free(wp); free(bias); free(o); free(pack); free(planes);
    }
    printf("all layers above: %.1f GFLOP/s = %.0f%% of peak\n", tot_flop / tot_s / 1e9, peak > 0 ? 100 * tot_flop / tot_s / 1e9 / peak : 0);
    return 0;
}
