/* Resource limits: every limit refuses with its documented code, and refuses early.
   - decompression bombs: JPEG/PNG/GIF/BMP/PNM/PSD/TGA/HDR headers declaring huge sizes are
     refused with IMRET_ERROR_IMAGE_SIZE before decoding: the peak of imret's allocations
     (counted through the IMRET_MALLOC hook) stays under 64 KiB;
   - max_pixels (memory), max_file_bytes of images (file) and models (memory and file)
     -> IMRET_ERROR_LIMIT / IMAGE_SIZE; max_workspace_bytes -> IMRET_ERROR_LIMIT with nothing
     allocated; the preprocessing's 16384-pixel side limit -> IMAGE_SIZE;
   - the overflow-checked size helpers on their edges (SIZE_MAX, products just over).
   usage: test_limits MODEL.imw (any valid model, e.g. tests/data/resnet18.imw) */
#include "alloc_hook.h"
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>
#include <stdint.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL: "); printf(__VA_ARGS__); printf(" [%s]\n", imret_last_error()); } } while (0)

static void expect(const char *what, imret_result got, imret_result want) {
    printf("  %-52s -> %-24s %s\n", what, imret_result_string(got), got ? imret_last_error() : "");
    CHECK(got == want, "%s: got %s, want %s", what, imret_result_string(got), imret_result_string(want));
}

static void bomb(const char *what, const uint8_t *data, size_t n, size_t max_pixels) {
    imret_image_config ic = imret_image_config_init();
    imret_image img;
    size_t base = hook_live;
    if (max_pixels) ic.max_pixels = max_pixels;
    hook_reset(0);
    expect(what, imret_image_load_memory(data, n, &ic, &img), IMRET_ERROR_IMAGE_SIZE);
    CHECK(hook_peak - base < 65536, "%s: %lu bytes allocated before refusing", what, (unsigned long)(hook_peak - base));
    CHECK(hook_live == base, "%s: %lu bytes leaked", what, (unsigned long)(hook_live - base));
}

static void be16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void be32(uint8_t *p, uint32_t v) { be16(p, v >> 16); be16(p + 2, v & 0xffff); }
static void le16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void le32(uint8_t *p, uint32_t v) { le16(p, v & 0xffff); le16(p + 2, v >> 16); }

