/* Parity of the forward pass against PyTorch / TF.js reference activations.

   usage: test_parity MODEL.imw REF.imw [REF.imw ...]
   Each REF file (written by tests/ref_torch.py or tests/ref_default_model.py, never by
   imret) holds the network input and the reference output of every stage: "stem",
   "stage1".."stage4" / "block1".."block4", "features", "pooled", "logits". The test feeds the
   stored input to imret, compares every stage the reference has, and requires
   max|imret - ref| <= tol * max|ref| per stage (tol = 1e-4, or IMRET_PARITY_TOL).
   The model file is mapped (the default load); IMRET_LOAD=read reads it into memory instead.
   Every stage in the reference must be produced by imret.
   Built with -DIMRET_USE_CBLAS and -Wl,--wrap=cblas_sgemm (make's build/test_parity_cblas,
   OpenBLAS's cblas.h), it also counts the sgemm calls and fails when no layer made one. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

#ifdef IMRET_USE_CBLAS
static long sgemm_calls;
void __real_cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
                        float alpha, const float *a, blasint lda, const float *b, blasint ldb, float beta, float *c, blasint ldc);
void __wrap_cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
                        float alpha, const float *a, blasint lda, const float *b, blasint ldb, float beta, float *c, blasint ldc);
void __wrap_cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
                        float alpha, const float *a, blasint lda, const float *b, blasint ldb, float beta, float *c, blasint ldc) {
    sgemm_calls++;
    __real_cblas_sgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

typedef struct stage_check {
    const imret__imw *ref;
    int seen[16];
    double worst_rel;
    int failed;
    double tol;
} stage_check;

static void on_stage(void *user, const char *name, const imret_tensor *t) {
    stage_check *sc = (stage_check *)user;
    const imret__imw_tensor *r = imret__imw_find(sc->ref, name);
    size_t n = (size_t)t->c * t->h * t->w, i;
    float *ref;
    double maxref = 0.0, maxdiff = 0.0;
    if (!r) return; /* stage not recorded in this reference */
    sc->seen[r - sc->ref->t] = 1;
    if (r->count != n) {
        printf("  %-9s FAIL shape: imret %dx%dx%d, reference has %lu values\n", name, t->c, t->h, t->w, (unsigned long)r->count);
        sc->failed = 1;
        return;
    }
    ref = (float *)malloc(n * sizeof(float));
    if (!ref || imret__imw_to_f32(r, ref) != IMRET_OK) { printf("  %-9s FAIL cannot read reference\n", name); sc->failed = 1; free(ref); return; }
    for (i = 0; i < n; i++) {
        double d = fabs((double)t->data[i] - ref[i]);
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
        if (d > maxdiff || d != d) maxdiff = d != d ? INFINITY : d;
    }
    {
        double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
        int ok = rel <= sc->tol;
        printf("  %-9s %dx%dx%d  max|diff| %.3g  max|ref| %.3g  rel %.2e  %s\n", name, t->c, t->h, t->w, maxdiff, maxref, rel,
               ok ? "ok" : "FAIL");
        if (!ok) sc->failed = 1;
        if (rel > sc->worst_rel) sc->worst_rel = rel;
    }
    free(ref);
}

/* The features of x again on ctx (it now keeps the transformed Winograd weights of the
   layers it ran) and on a fresh context whose max_workspace_bytes leaves no room to keep
   them (every call transforms into the workspace): both bit-identical. Returns 1 on failure. */
static int repeat_check(const imret_model *model, imret_context *ctx, const imret_tensor *x) {
    imret_context_config cc = imret_context_config_init();
    imret_context *c2 = NULL;
    imret_tensor f;
    float *a = NULL, *b = NULL;
    size_t n = 0;
    int ok = 0, kept = ctx->wg_n;
    if (imret_forward(ctx, x, &f, NULL) == IMRET_OK) {
        n = (size_t)f.c * f.h * f.w;
        a = (float *)malloc(n * sizeof(float));
        memcpy(a, f.data, n * sizeof(float));
        cc.threads = ctx->threads;
        cc.max_workspace_bytes = ctx->ws_floats * sizeof(float); /* the arena, nothing more */
        if (imret_forward(ctx, x, &f, NULL) == IMRET_OK && !memcmp(a, f.data, n * sizeof(float)) &&
            imret_context_create(model, &cc, &c2) == IMRET_OK && imret_forward(c2, x, &f, NULL) == IMRET_OK &&
            c2->wg_n == 0 && (size_t)f.c * f.h * f.w == n) {
            b = f.data;
            ok = !memcmp(a, b, n * sizeof(float));
        }
    }
    printf("  repeated forward (%d layers with kept Winograd weights) and a context keeping none: %s\n", kept,
           ok ? "bit-identical" : "FAIL");
    imret_context_destroy(c2);
    free(a);
    return !ok;
}

