/* Reduced precision at model level: descriptors of real images computed from reduced-
   precision weight files (f16 / bf16 / int8 storage, dequantised at load) and with the
   int8 inference path, compared with the fp32 descriptors of the original file.

   usage: test_quant [--size N] REF.imw SPEC... -- IMAGE...
     SPEC = LABEL:FILE:PRECISION:MIN_COSINE:MIN_TOP10_AGREEMENT
            PRECISION fp32 | int8 | bf16 (imret_context_config.precision)
   For every image: cosine(descriptor, fp32 descriptor) >= MIN_COSINE (worst case reported).
   Retrieval: each image queries the others (cosine, top 10); the fraction of the fp32 top-10
   list found in the reduced-precision top-10 list, averaged over queries, must be >=
   MIN_TOP10_AGREEMENT. GeM (p = 3), longest side N (default 224), one thread each.

   usage: test_quant --kernels
   The int8 convolution on awkward sizes (channels, kernel 1/3, stride, padding, tiny and odd
   images): the scalar oracle vs an independent brute force over integer weights/inputs made
   here, every SIMD micro-kernel the CPU has vs the scalar oracle (bit-identical: the sums
   are exact integers and the epilogue does the same float operations), the AVX2 input
   quantiser vs the scalar one, and 1 vs 2 threads. Then the native bf16 convolution
   (AVX512_BF16; skipped with a message on other CPUs) vs a double-precision brute force over
   the same bf16 weights and bf16-rounded inputs (bound 1e-5 of the largest output: only the
   fp32 summation order differs), its AVX-512 input pairing vs the scalar one and vs
   imret__bf16_round, and 1 vs 2 threads (run even where BF16 precision is emulated by
   default, on Intel: IMRET_BF16=native for that test).

   usage: test_quant --bf16-path
   Prints the path BF16 precision takes here: native (vdpbf16ps) or emulated.

   usage: test_quant --lean INT8_CALIBRATED.imw BF16.imw FP32.imw IMAGE...
   Models loaded for one precision (imret_model_config.precision): the heap they hold vs the
   same file loaded for every precision (counted by tests/alloc_hook.h: int8 <= 0.30x, bf16
   with AVX512_BF16 <= 0.40x), descriptors bit-identical to the same precision on the full
   model, and every use they cannot serve refused with IMRET_ERROR_UNSUPPORTED (other context
   precisions, calibration, a file without what the precision needs, bf16 below AVX-512).

   usage: test_quant --corrupt INT8_CALIBRATED.imw [UNCALIBRATED.imw]
   int8 weight-file corruptions (missing/mis-shaped/non-positive scales, -128, i8 on a
   bias, bad or incomplete act_max tensors) must be refused with a message naming the
   tensor; an int8 context on an uncalibrated model is refused. */
#include "alloc_hook.h" /* heap bytes held by a model (--lean) */
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

static int corrupt_tests(const char *path, const char *plain);
static int lean_tests(char **argv, int argc);
static int kernel_tests(void);
static int bf16_kernel_tests(void);

int main(int argc, char **argv) {
    char *imgs[MAXIMG];
    const char *specs[16];
    int nimg = 0, nspec = 0, size = 224, a = 1, dim, i, s;
    const char *ref;
    float *refd;
    if (argc >= 3 && !strcmp(argv[1], "--corrupt")) return corrupt_tests(argv[2], argc > 3 ? argv[3] : NULL);
    if (argc >= 6 && !strcmp(argv[1], "--lean")) return lean_tests(argv + 2, argc - 2);
    if (argc == 2 && !strcmp(argv[1], "--bf16-path")) {
        printf("%s\n", imret__kernels8_for(IMRET_SIMD_AUTO, 1).nr ? "native" : "emulated");
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "--kernels")) return kernel_tests() | bf16_kernel_tests() | (failures != 0);
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
        d = describe_all(file, !strcmp(prec, "int8") ? IMRET_PRECISION_INT8 : !strcmp(prec, "bf16") ? IMRET_PRECISION_BF16 : IMRET_PRECISION_FP32,
                         size, imgs, nimg, &dim2);
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

