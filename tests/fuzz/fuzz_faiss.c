/* Fuzz the FAISS import (imret_index_import_faiss_memory, which the file import uses). An
   imported index must hold as many entries as the file declares and answer a search. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *c = fuzz_copy(data, size);
    imret_index *idx = NULL;
    imret_index_config cfg = imret_index_config_init();
    if (!c) return 0;
    cfg.storage = (size & 1) ? IMRET_INDEX_FP16 : IMRET_INDEX_FP32;
    if (imret_index_import_faiss_memory(c, size, &cfg, NULL, &idx) == IMRET_OK) {
        imret_index_config got = imret_index_config_init(); /* initialised: g++/gcc -O2 cannot see get_config sets it */
        imret_search_options so = imret_search_options_init();
        imret_index_hit hits[2];
        size_t count, n = imret_index_count(idx);
        so.threads = 1;
        if (imret_index_get_config(idx, &got) != IMRET_OK) abort();
        if (got.dim) {
            float *q = (float *)calloc(got.dim, sizeof(float));
            if (q) {
                q[0] = 1.0f;
                if (imret_index_search_cosine(idx, q, 1, 2, &so, hits, &count) != IMRET_OK || count != (n < 2 ? n : 2)) abort();
            }
            free(q);
        } else {
            uint64_t q[1024] = {0};
            if (imret_index_search_hamming(idx, q, 1, 2, &so, hits, &count) != IMRET_OK || count != (n < 2 ? n : 2)) abort();
        }
        imret_index_destroy(idx);
    } else if (!imret_last_error()[0]) {
        abort();
    }
    free(c);
    return 0;
}