static void image_bombs(void) {
    uint8_t b[256];
    size_t n;
    /* JPEG: SOI, DQT, SOF0 declaring 60000 x 60000 x 3, DHT-less: stbi_info stops at SOF */
    memset(b, 0, sizeof b);
    n = 0;
    b[n++] = 0xFF; b[n++] = 0xD8;
    b[n++] = 0xFF; b[n++] = 0xDB; be16(b + n, 67); n += 2; b[n++] = 0; memset(b + n, 1, 64); n += 64;
    b[n++] = 0xFF; b[n++] = 0xC0; be16(b + n, 17); n += 2; b[n++] = 8; be16(b + n, 60000); n += 2; be16(b + n, 60000); n += 2;
    b[n++] = 3;
    b[n++] = 1; b[n++] = 0x11; b[n++] = 0; b[n++] = 2; b[n++] = 0x11; b[n++] = 0; b[n++] = 3; b[n++] = 0x11; b[n++] = 0;
    b[n++] = 0xFF; b[n++] = 0xD9;
    bomb("JPEG SOF declaring 60000x60000", b, n, 0);
    /* PNG: IHDR 65535 x 65535 (checked by imret itself: stb refuses early without sizes) */
    memset(b, 0, sizeof b);
    memcpy(b, "\x89PNG\r\n\x1a\n", 8); be32(b + 8, 13); memcpy(b + 12, "IHDR", 4);
    be32(b + 16, 65535); be32(b + 20, 65535); b[24] = 8; b[25] = 2;
    bomb("PNG IHDR declaring 65535x65535", b, 33 + 12, 0);
    be32(b + 16, 20000); be32(b + 20, 20000);
    bomb("PNG IHDR 20000x20000, max_pixels 1e8", b, 33 + 12, 100000000);
    /* GIF: logical screen 65535 x 65535 */
    memset(b, 0, sizeof b);
    memcpy(b, "GIF89a", 6); le16(b + 6, 65535); le16(b + 8, 65535);
    bomb("GIF screen declaring 65535x65535", b, 64, 0);
    /* BMP: BITMAPINFOHEADER 100000 x 100000, 24 bpp */
    memset(b, 0, sizeof b);
    b[0] = 'B'; b[1] = 'M'; le32(b + 2, 200); le32(b + 10, 54); le32(b + 14, 40);
    le32(b + 18, 100000); le32(b + 22, 100000); le16(b + 26, 1); le16(b + 28, 24);
    bomb("BMP header declaring 100000x100000", b, 200, 0);
    /* PNM: P6 30000 x 30000 */
    n = (size_t)snprintf((char *)b, sizeof b, "P6\n30000 30000\n255\n");
    bomb("PPM header declaring 30000x30000", b, n + 16, 0);
    /* PSD: 30000 x 30000, 3 channels, 8 bits */
    memset(b, 0, sizeof b);
    memcpy(b, "8BPS", 4); be16(b + 4, 1); be16(b + 12, 3); be32(b + 14, 30000); be32(b + 18, 30000); be16(b + 22, 8); be16(b + 24, 3);
    bomb("PSD header declaring 30000x30000", b, 64, 0);
    /* TGA: 65535 x 65535 truecolour */
    memset(b, 0, sizeof b);
    b[2] = 2; le16(b + 12, 65535); le16(b + 14, 65535); b[16] = 24;
    bomb("TGA header declaring 65535x65535", b, 64, 0);
    /* Radiance HDR: 30000 x 30000 */
    n = (size_t)snprintf((char *)b, sizeof b, "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n");
    bomb("HDR header declaring 30000x30000", b, n + 8, 0);
    /* a legal 160x120 PNG... is not needed: a 4x4 grey PGM with max_pixels 15 */
    n = (size_t)snprintf((char *)b, sizeof b, "P5\n4 4\n255\n");
    memset(b + n, 7, 16);
    bomb("4x4 PGM, max_pixels 15", b, n + 16, 15);
    {
        imret_image_config ic = imret_image_config_init();
        imret_image img;
        ic.max_pixels = 16;
        expect("4x4 PGM, max_pixels 16 (at the limit)", imret_image_load_memory(b, n + 16, &ic, &img), IMRET_OK);
        CHECK(img.width == 4 && img.height == 4 && img.pixels[5] == 7, "4x4 PGM decoded wrong");
        imret_image_free(&img);
    }
}

static void write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n) { printf("FAIL: cannot write %s\n", path); fails++; }
    if (f) fclose(f);
}