static int corrupt_tests(const char *path, const char *plain) {
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
    /* a bad activation scale */
    b = dup0(); r = record_of(b, "layer3.1.conv2.act_max"); s = (size_t)imret__rd64(b + r + 72);
    f = -1.0f; memcpy(b + s, &f, 4);
    expect("negative act_max", b, IMRET_ERROR_FORMAT, "layer3.1.conv2.act_max = -1 is not a positive");
    /* calibration must cover every quantised convolution */
    b = dup0(); r = record_of(b, "layer2.3.conv3.act_max"); memcpy(b + r, "layer2.3.conv3.act_maX", 22);
    expect("one act_max misnamed", b, IMRET_ERROR_FORMAT, "layer2.3.conv3.act_maX is not part of");
    b = dup0(); r = record_of(b, "layer2.3.conv3.act_max"); memcpy(b + r, "conv1.act_max\0\0\0\0\0\0\0\0\0", 22);
    expect("act_max on the fp32 stem", b, IMRET_ERROR_FORMAT, "conv1.act_max is not part of");
    b = dup0(); imret__wr32(b + 16, imret__rd32(b + 16) - 1); /* drop the last record (requantise appends act_maxs) */
    expect("last act_max dropped", b, IMRET_ERROR_MISSING, "47 of the 48 quantisable convolutions");
    /* int8 precision on a model without activation scales */
    if (plain) {
        imret_context *ctx = NULL;
        imret_context_config cc = imret_context_config_init();
        imret_result rr;
        int ok;
        cc.precision = IMRET_PRECISION_INT8;
        if (imret_model_load_file(plain, NULL, &m)) { printf("FAIL %s\n", imret_last_error()); return 1; }
        rr = imret_context_create(m, &cc, &ctx);
        ok = rr == IMRET_ERROR_UNSUPPORTED && !ctx && strstr(imret_last_error(), "activation scales");
        printf("  %-38s -> %-24s \"%s\" %s\n", "int8 context, uncalibrated model", imret_result_string(rr), imret_last_error(), ok ? "ok" : "FAIL");
        failures += !ok;
        cc.precision = IMRET_PRECISION_BF16;
        rr = imret_context_create(m, &cc, &ctx);
        ok = rr == IMRET_ERROR_UNSUPPORTED && !ctx && strstr(imret_last_error(), "bf16 values");
        printf("  %-38s -> %-24s \"%s\" %s\n", "bf16 context, int8 weights", imret_result_string(rr), imret_last_error(), ok ? "ok" : "FAIL");
        failures += !ok;
        imret_model_free(m);
    }
    imret__release_file(orig, orig_size, mapped);
    printf("%s\n", failures ? "FAIL" : "all ok");
    return failures != 0;
}

/* ---- models loaded for one precision ---- */
static void check(const char *what, int ok, const char *detail) {
    printf("  %-52s %s%s%s\n", what, ok ? "ok" : "FAIL", detail ? "  " : "", detail ? detail : "");
    failures += !ok;
}

static imret_result load_rc;

/* Load path for precision `only`; *held = heap bytes the model holds. NULL (status in
   load_rc) on failure. */
static imret_model *load_for(const char *path, imret_precision only, size_t *held) {
    imret_model_config mc = imret_model_config_init();
    imret_model *m = NULL;
    size_t before = hook_live;
    mc.precision = only;
    if ((load_rc = imret_model_load_file(path, &mc, &m)) != IMRET_OK) return NULL;
    *held = hook_live - before;
    return m;
}

/* Descriptors of n images with a context of precision prec (and simd level) on m; NULL and
   the status in *rc when the context is refused. */
