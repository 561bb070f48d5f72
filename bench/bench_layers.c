/* bench_layers -- per-convolution latency of one network's forward pass (through the
   IMRET_CONV_HOOK of imret.h), to see where the time of a whole forward pass goes and to
   compare two builds layer by layer (bench/ab_layers.sh). Warm: 3 forward passes first, then
   RUNS timed ones; prints each convolution's median and its GFLOP/s, then the medians of all
   convolutions together and of the whole forward pass. GFLOP/s counts the direct
   convolution's multiply-adds (Winograd layers do fewer). Wall clock: keep the machine quiet.
   usage: bench_layers MODEL.imw [THREADS=1] [RUNS=30] [SIZE=224] [fp32|int8|bf16]
          (make bench-layers: the default model at 1 and 2 threads) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void bench_hook(int end, int in_c, int out_c, int k, int stride, int h, int w);
#define IMRET_CONV_HOOK(end, in_c, out_c, k, stride, h, w) bench_hook(end, in_c, out_c, k, stride, h, w)
#define IMRET_IMPLEMENTATION
#include "imret.h"

#define MAX_LAYERS 512
#define MAX_RUNS 200

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static struct {
    int on, run, n;           /* timing this run; its index; convolutions seen in it */
    double t0;
    double ms[MAX_LAYERS][MAX_RUNS];
    double flop[MAX_LAYERS];  /* multiply-adds x 2 of each convolution */
    char shape[MAX_LAYERS][48];
} B;

static void bench_hook(int end, int in_c, int out_c, int k, int stride, int h, int w) {
    int i = B.n, oh, ow;
    if (!B.on || i >= MAX_LAYERS) return;
    if (!end) {
        B.t0 = now_s();
        return;
    }
    B.ms[i][B.run] = 1e3 * (now_s() - B.t0);
    oh = (h + 2 * (k / 2) - k) / stride + 1; /* the VGG / ResNet padding: k / 2 */
    ow = (w + 2 * (k / 2) - k) / stride + 1;
    B.flop[i] = 2.0 * in_c * k * k * (double)out_c * oh * ow;
    snprintf(B.shape[i], sizeof B.shape[i], "%d>%d %dx%d/%d %dx%d", in_c, out_c, k, k, stride, h, w);
    B.n++;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) { /* sorts v */
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    imret_model *model = NULL;
    imret_context *ctx = NULL;
    imret_model_config mc = imret_model_config_init();
    imret_context_config cc = imret_context_config_init();
    int threads = argc > 2 ? atoi(argv[2]) : 1, runs = argc > 3 ? atoi(argv[3]) : 30, size = argc > 4 ? atoi(argv[4]) : 224;
    const char *prec = argc > 5 ? argv[5] : "fp32";
    static double total[MAX_RUNS], fwd[MAX_RUNS];
    imret_tensor in, out;
    float *img;
    size_t i;
    int r, l, layers = 0;
    if (argc < 2 || threads < 1 || runs < 1 || runs > MAX_RUNS || size < 32 || size > 2048) {
        fprintf(stderr, "usage: bench_layers MODEL.imw [THREADS=1] [RUNS=30 (<= %d)] [SIZE=224] [fp32|int8|bf16]\n", MAX_RUNS);
        return 2;
    }
    if (!strcmp(prec, "int8")) mc.precision = cc.precision = IMRET_PRECISION_INT8;
    else if (!strcmp(prec, "bf16")) mc.precision = cc.precision = IMRET_PRECISION_BF16;
    else if (strcmp(prec, "fp32")) { fprintf(stderr, "bench_layers: precision must be fp32, int8 or bf16\n"); return 2; }
    cc.threads = threads;
    if (imret_model_load_file(argv[1], &mc, &model) != IMRET_OK || imret_context_create(model, &cc, &ctx) != IMRET_OK) {
        fprintf(stderr, "bench_layers: %s\n", imret_last_error());
        imret_model_free(model);
        return 1;
    }
    img = (float *)malloc((size_t)3 * size * size * sizeof(float));
    if (!img) return 1;
    for (i = 0; i < (size_t)3 * size * size; i++) img[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f; /* fixed, image-like range */
    in.c = 3; in.h = size; in.w = size; in.data = img;
    for (r = -3; r < runs; r++) {
        double t0;
        B.on = r >= 0;
        B.run = r >= 0 ? r : 0;
        B.n = 0;
        t0 = now_s();
        if (imret_forward(ctx, &in, &out, NULL) != IMRET_OK) {
            fprintf(stderr, "bench_layers: %s\n", imret_last_error());
            return 1;
        }
        if (r < 0) continue;
        fwd[r] = 1e3 * (now_s() - t0);
        if (layers && B.n != layers) { fprintf(stderr, "bench_layers: layer count changed\n"); return 1; }
        layers = B.n;
        total[r] = 0;
        for (l = 0; l < layers; l++) total[r] += B.ms[l][r];
    }
    printf("# %s, %dx%d, %s, %d thread(s), simd %s, median of %d runs (ms)\n", argv[1], size, size, prec, threads,
           imret_simd_name(imret_simd_detect()), runs);
    printf("%-4s %-26s %9s %9s\n", "#", "conv (in>out kxk/stride HxW)", "ms", "GFLOP/s");
    for (l = 0; l < layers; l++) {
        double m = median(B.ms[l], runs);
        printf("%-4d %-26s %9.3f %9.1f\n", l, B.shape[l], m, B.flop[l] / m * 1e-6);
    }
    printf("conv-total %36.3f\n", median(total, runs));
    printf("forward %39.3f\n", median(fwd, runs));
    free(img);
    imret_context_destroy(ctx);
    imret_model_free(model);
    return 0;
}
