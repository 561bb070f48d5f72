/* imret -- the command-line tool: index a folder of images, search it, find duplicates.

   imret index DIR... -o photos.imri     build or update an index (incremental)
   imret search photos.imri IMAGE...     most similar indexed images
   imret dedup DIR|photos.imri           groups of near-duplicate images (--html report)
   imret info FILE                       what a model / index / whitening / hash file holds
   imret train-whitening, train-hash, export-faiss
   `imret --help` and `imret COMMAND --help` describe every option.

   Uses only the public API of imret.h. Exit codes: 0 ok, 1 usage error, 2 runtime error
   (errors name the file and the reason), 130 interrupted (Ctrl-C; index: what was done is
   saved, atomically). How an index entry records its file (for incremental updates): the
   entry's label is "imret1 SIZE MTIME_NS CONTENT_HASH WIDTH HEIGHT<TAB>PATH" and its id is a
   64-bit FNV-1a hash of the absolute path (see label_make / label_parse). */
#define IMRET_IMPLEMENTATION
#include "imret.h"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "stb_image_write.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 1
#define EXIT_RUNTIME 2
#define EXIT_INTERRUPTED 130
#define DEFAULT_MODEL "weights/resnet50.imw"
#define DESC_TAG "imret-cli/1"
/* Default dedup threshold (cosine similarity, GeM, near-duplicate setting, 8 transforms),
   measured with tools/eval.c on the tools/make_edits.py set (UKBench 0-15: rotated/mirrored,
   75 % + JPEG q80 copies, the other photos of the same object as hard negatives): copies
   >= 0.994, different photos <= 0.946; 0.97 is the midpoint. On ../shared/data/imagededup it
   groups byte copies, format copies, the RGBA copy and mirrors; the aspect-changing resize
   (0.93), 30-degree rotation and greyscale copies need a lower --threshold (README,
   Thresholds). */
#define DEDUP_THRESHOLD 0.97
/* For an index in the retrieval setting (longest side 512, no transforms), where other
   photos of the same object come closer: up to 0.974 on the same edits set (tools/eval.c
   --size 512), byte copies and re-encodes ~1.0. */
#define DEDUP_THRESHOLD_RETRIEVAL 0.985

static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig) { (void)sig; g_interrupted = 1; }

static int usage_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "imret %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'imret %s --help'.\n", cmd);
    return EXIT_USAGE;
}
static int fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "imret: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_RUNTIME;
}
static void *xmalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) { fprintf(stderr, "imret: error: out of memory (%zu bytes)\n", n); exit(EXIT_RUNTIME); }
    return p;
}
static char *xstrdup(const char *s) { return strcpy((char *)xmalloc(strlen(s) + 1), s); }
static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static uint64_t fnv64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = (const unsigned char *)data;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
#define FNV_SEED 14695981039346656037ull

/* ---------------------------------------------------------------------------------------
   Files: recursive scan, whole-file reads, image sniffing
   --------------------------------------------------------------------------------------- */
enum { ST_PENDING = 0, ST_DESCRIBED, ST_SAME_CONTENT, ST_FAILED };

typedef struct item {
    char *path;                  /* absolute */
    uint64_t size;
    int64_t mtime_ns;
    int old;                     /* index of the old entry (incremental index), -1 = new */
    int status;
    uint64_t hash;               /* FNV-1a of the bytes */
    int width, height;
    float *vec;                  /* ndesc x dim */
    uint64_t *code;
    char *error;
} item;

typedef struct item_list { item *v; size_t n, cap; } item_list;
typedef struct seen_dirs { dev_t *dev; ino_t *ino; size_t n, cap; } seen_dirs;

static void list_push(item_list *l, const char *path, const struct stat *st) {
    item *it;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = (item *)realloc(l->v, l->cap * sizeof(item));
        if (!l->v) { fprintf(stderr, "imret: error: out of memory\n"); exit(EXIT_RUNTIME); }
    }
    it = &l->v[l->n++];
    memset(it, 0, sizeof *it);
    it->path = xstrdup(path);
    it->size = (uint64_t)st->st_size;
    it->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    it->old = -1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Depth-first, names sorted, hidden names (".x") skipped, symlinks followed but every
   directory visited once (by device + inode), so symlink loops end. */
static void scan_dir(const char *dir, item_list *out, seen_dirs *seen, int *unreadable) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    if (!d) {
        fprintf(stderr, "imret: warning: %s: cannot open folder: %s\n", dir, strerror(errno));
        (*unreadable)++;
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) names = (char **)realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(char *));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    for (i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2, k;
        char *path = (char *)xmalloc(len);
        struct stat st;
        snprintf(path, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
        if (stat(path, &st) != 0) {
            fprintf(stderr, "imret: warning: %s: skipped: %s\n", path, strerror(errno));
            (*unreadable)++;
        } else if (S_ISDIR(st.st_mode)) {
            for (k = 0; k < seen->n && !(seen->dev[k] == st.st_dev && seen->ino[k] == st.st_ino); k++) {}
            if (k == seen->n) {
                if (seen->n == seen->cap) {
                    seen->cap = seen->cap ? 2 * seen->cap : 64;
                    seen->dev = (dev_t *)realloc(seen->dev, seen->cap * sizeof(dev_t));
                    seen->ino = (ino_t *)realloc(seen->ino, seen->cap * sizeof(ino_t));
                }
                seen->dev[seen->n] = st.st_dev;
                seen->ino[seen->n++] = st.st_ino;
                scan_dir(path, out, seen, unreadable);
            }
        } else if (S_ISREG(st.st_mode)) {
            list_push(out, path, &st);
        }
        free(path);
        free(names[i]);
    }
    free(names);
}

/* Replace roots[] by their absolute forms (malloc'ed: the caller frees them). Returns 0,
   or EXIT_RUNTIME with the message printed and roots[] unchanged. */
static int absolute_roots(char **roots, int nroots) {
    int r;
    for (r = 0; r < nroots; r++) {
        char *abs = realpath(roots[r], NULL);
        if (!abs) {
            int err = fail("%s: %s", roots[r], strerror(errno));
            while (r--) free(roots[r]);
            return err;
        }
        roots[r] = abs;
    }
    return 0;
}

/* Scan the (absolute) roots, folders or single files, into out. Returns 0, or
   EXIT_RUNTIME with the message printed. */
static int scan_roots(char **roots, int nroots, item_list *out, int *unreadable) {
    seen_dirs seen;
    int r;
    memset(&seen, 0, sizeof seen);
    for (r = 0; r < nroots; r++) {
        struct stat st;
        const char *abs = roots[r];
        if (stat(abs, &st) != 0) return fail("%s: %s", abs, strerror(errno));
        if (S_ISREG(st.st_mode)) { list_push(out, abs, &st); continue; }
        if (!S_ISDIR(st.st_mode)) return fail("%s: not a folder or a file", abs);
        if (seen.n == seen.cap) {
            seen.cap = seen.cap ? 2 * seen.cap : 64;
            seen.dev = (dev_t *)realloc(seen.dev, seen.cap * sizeof(dev_t));
            seen.ino = (ino_t *)realloc(seen.ino, seen.cap * sizeof(ino_t));
        }
        seen.dev[seen.n] = st.st_dev;
        seen.ino[seen.n++] = st.st_ino;
        scan_dir(abs, out, &seen, unreadable);
    }
    free(seen.dev);
    free(seen.ino);
    return 0;
}

/* Whole file into memory (caller frees), or NULL with a reason. */
static unsigned char *read_whole(const char *path, size_t *size, const char **why) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    unsigned char *buf;
    if (!f) { *why = strerror(errno); return NULL; }
    if (fstat(fileno(f), &st) != 0 || st.st_size > ((off_t)1 << 30)) { fclose(f); *why = "larger than 1 GiB"; return NULL; }
    buf = (unsigned char *)malloc((size_t)st.st_size + 1);
    if (!buf) { fclose(f); *why = "out of memory"; return NULL; }
    *size = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f)) { fclose(f); free(buf); *why = strerror(errno); return NULL; }
    fclose(f);
    return buf;
}

/* Formats stb_image decodes, by content; others get a clear "unsupported" reason. */
static const char *sniff_image(const unsigned char *p, size_t n, const char *path) {
    const char *ext = strrchr(path, '.');
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return NULL;           /* JPEG */
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return NULL;                       /* PNG */
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return NULL;    /* GIF */
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return NULL;                               /* BMP */
    if (n >= 4 && !memcmp(p, "8BPS", 4)) return NULL;                                    /* PSD */
    if (n >= 2 && p[0] == '#' && p[1] == '?') return NULL;                               /* HDR */
    if (n >= 4 && !memcmp(p, "\x53\x80\xF6\x34", 4)) return NULL;                        /* PIC */
    if (n >= 2 && p[0] == 'P' && (p[1] == '5' || p[1] == '6')) return NULL;              /* PGM/PPM */
    if (ext && !strcasecmp(ext, ".tga")) return NULL;                                    /* TGA: no magic */
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return "unsupported image format (WebP)";
    if (n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4))) return "unsupported image format (TIFF)";
    if (n >= 12 && !memcmp(p + 4, "ftyp", 4)) return "unsupported format (HEIF/AVIF/MP4 container)";
    if (n >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '4') return "unsupported image format (ASCII or 1-bit PNM)";
    return "not an image (unknown format)";
}

/* ---------------------------------------------------------------------------------------
   Describing files in parallel: one context per worker thread, progress on stderr
   --------------------------------------------------------------------------------------- */
typedef struct pipeline {
    const imret_model *model;
    imret_descriptor_config dcfg;
    int transforms;              /* 1, or 8 for transform-invariant matching */
    size_t dim_in, dim;          /* model channels, dimension after whitening */
    const imret_whitening *white;
    const imret_hash *hash;
    size_t words;
    const uint64_t *old_hash;    /* per old entry: content hash (incremental index), or NULL */
    imret_precision precision;   /* of the forward pass (--precision) */
} pipeline;

typedef struct pool {
    pipeline *pl;
    item *items;
    size_t n, next, done;
    int workers, alive, ctx_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} pool;

