/* Fuzz the .imw weight loader (imret_model_load_memory). No legal architecture is small
   (ResNet-18 holds 11.7 M weights), so inputs are partial models: the fuzzer explores the
   header, the tensor table, the per-tensor validation and the architecture walk up to the
   first missing tensor (seeds hold a ResNet-18 stem and a VGG11 first layer). */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }

static void load(const uint8_t *d, size_t n, int skip_crc) {
    imret_model_config cfg = imret_model_config_init();
    imret_model *m = NULL;
    cfg.max_file_bytes = (size_t)64 << 20;
    cfg.skip_checksum = skip_crc;
    if (imret_model_load_memory(d, n, &cfg, &m) == IMRET_OK) {
        imret_model_info info;
        if (imret_model_get_info(m, &info) != IMRET_OK || info.feature_channels <= 0) abort();
        imret_model_free(m);
    } else if (!imret_last_error()[0]) {
        abort(); /* every failure must say why */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *c = fuzz_copy(data, size);
    if (!c) return 0;
    load(c, size, 0);
    if (size >= 32) { /* header size and CRC made right: the checks behind them */
        fuzz_wr64(c + 24, (uint64_t)size);
        fuzz_wr32(c + 20, fuzz_crc32(0, c + 24, size - 24));
        load(c, size, 0);
        load(c, size, 1);
    }
    free(c);
    return 0;
}
