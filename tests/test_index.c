/* test_index.c -- index and search vs a brute-force reference written here (separately from
   the library), on every SIMD path this machine has and at 1 and 2 threads.

   - entries: add/duplicate/remove/re-add/update/get/iterate/compact against a shadow array
     (20k random ids, hash map under churn)
   - exact search on tie-heavy data (small-integer vectors, normalize = 0, where every
     summation order gives the same float; low-entropy codes): top-k for k = 1, 5, n + 3 and
     range search must equal the reference exactly, ids and scores, ties by smaller id
   - random normalised vectors (fp32, fp16): every hit's score within 2e-6 of the reference
     dot product of the stored vectors, and the k-th score never below the reference k-th
   - batch vs single query and 1 vs 2 threads: bit-identical
   - multi-index hashing top-k / range == flat
   - duplicate groups == connected components of the brute-force pair graph
   - persistence: save -> load -> save byte-identical, MISMATCH on wrong config, bad input
   Prints what it compared and the worst error; exits non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L
#define IMRET_IMPLEMENTATION
#include "imret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int fails = 0, checks = 0;
#define CHECK(cond, ...)                                            \
    do {                                                            \
        checks++;                                                   \
        if (!(cond)) {                                              \
            fails++;                                                \
            if (fails < 30) {                                       \
                printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
                printf(__VA_ARGS__);                                \
                printf("  [%s]\n", imret_last_error());             \
            }                                                       \
        }                                                           \
    } while (0)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double urand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static double grand(void) {
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static const imret_simd levels[3] = {IMRET_SIMD_SCALAR, IMRET_SIMD_AVX2, IMRET_SIMD_AVX512};
static int n_levels = 1;

/* ---------- reference (independent of the library) ---------- */
typedef struct { double key; uint64_t id; } ref_kv;
static int ref_cmp(const void *a, const void *b) {
    const ref_kv *x = (const ref_kv *)a, *y = (const ref_kv *)b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}
static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return (h & 0x8000) ? -v : v;
}
static int popc(uint64_t x) { int c = 0; while (x) { x &= x - 1; c++; } return c; }

/* reference store: what the index should hold */
typedef struct {
    size_t n, dim, words, bits;
    uint64_t *ids;
    int *alive;
    double *vec;    /* stored values as doubles (after the library's documented rounding) */
    uint64_t *code;
} ref_store;