static void describe_item(const pipeline *pl, imret_context *ctx, item *it) {
    size_t size = 0;
    const char *why = NULL;
    unsigned char *bytes = read_whole(it->path, &size, &why);
    imret_image img;
    imret_result rc;
    float *raw;
    if (!bytes) { it->error = xstrdup(why); it->status = ST_FAILED; return; }
    it->size = size;
    it->hash = fnv64(bytes, size, FNV_SEED);
    if (pl->old_hash && it->old >= 0 && pl->old_hash[it->old] == it->hash) { /* touched, not changed */
        free(bytes);
        it->status = ST_SAME_CONTENT;
        return;
    }
    if ((why = sniff_image(bytes, size, it->path)) != NULL) { free(bytes); it->error = xstrdup(why); it->status = ST_FAILED; return; }
    rc = imret_image_load_memory(bytes, size, NULL, &img);
    free(bytes);
    if (rc != IMRET_OK) { it->error = xstrdup(imret_last_error()); it->status = ST_FAILED; return; }
    it->width = img.width;
    it->height = img.height;
    raw = (float *)xmalloc(pl->transforms * pl->dim_in * sizeof(float));
    rc = pl->transforms == 8 ? imret_describe_transforms(ctx, &img, &pl->dcfg, raw, 8 * pl->dim_in)
                             : imret_describe(ctx, &img, &pl->dcfg, raw, pl->dim_in);
    imret_image_free(&img);
    if (rc == IMRET_OK && pl->white) {
        it->vec = (float *)xmalloc(pl->transforms * pl->dim * sizeof(float));
        rc = imret_whitening_apply(pl->white, raw, (size_t)pl->transforms, pl->dim_in, it->vec, pl->dim, 1);
        free(raw);
    } else {
        it->vec = raw;
    }
    if (rc == IMRET_OK && pl->hash) {
        it->code = (uint64_t *)xmalloc(pl->words * sizeof(uint64_t));
        rc = imret_hash_encode(pl->hash, it->vec, 1, pl->dim, it->code, pl->words, 1);
    }
    if (rc != IMRET_OK) {
        it->error = xstrdup(imret_last_error());
        free(it->vec);
        free(it->code);
        it->vec = NULL;
        it->code = NULL;
        it->status = ST_FAILED;
        return;
    }
    it->status = ST_DESCRIBED;
}

static void *worker(void *arg) {
    pool *P = (pool *)arg;
    imret_context *ctx = NULL;
    imret_context_config cc = imret_context_config_init();
    cc.threads = P->ctx_threads;
    cc.precision = P->pl->precision;
    if (imret_context_create(P->pl->model, &cc, &ctx) != IMRET_OK) ctx = NULL;
    for (;;) {
        size_t i;
        pthread_mutex_lock(&P->mu);
        if (g_interrupted || P->next >= P->n) break;
        i = P->next++;
        pthread_mutex_unlock(&P->mu);
        if (ctx) describe_item(P->pl, ctx, &P->items[i]);
        else { P->items[i].error = xstrdup("cannot create a context (out of memory?)"); P->items[i].status = ST_FAILED; }
        pthread_mutex_lock(&P->mu);
        P->done++;
        pthread_cond_broadcast(&P->cv);
        pthread_mutex_unlock(&P->mu);
    }
    P->alive--;
    pthread_cond_broadcast(&P->cv);
    pthread_mutex_unlock(&P->mu);
    imret_context_destroy(ctx);
    return NULL;
}

static int g_tty; /* stderr is a terminal: progress bar (else plain lines) */

static void progress(const char *what, size_t done, size_t n, double t0, int final) {
    static double last = -1e9;
    double t = now_s(), el = t - t0, rate = el > 0 ? done / el : 0, eta = rate > 0 ? (n - done) / rate : 0;
    if (!final && !done) return;
    if (g_tty) {
        int w = 30, fill = n ? (int)(w * done / n) : w, i;
        if (!final && t - last < 0.1) return;
        fprintf(stderr, "\r%s [", what);
        for (i = 0; i < w; i++) fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %zu/%zu %5.1f img/s ETA %d:%02d ", done, n, rate, (int)eta / 60, (int)eta % 60);
        if (final) fputc('\n', stderr);
    } else {
        if (!final && t - last < 10.0) return;
        fprintf(stderr, "%s: %zu/%zu images, %.1f img/s, ETA %.0f s\n", what, done, n, rate, eta);
    }
    last = t;
    fflush(stderr);
}
static void progress_clear(void) { if (g_tty) fprintf(stderr, "\r\033[K"); }

/* Describe items[0..n) with `threads` threads in total; consume(i) is called on this thread
   for every finished item, in item order. Stops early after Ctrl-C (the unstarted items
   stay ST_PENDING). */
static void run_pool(pipeline *pl, item *items, size_t n, int threads, const char *what, void (*consume)(void *, size_t), void *user) {
    pool P;
    pthread_t *tid;
    size_t consumed = 0;
    double t0 = now_s();
    int w;
    memset(&P, 0, sizeof P);
    P.pl = pl;
    P.items = items;
    P.n = n;
    P.workers = (size_t)threads < n ? threads : (int)n;
    if (P.workers < 1) P.workers = 1;
    P.ctx_threads = threads / P.workers > 0 ? threads / P.workers : 1;
    P.alive = P.workers;
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.cv, NULL);
    tid = (pthread_t *)xmalloc(P.workers * sizeof(pthread_t));
    for (w = 0; w < P.workers; w++) pthread_create(&tid[w], NULL, worker, &P);
    pthread_mutex_lock(&P.mu);
    for (;;) {
        struct timespec ts;
        size_t done = P.done;
        int alive = P.alive;
        pthread_mutex_unlock(&P.mu);
        while (consumed < n && items[consumed].status != ST_PENDING) consume(user, consumed++);
        if (what) progress(what, done, n, t0, 0);
        pthread_mutex_lock(&P.mu);
        if (!alive) break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000;
        if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        if (P.alive && P.done == done) pthread_cond_timedwait(&P.cv, &P.mu, &ts);
    }
    pthread_mutex_unlock(&P.mu);
    for (w = 0; w < P.workers; w++) pthread_join(tid[w], NULL);
    while (consumed < n && items[consumed].status != ST_PENDING) consume(user, consumed++);
    if (what) progress(what, P.done, n, t0, 1);
    free(tid);
    pthread_mutex_destroy(&P.mu);
    pthread_cond_destroy(&P.cv);
}

/* ---------------------------------------------------------------------------------------
   Index entries <-> files
   --------------------------------------------------------------------------------------- */
typedef struct entry_meta {
    uint64_t id, size, hash;
    int64_t mtime_ns;
    int width, height;
    const char *path;   /* borrowed from the index label */
    int seen;
} entry_meta;

static char *label_make(const item *it) {
    size_t len = strlen(it->path) + 96;
    char *s = (char *)xmalloc(len);
    snprintf(s, len, "imret1 %llu %lld %016llx %d %d\t%s", (unsigned long long)it->size, (long long)it->mtime_ns,
             (unsigned long long)it->hash, it->width, it->height, it->path);
    return s;
}
static int label_parse(const char *label, entry_meta *m) {
    unsigned long long size, hash;
    long long mt;
    const char *tab = strchr(label, '\t');
    if (!tab || sscanf(label, "imret1 %llu %lld %llx %d %d", &size, &mt, &hash, &m->width, &m->height) != 5) return 0;
    m->size = size;
    m->mtime_ns = mt;
    m->hash = hash;
    m->path = tab + 1;
    return 1;
}

/* Every live entry's metadata, in index order; NULL + message when a label is foreign. */
static entry_meta *index_entries(const imret_index *idx, const char *file, size_t *count) {
    size_t cursor = 0, n = 0, cap = imret_index_count(idx) + 1;
    entry_meta *m = (entry_meta *)xmalloc(cap * sizeof *m);
    imret_index_entry e;
    while (imret_index_next(idx, &cursor, &e) == IMRET_OK) {
        memset(&m[n], 0, sizeof m[n]);
        if (!label_parse(e.label, &m[n])) {
            fail("%s: entry %016llx has label \"%.60s\", not one written by imret index", file, (unsigned long long)e.id, e.label);
            free(m);
            return NULL;
        }
        m[n++].id = e.id;
    }
    *count = n;
    return m;
}

/* Open-addressing map path -> entry number. */
typedef struct path_map { size_t cap; long *slot; const entry_meta *m; } path_map;
static void map_build(path_map *pm, const entry_meta *m, size_t n) {
    size_t i;
    pm->cap = 16;
    while (pm->cap < 2 * n + 16) pm->cap *= 2;
    pm->slot = (long *)xmalloc(pm->cap * sizeof(long));
    pm->m = m;
    for (i = 0; i < pm->cap; i++) pm->slot[i] = -1;
    for (i = 0; i < n; i++) {
        size_t h = (size_t)fnv64(m[i].path, strlen(m[i].path), FNV_SEED) & (pm->cap - 1);
        while (pm->slot[h] >= 0) h = (h + 1) & (pm->cap - 1);
        pm->slot[h] = (long)i;
    }
}
static long map_find(const path_map *pm, const char *path) {
    size_t h = (size_t)fnv64(path, strlen(path), FNV_SEED) & (pm->cap - 1);
    while (pm->slot[h] >= 0 && strcmp(pm->m[pm->slot[h]].path, path)) h = (h + 1) & (pm->cap - 1);
    return pm->slot[h];
}

/* ---------------------------------------------------------------------------------------
   Descriptor settings recorded in an index: DESC_TAG model=... pool=... p=... side=...
   --------------------------------------------------------------------------------------- */
typedef struct settings {
    imret_setting setting;
    imret_pooling pooling;
    float gem_p;
    int side;
    int bits;                 /* hash codes stored (0 = none) */
    uint64_t white_id, hash_id; /* FNV of the whitening / hash file bytes (0 = none / LSH) */
    char arch[64];
    imret_precision precision; /* --precision; recorded as " prec=int8|bf16" (fp32: absent) */
} settings;

static const char *const precision_names[3] = {"fp32", "int8", "bf16"};
static int parse_precision(const char *name, imret_precision *p) {
    int i;
    for (i = 0; i < 3; i++)
        if (name && !strcmp(name, precision_names[i])) { *p = (imret_precision)i; return 1; }
    return 0;
}

