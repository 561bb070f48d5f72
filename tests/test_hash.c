/* Hash layer vs numpy/PyTorch (tests/ref_whiten.py -> hash.ref.imw):
   - ITQ from numpy's initial rotation: loss of every iteration vs the numpy (SVD-based) ITQ,
     loss non-increasing, rotation orthogonal, learned layer W = (E_k R)^T vs numpy;
   - PCAH rows vs numpy eigh; LSH rows bit-identical to the Python port of the generator;
   - a torch.nn.Linear layer: codes vs torch's projections packed by numpy.packbits;
   - bit order on hand-made inputs, Hamming distances vs a brute-force count of sign
     differences; rank fallback (ITQ + LSH) and its message; 1 vs 2 threads identical;
   - save/load round trip, truncated/corrupt files, wrong dimensions -> clear errors.
   `test_hash --time N D BITS` times ITQ training on random data. */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <time.h>

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; printf("  FAIL: "); printf(__VA_ARGS__); printf("\n"); } } while (0)

static float *get(const imret__imw *w, const char *name, const imret__imw_tensor **t) {
    float *f;
    *t = imret__imw_find(w, name);
    if (!*t) { printf("FAIL: %s not in the reference\n", name); exit(1); }
    f = (float *)malloc((*t)->count * sizeof(float));
    imret__imw_to_f32(*t, f);
    return f;
}

static int popcount64(uint64_t v) { int c = 0; while (v) { v &= v - 1; c++; } return c; }

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > m) m = fabs((double)a[i] - b[i]);
    return m;
}

static int time_itq(size_t n, size_t d, int bits) {
    float *x = (float *)malloc(sizeof(float) * n * d);
    imret_hash_config cfg = imret_hash_config_init();
    imret_hash *h;
    uint64_t st = 3;
    size_t i;
    clock_t c0;
    time_t t0;
    for (i = 0; i < n * d; i++) x[i] = (float)((double)(imret__desc_splitmix64(&st) >> 11) / 9007199254740992.0 * (1.0 + (double)(i % d) / 8.0));
    cfg.bits = bits;
    c0 = clock(); t0 = time(NULL);
    if (imret_hash_train(x, n, d, &cfg, &h)) { printf("FAIL %s\n", imret_last_error()); return 1; }
    printf("ITQ %d bits, %lu x %lu, %d iterations: %.1f s CPU, ~%ld s wall\n", bits, (unsigned long)n, (unsigned long)d, cfg.itq_iterations,
           (double)(clock() - c0) / CLOCKS_PER_SEC, (long)(time(NULL) - t0));
    imret_hash_free(h);
    free(x);
    return 0;
}

static void corrupt_tests(const imret_hash *h) {
    size_t size, cut;
    uint8_t *buf, *b2;
    imret_hash *x = NULL;
    imret_result rc;
    int bad = 0, nt = 0, nf = 0;
    imret_hash_save_memory(h, NULL, 0, &size);
    buf = (uint8_t *)malloc(size);
    b2 = (uint8_t *)malloc(size);
    imret_hash_save_memory(h, buf, size, &size);
    for (cut = 0; cut < size; cut += cut < 200 ? 1 : 113) {
        rc = imret_hash_load_memory(buf, cut, &x);
        nt++;
        if (rc != IMRET_ERROR_FORMAT || x) { bad++; imret_hash_free(x); x = NULL; }
    }
    CHECK(!bad, "%d of %d truncations not refused", bad, nt);
    bad = 0;
    for (cut = 0; cut < size; cut += cut < 64 ? 1 : 71) {
        memcpy(b2, buf, size);
        b2[cut] ^= 0x04;
        nf++;
        if (imret_hash_load_memory(b2, size, &x) == IMRET_OK) { bad++; imret_hash_free(x); x = NULL; }
    }
    CHECK(!bad, "%d of %d bit flips accepted", bad, nf);
    imret_hash_load_memory(buf, size / 2, &x);
    printf("  %d truncations and %d single-bit flips refused, e.g. \"%s\"", nt, nf, imret_last_error());
    memcpy(b2, buf, size); b2[size - 1] ^= 0x80;
    CHECK(imret_hash_load_memory(b2, size, &x) == IMRET_ERROR_CHECKSUM, "flipped last byte -> checksum error");
    printf(", \"%s\"\n", imret_last_error());
    memcpy(b2, buf, size); b2[8] = 9;
    CHECK(imret_hash_load_memory(b2, size, &x) == IMRET_ERROR_VERSION, "version 9 -> version error");
    CHECK(imret_hash_load_file("/nonexistent/h.imrh", &x) == IMRET_ERROR_IO && !x, "missing file -> IO error");
    free(buf); free(b2);
}

