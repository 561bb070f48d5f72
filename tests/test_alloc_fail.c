/* Allocation-failure injection: IMRET_MALLOC/IMRET_REALLOC fail the Nth allocation, for
   N = 1 .. (allocations of a successful run), in model load (tests/data/resnet18.imw),
   context + image decode + preprocess + forward + pooling, index load, index searches
   (cosine/Hamming top-k, range, MIH build and search, dedup), whitening and hash loads and
   FAISS import. Every case must fail cleanly (an error code and a message) or, where imret
   tolerates the failure, succeed with the reference result; and leave no allocation behind
   (the hook counts live blocks; `make test-asan` also runs it under LeakSanitizer).
   usage: test_alloc_fail MODEL.imw IMAGE */
#include "alloc_hook.h"
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <stdio.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL: "); printf(__VA_ARGS__); printf(" [%s]\n", imret_last_error()); } } while (0)

/* One scenario: run(ctx) returns an imret_result; ok(ctx) checks a successful result and
   frees what run() produced. */
typedef struct scenario {
    const char *name;
    imret_result (*run)(void *);
    int (*ok)(void *); /* 1 = result as expected; must free the result */
    void *arg;
    size_t input_size; /* bytes of the file the scenario reads (0 = none) */
} scenario;

static void inject(const scenario *s) {
    size_t total, n, errors = 0, oom = 0, tolerated = 0, base = hook_blocks, peak, live0 = hook_live;
    imret_result rc;
    hook_reset(0);
    rc = s->run(s->arg);
    total = hook_calls;
    peak = hook_peak - live0;
    CHECK(rc == IMRET_OK && s->ok(s->arg), "%s: the run without failures failed", s->name);
    CHECK(hook_blocks == base, "%s: %ld blocks leaked by a successful run", s->name, (long)(hook_blocks - base));
    for (n = 1; n <= total; n++) {
        hook_reset(n);
        imret__errbuf[0] = 0;
        rc = s->run(s->arg);
        hook_fail_at = 0;
        if (rc == IMRET_OK) {
            tolerated++;
            CHECK(s->ok(s->arg), "%s: allocation %lu of %lu failed, call returned OK with a wrong result", s->name, (unsigned long)n, (unsigned long)total);
        } else {
            errors++;
            oom += rc == IMRET_ERROR_OUT_OF_MEMORY;
            CHECK(imret_last_error()[0] != 0, "%s: allocation %lu failed: %s without a message", s->name, (unsigned long)n, imret_result_string(rc));
        }
        if (hook_blocks != base) {
            CHECK(0, "%s: allocation %lu of %lu failed: %ld blocks leaked", s->name, (unsigned long)n, (unsigned long)total, (long)(hook_blocks - base));
            break;
        }
    }
    printf("  %-32s %4lu allocations (peak %9lu bytes for %8lu input bytes): %4lu failed with an error (%lu OUT_OF_MEMORY), %lu tolerated\n",
           s->name, (unsigned long)total, (unsigned long)peak, (unsigned long)s->input_size, (unsigned long)errors, (unsigned long)oom,
           (unsigned long)tolerated);
}

/* ---- model ---- */
static uint8_t *model_bytes;
static size_t model_size;
static imret_model *model_out;
static imret_result run_model(void *a) {
    imret_model_config mc = imret_model_config_init();
    (void)a;
    mc.skip_checksum = 1; /* the CRC is checked once in main; this is about allocations */
    return imret_model_load_memory(model_bytes, model_size, &mc, &model_out);
}
static int ok_model(void *a) {
    imret_model_info info;
    int ok = imret_model_get_info(model_out, &info) == IMRET_OK && info.feature_channels == 512;
    (void)a;
    imret_model_free(model_out);
    model_out = NULL;
    return ok;
}

/* ---- image -> descriptor ---- */
static imret_model *model;
static uint8_t *image_bytes;
static size_t image_size;
static float desc_ref[512], desc_got[512];
static imret_result run_describe(void *a) {
    imret_context_config cc = imret_context_config_init();
    imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
    imret_context *ctx;
    imret_image img;
    imret_result rc;
    (void)a;
    cc.threads = 1;
    dc.longest_side = dc.preprocess.longest_side = 48;
    if ((rc = imret_context_create(model, &cc, &ctx)) != IMRET_OK) return rc;
    if ((rc = imret_image_load_memory(image_bytes, image_size, NULL, &img)) == IMRET_OK) {
        rc = imret_describe(ctx, &img, &dc, desc_got, 512);
        imret_image_free(&img);
    }
    imret_context_destroy(ctx);
    return rc;
}
static int ok_describe(void *a) { (void)a; return !memcmp(desc_got, desc_ref, sizeof desc_ref); }

