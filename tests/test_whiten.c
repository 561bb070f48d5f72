/* PCA-whitening vs numpy (tests/ref_whiten.py): eigenvalues of the covariance vs numpy's eigh,
   whitened outputs (three variants: full, reduced to 16, reduced+power 0.25+shrinkage+signed
   power law) vs numpy up to the sign of each output dimension; save/load round trip; bad
   input (too few vectors, wrong dimensions, truncated/corrupt/foreign files) gives the right
   error code and message. `test_whiten --eig N [threads]` times the eigensolver on a random
   symmetric N x N matrix and prints its residuals (N = 2048 for the README figure). */
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

static double seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

static int eig_bench(long n, int threads) {
    double *a = (double *)malloc(sizeof(double) * n * n), *a0 = (double *)malloc(sizeof(double) * n * n);
    double *w = (double *)malloc(sizeof(double) * n), *s = (double *)malloc(sizeof(double) * n), res = 0, orth = 0;
    uint64_t st = 1;
    long i, j, k, step = n / 64 > 0 ? n / 64 : 1;
    time_t t0;
    double c0;
    for (i = 0; i < n; i++)
        for (j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = (double)(imret__desc_splitmix64(&st) >> 11) / 9007199254740992.0 - 0.5;
    memcpy(a0, a, sizeof(double) * n * n);
    t0 = time(NULL);
    c0 = seconds();
    if (imret__desc_eigh(a, n, w, s, threads)) { printf("FAIL: eigensolver did not converge\n"); return 1; }
    printf("eigendecomposition %ld x %ld, %d thread(s): %.1f s CPU, ~%ld s wall\n", n, n, imret__threads(threads), seconds() - c0,
           (long)(time(NULL) - t0));
    for (j = 0; j < n; j += step) {
        for (i = 0; i < n; i++) {
            double r = 0;
            for (k = 0; k < n; k++) r += a0[i * n + k] * a[j * n + k];
            if (fabs(r - w[j] * a[j * n + i]) > res) res = fabs(r - w[j] * a[j * n + i]);
        }
        for (k = 0; k < n; k += step) {
            double d = 0;
            for (i = 0; i < n; i++) d += a[j * n + i] * a[k * n + i];
            if (fabs(d - (j == k)) > orth) orth = fabs(d - (j == k));
        }
    }
    printf("sampled max|A v - lambda v| %.2e, max|V^T V - I| %.2e\n", res, orth);
    free(a); free(a0); free(w); free(s);
    return res < 1e-9 && orth < 1e-9 ? 0 : 1;
}

static void corrupt_tests(const imret_whitening *wh) {
    size_t size, cut;
    uint8_t *buf, *b2;
    imret_whitening *x = NULL;
    imret_result rc;
    int bad_trunc = 0, bad_flip = 0, ntrunc = 0, nflip = 0;
    imret_whitening_save_memory(wh, NULL, 0, &size);
    buf = (uint8_t *)malloc(size);
    b2 = (uint8_t *)malloc(size);
    CHECK(imret_whitening_save_memory(wh, buf, size - 1, &size) == IMRET_ERROR_INVALID_ARGUMENT, "small buffer refused");
    CHECK(imret_whitening_save_memory(wh, buf, size, &size) == IMRET_OK, "save_memory");
    for (cut = 0; cut < size; cut += cut < 200 ? 1 : 97) { /* every truncation of the header, a sample of the data */
        rc = imret_whitening_load_memory(buf, cut, &x);
        ntrunc++;
        if (rc != IMRET_ERROR_FORMAT || x) { bad_trunc++; imret_whitening_free(x); x = NULL; }
    }
    CHECK(!bad_trunc, "%d of %d truncations not refused as format errors", bad_trunc, ntrunc);
    printf("  truncated to 0..%lu bytes (%d lengths): all refused, e.g. \"%s\"\n", (unsigned long)size - 1, ntrunc,
           (imret_whitening_load_memory(buf, size - 4, &x), imret_last_error()));
    for (cut = 0; cut < size; cut += cut < 64 ? 1 : 61) { /* flip one bit anywhere: never accepted silently */
        memcpy(b2, buf, size);
        b2[cut] ^= 0x10;
        rc = imret_whitening_load_memory(b2, size, &x);
        nflip++;
        if (rc == IMRET_OK) { bad_flip++; imret_whitening_free(x); x = NULL; }
    }
    CHECK(!bad_flip, "%d of %d bit flips accepted", bad_flip, nflip);
    memcpy(b2, buf, size); b2[100] ^= 1;
    CHECK(imret_whitening_load_memory(b2, size, &x) == IMRET_ERROR_CHECKSUM, "flipped data bit -> checksum error (%s)", imret_last_error());
    printf("  %d single-bit flips refused; data flip: \"%s\"\n", nflip, imret_last_error());
    memcpy(b2, buf, size); b2[8] = 2;
    CHECK(imret_whitening_load_memory(b2, size, &x) == IMRET_ERROR_VERSION, "version 2 -> version error (%s)", imret_last_error());
    memcpy(b2, buf, size); b2[1] = 'X';
    CHECK(imret_whitening_load_memory(b2, size, &x) == IMRET_ERROR_FORMAT, "bad magic -> format error (%s)", imret_last_error());
    { /* a hash file is not a whitening file */
        float wt[64 * 4] = {0};
        imret_hash *h;
        size_t hs;
        uint8_t *hb;
        imret_hash_create_linear(wt, NULL, NULL, 4, 64, &h);
        imret_hash_save_memory(h, NULL, 0, &hs);
        hb = (uint8_t *)malloc(hs);
        imret_hash_save_memory(h, hb, hs, &hs);
        CHECK(imret_whitening_load_memory(hb, hs, &x) == IMRET_ERROR_FORMAT, "hash file as whitening -> format error (%s)", imret_last_error());
        free(hb);
        imret_hash_free(h);
    }
    CHECK(imret_whitening_load_file("/nonexistent/w.imrw", &x) == IMRET_ERROR_IO && !x, "missing file -> IO error");
    free(buf); free(b2);
}

int main(int argc, char **argv) {
    uint8_t *buf;
    size_t size;
    imret__imw w;
    const imret__imw_tensor *xt, *qt, *et, *mt, *yt;
    float *x, *q, *ev, *mu;
    int nv, v;
    size_t n, m, d, i, j;
    double worst_eig = 0, worst_y = 0, worst_mean = 0;
    char val[64];
    const char *tmp_path = "build/test_whiten.tmp.imrw";
    imret_whitening *full = NULL;
    if (argc >= 3 && !strcmp(argv[1], "--eig")) return eig_bench(atol(argv[2]), argc > 3 ? atoi(argv[3]) : 0);
    if (argc < 2) { fprintf(stderr, "usage: %s whiten.ref.imw [tmpfile] | --eig N [threads]\n", argv[0]); return 2; }
    if (argc > 2) tmp_path = argv[2];
    if (imret__read_file(argv[1], 1 << 28, "ref", &buf, &size, NULL) || imret__imw_parse(buf, size, 1, &w)) { printf("FAIL %s\n", imret_last_error()); return 1; }
    x = get(&w, "x", &xt); q = get(&w, "q", &qt); ev = get(&w, "eigval", &et); mu = get(&w, "mean", &mt);
    n = xt->shape[0]; d = xt->shape[1]; m = qt->shape[0];
    imret__imw_get(&w, "variants", val, sizeof val);
    nv = atoi(val);
    printf("whitening: %lu training vectors of dimension %lu, %lu queries, %d variants\n", (unsigned long)n, (unsigned long)d, (unsigned long)m, nv);
    for (v = 0; v < nv; v++) {
        imret_whitening_config cfg = imret_whitening_config_init();
        imret_whitening *wh;
        imret_whitening_info info;
        float opt[4], *y, *ref;
        char key[16];
        double md = 0;
        size_t od;
        snprintf(key, sizeof key, "v%d", v);
        imret__imw_get(&w, key, val, sizeof val);
        imret__parse_floats(val, opt, 4);
        cfg.out_dim = (size_t)opt[0]; cfg.power = opt[1]; cfg.shrinkage = opt[2]; cfg.post_power = opt[3];
        snprintf(key, sizeof key, "y%d", v);
        ref = get(&w, key, &yt);
        if (imret_whitening_train(x, n, d, &cfg, &wh) != IMRET_OK) { printf("FAIL train variant %d: %s\n", v, imret_last_error()); return 1; }
        imret_whitening_get_info(wh, &info);
        od = info.out_dim;
        CHECK(od == yt->shape[1], "variant %d: out_dim %lu vs %u", v, (unsigned long)od, yt->shape[1]);
        if (v == 0) {
            for (i = 0; i < d; i++) {
                double e = fabs(info.eigenvalues[i] - ev[i]) / ev[0];
                if (e > worst_eig) worst_eig = e;
                if (fabs(info.mean[i] - mu[i]) > worst_mean) worst_mean = fabs(info.mean[i] - mu[i]);
            }
            CHECK(worst_eig < 1e-6, "eigenvalues vs numpy eigh: max |diff| / lambda_max %.2e", worst_eig);
            CHECK(worst_mean < 1e-5, "mean vs numpy: %.2e", worst_mean);
            printf("  eigenvalues vs numpy eigh (%lu values, lambda %.3g .. %.3g): max |diff|/lambda_max %.2e; mean %.2e\n", (unsigned long)d,
                   (double)ev[0], (double)ev[d - 1], worst_eig, worst_mean);
            CHECK(info.flags == 0, "600 vectors for 48 dims: flags %u, expected none", info.flags);
        }
        y = (float *)malloc(sizeof(float) * m * od);
        CHECK(imret_whitening_apply(wh, q, m, d, y, od, 0) == IMRET_OK, "apply: %s", imret_last_error());
        for (j = 0; j < od; j++) { /* each output dimension up to its sign */
            double dot = 0, sg;
            for (i = 0; i < m; i++) dot += (double)y[i * od + j] * ref[i * od + j];
            sg = dot < 0 ? -1 : 1;
            for (i = 0; i < m; i++)
                if (fabs(y[i * od + j] - sg * ref[i * od + j]) > md) md = fabs(y[i * od + j] - sg * ref[i * od + j]);
        }
        CHECK(md < 2e-5, "variant %d: whitened outputs max |diff| %.2e", v, md);
        printf("  variant %d (D' %lu, power %g, shrinkage %g, post power %g): %lu whitened queries vs numpy, max |diff| %.2e (up to sign)\n", v,
               (unsigned long)od, (double)opt[1], (double)opt[2], (double)opt[3], (unsigned long)m, md);
        if (md > worst_y) worst_y = md;
        { /* 1 thread and 2 threads give the same bits */
            float *y1 = (float *)malloc(sizeof(float) * m * od);
            imret_whitening_apply(wh, q, m, d, y1, od, 1);
            CHECK(!memcmp(y, y1, sizeof(float) * m * od), "variant %d: results depend on the thread count", v);
            free(y1);
        }
        if (v == 0) full = wh;
        else imret_whitening_free(wh);
        free(y); free(ref);
    }
    { /* save / load round trip through a file */
        imret_whitening *back = NULL;
        imret_whitening_info a, b;
        float *y1 = (float *)malloc(sizeof(float) * m * d), *y2 = (float *)malloc(sizeof(float) * m * d);
        CHECK(imret_whitening_save_file(full, tmp_path) == IMRET_OK, "save_file %s: %s", tmp_path, imret_last_error());
        CHECK(imret_whitening_load_file(tmp_path, &back) == IMRET_OK, "load_file: %s", imret_last_error());
        if (back) {
            imret_whitening_get_info(full, &a);
            imret_whitening_get_info(back, &b);
            imret_whitening_apply(full, q, m, d, y1, d, 0);
            imret_whitening_apply(back, q, m, d, y2, d, 0);
            CHECK(a.in_dim == b.in_dim && a.out_dim == b.out_dim && a.n_train == b.n_train && a.flags == b.flags && !memcmp(y1, y2, sizeof(float) * m * d),
                  "round trip changed the whitening");
            printf("  saved to %s and loaded back: identical outputs\n", tmp_path);
            imret_whitening_free(back);
        }
        remove(tmp_path);
        free(y1); free(y2);
    }
    { /* bad input */
        imret_whitening_config cfg = imret_whitening_config_init();
        imret_whitening *wh = (imret_whitening *)&cfg;
        imret_whitening_info info;
        float y[64];
        cfg.out_dim = 48;
        CHECK(imret_whitening_train(x, 48, d, &cfg, &wh) == IMRET_ERROR_INVALID_ARGUMENT && !wh, "48 vectors for D' = 48 refused");
        printf("  too few vectors: \"%s\"\n", imret_last_error());
        CHECK(strstr(imret_last_error(), "48 training vectors for 48 output dimensions") != NULL, "message names the counts");
        cfg.out_dim = 16;
        CHECK(imret_whitening_train(x, 17, d, &cfg, &wh) == IMRET_OK, "17 vectors for D' = 16 accepted");
        imret_whitening_get_info(wh, &info);
        CHECK(info.flags & IMRET_WHITENING_FEW_SAMPLES, "17 vectors for 16 dims flagged FEW_SAMPLES (flags %u)", info.flags);
        CHECK(!(info.flags & IMRET_WHITENING_RANK_DEFICIENT), "17 vectors have rank 16 = D': not RANK_DEFICIENT (flags %u)", info.flags);
        imret_whitening_free(wh);
        cfg.out_dim = 48;
        cfg.allow_underdetermined = 1;
        CHECK(imret_whitening_train(x, 30, d, &cfg, &wh) == IMRET_OK, "allow_underdetermined: %s", imret_last_error());
        imret_whitening_get_info(wh, &info);
        CHECK((info.flags & (IMRET_WHITENING_UNDERDETERMINED | IMRET_WHITENING_RANK_DEFICIENT)) == (IMRET_WHITENING_UNDERDETERMINED | IMRET_WHITENING_RANK_DEFICIENT),
              "30 vectors, D' 48: flags %u", info.flags);
        CHECK(imret_whitening_apply(wh, q, 1, d, y, 48, 1) == IMRET_OK, "underdetermined whitening still applies");
        for (i = 0; i < 48; i++) CHECK(y[i] == y[i] && fabs(y[i]) <= 1.0f, "finite unit output");
        imret_whitening_free(wh);
        cfg = imret_whitening_config_init();
        CHECK(imret_whitening_apply(full, q, 1, d - 1, y, d, 1) == IMRET_ERROR_SHAPE, "descriptor of %lu dims into a %lu-dim whitening", (unsigned long)d - 1,
              (unsigned long)d);
        printf("  wrong dimension: \"%s\"\n", imret_last_error());
        CHECK(imret_whitening_apply(full, q, 1, d, y, 16, 1) == IMRET_ERROR_SHAPE, "output rows of 16");
        cfg.out_dim = d + 1;
        CHECK(imret_whitening_train(x, n, d, &cfg, &wh) == IMRET_ERROR_INVALID_ARGUMENT, "out_dim > D refused");
        cfg = imret_whitening_config_init();
        cfg.power = -1;
        CHECK(imret_whitening_train(x, n, d, &cfg, &wh) == IMRET_ERROR_INVALID_ARGUMENT, "power -1 refused");
        cfg = imret_whitening_config_init();
        CHECK(imret_whitening_train(NULL, n, d, &cfg, &wh) == IMRET_ERROR_INVALID_ARGUMENT, "NULL x refused");
        CHECK(imret_whitening_train(x, 1, d, &cfg, &wh) == IMRET_ERROR_INVALID_ARGUMENT, "1 vector refused");
        {
            float nanx[3 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0};
            nanx[5] = NAN;
            cfg.out_dim = 2;
            CHECK(imret_whitening_train(nanx, 3, 4, &cfg, &wh) == IMRET_ERROR_INVALID_ARGUMENT, "NaN in training refused (%s)", imret_last_error());
            for (i = 0; i < 12; i++) nanx[i] = 1;
            CHECK(imret_whitening_train(nanx, 3, 4, &cfg, &wh) == IMRET_ERROR_INVALID_ARGUMENT, "identical vectors refused (%s)", imret_last_error());
        }
        corrupt_tests(full);
    }
    imret_whitening_free(full);
    free(x); free(q); free(ev); free(mu);
    IMRET_FREE(w.t);
    free(buf);
    printf("%d checks, worst: eigenvalues %.2e (relative to lambda_max), whitened outputs %.2e; %d failed\n", checks, worst_eig, worst_y, failures);
    return failures ? 1 : 0;
}
