/* Writes small valid .imri / whitening / hash / FAISS files for the fuzz seed corpora
   (tests/fuzz/make_seeds.py runs it): seedgen OUTDIR. Built like the tests (any C99 cc). */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
static void put(const char *dir, const char *name, const void *buf, size_t n) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n) { printf("cannot write %s\n", path); fails++; }
    if (f) fclose(f);
}
static float frand(unsigned *s) { *s = *s * 1103515245u + 12345u; return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f; }

static void index_seed(const char *dir, const char *name, size_t dim, imret_index_storage st, size_t bits, size_t n, int labels) {
    imret_index_config c = imret_index_config_init();
    imret_index *idx;
    unsigned s = 7;
    size_t i, j, sz;
    float v[64];
    uint64_t code[2];
    uint8_t *buf;
    char lab[32];
    c.dim = dim; c.storage = st; c.bits = bits; c.descriptor = "seed gem p=3"; c.model_fingerprint = 0x1234;
    if (imret_index_create(&c, &idx)) { fails++; return; }
    for (i = 0; i < n; i++) {
        for (j = 0; j < dim; j++) v[j] = frand(&s);
        s = s * 69069u + 1;
        code[0] = ((uint64_t)s << 32) ^ (s * 3u);
        code[1] = code[0] * 31;
        if (i == 4) { for (j = 0; j < dim; j++) v[j] = (float)j; code[0] = 0xff; } /* near duplicates: */
        if (i == 5) { for (j = 0; j < dim; j++) v[j] = (float)j + 0.01f; code[0] = 0x7f; } /* entries 4, 5 */
        snprintf(lab, sizeof lab, "img/%u.jpg", (unsigned)i);
        if (imret_index_add(idx, 100 + i * 3, labels ? lab : NULL, dim ? v : NULL, bits ? code : NULL)) fails++;
    }
    if (n > 2) imret_index_remove(idx, 100 + 3);
    imret_index_save_memory(idx, NULL, 0, &sz);
    buf = (uint8_t *)malloc(sz);
    imret_index_save_memory(idx, buf, sz, &sz);
    put(dir, name, buf, sz);
    free(buf);
    if (dim && st == IMRET_INDEX_FP32) {
        char p[1024];
        snprintf(p, sizeof p, "%s/faiss_%s.ixfi", dir, name);
        if (imret_index_export_faiss(idx, IMRET_METRIC_COSINE, p, NULL)) fails++;
    }
    if (bits && bits % 8 == 0) {
        char p[1024];
        snprintf(p, sizeof p, "%s/faiss_%s.ibxf", dir, name);
        if (imret_index_export_faiss(idx, IMRET_METRIC_HAMMING, p, NULL)) fails++;
    }
    imret_index_destroy(idx);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    float x[40 * 16];
    unsigned s = 3;
    size_t i, sz;
    uint8_t *buf;
    imret_whitening *w;
    imret_hash *h;
    imret_whitening_config wc = imret_whitening_config_init();
    imret_hash_config hc = imret_hash_config_init();
    index_seed(dir, "cos8_fp32.imri", 8, IMRET_INDEX_FP32, 0, 6, 1);
    index_seed(dir, "cos5_fp16.imri", 5, IMRET_INDEX_FP16, 0, 4, 0);
    index_seed(dir, "ham64.imri", 0, IMRET_INDEX_FP32, 64, 7, 1);
    index_seed(dir, "ham100.imri", 0, IMRET_INDEX_FP32, 100, 3, 0);
    index_seed(dir, "both.imri", 4, IMRET_INDEX_FP16, 128, 5, 1);
    index_seed(dir, "empty.imri", 3, IMRET_INDEX_FP32, 0, 0, 0);
    for (i = 0; i < 40 * 16; i++) x[i] = frand(&s);
    wc.out_dim = 4;
    if (imret_whitening_train(x, 40, 16, &wc, &w)) fails++;
    else {
        imret_whitening_save_memory(w, NULL, 0, &sz);
        buf = (uint8_t *)malloc(sz);
        imret_whitening_save_memory(w, buf, sz, &sz);
        put(dir, "whiten16to4.imwh", buf, sz);
        free(buf);
        imret_whitening_free(w);
    }
    hc.bits = 64;
    hc.method = IMRET_HASH_ITQ;
    hc.itq_iterations = 3;
    if (imret_hash_train(x, 40, 16, &hc, &h)) fails++;
    else {
        imret_hash_save_memory(h, NULL, 0, &sz);
        buf = (uint8_t *)malloc(sz);
        imret_hash_save_memory(h, buf, sz, &sz);
        put(dir, "itq16x64.imhs", buf, sz);
        free(buf);
        imret_hash_free(h);
    }
    hc.method = IMRET_HASH_LSH;
    hc.bits = 128;
    if (imret_hash_train(NULL, 0, 3, &hc, &h)) fails++;
    else {
        imret_hash_save_memory(h, NULL, 0, &sz);
        buf = (uint8_t *)malloc(sz);
        imret_hash_save_memory(h, buf, sz, &sz);
        put(dir, "lsh3x128.imhs", buf, sz);
        free(buf);
        imret_hash_free(h);
    }
    if (fails) printf("seedgen: %d failures (%s)\n", fails, imret_last_error());
    return fails != 0;
}
