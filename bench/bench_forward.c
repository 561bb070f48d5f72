/* bench_forward -- median latency of imret's forward pass (batch 1).
   usage: bench_forward MODEL.imw [SIZE=224] [THREADS=1] [RUNS=20] [logits|features]
   Prints one line: model size threads simd median_ms min_ms gflops. The input is random; the
   FLOP count is measured by a dry walk of the same network (2 x multiply-adds).
   With IMRET_BENCH_JSON=1 in the environment it also prints one line "json {...}" with every
   timed run (ms) and its start (CLOCK_MONOTONIC ms), the process CPU time of the timed runs, its peak RSS (VmHWM) and a summary of the output (count,
   sum, L2 norm, first 8 values) -- read by bench/bench_forward.py. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <time.h>
#include <sys/resource.h>

static double cpu_ms(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-3;
}

/* a field of /proc/self/status in kB (VmHWM = peak RSS of this process image), 0 if unknown */
static long status_kb(const char *key) {
    char line[256];
    long v = 0;
    size_t n = strlen(key);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') { v = atol(line + n + 1); break; }
    fclose(f);
    return v;
}

static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec * 1e-6; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

static double g_flops;
static void count(void *u, const char *stage, const imret_tensor *t) { (void)u; (void)stage; (void)t; }

/* multiply-adds of the trunk at h x w (convs only), computed from the model tables */
static double trunk_macs(const imret_model *m, int h, int w) {
    double macs = 0;
    int i, b, s, oh, ow;
#define CONV(cv, hh, ww) (oh = imret__out_dim(hh, (cv)->k, (cv)->stride, (cv)->pad), ow = imret__out_dim(ww, (cv)->k, (cv)->stride, (cv)->pad), \
                          macs += (double)(cv)->out_c * (cv)->in_c * (cv)->k * (cv)->k * oh * ow)
    if (m->is_vgg) {
        for (i = 0; i < m->vgg_n; i++) {
            if (m->vgg_plan[i] < 0) { h /= 2; w /= 2; continue; }
            CONV(&m->convs[m->vgg_plan[i]], h, w);
        }
    } else {
        CONV(&m->stem, h, w); h = imret__out_dim(oh, 3, 2, 1); w = imret__out_dim(ow, 3, 2, 1);
        for (b = 0, s = 0; s < 4; s++)
            for (i = 0; i < m->stage_blocks[s]; i++, b++) {
                const imret__block *k = &m->blocks[b];
                int h1, w1;
                CONV(&k->c1, h, w); h1 = oh; w1 = ow;
                if (k->has_down) CONV(&k->down, h, w);
                CONV(&k->c2, h1, w1);
                if (m->bottleneck) { h1 = oh; w1 = ow; CONV(&k->c3, h1, w1); }
                h = oh; w = ow;
            }
    }
    return macs;
}

int main(int argc, char **argv) {
    imret_model *m;
    imret_context *ctx;
    imret_context_config cc = imret_context_config_init();
    int size = argc > 2 ? atoi(argv[2]) : 224, runs = argc > 4 ? atoi(argv[4]) : 20, i, logits = argc > 5 && !strcmp(argv[5], "logits");
    imret_tensor x, f;
    double *t, *t_start, macs, cpu0 = 0, cpu1 = 0;
    float *out = NULL;
    imret_model_info info;
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL.imw [size] [threads] [runs] [logits|features]\n", argv[0]); return 1; }
    cc.threads = argc > 3 ? atoi(argv[3]) : 1;
    if (imret_model_load_file(argv[1], NULL, &m) || imret_context_create(m, &cc, &ctx)) { fprintf(stderr, "%s\n", imret_last_error()); return 2; }
    imret_model_get_info(m, &info);
    x.c = 3; x.h = x.w = size;
    x.data = (float *)malloc(sizeof(float) * 3 * size * size);
    for (i = 0; i < 3 * size * size; i++) x.data[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    if (logits) out = (float *)malloc(sizeof(float) * info.num_classes);
    t = (double *)malloc(sizeof(double) * runs);
    t_start = (double *)malloc(sizeof(double) * runs);
    (void)count; (void)g_flops;
    for (i = -2; i < runs; i++) { /* 2 warm-up runs */
        double t0 = now_ms();
        imret_result r = logits ? imret_forward_logits(ctx, &x, out, info.num_classes, NULL) : imret_forward(ctx, &x, &f, NULL);
        if (r) { fprintf(stderr, "%s\n", imret_last_error()); return 2; }
        if (i >= 0) { t[i] = now_ms() - t0; t_start[i] = t0; }
        if (i == -1) cpu0 = cpu_ms();
    }
    cpu1 = cpu_ms();
    if (getenv("IMRET_BENCH_JSON")) {
        const float *y = logits ? out : f.data;
        size_t n = logits ? (size_t)info.num_classes : (size_t)f.c * f.h * f.w, k;
        double sum = 0, l2 = 0;
        for (k = 0; k < n; k++) { sum += y[k]; l2 += (double)y[k] * y[k]; }
        printf("json {\"times\": [");
        for (i = 0; i < runs; i++) printf("%s%.4f", i ? ", " : "", t[i]);
        printf("], \"starts\": [");
        for (i = 0; i < runs; i++) printf("%s%.3f", i ? ", " : "", t_start[i]);
        printf("], \"cpu_ms\": %.3f, \"vmhwm_kb\": %ld, \"threads\": %d, \"simd\": \"%s\", \"out\": {\"n\": %lu, \"sum\": %.9g, \"l2\": %.9g, \"head\": [",
               cpu1 - cpu0, status_kb("VmHWM"), ctx->threads, imret_simd_name(ctx->kern.level), (unsigned long)n, sum, sqrt(l2));
        for (k = 0; k < n && k < 8; k++) printf("%s%.9g", k ? ", " : "", y[k]);
        printf("]}}\n");
    }
    qsort(t, runs, sizeof *t, cmp);
    macs = trunk_macs(m, size, size);
    printf("%-16s %4d %2d %-7s median %8.2f ms  min %8.2f ms  %6.1f GFLOP/s (trunk %.2f GFLOP)\n", info.arch_name, size, ctx->threads,
           imret_simd_name(ctx->kern.level), t[runs / 2], t[0], 2 * macs / t[runs / 2] / 1e6, 2 * macs / 1e9);
    return 0;
}
