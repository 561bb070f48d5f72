/* Fuzz the whitening and hash file loaders (imret_whitening_load_memory,
   imret_hash_load_memory); loaded objects are applied to a vector and saved again. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }

static void use(const uint8_t *d, size_t n) {
    imret_whitening *w = NULL;
    imret_hash *h = NULL;
    if (imret_whitening_load_memory(d, n, &w) == IMRET_OK) {
        imret_whitening_info info;
        float *x, *y;
        size_t sz = 0, i;
        if (imret_whitening_get_info(w, &info) != IMRET_OK) abort();
        x = (float *)calloc(info.in_dim, sizeof(float));
        y = (float *)calloc(info.out_dim, sizeof(float));
        for (i = 0; x && i < info.in_dim; i++) x[i] = (float)(i % 7) - 3.0f;
        if (x && y && imret_whitening_apply(w, x, 1, info.in_dim, y, info.out_dim, 1) != IMRET_OK) abort();
        if (imret_whitening_save_memory(w, NULL, 0, &sz) != IMRET_OK || sz != n) abort(); /* same size back */
        free(x);
        free(y);
        imret_whitening_free(w);
    }
    if (imret_hash_load_memory(d, n, &h) == IMRET_OK) {
        imret_hash_info info;
        float *x;
        uint64_t code[16];
        size_t sz = 0, i;
        if (imret_hash_get_info(h, &info) != IMRET_OK || info.words > 16) abort();
        x = (float *)calloc(info.in_dim, sizeof(float));
        for (i = 0; x && i < info.in_dim; i++) x[i] = (float)(i % 5) - 2.0f;
        if (x && imret_hash_encode(h, x, 1, info.in_dim, code, (size_t)info.words, 1) != IMRET_OK) abort();
        if (imret_hash_save_memory(h, NULL, 0, &sz) != IMRET_OK || sz != n) abort();
        free(x);
        imret_hash_free(h);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *c = fuzz_copy(data, size);
    if (!c) return 0;
    use(c, size);
    if (size >= 64) { /* recorded size and CRC (bytes [0,60) + [64,end)) made right */
        uint32_t crc;
        fuzz_wr64(c + 16, (uint64_t)size);
        crc = fuzz_crc32(fuzz_crc32(0, c, 60), c + 64, size - 64);
        fuzz_wr32(c + 60, crc);
        use(c, size);
    }
    free(c);
    return 0;
}