int main(int argc, char **argv) {
    imret_model *m = NULL;
    imret_model_config mc = imret_model_config_init();
    imret_image_config ic = imret_image_config_init();
    imret_context_config cc = imret_context_config_init();
    imret_context *ctx = NULL;
    imret_image img;
    imret_tensor x, f;
    uint8_t pgm[64];
    size_t n, t;
    if (argc < 2) { printf("usage: %s MODEL.imw\n", argv[0]); return 2; }
    printf("defaults: image max_pixels %lu, image max_file_bytes %lu, model max_file_bytes %lu, max_workspace_bytes %lu\n",
           (unsigned long)ic.max_pixels, (unsigned long)ic.max_file_bytes, (unsigned long)mc.max_file_bytes,
           (unsigned long)cc.max_workspace_bytes);
    CHECK(ic.max_pixels == (size_t)1 << 28 && ic.max_file_bytes == (size_t)1 << 30 && mc.max_file_bytes == (size_t)2 << 30 &&
              cc.max_workspace_bytes == (size_t)4 << 30, "documented defaults changed");
    image_bombs();

    /* file-size limits */
    n = (size_t)snprintf((char *)pgm, sizeof pgm, "P5\n4 4\n255\n");
    memset(pgm + n, 9, 16);
    write_file("build/limits_4x4.pgm", pgm, n + 16);
    ic.max_file_bytes = n + 15;
    expect("image file 1 byte over max_file_bytes", imret_image_load_file("build/limits_4x4.pgm", &ic, &img), IMRET_ERROR_LIMIT);
    ic.max_file_bytes = n + 16;
    expect("image file at max_file_bytes", imret_image_load_file("build/limits_4x4.pgm", &ic, &img), IMRET_OK);
    imret_image_free(&img);
    remove("build/limits_4x4.pgm");
    mc.max_file_bytes = 1 << 20;
    hook_reset(0);
    t = hook_live;
    expect("model file over max_file_bytes (1 MiB)", imret_model_load_file(argv[1], &mc, &m), IMRET_ERROR_LIMIT);
    CHECK(hook_peak - t < 4096, "model limit: %lu bytes allocated before refusing", (unsigned long)(hook_peak - t));
    mc.max_file_bytes = 16;
    expect("model in memory, 64 bytes, max_file_bytes 16", imret_model_load_memory(pgm, sizeof pgm, &mc, &m), IMRET_ERROR_LIMIT);

    /* workspace limit: refused before anything is allocated */
    mc = imret_model_config_init();
    if (imret_model_load_file(argv[1], &mc, &m) != IMRET_OK) { printf("FAIL: %s\n", imret_last_error()); return 1; }
    cc.threads = 1;
    cc.max_workspace_bytes = 1 << 20;
    CHECK(imret_context_create(m, &cc, &ctx) == IMRET_OK, "context");
    x.c = 3; x.h = 224; x.w = 224;
    x.data = (float *)calloc(3 * 224 * 224, sizeof(float));
    hook_reset(0);
    t = hook_live;
    expect("forward 224x224 with max_workspace_bytes 1 MiB", imret_forward(ctx, &x, &f, NULL), IMRET_ERROR_LIMIT);
    CHECK(hook_peak == t, "workspace limit: %lu bytes allocated before refusing", (unsigned long)(hook_peak - t));
    imret_context_destroy(ctx);
    cc.max_workspace_bytes = (size_t)64 << 20;
    CHECK(imret_context_create(m, &cc, &ctx) == IMRET_OK, "context");
    expect("forward 224x224 with max_workspace_bytes 64 MiB", imret_forward(ctx, &x, &f, NULL), IMRET_OK);
    x.h = x.w = 8193;
    expect("forward input over 8192 per side", imret_forward(ctx, &x, &f, NULL), IMRET_ERROR_IMAGE_SIZE);
    imret_context_destroy(ctx);
    free(x.data);
    { /* preprocessing: a 1 x 600 image would be enlarged to 32 x 19200: over 16384 per side */
        imret_preprocess_config pc = imret_preprocess_config_init();
        imret_tensor out;
        img.width = 1; img.height = 600; img.channels = 3;
        img.pixels = (uint8_t *)calloc(600, 3);
        expect("preprocess 1x600 (min side 32 -> 32x19200)", imret_preprocess(m, &img, &pc, &out), IMRET_ERROR_IMAGE_SIZE);
        free(img.pixels);
    }
    imret_model_free(m);

    /* overflow-checked size helpers */
    {
        size_t r = 0;
        CHECK(imret__mul(SIZE_MAX, 1, &r) && r == SIZE_MAX, "mul SIZE_MAX*1");
        CHECK(!imret__mul(SIZE_MAX / 2 + 1, 2, &r), "mul (SIZE_MAX/2+1)*2 must overflow");
        CHECK(imret__mul(SIZE_MAX / 3, 3, &r) && r == SIZE_MAX / 3 * 3, "mul SIZE_MAX/3*3");
        CHECK(imret__mul(0, SIZE_MAX, &r) && r == 0, "mul 0*SIZE_MAX");
        CHECK(!imret__add(SIZE_MAX, 1, &r) && imret__add(SIZE_MAX - 1, 1, &r) && r == SIZE_MAX, "add edges");
        CHECK(!imret__mul4((size_t)1 << 16, (size_t)1 << 16, (size_t)1 << 16, (size_t)1 << 16, &r) || sizeof(size_t) > 8, "mul4 2^64 must overflow");
        CHECK(imret__mul4(1 << 10, 1 << 10, 1 << 10, 1 << 10, &r) && r == (size_t)1 << 40, "mul4 2^40");
        CHECK(imret__calloc(SIZE_MAX / 2, 3) == NULL, "calloc overflow must fail");
    }
    CHECK(hook_blocks == 0, "%lu blocks leaked", (unsigned long)hook_blocks);
    printf("limits: %s\n", fails ? "FAILED" : "every limit refused as documented, bombs before allocating");
    return fails != 0;
}
