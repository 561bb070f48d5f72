/* eval -- retrieval quality of imret descriptors on an image folder with ground truth.

   usage: eval [options] SET_DIR GROUNDTRUTH.tsv
     --model FILE      weights (default weights/resnet50.imw)
     --size N          longest side (default 512)
     --multiscale      scales 1, 1/sqrt(2), 1/2
     --invariant       also descriptors of the 8 rotations/flips (near-duplicate recall)
     --db-relevant     database = images listed as relevant only (paris groundtruth.tsv:
                       web queries against the 250 paris/ images); default: every image of
                       the ground-truth file (queries and relevant ones)
     --cache DIR       descriptor cache (default build/eval-cache)
     --threads N
     --filter NAME     resize filter: mitchell (default), catmullrom, box, bspline
     --precision P     fp32 (default), int8 (needs a calibrated model) or bf16 (needs bf16
                       weights); imret_context_config.precision
     --hash            also rank by Hamming distance of GeM codes: ITQ and LSH at 64..1024
                       bits, trained on the database descriptors (imret_hash_train)
   Ground truth (../shared/data/README.md): header line, then "query<TAB>rel1,rel2,...",
   paths relative to SET_DIR. For every pooling (MAC, SPoC, GeM p=3, R-MAC L=3) it prints mAP
   over the queries (each ranks the database without itself), the UKBench N-S score (4 =
   perfect: 1 + relevant among the top 3), and the near-duplicate recall at the
   zero-false-pair threshold (pairs with any relevance link are positives, every other pair
   is negative; the threshold is the highest negative similarity) and the lowest positive
   similarity (min-pos: a threshold between the two finds every pair). Descriptors are cached
   per (set, model fingerprint, size, scales, transform), so re-running is cheap.
   With --hash, Hamming ranking ties are broken by image order (as the index does by id). */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#include <time.h>
#include <sys/stat.h>

#define MAXIMG 4096
static char *names[MAXIMG];
static int nimg;
static int nq, qidx[MAXIMG], *rel[MAXIMG], nrel[MAXIMG];
static unsigned char indb[MAXIMG], bad[MAXIMG]; /* bad: could not be decoded: left out */

