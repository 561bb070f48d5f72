/* bench_pool -- max pool: the scalar oracle (imret__maxpool) vs the row form of the dispatched
   ISA (imret__maxpool_run), interleaved, on the pool shapes of VGG16 and ResNet-50 at 224x224.
   Medians of RUNS of each, 1 thread, wall time.
   usage: bench_pool [RUNS=21]                                               (make bench-pool) */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <time.h>

static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec * 1e-6; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    static const struct { const char *name; int c, hw, k, stride, pad; } L[] = {
        {"vgg16 pool1 2x2/2", 64, 224, 2, 2, 0},  {"vgg16 pool2 2x2/2", 128, 112, 2, 2, 0},
        {"vgg16 pool3 2x2/2", 256, 56, 2, 2, 0},  {"vgg16 pool4 2x2/2", 512, 28, 2, 2, 0},
        {"vgg16 pool5 2x2/2", 512, 14, 2, 2, 0},  {"resnet stem 3x3/2", 64, 112, 3, 2, 1},
    };
    int runs = argc > 1 ? atoi(argv[1]) : 21, li, r, i;
    imret__kernels kern = imret__kernels_for(IMRET_SIMD_AUTO);
    double tot[2] = {0, 0};
    printf("simd %s, 1 thread, medians of %d interleaved runs\n", imret_simd_name(kern.level), runs);
    printf("%-20s %10s %10s %8s\n", "layer", "oracle ms", "row ms", "ratio");
    for (li = 0; li < (int)(sizeof L / sizeof L[0]); li++) {
        int c = L[li].c, hw = L[li].hw, o = imret__out_dim(hw, L[li].k, L[li].stride, L[li].pad);
        size_t n = (size_t)c * hw * hw;
        float *x = malloc(n * 4), *y = malloc((size_t)c * o * o * 4);
        double *t[2];
        t[0] = malloc(runs * sizeof(double)); t[1] = malloc(runs * sizeof(double));
        for (i = 0; i < (int)n; i++) x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;
        for (r = 0; r < runs; r++) {
            double t0 = now_ms();
            imret__maxpool(x, c, hw, hw, L[li].k, L[li].stride, L[li].pad, y, o, o, 1);
            t[0][r] = now_ms() - t0;
            t0 = now_ms();
            imret__maxpool_run(&kern, x, c, hw, hw, L[li].k, L[li].stride, L[li].pad, y, o, o, 1);
            t[1][r] = now_ms() - t0;
        }
        qsort(t[0], runs, sizeof(double), cmp);
        qsort(t[1], runs, sizeof(double), cmp);
        printf("%-20s %10.3f %10.3f %7.2fx\n", L[li].name, t[0][runs / 2], t[1][runs / 2], t[1][runs / 2] / t[0][runs / 2]);
        tot[0] += t[0][runs / 2];
        tot[1] += t[1][runs / 2];
        free(x); free(y); free(t[0]); free(t[1]);
    }
    printf("%-20s %10.3f %10.3f %7.2fx\n", "all", tot[0], tot[1], tot[1] / tot[0]);
    return 0;
}