static void settings_text(const settings *s, char *buf, size_t cap) {
    snprintf(buf, cap, DESC_TAG " model=%s setting=%s pool=%s p=%g side=%d white=%016llx bits=%d hash=%016llx%s%s", s->arch,
             s->setting == IMRET_SETTING_DUPLICATE ? "duplicate" : "retrieval", imret_pooling_name(s->pooling), (double)s->gem_p,
             s->side, (unsigned long long)s->white_id, s->bits, (unsigned long long)s->hash_id,
             s->precision ? " prec=" : "", s->precision ? precision_names[s->precision] : "");
}
static int settings_parse(const char *text, settings *s) {
    char setting[32], pool[16];
    unsigned long long w, h;
    int i;
    memset(s, 0, sizeof *s);
    if (strncmp(text, DESC_TAG " ", strlen(DESC_TAG) + 1)) return 0;
    if (sscanf(text + strlen(DESC_TAG), " model=%63s setting=%31s pool=%15s p=%f side=%d white=%llx bits=%d hash=%llx", s->arch, setting, pool,
               &s->gem_p, &s->side, &w, &s->bits, &h) != 8)
        return 0;
    s->setting = strcmp(setting, "duplicate") ? IMRET_SETTING_RETRIEVAL : IMRET_SETTING_DUPLICATE;
    for (i = 0; i < 4 && strcmp(pool, imret_pooling_name((imret_pooling)i)); i++) {}
    if (i == 4) return 0;
    s->pooling = (imret_pooling)i;
    s->white_id = w;
    s->hash_id = h;
    {
        const char *pr = strstr(text, " prec=");
        char name[8];
        if (pr && (sscanf(pr, " prec=%7s", name) != 1 || !parse_precision(name, &s->precision))) return 0;
    }
    return 1;
}
static int parse_pooling(const char *name, imret_pooling *p) {
    int i;
    for (i = 0; i < 4; i++)
        if (!strcmp(name, imret_pooling_name((imret_pooling)i))) { *p = (imret_pooling)i; return 1; }
    return 0;
}
static uint64_t file_id(const char *path) {
    size_t n = 0;
    const char *why;
    unsigned char *b = read_whole(path, &n, &why);
    uint64_t h = b ? fnv64(b, n, FNV_SEED) : 0;
    free(b);
    return h;
}

/* Everything a command needs to describe images the way an index (or a fresh run) does. */
typedef struct engine {
    imret_model *model;
    imret_model_info info;
    imret_whitening *white;
    imret_hash *hash;
    settings s;
    pipeline pl;
} engine;

static void engine_free(engine *e) {
    imret_whitening_free(e->white);
    imret_hash_free(e->hash);
    imret_model_free(e->model);
    memset(e, 0, sizeof *e);
}

/* Load the model (and optional whitening / hash files) and set up the pipeline for e->s.
   lsh_bits > 0 without a hash file: LSH codes (seed 1). */
static int engine_open(engine *e, const char *model_path, const char *white_path, const char *hash_path) {
    imret_descriptor_config dc = imret_descriptor_config_init(e->s.setting);
    imret_model_config mc = imret_model_config_init();
    mc.precision = e->s.precision; /* int8/bf16: the model keeps only the weights it computes with */
    if (imret_model_load_file(model_path, &mc, &e->model) != IMRET_OK) return fail("%s", imret_last_error());
    imret_model_get_info(e->model, &e->info);
    snprintf(e->s.arch, sizeof e->s.arch, "%s", e->info.arch_name);
    dc.pooling = e->s.pooling;
    dc.gem_p = e->s.gem_p;
    dc.longest_side = e->s.side;
    e->pl.model = e->model;
    e->pl.precision = e->s.precision;
    e->pl.dcfg = dc;
    e->pl.transforms = 1;
    e->pl.dim_in = e->pl.dim = (size_t)e->info.feature_channels;
    if (white_path) {
        imret_whitening_info wi;
        if (imret_whitening_load_file(white_path, &e->white) != IMRET_OK) return fail("%s", imret_last_error());
        imret_whitening_get_info(e->white, &wi);
        if (wi.in_dim != e->pl.dim_in)
            return fail("%s: whitening takes %zu dimensions, the model %s gives %zu", white_path, wi.in_dim, model_path, e->pl.dim_in);
        e->pl.dim = wi.out_dim;
        e->pl.white = e->white;
        e->s.white_id = file_id(white_path);
    }
    if (hash_path) {
        imret_hash_info hi;
        if (imret_hash_load_file(hash_path, &e->hash) != IMRET_OK) return fail("%s", imret_last_error());
        imret_hash_get_info(e->hash, &hi);
        if (hi.in_dim != e->pl.dim) return fail("%s: hash takes %zu dimensions, descriptors have %zu", hash_path, hi.in_dim, e->pl.dim);
        e->s.bits = hi.bits;
        e->s.hash_id = file_id(hash_path);
    } else if (e->s.bits) {
        imret_hash_config hc = imret_hash_config_init();
        hc.method = IMRET_HASH_LSH;
        hc.bits = e->s.bits;
        if (imret_hash_train(NULL, 0, e->pl.dim, &hc, &e->hash) != IMRET_OK) return fail("--bits %d: %s", e->s.bits, imret_last_error());
    }
    if (e->hash) {
        e->pl.hash = e->hash;
        e->pl.words = (size_t)e->s.bits / 64;
    }
    return 0;
}

static imret_index_config engine_index_config(const engine *e, char *text, size_t cap) {
    imret_index_config ic = imret_index_config_init();
    settings_text(&e->s, text, cap);
    ic.dim = e->pl.dim;
    ic.storage = IMRET_INDEX_FP16;
    ic.bits = (size_t)e->s.bits;
    ic.descriptor = text;
    ic.model_fingerprint = e->info.fingerprint;
    return ic;
}

/* Open an index made by `imret index` and the engine that matches it. */
static int open_index(const char *file, const char *model_path, const char *white_path, const char *hash_path, imret_index **idx, engine *e) {
    imret_index_config ic = imret_index_config_init();
    settings s;
    if (imret_index_map_file(file, NULL, idx) != IMRET_OK) return fail("%s", imret_last_error());
    imret_index_get_config(*idx, &ic);
    if (!settings_parse(ic.descriptor, &s)) return fail("%s: not made by imret index (descriptor \"%.80s\")", file, ic.descriptor);
    memset(e, 0, sizeof *e);
    e->s = s;
    if (s.white_id && !white_path) return fail("%s was made with a whitening file: pass it with --whitening FILE", file);
    if (s.hash_id && !hash_path) return fail("%s was made with a trained hash file: pass it with --hash FILE", file);
    if (engine_open(e, model_path, white_path, hash_path)) return EXIT_RUNTIME;
    if (e->info.fingerprint != ic.model_fingerprint)
        return fail("%s was made by another model (fingerprint %016llx) than %s (%016llx %s): pass the right --model", file,
                    (unsigned long long)ic.model_fingerprint, model_path, (unsigned long long)e->info.fingerprint, e->info.arch_name);
    if (s.white_id && e->s.white_id != s.white_id) return fail("%s: not the whitening file %s was made with", white_path, file);
    if (s.hash_id && e->s.hash_id != s.hash_id) return fail("%s: not the hash file %s was made with", hash_path, file);
    return 0;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}