static int find_or_add(const char *n) {
    int i;
    for (i = 0; i < nimg; i++) if (!strcmp(names[i], n)) return i;
    if (nimg == MAXIMG) { fprintf(stderr, "eval: too many images\n"); exit(2); }
    names[nimg] = strdup(n);
    return nimg++;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static void read_gt(const char *path, int db_relevant) {
    FILE *f = fopen(path, "r");
    char line[1 << 16];
    int first = 1;
    if (!f) { fprintf(stderr, "eval: cannot open %s\n", path); exit(2); }
    while (fgets(line, sizeof line, f)) {
        char *tab, *tok, *save;
        int q, cap = 16;
        line[strcspn(line, "\r\n")] = 0;
        if (first) { first = 0; continue; }
        if (!*line) continue;
        tab = strchr(line, '\t');
        if (tab) *tab++ = 0;
        q = find_or_add(line);
        if (!db_relevant) indb[q] = 1;
        qidx[nq] = q;
        rel[nq] = (int *)malloc(sizeof(int) * cap);
        nrel[nq] = 0;
        for (tok = tab ? strtok_r(tab, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
            int r = find_or_add(tok);
            indb[r] = 1;
            if (nrel[nq] == cap) rel[nq] = (int *)realloc(rel[nq], sizeof(int) * (cap *= 2));
            rel[nq][nrel[nq]++] = r;
        }
        nq++;
    }
    fclose(f);
}

static int is_rel(int q, int i) {
    int k;
    for (k = 0; k < nrel[q]; k++) if (rel[q][k] == i) return 1;
    return 0;
}

/* Similarity of database image i to query image qi under the current scoring. */
typedef double (*sim_fn)(int qi, int i);
static int g_T, g_C, g_words;
static const float *g_desc;
static const uint64_t *g_codes;
static double sim_float(int qi, int i) {
    return imret_similarity_best(g_desc + (size_t)qi * g_T * g_C, g_T, g_desc + (size_t)i * g_T * g_C, (size_t)g_C);
}
static double sim_hamming(int qi, int i) { /* minus the Hamming distance of the identity codes */
    int w, d = 0;
    for (w = 0; w < g_words; w++) d += __builtin_popcountll(g_codes[(size_t)qi * g_words + w] ^ g_codes[(size_t)i * g_words + w]);
    return -d;
}

static const double *g_sim;
static unsigned char *g_linked;
static int cmp_desc(const void *a, const void *b) {
    double x = g_sim[*(const int *)a], y = g_sim[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int *)a - *(const int *)b);
}

/* mAP, N-S and near-duplicate recall of one scoring; prints one row, returns mAP (%).
   ref_map >= 0 adds the percentage of a reference mAP. */
static double score(const char *name, sim_fn simf, double ref_map) {
    double map = 0, ns = 0, *sim = (double *)malloc(sizeof(double) * nimg), maxneg = -1e300, minpos = 1e300;
    int *order = (int *)malloc(sizeof(int) * nimg), q, npos = 0, found = 0, nused = 0, i, j;
    double *pos = (double *)malloc(sizeof(double) * (size_t)nimg * nimg);
    for (q = 0; q < nq; q++) {
        int qi = qidx[q], n = 0, hits = 0, k, nr = 0;
        double ap = 0;
        if (bad[qi]) continue;
        for (k = 0; k < nrel[q]; k++) nr += !bad[rel[q][k]];
        if (!nr) continue; /* distractor: no relevant image, no AP (still a negative in pairs) */
        nused++;
        for (i = 0; i < nimg; i++) {
            if (i == qi || !indb[i]) continue;
            sim[i] = simf(qi, i);
            order[n++] = i;
        }
        g_sim = sim;
        qsort(order, n, sizeof(int), cmp_desc);
        for (k = 0; k < n; k++)
            if (is_rel(q, order[k])) { hits++; ap += (double)hits / (k + 1); }
        map += ap / nr;
        for (k = 0, hits = 0; k < 3 && k < n; k++) hits += is_rel(q, order[k]);
        ns += 1 + hits;
    }
    /* near-duplicate pairs over the images of the ground truth */
    if (!g_linked) { /* pairs with a relevance link in either direction, computed once */
        g_linked = (unsigned char *)calloc((size_t)nimg * nimg, 1);
        for (q = 0; q < nq; q++)
            for (i = 0; i < nrel[q]; i++) g_linked[(size_t)qidx[q] * nimg + rel[q][i]] = g_linked[(size_t)rel[q][i] * nimg + qidx[q]] = 1;
    }
    for (i = 0; i < nimg; i++)
        for (j = i + 1; j < nimg; j++) {
            double s;
            if (bad[i] || bad[j]) continue;
            s = simf(i, j);
            if (g_linked[(size_t)i * nimg + j]) pos[npos++] = s;
            else if (s > maxneg) maxneg = s;
        }
    for (i = 0; i < npos; i++) {
        found += pos[i] > maxneg;
        if (pos[i] < minpos) minpos = pos[i];
    }
    map = nused ? 100.0 * map / nused : 0;
    printf("%-10s %8.2f %8.3f %7.1f%% @%-7.3f %8.3f", name, map, nused ? ns / nused : 0, npos ? 100.0 * found / npos : 0.0, maxneg,
           npos ? minpos : 0.0);
    if (ref_map > 0) printf("  (%.1f%% of float)", 100.0 * map / ref_map);
    printf("\n");
    free(pos);
    free(sim);
    free(order);
    return map;
}

int main(int argc, char **argv) {
    const char *model_path = "weights/resnet50.imw", *cache = "build/eval-cache", *dir, *gt;
    int filter = IMRET_FILTER_MITCHELL;
    int size = 512, multiscale = 0, invariant = 0, hash = 0, db_relevant = 0, threads = 0, precision = 0, a, i, p, C, T;
    imret_model *m;
    imret_model_info info;
    imret_context *ctx;
    imret_context_config cc = imret_context_config_init();
    float *desc[4];
    double map_gem[4];
    double t_img = 0;
    int described = 0, failed = 0;
    static const imret_pooling pools[4] = {IMRET_POOL_MAC, IMRET_POOL_SPOC, IMRET_POOL_GEM, IMRET_POOL_RMAC};
    for (a = 1; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "--model") && a + 1 < argc) model_path = argv[++a];
        else if (!strcmp(argv[a], "--size") && a + 1 < argc) size = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--cache") && a + 1 < argc) cache = argv[++a];
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--filter") && a + 1 < argc) {
            static const char *const fn[4] = {"catmullrom", "mitchell", "box", "bspline"};
            for (filter = 0, ++a; filter < 4 && strcmp(fn[filter], argv[a]); filter++) {}
            if (filter == 4) { fprintf(stderr, "eval: unknown filter %s\n", argv[a]); return 1; }
        }
        else if (!strcmp(argv[a], "--precision") && a + 1 < argc) {
            a++;
            precision = !strcmp(argv[a], "int8") ? IMRET_PRECISION_INT8 : !strcmp(argv[a], "bf16") ? IMRET_PRECISION_BF16 : IMRET_PRECISION_FP32;
            if (precision == IMRET_PRECISION_FP32 && strcmp(argv[a], "fp32")) { fprintf(stderr, "eval: --precision fp32|int8|bf16\n"); return 1; }
        }
        else if (!strcmp(argv[a], "--multiscale")) multiscale = 1;
        else if (!strcmp(argv[a], "--invariant")) invariant = 1;
        else if (!strcmp(argv[a], "--hash")) hash = 1;
        else if (!strcmp(argv[a], "--db-relevant")) db_relevant = 1;
        else { fprintf(stderr, "eval: unknown option %s\n", argv[a]); return 1; }
    }
    if (argc - a != 2) { fprintf(stderr, "usage: eval [options] SET_DIR GROUNDTRUTH.tsv (see the source)\n"); return 1; }
    dir = argv[a];
    gt = argv[a + 1];
    read_gt(gt, db_relevant);
    if (imret_model_load_file(model_path, NULL, &m)) { fprintf(stderr, "eval: %s\n", imret_last_error()); return 2; }
    imret_model_get_info(m, &info);
    cc.threads = threads;
    cc.precision = (imret_precision)precision;
    if (imret_context_create(m, &cc, &ctx)) { fprintf(stderr, "eval: %s\n", imret_last_error()); return 2; }
    C = info.feature_channels;
    T = invariant ? 8 : 1;
    mkdir(cache, 0777);
    for (p = 0; p < 4; p++) desc[p] = (float *)calloc((size_t)nimg * T * C, sizeof(float));
    for (i = 0; i < nimg; i++) {
        char path[4096], cpath[4096], key[4096];
        FILE *cf;
        unsigned h = 2166136261u;
        size_t k;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(key, sizeof key, "%.3000s|%016llx|%d|%d|%d|%d", path, (unsigned long long)info.fingerprint, size, multiscale, T, filter);
        if (precision) snprintf(key + strlen(key), sizeof key - strlen(key), "|precision%d", precision);
        for (k = 0; key[k]; k++) h = (h ^ (unsigned char)key[k]) * 16777619u;
        snprintf(cpath, sizeof cpath, "%s/%08x.f32", cache, h);
        cf = fopen(cpath, "rb");
        if (cf) {
            int ok = 1;
            for (p = 0; p < 4; p++) ok &= fread(desc[p] + (size_t)i * T * C, sizeof(float), (size_t)T * C, cf) == (size_t)T * C;
            fclose(cf);
            if (ok) continue;
        }
        {
            imret_image img;
            imret_image_config ic = imret_image_config_init();
            double t0 = now();
            int o;
            if (imret_image_load_file(path, &ic, &img)) {
                fprintf(stderr, "eval: leaving out %s\n", imret_last_error());
                bad[i] = 1;
                indb[i] = 0;
                failed++;
                continue;
            }
            for (o = 1; o <= T; o++) {
                imret_image t = img;
                imret_tensor x, f;
                imret_preprocess_config pc = imret_preprocess_config_init();
                static const double sc[3] = {1.0, 0.70710678118654752, 0.5};
                int s, ns = multiscale ? 3 : 1;
                t.pixels = (uint8_t *)malloc((size_t)img.width * img.height * img.channels);
                memcpy(t.pixels, img.pixels, (size_t)img.width * img.height * img.channels);
                imret_image_orient(&t, o);
                for (s = 0; s < ns; s++) { /* one forward per scale, pooled four ways */
                    pc.longest_side = (int)(size * sc[s] + 0.5);
                    pc.filter = (imret_resize_filter)filter;
                    if (imret_preprocess(m, &t, &pc, &x) || imret_forward(ctx, &x, &f, NULL)) { fprintf(stderr, "eval: %s: %s\n", path, imret_last_error()); return 2; }
                    for (p = 0; p < 4; p++) {
                        imret_descriptor_config dc = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
                        float *v = desc[p] + ((size_t)i * T + o - 1) * C, *tmp = (float *)malloc(sizeof(float) * C);
                        int c;
                        dc.pooling = pools[p];
                        imret_pool(&f, &dc, s ? tmp : v, (size_t)C);
                        if (s) for (c = 0; c < C; c++) v[c] += tmp[c];
                        if (s == ns - 1 && ns > 1) imret__l2n(v, (size_t)C);
                        free(tmp);
                    }
                    imret_tensor_free(&x);
                }
                free(t.pixels);
            }
            imret_image_free(&img);
            t_img += now() - t0;
            described++;
        }
        cf = fopen(cpath, "wb");
        if (cf) {
            for (p = 0; p < 4; p++) fwrite(desc[p] + (size_t)i * T * C, sizeof(float), (size_t)T * C, cf);
            fclose(cf);
        }
    }
    printf("set %s, %d images (%d queries), model %s, longest side %d%s%s\n", gt, nimg, nq, info.arch_name, size,
           multiscale ? ", multi-scale" : "", invariant ? ", 8 transforms" : "");
    if (described) printf("described %d images in %.1f s: %.0f ms per image (%d threads)\n", described, t_img, 1e3 * t_img / described, ctx->threads);
    if (failed) printf("%d images could not be decoded: left out as queries, database entries and relevant images\n", failed);
    printf("%-10s %8s %8s %16s %8s\n", "pool", "mAP", "N-S", "dup-recall @max-neg", "min-pos");
    g_T = T;
    g_C = C;
    for (p = 0; p < 4; p++) {
        g_desc = desc[p];
        map_gem[p] = score(imret_pooling_name(pools[p]), sim_float, -1);
    }
    if (hash) { /* GeM codes, hash trained on the database descriptors (identity orientation) */
        static const int bits[5] = {64, 128, 256, 512, 1024};
        static const imret_hash_method meth[2] = {IMRET_HASH_ITQ, IMRET_HASH_LSH};
        float *train = (float *)malloc(sizeof(float) * (size_t)nimg * C), *all = (float *)malloc(sizeof(float) * (size_t)nimg * C);
        size_t nt = 0;
        int mi, bi;
        for (i = 0; i < nimg; i++) {
            memcpy(all + (size_t)i * C, desc[2] + (size_t)i * T * C, sizeof(float) * C);
            if (indb[i] && !bad[i]) memcpy(train + nt++ * C, all + (size_t)i * C, sizeof(float) * C);
        }
        for (mi = 0; mi < 2; mi++)
            for (bi = 0; bi < 5; bi++) {
                imret_hash_config hc = imret_hash_config_init();
                imret_hash *h;
                imret_hash_info hi;
                uint64_t *codes;
                char name[64];
                hc.method = meth[mi];
                hc.bits = bits[bi];
                if (imret_hash_train(train, nt, (size_t)C, &hc, &h)) { fprintf(stderr, "eval: hash: %s\n", imret_last_error()); return 2; }
                imret_hash_get_info(h, &hi);
                codes = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)nimg * hi.words);
                imret_hash_encode(h, all, (size_t)nimg, (size_t)C, codes, (size_t)hi.words, threads);
                g_codes = codes;
                g_words = hi.words;
                snprintf(name, sizeof name, "%s-%d%s", mi ? "lsh" : "itq", bits[bi], hi.learned_bits < bits[bi] && mi == 0 ? "*" : "");
                score(name, sim_hamming, map_gem[2]);
                free(codes);
                imret_hash_free(h);
            }
        printf("(hash rows: GeM codes, Hamming ranking, trained on the %lu database descriptors; %% = of float GeM mAP;\n"
               " * = more bits than the training rank: learned bits + LSH for the rest)\n", (unsigned long)nt);
        free(train);
        free(all);
    }
    return 0;
}
