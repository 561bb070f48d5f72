/* Reduced precision at model level: descriptors of real images computed from reduced-
   precision weight files (f16 / bf16 / int8 storage, dequantised at load) and with the
   int8 inference path, compared with the fp32 descriptors of the original file.

   usage: test_quant [--size N] REF.imw SPEC... -- IMAGE...
     SPEC = LABEL:FILE:PRECISION:MIN_COSINE:MIN_TOP10_AGREEMENT
            PRECISION fp32 | int8 (imret_context_config.precision)
   For every image: cosine(descriptor, fp32 descriptor) >= MIN_COSINE (worst case reported).
   Retrieval: each image queries the others (cosine, top 10); the fraction of the fp32 top-10
   list found in the reduced-precision top-10 list, averaged over queries, must be >=
   MIN_TOP10_AGREEMENT. GeM (p = 3), longest side N (default 224), one thread each.

   usage: test_quant --corrupt INT8.imw
   int8 weight-file corruptions (missing/mis-shaped/non-positive scales, -128, i8 on a
   BatchNorm tensor, bad act_scale) must be refused with a message naming the tensor. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

#define MAXIMG 256
#define TOPK 10

static int failures;

static float *describe_all(const char *path, imret_precision prec, int size, char **imgs, int n, int *dim) {
    imret_model *m;
    imret_context *ctx;
    imret_context_config cc = imret_context_config_init();
    imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
    imret_model_info info;
    float *d;
    int i;
    if (imret_model_load_file(path, NULL, &m)) { printf("FAIL load %s: %s\n", path, imret_last_error()); exit(1); }
    imret_model_get_info(m, &info);
    cc.threads = 1;
    cc.precision = prec;
    if (imret_context_create(m, &cc, &ctx)) { printf("FAIL context %s: %s\n", path, imret_last_error()); exit(1); }
    dc.longest_side = size;
    *dim = info.feature_channels;
    d = (float *)malloc(sizeof(float) * (size_t)n * *dim);
    for (i = 0; i < n; i++) {
        imret_image img;
        if (imret_image_load_file(imgs[i], NULL, &img) ||
            imret_describe(ctx, &img, &dc, d + (size_t)i * *dim, (size_t)*dim)) {
            printf("FAIL %s on %s: %s\n", path, imgs[i], imret_last_error());
            exit(1);
        }
        imret_image_free(&img);
    }
    imret_context_destroy(ctx);
    imret_model_free(m);
    return d;
}

static double dot(const float *a, const float *b, int n) {
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* top-k of query q among the others, by cosine, ties by index */
static void topk(const float *d, int n, int dim, int q, int *out) {
    double best[TOPK];
    int k = n - 1 < TOPK ? n - 1 : TOPK, i, j, filled = 0;
    for (i = 0; i < n; i++) {
        double s;
        if (i == q) continue;
        s = dot(d + (size_t)q * dim, d + (size_t)i * dim, dim);
        if (filled == k && s <= best[k - 1]) continue;
        j = filled < k ? filled++ : k - 1;
        while (j > 0 && best[j - 1] < s) { best[j] = best[j - 1]; out[j] = out[j - 1]; j--; }
        best[j] = s;
        out[j] = i;
    }
}

static int corrupt_tests(const char *path);

int main(int argc, char **argv) {
    char *imgs[MAXIMG];
    const char *specs[16];
    int nimg = 0, nspec = 0, size = 224, a = 1, dim, i, s;
    const char *ref;
    float *refd;
    if (argc == 3 && !strcmp(argv[1], "--corrupt")) return corrupt_tests(argv[2]);
    if (a + 1 < argc && !strcmp(argv[a], "--size")) { size = atoi(argv[a + 1]); a += 2; }
    if (a >= argc) { fprintf(stderr, "usage: test_quant [--size N] REF.imw SPEC... -- IMAGE...\n"); return 2; }
    ref = argv[a++];
    for (; a < argc && strcmp(argv[a], "--"); a++) if (nspec < 16) specs[nspec++] = argv[a];
    for (a++; a < argc; a++) if (nimg < MAXIMG) imgs[nimg++] = argv[a];
    if (nimg < TOPK + 1 || !nspec) { fprintf(stderr, "test_quant: need >= %d images and a spec\n", TOPK + 1); return 2; }
    refd = describe_all(ref, IMRET_PRECISION_FP32, size, imgs, nimg, &dim);
    printf("%d images, GeM, longest side %d, reference %s (fp32)\n", nimg, size, ref);
    for (s = 0; s < nspec; s++) {
        char label[64], file[1024], prec[16];
        double min_cos, min_agree, worst = 2.0, mean = 0.0, agree = 0.0;
        int worst_i = 0, dim2, ok;
        float *d;
        if (sscanf(specs[s], "%63[^:]:%1023[^:]:%15[^:]:%lf:%lf", label, file, prec, &min_cos, &min_agree) != 5) {
            fprintf(stderr, "bad spec %s\n", specs[s]);
            return 2;
        }
        d = describe_all(file, !strcmp(prec, "int8") ? IMRET_PRECISION_INT8 : IMRET_PRECISION_FP32, size, imgs, nimg, &dim2);
        if (dim2 != dim) { printf("FAIL %s: dimension %d vs %d\n", label, dim2, dim); failures++; continue; }
        for (i = 0; i < nimg; i++) {
            double c = dot(d + (size_t)i * dim, refd + (size_t)i * dim, dim);
            mean += c / nimg;
            if (c < worst) { worst = c; worst_i = i; }
        }
        for (i = 0; i < nimg; i++) {
            int t0[TOPK], t1[TOPK], x, y, hit = 0, k = nimg - 1 < TOPK ? nimg - 1 : TOPK;
            topk(refd, nimg, dim, i, t0);
            topk(d, nimg, dim, i, t1);
            for (x = 0; x < k; x++)
                for (y = 0; y < k; y++) hit += t0[x] == t1[y];
            agree += (double)hit / k / nimg;
        }
        ok = worst >= min_cos && agree >= min_agree;
        printf("  %-16s %-5s cosine to fp32: mean %.6f, worst %.6f (%s) [>= %.4f]; top-%d agreement %.2f %% [>= %.0f %%] %s\n",
               label, prec, mean, worst, imgs[worst_i], min_cos, TOPK, 100 * agree, 100 * min_agree, ok ? "ok" : "FAIL");
        if (!ok) failures++;
        free(d);
    }
    free(refd);
    printf("%s\n", failures ? "FAIL" : "all ok");
    return failures != 0;
}