/* Common option parsing: returns 1 and advances *a when argv[*a] is OPT with a value. */
static int opt_val(int argc, char **argv, int *a, const char *opt, const char **val) {
    if (strcmp(argv[*a], opt)) return 0;
    if (*a + 1 >= argc) { *val = NULL; return 1; }
    *val = argv[++*a];
    return 1;
}
static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v;
    if (!s) return 0;
    v = strtol(s, &end, 10);
    if (*end || end == s || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* ---------------------------------------------------------------------------------------
   imret index
   --------------------------------------------------------------------------------------- */
static const char *HELP_INDEX =
    "usage: imret index DIR... -o FILE.imri [options]\n"
    "Describe every image under the folders (recursively) and save them in an index. Run it\n"
    "again to update the index: only new or changed files are described (size and mtime,\n"
    "then content hash), entries of deleted files are removed, entries of files outside the\n"
    "given folders are kept while the files exist.\n"
    "  -o FILE             index file (written atomically: a crash or Ctrl-C keeps the old one)\n"
    "  --model FILE        weights (default " DEFAULT_MODEL ")\n"
    "  --descriptor NAME   gem (default), rmac, mac, spoc\n"
    "  --size N            longest side the images are resized to (default 512)\n"
    "  --duplicate         near-duplicate setting (longest side 224) for `imret dedup FILE.imri`\n"
    "  --bits B            also store B-bit hash codes (LSH; 64..1024) for `search --hamming`\n"
    "  --whitening FILE    apply a whitening learned by `imret train-whitening`\n"
    "  --hash FILE         codes from a hash layer trained by `imret train-hash`\n"
    "  --precision P       fp32 (default), int8 (a calibrated model file: about 2x faster on\n"
    "                      CPUs with VNNI) or bf16 (a bf16 model file; 2x with AVX512_BF16);\n"
    "                      see the README, Reduced precision. `search` uses the index's own\n"
    "  --threads N         threads (default: all cores); images are described in parallel\n"
    "Hidden files and folders (names starting with '.') are skipped; symlinks are followed,\n"
    "each folder is visited once. Files that are not images or cannot be read are skipped\n"
    "with one warning each. An index records the model and descriptor settings; updating it\n"
    "with other ones is refused. Ctrl-C stops after the images in progress and saves what\n"
    "is done (exit code 130); run the command again to finish.\n";

typedef struct index_run {
    imret_index *idx;
    item *items;
    entry_meta *old;
    size_t added, updated, touched, failed;
    int rc;
} index_run;

static uint64_t new_id(const imret_index *idx, const char *path) {
    uint64_t id = fnv64(path, strlen(path), FNV_SEED);
    imret_index_entry e;
    while (imret_index_get(idx, id, &e) == IMRET_OK) id++; /* 64-bit path-hash collision */
    return id;
}

static void index_consume(void *user, size_t i) {
    index_run *R = (index_run *)user;
    item *it = &R->items[i];
    char *label;
    imret_result rc = IMRET_OK;
    if (it->status == ST_FAILED) {
        progress_clear();
        fprintf(stderr, "imret: warning: %s: skipped: %s\n", it->path, it->error);
        R->failed++;
        if (it->old >= 0) R->old[it->old].seen = 0; /* unreadable now: its old entry goes */
        return;
    }
    if (it->status == ST_SAME_CONTENT) { /* keep the vector, record the new size/mtime */
        entry_meta *m = &R->old[it->old];
        it->width = m->width;
        it->height = m->height;
        label = label_make(it);
        rc = imret_index_update(R->idx, m->id, label, NULL, NULL);
        R->touched++;
    } else {
        label = label_make(it);
        if (it->old >= 0) {
            rc = imret_index_update(R->idx, R->old[it->old].id, label, it->vec, it->code);
            R->updated++;
        } else {
            rc = imret_index_add(R->idx, new_id(R->idx, it->path), label, it->vec, it->code);
            R->added++;
        }
    }
    if (rc != IMRET_OK && !R->rc) R->rc = fail("%s: %s", it->path, imret_last_error());
    free(label);
    free(it->vec);
    free(it->code);
    it->vec = NULL;
    it->code = NULL;
}

static int under_root(const char *path, char **roots, int nroots) {
    int r;
    for (r = 0; r < nroots; r++) {
        size_t n = strlen(roots[r]);
        if (!strncmp(path, roots[r], n) && (path[n] == '/' || path[n] == 0 || roots[r][n - 1] == '/')) return 1;
    }
    return 0;
}

static int cmd_index(int argc, char **argv) {
    const char *out = NULL, *model_path = DEFAULT_MODEL, *white_path = NULL, *hash_path = NULL, *v;
    char **roots = (char **)xmalloc(argc * sizeof(char *)), text[512];
    int nroots = 0, nabs = 0, threads = default_threads(), a, unreadable = 0, rc, interrupted;
    engine e;
    item_list files;
    imret_index *idx = NULL;
    imret_index_config ic;
    entry_meta *old = NULL;
    size_t nold = 0, i, removed = 0, kept_outside = 0, njobs = 0, unchanged = 0;
    uint64_t *old_hash = NULL;
    path_map pm;
    index_run R;
    item *jobs = NULL;
    struct sigaction sa;
    double t0 = now_s();
    memset(&e, 0, sizeof e);
    memset(&files, 0, sizeof files);
    memset(&pm, 0, sizeof pm);
    e.s.setting = IMRET_SETTING_RETRIEVAL;
    e.s.pooling = IMRET_POOL_GEM;
    e.s.gem_p = 3.0f;
    e.s.side = 512;
    for (a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) { fputs(HELP_INDEX, stdout); return 0; }
        if (opt_val(argc, argv, &a, "-o", &out) || opt_val(argc, argv, &a, "--output", &out)) { if (!out) return usage_fail("index", "-o needs a file"); }
        else if (opt_val(argc, argv, &a, "--model", &model_path)) { if (!model_path) return usage_fail("index", "--model needs a file"); }
        else if (opt_val(argc, argv, &a, "--whitening", &white_path)) { if (!white_path) return usage_fail("index", "--whitening needs a file"); }
        else if (opt_val(argc, argv, &a, "--hash", &hash_path)) { if (!hash_path) return usage_fail("index", "--hash needs a file"); }
        else if (opt_val(argc, argv, &a, "--descriptor", &v)) { if (!v || !parse_pooling(v, &e.s.pooling)) return usage_fail("index", "--descriptor: gem, rmac, mac or spoc"); }
        else if (opt_val(argc, argv, &a, "--size", &v)) { if (!parse_int(v, 32, 4096, &e.s.side)) return usage_fail("index", "--size: 32..4096"); }
        else if (!strcmp(argv[a], "--duplicate")) { e.s.setting = IMRET_SETTING_DUPLICATE; e.s.side = 224; }
        else if (opt_val(argc, argv, &a, "--bits", &v)) {
            if (!parse_int(v, 64, 1024, &e.s.bits) || (e.s.bits & (e.s.bits - 1))) return usage_fail("index", "--bits: 64, 128, 256, 512 or 1024");
        } else if (opt_val(argc, argv, &a, "--threads", &v)) { if (!parse_int(v, 1, 1024, &threads)) return usage_fail("index", "--threads: 1..1024"); }
        else if (opt_val(argc, argv, &a, "--precision", &v)) { if (!parse_precision(v, &e.s.precision)) return usage_fail("index", "--precision: fp32, int8 or bf16"); }
        else if (argv[a][0] == '-' && argv[a][1]) return usage_fail("index", "unknown option %s", argv[a]);
        else roots[nroots++] = argv[a];
    }
    if (!nroots) return usage_fail("index", "no folder given");
    if (!out) return usage_fail("index", "no output file given (-o FILE.imri)");
    if (engine_open(&e, model_path, white_path, hash_path)) { engine_free(&e); return EXIT_RUNTIME; }
    ic = engine_index_config(&e, text, sizeof text);
    if (access(out, F_OK) == 0) { /* update: same model and settings only */
        imret_result r = imret_index_load_file(out, &ic, &idx);
        if (r == IMRET_ERROR_MISMATCH) {
            imret_index_config oc = imret_index_config_init();
            imret_index *tmp;
            if (imret_index_map_file(out, NULL, &tmp) == IMRET_OK) {
                imret_index_get_config(tmp, &oc);
                fprintf(stderr, "imret: error: %s holds other descriptors than this run makes:\n  index: %s (model %016llx)\n  now:   %s (model %016llx)\n"
                        "Use the same --model/--descriptor/--size/--bits/--precision options, or another -o file.\n", out, oc.descriptor,
                        (unsigned long long)oc.model_fingerprint, text, (unsigned long long)ic.model_fingerprint);
                imret_index_destroy(tmp);
                engine_free(&e);
                return EXIT_RUNTIME;
            }
        }
        if (r != IMRET_OK) { rc = fail("%s", imret_last_error()); engine_free(&e); return rc; }
        if (!(old = index_entries(idx, out, &nold))) { imret_index_destroy(idx); engine_free(&e); return EXIT_RUNTIME; }
    } else if (imret_index_create(&ic, &idx) != IMRET_OK) {
        rc = fail("%s", imret_last_error());
        engine_free(&e);
        return rc;
    }
    if ((rc = absolute_roots(roots, nroots)) != 0) goto done;
    nabs = nroots;
    if ((rc = scan_roots(roots, nroots, &files, &unreadable)) != 0) goto done;
    /* which files are new or changed */
    map_build(&pm, old, nold);
    old_hash = (uint64_t *)xmalloc((nold + 1) * sizeof(uint64_t));
    for (i = 0; i < nold; i++) old_hash[i] = old[i].hash;
    jobs = (item *)xmalloc((files.n + 1) * sizeof(item)); /* shallow copies: paths stay owned by files */
    for (i = 0; i < files.n; i++) {
        item *it = &files.v[i];
        long o = map_find(&pm, it->path);
        if (o >= 0) {
            old[o].seen = 1;
            if (old[o].size == it->size && old[o].mtime_ns == it->mtime_ns) { unchanged++; continue; }
            it->old = (int)o;
        }
        jobs[njobs++] = *it;
    }
    if (!files.n && !nold) { rc = fail("%s: no files found", nroots == 1 ? roots[0] : "the given folders"); goto done; }
    /* describe, Ctrl-C aware */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once; the saved file stays whole */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    memset(&R, 0, sizeof R);
    R.idx = idx;
    R.items = jobs;
    R.old = old;
    e.pl.old_hash = old_hash;
    g_tty = isatty(2);
    if (njobs) run_pool(&e.pl, jobs, njobs, threads, "indexing", index_consume, &R);
    interrupted = g_interrupted;
    if (R.rc) { rc = R.rc; goto done; }
    for (i = 0; i < nold; i++) { /* deleted files */
        struct stat st;
        if (old[i].seen) continue;
        if (!under_root(old[i].path, roots, nroots) && stat(old[i].path, &st) == 0) { kept_outside++; continue; }
        if (imret_index_remove(idx, old[i].id) == IMRET_OK) removed++;
    }
    if (!imret_index_count(idx) && !nold) {
        rc = fail("no images could be indexed (%zu files skipped)", R.failed + unreadable);
        goto done;
    }
    imret_index_compact(idx);
    if (imret_index_save_file(idx, out) != IMRET_OK) { rc = fail("%s", imret_last_error()); goto done; }
    fprintf(stderr, "%s: %zu images (%zu new, %zu changed, %zu unchanged, %zu touched, %zu removed%s), %zu files skipped, %.1f s\n", out,
            imret_index_count(idx), R.added, R.updated, unchanged, R.touched, removed, kept_outside ? ", others kept" : "",
            R.failed + unreadable, now_s() - t0);
    if (interrupted) {
        size_t left = 0;
        for (i = 0; i < njobs; i++) left += jobs[i].status == ST_PENDING;
        fprintf(stderr, "imret: interrupted: saved what was done; %zu files not processed yet, run the command again to finish\n", left);
        rc = EXIT_INTERRUPTED;
    }
done:
    for (i = 0; i < njobs; i++) { free(jobs[i].error); free(jobs[i].vec); free(jobs[i].code); }
    free(jobs);
    for (i = 0; i < files.n; i++) free(files.v[i].path);
    free(files.v);
    free(pm.slot);
    free(old_hash);
    free(old);
    imret_index_destroy(idx);
    engine_free(&e);
    while (nabs) free(roots[--nabs]);
    free(roots);
    return rc;
}

/* ---------------------------------------------------------------------------------------
   imret search
   --------------------------------------------------------------------------------------- */
static const char *HELP_SEARCH =
    "usage: imret search FILE.imri IMAGE... [options]\n"
    "Print the indexed images most similar to each IMAGE, best first, with their cosine\n"
    "similarity (1 = identical descriptors).\n"
    "  -k N                results per image (default 10)\n"
    "  --json              JSON on stdout (schema in the README)\n"
    "  --hamming           rank by Hamming distance of the hash codes (index made with --bits)\n"
    "  --model FILE        the model the index was made with (default " DEFAULT_MODEL ")\n"
    "  --whitening FILE, --hash FILE   the files the index was made with, if any\n"
    "  --threads N\n";

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void noop_consume(void *user, size_t i) { (void)user; (void)i; }

