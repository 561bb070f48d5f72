/* test_index_ref.c -- imret search vs numpy and FAISS references (tests/ref_index.py writes
   tests/data/index_ref.bin). On every SIMD level and at 1 and 2 threads:
   - tie-heavy data (small-integer vectors, normalize = 0; low-entropy 256-bit codes):
     top-k ids and scores equal numpy's (ties by smaller id) exactly; per-rank scores equal
     FAISS's and the ids above the k-th score equal FAISS's (FAISS orders ties its own way);
     range results equal numpy's lists and FAISS range_search sets
   - random normalised vectors stored as fp16: top-k ids equal numpy's (float64 on the
     fp16-rounded vectors) except near-ties, scores within 1e-6
   Usage: test_index_ref [tests/data/index_ref.bin] */
#define IMRET_IMPLEMENTATION
#include "imret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static FILE *f;
static void *rd(size_t count, size_t size) {
    void *p = malloc(count * size + 1);
    if (fread(p, size, count, f) != count) { printf("reference file truncated\n"); exit(2); }
    return p;
}
static int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; if (fails < 20) { printf("FAIL: "); printf(__VA_ARGS__); printf("\n"); } } } while (0)
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "tests/data/index_ref.bin";
    char magic[8];
    uint64_t hdr[6], *ids, *codes, *qcodes, *np_cos_ids, *np_ham_ids, *rh_counts, *rc_counts, *rh_ids, *rc_ids, *lims_h, *lims_c, h2[2], *np2_ids;
    int64_t *fc_lab, *fh_lab, *lab_h, *lab_c;
    int32_t *np_ham_d, *fh_d;
    float cos_thr, *vecs, *queries, *np_cos_s, *fc_d, *raw, *qraw;
    double *np2_s, worst2 = 0;
    size_t n, dim, bits, nq, k, rad, words, q, j, li, th, total_h = 0, total_c = 0, n2, dim2, near_ties = 0;
    imret_index *T, *R;
    imret_index_config cfg = imret_index_config_init();
    imret_simd levels[3] = {IMRET_SIMD_SCALAR, IMRET_SIMD_AVX2, IMRET_SIMD_AVX512};
    int nl = imret_simd_detect() == IMRET_SIMD_AVX512 ? 3 : imret_simd_detect() == IMRET_SIMD_AVX2 ? 2 : 1;
    f = fopen(path, "rb");
    if (!f) { printf("cannot open %s (run /usr/bin/python3 tests/ref_index.py)\n", path); return 2; }
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "IMRIREF1", 8) || fread(hdr, 8, 6, f) != 6 || fread(&cos_thr, 4, 1, f) != 1) {
        printf("bad reference file\n");
        return 2;
    }
    n = hdr[0]; dim = hdr[1]; bits = hdr[2]; nq = hdr[3]; k = hdr[4]; rad = hdr[5]; words = (bits + 63) / 64;
    ids = (uint64_t *)rd(n, 8); vecs = (float *)rd(n * dim, 4); codes = (uint64_t *)rd(n * words, 8);
    queries = (float *)rd(nq * dim, 4); qcodes = (uint64_t *)rd(nq * words, 8);
    np_cos_ids = (uint64_t *)rd(nq * k, 8); np_cos_s = (float *)rd(nq * k, 4);
    np_ham_ids = (uint64_t *)rd(nq * k, 8); np_ham_d = (int32_t *)rd(nq * k, 4);
    fc_lab = (int64_t *)rd(nq * k, 8); fc_d = (float *)rd(nq * k, 4);
    fh_lab = (int64_t *)rd(nq * k, 8); fh_d = (int32_t *)rd(nq * k, 4);
    rh_counts = (uint64_t *)rd(nq, 8); for (q = 0; q < nq; q++) total_h += rh_counts[q];
    rh_ids = (uint64_t *)rd(total_h, 8);
    rc_counts = (uint64_t *)rd(nq, 8); for (q = 0; q < nq; q++) total_c += rc_counts[q];
    rc_ids = (uint64_t *)rd(total_c, 8);
    lims_h = (uint64_t *)rd(nq + 1, 8); lab_h = (int64_t *)rd(lims_h[nq], 8);
    lims_c = (uint64_t *)rd(nq + 1, 8); lab_c = (int64_t *)rd(lims_c[nq], 8);
    if (fread(h2, 8, 2, f) != 2) return 2;
    n2 = h2[0]; dim2 = h2[1];
    raw = (float *)rd(n2 * dim2, 4); qraw = (float *)rd(nq * dim2, 4);
    np2_ids = (uint64_t *)rd(nq * k, 8); np2_s = (double *)rd(nq * k, 8);
    fclose(f);

    cfg.dim = dim; cfg.bits = bits; cfg.normalize = 0;
    if (imret_index_create(&cfg, &T) || imret_index_add_batch(T, n, ids, NULL, vecs, codes)) { printf("%s\n", imret_last_error()); return 2; }
    cfg = imret_index_config_init();
    cfg.dim = dim2; cfg.storage = IMRET_INDEX_FP16;
    imret_index_create(&cfg, &R);
    for (j = 0; j < n2; j++) imret_index_add(R, j * 3, NULL, raw + j * dim2, NULL);

    for (li = 0; li < (size_t)nl; li++)
        for (th = 1; th <= 2; th++) {
            imret_search_options o = imret_search_options_init();
            imret_index_hit *hc = (imret_index_hit *)calloc(nq * k, sizeof *hc), *hh = (imret_index_hit *)calloc(nq * k, sizeof *hh);
            imret_index_results rh, rc;
            o.simd = levels[li]; o.threads = (int)th; o.method = IMRET_SEARCH_FLAT;
            CHECK(imret_index_search_cosine(T, queries, nq, k, &o, hc, NULL) == IMRET_OK, "cosine search");
            CHECK(imret_index_search_hamming(T, qcodes, nq, k, &o, hh, NULL) == IMRET_OK, "hamming search");
            for (q = 0; q < nq; q++) {
                float kth_c = fc_d[q * k + k - 1];
                int kth_h = fh_d[q * k + k - 1];
                uint64_t a[64], b[64];
                size_t na = 0, nb = 0;
                for (j = 0; j < k; j++) {
                    CHECK(hc[q * k + j].id == np_cos_ids[q * k + j] && hc[q * k + j].score == np_cos_s[q * k + j],
                          "%s th%lu cosine q%lu rank %lu: id %llu score %g, numpy %llu %g", imret_simd_name(levels[li]), (unsigned long)th,
                          (unsigned long)q, (unsigned long)j, (unsigned long long)hc[q * k + j].id, hc[q * k + j].score,
                          (unsigned long long)np_cos_ids[q * k + j], np_cos_s[q * k + j]);
                    CHECK(hh[q * k + j].id == np_ham_ids[q * k + j] && hh[q * k + j].score == (float)np_ham_d[q * k + j],
                          "%s hamming q%lu rank %lu: id %llu dist %g, numpy %llu %d", imret_simd_name(levels[li]), (unsigned long)q,
                          (unsigned long)j, (unsigned long long)hh[q * k + j].id, hh[q * k + j].score, (unsigned long long)np_ham_ids[q * k + j],
                          np_ham_d[q * k + j]);
                    CHECK(hc[q * k + j].score == fc_d[q * k + j], "cosine rank score vs FAISS");
                    CHECK(hh[q * k + j].score == (float)fh_d[q * k + j], "hamming rank distance vs FAISS");
                    if (hc[q * k + j].score > kth_c) a[na++] = hc[q * k + j].id;
                    if (fc_d[q * k + j] > kth_c) b[nb++] = ids[fc_lab[q * k + j]];
                }
                qsort(a, na, 8, cmp_u64); qsort(b, nb, 8, cmp_u64);
                CHECK(na == nb && !memcmp(a, b, na * 8), "cosine ids above the k-th score vs FAISS (q%lu)", (unsigned long)q);
                na = nb = 0;
                for (j = 0; j < k; j++) {
                    if (hh[q * k + j].score < (float)kth_h) a[na++] = hh[q * k + j].id;
                    if (fh_d[q * k + j] < kth_h) b[nb++] = ids[fh_lab[q * k + j]];
                }
                qsort(a, na, 8, cmp_u64); qsort(b, nb, 8, cmp_u64);
                CHECK(na == nb && !memcmp(a, b, na * 8), "hamming ids below the k-th distance vs FAISS (q%lu)", (unsigned long)q);
            }
            CHECK(imret_index_range_hamming(T, qcodes, nq, (uint32_t)rad, &o, &rh) == IMRET_OK, "range ham");
            CHECK(imret_index_range_cosine(T, queries, nq, cos_thr, &o, &rc) == IMRET_OK, "range cos");
            {
                size_t oh = 0, oc = 0;
                for (q = 0; q < nq; q++) {
                    size_t c1 = rh.offsets[q + 1] - rh.offsets[q], c2 = rc.offsets[q + 1] - rc.offsets[q], i;
                    uint64_t *x = (uint64_t *)malloc((c1 + c2 + 1) * 8), *y = (uint64_t *)malloc((c1 + c2 + lims_h[q + 1] + lims_c[q + 1] + 1) * 8);
                    CHECK(c1 == rh_counts[q], "range ham q%lu count %lu vs numpy %llu", (unsigned long)q, (unsigned long)c1, (unsigned long long)rh_counts[q]);
                    CHECK(c2 == rc_counts[q], "range cos q%lu count %lu vs numpy %llu", (unsigned long)q, (unsigned long)c2, (unsigned long long)rc_counts[q]);
                    for (i = 0; i < c1 && i < rh_counts[q]; i++) CHECK(rh.hits[rh.offsets[q] + i].id == rh_ids[oh + i], "range ham order");
                    for (i = 0; i < c2 && i < rc_counts[q]; i++) CHECK(rc.hits[rc.offsets[q] + i].id == rc_ids[oc + i], "range cos order");
                    oh += rh_counts[q]; oc += rc_counts[q];
                    /* FAISS sets */
                    CHECK(lims_h[q + 1] - lims_h[q] == c1, "range ham vs FAISS count");
                    CHECK(lims_c[q + 1] - lims_c[q] == c2, "range cos vs FAISS count");
                    if (lims_h[q + 1] - lims_h[q] == c1) {
                        for (i = 0; i < c1; i++) { x[i] = rh.hits[rh.offsets[q] + i].id; y[i] = ids[lab_h[lims_h[q] + i]]; }
                        qsort(x, c1, 8, cmp_u64); qsort(y, c1, 8, cmp_u64);
                        CHECK(!memcmp(x, y, c1 * 8), "range ham set vs FAISS");
                    }
                    if (lims_c[q + 1] - lims_c[q] == c2) {
                        for (i = 0; i < c2; i++) { x[i] = rc.hits[rc.offsets[q] + i].id; y[i] = ids[lab_c[lims_c[q] + i]]; }
                        qsort(x, c2, 8, cmp_u64); qsort(y, c2, 8, cmp_u64);
                        CHECK(!memcmp(x, y, c2 * 8), "range cos set vs FAISS");
                    }
                    free(x); free(y);
                }
            }
            imret_index_results_free(&rh);
            imret_index_results_free(&rc);
            /* dataset R: random normalised, fp16 storage */
            CHECK(imret_index_search_cosine(R, qraw, nq, k, &o, hc, NULL) == IMRET_OK, "R search");
            for (q = 0; q < nq; q++)
                for (j = 0; j < k; j++) {
                    double e = fabs((double)hc[q * k + j].score - np2_s[q * k + j]);
                    if (e > worst2) worst2 = e;
                    CHECK(e <= 1e-6, "R score rank %lu: %g vs numpy %g", (unsigned long)j, hc[q * k + j].score, np2_s[q * k + j]);
                    if (hc[q * k + j].id != np2_ids[q * k + j]) {
                        /* allowed only when numpy's scores at the two ranks are within float rounding */
                        CHECK(j + 1 < k && fabs(np2_s[q * k + j] - np2_s[q * k + j + 1]) < 2e-6, "R id differs at rank %lu without a near-tie",
                              (unsigned long)j);
                        near_ties++;
                    }
                }
            free(hc);
            free(hh);
        }
    printf("vs numpy/FAISS: %lu queries x top-%lu cosine (int vectors, dim %lu) and Hamming (%lu bits) on %lu entries: ids/scores == numpy "
           "(ties by id), per-rank scores == FAISS; range (r<=%lu: %lu hits, cos>=%g: %lu hits) == numpy lists and FAISS sets; fp16 random: "
           "worst score error %.3g, %lu near-tie swaps; %d levels x 2 thread counts: %s\n",
           (unsigned long)nq, (unsigned long)k, (unsigned long)dim, (unsigned long)bits, (unsigned long)n, (unsigned long)rad,
           (unsigned long)total_h, cos_thr, (unsigned long)total_c, worst2, (unsigned long)near_ties, nl, fails ? "FAILED" : "ok");
    imret_index_destroy(T);
    imret_index_destroy(R);
    free(ids); free(vecs); free(codes); free(queries); free(qcodes); free(np_cos_ids); free(np_cos_s); free(np_ham_ids);
    free(np_ham_d); free(fc_lab); free(fc_d); free(fh_lab); free(fh_d); free(rh_counts); free(rh_ids); free(rc_counts);
    free(rc_ids); free(lims_h); free(lab_h); free(lims_c); free(lab_c); free(raw); free(qraw); free(np2_ids); free(np2_s);
    return fails ? 1 : 0;
}