static float *describe_on(const imret_model *m, imret_precision prec, imret_simd simd, char **imgs, int n,
                          imret_result *rc) {
    imret_context *ctx = NULL;
    imret_context_config cc = imret_context_config_init();
    imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
    imret_model_info info;
    float *d;
    int i;
    imret_model_get_info(m, &info);
    cc.threads = 1;
    cc.precision = prec;
    cc.simd = simd;
    if ((*rc = imret_context_create(m, &cc, &ctx)) != IMRET_OK) return NULL;
    dc.longest_side = 128;
    d = (float *)calloc((size_t)n * info.feature_channels, sizeof(float));
    for (i = 0; i < n; i++) {
        imret_image img;
        if ((*rc = imret_image_load_file(imgs[i], NULL, &img)) != IMRET_OK) break;
        *rc = imret_describe(ctx, &img, &dc, d + (size_t)i * info.feature_channels, (size_t)info.feature_channels);
        imret_image_free(&img);
        if (*rc) break;
    }
    imret_context_destroy(ctx);
    if (*rc) { free(d); return NULL; }
    return d;
}

/* The same descriptors from the full model and the one loaded for prec only. */
static void lean_same(const char *label, const imret_model *full, const imret_model *lean, imret_precision prec,
                      char **imgs, int n) {
    imret_result r1, r2;
    imret_model_info info;
    float *a = describe_on(full, prec, IMRET_SIMD_AUTO, imgs, n, &r1), *b = describe_on(lean, prec, IMRET_SIMD_AUTO, imgs, n, &r2);
    char detail[640];
    imret_model_get_info(full, &info);
    snprintf(detail, sizeof detail, "(%d images, %s)", n, a && b ? "compared" : imret_last_error());
    check(label, a && b && !memcmp(a, b, sizeof(float) * (size_t)n * info.feature_channels), detail);
    free(a);
    free(b);
}

static void refused(const char *what, imret_result r, const char *needle) {
    char detail[600];
    snprintf(detail, sizeof detail, "-> %s \"%s\"", imret_result_string(r), imret_last_error());
    check(what, r == IMRET_ERROR_UNSUPPORTED && strstr(imret_last_error(), needle) != NULL, detail);
}

static int lean_tests(char **argv, int argc) {
    const char *int8cal = argv[0], *bf16 = argv[1], *fp32 = argv[2];
    char **imgs = argv + 3, detail[640];
    int n = argc - 3, native = imret__kernels8_for(IMRET_SIMD_AUTO, 1).nr > 0;
    size_t held_full, held_lean;
    imret_model *full, *lean, *m;
    imret_context *ctx = NULL;
    imret_context_config cc = imret_context_config_init();
    imret_result r;
    float mx[64];
    hook_reset(0);
    printf("models loaded for one precision (%d images, longest side 128):\n", n);
    /* int8 */
    full = load_for(int8cal, IMRET_PRECISION_FP32, &held_full);
    lean = load_for(int8cal, IMRET_PRECISION_INT8, &held_lean);
    if (!full || !lean) { printf("FAIL load %s: %s\n", int8cal, imret_last_error()); return 1; }
    snprintf(detail, sizeof detail, "(%.1f MB vs %.1f MB: %.2fx)", held_lean / 1e6, held_full / 1e6, (double)held_lean / held_full);
    check("int8: heap held <= 0.30x the full model", held_lean <= 0.30 * held_full, detail);
    lean_same("int8: descriptors == int8 context on the full model", full, lean, IMRET_PRECISION_INT8, imgs, n);
    describe_on(lean, IMRET_PRECISION_FP32, IMRET_SIMD_AUTO, imgs, 1, &r);
    refused("int8 model: fp32 context refused", r, "loaded for int8 only");
    describe_on(lean, IMRET_PRECISION_BF16, IMRET_SIMD_AUTO, imgs, 1, &r);
    refused("int8 model: bf16 context refused", r, "loaded for int8 only");
    cc.precision = IMRET_PRECISION_INT8;
    cc.threads = 1;
    if (imret_context_create(lean, &cc, &ctx)) { printf("FAIL int8 context: %s\n", imret_last_error()); return 1; }
    {
        imret_tensor t;
        float *x = (float *)calloc(3 * 64 * 64, sizeof(float));
        t.c = 3; t.h = 64; t.w = 64; t.data = x;
        refused("int8 model: calibration refused", imret_calibrate_forward(ctx, &t, mx, 64), "without fp32 weights");
        free(x);
    }
    imret_context_destroy(ctx);
    imret_model_free(full);
    imret_model_free(lean);
    m = load_for(fp32, IMRET_PRECISION_INT8, &held_lean);
    refused("int8 load of an uncalibrated file refused", m ? IMRET_OK : load_rc, "activation scales");
    if (m) imret_model_free(m);
    /* bf16 */
    full = load_for(bf16, IMRET_PRECISION_FP32, &held_full);
    lean = load_for(bf16, IMRET_PRECISION_BF16, &held_lean);
    if (!full || !lean) { printf("FAIL load %s: %s\n", bf16, imret_last_error()); return 1; }
    snprintf(detail, sizeof detail, "(%.1f MB vs %.1f MB: %.2fx; %s)", held_lean / 1e6, held_full / 1e6,
             (double)held_lean / held_full, native ? "AVX512_BF16" : "emulated: keeps fp32");
    check(native ? "bf16: heap held <= 0.40x the full model" : "bf16 (emulated): heap held == the full model",
          native ? held_lean <= 0.40 * held_full : held_lean == held_full, detail);
    lean_same("bf16: descriptors == bf16 context on the full model", full, lean, IMRET_PRECISION_BF16, imgs, n);
    describe_on(lean, IMRET_PRECISION_FP32, IMRET_SIMD_AUTO, imgs, 1, &r);
    refused("bf16 model: fp32 context refused", r, "loaded for bf16 only");
    if (native) {
        describe_on(lean, IMRET_PRECISION_BF16, IMRET_SIMD_AVX2, imgs, 1, &r);
        refused("bf16 model: bf16 context below AVX-512 refused", r, "no AVX512_BF16 kernel");
    }
    imret_model_free(full);
    imret_model_free(lean);
    m = load_for(fp32, IMRET_PRECISION_BF16, &held_lean);
    refused("bf16 load of fp32 weights refused", m ? IMRET_OK : load_rc, "bf16 values");
    if (m) imret_model_free(m);
    {
        imret_model_config mc = imret_model_config_init();
        mc.precision = (imret_precision)7;
        r = imret_model_load_file(fp32, &mc, &m);
        check("precision = 7 at load -> INVALID_ARGUMENT", r == IMRET_ERROR_INVALID_ARGUMENT && !m, imret_last_error());
    }
    check("no heap left after freeing every model", hook_live == 0, NULL);
    printf("%s\n", failures ? "FAIL" : "all ok");
    return failures != 0;
}

