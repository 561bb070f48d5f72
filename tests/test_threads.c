/* Thread safety: one model and one index shared by several threads, each thread with its
   own context. Forward passes (imret_describe on real photos, default model) and index
   searches (cosine/Hamming top-k, flat and multi-index hashing, range, dedup) run from
   THREADS threads at once and must give exactly the results of the same calls made first
   on one thread (same kernels, one OpenMP thread per context: bit-identical). Also: the
   last-error message is per thread, and concurrent first use of the CRC tables (loading
   files in parallel) is race-free. `make test-tsan` runs this under ThreadSanitizer.
   usage: test_threads MODEL.imw IMAGE... */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define MAXIMG 4
#define NQ 6
#define K 10
#define DIM 96
#define BITS 256
#define N 3000

static int fails;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
#define CHECK(c, ...) do { if (!(c)) { pthread_mutex_lock(&lock); fails++; printf("FAIL: "); printf(__VA_ARGS__); printf(" [%s]\n", imret_last_error()); pthread_mutex_unlock(&lock); } } while (0)

static const imret_model *model;
static imret_image images[MAXIMG];
static int nimg, feat;
static float *ref_desc; /* [nimg][feat] */
static imret_index *index_;
static float queries[NQ * DIM];
static uint64_t qcodes[NQ * BITS / 64];
static imret_index_hit ref_cos[NQ * K], ref_ham[NQ * K], ref_mih[NQ * K];
static size_t ref_range_n;
static imret_index_hit *ref_range;
static size_t ref_groups, ref_members;
static uint8_t *saved;
static size_t saved_size;

static imret_descriptor_config desc_cfg(void) {
    imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
    dc.longest_side = 64;
    dc.preprocess.longest_side = 64;
    return dc;
}

typedef struct search_out {
    imret_index_hit cos[NQ * K], ham[NQ * K], mih[NQ * K];
    imret_index_results range;
    size_t groups, members;
} search_out;

static int run_searches(search_out *o) {
    imret_search_options so = imret_search_options_init();
    imret_dedup_options dopt = imret_dedup_options_init();
    imret_dedup_result dr;
    so.threads = 1;
    dopt.threads = 1;
    so.method = IMRET_SEARCH_FLAT;
    if (imret_index_search_cosine(index_, queries, NQ, K, &so, o->cos, NULL)) return 0;
    if (imret_index_search_hamming(index_, qcodes, NQ, K, &so, o->ham, NULL)) return 0;
    so.method = IMRET_SEARCH_MIH;
    if (imret_index_search_hamming(index_, qcodes, NQ, K, &so, o->mih, NULL)) return 0;
    if (imret_index_range_hamming(index_, qcodes, NQ, 100, &so, &o->range)) return 0;
    dopt.threshold = 40;
    if (imret_index_dedup(index_, &dopt, &dr)) return 0;
    o->groups = dr.group_count;
    o->members = dr.member_count;
    imret_dedup_result_free(&dr);
    return 1;
}

