/* Fuzz the image path from memory: decode (stb_image, every format it reads) -> EXIF
   orientation -> resize -> model preprocessing -> forward pass -> GeM descriptor.
   The model is loaded once (IMRET_FUZZ_MODEL, default tests/data/resnet18.imw, the smallest
   architecture imret has: no legal .imw is tiny); images are preprocessed to a longest side
   of 32..64 pixels. Even so a ResNet-18 forward pass costs ~0.25 s under ASan+UBSan, 1000x
   a decode, so it runs once per distinct input shape (the only thing about the input the
   forward pass depends on besides values), for the first FUZZ_FORWARDS shapes a process
   meets; all other inputs stop after preprocessing. Decoder limits are kept small
   (max_pixels 256 Kpx: the decoders run the same code on small images as on large ones;
   larger declared sizes are refused before decoding, tested in test_limits) so the fuzzer spends its time in parsers, not in memset. The resize
   mode and filter come from the input size, so one input always takes the same path. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include "fuzz_common.h"

#define FUZZ_FORWARDS 48
static imret_model *fuzz_model;
static unsigned char fuzz_seen[513][513];
static int fuzz_forwards;
static imret_context *fuzz_ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("IMRET_FUZZ_MODEL");
    imret_context_config cc = imret_context_config_init();
    (void)argc; (void)argv;
    if (!path) path = "tests/data/resnet18.imw";
    if (imret_model_load_file(path, NULL, &fuzz_model) != IMRET_OK) {
        fprintf(stderr, "fuzz_image: %s (set IMRET_FUZZ_MODEL)\n", imret_last_error());
        exit(1);
    }
    cc.threads = 1;
    cc.max_workspace_bytes = (size_t)256 << 20;
    if (imret_context_create(fuzz_model, &cc, &fuzz_ctx) != IMRET_OK) exit(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *c = fuzz_copy(data, size);
    imret_image_config ic = imret_image_config_init();
    imret_preprocess_config pc = imret_preprocess_config_init();
    imret_image img;
    imret_tensor in, fmap;
    if (!c) return 0;
    ic.max_pixels = (size_t)1 << 18;
    (void)imret_jpeg_orientation(c, size);
    if (imret_image_load_memory(c, size, &ic, &img) != IMRET_OK) {
        if (!imret_last_error()[0]) abort();
        free(c);
        return 0;
    }
    if (img.width <= 0 || img.height <= 0 || (size_t)img.width * (size_t)img.height > ic.max_pixels) abort();
    pc.mode = (imret_resize_mode)(size % 3);
    pc.filter = (imret_resize_filter)((size / 3) % 4);
    pc.longest_side = 32 + (int)(size % 33);
    pc.resize_side = 48;
    pc.crop_size = 32;
    if (pc.mode == IMRET_RESIZE_NONE && (img.width > 64 || img.height > 64)) pc.mode = IMRET_RESIZE_LONGEST_SIDE;
    if (imret_preprocess(fuzz_model, &img, &pc, &in) == IMRET_OK) {
        if (in.c != 3 || in.w < 1 || in.h < 1) abort();
        if (in.w <= 512 && in.h <= 512 && !fuzz_seen[in.h][in.w] && fuzz_forwards < FUZZ_FORWARDS &&
            (fuzz_seen[in.h][in.w] = 1, fuzz_forwards++, imret_forward(fuzz_ctx, &in, &fmap, NULL) == IMRET_OK)) {
            imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
            float desc[2048];
            if (imret_pool(&fmap, &dc, desc, 2048) != IMRET_OK) abort();
        }
        imret_tensor_free(&in);
    }
    imret_image_free(&img);
    free(c);
    return 0;
}
