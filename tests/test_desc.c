/* Pooling vs PyTorch implementations of the published formulas (tests/ref_desc.py):
   MAC, SPoC, GeM (p = 3 and 4.5), R-MAC (L = 3 and 1) on random feature maps of odd sizes and
   aspect ratios; max |imret - ref| <= 1e-5 (unit vectors). Also: bad options and sizes. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

static float *get(const imret__imw *w, const char *name, const imret__imw_tensor **t) {
    float *f;
    *t = imret__imw_find(w, name);
    if (!*t) { printf("FAIL: %s not in the reference\n", name); exit(1); }
    f = (float *)malloc((*t)->count * sizeof(float));
    imret__imw_to_f32(*t, f);
    return f;
}

int main(int argc, char **argv) {
    uint8_t *buf;
    size_t size;
    imret__imw w;
    int i, count, failures = 0, checks = 0;
    double worst = 0;
    char val[32];
    if (argc < 2) { fprintf(stderr, "usage: %s pooling.ref.imw\n", argv[0]); return 2; }
    if (imret__read_file(argv[1], 1 << 28, "ref", &buf, &size, NULL) || imret__imw_parse(buf, size, 1, &w)) { printf("FAIL %s\n", imret_last_error()); return 1; }
    imret__imw_get(&w, "count", val, sizeof val);
    count = atoi(val);
    for (i = 0; i < count; i++) {
        static const struct { const char *fmt; imret_pooling pool; float p; int L; } kinds[] = {
            {"mac%d", IMRET_POOL_MAC, 3, 3}, {"spoc%d", IMRET_POOL_SPOC, 3, 3}, {"gem%d", IMRET_POOL_GEM, 3, 3},
            {"gem4_%d", IMRET_POOL_GEM, 4.5f, 3}, {"rmac%d", IMRET_POOL_RMAC, 3, 3}, {"rmac1_%d", IMRET_POOL_RMAC, 3, 1}};
        char name[32];
        const imret__imw_tensor *ft, *rt;
        imret_tensor f;
        int k;
        snprintf(name, sizeof name, "fmap%d", i);
        f.data = get(&w, name, &ft);
        f.c = (int)ft->shape[0]; f.h = (int)ft->shape[1]; f.w = (int)ft->shape[2];
        for (k = 0; k < 6; k++) {
            imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
            float *ref, *out = (float *)malloc(sizeof(float) * f.c);
            double md = 0;
            int c;
            snprintf(name, sizeof name, kinds[k].fmt, i);
            ref = get(&w, name, &rt);
            dc.pooling = kinds[k].pool; dc.gem_p = kinds[k].p; dc.rmac_levels = kinds[k].L;
            if (imret_pool(&f, &dc, out, (size_t)f.c)) { printf("FAIL %s: %s\n", name, imret_last_error()); failures++; }
            for (c = 0; c < f.c; c++) if (fabs(out[c] - ref[c]) > md) md = fabs(out[c] - ref[c]);
            checks++;
            if (md > 1e-5) { failures++; printf("  FAIL %-8s %dx%dx%d max|diff| %.2e\n", name, f.c, f.h, f.w, md); }
            if (md > worst) worst = md;
            free(ref); free(out);
        }
        printf("  feature map %d: %dx%dx%d, 6 poolings compared\n", i, f.c, f.h, f.w);
        free(f.data);
    }
    { /* bad input */
        imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
        float d[4] = {1, 2, 3, 4}, out[4];
        imret_tensor f;
        f.c = 4; f.h = 1; f.w = 1; f.data = d;
        checks += 4;
        failures += imret_pool(NULL, &dc, out, 4) != IMRET_ERROR_INVALID_ARGUMENT;
        failures += imret_pool(&f, &dc, out, 3) != IMRET_ERROR_SHAPE;
        dc.gem_p = 0.0f;
        failures += imret_pool(&f, &dc, out, 4) != IMRET_ERROR_INVALID_ARGUMENT;
        dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
        dc.pooling = (imret_pooling)9;
        failures += imret_pool(&f, &dc, out, 4) != IMRET_ERROR_INVALID_ARGUMENT;
    }
    IMRET_FREE(w.t);
    free(buf);
    printf("%d checks, worst max|diff| %.2e, %d failed\n", checks, worst, failures);
    return failures ? 1 : 0;
}
