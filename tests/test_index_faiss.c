/* test_index_faiss.c -- FAISS interop both ways, checked by FAISS 1.7.3 itself
   (tests/ref_index_faiss.py, run with /usr/bin/python3):
   imret exports IndexFlatIP / IndexBinaryFlat -> faiss.read_index sees the same vectors and
   codes bit for bit; FAISS writes its own indexes of the same data -> imret imports them,
   holds the same vectors/codes, and its top-5 equals FAISS's search on them.
   usage: test_index_faiss [dir=build] */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL: "); printf(__VA_ARGS__); printf(" [%s]\n", imret_last_error()); } } while (0)

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "build";
    char p1[512], p2[512], cmd[1200];
    size_t n = 500, dim = 48, bits = 136, words = 3, i, d, q, j;
    uint64_t st = 77, *ids = (uint64_t *)malloc(n * 8), *order = (uint64_t *)malloc(n * 8);
    float *vin = (float *)malloc(n * dim * 4), *vst = (float *)malloc(n * dim * 4);
    uint64_t *codes = (uint64_t *)calloc(n * words, 8);
    imret_index_config cfg = imret_index_config_init();
    imret_index *idx, *a = NULL, *b = NULL;
    FILE *f;
    double worst = 0;
    cfg.dim = dim; cfg.bits = bits; cfg.storage = IMRET_INDEX_FP16;
    imret_index_create(&cfg, &idx);
    for (i = 0; i < n; i++) {
        for (d = 0; d < dim; d++) { st = st * 6364136223846793005ull + 1442695040888963407ull; vin[i * dim + d] = (float)((int64_t)(st >> 33) % 1000) / 100.0f; }
        for (d = 0; d < words; d++) { st = st * 6364136223846793005ull + 1442695040888963407ull; codes[i * words + d] = st ^ (st << 17); }
        codes[i * words + 2] &= 0xff;
        ids[i] = 1000 + i * 7;
        imret_index_add(idx, ids[i], NULL, vin + i * dim, codes + i * words);
    }
    for (i = 0; i < n; i += 9) imret_index_remove(idx, ids[i]); /* exports skip tombstones */
    snprintf(p1, sizeof p1, "%s/imret_ip.faiss", dir);
    snprintf(p2, sizeof p2, "%s/imret_bin.faiss", dir);
    CHECK(imret_index_export_faiss(idx, IMRET_METRIC_COSINE, p1, order) == IMRET_OK, "export IP");
    CHECK(imret_index_export_faiss(idx, IMRET_METRIC_HAMMING, p2, NULL) == IMRET_OK, "export binary");
    {   /* raw data as stored (live entries, iteration order) for the Python side */
        size_t live = imret_index_count(idx), cur = 0, e = 0;
        uint64_t h[3] = {live, dim, bits};
        imret_index_entry en;
        snprintf(cmd, sizeof cmd, "%s/faiss_raw.bin", dir);
        f = fopen(cmd, "wb");
        fwrite(h, 8, 3, f);
        while (imret_index_next(idx, &cur, &en) == IMRET_OK) {
            imret_index_get_vector(idx, en.id, vst + e * dim);
            CHECK(en.id == order[e], "ids_out order");
            e++;
        }
        fwrite(vst, 4, live * dim, f);
        cur = 0;
        while (imret_index_next(idx, &cur, &en) == IMRET_OK) fwrite(en.code, 8, words, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref_index_faiss.py %s", dir);
        CHECK(system(cmd) == 0, "FAISS could not read/verify imret's exports");
        snprintf(p1, sizeof p1, "%s/py_ip.faiss", dir);
        snprintf(p2, sizeof p2, "%s/py_bin.faiss", dir);
        cfg = imret_index_config_init();
        cfg.normalize = 0; /* keep FAISS's vectors exactly */
        CHECK(imret_index_import_faiss(p1, &cfg, order, &a) == IMRET_OK, "import IP");
        CHECK(imret_index_import_faiss(p2, &cfg, order, &b) == IMRET_OK, "import binary");
        if (a && b) {
            int64_t I1[40], I2[40];
            float D1[40];
            int32_t D2[40];
            imret_index_hit h1[40], h2[40];
            float qv[8 * 48];
            uint64_t qc[8 * 3];
            CHECK(imret_index_count(a) == live && imret_index_count(b) == live, "imported counts");
            for (e = 0; e < live; e++) {
                float got[48];
                imret_index_entry ea, eb, eo;
                imret_index_get_vector(a, order[e], got);
                CHECK(!memcmp(got, vst + e * dim, dim * 4), "imported vector %lu differs", (unsigned long)e);
                imret_index_get(b, order[e], &eb);
                imret_index_get(idx, order[e], &eo);
                CHECK(!memcmp(eb.code, eo.code, words * 8), "imported code %lu differs", (unsigned long)e);
                (void)ea;
            }
            snprintf(cmd, sizeof cmd, "%s/faiss_search.bin", dir);
            f = fopen(cmd, "rb");
            if (!f || fread(I1, 8, 40, f) != 40 || fread(D1, 4, 40, f) != 40 || fread(I2, 8, 40, f) != 40 || fread(D2, 4, 40, f) != 40) {
                CHECK(0, "faiss_search.bin");
            }
            if (f) fclose(f);
            memcpy(qv, vst, sizeof qv);
            for (q = 0; q < 8; q++) { imret_index_entry eo; imret_index_get(idx, order[q], &eo); memcpy(qc + q * 3, eo.code, 24); }
            CHECK(imret_index_search_cosine(a, qv, 8, 5, NULL, h1, NULL) == IMRET_OK, "search imported IP");
            CHECK(imret_index_search_hamming(b, qc, 8, 5, NULL, h2, NULL) == IMRET_OK, "search imported binary");
            for (q = 0; q < 8; q++)
                for (j = 0; j < 5; j++) {
                    double err = fabs((double)h1[q * 5 + j].score - D1[q * 5 + j]) / (fabs(D1[q * 5 + j]) + 1);
                    if (err > worst) worst = err;
                    CHECK(err < 1e-5, "IP score rank %lu: %g vs FAISS %g", (unsigned long)j, h1[q * 5 + j].score, D1[q * 5 + j]);
                    CHECK(h2[q * 5 + j].score == (float)D2[q * 5 + j], "Hamming rank %lu: %g vs FAISS %d", (unsigned long)j, h2[q * 5 + j].score, D2[q * 5 + j]);
                    if (j == 0) CHECK(h1[q * 5].id == order[I1[q * 5]] && h2[q * 5].id == order[I2[q * 5]], "top-1 id vs FAISS");
                }
            /* bad files */
            f = fopen(p1, "r+b");
            if (f) { fseek(f, 33, SEEK_SET); fputc(1, f); fclose(f); }
            imret_index_destroy(a); a = NULL;
            CHECK(imret_index_import_faiss(p1, &cfg, NULL, &a) == IMRET_ERROR_FORMAT && !a, "L2 metric refused");
            snprintf(cmd, sizeof cmd, "%s/faiss_raw.bin", dir);
            CHECK(imret_index_import_faiss(cmd, &cfg, NULL, &a) == IMRET_ERROR_FORMAT && !a, "not a FAISS file");
        }
    }
    printf("faiss interop: export IndexFlatIP (fp16 -> fp32) / IndexBinaryFlat (136 bits) read by FAISS 1.7.3 bit-identical; FAISS-written "
           "indexes imported bit-identical, top-5 vs FAISS search: worst relative score error %.3g, Hamming exact: %s\n",
           worst, fails ? "FAILED" : "ok");
    imret_index_destroy(idx); imret_index_destroy(a); imret_index_destroy(b);
    free(ids); free(order); free(vin); free(vst); free(codes);
    return fails ? 1 : 0;
}