int main(int argc, char **argv) {
    imret_model *model;
    imret_context *ctx;
    imret_context_config cc = imret_context_config_init();
    imret_model_config mc = imret_model_config_init();
    int a, failures = 0;
    double tol = getenv("IMRET_PARITY_TOL") ? atof(getenv("IMRET_PARITY_TOL")) : 1e-4;
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL.imw REF.imw...\n", argv[0]); return 2; }
    if (getenv("IMRET_LOAD") && !strcmp(getenv("IMRET_LOAD"), "read")) mc.use_mmap = 0; /* default: mapped */
    if (imret_model_load_file(argv[1], &mc, &model)) { printf("FAIL load %s: %s\n", argv[1], imret_last_error()); return 1; }
    if (getenv("IMRET_THREADS")) cc.threads = atoi(getenv("IMRET_THREADS"));
    if (imret_context_create(model, &cc, &ctx)) { printf("FAIL context: %s\n", imret_last_error()); return 1; }
    for (a = 2; a < argc; a++) {
        uint8_t *buf;
        size_t size;
        int mapped = 0;
        imret__imw ref;
        const imret__imw_tensor *in, *lg;
        imret_tensor x;
        stage_check sc;
        imret_forward_options opt;
        float *logits = NULL;
        uint32_t i;
        imret_model_info info;
        imret_result rc;
        imret_model_get_info(model, &info);
        if (imret__read_file(argv[a], (size_t)1 << 30, "reference", &buf, &size, &mapped) ||
            imret__imw_parse(buf, size, 1, &ref)) {
            printf("FAIL reference %s: %s\n", argv[a], imret_last_error());
            return 1;
        }
        in = imret__imw_find(&ref, "input");
        if (!in || in->ndim != 3 || in->shape[0] != 3) { printf("FAIL %s has no 3xHxW input\n", argv[a]); return 1; }
        x.c = 3; x.h = (int)in->shape[1]; x.w = (int)in->shape[2];
        x.data = (float *)malloc(in->count * sizeof(float));
        imret__imw_to_f32(in, x.data);
        memset(&sc, 0, sizeof sc);
        sc.ref = &ref;
        sc.tol = tol;
        opt.on_stage = on_stage;
        opt.user = &sc;
        printf("%s on %s (%s, input %dx%d, %d threads, tolerance %.0e x max|ref|):\n", info.arch_name, argv[a],
               imret_simd_name(imret_simd_detect()), x.w, x.h, ctx->threads, tol);
        lg = imret__imw_find(&ref, "logits");
        if (lg && info.num_classes) {
            logits = (float *)malloc(sizeof(float) * info.num_classes);
            rc = imret_forward_logits(ctx, &x, logits, (size_t)info.num_classes, &opt);
        } else {
            imret_tensor f;
            rc = imret_forward(ctx, &x, &f, &opt);
        }
        if (rc) { printf("FAIL forward: %s\n", imret_last_error()); sc.failed = 1; }
        else sc.failed |= repeat_check(model, ctx, &x);
        for (i = 0; i < ref.n; i++)
            if (!sc.seen[i] && strcmp(ref.t[i].name, "input") && !(lg == &ref.t[i] && !info.num_classes)) {
                printf("  %-9s FAIL: in the reference but not produced by imret\n", ref.t[i].name);
                sc.failed = 1;
            }
        printf("  worst relative error %.2e -> %s\n", sc.worst_rel, sc.failed ? "FAIL" : "ok");
        failures += sc.failed;
        free(logits);
        free(x.data);
        IMRET_FREE(ref.t);
        imret__release_file(buf, size, mapped);
    }
    imret_context_destroy(ctx);
    imret_model_free(model);
#ifdef IMRET_USE_CBLAS
    printf("IMRET_USE_CBLAS: %ld cblas_sgemm calls\n", sgemm_calls);
    if (!sgemm_calls) { printf("FAIL: no layer ran on cblas_sgemm\n"); failures++; }
#endif
    return failures ? 1 : 0;
}