static void *worker(void *arg) {
    long t = (long)arg;
    imret_context_config cc = imret_context_config_init();
    imret_context *ctx = NULL;
    imret_descriptor_config dc = desc_cfg();
    float *d = (float *)malloc((size_t)feat * sizeof(float));
    search_out *o = (search_out *)calloc(1, sizeof *o);
    char msg[64];
    int round, i;
    imret_index *loaded = NULL;
    cc.threads = 1;
    CHECK(d && o && imret_context_create(model, &cc, &ctx) == IMRET_OK, "thread %ld: context", t);
    if (!d || !o || !ctx) goto out;
    for (round = 0; round < 2; round++) {
        for (i = 0; i < nimg; i++) {
            int im = (int)((i + t) % nimg); /* threads visit the images in different orders */
            CHECK(imret_describe(ctx, &images[im], &dc, d, (size_t)feat) == IMRET_OK, "thread %ld: describe image %d", t, im);
            CHECK(!memcmp(d, ref_desc + (size_t)im * feat, (size_t)feat * sizeof(float)), "thread %ld: image %d descriptor differs from the one-thread run", t, im);
        }
        CHECK(run_searches(o), "thread %ld: searches failed", t);
        CHECK(!memcmp(o->cos, ref_cos, sizeof ref_cos), "thread %ld: cosine top-%d differs", t, K);
        CHECK(!memcmp(o->ham, ref_ham, sizeof ref_ham), "thread %ld: Hamming top-%d (flat) differs", t, K);
        CHECK(!memcmp(o->mih, ref_mih, sizeof ref_mih), "thread %ld: Hamming top-%d (MIH) differs", t, K);
        CHECK(o->range.offsets[NQ] == ref_range_n && !memcmp(o->range.hits, ref_range, ref_range_n * sizeof *ref_range),
              "thread %ld: range search differs", t);
        CHECK(o->groups == ref_groups && o->members == ref_members, "thread %ld: dedup differs", t);
        imret_index_results_free(&o->range);
        /* concurrent loads of the saved index (CRC, allocation) */
        CHECK(imret_index_load_memory(saved, saved_size, NULL, &loaded) == IMRET_OK && imret_index_count(loaded) == N,
              "thread %ld: concurrent load", t);
        imret_index_destroy(loaded);
        loaded = NULL;
        /* per-thread error detail: provoke a failure naming this thread, then check it */
        snprintf(msg, sizeof msg, "/nonexistent/thread-%ld.imri", t);
        CHECK(imret_index_load_file(msg, NULL, &loaded) == IMRET_ERROR_IO, "thread %ld: missing file", t);
        CHECK(strstr(imret_last_error(), msg) != NULL, "thread %ld: last error is another thread's: %s", t, imret_last_error());
    }
out:
    imret_context_destroy(ctx);
    free(d);
    free(o);
    return NULL;
}

/* The first CRC use of the process: THREADS threads save the shared index at once (the
   save computes CRC-32s, building the tables on first use); all must get the same bytes. */
static uint8_t *saves[THREADS];
static void *crc_first_use(void *arg) {
    long t = (long)arg;
    size_t n = 0;
    CHECK(imret_index_save_memory(index_, NULL, 0, &n) == IMRET_OK && n == saved_size, "thread %ld: save size", t);
    saves[t] = (uint8_t *)malloc(n);
    CHECK(saves[t] && imret_index_save_memory(index_, saves[t], n, &n) == IMRET_OK, "thread %ld: save", t);
    return NULL;
}