/* ---- int8 kernels ---- */
static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 16); }

/* The independent reference of both kernel tests: a direct convolution in double over
   row-major weights wd [oc][ic][ky][kx] and planar inputs xd [ic][y][x], each sum times
   scale[oc] (NULL: 1), then bias, residual, ReLU as ep says. Returns max |output|. */
static double brute_conv(const double *wd, const double *xd, const double *scale, int ic_n, int oc_n, int k, int st, int pad,
                         int h, int w, const imret__epilogue *ep, float *out) {
    int oh = imret__out_dim(h, k, st, pad), ow = imret__out_dim(w, k, st, pad), oc, oy, ox, ic, ky, kx;
    size_t npix = (size_t)oh * ow, per = (size_t)ic_n * k * k;
    double maxref = 1e-30;
    for (oc = 0; oc < oc_n; oc++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                double v = 0.0;
                size_t p = (size_t)oy * ow + ox;
                for (ic = 0; ic < ic_n; ic++)
                    for (ky = 0; ky < k; ky++)
                        for (kx = 0; kx < k; kx++) {
                            int iy = oy * st - pad + ky, ix = ox * st - pad + kx;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                v += wd[oc * per + ((size_t)ic * k + ky) * k + kx] * xd[((size_t)ic * h + iy) * w + ix];
                        }
                if (scale) v *= scale[oc];
                v += (ep->bias ? ep->bias[oc] : 0) + (ep->residual ? ep->residual[(size_t)oc * npix + p] : 0);
                if (ep->relu && v < 0) v = 0;
                out[(size_t)oc * npix + p] = (float)v;
                if (fabs(v) > maxref) maxref = fabs(v);
            }
    return maxref;
}