static int cmd_search(int argc, char **argv) {
    const char *file = NULL, *model_path = DEFAULT_MODEL, *white_path = NULL, *hash_path = NULL, *v;
    int k = 10, json = 0, hamming = 0, threads = default_threads(), a, rc = 0, nq = 0;
    item *q = (item *)xmalloc(argc * sizeof(item));
    imret_index *idx = NULL;
    engine e;
    size_t i, j;
    memset(&e, 0, sizeof e);
    for (a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) { fputs(HELP_SEARCH, stdout); free(q); return 0; }
        if (opt_val(argc, argv, &a, "-k", &v)) { if (!parse_int(v, 1, 100000, &k)) return usage_fail("search", "-k: 1..100000"); }
        else if (opt_val(argc, argv, &a, "--model", &model_path)) { if (!model_path) return usage_fail("search", "--model needs a file"); }
        else if (opt_val(argc, argv, &a, "--whitening", &white_path)) { if (!white_path) return usage_fail("search", "--whitening needs a file"); }
        else if (opt_val(argc, argv, &a, "--hash", &hash_path)) { if (!hash_path) return usage_fail("search", "--hash needs a file"); }
        else if (opt_val(argc, argv, &a, "--threads", &v)) { if (!parse_int(v, 1, 1024, &threads)) return usage_fail("search", "--threads: 1..1024"); }
        else if (!strcmp(argv[a], "--json")) json = 1;
        else if (!strcmp(argv[a], "--hamming")) hamming = 1;
        else if (argv[a][0] == '-' && argv[a][1]) return usage_fail("search", "unknown option %s", argv[a]);
        else if (!file) file = argv[a];
        else {
            memset(&q[nq], 0, sizeof q[nq]);
            q[nq].path = argv[a];
            q[nq++].old = -1;
        }
    }
    if (!file) return usage_fail("search", "no index file given");
    if (!nq) return usage_fail("search", "no query image given");
    if ((rc = open_index(file, model_path, white_path, hash_path, &idx, &e)) != 0) goto done;
    if (hamming && !e.s.bits) { rc = fail("%s holds no hash codes (make it with --bits or --hash)", file); goto done; }
    { /* an indexed file that has not changed since: its stored vector; the others: described */
        size_t nm = 0, ntodo = 0;
        entry_meta *m = index_entries(idx, file, &nm);
        path_map pm;
        item *todo = (item *)xmalloc((size_t)nq * sizeof(item));
        if (!m) { rc = EXIT_RUNTIME; free(todo); goto done; }
        map_build(&pm, m, nm);
        for (a = 0; a < nq; a++) {
            char *abs = realpath(q[a].path, NULL);
            struct stat st;
            long o = abs && stat(abs, &st) == 0 ? map_find(&pm, abs) : -1;
            if (o >= 0 && m[o].size == (uint64_t)st.st_size &&
                m[o].mtime_ns == (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec) {
                imret_index_entry en;
                q[a].vec = (float *)xmalloc(e.pl.dim * sizeof(float));
                imret_index_get_vector(idx, m[o].id, q[a].vec);
                if (e.pl.words && imret_index_get(idx, m[o].id, &en) == IMRET_OK) {
                    q[a].code = (uint64_t *)xmalloc(e.pl.words * sizeof(uint64_t));
                    memcpy(q[a].code, en.code, e.pl.words * sizeof(uint64_t));
                }
                q[a].status = ST_DESCRIBED;
                q[a].old = (int)o; /* marks "from the index" */
            } else {
                todo[ntodo++] = q[a];
            }
            free(abs);
        }
        g_tty = 0;
        run_pool(&e.pl, todo, ntodo, threads, NULL, noop_consume, NULL);
        for (a = 0, j = 0; a < nq; a++)
            if (q[a].status == ST_PENDING) q[a] = todo[j++];
        free(todo);
        free(pm.slot);
        free(m);
    }
    if (json) printf("{\"index\": "), json_str(stdout, file), printf(", \"k\": %d, \"metric\": \"%s\", \"queries\": [", k, hamming ? "hamming" : "cosine");
    for (a = 0; a < nq; a++) {
        imret_index_hit *hits = (imret_index_hit *)xmalloc((size_t)k * sizeof *hits);
        size_t count = 0;
        imret_result r = IMRET_OK;
        if (q[a].status != ST_DESCRIBED) {
            rc = fail("%s: %s", q[a].path, q[a].error ? q[a].error : "not processed");
        } else {
            r = hamming ? imret_index_search_hamming(idx, q[a].code, 1, (size_t)k, NULL, hits, &count)
                        : imret_index_search_cosine(idx, q[a].vec, 1, (size_t)k, NULL, hits, &count);
            if (r != IMRET_OK) rc = fail("%s: %s", file, imret_last_error());
        }
        if (json) {
            printf("%s\n  {\"query\": ", a ? "," : "");
            json_str(stdout, q[a].path);
            if (q[a].status == ST_DESCRIBED) printf(", \"from_index\": %s", q[a].old >= 0 ? "true" : "false");
            if (q[a].status != ST_DESCRIBED) printf(", \"error\": "), json_str(stdout, q[a].error ? q[a].error : "not processed");
            printf(", \"results\": [");
        } else if (q[a].status == ST_DESCRIBED) {
            printf("%s%s\n", a ? "\n" : "", q[a].path);
        }
        for (j = 0; j < count; j++) {
            imret_index_entry en;
            entry_meta m;
            memset(&m, 0, sizeof m);
            if (imret_index_get(idx, hits[j].id, &en) != IMRET_OK || !label_parse(en.label, &m)) m.path = "?";
            if (json) {
                printf("%s\n    {\"rank\": %zu, \"path\": ", j ? "," : "", j + 1);
                json_str(stdout, m.path);
                if (hamming) printf(", \"distance\": %d", (int)hits[j].score);
                else printf(", \"similarity\": %.6f", (double)hits[j].score);
                printf(", \"id\": \"%016llx\", \"width\": %d, \"height\": %d, \"bytes\": %llu}", (unsigned long long)hits[j].id, m.width, m.height,
                       (unsigned long long)m.size);
            } else if (hamming) {
                printf("%3zu  %4d bits  %s\n", j + 1, (int)hits[j].score, m.path);
            } else {
                printf("%3zu  %.4f  %s\n", j + 1, (double)hits[j].score, m.path);
            }
        }
        if (json) printf("%s]}", count ? "\n  " : "");
        free(hits);
    }
    if (json) printf("\n]}\n");
done:
    for (i = 0; i < (size_t)nq; i++) { free(q[i].vec); free(q[i].code); free(q[i].error); }
    free(q);
    imret_index_destroy(idx);
    engine_free(&e);
    return rc;
}

/* ---------------------------------------------------------------------------------------
   imret dedup
   --------------------------------------------------------------------------------------- */
static const char *HELP_DEDUP =
    "usage: imret dedup DIR...|FILE.imri [options]\n"
    "Find groups of near-duplicate images (copies, resized, re-encoded, lightly edited) and\n"
    "suggest which file of each group to keep: the largest resolution, then the largest file.\n"
    "  --threshold T       cosine similarity above which two images are duplicates\n"
    "                      (default 0.97: copies, not different photos of one scene;\n"
    "                      0.92 also groups aspect-changing resizes; 0.985 for an index\n"
    "                      made in the retrieval setting; see the README)\n"
    "  --invariant         also match rotated (90/180/270) and mirrored copies: every image\n"
    "                      is also described under its 8 rotations/flips, best similarity wins\n"
    "  --json              JSON on stdout (schema in the README)\n"
    "  --html FILE         a self-contained HTML report with thumbnails\n"
    "  --model FILE        weights (default " DEFAULT_MODEL ")\n"
    "  --precision P       fp32 (default), int8 or bf16 for a folder (as `imret index`)\n"
    "  --threads N\n"
    "A folder is described with the near-duplicate setting (longest side 224, GeM): images\n"
    "with an alpha channel are composited on a neutral grey (128,128,128) and small images\n"
    "(sprites, icons) are enlarged to 224 first. An index is used as it is (its own setting);\n"
    "with --invariant its images are read again from their paths.\n";

typedef struct dedup_run {
    imret_index *idx;   /* identity descriptors, id = item number */
    imret_index *tidx;  /* the other 7 transforms (fp16), id = 8 * item + t */
    item *items;
    int transforms;
    size_t dim, failed;
} dedup_run;

static void dedup_consume(void *user, size_t i) {
    dedup_run *D = (dedup_run *)user;
    item *it = &D->items[i];
    int t;
    if (it->status == ST_FAILED) {
        progress_clear();
        fprintf(stderr, "imret: warning: %s: skipped: %s\n", it->path, it->error);
        D->failed++;
        return;
    }
    imret_index_add(D->idx, i, NULL, it->vec, NULL);
    for (t = 1; t < D->transforms; t++) imret_index_add(D->tidx, 8 * (uint64_t)i + t, NULL, it->vec + t * D->dim, NULL);
    free(it->vec);
    it->vec = NULL;
}

static size_t uf_find(size_t *parent, size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
}

/* the query descriptors of item i (1 or 8) into q */
static void item_queries(const dedup_run *D, size_t i, float *q) {
    int t;
    imret_index_get_vector(D->idx, i, q);
    for (t = 1; t < D->transforms; t++) imret_index_get_vector(D->tidx, 8 * (uint64_t)i + t, q + t * D->dim);
}

typedef struct group { size_t *m; size_t n; float *sim; } group;
static const item *g_items;
static int cmp_group(const void *a, const void *b) {
    const group *x = (const group *)a, *y = (const group *)b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    return strcmp(g_items[x->m[0]].path, g_items[y->m[0]].path);
}
static int better_keep(const item *a, const item *b) { /* a should be kept rather than b */
    uint64_t pa = (uint64_t)a->width * a->height, pb = (uint64_t)b->width * b->height;
    if (pa != pb) return pa > pb;
    if (a->size != b->size) return a->size > b->size;
    return strcmp(a->path, b->path) < 0;
}

/* Thumbnail: box-filtered to fit max x max, alpha composited on grey, as JPEG base64. */
static void b64_write(void *ctx, void *data, int size) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    FILE *f = (FILE *)ctx;
    const unsigned char *p = (const unsigned char *)data;
    static unsigned char carry[3];
    static int nc;
    int i;
    if (!data) { /* flush: the last 1 or 2 bytes with '=' padding */
        if (nc) {
            unsigned v = carry[0] << 16 | (nc > 1 ? carry[1] << 8 : 0);
            fprintf(f, "%c%c%c=", tab[v >> 18], tab[(v >> 12) & 63], nc > 1 ? tab[(v >> 6) & 63] : '=');
        }
        nc = 0;
        return;
    }
    for (i = 0; i < size; i++) {
        carry[nc++] = p[i];
        if (nc == 3) {
            unsigned v = carry[0] << 16 | carry[1] << 8 | carry[2];
            fputc(tab[v >> 18], f);
            fputc(tab[(v >> 12) & 63], f);
            fputc(tab[(v >> 6) & 63], f);
            fputc(tab[v & 63], f);
            nc = 0;
        }
    }
}
static int write_thumb(FILE *f, const char *path, int max) {
    imret_image img;
    int tw, th, x, y, c;
    unsigned char *rgb;
    if (imret_image_load_file(path, NULL, &img) != IMRET_OK) return 0;
    if (img.width >= img.height) { tw = img.width < max ? img.width : max; th = (int)((double)img.height * tw / img.width + 0.5); }
    else { th = img.height < max ? img.height : max; tw = (int)((double)img.width * th / img.height + 0.5); }
    if (tw < 1) tw = 1;
    if (th < 1) th = 1;
    rgb = (unsigned char *)xmalloc((size_t)tw * th * 3);
    for (y = 0; y < th; y++)
        for (x = 0; x < tw; x++) {
            int y0 = (int)((long long)y * img.height / th), y1 = (int)((long long)(y + 1) * img.height / th);
            int x0 = (int)((long long)x * img.width / tw), x1 = (int)((long long)(x + 1) * img.width / tw), yy, xx;
            double acc[3] = {0, 0, 0}, cnt = 0;
            if (y1 <= y0) y1 = y0 + 1;
            if (x1 <= x0) x1 = x0 + 1;
            for (yy = y0; yy < y1; yy++)
                for (xx = x0; xx < x1; xx++) {
                    const unsigned char *p = img.pixels + ((size_t)yy * img.width + xx) * img.channels;
                    double al = img.channels == 4 ? p[3] / 255.0 : 1.0;
                    for (c = 0; c < 3; c++) {
                        double v = img.channels >= 3 ? p[c] : p[0];
                        acc[c] += v * al + 128.0 * (1 - al);
                    }
                    cnt++;
                }
            for (c = 0; c < 3; c++) rgb[((size_t)y * tw + x) * 3 + c] = (unsigned char)(acc[c] / cnt + 0.5);
        }
    imret_image_free(&img);
    fputs("data:image/jpeg;base64,", f);
    stbi_write_jpg_to_func(b64_write, f, tw, th, 3, rgb, 85);
    b64_write(f, NULL, 0);
    free(rgb);
    return 1;
}
static void html_str(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}
static void human_size(uint64_t b, char *buf, size_t cap) {
    if (b >= 10u << 20) snprintf(buf, cap, "%.1f MB", b / 1048576.0);
    else if (b >= 1024) snprintf(buf, cap, "%.1f KB", b / 1024.0);
    else snprintf(buf, cap, "%llu B", (unsigned long long)b);
}