/* ---- index ---- */
static imret_index *index_;
static uint8_t *index_bytes;
static size_t index_size;
static imret_index *loaded;
static imret_result run_index_load(void *a) { (void)a; return imret_index_load_memory(index_bytes, index_size, NULL, &loaded); }
static int ok_index_load(void *a) {
    size_t n = 0;
    uint8_t *b = (uint8_t *)malloc(index_size);
    int ok = b && imret_index_save_memory(loaded, b, index_size, &n) == IMRET_OK && n == index_size && !memcmp(b, index_bytes, n);
    (void)a;
    free(b);
    imret_index_destroy(loaded);
    loaded = NULL;
    return ok;
}
#define NQ 3
#define K 5
static float qv[NQ * 24];
static uint64_t qc[NQ * 2];
typedef struct search_res {
    imret_index_hit cos[NQ * K], ham[NQ * K], mih[NQ * K];
    size_t range_n, groups, members;
} search_res;
static search_res sref, sgot;
static imret_result run_search(void *a) {
    imret_search_options so = imret_search_options_init();
    imret_dedup_options dopt = imret_dedup_options_init();
    imret_index_results rr;
    imret_dedup_result dr;
    imret_index *copy = NULL;
    imret_result rc;
    (void)a;
    memset(&sgot, 0, sizeof sgot);
    so.threads = 1;
    dopt.threads = 1;
    dopt.threshold = 20;
    if ((rc = imret_index_search_cosine(index_, qv, NQ, K, &so, sgot.cos, NULL))) return rc;
    if ((rc = imret_index_search_hamming(index_, qc, NQ, K, &so, sgot.ham, NULL))) return rc;
    if ((rc = imret_index_range_hamming(index_, qc, NQ, 40, &so, &rr))) return rc;
    sgot.range_n = rr.offsets[NQ];
    imret_index_results_free(&rr);
    if ((rc = imret_index_dedup(index_, &dopt, &dr))) return rc;
    sgot.groups = dr.group_count;
    sgot.members = dr.member_count;
    imret_dedup_result_free(&dr);
    /* MIH on a private copy (building modifies the index) */
    if ((rc = imret_index_load_memory(index_bytes, index_size, NULL, &copy))) return rc;
    so.method = IMRET_SEARCH_MIH;
    if (!(rc = imret_index_build_mih(copy, 4))) rc = imret_index_search_hamming(copy, qc, NQ, K, &so, sgot.mih, NULL);
    imret_index_destroy(copy);
    return rc;
}
static int ok_search(void *a) { (void)a; return !memcmp(&sgot, &sref, sizeof sref); }

/* ---- whitening, hash, FAISS ---- */
static uint8_t *wbytes, *hbytes, *fbytes;
static size_t wsize, hsize, fsize;
static imret_whitening *wout;
static imret_hash *hout;
static imret_index *fout;
static imret_result run_wload(void *a) { (void)a; return imret_whitening_load_memory(wbytes, wsize, &wout); }
static int ok_wload(void *a) { imret_whitening_info i; int ok = !imret_whitening_get_info(wout, &i) && i.in_dim == 24 && i.out_dim == 8; (void)a; imret_whitening_free(wout); return ok; }
static imret_result run_hload(void *a) { (void)a; return imret_hash_load_memory(hbytes, hsize, &hout); }
static int ok_hload(void *a) { imret_hash_info i; int ok = !imret_hash_get_info(hout, &i) && i.in_dim == 24 && i.bits == 128; (void)a; imret_hash_free(hout); return ok; }
static imret_result run_faiss(void *a) { (void)a; return imret_index_import_faiss_memory(fbytes, fsize, NULL, NULL, &fout); }
static int ok_faiss(void *a) { int ok = imret_index_count(fout) == 300; (void)a; imret_index_destroy(fout); return ok; }

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    uint8_t *b = NULL;
    long len;
    if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) && (b = (uint8_t *)malloc((size_t)len)) &&
        fread(b, 1, (size_t)len, f) == (size_t)len)
        *n = (size_t)len;
    else { free(b); b = NULL; }
    if (f) fclose(f);
    return b;
}