/* ---- int8 weight-file corruptions ---- */
static uint8_t *orig;
static size_t orig_size;

static size_t record_of(const uint8_t *b, const char *name) {
    uint32_t hlen = imret__rd32(b + 12), n = imret__rd32(b + 16), i;
    size_t table = (32 + hlen + 7) / 8 * 8;
    for (i = 0; i < n; i++)
        if (!strcmp((const char *)b + table + 96 * i, name)) return table + 96 * i;
    fprintf(stderr, "tensor %s not in the test file\n", name);
    exit(2);
}

static void expect(const char *what, uint8_t *b, imret_result want, const char *needle) {
    imret_model *m = NULL;
    imret_result r;
    int ok;
    imret__wr32(b + 20, imret__crc32(0, b + 24, orig_size - 24)); /* re-seal: the deeper check must catch it */
    r = imret_model_load_memory(b, orig_size, NULL, &m);
    ok = r == want && !m && strstr(imret_last_error(), needle);
    printf("  %-38s -> %-24s \"%s\" %s\n", what, imret_result_string(r), imret_last_error(), ok ? "ok" : "FAIL");
    if (!ok) failures++;
    if (m) imret_model_free(m);
    free(b);
}

static uint8_t *dup0(void) {
    uint8_t *b = (uint8_t *)malloc(orig_size);
    memcpy(b, orig, orig_size);
    return b;
}

static int corrupt_tests(const char *path) {
    int mapped = 0;
    imret_model *m;
    uint8_t *b;
    size_t r, s;
    float f;
    if (imret__read_file(path, (size_t)1 << 30, "test", &orig, &orig_size, &mapped)) { printf("FAIL %s\n", imret_last_error()); return 1; }
    if (imret_model_load_memory(orig, orig_size, NULL, &m)) { printf("FAIL valid int8 file: %s\n", imret_last_error()); return 1; }
    imret_model_free(m);
    printf("int8 weight-file corruptions of %s:\n", path);
    /* rename the scale tensor: missing */
    b = dup0(); r = record_of(b, "layer1.0.conv1.weight.scale"); b[r + 20] = 'X';
    expect("scale tensor missing", b, IMRET_ERROR_MISSING, "layer1.0.conv1.weight.scale");
    /* scale with one dimension too many */
    b = dup0(); r = record_of(b, "layer1.0.conv1.weight.scale");
    imret__wr32(b + r + 52, 2); imret__wr32(b + r + 56, imret__rd32(b + r + 56) / 2); imret__wr32(b + r + 60, 2);
    expect("scale tensor mis-shaped", b, IMRET_ERROR_SHAPE, "one scale per output channel");
    /* a zero, a negative and a NaN scale */
    b = dup0(); r = record_of(b, "layer1.0.conv1.weight.scale"); s = (size_t)imret__rd64(b + r + 72);
    f = 0.0f; memcpy(b + s + 4, &f, 4);
    expect("zero scale", b, IMRET_ERROR_FORMAT, "layer1.0.conv1.weight.scale[1] = 0 is not");
    b = dup0(); f = -0.5f; memcpy(b + s, &f, 4);
    expect("negative scale", b, IMRET_ERROR_FORMAT, "[0] = -0.5 is not a positive scale");
    b = dup0(); memcpy(b + s, "\x00\x00\xc0\x7f", 4);
    expect("NaN scale", b, IMRET_ERROR_FORMAT, "NaN");
    /* -128 in the weights */
    b = dup0(); r = record_of(b, "layer2.0.conv2.weight"); b[imret__rd64(b + r + 72) + 5] = 0x80;
    expect("int8 weight -128", b, IMRET_ERROR_FORMAT, "-128");
    /* a bias declared i8 (no scale possible) */
    b = dup0(); r = record_of(b, "fc.bias"); imret__wr32(b + r + 48, 4);
    imret__wr64(b + r + 80, imret__rd64(b + r + 80) / 4);
    expect("i8 bias", b, IMRET_ERROR_UNSUPPORTED, "fc.bias");
    free(orig);
    printf("%s\n", failures ? "FAIL" : "all ok");
    return failures != 0;
}