static int write_html(const char *path, const char *source, double thr, int invariant, const item *items, const group *g, size_t ng,
                      size_t nimages) {
    FILE *f = fopen(path, "w");
    size_t gi, j;
    if (!f) return fail("%s: cannot write: %s", path, strerror(errno));
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>imret: duplicate images</title>\n<style>\n"
          "body{font-family:sans-serif;margin:1.5em;background:#f4f4f4;color:#222}\n"
          ".group{background:#fff;border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.6em 1em}\n"
          ".row{display:flex;flex-wrap:wrap;gap:12px}\n"
          "figure{margin:0;width:210px;border:3px solid #ddd;border-radius:4px;padding:4px;background:#fafafa}\n"
          "figure.keep{border-color:#2a8a2a}\n"
          "figure img{display:block;max-width:200px;max-height:200px;margin:auto}\n"
          "figcaption{font-size:12px;word-break:break-all;margin-top:4px}\n"
          ".tag{font-weight:bold;color:#2a8a2a}.drop{color:#a33}\n</style></head><body>\n", f);
    fprintf(f, "<h1>%zu group%s of duplicate images</h1>\n<p>Source: <code>", ng, ng == 1 ? "" : "s");
    html_str(f, source);
    fprintf(f, "</code>, %zu images described, threshold %.3f (cosine)%s. The suggested file to keep (green) has the largest "
               "resolution, then the largest file size.</p>\n", nimages, thr, invariant ? ", rotations and mirror images included" : "");
    for (gi = 0; gi < ng; gi++) {
        fprintf(f, "<section class=\"group\" id=\"group-%zu\"><h2>Group %zu: %zu images</h2><div class=\"row\">\n", gi + 1, gi + 1, g[gi].n);
        for (j = 0; j < g[gi].n; j++) {
            const item *it = &items[g[gi].m[j]];
            char sz[32];
            human_size(it->size, sz, sizeof sz);
            fprintf(f, "<figure class=\"%s\"><img src=\"", j ? "dup" : "keep");
            if (!write_thumb(f, it->path, 200)) fputs("data:,", f);
            fputs("\" alt=\"", f);
            html_str(f, it->path);
            fprintf(f, "\"><figcaption>%s<br>", j ? "<span class=\"drop\">duplicate</span>" : "<span class=\"tag\">keep</span>");
            html_str(f, it->path);
            fprintf(f, "<br>%d&times;%d &middot; %s &middot; similarity %.3f</figcaption></figure>\n", it->width, it->height, sz,
                    (double)g[gi].sim[j]);
        }
        fputs("</div></section>\n", f);
    }
    if (!ng) fputs("<p>No duplicates found.</p>\n", f);
    /* for automated checks: how many thumbnails the browser decoded */
    fputs("<script>window.addEventListener('load',function(){var n=0;document.querySelectorAll('img').forEach(function(i){"
          "if(i.complete&&i.naturalWidth>0)n++;});document.body.setAttribute('data-images-decoded',n);});</script>\n", f);
    fputs("</body></html>\n", f);
    if (fclose(f) != 0) return fail("%s: write failed: %s", path, strerror(errno));
    return 0;
}

static int cmd_dedup(int argc, char **argv) {
    const char *model_path = DEFAULT_MODEL, *html = NULL, *v, *thr_s = NULL;
    char **roots = (char **)xmalloc(argc * sizeof(char *));
    int nroots = 0, nabs = 0, threads = default_threads(), json = 0, invariant = 0, a, rc = 0, unreadable = 0, from_index = 0;
    int prec_set = 0;
    imret_precision prec = IMRET_PRECISION_FP32;
    double thr = 0;
    engine e;
    item_list files;
    imret_index *src = NULL;
    dedup_run D;
    imret_index_config ic = imret_index_config_init();
    size_t i, j, ng = 0, described = 0, *parent = NULL, batch = 256, in_groups = 0;
    group *g = NULL;
    struct stat st;
    memset(&e, 0, sizeof e);
    memset(&files, 0, sizeof files);
    memset(&D, 0, sizeof D);
    for (a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) { fputs(HELP_DEDUP, stdout); free(roots); return 0; }
        if (opt_val(argc, argv, &a, "--threshold", &thr_s)) {
            char *end;
            if (!thr_s || (thr = strtod(thr_s, &end), *end) || !(thr >= -1 && thr <= 1)) return usage_fail("dedup", "--threshold: a cosine similarity in -1..1");
        } else if (opt_val(argc, argv, &a, "--model", &model_path)) { if (!model_path) return usage_fail("dedup", "--model needs a file"); }
        else if (opt_val(argc, argv, &a, "--html", &html)) { if (!html) return usage_fail("dedup", "--html needs a file"); }
        else if (opt_val(argc, argv, &a, "--threads", &v)) { if (!parse_int(v, 1, 1024, &threads)) return usage_fail("dedup", "--threads: 1..1024"); }
        else if (opt_val(argc, argv, &a, "--precision", &v)) { if (!parse_precision(v, &prec)) return usage_fail("dedup", "--precision: fp32, int8 or bf16"); prec_set = 1; }
        else if (!strcmp(argv[a], "--json")) json = 1;
        else if (!strcmp(argv[a], "--invariant")) invariant = 1;
        else if (argv[a][0] == '-' && argv[a][1]) return usage_fail("dedup", "unknown option %s", argv[a]);
        else roots[nroots++] = argv[a];
    }
    if (!nroots) return usage_fail("dedup", "no folder or index given");
    from_index = nroots == 1 && stat(roots[0], &st) == 0 && S_ISREG(st.st_mode);
    g_tty = isatty(2);
    if (from_index && prec_set) return usage_fail("dedup", "--precision is for folders: an index keeps the precision it was made with");
    if (from_index) { /* entries of an index: its vectors, or its files again with --invariant */
        entry_meta *m;
        size_t nm;
        if ((rc = open_index(roots[0], model_path, NULL, NULL, &src, &e)) != 0) goto done;
        if (e.pl.white) { rc = fail("%s: dedup of whitened indexes is not supported", roots[0]); goto done; }
        if (!(m = index_entries(src, roots[0], &nm))) { rc = EXIT_RUNTIME; goto done; }
        for (i = 0; i < nm; i++) {
            struct stat fst;
            memset(&fst, 0, sizeof fst);
            fst.st_size = (off_t)m[i].size;
            list_push(&files, m[i].path, &fst);
            files.v[i].width = m[i].width;
            files.v[i].height = m[i].height;
            files.v[i].old = (int)i;
        }
        if (!invariant) { /* stored vectors */
            ic.dim = e.pl.dim;
            if (imret_index_create(&ic, &D.idx) != IMRET_OK) { rc = fail("%s", imret_last_error()); free(m); goto done; }
            for (i = 0; i < nm; i++) {
                float *vec = (float *)xmalloc(e.pl.dim * sizeof(float));
                imret_index_get_vector(src, m[i].id, vec);
                imret_index_add(D.idx, i, NULL, vec, NULL);
                files.v[i].status = ST_DESCRIBED;
                free(vec);
            }
            D.transforms = 1;
            D.dim = e.pl.dim;
            described = nm;
        }
        free(m);
    } else {
        e.s.setting = IMRET_SETTING_DUPLICATE;
        e.s.pooling = IMRET_POOL_GEM;
        e.s.gem_p = 3.0f;
        e.s.side = 224;
        e.s.precision = prec;
        if ((rc = absolute_roots(roots, nroots)) != 0) goto done;
        nabs = nroots;
        if ((rc = scan_roots(roots, nroots, &files, &unreadable)) != 0) goto done;
        if (!files.n) { rc = fail("%s: no files found", nroots == 1 ? roots[0] : "the given folders"); goto done; }
        if ((rc = engine_open(&e, model_path, NULL, NULL)) != 0) goto done;
    }
    if (!thr_s) thr = e.s.setting == IMRET_SETTING_DUPLICATE ? DEDUP_THRESHOLD : DEDUP_THRESHOLD_RETRIEVAL;
    if (!D.idx) { /* describe the files */
        imret_index_config tc = imret_index_config_init();
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGINT, &sa, NULL);
        D.transforms = e.pl.transforms = invariant ? 8 : 1;
        D.dim = e.pl.dim;
        D.items = files.v;
        ic.dim = tc.dim = e.pl.dim;
        tc.storage = IMRET_INDEX_FP16;
        if (imret_index_create(&ic, &D.idx) != IMRET_OK || imret_index_create(&tc, &D.tidx) != IMRET_OK) { rc = fail("%s", imret_last_error()); goto done; }
        run_pool(&e.pl, files.v, files.n, threads, "describing", dedup_consume, &D);
        if (g_interrupted) { fprintf(stderr, "imret: interrupted\n"); rc = EXIT_INTERRUPTED; goto done; }
        described = files.n - D.failed;
        if (!described) { rc = fail("no images could be read (%zu files skipped)", D.failed + unreadable); goto done; }
    }
    /* pairs: range search of each image's query descriptors, union-find over items */
    parent = (size_t *)xmalloc(files.n * sizeof(size_t));
    for (i = 0; i < files.n; i++) parent[i] = i;
    {
        float *q = (float *)xmalloc(batch * D.transforms * D.dim * sizeof(float));
        size_t *qi = (size_t *)xmalloc(batch * sizeof(size_t)), nb = 0;
        for (i = 0; i <= files.n; i++) {
            if (i < files.n && files.v[i].status == ST_DESCRIBED) { item_queries(&D, i, q + nb * D.transforms * D.dim); qi[nb++] = i; }
            if (nb == batch || (i == files.n && nb)) {
                imret_index_results res;
                size_t b, h;
                if (imret_index_range_cosine(D.idx, q, nb * D.transforms, (float)thr, NULL, &res) != IMRET_OK) { rc = fail("%s", imret_last_error()); break; }
                for (b = 0; b < nb * D.transforms; b++)
                    for (h = res.offsets[b]; h < res.offsets[b + 1]; h++) {
                        size_t x = uf_find(parent, qi[b / D.transforms]), y = uf_find(parent, (size_t)res.hits[h].id);
                        if (x != y) parent[x > y ? x : y] = x < y ? x : y;
                    }
                imret_index_results_free(&res);
                nb = 0;
            }
        }
        /* groups: members with the same root; keep first, then by similarity to it */
        g = (group *)xmalloc((files.n + 1) * sizeof(group));
        {
            size_t *gof = (size_t *)xmalloc(files.n * sizeof(size_t)), *cnt = (size_t *)xmalloc(files.n * sizeof(size_t));
            for (i = 0; i < files.n; i++) if (files.v[i].status == ST_DESCRIBED) cnt[uf_find(parent, i)]++;
            for (i = 0; i < files.n; i++) {
                size_t r;
                if (files.v[i].status != ST_DESCRIBED || cnt[r = uf_find(parent, i)] < 2) continue;
                if (r == i) { gof[r] = ng; g[ng].m = (size_t *)xmalloc(cnt[r] * sizeof(size_t)); g[ng].sim = (float *)xmalloc(cnt[r] * sizeof(float)); ng++; }
            }
            for (i = 0; i < files.n; i++) {
                size_t r;
                group *G;
                if (files.v[i].status != ST_DESCRIBED || cnt[r = uf_find(parent, i)] < 2) continue;
                G = &g[gof[r]];
                G->m[G->n++] = i;
                if (better_keep(&files.v[i], &files.v[G->m[0]])) { size_t t = G->m[0]; G->m[0] = i; G->m[G->n - 1] = t; }
            }
            free(gof);
            free(cnt);
        }
        for (j = 0; j < ng; j++) {
            float *v2 = (float *)xmalloc(D.dim * sizeof(float));
            size_t x, y;
            item_queries(&D, g[j].m[0], q);
            for (x = 0; x < g[j].n; x++) {
                imret_index_get_vector(D.idx, g[j].m[x], v2);
                g[j].sim[x] = x ? imret_similarity_best(q, D.transforms, v2, D.dim) : 1.0f;
            }
            for (x = 2; x < g[j].n; x++) /* insertion sort by similarity (groups are small) */
                for (y = x; y > 1 && g[j].sim[y] > g[j].sim[y - 1]; y--) {
                    size_t tm = g[j].m[y]; float ts = g[j].sim[y];
                    g[j].m[y] = g[j].m[y - 1]; g[j].sim[y] = g[j].sim[y - 1];
                    g[j].m[y - 1] = tm; g[j].sim[y - 1] = ts;
                }
            in_groups += g[j].n;
            free(v2);
        }
        g_items = files.v;
        qsort(g, ng, sizeof(group), cmp_group);
        free(q);
        free(qi);
    }
    if (rc) goto done;
    if (json) {
        printf("{\"source\": ");
        json_str(stdout, nroots == 1 ? roots[0] : "(several folders)");
        printf(", \"setting\": \"%s\", \"threshold\": %.4f, \"invariant\": %s, \"images\": %zu, \"skipped\": [", e.s.setting == IMRET_SETTING_DUPLICATE ? "duplicate" : "retrieval", thr,
               invariant ? "true" : "false", described);
        for (i = 0, j = 0; i < files.n; i++)
            if (files.v[i].status == ST_FAILED) {
                printf("%s\n  {\"path\": ", j++ ? "," : "");
                json_str(stdout, files.v[i].path);
                printf(", \"reason\": ");
                json_str(stdout, files.v[i].error);
                printf("}");
            }
        printf("%s], \"groups\": [", j ? "\n" : "");
        for (j = 0; j < ng; j++) {
            size_t x;
            printf("%s\n  {\"keep\": ", j ? "," : "");
            json_str(stdout, files.v[g[j].m[0]].path);
            printf(", \"members\": [");
            for (x = 0; x < g[j].n; x++) {
                const item *it = &files.v[g[j].m[x]];
                printf("%s\n    {\"path\": ", x ? "," : "");
                json_str(stdout, it->path);
                printf(", \"width\": %d, \"height\": %d, \"bytes\": %llu, \"similarity\": %.6f, \"keep\": %s}", it->width, it->height,
                       (unsigned long long)it->size, (double)g[j].sim[x], x ? "false" : "true");
            }
            printf("]}");
        }
        printf("%s]}\n", ng ? "\n" : "");
    } else {
        for (j = 0; j < ng; j++) {
            size_t x;
            printf("group %zu: %zu images\n", j + 1, g[j].n);
            for (x = 0; x < g[j].n; x++) {
                const item *it = &files.v[g[j].m[x]];
                char sz[32];
                human_size(it->size, sz, sizeof sz);
                printf("  %-4s %.3f %5dx%-5d %9s  %s\n", x ? "" : "keep", (double)g[j].sim[x], it->width, it->height, sz, it->path);
            }
        }
    }
    fprintf(stderr, "%zu duplicate groups, %zu images in them (%zu could be removed), %zu images described, %zu files skipped, threshold %.3f%s\n", ng,
            in_groups, in_groups - ng, described, D.failed + unreadable, thr, invariant ? ", rotations/mirrors included" : "");
    if (html && (rc = write_html(html, nroots == 1 ? roots[0] : "(several folders)", thr, invariant, files.v, g, ng, described)) == 0)
        fprintf(stderr, "report: %s\n", html);
