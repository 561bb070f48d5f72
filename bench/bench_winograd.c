/* bench_winograd -- direct packed GEMM vs Winograd F(4x4,3x3) per 3x3 stride-1 layer shape
   of VGG16 and ResNet-50 (224x224 and 512x512 inputs): median ms of each, the ratio, the same
   without the weight transform (a context keeps each layer's transformed weights), fused
   (each weight panel transformed just before its GEMMs, nothing kept: U NULL), and the
   Winograd error vs the direct result (max|diff| / max|out|). Decides where
   imret__conv_run sends a layer (IMRET__WG_MIN_TILES, IMRET__WG_FUSED_MIN_TILES).
   usage: bench_winograd [THREADS=1] [RUNS=9]        (make bench-winograd) */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <time.h>

static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec * 1e-6; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    static const struct { const char *net; int in_c, out_c, hw; } L[] = {
        {"vgg16 conv1_1", 3, 64, 224},    {"vgg16 conv1_2", 64, 64, 224},   {"vgg16 conv2_1", 64, 128, 112},  {"vgg16 conv2_2", 128, 128, 112},
        {"vgg16 conv3_1", 128, 256, 56},  {"vgg16 conv3_x", 256, 256, 56},  {"vgg16 conv4_1", 256, 512, 28},
        {"vgg16 conv4_x", 512, 512, 28},  {"vgg16 conv5_x", 512, 512, 14},  {"resnet50 layer1", 64, 64, 56},
        {"resnet50 layer2", 128, 128, 28}, {"resnet50 layer3", 256, 256, 14}, {"resnet50 layer4", 512, 512, 7},
        {"r50@512 layer3", 256, 256, 32}, {"r50@512 layer4", 512, 512, 16},
    };
    int threads = argc > 1 ? atoi(argv[1]) : 1, runs = argc > 2 ? atoi(argv[2]) : 9, li;
    imret__kernels kern = imret__kernels_for(IMRET_SIMD_AUTO);
    if (!kern.nr) { printf("no SIMD micro-kernel on this CPU\n"); return 0; }
    printf("%-16s %5s %5s %4s  %9s %9s %6s  %9s %6s  %9s %6s  %9s\n", "layer", "in", "out", "hw", "direct ms", "wino ms", "ratio",
           "kept U ms", "ratio", "fused ms", "ratio", "wino err");
    for (li = 0; li < (int)(sizeof L / sizeof L[0]); li++) {
        int ic = L[li].in_c, oc = L[li].out_c, hw = L[li].hw, K = ic * 9, r;
        size_t nin = (size_t)ic * hw * hw, nout = (size_t)oc * hw * hw, i;
        float *x = malloc(nin * 4), *wt = malloc((size_t)oc * K * 4), *wp = calloc(imret__wp_floats(oc, K), 4);
        float *bias = malloc(oc * 4), *o1 = malloc(nout * 4), *o2 = malloc(nout * 4);
        float *pack = malloc(imret__gemm_plan(oc, (long)hw * hw, K, threads, NULL, NULL) * 4), *U = malloc(imret__wg_u_floats(oc, ic) * 4);
        float *ws = malloc(imret__wg_plan(oc, ic, hw, hw, kern.nr, threads, 1, NULL, NULL) * 4);
        double td[64], tw[64], tu[64], tf[64], maxd = 0, maxo = 0;
        imret__epilogue ep;
        imret__bsrc src;
        for (i = 0; i < nin; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        for (i = 0; i < (size_t)oc * K; i++) wt[i] = (float)((i * 40503u) % 1000) / 500.0f - 1.0f;
        for (i = 0; i < (size_t)oc; i++) bias[i] = 0.01f * (float)i;
        imret__pack_rows(wp, K, 0, oc, wt);
        ep.bias = bias; ep.residual = NULL; ep.relu = 1;
        imret__bsrc_init(&src, x, ic, hw, hw, 3, 1, 1, hw);
        if (runs > 64) runs = 64;
        for (r = -1; r < runs; r++) { /* one warm-up each, interleaved */
            double t0 = now_ms();
            imret__conv_gemm_fast(&kern, oc, (long)hw * hw, K, wp, &src, o1, &ep, pack, threads);
            if (r >= 0) td[r] = now_ms() - t0;
            t0 = now_ms();
            imret__wg_transform_weights(&kern, oc, ic, wp, U, threads);
            if (r >= 0) tu[r] = now_ms() - t0;
            imret__conv_winograd(&kern, oc, ic, hw, hw, 1, x, o2, &ep, U, wp, ws, threads);
            if (r >= 0) tw[r] = now_ms() - t0;
            t0 = now_ms();
            imret__conv_winograd(&kern, oc, ic, hw, hw, 1, x, o2, &ep, NULL, wp, ws, threads);
            if (r >= 0) tf[r] = now_ms() - t0;
        }
        for (i = 0; i < nout; i++) {
            double d = fabs((double)o1[i] - o2[i]);
            if (d > maxd) maxd = d;
            if (fabs(o1[i]) > maxo) maxo = fabs(o1[i]);
        }
        qsort(td, runs, sizeof *td, cmp);
        qsort(tw, runs, sizeof *tw, cmp);
        qsort(tu, runs, sizeof *tu, cmp);
        qsort(tf, runs, sizeof *tf, cmp);
        printf("%-16s %5d %5d %4d  %9.3f %9.3f %6.2f  %9.3f %6.2f  %9.3f %6.2f  %9.2e\n", L[li].net, ic, oc, hw, td[runs / 2],
               tw[runs / 2], tw[runs / 2] / td[runs / 2], tw[runs / 2] - tu[runs / 2], (tw[runs / 2] - tu[runs / 2]) / td[runs / 2],
               tf[runs / 2], tf[runs / 2] / td[runs / 2], maxd / maxo);
        fflush(stdout);
        free(x); free(wt); free(wp); free(bias); free(o1); free(o2); free(pack); free(U); free(ws);
    }
    return 0;
}
