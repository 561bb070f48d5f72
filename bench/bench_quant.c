/* bench_quant -- ResNet-50 forward latency at fp32 / bf16-stored / int8 and weight file sizes.

   usage: bench_quant FP32.imw BF16.imw INT8_CALIBRATED.imw [RUNS] [THREADS] [SIDE]
   Batch 1, SIDE x SIDE input (default 224), THREADS threads (default 1), RUNS timed runs of
   each (default 25) after 3 warm-ups, interleaved round by round so machine load hits all
   alike; prints medians and minima of wall time, the median process CPU time per run (with
   more than one thread it sums the threads), the int8 speed-up, the load average, and ncnn's
   published ResNet-50 figures (one Xeon thread) for context only. bf16 storage is computed
   in fp32 (dequantised at load), so its latency equals fp32's: it is listed to show that;
   the "bf16" row is IMRET_PRECISION_BF16, labelled with its kernel: avx512-bf16 (vdpbf16ps)
   or emulated (inputs rounded, fp32 kernels: without AVX512_BF16, or on Intel CPUs, see
   imret__bf16_native). On a CPU with AVX512_BF16 a fifth row runs the other of the two
   (IMRET_BF16=native or emulated while its model and context are made). */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static double loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf", &l) != 1) l = -1; fclose(f); }
    return l;
}

int main(int argc, char **argv) {
#define NP 5
    const char *labels[NP] = {"fp32", "bf16 storage", "bf16", "int8", "bf16"};
    char bf16_label[32], other_label[48];
    imret_precision prec[NP] = {IMRET_PRECISION_FP32, IMRET_PRECISION_FP32, IMRET_PRECISION_BF16, IMRET_PRECISION_INT8,
                                IMRET_PRECISION_BF16};
    int file_of[NP] = {1, 2, 2, 3, 2};
    int np = imret_simd_detect() == IMRET_SIMD_AVX512 && (imret__cpu_features() & IMRET__CPU_BF16) ? 5 : 4;
    const char *other = imret__bf16_native() ? "emulated" : "native";
    imret_model *m[NP];
    imret_context *ctx[NP];
    imret_tensor x, f;
    double *t[NP], *c[NP], med[NP], cmed[NP], l0, l1;
    int runs = argc > 4 ? atoi(argv[4]) : 25, threads = argc > 5 ? atoi(argv[5]) : 1, side = argc > 6 ? atoi(argv[6]) : 224, i, r;
    size_t j;
    if (argc < 4) { fprintf(stderr, "usage: bench_quant FP32.imw BF16.imw INT8.imw [RUNS] [THREADS] [SIDE]\n"); return 2; }
    x.c = 3; x.h = x.w = side;
    x.data = (float *)malloc(sizeof(float) * 3 * side * side);
    for (j = 0; j < (size_t)3 * side * side; j++) x.data[j] = (float)((j * 2654435761u >> 7) % 256) - 110.0f;
    for (i = 0; i < np; i++) {
        imret_context_config cc = imret_context_config_init();
        int bad;
        cc.threads = threads;
        cc.precision = prec[i];
        if (i == 4) setenv("IMRET_BF16", other, 1); /* the model keeps bf16 panels, the context takes the kernel, by it */
        bad = imret_model_load_file(argv[file_of[i]], NULL, &m[i]) || imret_context_create(m[i], &cc, &ctx[i]);
        if (i == 4) unsetenv("IMRET_BF16");
        if (bad) {
            fprintf(stderr, "bench_quant: %s: %s\n", argv[file_of[i]], imret_last_error());
            return 1;
        }
        t[i] = (double *)malloc(sizeof(double) * runs);
        c[i] = (double *)malloc(sizeof(double) * runs);
        for (r = 0; r < 3; r++) imret_forward(ctx[i], &x, &f, NULL);
    }
    snprintf(bf16_label, sizeof bf16_label, "bf16 %s", ctx[2]->kb.name);
    labels[2] = bf16_label;
    if (np == 5) {
        snprintf(other_label, sizeof other_label, "bf16 %s (IMRET_BF16=%s)", ctx[4]->kb.name, other);
        labels[4] = other_label;
    }
    l0 = loadavg();
    for (r = 0; r < runs; r++)
        for (i = 0; i < np; i++) {
            double t0 = now(), c0 = cpu();
            imret_forward(ctx[i], &x, &f, NULL);
            t[i][r] = now() - t0;
            c[i][r] = cpu() - c0;
        }
    l1 = loadavg();
    printf("ResNet-50 (Keras default model) forward, %dx%d, batch 1, %d thread(s), %d interleaved runs, SIMD %s\n", side, side,
           threads, runs, imret_simd_name(imret_simd_detect()));
    printf("load average before/after: %.2f / %.2f (if above the core count, other processes were competing: wall\n"
           "times are then inflated; the process CPU time per run is less affected but still shares caches)\n", l0, l1);
    printf("%-36s %10s %10s %9s %14s %9s %9s\n", "precision", "median ms", "min ms", "vs fp32", "CPU ms median", "vs fp32", "file MB");
    for (i = 0; i < np; i++) {
        struct stat st;
        qsort(t[i], (size_t)runs, sizeof(double), cmpd);
        qsort(c[i], (size_t)runs, sizeof(double), cmpd);
        med[i] = t[i][runs / 2];
        cmed[i] = c[i][runs / 2];
        stat(argv[file_of[i]], &st);
        printf("%-36s %10.1f %10.1f %8.2fx %14.1f %8.2fx %9.1f\n", labels[i], 1e3 * med[i], 1e3 * t[i][0], med[0] / med[i],
               1e3 * cmed[i], cmed[0] / cmed[i], st.st_size / 1e6);
    }
    printf("context only (other machine, other model build): ncnn ResNet-50 on one Xeon thread: fp32 39.1 ms, int8 23.5 ms (1.66x)\n");
    for (i = 0; i < np; i++) { imret_context_destroy(ctx[i]); imret_model_free(m[i]); free(t[i]); free(c[i]); }
    free(x.data);
    return 0;
}
