/* bench_int8 -- the int8 micro-kernels side by side on ResNet-50 layer shapes (1 thread).

   usage: bench_int8 [RUNS]
   For each shape: the median time of imret__conv_i8_fast with every int8 kernel this CPU
   can run (AVX2 vpmaddubsw, AVX-VNNI ymm vpdpbusd, AVX-512 VNNI; NEON sdot on aarch64),
   interleaved run by run, and each kernel's speed relative to the first (AVX2). Inputs and
   weights are random; the outputs are checked equal across kernels (they are exact). The
   dispatcher's choice per level is printed at the end. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    static const int shapes[][6] = { /* in_c, out_c, k, stride, h (= w) */
        {64, 64, 3, 1, 56}, {256, 64, 1, 1, 56}, {128, 128, 3, 1, 28}, {512, 128, 1, 1, 28},
        {256, 256, 3, 1, 14}, {1024, 256, 1, 1, 14}, {512, 512, 3, 1, 7}, {2048, 512, 1, 1, 7}};
    imret__kernels8 ks[4];
    int nk = imret__kernels8_all(ks), runs = argc > 1 ? atoi(argv[1]) : 15, si, i, r;
    if (!nk) { printf("bench_int8: no int8 SIMD kernel on this CPU (the scalar oracle runs)\n"); return 0; }
    printf("int8 convolution, 1 thread, median of %d interleaved runs, ms (speed vs %s)\n", runs, ks[0].name);
    printf("%-26s", "layer (in,out,k,HxW)");
    for (i = 0; i < nk; i++) printf(" %18s", ks[i].name);
    printf("\n");
    for (si = 0; si < (int)(sizeof shapes / sizeof shapes[0]); si++) {
        int ic = shapes[si][0], oc = shapes[si][1], k = shapes[si][2], st = shapes[si][3], h = shapes[si][4], pad = k / 2;
        int kg = imret__conv_kg(ic, k), oh = imret__out_dim(h, k, st, pad);
        size_t hw = (size_t)h * h, npix = (size_t)oh * oh, j, per = (size_t)ic * k * k;
        float *wf = (float *)malloc(sizeof(float) * per * oc), *bias = (float *)calloc((size_t)oc, sizeof(float));
        float *out[4], *pack = (float *)malloc(sizeof(float) * (size_t)kg * imret__i8_nc(kg, 16) * 4), *dq;
        uint8_t *xq = (uint8_t *)malloc((size_t)(ic + 3) / 4 * 4 * hw);
        float *planes = (float *)malloc(sizeof(float) * imret__i8_planes_floats(4, ic, k, st, pad, h, h) + 4); /* as the forward pass */
        int8_t *wq;
        double *t = (double *)malloc(sizeof(double) * runs * nk), med[4];
        imret__epilogue ep;
        char label[64];
        for (j = 0; j < per * oc; j++) wf[j] = (float)((int)(rand() % 2001) - 1000) * 1e-3f;
        for (j = 0; j < (size_t)(ic + 3) / 4 * 4 * hw; j++) xq[j] = (uint8_t)(rand() % 128);
        if (!imret__quantise_weights(wf, oc, ic, k, 0.01f, &wq, &dq)) return 1;
        ep.bias = bias; ep.residual = NULL; ep.relu = 1;
        for (i = 0; i < nk; i++) {
            free(pack);
            pack = (float *)malloc(sizeof(float) * (size_t)kg * imret__i8_nc(kg, ks[i].nr));
            out[i] = (float *)malloc(sizeof(float) * oc * npix);
            imret__conv_i8_fast(&ks[i], 4, wq, dq, ic, oc, k, st, pad, xq, h, h, out[i], &ep, pack, planes, 1); /* warm-up */
        }
        free(pack);
        pack = (float *)malloc(sizeof(float) * (size_t)kg * imret__i8_nc(kg, 16) * 4); /* nc shrinks as nr grows */
        for (r = 0; r < runs; r++)
            for (i = 0; i < nk; i++) {
                double t0 = now();
                imret__conv_i8_fast(&ks[i], 4, wq, dq, ic, oc, k, st, pad, xq, h, h, out[i], &ep, pack, planes, 1);
                t[i * runs + r] = now() - t0;
            }
        snprintf(label, sizeof label, "%d,%d,%dx%d,%dx%d", ic, oc, k, k, h, h);
        printf("%-26s", label);
        for (i = 0; i < nk; i++) {
            qsort(t + i * runs, (size_t)runs, sizeof(double), cmpd);
            med[i] = t[i * runs + runs / 2];
            printf(" %9.3f (%5.2fx)", 1e3 * med[i], med[0] / med[i]);
            if (memcmp(out[i], out[0], sizeof(float) * oc * npix)) printf(" DIFFERS");
        }
        printf("\n");
        for (i = 0; i < nk; i++) free(out[i]);
        free(wf); free(bias); free(pack); free(planes); free(xq); IMRET_FREE(wq); IMRET_FREE(dq); free(t);
    }
    printf("dispatch: avx2 level -> %s, avx512 level -> %s, auto -> %s\n", imret__kernels8_for(IMRET_SIMD_AVX2, 0).name,
           imret__kernels8_for(IMRET_SIMD_AVX512, 0).name, imret__kernels8_for(IMRET_SIMD_AUTO, 0).name);
    return 0;
}