int main(int argc, char **argv) {
    uint8_t *buf;
    size_t size;
    imret__imw w;
    const imret__imw_tensor *t;
    float *x, *q, *r0, *loss_ref, *itq_w, *pcah_w, *lsh_w, *lin_w, *lin_b, *lin_proj, *code16;
    size_t n, m, d, i, j, b;
    int k, iters;
    double worst_loss = 0, worst_w = 0, worst_orth = 0;
    char val[32];
    const char *tmp_path = "build/test_hash.tmp.imrh";
    imret_hash *itq = NULL;
    imret_hash_info info;
    if (argc >= 5 && !strcmp(argv[1], "--time")) return time_itq((size_t)atol(argv[2]), (size_t)atol(argv[3]), atoi(argv[4]));
    if (argc < 2) { fprintf(stderr, "usage: %s hash.ref.imw [tmpfile] | --time N D BITS\n", argv[0]); return 2; }
    if (argc > 2) tmp_path = argv[2];
    if (imret__read_file(argv[1], 1 << 28, "ref", &buf, &size, NULL) || imret__imw_parse(buf, size, 1, &w)) { printf("FAIL %s\n", imret_last_error()); return 1; }
    x = get(&w, "x", &t); n = t->shape[0]; d = t->shape[1];
    q = get(&w, "q", &t); m = t->shape[0];
    r0 = get(&w, "r0", &t); k = (int)t->shape[0];
    loss_ref = get(&w, "itq_loss", &t); iters = (int)t->count - 1;
    itq_w = get(&w, "itq_w", &t); pcah_w = get(&w, "pcah_w", &t); lsh_w = get(&w, "lsh_w", &t);
    lin_w = get(&w, "lin_w", &t); lin_b = get(&w, "lin_b", &t); lin_proj = get(&w, "lin_proj", &t); code16 = get(&w, "lin_code16", &t);
    imret__imw_get(&w, "itq_iterations", val, sizeof val);
    CHECK(atoi(val) == iters, "iteration count");

    printf("ITQ: %lu vectors of dimension %lu -> %d bits, %d iterations from numpy's initial rotation\n", (unsigned long)n, (unsigned long)d, k, iters);
    {
        imret_hash_config cfg = imret_hash_config_init();
        imret_hash *itq1;
        int it, mono = 1;
        cfg.bits = k; cfg.itq_init = r0; cfg.itq_iterations = iters; cfg.threads = 2;
        if (imret_hash_train(x, n, d, &cfg, &itq)) { printf("FAIL train ITQ: %s\n", imret_last_error()); return 1; }
        imret_hash_get_info(itq, &info);
        CHECK(info.learned_bits == k && info.message[0] == 0, "all %d bits learned (%d, \"%s\")", k, info.learned_bits, info.message);
        for (it = 0; it <= iters; it++) {
            double e = fabs(info.itq_loss[it] - loss_ref[it]) / loss_ref[it];
            if (e > worst_loss) worst_loss = e;
            if (it && info.itq_loss[it] > info.itq_loss[it - 1] * (1 + 1e-12)) mono = 0;
        }
        CHECK(mono, "ITQ loss increased at some iteration");
        CHECK(worst_loss < 1e-5, "ITQ loss vs numpy: max relative diff %.2e", worst_loss);
        printf("  loss %.4f -> %.4f, non-increasing over all %d iterations: %s; vs numpy max relative diff %.2e\n", info.itq_loss[0], info.itq_loss[iters],
               iters, mono ? "yes" : "NO", worst_loss);
        for (i = 0; i < (size_t)k; i++)
            for (j = 0; j < (size_t)k; j++) {
                double s = 0;
                for (b = 0; b < (size_t)k; b++) s += info.itq_rotation[b * k + i] * info.itq_rotation[b * k + j];
                if (fabs(s - (i == j)) > worst_orth) worst_orth = fabs(s - (i == j));
            }
        CHECK(worst_orth < 1e-10, "R^T R - I: %.2e", worst_orth);
        worst_w = max_abs_diff(info.weight, itq_w, (size_t)k * d);
        CHECK(worst_w < 1e-5, "ITQ layer W vs numpy: %.2e", worst_w);
        printf("  max|R^T R - I| %.2e; learned layer W = (E_k R)^T vs numpy: max |diff| %.2e\n", worst_orth, worst_w);
        cfg.threads = 1;
        imret_hash_train(x, n, d, &cfg, &itq1);
        {
            imret_hash_info i1;
            imret_hash_get_info(itq1, &i1);
            CHECK(!memcmp(i1.weight, info.weight, sizeof(float) * k * d), "ITQ on 1 thread differs from 2 threads");
        }
        imret_hash_free(itq1);
    }
    { /* PCAH and LSH */
        imret_hash_config cfg = imret_hash_config_init();
        imret_hash *h;
        imret_hash_info hi;
        double md;
        int exact = 0;
        cfg.method = IMRET_HASH_PCAH; cfg.bits = k;
        CHECK(imret_hash_train(x, n, d, &cfg, &h) == IMRET_OK, "PCAH: %s", imret_last_error());
        imret_hash_get_info(h, &hi);
        md = max_abs_diff(hi.weight, pcah_w, (size_t)k * d);
        CHECK(md < 1e-6, "PCAH rows vs numpy eigh: %.2e", md);
        printf("PCAH: %d rows vs numpy eigh (signs by the largest component): max |diff| %.2e\n", k, md);
        if (md > worst_w) worst_w = md;
        imret_hash_free(h);
        cfg = imret_hash_config_init();
        cfg.method = IMRET_HASH_LSH; cfg.bits = 64; cfg.seed = 12345;
        CHECK(imret_hash_train(NULL, 0, d, &cfg, &h) == IMRET_OK, "LSH without data: %s", imret_last_error());
        imret_hash_get_info(h, &hi);
        for (i = 0; i < 64 * d; i++) exact += hi.weight[i] == lsh_w[i];
        CHECK(exact == (int)(64 * d), "LSH rows: %d of %lu bit-identical to the Python generator", exact, (unsigned long)(64 * d));
        for (i = 0; i < d; i++) CHECK(hi.mean[i] == 0, "LSH without data: zero mean");
        printf("LSH (seed 12345): %d of %lu Gaussian weights bit-identical to the Python port of splitmix64 + polar method\n", exact,
               (unsigned long)(64 * d));
        imret_hash_free(h);
    }
    { /* a PyTorch linear layer; codes vs numpy.packbits of torch's projections */
        imret_hash *h;
        uint64_t codes[50 * 2];
        size_t wrong = 0, close = 0;
        CHECK(imret_hash_create_linear(lin_w, lin_b, NULL, d, 128, &h) == IMRET_OK, "create_linear: %s", imret_last_error());
        CHECK(imret_hash_encode(h, q, m, d, codes, 2, 0) == IMRET_OK, "encode: %s", imret_last_error());
        for (i = 0; i < m; i++)
            for (b = 0; b < 128; b++) {
                uint64_t word = 0;
                int bit, ref;
                for (j = 0; j < 4; j++) word |= (uint64_t)(uint16_t)code16[i * 8 + (b / 64) * 4 + j] << (16 * j);
                ref = (int)(word >> (b % 64) & 1);
                bit = (int)(codes[i * 2 + b / 64] >> (b % 64) & 1);
                if (fabs(lin_proj[i * 128 + b]) < 1e-5) { close++; continue; }
                if (bit != ref) wrong++;
            }
        CHECK(wrong == 0, "linear layer: %lu bits differ from torch+packbits", (unsigned long)wrong);
        printf("linear layer (torch.nn.Linear(%lu, 128)): %lu codes, %lu bits vs numpy.packbits(little) of torch's signs: %lu differ (%lu within 1e-5 of 0 skipped)\n",
               (unsigned long)d, (unsigned long)m, (unsigned long)(m * 128), (unsigned long)wrong, (unsigned long)close);
        imret_hash_free(h);
    }
    { /* bit order on a hand-made layer: W = I (128 x 128), bit b follows the sign of x[b] */
        static float eye[128 * 128];
        float v[128];
        uint64_t code[2], expect[2] = {0, 0};
        imret_hash *h;
        for (i = 0; i < 128; i++) eye[i * 128 + i] = 1;
        for (i = 0; i < 128; i++) {
            v[i] = (i * 37 + 11) % 7 < 3 ? 1.0f : -1.0f;
            if (i == 5 || i == 70) v[i] = 0.0f; /* projection exactly 0: bit clear */
        }
        v[0] = 1; v[63] = 1; v[64] = 1; v[127] = 1; v[1] = -1; v[62] = -1; v[65] = -1; v[126] = -1;
        for (i = 0; i < 128; i++)
            if (v[i] > 0) expect[i / 64] |= (uint64_t)1 << (i % 64);
        imret_hash_create_linear(eye, NULL, NULL, 128, 128, &h);
        imret_hash_encode(h, v, 1, 128, code, 2, 1);
        CHECK(code[0] == expect[0] && code[1] == expect[1], "bit order: %016llx %016llx, expected %016llx %016llx", (unsigned long long)code[0],
              (unsigned long long)code[1], (unsigned long long)expect[0], (unsigned long long)expect[1]);
        CHECK((code[0] & 1) && (code[0] >> 63 & 1) && (code[1] & 1) && (code[1] >> 63 & 1) && !(code[0] >> 1 & 1) && !(code[1] >> 1 & 1) &&
                  !(code[0] >> 5 & 1) && !(code[1] >> 6 & 1),
              "bits 0, 63, 64, 127 set; 1, 65 clear; 5 and 70 (projection 0) clear");
        printf("bit order: bit b -> word b/64, bit b%%64, set iff projection > 0: words %016llx %016llx as expected\n", (unsigned long long)code[0],
               (unsigned long long)code[1]);
        imret_hash_free(h);
    }
    { /* Hamming distance from packed words vs brute-force count of differing projection signs */
        uint64_t *codes = (uint64_t *)malloc(sizeof(uint64_t) * m * (k / 64));
        signed char *sg = (signed char *)malloc(m * (size_t)k);
        size_t pairs = 0, bad = 0;
        int words = k / 64;
        imret_hash_get_info(itq, &info);
        CHECK(imret_hash_encode(itq, q, m, d, codes, (size_t)words, 2) == IMRET_OK, "encode ITQ");
        for (i = 0; i < m; i++)
            for (b = 0; b < (size_t)k; b++) {
                double s = info.bias[b];
                for (j = 0; j < d; j++) s += (double)info.weight[b * d + j] * ((double)q[i * d + j] - info.mean[j]);
                sg[i * k + b] = s > 0;
            }
        for (i = 0; i < m; i++)
            for (j = 0; j < m; j++) {
                int hd = 0, bf = 0, ww;
                for (ww = 0; ww < words; ww++) hd += popcount64(codes[i * words + ww] ^ codes[j * words + ww]);
                for (b = 0; b < (size_t)k; b++) bf += sg[i * k + b] != sg[j * k + b];
                pairs++;
                bad += hd != bf;
            }
        CHECK(bad == 0, "Hamming: %lu of %lu pairs differ from brute force", (unsigned long)bad, (unsigned long)pairs);
        printf("Hamming distance (popcount of xor) vs brute-force sign differences: %lu pairs, %lu differ\n", (unsigned long)pairs, (unsigned long)bad);
        {
            uint64_t *c1 = (uint64_t *)malloc(sizeof(uint64_t) * m * words);
            imret_hash_encode(itq, q, m, d, c1, (size_t)words, 1);
            CHECK(!memcmp(c1, codes, sizeof(uint64_t) * m * words), "encode: 1 thread differs from 2");
            free(c1);
        }
        free(codes); free(sg);
    }
    { /* rank fallback: 40 vectors have rank 39 < 64 bits */
        imret_hash_config cfg = imret_hash_config_init();
        imret_hash *h, *l;
        imret_hash_info hi, li;
        cfg.bits = 64; cfg.seed = 99;
        CHECK(imret_hash_train(x, 40, d, &cfg, &h) == IMRET_OK, "ITQ on 40 vectors: %s", imret_last_error());
        imret_hash_get_info(h, &hi);
        CHECK(hi.learned_bits == 39 && strstr(hi.message, "rank 39") != NULL, "fallback: %d learned bits, message \"%s\"", hi.learned_bits, hi.message);
        printf("rank fallback: \"%s\"\n", hi.message);
        cfg.method = IMRET_HASH_LSH;
        imret_hash_train(NULL, 0, d, &cfg, &l);
        imret_hash_get_info(l, &li);
        CHECK(!memcmp(hi.weight + 39 * d, li.weight + 39 * d, sizeof(float) * 25 * d), "fallback rows 39..63 = LSH rows of the same seed");
        imret_hash_free(l);
        imret_hash_free(h);
        cfg = imret_hash_config_init();
        cfg.bits = 64; cfg.fallback = IMRET_HASH_FALLBACK_REFUSE;
        CHECK(imret_hash_train(x, 40, d, &cfg, &h) == IMRET_ERROR_INVALID_ARGUMENT, "FALLBACK_REFUSE on 40 vectors refused");
        printf("  with FALLBACK_REFUSE: \"%s\"\n", imret_last_error());
        cfg.method = IMRET_HASH_PCAH; cfg.fallback = IMRET_HASH_FALLBACK_LSH; cfg.bits = 128;
        CHECK(imret_hash_train(x, n, d, &cfg, &h) == IMRET_OK, "PCAH 128 bits of a 96-dim set");
        imret_hash_get_info(h, &hi);
        CHECK(hi.learned_bits == 96, "PCAH 128 bits on dimension 96: %d learned (\"%s\")", hi.learned_bits, hi.message);
        imret_hash_free(h);
    }
    { /* save / load round trip, bad input */
        imret_hash *back = NULL, *h;
        uint64_t c1[2], c2[2];
        imret_hash_config cfg = imret_hash_config_init();
        CHECK(imret_hash_save_file(itq, tmp_path) == IMRET_OK, "save_file: %s", imret_last_error());
        CHECK(imret_hash_load_file(tmp_path, &back) == IMRET_OK, "load_file: %s", imret_last_error());
        if (back) {
            imret_hash_info bi;
            imret_hash_get_info(back, &bi);
            imret_hash_encode(itq, q, 2, d, c1, 1, 1);
            imret_hash_encode(back, q, 2, d, c2, 1, 1);
            CHECK(bi.method == IMRET_HASH_ITQ && bi.bits == k && bi.learned_bits == k && bi.in_dim == d && !memcmp(c1, c2, sizeof c1),
                  "round trip changed the layer");
            printf("saved to %s and loaded back: identical codes\n", tmp_path);
            imret_hash_free(back);
        }
        remove(tmp_path);
        CHECK(imret_hash_encode(itq, q, 1, d - 1, c1, 1, 1) == IMRET_ERROR_SHAPE, "encode of a %lu-dim vector with a %lu-dim layer", (unsigned long)d - 1,
              (unsigned long)d);
        printf("wrong dimension: \"%s\"\n", imret_last_error());
        CHECK(imret_hash_encode(itq, q, 1, d, c1, 2, 1) == IMRET_ERROR_SHAPE, "2 words for a 64-bit layer");
        { /* whitening output (D' = 48) into a hash layer trained on 96 dims */
            imret_whitening_config wc = imret_whitening_config_init();
            imret_whitening *wh;
            float y[48];
            wc.out_dim = 48;
            imret_whitening_train(x, n, d, &wc, &wh);
            imret_whitening_apply(wh, q, 1, d, y, 48, 1);
            CHECK(imret_hash_encode(itq, y, 1, 48, c1, 1, 1) == IMRET_ERROR_SHAPE, "whitened 48-dim into a 96-dim hash");
            printf("whitening -> hash mismatch: \"%s\"\n", imret_last_error());
            imret_whitening_free(wh);
        }
        cfg.bits = 100;
        CHECK(imret_hash_train(x, n, d, &cfg, &h) == IMRET_ERROR_INVALID_ARGUMENT, "100 bits refused");
        cfg = imret_hash_config_init();
        CHECK(imret_hash_train(x, 1, d, &cfg, &h) == IMRET_ERROR_INVALID_ARGUMENT, "ITQ on 1 vector refused (%s)", imret_last_error());
        cfg.bits = 64;
        cfg.itq_init = lsh_w; /* not orthogonal */
        CHECK(imret_hash_train(x, n, d, &cfg, &h) == IMRET_ERROR_INVALID_ARGUMENT, "non-orthogonal itq_init refused (%s)", imret_last_error());
        cfg = imret_hash_config_init();
        cfg.method = (imret_hash_method)7;
        CHECK(imret_hash_train(x, n, d, &cfg, &h) == IMRET_ERROR_INVALID_ARGUMENT, "method 7 refused");
        CHECK(imret_hash_create_linear(lin_w, NULL, NULL, d, 96, &h) == IMRET_ERROR_INVALID_ARGUMENT, "96-bit linear layer refused");
        corrupt_tests(itq);
    }
    imret_hash_free(itq);
    free(x); free(q); free(r0); free(loss_ref); free(itq_w); free(pcah_w); free(lsh_w); free(lin_w); free(lin_b); free(lin_proj); free(code16);
    IMRET_FREE(w.t);
    free(buf);
    printf("%d checks, worst: ITQ loss %.2e (relative), layer weights %.2e, max|R^T R - I| %.2e; %d failed\n", checks, worst_loss, worst_w, worst_orth,
           failures);
    return failures ? 1 : 0;
}
