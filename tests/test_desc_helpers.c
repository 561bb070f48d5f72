/* Descriptor helpers of imret.h (whitening/hash section):
   - imret_tensor_orient vs imret_image_orient (imret.h) on the same pixels, all 8
     orientations, odd sizes: exact equality;
   - MAC / SPoC / GeM of an oriented feature map equal those of the original (permutation
     invariance), all 8 orientations;
   - imret_descriptor_combine vs a direct double-precision average + L2;
   - bad input. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; printf("  FAIL: "); printf(__VA_ARGS__); printf("\n"); } } while (0)

static float frand(uint64_t *s) { return (float)((double)(imret__desc_splitmix64(s) >> 11) / 9007199254740992.0); }

int main(void) {
    uint64_t st = 42;
    int o, sz, mismatches = 0;
    double worst_pool = 0, worst_comb = 0;
    static const int sizes[3][2] = {{5, 3}, {1, 7}, {8, 8}};
    for (sz = 0; sz < 3; sz++) {
        int w = sizes[sz][0], h = sizes[sz][1], c = 3, x, y, k;
        imret_image img;
        imret_tensor t;
        img.width = w; img.height = h; img.channels = c;
        img.pixels = (uint8_t *)malloc((size_t)w * h * c);
        for (k = 0; k < w * h * c; k++) img.pixels[k] = (uint8_t)(imret__desc_splitmix64(&st) & 255);
        t.c = c; t.h = h; t.w = w;
        t.data = (float *)malloc(sizeof(float) * w * h * c);
        for (k = 0; k < c; k++)
            for (y = 0; y < h; y++)
                for (x = 0; x < w; x++) t.data[(k * h + y) * w + x] = img.pixels[(y * w + x) * c + k];
        for (o = 1; o <= 8; o++) {
            imret_image im2 = img;
            imret_tensor t2;
            im2.pixels = (uint8_t *)malloc((size_t)w * h * c);
            memcpy(im2.pixels, img.pixels, (size_t)w * h * c);
            CHECK(imret_image_orient(&im2, o) == IMRET_OK, "image orient");
            CHECK(imret_tensor_orient(&t, o, &t2) == IMRET_OK, "tensor orient: %s", imret_last_error());
            CHECK(t2.w == im2.width && t2.h == im2.height && t2.c == c, "orientation %d: %dx%d vs image %dx%d", o, t2.w, t2.h, im2.width, im2.height);
            for (k = 0; k < c; k++)
                for (y = 0; y < t2.h; y++)
                    for (x = 0; x < t2.w; x++)
                        mismatches += t2.data[(k * t2.h + y) * t2.w + x] != im2.pixels[(y * im2.width + x) * c + k];
            imret_tensor_free(&t2);
            free(im2.pixels);
        }
        free(img.pixels);
        free(t.data);
    }
    CHECK(mismatches == 0, "%d values differ between imret_tensor_orient and imret_image_orient", mismatches);
    printf("imret_tensor_orient vs imret_image_orient: 8 orientations x 3 sizes (5x3, 1x7, 8x8), %d values differ\n", mismatches);
    { /* global poolings are invariant under the 8 transforms */
        imret_tensor f;
        int k, p;
        static const imret_pooling pools[3] = {IMRET_POOL_MAC, IMRET_POOL_SPOC, IMRET_POOL_GEM};
        f.c = 33; f.h = 7; f.w = 11;
        f.data = (float *)malloc(sizeof(float) * 33 * 7 * 11);
        for (k = 0; k < 33 * 7 * 11; k++) { float v = frand(&st) - 0.3f; f.data[k] = v > 0 ? v : 0; }
        for (p = 0; p < 3; p++) {
            imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
            float a[33], b[33];
            dc.pooling = pools[p];
            imret_pool(&f, &dc, a, 33);
            for (o = 1; o <= 8; o++) {
                imret_tensor g;
                imret_tensor_orient(&f, o, &g);
                imret_pool(&g, &dc, b, 33);
                for (k = 0; k < 33; k++)
                    if (fabs(a[k] - b[k]) > worst_pool) worst_pool = fabs(a[k] - b[k]);
                imret_tensor_free(&g);
            }
        }
        CHECK(worst_pool < 1e-6, "pooling of oriented maps: %.2e", worst_pool);
        printf("MAC/SPoC/GeM of a 33x7x11 map under the 8 orientations vs the original: max |diff| %.2e\n", worst_pool);
        free(f.data);
    }
    { /* multi-scale combination */
        float d[3 * 50], out[50];
        int s, k;
        double acc[50], nrm = 0;
        for (s = 0; s < 3; s++) {
            double q = 0;
            for (k = 0; k < 50; k++) { d[s * 50 + k] = frand(&st); q += (double)d[s * 50 + k] * d[s * 50 + k]; }
            for (k = 0; k < 50; k++) d[s * 50 + k] = (float)(d[s * 50 + k] / sqrt(q));
        }
        for (k = 0; k < 50; k++) { acc[k] = ((double)d[k] + d[50 + k] + d[100 + k]) / 3; nrm += acc[k] * acc[k]; }
        CHECK(imret_descriptor_combine(d, 3, 50, out) == IMRET_OK, "combine");
        for (k = 0; k < 50; k++)
            if (fabs(out[k] - acc[k] / sqrt(nrm)) > worst_comb) worst_comb = fabs(out[k] - acc[k] / sqrt(nrm));
        CHECK(worst_comb < 1e-6, "combine vs direct average + L2: %.2e", worst_comb);
        printf("imret_descriptor_combine (3 scales x 50) vs average + L2 in double: max |diff| %.2e\n", worst_comb);
        CHECK(imret_descriptor_combine(d, 3, 50, d) == IMRET_OK && fabs(d[0] - out[0]) < 1e-7, "combine in place");
        CHECK(imret_descriptor_combine(d, 0, 50, out) == IMRET_ERROR_INVALID_ARGUMENT, "count 0 refused");
        CHECK(imret_descriptor_combine(NULL, 3, 50, out) == IMRET_ERROR_INVALID_ARGUMENT, "NULL refused");
    }
    { /* bad input */
        imret_tensor t, o2;
        float v[4] = {1, 2, 3, 4};
        t.c = 1; t.h = 2; t.w = 2; t.data = v;
        CHECK(imret_tensor_orient(&t, 0, &o2) == IMRET_ERROR_INVALID_ARGUMENT && !o2.data, "orientation 0 refused");
        CHECK(imret_tensor_orient(&t, 9, &o2) == IMRET_ERROR_INVALID_ARGUMENT, "orientation 9 refused");
        t.h = 0;
        CHECK(imret_tensor_orient(&t, 2, &o2) == IMRET_ERROR_SHAPE, "empty tensor refused");
        CHECK(imret_tensor_orient(NULL, 2, &o2) == IMRET_ERROR_INVALID_ARGUMENT, "NULL refused");
    }
    printf("%d checks, worst: pooling invariance %.2e, combine %.2e; %d failed\n", checks, worst_pool, worst_comb, failures);
    return failures ? 1 : 0;
}
