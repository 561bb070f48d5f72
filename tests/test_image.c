/* Image loading and preprocessing against Pillow/numpy references (tests/ref_images.py).

   usage: test_image DATA_DIR TORCHVISION_MODEL.imw KERAS_MODEL.imw
   - EXIF orientation 1..8: imret's decode of orient_N.jpg vs Pillow's exif_transpose
     (different JPEG decoders: mean |diff| <= 3 levels, and far from every other orientation)
   - normalisation: RGBA composited on grey (RGB/255/mean/std) and grey -> Keras BGR input,
     exact to 1e-5 against numpy
   - resize: longest side 97 vs Pillow BICUBIC (antialiased; stb Catmull-Rom), mean |diff| <= 1.0 level
   - bad images: zero bytes, text, corrupt JPEG, 65535x65535 header, PNM header numbers past
     INT_MAX, too small -> codes */
#define IMRET_IMPLEMENTATION
#include "imret.h"

static int failures, checks;
static char dir[1024];

static const char *path(const char *name) {
    static char buf[2048];
    snprintf(buf, sizeof buf, "%s/images/%s", dir, name);
    return buf;
}

static void check(int ok, const char *fmt, ...) {
    va_list ap;
    checks++;
    va_start(ap, fmt);
    printf("  ");
    vprintf(fmt, ap);
    va_end(ap);
    printf(" %s\n", ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

static double mean_abs_diff(const imret_image *a, const imret_image *b) {
    size_t i, n = (size_t)a->width * a->height * a->channels;
    double s = 0;
    if (a->width != b->width || a->height != b->height || a->channels != b->channels) return 1e9;
    for (i = 0; i < n; i++) s += fabs((double)a->pixels[i] - b->pixels[i]);
    return s / n;
}

static float *read_f32(const char *p, size_t n) {
    uint8_t *buf;
    size_t size, i;
    float *f;
    if (imret__read_file(p, (size_t)1 << 30, "expect", &buf, &size, NULL) || size != n * 4) return NULL;
    f = (float *)malloc(n * 4);
    for (i = 0; i < n; i++) { uint32_t b = imret__rd32(buf + 4 * i); memcpy(&f[i], &b, 4); }
    free(buf);
    return f;
}

static void expect_code(const char *what, imret_result got, imret_result want) {
    check(got == want, "%-34s -> %-24s \"%s\"", what, imret_result_string(got), imret_last_error());
}

int main(int argc, char **argv) {
    imret_model *tv, *keras;
    imret_image img, ref;
    int n;
    if (argc < 4) { fprintf(stderr, "usage: %s DATA_DIR torchvision.imw keras.imw\n", argv[0]); return 2; }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    if (imret_model_load_file(argv[2], NULL, &tv) || imret_model_load_file(argv[3], NULL, &keras)) {
        printf("FAIL: %s\n", imret_last_error());
        return 1;
    }
    printf("EXIF orientation (imret decode vs Pillow exif_transpose):\n");
    for (n = 1; n <= 8; n++) {
        char jn[32], pn[32];
        double same, other = 1e9;
        int m;
        snprintf(jn, sizeof jn, "orient_%d.jpg", n);
        snprintf(pn, sizeof pn, "orient_%d.png", n);
        if (imret_image_load_file(path(jn), NULL, &img) || imret_image_load_file(path(pn), NULL, &ref)) {
            check(0, "load %s: %s", jn, imret_last_error());
            continue;
        }
        same = mean_abs_diff(&img, &ref);
        /* the same pixels under the other 7 orientations must be far away */
        for (m = 1; m <= 8; m++) {
            imret_image raw;
            double d;
            imret_image_config nc = imret_image_config_init();
            nc.apply_exif = 0;
            if (m == n) continue;
            imret_image_load_file(path(jn), &nc, &raw);
            imret_image_orient(&raw, m);
            d = mean_abs_diff(&raw, &ref);
            if (d < other) other = d;
            imret_image_free(&raw);
        }
        {
            uint8_t *buf; size_t sz; int tag;
            imret__read_file(path(jn), 1 << 24, "t", &buf, &sz, NULL);
            tag = imret_jpeg_orientation(buf, sz);
            free(buf);
            check(tag == n && same <= 3.0 && other > 10.0,
                  "orientation %d: tag %d, %dx%d, mean|diff| to Pillow %.2f, nearest wrong orientation %.1f", n, tag,
                  img.width, img.height, same, other);
        }
        imret_image_free(&img);
        imret_image_free(&ref);
    }

    printf("normalisation (vs numpy):\n");
    {
        imret_preprocess_config pc = imret_preprocess_config_init();
        imret_tensor t;
        float *want;
        size_t i, cnt;
        double worst = 0;
        pc.mode = IMRET_RESIZE_NONE;
        pc.min_side = 16;
        if (imret_image_load_file(path("rgba.png"), NULL, &img) || imret_preprocess(tv, &img, &pc, &t)) {
            check(0, "rgba: %s", imret_last_error());
        } else {
            cnt = (size_t)3 * t.h * t.w;
            want = read_f32(path("rgba_expect.f32"), 3 * 40 * 50);
            for (i = 0; want && i < cnt; i++) if (fabs(t.data[i] - want[i]) > worst) worst = fabs(t.data[i] - want[i]);
            check(want && img.channels == 4 && t.w == 40 && t.h == 50 && worst <= 1e-5,
                  "RGBA 40x50 on grey, torchvision normalisation: max|diff| %.2e", worst);
            free(want);
            imret_tensor_free(&t);
        }
        imret_image_free(&img);
        worst = 0;
        if (imret_image_load_file(path("grey.png"), NULL, &img) || imret_preprocess(keras, &img, &pc, &t)) {
            check(0, "grey: %s", imret_last_error());
        } else {
            cnt = (size_t)3 * t.h * t.w;
            want = read_f32(path("grey_expect_bgr.f32"), 3 * 33 * 47);
            for (i = 0; want && i < cnt; i++) if (fabs(t.data[i] - want[i]) > worst) worst = fabs(t.data[i] - want[i]);
            check(want && img.channels == 1 && t.w == 33 && t.h == 47 && worst <= 1e-4,
                  "grey 33x47, Keras BGR mean-subtracted input: max|diff| %.2e", worst);
            free(want);
            imret_tensor_free(&t);
        }
        imret_image_free(&img);
    }

    printf("resize (longest side 97, Catmull-Rom) vs Pillow BICUBIC:\n");
    {
        imret_preprocess_config pc = imret_preprocess_config_init();
        imret_tensor t;
        imret_image got;
        size_t i;
        pc.longest_side = 97;
        pc.filter = IMRET_FILTER_CATMULLROM;
        if (imret_image_load_file(path("resize_src.png"), NULL, &img) || imret_image_load_file(path("resize_expect.png"), NULL, &ref) ||
            imret_preprocess(keras, &img, &pc, &t)) {
            check(0, "resize: %s", imret_last_error());
        } else {
            /* undo the Keras normalisation (BGR, minus mean) to get pixels back */
            got.width = t.w; got.height = t.h; got.channels = 3;
            got.pixels = (uint8_t *)malloc((size_t)3 * t.w * t.h);
            for (i = 0; i < (size_t)t.w * t.h; i++) {
                int ch;
                for (ch = 0; ch < 3; ch++) {
                    float v = t.data[(size_t)(2 - ch) * t.w * t.h + i] + keras->mean[2 - ch];
                    got.pixels[3 * i + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
                }
            }
            check(t.w == 97 && t.h == 73 && mean_abs_diff(&got, &ref) <= 1.0, "%dx%d, mean|diff| to Pillow %.2f levels",
                  t.w, t.h, mean_abs_diff(&got, &ref));
            free(got.pixels);
            imret_tensor_free(&t);
            imret_image_free(&ref);
        }
        imret_image_free(&img);
    }

    printf("resize never aborts (stb_image_resize 0.97's triangle filter asserted on 1511 of\n"
           "11662 size pairs; imret does not offer it and disables stb's asserts):\n");
    {
        imret_image big;
        imret_preprocess_config pc = imret_preprocess_config_init();
        imret_tensor t;
        int side, filter, bad = 0, runs = 0;
        size_t i;
        big.width = 451; big.height = 300; big.channels = 3;
        big.pixels = (uint8_t *)malloc((size_t)451 * 300 * 3);
        for (i = 0; i < (size_t)451 * 300 * 3; i++) big.pixels[i] = (uint8_t)(i * 7 % 251);
        for (filter = 0; filter <= 3; filter++)
            for (side = 33; side <= 700; side += 29) {
                pc.filter = (imret_resize_filter)filter;
                pc.longest_side = side;
                runs++;
                if (imret_preprocess(tv, &big, &pc, &t)) bad++;
                else imret_tensor_free(&t);
            }
        pc = imret_preprocess_config_init();
        pc.mode = IMRET_RESIZE_CENTER_CROP; /* 451x300 -> 385x256: the size that crashed */
        runs++;
        if (imret_preprocess(tv, &big, &pc, &t)) bad++;
        else imret_tensor_free(&t);
        check(bad == 0, "%d resizes of a 451x300 image (4 filters, sides 33..700, ImageNet crop), %d failed", runs, bad);
        free(big.pixels);
    }

    printf("bad images:\n");
    expect_code("zero-byte file", imret_image_load_file(path("empty.jpg"), NULL, &img), IMRET_ERROR_IMAGE_DECODE);
    expect_code("text file named .jpg", imret_image_load_file(path("notimage.jpg"), NULL, &img), IMRET_ERROR_IMAGE_DECODE);
    {
        char p[2048];
        snprintf(p, sizeof p, "%s/../../../shared/data/imagededup/mixed_images/ukbench09268_corrupt.jpg", dir);
        expect_code("corrupt JPEG (imagededup)", imret_image_load_file(p, NULL, &img), IMRET_ERROR_IMAGE_DECODE);
    }
    expect_code("65535x65535 PNG header (bomb)", imret_image_load_file(path("bomb.png"), NULL, &img), IMRET_ERROR_IMAGE_SIZE);
    { /* binary PNM: stb_image 2.27 reads header numbers into an int unchecked (imret__stb_guard) */
        static const unsigned char pgm[] = "P5\n# a comment\n2 2\n255\n\x01\x02\x03\x04";
        static const char wide[] = "P5\n241111111111111111111 17\n255\n\x01\x02";
        static const char big[] = "P6 2147483647 # INT_MAX wide: the size limit refuses it\n2 255\n";
        imret_result r = imret_image_load_memory(pgm, sizeof pgm - 1, NULL, &img);
        check(r == IMRET_OK && img.width == 2 && img.height == 2 && img.channels == 1 && img.pixels[3] == 4,
              "2x2 PGM with a comment decodes (%s)", imret_result_string(r));
        if (r == IMRET_OK) imret_image_free(&img);
        expect_code("PGM width past INT_MAX", imret_image_load_memory(wide, sizeof wide - 1, NULL, &img), IMRET_ERROR_IMAGE_DECODE);
        expect_code("PPM width = INT_MAX", imret_image_load_memory(big, sizeof big - 1, NULL, &img), IMRET_ERROR_IMAGE_SIZE);
    }
    expect_code("missing file", imret_image_load_file(path("nope.png"), NULL, &img), IMRET_ERROR_IO);
    expect_code("directory", imret_image_load_file(dir, NULL, &img), IMRET_ERROR_IO);
    expect_code("NULL path", imret_image_load_file(NULL, NULL, &img), IMRET_ERROR_INVALID_ARGUMENT);
    expect_code("NULL data", imret_image_load_memory(NULL, 5, NULL, &img), IMRET_ERROR_INVALID_ARGUMENT);
    {
        imret_image_config ic = imret_image_config_init();
        ic.max_pixels = 100;
        expect_code("over max_pixels (160x120, limit 100)", imret_image_load_file(path("orient_1.png"), &ic, &img), IMRET_ERROR_IMAGE_SIZE);
    }
    {
        imret_preprocess_config pc = imret_preprocess_config_init();
        imret_tensor t;
        imret_context *ctx;
        imret_tensor x, f;
        float zeros[3 * 31 * 40];
        imret_image_load_file(path("tiny.png"), NULL, &img);
        pc.min_source_side = 8;
        expect_code("4x4 image, min_source_side 8", imret_preprocess(tv, &img, &pc, &t), IMRET_ERROR_IMAGE_SIZE);
        pc = imret_preprocess_config_init();
        {
            imret_result r = imret_preprocess(tv, &img, &pc, &t);
            check(r == IMRET_OK && t.w >= 32 && t.h >= 32, "4x4 image with defaults is enlarged to %dx%d", t.w, t.h);
        }
        imret_tensor_free(&t);
        imret_image_free(&img);
        pc.longest_side = 5;
        imret_image_load_file(path("rgba.png"), NULL, &img);
        expect_code("absurd option (longest side 5)", imret_preprocess(tv, &img, &pc, &t), IMRET_ERROR_INVALID_ARGUMENT);
        imret_image_free(&img);
        imret_context_create(tv, NULL, &ctx);
        memset(zeros, 0, sizeof zeros);
        x.c = 3; x.h = 31; x.w = 40; x.data = zeros;
        expect_code("forward on a 40x31 input", imret_forward(ctx, &x, &f, NULL), IMRET_ERROR_IMAGE_SIZE);
        x.c = 4;
        expect_code("forward on a 4-channel tensor", imret_forward(ctx, &x, &f, NULL), IMRET_ERROR_SHAPE);
        expect_code("forward with NULL input", imret_forward(ctx, NULL, &f, NULL), IMRET_ERROR_INVALID_ARGUMENT);
        imret_context_destroy(ctx);
    }
    imret_model_free(tv);
    imret_model_free(keras);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