static int kernel_tests(void) {
    static const int shapes[][7] = { /* in_c, out_c, k, stride, pad, h, w */
        {4, 1, 1, 1, 0, 1, 1},    {4, 5, 3, 1, 1, 7, 9},    {8, 7, 1, 2, 0, 13, 5},   {12, 17, 3, 2, 1, 17, 31},
        {20, 33, 3, 1, 1, 11, 6}, {64, 9, 1, 1, 0, 3, 70},  {68, 65, 3, 1, 1, 15, 15}, {16, 4, 3, 2, 1, 2, 2},
        {36, 130, 1, 1, 0, 9, 19}, {6, 3, 3, 1, 1, 5, 5},   {128, 64, 3, 1, 1, 8, 8},  {256, 24, 1, 2, 0, 29, 23}};
    int si, li, checks = 0;
    double worst_ref = 0.0;
    imret__kernels8 ks[4];
    int nk = imret__kernels8_all(ks);
    for (si = 0; si < (int)(sizeof shapes / sizeof shapes[0]); si++) {
        int ic_n = shapes[si][0], oc_n = shapes[si][1], k = shapes[si][2], st = shapes[si][3], pad = shapes[si][4];
        int h = shapes[si][5], w = shapes[si][6], oh = imret__out_dim(h, k, st, pad), ow = imret__out_dim(w, k, st, pad);
        size_t per = (size_t)ic_n * k * k, npix = (size_t)oh * ow, i, hw = (size_t)h * w;
        int8_t *q = (int8_t *)malloc(per * oc_n), *wq;
        uint8_t *u = (uint8_t *)malloc((size_t)ic_n * hw), *xq = (uint8_t *)calloc((size_t)(ic_n + 3) / 4 * 4 * hw, 1);
        uint8_t *xq2 = (uint8_t *)calloc((size_t)(ic_n + 3) / 4 * 4 * hw, 1);
        float *wf = (float *)malloc(sizeof(float) * per * oc_n), *x = (float *)malloc(sizeof(float) * ic_n * hw);
        float *step = (float *)malloc(sizeof(float) * oc_n), *bias = (float *)malloc(sizeof(float) * oc_n), *dq;
        float *res = (float *)malloc(sizeof(float) * oc_n * npix), *o_ref = (float *)malloc(sizeof(float) * oc_n * npix);
        float *o_s = (float *)malloc(sizeof(float) * oc_n * npix), *o_f = (float *)malloc(sizeof(float) * oc_n * npix);
        float act = 0.0173f, *pack;
        double *sa = (double *)malloc(sizeof(double) * oc_n), *qd = (double *)malloc(sizeof(double) * per * oc_n), *ud = (double *)malloc(sizeof(double) * ic_n * hw);
        int oc, ic, variant;
        double maxref;
        for (oc = 0; oc < oc_n; oc++) {
            step[oc] = (float)(1e-3 * (1 + rnd() % 1000));
            bias[oc] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
            for (i = 0; i < per; i++) q[oc * per + i] = (int8_t)((int)(rnd() % 255) - 127);
            q[oc * per + rnd() % per] = (rnd() & 1) ? 127 : -127; /* the channel maximum: the step is recovered exactly */
            for (i = 0; i < per; i++) wf[oc * per + i] = (float)q[oc * per + i] * step[oc];
        }
        for (i = 0; i < (size_t)ic_n * hw; i++) { u[i] = (uint8_t)(rnd() % 128); x[i] = (float)u[i] * act; ud[i] = u[i]; }
        for (i = 0; i < per * oc_n; i++) qd[i] = q[i];
        for (oc = 0; oc < oc_n; oc++) sa[oc] = (double)step[oc] * act;
        for (i = 0; i < (size_t)oc_n * npix; i++) res[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-2f;
        if (!imret__quantise_weights(wf, oc_n, ic_n, k, act, &wq, &dq)) { printf("FAIL out of memory\n"); return 1; }
        /* quantised input: scalar vs AVX2, and both == u */
        imret__quantise_input(x, ic_n, hw, act, xq, 0, 1);
        for (ic = 0; ic < ic_n; ic++)
            for (i = 0; i < hw; i++)
                if (xq[((size_t)(ic / 4) * hw + i) * 4 + ic % 4] != u[(size_t)ic * hw + i]) { printf("FAIL quantise_input scalar %d\n", si); failures++; goto next; }
        if (imret_simd_detect() >= IMRET_SIMD_AVX2 && imret_simd_detect() != IMRET_SIMD_NEON) {
            imret__quantise_input(x, ic_n, hw, act, xq2, 1, 2);
            if (memcmp(xq, xq2, (size_t)(ic_n + 3) / 4 * 4 * hw)) { printf("FAIL quantise_input avx2 != scalar (%d)\n", si); failures++; }
        }
        for (variant = 0; variant < 4; variant++) { /* bias/residual/relu combinations */
            imret__epilogue ep;
            ep.bias = variant & 1 ? bias : NULL;
            ep.residual = variant & 2 ? res : NULL;
            ep.relu = variant != 1;
            maxref = brute_conv(qd, ud, sa, ic_n, oc_n, k, st, pad, h, w, &ep, o_ref);
            imret__conv_i8_scalar(wq, dq, ic_n, oc_n, k, st, pad, xq, h, w, o_s, &ep, 1);
            for (i = 0; i < (size_t)oc_n * npix; i++) {
                double e = fabs((double)o_s[i] - o_ref[i]) / maxref;
                if (e > worst_ref) worst_ref = e;
                if (e > 1e-6) { printf("FAIL shape %d variant %d: oracle %g vs brute force %g at %lu\n", si, variant, o_s[i], o_ref[i], (unsigned long)i); failures++; break; }
            }
            checks++;
            for (li = 0; li < nk; li++) {
                imret__kernels8 k8 = ks[li];
                int kg = imret__conv_kg(ic_n, k), th;
                float *planes = (float *)malloc(sizeof(float) * imret__i8_planes_floats(4, ic_n, k, st, pad, h, w) + 4);
                pack = (float *)malloc(sizeof(float) * 2 * kg * imret__i8_nc(kg, k8.nr));
                for (th = 1; th <= 3; th++) { /* 1, 2 threads with B from padded / phase planes as the forward pass; 3: from
                                                 the input as it is, 1 thread */
                    memset(o_f, 0xff, sizeof(float) * oc_n * npix);
                    imret__conv_i8_fast(&k8, 4, wq, dq, ic_n, oc_n, k, st, pad, xq, h, w, o_f, &ep, pack, th < 3 ? planes : NULL,
                                        th < 3 ? th : 1);
                    if (memcmp(o_f, o_s, sizeof(float) * oc_n * npix)) {
                        for (i = 0; i < (size_t)oc_n * npix && o_f[i] == o_s[i]; i++) {}
                        printf("FAIL %s shape %d variant %d threads %d: %g vs oracle %g at %lu\n", k8.name, si, variant, th, o_f[i], o_s[i], (unsigned long)i);
                        failures++;
                    }
                    checks++;
                }
                free(pack);
                free(planes);
            }
        }
    next:
        free(q); IMRET_FREE(wq); free(u); free(xq); free(xq2); free(wf); free(x); free(step); free(bias); IMRET_FREE(dq);
        free(res); free(o_ref); free(o_s); free(o_f); free(sa); free(qd); free(ud);
    }
    { /* bf16 rounding (BF16 precision) vs the nearest of the two bf16 neighbours, ties to even */
        int bad = 0, n;
        for (n = 0; n < 200000; n++) {
            uint32_t u = rnd() << 16 ^ rnd(), lo, hi, pick;
            float x, a, b, got;
            double da, db;
            if (n < 4) u = (uint32_t)0x3f808000u + (uint32_t)n * 0x10000u; /* exact ties */
            lo = u & 0xffff0000u;
            hi = lo + 0x10000u;
            if ((u & 0x7f800000u) == 0x7f800000u || (hi & 0x7f800000u) == 0x7f800000u) continue; /* finite only */
            memcpy(&x, &u, 4); memcpy(&a, &lo, 4); memcpy(&b, &hi, 4);
            da = fabs((double)x - a); db = fabs((double)x - b);
            pick = da < db ? lo : db < da ? hi : ((lo >> 16) & 1) ? hi : lo;
            got = imret__bf16_round(x);
            if (memcmp(&got, &pick, 4)) bad++;
        }
        printf("bf16 rounding: %d of 200000 random floats differ from the nearest-even reference\n", bad);
        failures += bad != 0;
    }
    {
        char names[64] = "";
        for (li = 0; li < nk; li++) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", li ? ", " : "", ks[li].name);
        printf("int8 conv: %d comparisons on %d shapes; oracle vs brute force worst relative error %.2e; SIMD kernels (%s; "
               "dispatch picks %s) bit-identical to the oracle: %s\n", checks, (int)(sizeof shapes / sizeof shapes[0]), worst_ref,
               nk ? names : "none on this CPU", imret__kernels8_for(IMRET_SIMD_AUTO, 0).name, failures ? "NO" : "yes");
    }
    return failures != 0;
}

/* ---- bf16 kernels (native BF16 precision) ---- */
/* A random value in [-scale, scale] rounded to a bf16 number (bf16 weight files hold those). */
static float rnd_bf16(double scale) {
    float v = (float)(((int)(rnd() % 2001) - 1000) * 1e-3 * scale);
    return imret__bf16_round(v);
}

static int bf16_kernel_tests(void) {
    static const int shapes[][7] = { /* in_c, out_c, k, stride, pad, h, w */
        {1, 1, 1, 1, 0, 1, 1},    {3, 64, 7, 2, 3, 23, 19}, {7, 5, 3, 1, 1, 7, 9},   {17, 9, 3, 2, 1, 13, 11},
        {63, 33, 1, 1, 0, 9, 14}, {65, 65, 3, 1, 1, 15, 15}, {257, 12, 1, 1, 0, 5, 7}, {16, 130, 1, 2, 0, 29, 23},
        {2, 3, 3, 1, 0, 5, 5},    {64, 64, 3, 1, 1, 8, 8}};
    imret__kernels8 kb;
    int si, checks = 0, bad_pair = 0;
    double worst = 0.0;
    { /* the kernel wherever the CPU has it, also where BF16 precision runs emulated by default (Intel) */
        const char *env = getenv("IMRET_BF16");
        char saved[32];
        snprintf(saved, sizeof saved, "%s", env ? env : "");
        setenv("IMRET_BF16", "native", 1);
        kb = imret__kernels8_for(IMRET_SIMD_AUTO, 1);
        if (env) setenv("IMRET_BF16", saved, 1);
        else unsetenv("IMRET_BF16");
    }
    if (!kb.nr) {
        printf("bf16 kernels: SKIPPED, this CPU has no AVX512_BF16 (BF16 precision is emulated here)\n");
        return 0;
    }
    for (si = 0; si < (int)(sizeof shapes / sizeof shapes[0]); si++) {
        int ic_n = shapes[si][0], oc_n = shapes[si][1], k = shapes[si][2], st = shapes[si][3], pad = shapes[si][4];
        int h = shapes[si][5], w = shapes[si][6], oh = imret__out_dim(h, k, st, pad), ow = imret__out_dim(w, k, st, pad);
        int K = ic_n * k * k, kg = imret__conv_kg2(ic_n, k), oc, ic, variant, th;
        size_t npix = (size_t)oh * ow, hw = (size_t)h * w, i, groups = (size_t)(ic_n + 1) / 2;
        float *wf = (float *)malloc(sizeof(float) * K * oc_n), *wp = (float *)calloc(imret__wp_floats(oc_n, K), sizeof(float));
        float *x = (float *)malloc(sizeof(float) * ic_n * hw), *bias = (float *)malloc(sizeof(float) * oc_n);
        float *res = (float *)malloc(sizeof(float) * oc_n * npix), *o_f = (float *)malloc(sizeof(float) * oc_n * npix);
        float *o_2 = (float *)malloc(sizeof(float) * oc_n * npix);
        float *pack = (float *)malloc(sizeof(float) * 2 * kg * imret__i8_nc(kg, kb.nr));
        uint32_t *xp = (uint32_t *)malloc(sizeof(uint32_t) * groups * hw), *xs = (uint32_t *)malloc(sizeof(uint32_t) * groups * hw);
        double *wd = (double *)malloc(sizeof(double) * K * oc_n), *xd = (double *)malloc(sizeof(double) * ic_n * hw);
        uint16_t *wb;
        for (i = 0; i < (size_t)K * oc_n; i++) wd[i] = wf[i] = rnd_bf16(0.5);
        for (oc = 0; oc < oc_n; oc++) bias[oc] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
        for (i = 0; i < (size_t)ic_n * hw; i++) { /* any floats: the pairing rounds them */
            x[i] = (float)((rnd() % 100000) * 1e-4);
            xd[i] = imret__bf16_round(x[i]);
        }
        for (i = 0; i < (size_t)oc_n * npix; i++) res[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-2f;
        imret__pack_rows(wp, K, 0, oc_n, wf);
        wb = imret__pack_bf16_weights(wp, oc_n, ic_n, k);
        imret__pair_bf16(x, ic_n, hw, xs, 0, 1);
        imret__pair_bf16(x, ic_n, hw, xp, 1, 2);
        if (memcmp(xs, xp, sizeof(uint32_t) * groups * hw)) bad_pair++;
        for (ic = 0; ic < ic_n; ic++) /* the scalar pairing against the rounding function */
            for (i = 0; i < hw; i++) {
                float r = imret__bf16_round(x[(size_t)ic * hw + i]);
                uint32_t bits;
                memcpy(&bits, &r, 4);
                if (((xs[(ic / 2) * hw + i] >> (16 * (ic % 2))) & 0xffffu) != bits >> 16) bad_pair++;
            }
        for (variant = 0; variant < 4; variant++) {
            imret__epilogue ep;
            double maxref, e;
            float *ref = (float *)malloc(sizeof(float) * oc_n * npix);
            ep.bias = variant & 1 ? bias : NULL;
            ep.residual = variant & 2 ? res : NULL;
            ep.relu = variant != 1;
            maxref = brute_conv(wd, xd, NULL, ic_n, oc_n, k, st, pad, h, w, &ep, ref);
            for (th = 1; th <= 2; th++) { /* 1 thread from the input as it is, 2 from padded / phase planes */
                float *o = th == 1 ? o_f : o_2;
                float *planes = (float *)malloc(sizeof(float) * imret__i8_planes_floats(2, ic_n, k, st, pad, h, w) + 4);
                memset(o, 0xff, sizeof(float) * oc_n * npix);
                imret__conv_i8_fast(&kb, 2, wb, NULL, ic_n, oc_n, k, st, pad, (const uint8_t *)xp, h, w, o, &ep, pack,
                                    th == 2 ? planes : NULL, th);
                free(planes);
            }
            if (memcmp(o_f, o_2, sizeof(float) * oc_n * npix)) { printf("FAIL bf16 shape %d variant %d: 1 and 2 threads differ\n", si, variant); failures++; }
            for (i = 0; i < (size_t)oc_n * npix; i++) {
                e = fabs((double)o_f[i] - ref[i]) / maxref;
                if (!(e <= 1e-5)) {
                    printf("FAIL bf16 %s shape %d variant %d: %g vs brute force %g at %lu\n", kb.name, si, variant, o_f[i], ref[i], (unsigned long)i);
                    failures++;
                    break;
                }
                if (e > worst) worst = e;
            }
            checks++;
            free(ref);
        }
        free(wf); free(wp); free(x); free(bias); free(res); free(o_f); free(o_2); free(pack); free(xp); free(xs); IMRET_FREE(wb); free(wd); free(xd);
    }
    if (bad_pair) { printf("FAIL bf16 pairing: %d values differ (AVX-512 vs scalar vs imret__bf16_round)\n", bad_pair); failures++; }
    printf("bf16 conv (%s): %d comparisons on %d shapes vs double brute force over the bf16 values, worst error "
           "%.2e of the largest output (bound 1e-5); 1 and 2 threads bit-identical; AVX-512 pairing == scalar: %s\n",
           kb.name, checks, (int)(sizeof shapes / sizeof shapes[0]), worst, bad_pair ? "NO" : "yes");
    return 0;
}