int main(int argc, char **argv) {
    imret_model *m;
    imret_context *ctx;
    imret_context_config cc = imret_context_config_init();
    imret_index_config ic = imret_index_config_init();
    imret_model_info info;
    imret_descriptor_config dc = desc_cfg();
    pthread_t th[THREADS];
    search_out *o = (search_out *)calloc(1, sizeof *o);
    uint64_t *ids = (uint64_t *)malloc(N * sizeof(uint64_t));
    float *vecs = (float *)malloc((size_t)N * DIM * sizeof(float));
    uint64_t *codes = (uint64_t *)malloc((size_t)N * (BITS / 64) * sizeof(uint64_t));
    unsigned s = 12345;
    long t;
    size_t i;
    int a;
    if (argc < 3) { printf("usage: %s MODEL.imw IMAGE...\n", argv[0]); return 2; }
    /* 0. the index first, saved to memory: a plain byte buffer every thread may load */
    ic.dim = DIM; ic.storage = IMRET_INDEX_FP16; ic.bits = BITS; ic.descriptor = "threads test";
    for (i = 0; i < (size_t)N * DIM; i++) { s = s * 1103515245u + 12345u; vecs[i] = (float)((s >> 9) & 1023) / 512.0f - 1.0f; }
    for (i = 0; i < (size_t)N * (BITS / 64); i++) { s = s * 1103515245u + 12345u; codes[i] = ((uint64_t)s << 32) ^ (s * 2654435761u); }
    for (i = 0; i < N; i++) ids[i] = i * 7 + 3;
    for (i = 0; i < 40; i++) memcpy(codes + (i + 500) * (BITS / 64), codes + i * (BITS / 64), BITS / 8); /* duplicates */
    if (imret_index_create(&ic, &index_) || imret_index_add_batch(index_, N, ids, NULL, vecs, codes) || imret_index_build_mih(index_, 0)) {
        printf("FAIL: index setup: %s\n", imret_last_error());
        return 1;
    }
    memcpy(queries, vecs + 100 * DIM, sizeof queries);
    memcpy(qcodes, codes + 17 * (BITS / 64), sizeof qcodes);
    imret_index_save_memory(index_, NULL, 0, &saved_size); /* size only: no CRC yet */
    for (t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, crc_first_use, (void *)t);
    for (t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    for (t = 1; t < THREADS; t++) CHECK(saves[t] && saves[0] && !memcmp(saves[t], saves[0], saved_size), "concurrent saves differ");
    saved = saves[0];
    for (t = 1; t < THREADS; t++) free(saves[t]);
    if (!saved) return 1;
    /* 1. one-thread references */
    if (imret_model_load_file(argv[1], NULL, &m) || imret_model_get_info(m, &info)) { printf("FAIL: %s\n", imret_last_error()); return 1; }
    model = m;
    feat = info.feature_channels;
    for (a = 2; a < argc && nimg < MAXIMG; a++)
        if (imret_image_load_file(argv[a], NULL, &images[nimg]) == IMRET_OK) nimg++;
        else printf("FAIL: %s\n", imret_last_error()), fails++;
    cc.threads = 1;
    ref_desc = (float *)malloc((size_t)nimg * feat * sizeof(float));
    if (!ref_desc || imret_context_create(m, &cc, &ctx)) return 1;
    for (a = 0; a < nimg; a++)
        CHECK(imret_describe(ctx, &images[a], &dc, ref_desc + (size_t)a * feat, (size_t)feat) == IMRET_OK, "reference describe %d", a);
    imret_context_destroy(ctx);
    CHECK(run_searches(o), "reference searches");
    memcpy(ref_cos, o->cos, sizeof ref_cos);
    memcpy(ref_ham, o->ham, sizeof ref_ham);
    memcpy(ref_mih, o->mih, sizeof ref_mih);
    ref_range_n = o->range.offsets[NQ];
    ref_range = o->range.hits;
    ref_groups = o->groups;
    ref_members = o->members;
    /* sanity of the references themselves (not produced by the code under test alone):
       each query is an entry of the index, so it must be its own best hit */
    CHECK(ref_cos[0].id == 100 * 7 + 3 && ref_ham[0].id == 17 * 7 + 3 && ref_ham[0].score == 0.0f, "queries are not their own best hits");
    CHECK(!memcmp(ref_ham, ref_mih, sizeof ref_ham), "MIH and flat Hamming top-k differ");
    CHECK(ref_groups >= 40, "dedup found %lu groups, the data has 40 duplicate pairs", (unsigned long)ref_groups);
    /* 2. the same from THREADS threads at once */
    for (t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    for (t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    printf("%d threads x 2 rounds: %d images described (%d channels), %d queries x (cosine, Hamming flat, MIH, range), dedup %lu groups: %s\n",
           THREADS, nimg, feat, NQ, (unsigned long)ref_groups, fails ? "MISMATCH" : "identical to one thread");
    imret_index_results_free(&o->range);
    for (a = 0; a < nimg; a++) imret_image_free(&images[a]);
    imret_index_destroy(index_);
    imret_model_free(m);
    free(o); free(ids); free(vecs); free(codes); free(saved); free(ref_desc);
    return fails != 0;
}