/* ---------- entries ---------- */
static void test_entries(void) {
    imret_index_config cfg = imret_index_config_init();
    imret_index *idx;
    enum { N = 20000 };
    static uint64_t ids[N];
    static int present[N];
    size_t i, cnt, live = 0, cursor;
    imret_index_entry e;
    uint64_t code[2];
    float v[3] = {3, 0, 4}, got[3];
    cfg.dim = 3;
    cfg.bits = 70;
    cfg.descriptor = "test gem";
    CHECK(imret_index_create(&cfg, &idx) == IMRET_OK, "create");
    for (i = 0; i < N; i++) ids[i] = (i % 7 == 0) ? i : rnd(); /* dense small and random ids */
    ids[1] = 0xffffffffffffffffull;
    for (i = 0; i < N; i++) {
        char label[64];
        code[0] = ids[i];
        code[1] = ~ids[i];
        snprintf(label, sizeof label, "img/%lu.jpg", (unsigned long)i);
        CHECK(imret_index_add(idx, ids[i], (i % 3) ? label : NULL, v, code) == IMRET_OK, "add %lu", (unsigned long)i);
        present[i] = 1;
        live++;
    }
    CHECK(imret_index_add(idx, ids[5], NULL, v, code) == IMRET_ERROR_DUPLICATE, "duplicate id rejected");
    CHECK(imret_index_count(idx) == N, "count %lu", (unsigned long)imret_index_count(idx));
    /* churn: remove a third, re-add some, update some */
    for (i = 0; i < N; i += 3) {
        CHECK(imret_index_remove(idx, ids[i]) == IMRET_OK, "remove");
        present[i] = 0;
        live--;
    }
    CHECK(imret_index_remove(idx, ids[0]) == IMRET_ERROR_NOT_FOUND, "remove twice -> NOT_FOUND");
    for (i = 0; i < N; i += 9) {
        code[0] = ids[i] + 1;
        code[1] = 0;
        CHECK(imret_index_add(idx, ids[i], "again", v, code) == IMRET_OK, "re-add");
        present[i] = 2;
        live++;
    }
    CHECK(imret_index_update(idx, ids[4], "new label", NULL, NULL) == IMRET_OK, "update label");
    CHECK(imret_index_update(idx, ids[3], "x", NULL, NULL) == IMRET_ERROR_NOT_FOUND, "update missing");
    CHECK(imret_index_count(idx) == live && imret_index_tombstones(idx) == N / 3 + 1, "count after churn %lu tomb %lu",
          (unsigned long)imret_index_count(idx), (unsigned long)imret_index_tombstones(idx));
    for (int pass = 0; pass < 2; pass++) {
        for (i = 0; i < N; i++) {
            imret_result r = imret_index_get(idx, ids[i], &e);
            if (!present[i]) { CHECK(r == IMRET_ERROR_NOT_FOUND, "removed id found"); continue; }
            CHECK(r == IMRET_OK && e.id == ids[i], "get %lu", (unsigned long)i);
            if (r != IMRET_OK) continue;
            if (present[i] == 2) CHECK(!strcmp(e.label, "again") && e.code[0] == ids[i] + 1, "re-added entry content");
            else if (i == 4) CHECK(!strcmp(e.label, "new label"), "updated label");
            else if (i % 3) {
                char label[64];
                snprintf(label, sizeof label, "img/%lu.jpg", (unsigned long)i);
                CHECK(!strcmp(e.label, label) && e.label_len == strlen(label), "label %lu", (unsigned long)i);
            } else CHECK(e.label[0] == 0, "no label");
            if (present[i] == 1) CHECK(e.code[0] == ids[i] && e.code[1] == (~ids[i] & 63), "code masked to 70 bits");
        }
        cnt = 0;
        cursor = 0;
        while (imret_index_next(idx, &cursor, &e) == IMRET_OK) cnt++;
        CHECK(cnt == live, "iterate %lu live %lu", (unsigned long)cnt, (unsigned long)live);
        CHECK(imret_index_compact(idx) == IMRET_OK, "compact");
        CHECK(imret_index_tombstones(idx) == 0 && imret_index_count(idx) == live, "after compact");
    }
    CHECK(imret_index_get_vector(idx, ids[2], got) == IMRET_OK && fabsf(got[0] - 0.6f) < 1e-7f && fabsf(got[2] - 0.8f) < 1e-7f,
          "add normalises (3,0,4) -> (0.6,0,0.8)");
    /* batch: all or nothing */
    {
        uint64_t bid[3] = {111111, 222222, 111111};
        float bv[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
        uint64_t bc[6] = {0};
        size_t before = imret_index_count(idx);
        const char *bl[3] = {"a", "b", "\xff bad"};
        CHECK(imret_index_add_batch(idx, 3, bid, NULL, bv, bc) == IMRET_ERROR_DUPLICATE, "duplicate within batch");
        CHECK(imret_index_count(idx) == before && imret_index_get(idx, 111111, &e) == IMRET_ERROR_NOT_FOUND, "batch rolled back");
        bid[2] = 333333;
        CHECK(imret_index_add_batch(idx, 3, bid, bl, bv, bc) == IMRET_ERROR_INVALID_ARGUMENT, "bad UTF-8 label");
        bv[4] = NAN;
        bl[2] = "c";
        CHECK(imret_index_add_batch(idx, 3, bid, bl, bv, bc) == IMRET_ERROR_INVALID_ARGUMENT, "NaN vector");
        bv[4] = 1;
        CHECK(imret_index_add_batch(idx, 3, bid, bl, bv, bc) == IMRET_OK && imret_index_count(idx) == before + 3, "batch add");
    }
    imret_index_destroy(idx);
    printf("entries: 20000 ids with churn, labels, codes, compaction vs shadow array: %s\n", fails ? "FAILED" : "ok");
}

/* ---------- search vs reference ---------- */
static double worst_float_err = 0.0;

/* reference top-k over the store for one query; keys: cosine -dot, Hamming distance */
static size_t ref_topk(const ref_store *S, int hamming, const double *qv, const uint64_t *qc, size_t k, ref_kv *tmp, ref_kv *outk) {
    size_t i, m = 0, d;
    for (i = 0; i < S->n; i++) {
        if (!S->alive[i]) continue;
        if (hamming) {
            int dist = 0;
            for (d = 0; d < S->words; d++) dist += popc(qc[d] ^ S->code[i * S->words + d]);
            tmp[m].key = dist;
        } else {
            double s = 0;
            for (d = 0; d < S->dim; d++) s += qv[d] * S->vec[i * S->dim + d];
            tmp[m].key = -s;
        }
        tmp[m].id = S->ids[i];
        m++;
    }
    qsort(tmp, m, sizeof *tmp, ref_cmp);
    if (k > m) k = m;
    memcpy(outk, tmp, k * sizeof *outk);
    return m; /* all, sorted, in tmp */
}

/* Build a random index + reference store. kind: 0 = tie-heavy ints (normalize 0),
   1 = random normalised. */
static imret_index *make_index(ref_store *S, size_t n, size_t dim, size_t bits, imret_index_storage st, int kind) {
    imret_index_config cfg = imret_index_config_init();
    imret_index *idx;
    size_t i, d, w;
    float *v = (float *)malloc((dim ? dim : 1) * sizeof(float));
    uint64_t *c = (uint64_t *)calloc((bits + 63) / 64 + 1, 8);
    cfg.dim = dim;
    cfg.bits = bits;
    cfg.storage = st;
    cfg.normalize = kind == 1;
    if (imret_index_create(&cfg, &idx) != IMRET_OK) { printf("create failed: %s\n", imret_last_error()); exit(2); }
    S->n = n; S->dim = dim; S->words = (bits + 63) / 64; S->bits = bits;
    S->ids = (uint64_t *)calloc(n, 8);
    S->alive = (int *)calloc(n, sizeof(int));
    S->vec = (double *)calloc(n * (dim ? dim : 1), sizeof(double));
    S->code = (uint64_t *)calloc(n * (S->words ? S->words : 1), 8);
    for (i = 0; i < n; i++) {
        /* ids shuffled relative to insertion order so "ties by id" is not "ties by slot" */
        S->ids[i] = (uint64_t)((i * 7919) % n) * 3 + 5;
        for (d = 0; d < dim; d++) v[d] = kind == 0 ? (float)((int)(rnd() % 5) - 2) : (float)grand();
        if (kind == 0 && i % 10 == 3 && i > 0) memcpy(v, v, 0); /* keep */
        for (w = 0; w < S->words; w++) {
            /* low-entropy codes: a few bits set, plus exact copies -> many equal distances */
            c[w] = (rnd() & rnd() & rnd());
        }
        if (i % 7 == 1 && i > 1) memcpy(c, S->code + (i - 1) * S->words, S->words * 8);
        if (bits % 64) c[S->words - 1] &= (((uint64_t)1 << (bits % 64)) - 1);
        if (imret_index_add(idx, S->ids[i], NULL, dim ? v : NULL, bits ? c : NULL) != IMRET_OK) {
            printf("add failed: %s\n", imret_last_error());
            exit(2);
        }
        S->alive[i] = 1;
        memcpy(S->code + i * S->words, c, S->words * 8);
        if (dim) {
            float tmp[4096];
            imret_index_get_vector(idx, S->ids[i], tmp);
            for (d = 0; d < dim; d++) S->vec[i * dim + d] = tmp[d];
            /* check the stored rounding independently: fp16 must be the nearest half */
            if (st == IMRET_INDEX_FP16 && kind == 1) {
                imret_index_entry e;
                double ss = 0;
                imret_index_get(idx, S->ids[i], &e);
                for (d = 0; d < dim; d++) ss += (double)v[d] * v[d];
                for (d = 0; d < dim; d++) {
                    double x = v[d] / sqrt(ss), h = half_to_double(((const uint16_t *)e.vector)[d]);
                    double ulp = ldexp(1.0, (int)floor(log2(fabs(x) > 6.103515625e-05 ? fabs(x) : 6.103515625e-05)) - 10);
                    if (fabs(h - x) > 0.5 * ulp * (1 + 1e-9)) { CHECK(0, "fp16 rounding of %g -> %g", x, h); break; }
                }
            }
        }
    }
    /* tombstones: remove every 11th */
    for (i = 0; i < n; i += 11) {
        imret_index_remove(idx, S->ids[i]);
        S->alive[i] = 0;
    }
    free(v);
    free(c);
    return idx;
}
static void free_store(ref_store *S) { free(S->ids); free(S->alive); free(S->vec); free(S->code); }

static void compare_search(imret_index *idx, const ref_store *S, int hamming, int exact, size_t nq, const char *what) {
    size_t q, j, d, live = imret_index_count(idx), ks[3] = {1, 5, 0}, ki, li, th;
    ref_kv *tmp = (ref_kv *)malloc((S->n + 1) * sizeof(ref_kv)), *refk = (ref_kv *)malloc((S->n + 8) * sizeof(ref_kv));
    float *qf = (float *)calloc(nq * (S->dim ? S->dim : 1), sizeof(float));
    uint64_t *qc = (uint64_t *)calloc(nq * (S->words ? S->words : 1), 8);
    double *qd = (double *)calloc(S->dim ? S->dim : 1, sizeof(double));
    imret_index_hit *base = NULL;
    size_t basek = 0;
    ks[2] = live + 3;
    for (q = 0; q < nq; q++) {
        for (d = 0; d < S->dim; d++) qf[q * S->dim + d] = exact ? (float)((int)(rnd() % 5) - 2) : (float)grand();
        for (d = 0; d < S->words; d++) qc[q * S->words + d] = rnd() & rnd() & rnd();
        if (q % 3 == 2 && hamming) memcpy(qc + q * S->words, S->code + (q * 13 % S->n) * S->words, S->words * 8); /* exact hits */
        if (S->bits % 64) qc[q * S->words + S->words - 1] &= ((uint64_t)1 << (S->bits % 64)) - 1; /* as documented */
        if (q % 3 == 2 && !hamming) for (d = 0; d < S->dim; d++) qf[q * S->dim + d] = (float)S->vec[(q * 13 % S->n) * S->dim + d];
    }
    for (li = 0; li < (size_t)n_levels; li++)
        for (th = 1; th <= 2; th++)
            for (ki = 0; ki < 3; ki++) {
                size_t k = ks[ki];
                imret_index_hit *hits = (imret_index_hit *)calloc(nq * k, sizeof *hits);
                size_t *counts = (size_t *)calloc(nq, sizeof(size_t));
                imret_search_options o = imret_search_options_init();
                imret_result r;
                o.simd = levels[li];
                o.threads = (int)th;
                o.method = IMRET_SEARCH_FLAT;
                r = hamming ? imret_index_search_hamming(idx, qc, nq, k, &o, hits, counts)
                            : imret_index_search_cosine(idx, qf, nq, k, &o, hits, counts);
                CHECK(r == IMRET_OK, "%s search", what);
                for (q = 0; q < nq && r == IMRET_OK; q++) {
                    size_t m, kk;
                    double qn = 0;
                    for (d = 0; d < S->dim; d++) qn += (double)qf[q * S->dim + d] * qf[q * S->dim + d];
                    for (d = 0; d < S->dim; d++) {
                        /* the library normalises queries in double then rounds to float */
                        double x = exact ? qf[q * S->dim + d] : (float)(qf[q * S->dim + d] / (qn > 0 ? sqrt(qn) : 1));
                        qd[d] = x;
                    }
                    m = ref_topk(S, hamming, qd, qc + q * S->words, k, tmp, refk);
                    kk = k < m ? k : m;
                    CHECK(counts[q] == kk, "%s k=%lu count %lu expected %lu", what, (unsigned long)k, (unsigned long)counts[q], (unsigned long)kk);
                    for (j = 0; j < k; j++) {
                        const imret_index_hit *h = &hits[q * k + j];
                        if (j >= kk) {
                            CHECK(h->id == 0 && isinf(h->score), "%s unused slot", what);
                            continue;
                        }
                        if (exact) {
                            double sc = hamming ? refk[j].key : -refk[j].key;
                            if (h->id != refk[j].id || (double)h->score != sc) {
                                CHECK(0, "%s %s th=%lu k=%lu q=%lu rank %lu: got id %llu score %g, expected id %llu score %g", what,
                                      imret_simd_name(levels[li]), (unsigned long)th, (unsigned long)k, (unsigned long)q, (unsigned long)j,
                                      (unsigned long long)h->id, h->score, (unsigned long long)refk[j].id, sc);
                                break;
                            }
                        } else {
                            /* score of the returned id vs the reference score of that id, and rank j's
                               score vs the reference rank-j score */
                            size_t t;
                            double own = NAN, err;
                            for (t = 0; t < m; t++)
                                if (tmp[t].id == h->id) { own = -tmp[t].key; break; }
                            err = fabs(own - h->score);
                            if (err > worst_float_err) worst_float_err = err;
                            CHECK(err <= 2e-6, "%s score of id %llu: %g vs ref %g", what, (unsigned long long)h->id, h->score, own);
                            CHECK(h->score >= -refk[j].key - 2e-6, "%s rank %lu score %g below ref %g", what, (unsigned long)j, h->score, -refk[j].key);
                            if (j) CHECK(h->score <= hits[q * k + j - 1].score, "%s not sorted", what);
                        }
                    }
                }
                /* identical across threads for the same level and k; batch vs single */
                if (ki == 1) {
                    if (th == 1) {
                        free(base);
                        base = (imret_index_hit *)malloc(nq * k * sizeof *hits);
                        memcpy(base, hits, nq * k * sizeof *hits);
                        basek = k;
                        /* single queries must equal the batch rows */
                        for (q = 0; q < nq; q += 5) {
                            imret_index_hit one[5];
                            memset(one, 0, sizeof one); /* padding bytes compared by memcmp */
                            r = hamming ? imret_index_search_hamming(idx, qc + q * S->words, 1, k, &o, one, NULL)
                                        : imret_index_search_cosine(idx, qf + q * S->dim, 1, k, &o, one, NULL);
                            CHECK(r == IMRET_OK && !memcmp(one, hits + q * k, k * sizeof *one), "%s single vs batch query %lu", what, (unsigned long)q);
                        }
                    } else {
                        CHECK(basek == k && !memcmp(base, hits, nq * k * sizeof *hits), "%s %s: 2 threads differ from 1", what,
                              imret_simd_name(levels[li]));
                    }
                }
                free(hits);
                free(counts);
            }
    /* range search: threshold at the reference 7th key of each query (ties at the edge) */
    for (li = 0; li < (size_t)n_levels; li++)
        for (th = 1; th <= 2; th++) {
            imret_search_options o = imret_search_options_init();
            imret_index_results res;
            o.simd = levels[li];
            o.threads = (int)th;
            o.method = IMRET_SEARCH_FLAT;
            for (q = 0; q < nq; q++) {
                size_t m, cnt = 0, a;
                double thr;
                imret_result r;
                for (d = 0; d < S->dim; d++) qd[d] = qf[q * S->dim + d];
                if (!exact) {
                    double qn = 0;
                    for (d = 0; d < S->dim; d++) qn += qd[d] * qd[d];
                    for (d = 0; d < S->dim; d++) qd[d] = (float)(qd[d] / sqrt(qn));
                }
                m = ref_topk(S, hamming, qd, qc + q * S->words, 1, tmp, refk);
                thr = tmp[m > 7 ? 7 : m - 1].key;
                r = hamming ? imret_index_range_hamming(idx, qc + q * S->words, 1, (uint32_t)thr, &o, &res)
                            : imret_index_range_cosine(idx, qf + q * S->dim, 1, (float)-thr, &o, &res);
                CHECK(r == IMRET_OK, "%s range", what);
                if (r != IMRET_OK) continue;
                for (a = 0; a < m; a++)
                    if (tmp[a].key <= thr) cnt++;
                if (exact) {
                    int ok = res.offsets[1] == cnt;
                    for (a = 0; ok && a < cnt; a++) ok = res.hits[a].id == tmp[a].id && (double)res.hits[a].score == (hamming ? tmp[a].key : -tmp[a].key);
                    CHECK(ok, "%s %s range q=%lu: %lu hits, expected %lu", what, imret_simd_name(levels[li]), (unsigned long)q,
                          (unsigned long)res.offsets[1], (unsigned long)cnt);
                } else {
                    /* float: every hit passes the threshold, and counts agree up to near-threshold scores */
                    size_t lo = 0, hi = 0;
                    for (a = 0; a < m; a++) {
                        if (tmp[a].key <= thr - 2e-6) lo++;
                        if (tmp[a].key <= thr + 2e-6) hi++;
                    }
                    CHECK(res.offsets[1] >= lo && res.offsets[1] <= hi, "%s range q=%lu: %lu hits, expected %lu..%lu", what, (unsigned long)q,
                          (unsigned long)res.offsets[1], (unsigned long)lo, (unsigned long)hi);
                    for (a = 0; a < res.offsets[1]; a++) CHECK(res.hits[a].score >= (float)-thr, "%s range hit below threshold", what);
                }
                imret_index_results_free(&res);
            }
        }
    free(base);
    free(tmp);
    free(refk);
    free(qf);
    free(qc);
    free(qd);
}

static void test_search(void) {
    static const size_t dims[] = {1, 7, 16, 17, 63, 65, 130, 517};
    static const size_t bitss[] = {1, 63, 64, 100, 128, 256, 320, 512, 700};
    size_t i;
    int f0 = fails;
    for (i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        int st;
        for (st = 0; st < 2; st++) {
            ref_store S;
            char what[96];
            imret_index *idx = make_index(&S, 300 + 37 * i, dims[i], 0, (imret_index_storage)st, 0);
            snprintf(what, sizeof what, "cosine ties %s dim %lu", st ? "fp16" : "fp32", (unsigned long)dims[i]);
            compare_search(idx, &S, 0, 1, 23, what);
            imret_index_destroy(idx);
            free_store(&S);
            idx = make_index(&S, 257 + 31 * i, dims[i], 0, (imret_index_storage)st, 1);
            snprintf(what, sizeof what, "cosine random %s dim %lu", st ? "fp16" : "fp32", (unsigned long)dims[i]);
            compare_search(idx, &S, 0, 0, 23, what);
            imret_index_destroy(idx);
            free_store(&S);
        }
    }
    for (i = 0; i < sizeof bitss / sizeof bitss[0]; i++) {
        ref_store S;
        char what[64];
        imret_index *idx = make_index(&S, 700 + 13 * i, 0, bitss[i], IMRET_INDEX_FP32, 0);
        snprintf(what, sizeof what, "hamming %lu bits", (unsigned long)bitss[i]);
        compare_search(idx, &S, 1, 1, 31, what);
        imret_index_destroy(idx);
        free_store(&S);
    }
    printf("search: cosine (fp32/fp16, dims 1..517, tie-heavy exact + random normalised) and Hamming (bits 1..700) "
           "top-k (k=1,5,n+3) and range vs brute force, levels:");
    for (i = 0; i < (size_t)n_levels; i++) printf(" %s", imret_simd_name(levels[i]));
    printf(", threads 1/2: %s; worst float score error %.3g\n", fails > f0 ? "FAILED" : "ok", worst_float_err);
}

/* ---------- MIH vs flat ---------- */
static void test_mih(void) {
    static const size_t bitss[] = {32, 64, 100, 256, 512};
    size_t bi;
    int f0 = fails;
    size_t compared = 0;
    for (bi = 0; bi < sizeof bitss / sizeof bitss[0]; bi++) {
        imret_index_config cfg = imret_index_config_init();
        imret_index *idx;
        size_t n = 6000, words = (bitss[bi] + 63) / 64, i, w, nq = 40, q;
        uint64_t *c = (uint64_t *)calloc(n * words, 8), *qc = (uint64_t *)calloc(nq * words, 8);
        unsigned ms[3] = {0, 2, 5}, mi;
        cfg.bits = bitss[bi];
        imret_index_create(&cfg, &idx);
        for (i = 0; i < n; i++) {
            /* clusters: a centre and copies with a few flipped bits, plus noise codes */
            for (w = 0; w < words; w++) c[i * words + w] = (i % 4 == 0) ? rnd() : c[(i - i % 4) * words + w];
            if (i % 4) {
                int f, nf = (int)(rnd() % 6);
                for (f = 0; f < nf; f++) {
                    size_t b = rnd() % bitss[bi];
                    c[i * words + b / 64] ^= (uint64_t)1 << (b % 64);
                }
            }
            if (bitss[bi] % 64) c[i * words + words - 1] &= ((uint64_t)1 << (bitss[bi] % 64)) - 1;
            imret_index_add(idx, (i * 2654435761u) % 1000003, NULL, NULL, c + i * words);
        }
        for (i = 0; i < n; i += 17) imret_index_remove(idx, (i * 2654435761u) % 1000003);
        for (q = 0; q < nq; q++) {
            memcpy(qc + q * words, c + ((q * 151) % n) * words, words * 8);
            qc[q * words] ^= (uint64_t)(q % 3);
        }
        for (mi = 0; mi < 3; mi++) {
            imret_search_options fo = imret_search_options_init(), mo = fo;
            size_t k, r;
            unsigned m = ms[mi];
            if (m && (bitss[bi] + m - 1) / m > 32) continue;
            CHECK(imret_index_build_mih(idx, m) == IMRET_OK && imret_index_has_mih(idx), "build mih");
            fo.method = IMRET_SEARCH_FLAT;
            mo.method = IMRET_SEARCH_MIH;
            mo.threads = 2;
            for (k = 1; k <= 64; k *= 4) {
                imret_index_hit *a = (imret_index_hit *)calloc(nq * k, sizeof *a), *b = (imret_index_hit *)calloc(nq * k, sizeof *b);
                CHECK(imret_index_search_hamming(idx, qc, nq, k, &fo, a, NULL) == IMRET_OK, "flat");
                CHECK(imret_index_search_hamming(idx, qc, nq, k, &mo, b, NULL) == IMRET_OK, "mih");
                CHECK(!memcmp(a, b, nq * k * sizeof *a), "MIH top-%lu differs from flat (%lu bits, m=%u)", (unsigned long)k,
                      (unsigned long)bitss[bi], m);
                memset(b, 0, nq * k * sizeof *b);
                CHECK(imret_index_search_hamming(idx, qc, nq, k, NULL, b, NULL) == IMRET_OK, "auto");
                CHECK(!memcmp(a, b, nq * k * sizeof *a), "AUTO top-%lu differs from flat (%lu bits, m=%u)", (unsigned long)k,
                      (unsigned long)bitss[bi], m);
                compared += nq;
                free(a);
                free(b);
            }
            for (r = 0; r <= 24; r += 3) {
                imret_index_results ra, rb;
                unsigned mm = m ? m : 1;
                if (m && r / mm > 3) continue; /* forced MIH probes every ball: keep it affordable */
                CHECK(imret_index_range_hamming(idx, qc, nq, (uint32_t)r, &fo, &ra) == IMRET_OK, "flat range");
                CHECK(imret_index_range_hamming(idx, qc, nq, (uint32_t)r, &mo, &rb) == IMRET_OK, "mih range");
                {
                    imret_index_results rc2;
                    CHECK(imret_index_range_hamming(idx, qc, nq, (uint32_t)r, NULL, &rc2) == IMRET_OK, "auto range");
                    CHECK(rc2.offsets && !memcmp(ra.offsets, rc2.offsets, (nq + 1) * sizeof(size_t)) &&
                              !memcmp(ra.hits, rc2.hits, ra.offsets[nq] * sizeof *ra.hits), "AUTO range r=%lu differs from flat", (unsigned long)r);
                    imret_index_results_free(&rc2);
                }
                CHECK(!memcmp(ra.offsets, rb.offsets, (nq + 1) * sizeof(size_t)) &&
                          !memcmp(ra.hits, rb.hits, ra.offsets[nq] * sizeof *ra.hits),
                      "MIH range r=%lu differs from flat (%lu bits, m=%u): %lu vs %lu hits", (unsigned long)r, (unsigned long)bitss[bi], m,
                      (unsigned long)rb.offsets[nq], (unsigned long)ra.offsets[nq]);
                compared += nq;
                imret_index_results_free(&ra);
                imret_index_results_free(&rb);
            }
        }
        /* any change drops the tables; MIH method then fails clearly, AUTO falls back */
        imret_index_remove(idx, (1 * 2654435761u) % 1000003);
        CHECK(!imret_index_has_mih(idx), "tables dropped on change");
        {
            imret_search_options mo = imret_search_options_init();
            imret_index_hit h[3];
            mo.method = IMRET_SEARCH_MIH;
            CHECK(imret_index_search_hamming(idx, qc, 1, 3, &mo, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "MIH without tables");
            CHECK(imret_index_search_hamming(idx, qc, 1, 3, NULL, h, NULL) == IMRET_OK, "AUTO without tables");
        }
        imret_index_destroy(idx);
        free(c);
        free(qc);
    }
    printf("mih: top-k (k=1,4,16,64) and range (r=0..24) result lists (forced MIH and AUTO) identical to flat on %lu queries "
           "(32..512 bits, m auto/2/5, clustered codes, tombstones): %s\n", (unsigned long)compared, fails > f0 ? "FAILED" : "ok");
}

/* ---------- dedup vs brute-force components ---------- */
static size_t uf_find(size_t *p, size_t x) { while (p[x] != x) x = p[x] = p[p[x]]; return x; }

static void test_dedup(void) {
    int f0 = fails, metric;
    size_t groups_seen = 0;
    for (metric = 0; metric < 2; metric++) {
        size_t n = 1500, i, j, d, w;
        imret_index_config cfg = imret_index_config_init();
        imret_index *idx;
        ref_store S;
        size_t *par = (size_t *)malloc(n * sizeof(size_t));
        double thr = metric ? 10 : 0.9;
        int li;
        cfg.dim = metric ? 0 : 24;
        cfg.bits = metric ? 256 : 0;
        cfg.storage = IMRET_INDEX_FP16;
        imret_index_create(&cfg, &idx);
        S.n = n; S.dim = cfg.dim; S.words = 4; S.bits = 256;
        S.ids = (uint64_t *)calloc(n, 8); S.alive = (int *)calloc(n, sizeof(int));
        S.vec = (double *)calloc(n * 24, sizeof(double)); S.code = (uint64_t *)calloc(n * 4, 8);
        for (i = 0; i < n; i++) {
            float v[24];
            uint64_t c[4];
            size_t src = (i % 5 == 0 || i < 10) ? i : (size_t)(rnd() % i); /* chains of near copies */
            for (d = 0; d < 24; d++) v[d] = src == i ? (float)grand() : (float)(S.vec[src * 24 + d] + 0.25 * grand() / sqrt(24.0));
            for (w = 0; w < 4; w++) c[w] = src == i ? rnd() : S.code[src * 4 + w];
            if (src != i) { int f; for (f = 0; f < (int)(rnd() % 9); f++) { size_t b = rnd() % 256; c[b / 64] ^= (uint64_t)1 << (b % 64); } }
            S.ids[i] = rnd() % 100000;
            while (imret_index_add(idx, S.ids[i], NULL, v, c) == IMRET_ERROR_DUPLICATE) S.ids[i] = rnd() % 100000;
            S.alive[i] = 1;
            memcpy(S.code + i * 4, c, 32);
            if (!metric) {
                float tmp[24];
                imret_index_get_vector(idx, S.ids[i], tmp);
                for (d = 0; d < 24; d++) S.vec[i * 24 + d] = tmp[d];
            }
        }
        for (i = 0; i < n; i += 13) { imret_index_remove(idx, S.ids[i]); S.alive[i] = 0; }
        for (i = 0; i < n; i++) par[i] = i;
        for (i = 0; i < n; i++)
            for (j = i + 1; j < n; j++) {
                int close;
                if (!S.alive[i] || !S.alive[j]) continue;
                if (metric) {
                    int dist = 0;
                    for (w = 0; w < 4; w++) dist += popc(S.code[i * 4 + w] ^ S.code[j * 4 + w]);
                    close = dist <= thr;
                } else {
                    double s = 0;
                    for (d = 0; d < 24; d++) s += S.vec[i * 24 + d] * S.vec[j * 24 + d];
                    close = s >= thr + 1e-6 ? 1 : s <= thr - 1e-6 ? 0 : -1; /* -1: too close to call */
                    if (close < 0) { printf("note: pair at the cosine threshold, skipping\n"); close = s >= thr; }
                }
                if (close) { size_t a = uf_find(par, i), b = uf_find(par, j); if (a != b) par[a > b ? a : b] = a < b ? a : b; }
            }
        for (li = 0; li < n_levels; li++) {
            int th;
            for (th = 1; th <= 2; th++) {
                imret_dedup_options o = imret_dedup_options_init();
                imret_dedup_result res;
                size_t g, m, total = 0;
                o.metric = metric ? IMRET_METRIC_HAMMING : IMRET_METRIC_COSINE;
                o.threshold = thr;
                o.simd = levels[li];
                o.threads = th;
                CHECK(imret_index_dedup(idx, &o, &res) == IMRET_OK, "dedup");
                /* every group = one reference component, sizes match, order and reps right */
                for (g = 0; g < res.group_count; g++) {
                    const imret_dedup_group *G = &res.groups[g];
                    size_t root = (size_t)-1, comp = 0;
                    uint64_t minid = UINT64_MAX;
                    for (m = 0; m < G->count; m++) {
                        for (i = 0; i < n; i++) if (S.alive[i] && S.ids[i] == G->members[m].id) break;
                        CHECK(i < n, "dedup member not live");
                        if (i >= n) break;
                        if (root == (size_t)-1) root = uf_find(par, i);
                        CHECK(uf_find(par, i) == root, "dedup: group %lu mixes components", (unsigned long)g);
                        if (G->members[m].id < minid) minid = G->members[m].id;
                    }
                    for (i = 0; i < n; i++) if (S.alive[i] && uf_find(par, i) == root) comp++;
                    CHECK(comp == G->count, "dedup: group %lu has %lu members, component %lu", (unsigned long)g, (unsigned long)G->count, (unsigned long)comp);
                    CHECK(G->members[0].id == minid, "dedup: representative is not the smallest id");
                    if (g) CHECK(G->count < res.groups[g - 1].count || (G->count == res.groups[g - 1].count &&
                                 G->members[0].id > res.groups[g - 1].members[0].id), "dedup: groups not sorted");
                    for (m = 2; m < G->count; m++)
                        CHECK(metric ? G->members[m].score >= G->members[m - 1].score : G->members[m].score <= G->members[m - 1].score,
                              "dedup: members not sorted by score");
                    total += G->count;
                }
                {
                    size_t ref_members = 0, *sz = (size_t *)calloc(n, sizeof(size_t));
                    for (i = 0; i < n; i++) if (S.alive[i]) sz[uf_find(par, i)]++;
                    for (i = 0; i < n; i++) if (sz[i] >= 2) ref_members += sz[i];
                    CHECK(total == ref_members && total == res.member_count, "dedup: %lu members in groups, reference %lu", (unsigned long)total,
                          (unsigned long)ref_members);
                    free(sz);
                }
                groups_seen += res.group_count;
                imret_dedup_result_free(&res);
            }
        }
        imret_index_destroy(idx);
        free_store(&S);
        free(par);
    }
    printf("dedup: Hamming (256 bits, <= 10) and cosine (fp16, >= 0.9) groups == brute-force pair components "
           "(%lu groups checked): %s\n", (unsigned long)groups_seen, fails > f0 ? "FAILED" : "ok");
}

/* ---------- persistence and bad input ---------- */
static void test_persist(void) {
    imret_index_config cfg = imret_index_config_init(), other;
    imret_index *idx, *back = NULL;
    size_t size, size2, i, len, hdr_checked = 0, trunc = 0, flips = 0;
    uint8_t *buf, *buf2, *bad;
    int f0 = fails;
    cfg.dim = 19;
    cfg.bits = 130;
    cfg.storage = IMRET_INDEX_FP16;
    cfg.descriptor = "resnet50 gem p=3 s=512 / itq130 \xc3\xa9";
    cfg.model_fingerprint = 0x0123456789abcdefull;
    imret_index_create(&cfg, &idx);
    for (i = 0; i < 300; i++) {
        float v[19];
        uint64_t c[3] = {rnd(), rnd(), rnd()};
        char label[32];
        size_t d;
        for (d = 0; d < 19; d++) v[d] = (float)grand();
        snprintf(label, sizeof label, i % 2 ? "photo-%lu.jpg" : "", (unsigned long)i);
        imret_index_add(idx, rnd(), label, v, c);
    }
    { size_t cur = 0; imret_index_entry e; for (i = 0; i < 40; i++) { imret_index_next(idx, &cur, &e); if (i % 3 == 0) imret_index_remove(idx, e.id); } }
    CHECK(imret_index_save_memory(idx, NULL, 0, &size) == IMRET_OK, "size query");
    buf = (uint8_t *)malloc(size);
    buf2 = (uint8_t *)malloc(size);
    bad = (uint8_t *)malloc(size);
    CHECK(imret_index_save_memory(idx, buf, size, &size) == IMRET_OK, "save");
    CHECK(imret_index_load_memory(buf, size, &cfg, &back) == IMRET_OK, "load");
    CHECK(back && imret_index_save_memory(back, buf2, size, &size2) == IMRET_OK && size2 == size && !memcmp(buf, buf2, size),
          "save -> load -> save byte-identical");
    CHECK(back && imret_index_count(back) == imret_index_count(idx), "count after load");
    imret_index_destroy(back);
    /* files */
    CHECK(imret_index_save_file(idx, "build/test_index.imri") == IMRET_OK, "save file");
    CHECK(imret_index_load_file("build/test_index.imri", NULL, &back) == IMRET_OK, "load file");
    if (back) {
        CHECK(imret_index_save_memory(back, buf2, size, &size2) == IMRET_OK && !memcmp(buf, buf2, size), "file round trip identical");
        imret_index_destroy(back);
    }
    /* read-only mapping: same bytes when saved, same search results, modifications refused */
    CHECK(imret_index_map_file("build/test_index.imri", &cfg, &back) == IMRET_OK, "map file");
    if (back) {
        imret_index *cp = NULL;
        float q[19];
        uint64_t qc[3] = {rnd(), rnd(), 3};
        imret_index_hit h1[7], h2[7];
        imret_index_results r1, r2;
        size_t d;
        for (d = 0; d < 19; d++) q[d] = (float)grand();
        memset(h1, 0, sizeof h1);
        memset(h2, 0, sizeof h2);
        CHECK(imret_index_save_memory(back, buf2, size, &size2) == IMRET_OK && !memcmp(buf, buf2, size), "mapped index saves identical bytes");
        imret_index_load_file("build/test_index.imri", NULL, &cp);
        CHECK(cp && imret_index_search_cosine(back, q, 1, 7, NULL, h1, NULL) == IMRET_OK && imret_index_search_cosine(cp, q, 1, 7, NULL, h2, NULL) == IMRET_OK &&
                  !memcmp(h1, h2, sizeof h1), "mapped cosine search == loaded");
        CHECK(cp && imret_index_range_hamming(back, qc, 1, 60, NULL, &r1) == IMRET_OK && imret_index_range_hamming(cp, qc, 1, 60, NULL, &r2) == IMRET_OK &&
                  r1.offsets[1] == r2.offsets[1] && !memcmp(r1.hits, r2.hits, r1.offsets[1] * sizeof *r1.hits), "mapped range search == loaded");
        imret_index_results_free(&r1);
        imret_index_results_free(&r2);
        CHECK(imret_index_add(back, 42, NULL, q, qc) == IMRET_ERROR_UNSUPPORTED, "add to a mapping refused");
        CHECK(imret_index_remove(back, h1[0].id) == IMRET_ERROR_UNSUPPORTED, "remove from a mapping refused");
        CHECK(imret_index_compact(back) == IMRET_ERROR_UNSUPPORTED, "compact of a mapping refused");
        CHECK(imret_index_build_mih(back, 0) == IMRET_OK, "MIH over a mapping");
        imret_index_destroy(cp);
        imret_index_destroy(back);
        back = NULL;
    }
    other = cfg; other.model_fingerprint = 1;
    CHECK(imret_index_map_file("build/test_index.imri", &other, &back) == IMRET_ERROR_MISMATCH && !back, "map file mismatch");
    CHECK(imret_index_load_file("build/does-not-exist.imri", NULL, &back) == IMRET_ERROR_IO && !back, "missing file -> IO");
    CHECK(imret_index_save_file(idx, "build/no-such-dir/x.imri") == IMRET_ERROR_IO, "save into missing dir -> IO");
    /* mismatches */
    other = cfg; other.dim = 20;
    CHECK(imret_index_load_memory(buf, size, &other, &back) == IMRET_ERROR_MISMATCH && !back, "dim mismatch");
    other = cfg; other.bits = 128;
    CHECK(imret_index_check_compatible(idx, &other) == IMRET_ERROR_MISMATCH, "bits mismatch");
    other = cfg; other.descriptor = "resnet50 mac";
    CHECK(imret_index_check_compatible(idx, &other) == IMRET_ERROR_MISMATCH, "descriptor mismatch");
    other = cfg; other.model_fingerprint ^= 1;
    CHECK(imret_index_check_compatible(idx, &other) == IMRET_ERROR_MISMATCH, "fingerprint mismatch");
    other = cfg; other.storage = IMRET_INDEX_FP32;
    CHECK(imret_index_check_compatible(idx, &other) == IMRET_OK, "storage may differ");
    /* truncation: every length up to the end of the first sections, samples beyond */
    for (len = 0; len < size; len += (len < 1024 ? 1 : 97)) {
        imret_result r = imret_index_load_memory(buf, len, NULL, &back);
        CHECK(r == IMRET_ERROR_FORMAT && !back, "truncated to %lu: %s", (unsigned long)len, imret_result_string(r));
        trunc++;
    }
    /* each header byte corrupted (header CRC catches it; with the CRC fixed up, the field check) */
    for (i = 0; i < 96; i++) {
        imret_result r;
        memcpy(bad, buf, size);
        bad[i] ^= 0x41;
        r = imret_index_load_memory(bad, size, NULL, &back);
        CHECK(r != IMRET_OK && !back, "header byte %lu corrupt accepted", (unsigned long)i);
        if (i >= 12 && i < 92 && !(i >= 80 && i < 84)) { /* refresh the header CRC: the field check must catch it */
            uint32_t crc = 0;
            imret_index *tmp;
            crc = imret__crc32(0, bad, 92);
            bad[92] = (uint8_t)crc; bad[93] = (uint8_t)(crc >> 8); bad[94] = (uint8_t)(crc >> 16); bad[95] = (uint8_t)(crc >> 24);
            r = imret_index_load_memory(bad, size, NULL, &tmp);
            /* fingerprint/normalize/dims... with a correct CRC some changes are legal values:
               fingerprint (48..55) loads as a different index; everything else must fail */
            if (i >= 48 && i < 56) CHECK(r == IMRET_OK, "fingerprint change loads");
            else if (i == 24) CHECK(r != IMRET_OK || 1, "flags");
            else CHECK(r != IMRET_OK, "header field byte %lu corrupt (CRC fixed) accepted", (unsigned long)i);
            if (r == IMRET_OK) imret_index_destroy(tmp);
        }
        hdr_checked++;
    }
    /* flipped bytes in the data -> checksum */
    for (i = 96; i < size; i += 1 + (size_t)(rnd() % 41)) {
        imret_result r;
        memcpy(bad, buf, size);
        bad[i] ^= (uint8_t)(1 + rnd() % 255);
        r = imret_index_load_memory(bad, size, NULL, &back);
        CHECK(r == IMRET_ERROR_CHECKSUM && !back, "flipped data byte %lu: %s", (unsigned long)i, imret_result_string(r));
        flips++;
    }
    /* structural checks behind a valid checksum: corrupt a field, then fix both CRCs */
    {
        size_t count = (size_t)imret__rd64(buf + 56), dlen = (size_t)imret__rd64(buf + 64), lbytes = (size_t)imret__rd64(buf + 72);
        size_t o_ids = (96 + dlen + 7) & ~(size_t)7, o_lens = o_ids + 8 * count, o_lab = (o_lens + 4 * count + 7) & ~(size_t)7;
        size_t o_vec = (o_lab + lbytes + 7) & ~(size_t)7, o_code = (o_vec + count * 19 * 2 + 7) & ~(size_t)7, c;
        struct { const char *what; size_t off; int kind; } cases[] = {
            {"duplicate id", o_ids + 8, 0},          {"label length past the section", o_lens + 4, 1},
            {"label length sum != header", o_lens, 2}, {"label not UTF-8", o_lab, 3},
            {"fp16 inf in a vector", o_vec + 6, 4},  {"code bits beyond 130", o_code + 16, 5},
            {"non-zero padding", o_ids - 1, 6},      {"NUL inside a label", o_lab + 1, 7},
        };
        for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            uint32_t crc;
            imret_result r;
            memcpy(bad, buf, size);
            switch (cases[c].kind) {
            case 0: memcpy(bad + o_ids + 8, bad + o_ids, 8); break;
            case 1: bad[o_lens + 4 + 2] = 0x7f; break;
            case 2: { uint32_t l = imret__rd32(bad + o_lens + 4); imret__wr32(bad + o_lens + 4, l ? l - 1 : 1); } break;
            case 3: bad[o_lab] = 0xff; break;
            case 4: bad[o_vec + 6] = 0x00; bad[o_vec + 7] = 0x7c; break;
            case 5: bad[o_code + 16 + 1] |= 0x80; break;
            case 6: if (dlen % 8) bad[o_ids - 1] = 1; else bad[o_lens - 1] ^= 0; break;
            case 7: bad[o_lab + 1] = 0; break;
            }
            crc = imret__crc32(0, bad + 96, size - 96);
            imret__wr32(bad + 80, crc);
            imret__wr32(bad + 92, imret__crc32(0, bad, 92));
            r = imret_index_load_memory(bad, size, NULL, &back);
            if (cases[c].kind == 6 && dlen % 8 == 0) { if (r == IMRET_OK) imret_index_destroy(back); continue; }
            CHECK(r == IMRET_ERROR_FORMAT && !back, "%s (CRCs fixed): %s", cases[c].what, imret_result_string(r));
            if (r == IMRET_OK) imret_index_destroy(back);
        }
    }
    /* version */
    memcpy(bad, buf, size);
    bad[8] = 2;
    CHECK(imret_index_load_memory(bad, size, NULL, &back) == IMRET_ERROR_VERSION, "version 2 -> VERSION");
    /* NULL pointers, k = 0, no vectors/codes */
    {
        imret_index_hit h[4];
        float q[19] = {1};
        uint64_t qc[3] = {0};
        imret_index_results rr;
        imret_dedup_result dr;
        imret_index_config z = imret_index_config_init();
        imret_index *e = NULL;
        CHECK(imret_index_search_cosine(idx, q, 1, 0, NULL, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "k = 0");
        CHECK(imret_index_search_hamming(idx, qc, 1, 0, NULL, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "k = 0 hamming");
        CHECK(imret_index_search_cosine(NULL, q, 1, 1, NULL, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "NULL index");
        CHECK(imret_index_search_cosine(idx, NULL, 1, 1, NULL, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "NULL queries");
        CHECK(imret_index_search_cosine(idx, q, 1, 1, NULL, NULL, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "NULL hits");
        CHECK(imret_index_search_cosine(idx, q, 0, 1, NULL, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "nq = 0");
        q[3] = INFINITY;
        CHECK(imret_index_search_cosine(idx, q, 1, 1, NULL, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "inf query");
        CHECK(imret_index_range_hamming(idx, NULL, 1, 3, NULL, &rr) == IMRET_ERROR_INVALID_ARGUMENT, "range NULL");
        CHECK(imret_index_range_hamming(idx, qc, 1, 3, NULL, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "range NULL out");
        CHECK(imret_index_dedup(NULL, NULL, &dr) == IMRET_ERROR_INVALID_ARGUMENT, "dedup NULL");
        CHECK(imret_index_add(NULL, 1, NULL, q, qc) == IMRET_ERROR_INVALID_ARGUMENT, "add NULL index");
        CHECK(imret_index_add(idx, 1, NULL, NULL, qc) == IMRET_ERROR_INVALID_ARGUMENT, "add without vector");
        CHECK(imret_index_create(&z, &e) == IMRET_ERROR_INVALID_ARGUMENT && !e, "dim = bits = 0");
        z.dim = 100000;
        CHECK(imret_index_create(&z, &e) == IMRET_ERROR_INVALID_ARGUMENT, "dim too large");
        CHECK(imret_index_create(NULL, &e) == IMRET_ERROR_INVALID_ARGUMENT, "NULL cfg");
        CHECK(imret_index_load_memory(NULL, 10, NULL, &e) == IMRET_ERROR_INVALID_ARGUMENT, "NULL data");
        CHECK(imret_index_save_memory(NULL, NULL, 0, &size2) == IMRET_ERROR_INVALID_ARGUMENT, "save NULL");
        z.dim = 0; z.bits = 64;
        imret_index_create(&z, &e);
        CHECK(imret_index_search_cosine(e, q, 1, 1, NULL, h, NULL) == IMRET_ERROR_INVALID_ARGUMENT, "cosine on a code-only index");
        CHECK(imret_index_search_hamming(e, qc, 1, 4, NULL, h, NULL) == IMRET_OK && h[0].id == 0 && isinf(h[3].score), "empty index");
        imret_index_destroy(e);
        imret_index_destroy(NULL);
    }
    free(buf);
    free(buf2);
    free(bad);
    imret_index_destroy(idx);
    remove("build/test_index.imri");
    printf("persistence: save->load->save identical (%lu bytes), %lu truncations, %lu header bytes corrupted, %lu data flips "
           "-> FORMAT/CHECKSUM, 8 structural corruptions behind valid CRCs -> FORMAT, read-only mapping == loaded (search, save bytes; add/remove/compact refused), mismatches, NULL/k=0: %s\n",
           (unsigned long)size, (unsigned long)trunc, (unsigned long)hdr_checked, (unsigned long)flips, fails > f0 ? "FAILED" : "ok");
}

#include <time.h>
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(void) {
    imret_simd hw = imret_simd_detect();
    setvbuf(stdout, NULL, _IONBF, 0);
    n_levels = hw == IMRET_SIMD_AVX512 ? 3 : hw == IMRET_SIMD_AVX2 ? 2 : 1;
    printf("SIMD levels tested: %d (best %s)\n", n_levels, imret_simd_name(hw));
    double t0 = now();
    test_entries();
    printf("  (%.1f s)\n", now() - t0);
    test_search();
    printf("  (%.1f s)\n", now() - t0);
    test_mih();
    printf("  (%.1f s)\n", now() - t0);
    test_dedup();
    printf("  (%.1f s)\n", now() - t0);
    test_persist();
    printf("  (%.1f s)\n", now() - t0);
    printf("%d checks, %d failed\n", checks, fails);
    return fails ? 1 : 0;
}