done:
    for (j = 0; j < ng; j++) { free(g[j].m); free(g[j].sim); }
    free(g);
    free(parent);
    for (i = 0; i < files.n; i++) { free(files.v[i].path); free(files.v[i].error); free(files.v[i].vec); free(files.v[i].code); }
    free(files.v);
    imret_index_destroy(D.idx);
    imret_index_destroy(D.tidx);
    imret_index_destroy(src);
    engine_free(&e);
    while (nabs) free(roots[--nabs]);
    free(roots);
    return rc;
}

/* ---------------------------------------------------------------------------------------
   imret info, train-whitening, train-hash, export-faiss
   --------------------------------------------------------------------------------------- */
static const char *HELP_INFO =
    "usage: imret info FILE\n"
    "Describe a model (.imw), index (.imri), whitening or hash file (recognised by content).\n";

static int cmd_info(int argc, char **argv) {
    unsigned char magic[8] = {0};
    FILE *f;
    const char *file;
    if (argc >= 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) { fputs(HELP_INFO, stdout); return 0; }
    if (argc != 3) return usage_fail("info", "expected exactly one FILE");
    file = argv[2];
    if (!(f = fopen(file, "rb"))) return fail("%s: %s", file, strerror(errno));
    if (fread(magic, 1, 8, f) != 8) memset(magic, 0, 8);
    fclose(f);
    if (!memcmp(magic, "\x89IMRETW\n", 8)) {
        imret_model *m;
        imret_model_info mi;
        if (imret_model_load_file(file, NULL, &m) != IMRET_OK) return fail("%s", imret_last_error());
        imret_model_get_info(m, &mi);
        printf("%s: model\n  architecture   %s\n  feature map    %d channels, stride %d\n  classifier     %d classes\n  parameters     %zu\n"
               "  input          %s, scale %g, mean %g %g %g, std %g %g %g\n  fingerprint    %016llx\n  source         %s\n",
               file, mi.arch_name, mi.feature_channels, mi.feature_stride, mi.num_classes, mi.parameter_count, mi.input_bgr ? "BGR" : "RGB",
               (double)mi.input_scale, (double)mi.mean[0], (double)mi.mean[1], (double)mi.mean[2], (double)mi.std[0], (double)mi.std[1],
               (double)mi.std[2], (unsigned long long)mi.fingerprint, mi.source);
        imret_model_free(m);
    } else if (!memcmp(magic, "\x89IMRETI\n", 8)) {
        imret_index *idx;
        imret_index_config c = imret_index_config_init();
        if (imret_index_map_file(file, NULL, &idx) != IMRET_OK) return fail("%s", imret_last_error());
        imret_index_get_config(idx, &c);
        printf("%s: index\n  entries        %zu\n  vectors        %zu dimensions, %s\n  codes          %zu bits\n  descriptor     %s\n"
               "  model          fingerprint %016llx\n", file, imret_index_count(idx), c.dim, c.storage == IMRET_INDEX_FP16 ? "fp16" : "fp32", c.bits,
               c.descriptor, (unsigned long long)c.model_fingerprint);
        imret_index_destroy(idx);
    } else if (!memcmp(magic, "\x89IMRWHT\n", 8)) {
        imret_whitening *w;
        imret_whitening_info wi;
        if (imret_whitening_load_file(file, &w) != IMRET_OK) return fail("%s", imret_last_error());
        imret_whitening_get_info(w, &wi);
        printf("%s: whitening\n  dimensions     %zu -> %zu\n  trained on     %llu vectors\n  power          %g\n  shrinkage      %g\n  flags          %s%s%s\n",
               file, wi.in_dim, wi.out_dim, (unsigned long long)wi.n_train, (double)wi.power, (double)wi.shrinkage,
               wi.flags & IMRET_WHITENING_FEW_SAMPLES ? "few-samples " : "", wi.flags & IMRET_WHITENING_UNDERDETERMINED ? "underdetermined " : "",
               wi.flags & IMRET_WHITENING_RANK_DEFICIENT ? "rank-deficient" : "");
        imret_whitening_free(w);
    } else if (!memcmp(magic, "\x89IMRHSH\n", 8)) {
        imret_hash *h;
        imret_hash_info hi;
        static const char *const meth[4] = {"lsh", "pcah", "itq", "linear"};
        if (imret_hash_load_file(file, &h) != IMRET_OK) return fail("%s", imret_last_error());
        imret_hash_get_info(h, &hi);
        printf("%s: hash\n  method         %s\n  bits           %d (%d learned)\n  input          %zu dimensions\n  trained on     %llu vectors\n%s%s%s", file,
               (unsigned)hi.method < 4 ? meth[hi.method] : "?", hi.bits, hi.learned_bits, hi.in_dim, (unsigned long long)hi.n_train,
               *hi.message ? "  note           " : "", hi.message, *hi.message ? "\n" : "");
        imret_hash_free(h);
    } else {
        return fail("%s: not an imret file (model .imw, index .imri, whitening or hash)", file);
    }
    return 0;
}

/* all live vectors of an index file (n x dim) */
static float *index_vectors(const char *file, size_t *n, size_t *dim, imret_index **out) {
    imret_index_config c = imret_index_config_init();
    imret_index_entry en;
    size_t cursor = 0, i = 0;
    float *x;
    if (imret_index_map_file(file, NULL, out) != IMRET_OK) { fail("%s", imret_last_error()); return NULL; }
    imret_index_get_config(*out, &c);
    if (!c.dim) { fail("%s holds no vectors", file); return NULL; }
    *n = imret_index_count(*out);
    *dim = c.dim;
    x = (float *)xmalloc((*n + 1) * c.dim * sizeof(float));
    while (imret_index_next(*out, &cursor, &en) == IMRET_OK) imret_index_get_vector(*out, en.id, x + c.dim * i++);
    return x;
}

