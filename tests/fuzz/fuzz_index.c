/* Fuzz the .imri index loader (imret_index_load_memory). A loaded index is searched (top-k
   and range, cosine and Hamming, flat and multi-index hashing), deduplicated, iterated, and
   saved again: save(load(x)) must give x back byte for byte (documented round trip). */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }

static void exercise(imret_index *idx, const uint8_t *d, size_t n) {
    imret_index_config cfg = imret_index_config_init();
    imret_search_options so = imret_search_options_init();
    imret_index_hit hits[4 * 3];
    imret_index_results rr;
    imret_index_entry e;
    size_t counts[4], cursor = 0, live = 0, words, i, q;
    if (imret_index_get_config(idx, &cfg) != IMRET_OK) abort();
    while (imret_index_next(idx, &cursor, &e) == IMRET_OK) {
        imret_index_entry e2;
        if (imret_index_get(idx, e.id, &e2) != IMRET_OK || e2.label_len != e.label_len) abort();
        live++;
    }
    if (live != imret_index_count(idx)) abort();
    so.threads = 1;
    if (cfg.dim) {
        float *qv = (float *)calloc(cfg.dim * 2, sizeof(float));
        if (!qv) return;
        for (i = 0; i < cfg.dim * 2; i++) qv[i] = (float)(n > 0 ? d[i % n] : 1) - 100.0f;
        if (imret_index_search_cosine(idx, qv, 2, 3, &so, hits, counts) != IMRET_OK) abort();
        for (q = 0; q < 2; q++)
            if (counts[q] != (live < 3 ? live : 3)) abort();
        if (imret_index_range_cosine(idx, qv, 2, 0.0f, &so, &rr) != IMRET_OK) abort();
        imret_index_results_free(&rr);
        free(qv);
    }
    if (cfg.bits) {
        uint64_t *qc;
        words = (cfg.bits + 63) / 64;
        qc = (uint64_t *)calloc(words * 2, sizeof(uint64_t));
        if (!qc) return;
        for (i = 0; i < words * 2 && 8 * i + 8 <= n; i++) qc[i] = fuzz_rd64(d + 8 * i);
        if (imret_index_search_hamming(idx, qc, 2, 3, &so, hits, counts) != IMRET_OK) abort();
        if (imret_index_range_hamming(idx, qc, 2, (uint32_t)(cfg.bits / 3), &so, &rr) != IMRET_OK) abort();
        imret_index_results_free(&rr);
        free(qc);
    }
    {
        imret_dedup_options dopt = imret_dedup_options_init();
        imret_dedup_result dr;
        dopt.threads = 1;
        dopt.metric = cfg.bits ? IMRET_METRIC_HAMMING : IMRET_METRIC_COSINE;
        dopt.threshold = cfg.bits ? 8.0 : 0.9;
        if (imret_index_dedup(idx, &dopt, &dr) != IMRET_OK) abort();
        imret_dedup_result_free(&dr);
    }
    { /* save -> identical bytes */
        size_t sz = 0;
        uint8_t *buf;
        if (imret_index_save_memory(idx, NULL, 0, &sz) != IMRET_OK || sz != n) abort();
        buf = (uint8_t *)malloc(sz);
        if (!buf) return;
        if (imret_index_save_memory(idx, buf, sz, &sz) != IMRET_OK || memcmp(buf, d, n) != 0) abort();
        free(buf);
    }
}

static void load(const uint8_t *d, size_t n) {
    imret_index *idx = NULL;
    imret_index_config cfg;
    if (imret_index_load_memory(d, n, NULL, &idx) == IMRET_OK) {
        exercise(idx, d, n);
        /* MIH tables cost O(bits x entries) to build: linear in the file, but 65536-bit codes
           made this harness 20x slower; up to 1024 bits covers every table shape */
        if (imret_index_count(idx) >= 2 && imret_index_get_config(idx, &cfg) == IMRET_OK && cfg.bits <= 1024 &&
            imret_index_build_mih(idx, 0) == IMRET_OK)
            exercise(idx, d, n);
        imret_index_destroy(idx);
    } else if (!imret_last_error()[0]) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *c = fuzz_copy(data, size);
    if (!c) return 0;
    load(c, size);
    if (size >= 96) { /* size, data CRC (over [96,end)) and header CRC (over [0,92)) made right */
        fuzz_wr64(c + 16, (uint64_t)size);
        fuzz_wr32(c + 80, fuzz_crc32(0, c + 96, size - 96));
        fuzz_wr32(c + 92, fuzz_crc32(0, c, 92));
        load(c, size);
    }
    free(c);
    return 0;
}