int main(int argc, char **argv) {
    imret_index_config ic = imret_index_config_init();
    imret_whitening_config wc = imret_whitening_config_init();
    imret_hash_config hc = imret_hash_config_init();
    imret_whitening *w;
    imret_hash *h;
    float x[300 * 24];
    uint64_t codes[300 * 2];
    unsigned s = 99;
    size_t i;
    scenario sc[8];
    if (argc < 3) { printf("usage: %s MODEL.imw IMAGE\n", argv[0]); return 2; }
    model_bytes = slurp(argv[1], &model_size);
    image_bytes = slurp(argv[2], &image_size);
    if (!model_bytes || !image_bytes) { printf("FAIL: cannot read inputs\n"); return 1; }
    if (imret_model_load_memory(model_bytes, model_size, NULL, &model)) { printf("FAIL: %s\n", imret_last_error()); return 1; }
    /* reference results, computed once without failures */
    for (i = 0; i < 300 * 24; i++) { s = s * 1103515245u + 12345u; x[i] = (float)((s >> 8) & 4095) / 2048.0f - 1.0f; }
    for (i = 0; i < 300 * 2; i++) { s = s * 1103515245u + 12345u; codes[i] = ((uint64_t)s << 32) ^ (s * 2654435761u); }
    for (i = 0; i < 30; i++) codes[2 * (i + 100)] = codes[2 * i] ^ 1, codes[2 * (i + 100) + 1] = codes[2 * i + 1];
    ic.dim = 24; ic.bits = 128; ic.storage = IMRET_INDEX_FP16; ic.descriptor = "alloc test";
    CHECK(!imret_index_create(&ic, &index_), "index create");
    for (i = 0; i < 300; i++) {
        char label[16];
        snprintf(label, sizeof label, "%lu.jpg", (unsigned long)i);
        CHECK(!imret_index_add(index_, i * 5, i % 3 ? label : NULL, x + 24 * i, codes + 2 * i), "add");
    }
    imret_index_remove(index_, 10);
    imret_index_save_memory(index_, NULL, 0, &index_size);
    index_bytes = (uint8_t *)malloc(index_size);
    imret_index_save_memory(index_, index_bytes, index_size, &index_size);
    memcpy(qv, x + 24 * 7, sizeof qv);
    memcpy(qc, codes + 2 * 7, sizeof qc);
    wc.out_dim = 8;
    CHECK(!imret_whitening_train(x, 300, 24, &wc, &w), "whitening train");
    imret_whitening_save_memory(w, NULL, 0, &wsize);
    wbytes = (uint8_t *)malloc(wsize);
    imret_whitening_save_memory(w, wbytes, wsize, &wsize);
    imret_whitening_free(w);
    hc.bits = 128;
    hc.itq_iterations = 5;
    CHECK(!imret_hash_train(x, 300, 24, &hc, &h), "hash train");
    imret_hash_save_memory(h, NULL, 0, &hsize);
    hbytes = (uint8_t *)malloc(hsize);
    imret_hash_save_memory(h, hbytes, hsize, &hsize);
    imret_hash_free(h);
    { /* FAISS IndexBinaryFlat bytes, written here by hand from the format description */
        fsize = 33 + 300 * 16;
        fbytes = (uint8_t *)calloc(1, fsize);
        memcpy(fbytes, "IBxF", 4);
        imret__wr32(fbytes + 4, 128); imret__wr32(fbytes + 8, 16); imret__wr64(fbytes + 12, 300);
        fbytes[20] = 1; imret__wr32(fbytes + 21, 1); imret__wr64(fbytes + 25, 300 * 16);
        for (i = 0; i < 300 * 2; i++) imret__wr64(fbytes + 33 + 8 * i, codes[i]);
    }
    hook_reset(0);
    CHECK(!run_describe(NULL), "reference describe");
    memcpy(desc_ref, desc_got, sizeof desc_ref);
    CHECK(!run_search(NULL), "reference search");
    sref = sgot;
    CHECK(sref.cos[0].id == 35 && sref.ham[0].id == 35 && sref.ham[0].score == 0.0f && sref.groups >= 29,
          "reference results implausible (query 7 = entry id 35 must be its own best hit)");

    i = 0;
    sc[i].name = "model load (resnet18)"; sc[i].run = run_model; sc[i].ok = ok_model; sc[i].input_size = model_size; sc[i++].arg = NULL;
    sc[i].name = "decode+preprocess+forward+pool"; sc[i].run = run_describe; sc[i].ok = ok_describe; sc[i].input_size = image_size; sc[i++].arg = NULL;
    sc[i].name = "index load"; sc[i].run = run_index_load; sc[i].ok = ok_index_load; sc[i].input_size = index_size; sc[i++].arg = NULL;
    sc[i].name = "index search/range/dedup/MIH"; sc[i].run = run_search; sc[i].ok = ok_search; sc[i].input_size = index_size; sc[i++].arg = NULL;
    sc[i].name = "whitening load"; sc[i].run = run_wload; sc[i].ok = ok_wload; sc[i].input_size = wsize; sc[i++].arg = NULL;
    sc[i].name = "hash load"; sc[i].run = run_hload; sc[i].ok = ok_hload; sc[i].input_size = hsize; sc[i++].arg = NULL;
    sc[i].name = "FAISS import"; sc[i].run = run_faiss; sc[i].ok = ok_faiss; sc[i].input_size = fsize; sc[i++].arg = NULL;
    printf("allocation failure injection (fail allocation N for every N):\n");
    while (i-- > 0) inject(&sc[6 - i]);
    imret_index_destroy(index_);
    imret_model_free(model);
    CHECK(hook_blocks == 0, "%lu blocks leaked at exit", (unsigned long)hook_blocks);
    free(model_bytes); free(image_bytes); free(index_bytes); free(wbytes); free(hbytes); free(fbytes);
    printf("alloc-fail: %s\n", fails ? "FAILED" : "every injected failure returned an error or the right result, nothing leaked");
    return fails != 0;
}