static const char *HELP_TRAIN_WHITENING =
    "usage: imret train-whitening FILE.imri -o WHITENING [--dim N] [--power P] [--shrinkage S]\n"
    "Learn a PCA-whitening from the vectors of an index (made without whitening). Use it with\n"
    "`imret index --whitening FILE`. It needs many more images than dimensions (warned).\n"
    "  --dim N         output dimensions (default: the input's)\n"
    "  --power P       eigenvalue exponent (default 0.5 = whitening, 0 = PCA only)\n"
    "  --shrinkage S   covariance shrinkage 0..1 (default 0)\n";

static int cmd_train_whitening(int argc, char **argv) {
    const char *file = NULL, *out = NULL, *v;
    imret_whitening_config wc = imret_whitening_config_init();
    imret_whitening *w = NULL;
    imret_whitening_info wi;
    imret_index *idx = NULL;
    size_t n, dim;
    float *x;
    int a, dimo = 0, rc = 0;
    for (a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) { fputs(HELP_TRAIN_WHITENING, stdout); return 0; }
        if (opt_val(argc, argv, &a, "-o", &out)) { if (!out) return usage_fail("train-whitening", "-o needs a file"); }
        else if (opt_val(argc, argv, &a, "--dim", &v)) { if (!parse_int(v, 1, 65536, &dimo)) return usage_fail("train-whitening", "--dim: 1..65536"); }
        else if (opt_val(argc, argv, &a, "--power", &v)) { if (!v) return usage_fail("train-whitening", "--power needs a value"); wc.power = (float)atof(v); }
        else if (opt_val(argc, argv, &a, "--shrinkage", &v)) { if (!v) return usage_fail("train-whitening", "--shrinkage needs a value"); wc.shrinkage = (float)atof(v); }
        else if (argv[a][0] == '-' && argv[a][1]) return usage_fail("train-whitening", "unknown option %s", argv[a]);
        else if (!file) file = argv[a];
        else return usage_fail("train-whitening", "one index only");
    }
    if (!file || !out) return usage_fail("train-whitening", "expected FILE.imri -o OUTPUT");
    if (!(x = index_vectors(file, &n, &dim, &idx))) { imret_index_destroy(idx); return EXIT_RUNTIME; }
    wc.out_dim = (size_t)dimo;
    if (imret_whitening_train(x, n, dim, &wc, &w) != IMRET_OK) rc = fail("%s: %s", file, imret_last_error());
    else if (imret_whitening_save_file(w, out) != IMRET_OK) rc = fail("%s", imret_last_error());
    else {
        imret_whitening_get_info(w, &wi);
        fprintf(stderr, "%s: whitening %zu -> %zu from %zu vectors\n", out, wi.in_dim, wi.out_dim, n);
        if (wi.flags & IMRET_WHITENING_FEW_SAMPLES)
            fprintf(stderr, "imret: warning: only %zu training vectors for %zu dimensions: expect it to hurt retrieval (use --dim or more images)\n", n, wi.out_dim);
    }
    imret_whitening_free(w);
    imret_index_destroy(idx);
    free(x);
    return rc;
}

static const char *HELP_TRAIN_HASH =
    "usage: imret train-hash FILE.imri -o HASH [--bits B] [--method itq|pcah|lsh] [--seed N]\n"
    "Learn a hash layer (binary codes) from the vectors of an index; use it with\n"
    "`imret index --hash FILE` and `imret search --hamming`. Default: ITQ, 256 bits.\n";

static int cmd_train_hash(int argc, char **argv) {
    const char *file = NULL, *out = NULL, *v;
    imret_hash_config hc = imret_hash_config_init();
    imret_hash *h = NULL;
    imret_hash_info hi;
    imret_index *idx = NULL;
    size_t n, dim;
    float *x;
    int a, rc = 0, seed;
    for (a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) { fputs(HELP_TRAIN_HASH, stdout); return 0; }
        if (opt_val(argc, argv, &a, "-o", &out)) { if (!out) return usage_fail("train-hash", "-o needs a file"); }
        else if (opt_val(argc, argv, &a, "--bits", &v)) { if (!parse_int(v, 64, 1024, &hc.bits)) return usage_fail("train-hash", "--bits: 64, 128, 256, 512 or 1024"); }
        else if (opt_val(argc, argv, &a, "--seed", &v)) { if (!parse_int(v, 0, 2147483647, &seed)) return usage_fail("train-hash", "--seed: a number"); hc.seed = (uint64_t)seed; }
        else if (opt_val(argc, argv, &a, "--method", &v)) {
            if (v && !strcmp(v, "itq")) hc.method = IMRET_HASH_ITQ;
            else if (v && !strcmp(v, "pcah")) hc.method = IMRET_HASH_PCAH;
            else if (v && !strcmp(v, "lsh")) hc.method = IMRET_HASH_LSH;
            else return usage_fail("train-hash", "--method: itq, pcah or lsh");
        } else if (argv[a][0] == '-' && argv[a][1]) return usage_fail("train-hash", "unknown option %s", argv[a]);
        else if (!file) file = argv[a];
        else return usage_fail("train-hash", "one index only");
    }
    if (!file || !out) return usage_fail("train-hash", "expected FILE.imri -o OUTPUT");
    if (!(x = index_vectors(file, &n, &dim, &idx))) { imret_index_destroy(idx); return EXIT_RUNTIME; }
    if (imret_hash_train(x, n, dim, &hc, &h) != IMRET_OK) rc = fail("%s: %s", file, imret_last_error());
    else if (imret_hash_save_file(h, out) != IMRET_OK) rc = fail("%s", imret_last_error());
    else {
        imret_hash_get_info(h, &hi);
        fprintf(stderr, "%s: %d-bit hash from %zu vectors%s%s\n", out, hi.bits, n, *hi.message ? ": " : "", hi.message);
    }
    imret_hash_free(h);
    imret_index_destroy(idx);
    free(x);
    return rc;
}

static const char *HELP_EXPORT =
    "usage: imret export-faiss FILE.imri OUT.faiss [--binary]\n"
    "Write the vectors as a FAISS IndexFlatIP (or, with --binary, the hash codes as an\n"
    "IndexBinaryFlat), readable by faiss.read_index / read_index_binary. FAISS rows have no\n"
    "ids: OUT.faiss.tsv lists row<TAB>id<TAB>path in row order.\n";

static int cmd_export_faiss(int argc, char **argv) {
    const char *file = NULL, *out = NULL;
    int a, binary = 0, rc = 0;
    imret_index *idx = NULL;
    uint64_t *ids;
    size_t i, n;
    char *tsv;
    FILE *f;
    for (a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) { fputs(HELP_EXPORT, stdout); return 0; }
        if (!strcmp(argv[a], "--binary")) binary = 1;
        else if (argv[a][0] == '-' && argv[a][1]) return usage_fail("export-faiss", "unknown option %s", argv[a]);
        else if (!file) file = argv[a];
        else if (!out) out = argv[a];
        else return usage_fail("export-faiss", "too many arguments");
    }
    if (!file || !out) return usage_fail("export-faiss", "expected FILE.imri OUT.faiss");
    if (imret_index_map_file(file, NULL, &idx) != IMRET_OK) return fail("%s", imret_last_error());
    n = imret_index_count(idx);
    ids = (uint64_t *)xmalloc((n + 1) * sizeof(uint64_t));
    if (imret_index_export_faiss(idx, binary ? IMRET_METRIC_HAMMING : IMRET_METRIC_COSINE, out, ids) != IMRET_OK) {
        rc = fail("%s: %s", out, imret_last_error());
    } else {
        tsv = (char *)xmalloc(strlen(out) + 8);
        sprintf(tsv, "%s.tsv", out);
        if (!(f = fopen(tsv, "w"))) rc = fail("%s: %s", tsv, strerror(errno));
        else {
            for (i = 0; i < n; i++) {
                imret_index_entry en;
                entry_meta m;
                memset(&m, 0, sizeof m);
                imret_index_get(idx, ids[i], &en);
                fprintf(f, "%zu\t%016llx\t%s\n", i, (unsigned long long)ids[i], label_parse(en.label, &m) ? m.path : en.label);
            }
            if (fclose(f) != 0) rc = fail("%s: write failed", tsv);
            else fprintf(stderr, "%s: %zu rows (%s); ids and paths in %s\n", out, n, binary ? "IndexBinaryFlat" : "IndexFlatIP", tsv);
        }
        free(tsv);
    }
    free(ids);
    imret_index_destroy(idx);
    return rc;
}

/* --------------------------------------------------------------------------------------- */
static const char *HELP =
    "usage: imret COMMAND [options]   (imret COMMAND --help for its options)\n"
    "  index DIR... -o FILE.imri     index the images under the folders (incremental)\n"
    "  search FILE.imri IMAGE...     most similar indexed images\n"
    "  dedup DIR...|FILE.imri        groups of near-duplicate images (--html report.html)\n"
    "  info FILE                     describe a model, index, whitening or hash file\n"
    "  train-whitening FILE.imri -o W   learn a PCA-whitening from an index\n"
    "  train-hash FILE.imri -o H        learn a hash layer (ITQ) from an index\n"
    "  export-faiss FILE.imri OUT       write a FAISS index\n"
    "Exit codes: 0 ok, 1 usage error, 2 runtime error, 130 interrupted (Ctrl-C).\n";

int main(int argc, char **argv) {
    static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
        {"index", cmd_index}, {"search", cmd_search}, {"dedup", cmd_dedup}, {"info", cmd_info},
        {"train-whitening", cmd_train_whitening}, {"train-hash", cmd_train_hash}, {"export-faiss", cmd_export_faiss}};
    size_t c;
    if (argc < 2) { fputs(HELP, stderr); return EXIT_USAGE; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) {
            char *args[3];
            args[0] = argv[0]; args[1] = argv[2]; args[2] = (char *)"--help";
            for (c = 0; c < sizeof cmds / sizeof cmds[0]; c++) if (!strcmp(argv[2], cmds[c].name)) return cmds[c].fn(3, args);
        }
        fputs(HELP, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("imret %d.%d.%d\n", IMRET_VERSION_MAJOR, IMRET_VERSION_MINOR, IMRET_VERSION_PATCH); return 0; }
    for (c = 0; c < sizeof cmds / sizeof cmds[0]; c++)
        if (!strcmp(argv[1], cmds[c].name)) return cmds[c].fn(argc, argv);
    fprintf(stderr, "imret: unknown command '%s'\n%s", argv[1], HELP);
    return EXIT_USAGE;
}
