/* parts/index.h -- index and search of imret: entries, exact cosine / Hamming search,
   multi-index hashing, duplicate groups, the .imri index file and FAISS interop.
   Written as a part of imret.h (it will be pasted into it): include it right after imret.h,

       #define IMRET_IMPLEMENTATION
       #include "imret.h"
       #include "parts/index.h"

   It works on any float descriptors or packed binary codes; it does not need the CNN.

     [api: index and search]   imret_index (create, add, remove, update, lookup, iterate,
                               compact), top-k and range search, duplicate groups, save/load,
                               FAISS IndexFlatIP / IndexBinaryFlat export and import
     [impl: index]             entries, id hash map, labels, fp16 conversion, file format
     [impl: search]            kernels (scalar oracle, AVX2, AVX-512), top-k / range, MIH
     [impl: dedup]             union-find over pairs found by range / multi-index search
*/
#ifndef IMRET_INDEX_PART_API
#define IMRET_INDEX_PART_API

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================
   [api: index and search]
   An index holds entries: a uint64 id, an optional UTF-8 label (a path, a name), and a
   float vector (dim values, stored as fp32 or fp16) and/or a packed binary code (bits bits
   in (bits + 63) / 64 uint64 words; bit b is bit (b % 64) of word b / 64). Which of the two
   it holds is fixed at creation by imret_index_config (dim > 0 and/or bits > 0).

   Similarity and ordering
   - cosine: the dot product of the query and the stored vector. With config.normalize = 1
     (the default) add/update and every query L2-normalise their vectors first (in double,
     then rounded to the storage type), so the dot product is the cosine similarity. A zero
     vector stays zero (similarity 0 to everything). Higher is better.
   - Hamming: the number of differing bits. Lower is better. Bits of the last word beyond
     `bits` are ignored (cleared on add, masked in queries).
   - Ties are broken by the smaller id, so every result list is a deterministic function of
     the index contents and the query: the same for any thread count and insertion order.
     Different SIMD levels compute float dot products in different orders and can differ in
     the last bits of a score (and so in the order of near-equal scores); Hamming results are
     identical on every path.

   Thread safety: searches, lookups, save and dedup only read the index and may run
   concurrently; add/remove/update/compact/build need exclusive access. Borrowed pointers
   (labels, vectors, codes, config.descriptor) stay valid until the next modification.
   ====================================================================================== */
typedef struct imret_index imret_index; /* opaque */

typedef enum imret_index_storage {
    IMRET_INDEX_FP32 = 0, /* 4 bytes per dimension                                       */
    IMRET_INDEX_FP16 = 1  /* IEEE half, 2 bytes per dimension (round to nearest even)       */
} imret_index_storage;

typedef enum imret_metric {
    IMRET_METRIC_COSINE = 0, /* dot product of (normalised) float vectors, higher = closer  */
    IMRET_METRIC_HAMMING = 1 /* differing bits of binary codes, lower = closer             */
} imret_metric;

#define IMRET_INDEX_MAX_DIM 65536u        /* largest dim                                     */
#define IMRET_INDEX_MAX_BITS 65536u       /* largest code length                             */
#define IMRET_INDEX_MAX_LABEL 65535u      /* longest label in bytes                          */
#define IMRET_INDEX_MAX_DESCRIPTOR 65536u /* longest descriptor text in bytes                */

typedef struct imret_index_config {
    size_t dim;                  /* float vector dimensions; 0 = no vectors                */
    imret_index_storage storage; /* IMRET_INDEX_FP32 (default) or IMRET_INDEX_FP16         */
    size_t bits;                 /* binary code length in bits; 0 = no codes               */
    int normalize;               /* 1 (default): L2-normalise vectors on add and queries   */
    const char *descriptor;      /* free text naming the descriptor/hash setting (e.g.
                                    "resnet50 gem p=3 s=512 itq256"); copied; NULL = ""     */
    uint64_t model_fingerprint;  /* identifies the model + settings that made the vectors;
                                    indexes with different fingerprints are never mixed    */
} imret_index_config;
IMRET_API imret_index_config imret_index_config_init(void);

/* Create an empty index. Errors: INVALID_ARGUMENT (dim and bits both 0, over the limits,
   bad storage, descriptor not UTF-8 or too long), OUT_OF_MEMORY. */
IMRET_API imret_result imret_index_create(const imret_index_config *cfg, imret_index **out);
IMRET_API void imret_index_destroy(imret_index *idx);
/* The index's configuration; cfg->descriptor is borrowed from the index. */
IMRET_API imret_result imret_index_get_config(const imret_index *idx, imret_index_config *cfg);
/* IMRET_OK when vectors/codes made under `expected` may be mixed with this index: same dim,
   bits, descriptor text and model fingerprint (storage and normalize may differ). Otherwise
   IMRET_ERROR_MISMATCH with the first difference in imret_last_error(). */
IMRET_API imret_result imret_index_check_compatible(const imret_index *idx, const imret_index_config *expected);

/* Add one entry. label: NULL or "" = none, else UTF-8 without NUL (<= IMRET_INDEX_MAX_LABEL
   bytes). vector: dim floats (required when dim > 0, must be finite), code: words uint64
   (required when bits > 0). Errors: DUPLICATE (id present), INVALID_ARGUMENT, OUT_OF_MEMORY. */
IMRET_API imret_result imret_index_add(imret_index *idx, uint64_t id, const char *label, const float *vector,
                                       const uint64_t *code);
/* Add n entries: ids[n], labels[n] (NULL array or NULL elements = none), vectors[n][dim],
   codes[n][words]. All or nothing: on any error (a duplicate id in the index or within the
   batch, a bad value) nothing is added and the detail names the offending item. */
IMRET_API imret_result imret_index_add_batch(imret_index *idx, size_t n, const uint64_t *ids, const char *const *labels,
                                             const float *vectors, const uint64_t *codes);
/* Replace fields of an existing entry; a NULL argument keeps that field ("" clears the
   label). Errors: NOT_FOUND, INVALID_ARGUMENT, OUT_OF_MEMORY. */
IMRET_API imret_result imret_index_update(imret_index *idx, uint64_t id, const char *label, const float *vector,
                                          const uint64_t *code);
/* Remove an entry (a tombstone until imret_index_compact; the id may be added again at
   once). Errors: NOT_FOUND. */
IMRET_API imret_result imret_index_remove(imret_index *idx, uint64_t id);
/* Drop tombstones and unreferenced label bytes; entry order is kept. */
IMRET_API imret_result imret_index_compact(imret_index *idx);
/* Live entries. */
IMRET_API size_t imret_index_count(const imret_index *idx);
/* Removed entries still occupying storage (compaction reclaims them). */
IMRET_API size_t imret_index_tombstones(const imret_index *idx);

typedef struct imret_index_entry {
    uint64_t id;
    const char *label;      /* borrowed, NUL-terminated; "" when none                      */
    size_t label_len;       /* bytes, without the NUL                                      */
    const void *vector;     /* borrowed: dim floats (FP32) or dim uint16 halves (FP16);
                               NULL without vectors                                         */
    const uint64_t *code;   /* borrowed: words uint64; NULL without codes                  */
} imret_index_entry;
/* Look an entry up by id. Errors: NOT_FOUND. */
IMRET_API imret_result imret_index_get(const imret_index *idx, uint64_t id, imret_index_entry *entry);
/* The stored vector of id converted to float (dim values, as stored: normalised, rounded). */
IMRET_API imret_result imret_index_get_vector(const imret_index *idx, uint64_t id, float *out);
/* Iterate live entries in insertion order: set *cursor = 0, call until IMRET_ERROR_NOT_FOUND
   (the end; it sets no error detail). Do not modify the index while iterating. */
IMRET_API imret_result imret_index_next(const imret_index *idx, size_t *cursor, imret_index_entry *entry);

typedef enum imret_search_method {
    IMRET_SEARCH_AUTO = 0, /* multi-index hashing when built and estimated cheaper, else flat */
    IMRET_SEARCH_FLAT = 1, /* exhaustive scan                                               */
    IMRET_SEARCH_MIH = 2   /* multi-index hashing (Hamming only; needs imret_index_build_mih) */
} imret_search_method;

typedef struct imret_search_options {
    int threads;                /* OpenMP threads; 0 (default) = all; results do not depend on it */
    imret_simd simd;            /* kernel level cap; IMRET_SIMD_AUTO (default) = best          */
    imret_search_method method; /* Hamming only; cosine is always flat                        */
} imret_search_options;
IMRET_API imret_search_options imret_search_options_init(void);

typedef struct imret_index_hit {
    uint64_t id;
    float score; /* cosine: similarity; Hamming: distance in bits (an integer value)          */
} imret_index_hit;

/* Top-k search for nq queries (queries[nq][dim] floats, or codes[nq][words]). hits[nq][k]
   receives each query's hits best first (cosine: similarity descending; Hamming: distance
   ascending; ties: smaller id first). counts[q] (counts may be NULL) = min(k, count); unused
   hit slots get id 0 and score -INFINITY (cosine) / +INFINITY (Hamming). An empty index
   gives zero hits. Errors: INVALID_ARGUMENT (NULL, k == 0, nq == 0, the index has no
   vectors/codes, non-finite query), OUT_OF_MEMORY. opt may be NULL. */
IMRET_API imret_result imret_index_search_cosine(const imret_index *idx, const float *queries, size_t nq, size_t k,
                                                 const imret_search_options *opt, imret_index_hit *hits, size_t *counts);
IMRET_API imret_result imret_index_search_hamming(const imret_index *idx, const uint64_t *queries, size_t nq, size_t k,
                                                  const imret_search_options *opt, imret_index_hit *hits, size_t *counts);

/* Range search results: query q's hits are hits[offsets[q] .. offsets[q + 1]), best first
   with ties by smaller id. Free with imret_index_results_free. */
typedef struct imret_index_results {
    size_t nq;
    size_t *offsets;        /* nq + 1 values */
    imret_index_hit *hits;  /* offsets[nq] hits */
} imret_index_results;
/* All entries with similarity >= min_similarity (cosine) / distance <= max_distance. */
IMRET_API imret_result imret_index_range_cosine(const imret_index *idx, const float *queries, size_t nq,
                                                float min_similarity, const imret_search_options *opt,
                                                imret_index_results *out);
IMRET_API imret_result imret_index_range_hamming(const imret_index *idx, const uint64_t *queries, size_t nq,
                                                 uint32_t max_distance, const imret_search_options *opt,
                                                 imret_index_results *out);
IMRET_API void imret_index_results_free(imret_index_results *r);

/* Multi-index hashing (Norouzi, Punjani & Fleet, 2012/2014) for exact sub-linear Hamming
   search: the code is split into m substrings, each indexed in a sorted table; a code within
   distance r of the query matches it within floor(r/m) bits on at least one substring.
   substrings = 0 picks m = round(bits / log2(count)). The tables are dropped by any change
   of the entries (add/remove/update/compact); searches then fall back to flat. Memory:
   8 bytes per entry and substring. IMRET_SEARCH_AUTO uses the tables when its cost
   estimate (candidates probed vs codes scanned) says they win. */
IMRET_API imret_result imret_index_build_mih(imret_index *idx, unsigned substrings);
/* 1 when MIH tables are built and current. */
IMRET_API int imret_index_has_mih(const imret_index *idx);

/* Duplicate groups: connected components of the graph "a and b are within threshold"
   (Hamming: distance <= threshold bits; cosine: similarity >= threshold), found by a range
   search per entry (Hamming: multi-index substring matching, never an N x N matrix) and
   union-find. Groups have >= 2 members and are sorted by size (largest first), then by
   their smallest id. members[0] is the representative (the smallest id; a host may choose
   another "keep", e.g. the largest file); the others follow by score to it (closest first),
   then id. Scores are to the representative (members of a chain can be farther than the
   threshold from it). */
typedef struct imret_dedup_options {
    imret_metric metric; /* default IMRET_METRIC_HAMMING                                    */
    double threshold;    /* Hamming: max distance in bits (default 8); cosine: min similarity */
    int threads;         /* 0 = all                                                         */
    imret_simd simd;
} imret_dedup_options;
IMRET_API imret_dedup_options imret_dedup_options_init(void);
typedef struct imret_dedup_group {
    size_t count;
    imret_index_hit *members; /* count hits; members[0] is the representative (score 1 / 0) */
} imret_dedup_group;
typedef struct imret_dedup_result {
    size_t group_count;
    imret_dedup_group *groups;
    size_t member_count; /* entries in some group */
    imret_index_hit *members_storage;
} imret_dedup_result;
IMRET_API imret_result imret_index_dedup(const imret_index *idx, const imret_dedup_options *opt, imret_dedup_result *out);
IMRET_API void imret_dedup_result_free(imret_dedup_result *r);

/* Serialisation to the .imri format (described in [impl: index]). save_memory writes when
   cap >= the size, which it returns in *size in any case (buf may be NULL to ask). Live
   entries only, in order, so save -> load -> save is byte-identical. load validates every
   field against the data size before use. expected (may be NULL) is checked like
   imret_index_check_compatible: IMRET_ERROR_MISMATCH when it differs. Errors: FORMAT,
   VERSION, CHECKSUM, MISMATCH, OUT_OF_MEMORY, LIMIT. */
IMRET_API imret_result imret_index_save_memory(const imret_index *idx, void *buf, size_t cap, size_t *size);
IMRET_API imret_result imret_index_load_memory(const void *data, size_t size, const imret_index_config *expected,
                                               imret_index **out);
#ifndef IMRET_NO_STDIO
/* Save: a temporary file in the same directory, fsync, rename over path, fsync of the
   directory: after a crash at any moment path holds the old or the new index, never a torn
   one. On failure the temporary file is removed and path is untouched. */
IMRET_API imret_result imret_index_save_file(const imret_index *idx, const char *path);
IMRET_API imret_result imret_index_load_file(const char *path, const imret_index_config *expected, imret_index **out);
/* Read-only load: the file is validated like imret_index_load_file (every byte is read once
   for the CRC), then vectors and codes are used in place from a read-only mapping (page
   cache) instead of being copied; ids, labels and the hash map are still built in memory.
   Searches, lookups, iteration, save, dedup and imret_index_build_mih work; add, update,
   remove and compact fail with IMRET_ERROR_UNSUPPORTED. Falls back to a copying load where
   mapping is not possible (no mmap, big-endian host). */
IMRET_API imret_result imret_index_map_file(const char *path, const imret_index_config *expected, imret_index **out);
/* FAISS interop (faiss.write_index / read_index format, FAISS 1.7): export the vectors as
   IndexFlatIP ("IxFI", fp32) or the codes as IndexBinaryFlat ("IBxF", bits % 8 == 0).
   FAISS indexes have no ids: entry i of the FAISS index is the i-th live entry (iteration
   order); ids_out (may be NULL) receives count ids in that order. Import creates a new index
   with ids 0..n-1 (or ids[] when not NULL) from such a file; cfg supplies descriptor,
   fingerprint, storage and normalize (dim/bits come from the file). */
IMRET_API imret_result imret_index_export_faiss(const imret_index *idx, imret_metric what, const char *path, uint64_t *ids_out);
IMRET_API imret_result imret_index_import_faiss(const char *path, const imret_index_config *cfg, const uint64_t *ids,
                                                imret_index **out);
#endif

#ifdef __cplusplus
}
#endif
#endif /* IMRET_INDEX_PART_API */

/* ######################################################################################
   IMPLEMENTATION (index part)
   ###################################################################################### */
#ifdef IMRET_IMPLEMENTATION
#ifndef IMRET_INDEX_PART_IMPL
#define IMRET_INDEX_PART_IMPL

/* ======================================================================================
   [impl: index]
   Entries live in parallel arrays indexed by slot (insertion order): ids, a dead flag
   (tombstone), label offset/length into one byte blob (each label NUL-terminated so it can
   be lent out), vectors (slot * dim) and codes (slot * words). An open-addressing hash table
   (linear probing, backward-shift deletion, load <= 1/2) maps live ids to slots; it stores
   slots only and reads keys from ids[], so it costs 8 bytes per table cell.
   ====================================================================================== */
#define IMRET__IDX_EMPTY ((size_t)-1)

typedef struct imret__idx_mih {
    unsigned m;            /* substrings                                                  */
    unsigned *sbit;        /* m + 1 bit boundaries: substring j = bits [sbit[j], sbit[j+1]) */
    uint64_t *tab;         /* m tables of len entries (value << 32 | slot), sorted         */
    size_t len;            /* live entries indexed                                         */
} imret__idx_mih;

struct imret_index {
    size_t dim, bits, words;
    imret_index_storage storage;
    int normalize;
    char *descriptor;
    uint64_t fingerprint;
    size_t n, cap, live;   /* used slots (incl. tombstones), allocated slots, live entries */
    uint64_t *ids;
    uint8_t *dead;
    size_t *label_off;
    uint32_t *label_len;
    char *labels;          /* blob; offset 0 holds "" for entries without a label          */
    size_t labels_len, labels_cap;
    void *vecs;            /* cap * dim floats or uint16                                    */
    uint64_t *codes;       /* cap * words                                                   */
    size_t *table;         /* hash: slot or IMRET__IDX_EMPTY                                */
    size_t table_cap;      /* power of two                                                  */
    imret__idx_mih *mih;   /* NULL unless built and current                                 */
    uint8_t *map;          /* read-only mapping that vecs/codes point into, or NULL         */
    size_t map_size;
};

static size_t imret__idx_hash(uint64_t x) { /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (size_t)x;
}

static size_t imret__idx_find(const imret_index *idx, uint64_t id) {
    size_t mask = idx->table_cap - 1, h;
    if (!idx->table_cap) return IMRET__IDX_EMPTY;
    for (h = imret__idx_hash(id) & mask;; h = (h + 1) & mask) {
        size_t s = idx->table[h];
        if (s == IMRET__IDX_EMPTY) return IMRET__IDX_EMPTY;
        if (idx->ids[s] == id) return s;
    }
}

static void imret__idx_table_put(size_t *table, size_t cap, const uint64_t *ids, size_t slot) {
    size_t mask = cap - 1, h = imret__idx_hash(ids[slot]) & mask;
    while (table[h] != IMRET__IDX_EMPTY) h = (h + 1) & mask;
    table[h] = slot;
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones in the table. */
static void imret__idx_table_del(imret_index *idx, uint64_t id) {
    size_t mask = idx->table_cap - 1, h = imret__idx_hash(id) & mask, j;
    while (idx->table[h] != IMRET__IDX_EMPTY && idx->ids[idx->table[h]] != id) h = (h + 1) & mask;
    if (idx->table[h] == IMRET__IDX_EMPTY) return;
    for (j = (h + 1) & mask; idx->table[j] != IMRET__IDX_EMPTY; j = (j + 1) & mask) {
        size_t home = imret__idx_hash(idx->ids[idx->table[j]]) & mask;
        /* move j back to h when its home is not cyclically in (h, j] */
        if ((j > h && (home <= h || home > j)) || (j < h && (home <= h && home > j))) {
            idx->table[h] = idx->table[j];
            h = j;
        }
    }
    idx->table[h] = IMRET__IDX_EMPTY;
}

/* Make room for `need` live entries in the table (load <= 1/2); rebuilds from live slots. */
static int imret__idx_table_reserve(imret_index *idx, size_t need) {
    size_t cap = idx->table_cap ? idx->table_cap : 16, s, *t;
    while (cap / 2 < need) {
        if (cap > SIZE_MAX / 4 / sizeof(size_t)) return 0;
        cap *= 2;
    }
    if (cap == idx->table_cap) return 1;
    t = (size_t *)imret__calloc(cap, sizeof(size_t));
    if (!t) return 0;
    memset(t, 0xff, cap * sizeof(size_t));
    for (s = 0; s < idx->n; s++)
        if (!idx->dead[s]) imret__idx_table_put(t, cap, idx->ids, s);
    IMRET_FREE(idx->table);
    idx->table = t;
    idx->table_cap = cap;
    return 1;
}

static size_t imret__idx_vec_bytes(const imret_index *idx) {
    return idx->dim * (idx->storage == IMRET_INDEX_FP16 ? 2u : 4u);
}

static void *imret__idx_realloc(void *p, size_t count, size_t size) {
    size_t n;
    if (!imret__mul(count, size, &n)) return NULL;
    return IMRET_REALLOC(p, n ? n : 1);
}

/* Grow the slot arrays to hold `need` slots. Each array is reallocated on its own; a failure
   leaves the ones already grown larger, which is harmless (cap is raised only at the end). */
static int imret__idx_reserve(imret_index *idx, size_t need) {
    size_t cap = idx->cap ? idx->cap : 64;
    void *p;
    if (need <= idx->cap) return 1;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return 0;
        cap *= 2;
    }
#define IMRET__IDX_GROW(field, size)                                 \
    do {                                                              \
        p = imret__idx_realloc(idx->field, cap, size);                \
        if (!p) return 0;                                             \
        *(void **)&idx->field = p;                                    \
    } while (0)
    IMRET__IDX_GROW(ids, sizeof(uint64_t));
    IMRET__IDX_GROW(dead, 1);
    IMRET__IDX_GROW(label_off, sizeof(size_t));
    IMRET__IDX_GROW(label_len, sizeof(uint32_t));
    if (idx->dim) IMRET__IDX_GROW(vecs, imret__idx_vec_bytes(idx));
    if (idx->bits) IMRET__IDX_GROW(codes, idx->words * sizeof(uint64_t));
#undef IMRET__IDX_GROW
    idx->cap = cap;
    return 1;
}

static void imret__idx_mih_free(imret__idx_mih *m) {
    if (!m) return;
    IMRET_FREE(m->sbit);
    IMRET_FREE(m->tab);
    IMRET_FREE(m);
}
static void imret__idx_changed(imret_index *idx) {
    imret__idx_mih_free(idx->mih);
    idx->mih = NULL;
}

/* float -> IEEE half, round to nearest even (F. Giesen's float_to_half_fast3_rtne). */
static uint16_t imret__idx_f2h(float f) {
    uint32_t u, sign;
    uint16_t o;
    memcpy(&u, &f, 4);
    sign = u & 0x80000000u;
    u ^= sign;
    if (u >= 0x47800000u) { /* >= 65536: inf (or nan) */
        o = (uint16_t)(u > 0x7f800000u ? 0x7e00 : 0x7c00);
    } else if (u < 0x38800000u) { /* subnormal half: let the FPU round via a magic add */
        float g, magic;
        uint32_t mu = 0x3f000000u, gu; /* 0.5f = 2^-1: ((127 - 15) + (23 - 10) + 1) << 23 */
        memcpy(&magic, &mu, 4);
        memcpy(&g, &u, 4);
        g += magic;
        memcpy(&gu, &g, 4);
        o = (uint16_t)(gu - mu);
    } else {
        uint32_t mant_odd = (u >> 13) & 1;
        u += 0xc8000fffu; /* ((15 - 127) << 23) + 0xfff, modulo 2^32 */
        u += mant_odd;
        o = (uint16_t)(u >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF) without NUL bytes. */
static int imret__idx_utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len, j;
        uint32_t cp;
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (n - i < len) return 0;
        for (j = 1; j < len; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += len;
    }
    return 1;
}

static imret_result imret__idx_check_label(const char *label, size_t *len, const char *what) {
    *len = 0;
    if (!label) return IMRET_OK;
    *len = strlen(label);
    if (*len > IMRET_INDEX_MAX_LABEL)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: label is %lu bytes, over the limit of %u", what,
                           (unsigned long)*len, IMRET_INDEX_MAX_LABEL);
    if (!imret__idx_utf8_ok((const uint8_t *)label, *len))
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: label is not valid UTF-8", what);
    return IMRET_OK;
}

static imret_result imret__idx_check_vector(const imret_index *idx, const float *v, const char *what) {
    size_t d;
    for (d = 0; d < idx->dim; d++)
        if (!(v[d] - v[d] == 0.0f))
            return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: vector element %lu is not finite", what, (unsigned long)d);
    return IMRET_OK;
}

/* Scale factor that L2-normalises v (sum of squares in double); 1 when not normalising,
   0-vectors keep factor 1. */
static double imret__idx_inv_norm(const float *v, size_t dim, int normalize) {
    double ss = 0.0;
    size_t d;
    if (!normalize) return 1.0;
    for (d = 0; d < dim; d++) ss += (double)v[d] * v[d];
    return ss > 0.0 ? 1.0 / sqrt(ss) : 1.0;
}

/* double -> nearest half (ties to even), without the double rounding of double -> float ->
   half: the float path's answer is corrected against its two neighbours. */
static uint16_t imret__idx_d2h(double x) {
    uint16_t h = imret__idx_f2h((float)x), best = h;
    double bd = fabs((double)imret__half_to_float(h) - x);
    int k;
    if ((h & 0x7c00) == 0x7c00) return h;
    for (k = -1; k <= 1; k += 2) {
        uint16_t c = (uint16_t)(h + k);
        double dd;
        if ((c & 0x7fff) == 0x7c00 || (c & 0x8000) != (h & 0x8000) || (h & 0x7fff) == 0) continue;
        dd = fabs((double)imret__half_to_float(c) - x);
        if (dd < bd || (dd == bd && !(c & 1))) {
            best = c;
            bd = dd;
        }
    }
    return best;
}

static void imret__idx_store_vector(imret_index *idx, size_t slot, const float *v) {
    double inv = imret__idx_inv_norm(v, idx->dim, idx->normalize);
    size_t d;
    if (idx->storage == IMRET_INDEX_FP16) {
        uint16_t *dst = (uint16_t *)idx->vecs + slot * idx->dim;
        for (d = 0; d < idx->dim; d++) dst[d] = imret__idx_d2h(v[d] * inv);
    } else {
        float *dst = (float *)idx->vecs + slot * idx->dim;
        for (d = 0; d < idx->dim; d++) dst[d] = (float)(v[d] * inv);
    }
}

static uint64_t imret__idx_last_mask(size_t bits) {
    return bits % 64 ? (((uint64_t)1 << (bits % 64)) - 1) : ~(uint64_t)0;
}

static void imret__idx_store_code(imret_index *idx, size_t slot, const uint64_t *c) {
    uint64_t *dst = idx->codes + slot * idx->words;
    memcpy(dst, c, idx->words * sizeof(uint64_t));
    dst[idx->words - 1] &= imret__idx_last_mask(idx->bits);
}

/* Append label bytes + NUL to the blob; *off receives the offset (0 for no label). */
static int imret__idx_put_label(imret_index *idx, const char *label, size_t len, size_t *off) {
    size_t need;
    *off = 0;
    if (!len) return 1;
    if (!imret__add(idx->labels_len, len + 1, &need)) return 0;
    if (need > idx->labels_cap) {
        size_t cap = idx->labels_cap ? idx->labels_cap : 256;
        char *p;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) return 0;
            cap *= 2;
        }
        p = (char *)IMRET_REALLOC(idx->labels, cap);
        if (!p) return 0;
        idx->labels = p;
        idx->labels_cap = cap;
    }
    memcpy(idx->labels + idx->labels_len, label, len);
    idx->labels[idx->labels_len + len] = 0;
    *off = idx->labels_len;
    idx->labels_len = need;
    return 1;
}

IMRET_DEF imret_index_config imret_index_config_init(void) {
    imret_index_config c;
    memset(&c, 0, sizeof c);
    c.storage = IMRET_INDEX_FP32;
    c.normalize = 1;
    return c;
}

static imret_result imret__idx_check_config(const imret_index_config *cfg, const char *what) {
    size_t dlen;
    if (!cfg->dim && !cfg->bits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: dim and bits are both 0", what);
    if (cfg->dim > IMRET_INDEX_MAX_DIM)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: dim %lu over the limit of %u", what, (unsigned long)cfg->dim,
                           IMRET_INDEX_MAX_DIM);
    if (cfg->bits > IMRET_INDEX_MAX_BITS)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: bits %lu over the limit of %u", what, (unsigned long)cfg->bits,
                           IMRET_INDEX_MAX_BITS);
    if (cfg->storage != IMRET_INDEX_FP32 && cfg->storage != IMRET_INDEX_FP16)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: storage %d is neither FP32 nor FP16", what, (int)cfg->storage);
    if (cfg->normalize != 0 && cfg->normalize != 1)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: normalize must be 0 or 1", what);
    dlen = cfg->descriptor ? strlen(cfg->descriptor) : 0;
    if (dlen > IMRET_INDEX_MAX_DESCRIPTOR)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: descriptor text is %lu bytes, over the limit of %u", what,
                           (unsigned long)dlen, IMRET_INDEX_MAX_DESCRIPTOR);
    if (!imret__idx_utf8_ok((const uint8_t *)(cfg->descriptor ? cfg->descriptor : ""), dlen))
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: descriptor text is not valid UTF-8", what);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_create(const imret_index_config *cfg, imret_index **out) {
    imret_index *idx;
    imret_result rc;
    size_t dlen;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_create: out is NULL");
    *out = NULL;
    if (!cfg) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_create: cfg is NULL");
    if ((rc = imret__idx_check_config(cfg, "imret_index_create")) != IMRET_OK) return rc;
    idx = (imret_index *)imret__calloc(1, sizeof *idx);
    if (!idx) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_index_create: out of memory");
    idx->dim = cfg->dim;
    idx->storage = cfg->storage;
    idx->bits = cfg->bits;
    idx->words = (cfg->bits + 63) / 64;
    idx->normalize = cfg->normalize;
    idx->fingerprint = cfg->model_fingerprint;
    dlen = cfg->descriptor ? strlen(cfg->descriptor) : 0;
    idx->descriptor = (char *)imret__malloc(dlen + 1);
    idx->labels = (char *)imret__malloc(256);
    if (!idx->descriptor || !idx->labels || !imret__idx_reserve(idx, 64) || !imret__idx_table_reserve(idx, 32)) {
        imret_index_destroy(idx);
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_index_create: out of memory");
    }
    if (dlen) memcpy(idx->descriptor, cfg->descriptor, dlen);
    idx->descriptor[dlen] = 0;
    idx->labels[0] = 0;
    idx->labels_len = 1;
    idx->labels_cap = 256;
    *out = idx;
    return IMRET_OK;
}

IMRET_DEF void imret_index_destroy(imret_index *idx) {
    if (!idx) return;
    imret__idx_mih_free(idx->mih);
    IMRET_FREE(idx->descriptor);
    IMRET_FREE(idx->ids);
    IMRET_FREE(idx->dead);
    IMRET_FREE(idx->label_off);
    IMRET_FREE(idx->label_len);
    IMRET_FREE(idx->labels);
    if (idx->map) {
#if !defined(IMRET_NO_STDIO)
        imret__release_file(idx->map, idx->map_size, 1);
#endif
    } else {
        IMRET_FREE(idx->vecs);
        IMRET_FREE(idx->codes);
    }
    IMRET_FREE(idx->table);
    IMRET_FREE(idx);
}

IMRET_DEF imret_result imret_index_get_config(const imret_index *idx, imret_index_config *cfg) {
    if (!idx || !cfg) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_get_config: NULL argument");
    cfg->dim = idx->dim;
    cfg->storage = idx->storage;
    cfg->bits = idx->bits;
    cfg->normalize = idx->normalize;
    cfg->descriptor = idx->descriptor;
    cfg->model_fingerprint = idx->fingerprint;
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_check_compatible(const imret_index *idx, const imret_index_config *e) {
    const char *d;
    if (!idx || !e) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_check_compatible: NULL argument");
    d = e->descriptor ? e->descriptor : "";
    if (e->dim != idx->dim)
        return imret__fail(IMRET_ERROR_MISMATCH, "index: vectors have %lu dimensions, expected %lu", (unsigned long)idx->dim,
                           (unsigned long)e->dim);
    if (e->bits != idx->bits)
        return imret__fail(IMRET_ERROR_MISMATCH, "index: codes have %lu bits, expected %lu", (unsigned long)idx->bits,
                           (unsigned long)e->bits);
    if (strcmp(d, idx->descriptor) != 0)
        return imret__fail(IMRET_ERROR_MISMATCH, "index: descriptor setting is '%.100s', expected '%.100s'", idx->descriptor, d);
    if (e->model_fingerprint != idx->fingerprint)
        return imret__fail(IMRET_ERROR_MISMATCH, "index: model fingerprint is %016llx, expected %016llx",
                           (unsigned long long)idx->fingerprint, (unsigned long long)e->model_fingerprint);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_add_batch(imret_index *idx, size_t n, const uint64_t *ids, const char *const *labels,
                                             const float *vectors, const uint64_t *codes) {
    size_t i, need = 0, base, lsave;
    imret_result rc = IMRET_OK;
    if (idx && idx->map) return imret__fail(IMRET_ERROR_UNSUPPORTED, "%s: the index is a read-only mapping (imret_index_map_file)", "imret_index_add");
    if (!idx || (n && !ids)) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_add: NULL index or ids");
    if (n && idx->dim && !vectors)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_add: the index holds %lu-d vectors but vectors is NULL",
                           (unsigned long)idx->dim);
    if (n && idx->bits && !codes)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_add: the index holds %lu-bit codes but codes is NULL",
                           (unsigned long)idx->bits);
    if (!n) return IMRET_OK;
    /* validate values before touching the index */
    for (i = 0; i < n; i++) {
        size_t len;
        char what[64];
        snprintf(what, sizeof what, "imret_index_add: item %lu (id %llu)", (unsigned long)i, (unsigned long long)ids[i]);
        if ((rc = imret__idx_check_label(labels ? labels[i] : NULL, &len, what)) != IMRET_OK) return rc;
        if (idx->dim && (rc = imret__idx_check_vector(idx, vectors + i * idx->dim, what)) != IMRET_OK) return rc;
    }
    if (!imret__add(idx->n, n, &need) || !imret__idx_reserve(idx, need) || !imret__idx_table_reserve(idx, idx->live + n))
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_index_add: out of memory for %lu entries", (unsigned long)need);
    base = idx->n;
    lsave = idx->labels_len;
    for (i = 0; i < n; i++) {
        size_t slot = base + i, len = labels && labels[i] ? strlen(labels[i]) : 0;
        if (imret__idx_find(idx, ids[i]) != IMRET__IDX_EMPTY) {
            rc = imret__fail(IMRET_ERROR_DUPLICATE, "imret_index_add: id %llu (item %lu) is already in the index",
                             (unsigned long long)ids[i], (unsigned long)i);
            break;
        }
        idx->ids[slot] = ids[i];
        idx->dead[slot] = 0;
        if (!imret__idx_put_label(idx, labels ? labels[i] : NULL, len, &idx->label_off[slot])) {
            rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_index_add: out of memory for labels");
            break;
        }
        idx->label_len[slot] = (uint32_t)len;
        if (idx->dim) imret__idx_store_vector(idx, slot, vectors + i * idx->dim);
        if (idx->bits) imret__idx_store_code(idx, slot, codes + i * idx->words);
        imret__idx_table_put(idx->table, idx->table_cap, idx->ids, slot);
        idx->n = slot + 1;
    }
    if (rc != IMRET_OK) { /* roll back the items already inserted */
        while (idx->n > base) {
            idx->n--;
            imret__idx_table_del(idx, idx->ids[idx->n]);
        }
        idx->labels_len = lsave;
        return rc;
    }
    idx->live += n;
    imret__idx_changed(idx);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_add(imret_index *idx, uint64_t id, const char *label, const float *vector,
                                       const uint64_t *code) {
    return imret_index_add_batch(idx, 1, &id, &label, vector, code);
}

IMRET_DEF imret_result imret_index_update(imret_index *idx, uint64_t id, const char *label, const float *vector,
                                          const uint64_t *code) {
    size_t slot, len = 0;
    imret_result rc;
    if (idx && idx->map) return imret__fail(IMRET_ERROR_UNSUPPORTED, "%s: the index is a read-only mapping (imret_index_map_file)", "imret_index_update");
    if (!idx) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_update: index is NULL");
    slot = imret__idx_find(idx, id);
    if (slot == IMRET__IDX_EMPTY) return imret__fail(IMRET_ERROR_NOT_FOUND, "imret_index_update: id %llu is not in the index", (unsigned long long)id);
    if ((rc = imret__idx_check_label(label, &len, "imret_index_update")) != IMRET_OK) return rc;
    if (vector && !idx->dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_update: the index holds no vectors");
    if (code && !idx->bits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_update: the index holds no codes");
    if (vector && (rc = imret__idx_check_vector(idx, vector, "imret_index_update")) != IMRET_OK) return rc;
    if (label) {
        size_t off;
        if (!imret__idx_put_label(idx, label, len, &off))
            return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_index_update: out of memory for the label");
        idx->label_off[slot] = off;
        idx->label_len[slot] = (uint32_t)len;
    }
    if (vector) imret__idx_store_vector(idx, slot, vector);
    if (code) imret__idx_store_code(idx, slot, code);
    if (vector || code) imret__idx_changed(idx);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_remove(imret_index *idx, uint64_t id) {
    size_t slot;
    if (idx && idx->map) return imret__fail(IMRET_ERROR_UNSUPPORTED, "%s: the index is a read-only mapping (imret_index_map_file)", "imret_index_remove");
    if (!idx) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_remove: index is NULL");
    slot = imret__idx_find(idx, id);
    if (slot == IMRET__IDX_EMPTY) return imret__fail(IMRET_ERROR_NOT_FOUND, "imret_index_remove: id %llu is not in the index", (unsigned long long)id);
    imret__idx_table_del(idx, id);
    idx->dead[slot] = 1;
    idx->live--;
    imret__idx_changed(idx);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_compact(imret_index *idx) {
    size_t s, w = 0, vb, lbytes = 1, i;
    char *nl;
    if (idx && idx->map) return imret__fail(IMRET_ERROR_UNSUPPORTED, "%s: the index is a read-only mapping (imret_index_map_file)", "imret_index_compact");
    if (!idx) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_compact: index is NULL");
    for (s = 0; s < idx->n; s++)
        if (!idx->dead[s] && idx->label_len[s]) lbytes += idx->label_len[s] + 1;
    nl = (char *)imret__malloc(lbytes);
    if (!nl) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_index_compact: out of memory");
    nl[0] = 0;
    lbytes = 1;
    vb = imret__idx_vec_bytes(idx);
    for (s = 0; s < idx->n; s++) {
        if (idx->dead[s]) continue;
        idx->ids[w] = idx->ids[s];
        idx->dead[w] = 0;
        idx->label_len[w] = idx->label_len[s];
        if (idx->label_len[s]) {
            memcpy(nl + lbytes, idx->labels + idx->label_off[s], (size_t)idx->label_len[s] + 1);
            idx->label_off[w] = lbytes;
            lbytes += idx->label_len[s] + 1;
        } else {
            idx->label_off[w] = 0;
        }
        if (w != s) {
            if (idx->dim) memmove((uint8_t *)idx->vecs + w * vb, (uint8_t *)idx->vecs + s * vb, vb);
            if (idx->bits) memmove(idx->codes + w * idx->words, idx->codes + s * idx->words, idx->words * sizeof(uint64_t));
        }
        w++;
    }
    IMRET_FREE(idx->labels);
    idx->labels = nl;
    idx->labels_len = idx->labels_cap = lbytes;
    idx->n = w;
    for (i = 0; i < idx->table_cap; i++) idx->table[i] = IMRET__IDX_EMPTY;
    for (s = 0; s < idx->n; s++) imret__idx_table_put(idx->table, idx->table_cap, idx->ids, s);
    imret__idx_changed(idx);
    return IMRET_OK;
}

IMRET_DEF size_t imret_index_count(const imret_index *idx) { return idx ? idx->live : 0; }
IMRET_DEF size_t imret_index_tombstones(const imret_index *idx) { return idx ? idx->n - idx->live : 0; }

static void imret__idx_entry(const imret_index *idx, size_t slot, imret_index_entry *e) {
    e->id = idx->ids[slot];
    e->label = idx->labels + idx->label_off[slot];
    e->label_len = idx->label_len[slot];
    e->vector = idx->dim ? (const void *)((const uint8_t *)idx->vecs + slot * imret__idx_vec_bytes(idx)) : NULL;
    e->code = idx->bits ? idx->codes + slot * idx->words : NULL;
}

IMRET_DEF imret_result imret_index_get(const imret_index *idx, uint64_t id, imret_index_entry *entry) {
    size_t slot;
    if (!idx || !entry) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_get: NULL argument");
    slot = imret__idx_find(idx, id);
    if (slot == IMRET__IDX_EMPTY) return imret__fail(IMRET_ERROR_NOT_FOUND, "imret_index_get: id %llu is not in the index", (unsigned long long)id);
    imret__idx_entry(idx, slot, entry);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_get_vector(const imret_index *idx, uint64_t id, float *out) {
    size_t slot, d;
    if (!idx || !out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_get_vector: NULL argument");
    if (!idx->dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_get_vector: the index holds no vectors");
    slot = imret__idx_find(idx, id);
    if (slot == IMRET__IDX_EMPTY) return imret__fail(IMRET_ERROR_NOT_FOUND, "imret_index_get_vector: id %llu is not in the index", (unsigned long long)id);
    if (idx->storage == IMRET_INDEX_FP16) {
        const uint16_t *h = (const uint16_t *)idx->vecs + slot * idx->dim;
        for (d = 0; d < idx->dim; d++) out[d] = imret__half_to_float(h[d]);
    } else {
        memcpy(out, (const float *)idx->vecs + slot * idx->dim, idx->dim * sizeof(float));
    }
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_next(const imret_index *idx, size_t *cursor, imret_index_entry *entry) {
    size_t s;
    if (!idx || !cursor || !entry) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_next: NULL argument");
    for (s = *cursor; s < idx->n && idx->dead[s]; s++) {
    }
    if (s >= idx->n) {
        *cursor = idx->n;
        return IMRET_ERROR_NOT_FOUND;
    }
    imret__idx_entry(idx, s, entry);
    *cursor = s + 1;
    return IMRET_OK;
}

/* ---- .imri file format (version 1), all integers little-endian ----------------------
   offset size
      0     8  magic "\x89IMRETI\n"
      8     4  version = 1
     12     4  header bytes = 96
     16     8  file bytes (the whole file)
     24     4  flags: bit 0 = vectors were L2-normalised on add (config.normalize); others 0
     28     4  storage: 0 = fp32, 1 = fp16
     32     8  dim (0 = no vectors)
     40     8  bits (0 = no codes)
     48     8  model fingerprint
     56     8  count (entries)
     64     8  descriptor bytes
     72     8  label bytes (sum of label lengths)
     80     4  CRC-32 (zlib) of bytes [96, file bytes)
     84     8  reserved, 0
     92     4  CRC-32 of bytes [0, 92)
   then these sections, each starting at a multiple of 8, padded with zero bytes:
     descriptor text (UTF-8, no NUL)   ids u64[count]   label lengths u32[count]
     labels (concatenated UTF-8, no NUL)   vectors f32/f16 [count][dim]   codes u64[count][words]
   Entries are unique by id; labels <= IMRET_INDEX_MAX_LABEL bytes; fp32 values finite,
   fp16 values not inf/nan; code bits beyond `bits` are 0. Tombstones are never written. */
#define IMRET__IDX_MAGIC "\x89IMRETI\n"
#define IMRET__IDX_VERSION 1u
#define IMRET__IDX_HEADER 96u

typedef struct imret__idx_layout {
    size_t desc, ids, lens, labels, vecs, codes, end; /* section offsets, file bytes */
} imret__idx_layout;

static size_t imret__idx_pad8(size_t v) { return (v + 7) & ~(size_t)7; }

/* Section offsets for the given counts; 0 on overflow. */
static int imret__idx_layout_of(size_t count, size_t dlen, size_t lbytes, size_t dim, size_t vbytes, size_t words,
                                imret__idx_layout *L) {
    size_t t;
    L->desc = IMRET__IDX_HEADER;
    if (dlen > SIZE_MAX / 2) return 0;
    L->ids = imret__idx_pad8(L->desc + dlen);
    if (!imret__mul(count, 8, &t) || !imret__add(L->ids, t, &L->lens)) return 0;
    if (!imret__mul(count, 4, &t) || !imret__add(L->lens, t, &t) || t > SIZE_MAX - 8) return 0;
    L->labels = imret__idx_pad8(t);
    if (!imret__add(L->labels, lbytes, &t) || t > SIZE_MAX - 8) return 0;
    L->vecs = imret__idx_pad8(t);
    if (!imret__mul4(count, dim, vbytes, 1, &t) || !imret__add(L->vecs, t, &t) || t > SIZE_MAX - 8) return 0;
    L->codes = imret__idx_pad8(t);
    if (!imret__mul4(count, words, 8, 1, &t) || !imret__add(L->codes, t, &L->end)) return 0;
    return 1;
}

static void imret__idx_wrf(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    imret__wr32(p, u);
}

/* Serialise into buf (exactly L->end bytes, zeroed by the caller). */
static void imret__idx_serialize(const imret_index *idx, const imret__idx_layout *L, size_t lbytes, uint8_t *buf) {
    size_t s, e = 0, lpos = L->labels, d, w, dlen = strlen(idx->descriptor);
    memcpy(buf, IMRET__IDX_MAGIC, 8);
    imret__wr32(buf + 8, IMRET__IDX_VERSION);
    imret__wr32(buf + 12, IMRET__IDX_HEADER);
    imret__wr64(buf + 16, (uint64_t)L->end);
    imret__wr32(buf + 24, idx->normalize ? 1u : 0u);
    imret__wr32(buf + 28, (uint32_t)idx->storage);
    imret__wr64(buf + 32, (uint64_t)idx->dim);
    imret__wr64(buf + 40, (uint64_t)idx->bits);
    imret__wr64(buf + 48, idx->fingerprint);
    imret__wr64(buf + 56, (uint64_t)idx->live);
    imret__wr64(buf + 64, (uint64_t)dlen);
    imret__wr64(buf + 72, (uint64_t)lbytes);
    memcpy(buf + L->desc, idx->descriptor, dlen);
    for (s = 0; s < idx->n; s++) {
        if (idx->dead[s]) continue;
        imret__wr64(buf + L->ids + 8 * e, idx->ids[s]);
        imret__wr32(buf + L->lens + 4 * e, idx->label_len[s]);
        memcpy(buf + lpos, idx->labels + idx->label_off[s], idx->label_len[s]);
        lpos += idx->label_len[s];
        if (idx->dim) {
            if (idx->storage == IMRET_INDEX_FP16) {
                const uint16_t *h = (const uint16_t *)idx->vecs + s * idx->dim;
                uint8_t *p = buf + L->vecs + e * idx->dim * 2;
                for (d = 0; d < idx->dim; d++) { p[2 * d] = (uint8_t)h[d]; p[2 * d + 1] = (uint8_t)(h[d] >> 8); }
            } else {
                const float *f = (const float *)idx->vecs + s * idx->dim;
                uint8_t *p = buf + L->vecs + e * idx->dim * 4;
                for (d = 0; d < idx->dim; d++) imret__idx_wrf(p + 4 * d, f[d]);
            }
        }
        for (w = 0; w < idx->words; w++) imret__wr64(buf + L->codes + 8 * (e * idx->words + w), idx->codes[s * idx->words + w]);
        e++;
    }
    imret__wr32(buf + 80, imret__crc32(0, buf + IMRET__IDX_HEADER, L->end - IMRET__IDX_HEADER));
    imret__wr32(buf + 92, imret__crc32(0, buf, 92));
}

static imret_result imret__idx_plan(const imret_index *idx, imret__idx_layout *L, size_t *lbytes) {
    size_t s;
    *lbytes = 0;
    for (s = 0; s < idx->n; s++)
        if (!idx->dead[s]) *lbytes += idx->label_len[s];
    if (!imret__idx_layout_of(idx->live, strlen(idx->descriptor), *lbytes, idx->dim, idx->storage == IMRET_INDEX_FP16 ? 2 : 4,
                              idx->words, L))
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "index save: size overflows");
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_save_memory(const imret_index *idx, void *buf, size_t cap, size_t *size) {
    imret__idx_layout L;
    size_t lbytes;
    imret_result rc;
    if (!idx || !size) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_save_memory: NULL argument");
    if ((rc = imret__idx_plan(idx, &L, &lbytes)) != IMRET_OK) return rc;
    *size = L.end;
    if (!buf || cap < L.end) return buf ? imret__fail(IMRET_ERROR_LIMIT, "imret_index_save_memory: buffer of %lu bytes, need %lu",
                                                      (unsigned long)cap, (unsigned long)L.end) : IMRET_OK;
    memset(buf, 0, L.end);
    imret__idx_serialize(idx, &L, lbytes, (uint8_t *)buf);
    return IMRET_OK;
}

#define IMRET__IDX_BAD(...) do { rc = imret__fail(IMRET_ERROR_FORMAT, __VA_ARGS__); goto fail; } while (0)

static int imret__idx_zero(const uint8_t *p, size_t a, size_t b) {
    for (; a < b; a++)
        if (p[a]) return 0;
    return 1;
}

/* borrow: vectors and codes stay in `data` (a read-only mapping owned by the index after
   success); needs a little-endian host and 8-aligned data. */
static imret_result imret__idx_load(const void *data, size_t size, const imret_index_config *expected, int borrow,
                                    imret_index **out) {
    const uint8_t *p = (const uint8_t *)data;
    imret_index_config cfg = imret_index_config_init();
    imret__idx_layout L;
    imret_index *idx = NULL;
    imret_result rc;
    uint64_t fbytes, dim, bits, count, dlen, lbytes, lsum = 0;
    uint32_t version, flags, storage, crc;
    size_t words, e, d, w;
    char *desc = NULL;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_load_memory: out is NULL");
    *out = NULL;
    if (!data && size) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_load_memory: data is NULL");
    if (size < IMRET__IDX_HEADER)
        return imret__fail(IMRET_ERROR_FORMAT, "index: %lu bytes, shorter than the %u-byte header", (unsigned long)size, IMRET__IDX_HEADER);
    if (memcmp(p, IMRET__IDX_MAGIC, 8) != 0) return imret__fail(IMRET_ERROR_FORMAT, "index: bad magic (not an .imri index file)");
    version = imret__rd32(p + 8);
    if (version != IMRET__IDX_VERSION)
        return imret__fail(IMRET_ERROR_VERSION, "index: file version %u, this build reads version %u", version, IMRET__IDX_VERSION);
    if ((crc = imret__crc32(0, p, 92)) != imret__rd32(p + 92))
        return imret__fail(IMRET_ERROR_CHECKSUM, "index: header CRC-32 is %08x, header says %08x (file corrupted)", crc, imret__rd32(p + 92));
    if (imret__rd32(p + 12) != IMRET__IDX_HEADER)
        return imret__fail(IMRET_ERROR_FORMAT, "index: header size %u, expected %u", imret__rd32(p + 12), IMRET__IDX_HEADER);
    fbytes = imret__rd64(p + 16);
    if (fbytes != (uint64_t)size)
        return imret__fail(IMRET_ERROR_FORMAT, "index: header says %llu bytes but there are %lu (truncated or padded)",
                           (unsigned long long)fbytes, (unsigned long)size);
    flags = imret__rd32(p + 24);
    storage = imret__rd32(p + 28);
    dim = imret__rd64(p + 32);
    bits = imret__rd64(p + 40);
    count = imret__rd64(p + 56);
    dlen = imret__rd64(p + 64);
    lbytes = imret__rd64(p + 72);
    if (flags & ~1u) return imret__fail(IMRET_ERROR_FORMAT, "index: unknown flags %08x", flags);
    if (storage > 1) return imret__fail(IMRET_ERROR_FORMAT, "index: storage %u is neither 0 (fp32) nor 1 (fp16)", storage);
    if (dim > IMRET_INDEX_MAX_DIM) return imret__fail(IMRET_ERROR_FORMAT, "index: dim %llu over the limit of %u", (unsigned long long)dim, IMRET_INDEX_MAX_DIM);
    if (bits > IMRET_INDEX_MAX_BITS) return imret__fail(IMRET_ERROR_FORMAT, "index: bits %llu over the limit of %u", (unsigned long long)bits, IMRET_INDEX_MAX_BITS);
    if (!dim && !bits) return imret__fail(IMRET_ERROR_FORMAT, "index: dim and bits are both 0");
    if (dlen > IMRET_INDEX_MAX_DESCRIPTOR) return imret__fail(IMRET_ERROR_FORMAT, "index: descriptor of %llu bytes", (unsigned long long)dlen);
    if (imret__rd64(p + 84) != 0) return imret__fail(IMRET_ERROR_FORMAT, "index: reserved header bytes are not 0");
    /* counts against the size before any arithmetic that could overflow */
    if (count > size / 8 || lbytes > size)
        return imret__fail(IMRET_ERROR_FORMAT, "index: %llu entries / %llu label bytes cannot fit in %lu bytes",
                           (unsigned long long)count, (unsigned long long)lbytes, (unsigned long)size);
    words = (size_t)(bits + 63) / 64;
    if (!imret__idx_layout_of((size_t)count, (size_t)dlen, (size_t)lbytes, (size_t)dim, storage ? 2 : 4, words, &L) || L.end != size)
        return imret__fail(IMRET_ERROR_FORMAT, "index: sections for %llu entries need %lu bytes, the file has %lu",
                           (unsigned long long)count, (unsigned long)L.end, (unsigned long)size);
    if ((crc = imret__crc32(0, p + IMRET__IDX_HEADER, size - IMRET__IDX_HEADER)) != imret__rd32(p + 80))
        return imret__fail(IMRET_ERROR_CHECKSUM, "index: data CRC-32 is %08x, header says %08x (file corrupted)", crc, imret__rd32(p + 80));
    if (!imret__idx_utf8_ok(p + L.desc, (size_t)dlen)) return imret__fail(IMRET_ERROR_FORMAT, "index: descriptor text is not UTF-8");
    if (!imret__idx_zero(p, L.desc + (size_t)dlen, L.ids) || !imret__idx_zero(p, L.labels + (size_t)lbytes, L.vecs) ||
        !imret__idx_zero(p, L.lens + 4 * (size_t)count, L.labels))
        return imret__fail(IMRET_ERROR_FORMAT, "index: non-zero padding bytes");
    if (!imret__idx_zero(p, L.vecs + (size_t)count * (size_t)dim * (storage ? 2 : 4), L.codes))
        return imret__fail(IMRET_ERROR_FORMAT, "index: non-zero padding bytes");
    desc = (char *)imret__malloc((size_t)dlen + 1);
    if (!desc) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "index: out of memory");
    memcpy(desc, p + L.desc, (size_t)dlen);
    desc[dlen] = 0;
    cfg.dim = (size_t)dim;
    cfg.bits = (size_t)bits;
    cfg.storage = storage ? IMRET_INDEX_FP16 : IMRET_INDEX_FP32;
    cfg.normalize = (int)(flags & 1);
    cfg.descriptor = desc;
    cfg.model_fingerprint = imret__rd64(p + 48);
    if ((rc = imret_index_create(&cfg, &idx)) != IMRET_OK) goto fail;
    if (expected && (rc = imret_index_check_compatible(idx, expected)) != IMRET_OK) goto fail;
    if (borrow) { /* no vector/code arrays: they will point into the mapping */
        IMRET_FREE(idx->vecs);
        IMRET_FREE(idx->codes);
        idx->vecs = NULL;
        idx->codes = NULL;
        idx->dim = idx->bits = 0; /* so that reserve grows only ids, flags and labels */
    }
    if (!imret__idx_reserve(idx, (size_t)count) || !imret__idx_table_reserve(idx, (size_t)count)) {
        idx->dim = (size_t)dim;
        idx->bits = (size_t)bits;
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "index: out of memory for %llu entries", (unsigned long long)count);
        goto fail;
    }
    idx->dim = (size_t)dim;
    idx->bits = (size_t)bits;
    if (borrow) { /* point into the mapping; the values are validated in place below */
        idx->vecs = dim ? (void *)(uintptr_t)(p + L.vecs) : NULL;
        idx->codes = words ? (uint64_t *)(uintptr_t)(p + L.codes) : NULL;
        idx->map = (uint8_t *)(uintptr_t)p;
        idx->map_size = size;
    }
    IMRET_FREE(idx->labels);
    idx->labels = (char *)imret__malloc((size_t)lbytes + (size_t)count + 1);
    if (!idx->labels) {
        idx->labels_cap = idx->labels_len = 0;
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "index: out of memory for labels");
        goto fail;
    }
    idx->labels[0] = 0;
    idx->labels_len = 1;
    idx->labels_cap = (size_t)lbytes + (size_t)count + 1;
    for (e = 0; e < count; e++) {
        uint32_t len = imret__rd32(p + L.lens + 4 * e);
        uint64_t id = imret__rd64(p + L.ids + 8 * e);
        if (len > IMRET_INDEX_MAX_LABEL || len > lbytes - lsum)
            IMRET__IDX_BAD("index: entry %lu: label length %u runs past the label section", (unsigned long)e, len);
        if (!imret__idx_utf8_ok(p + L.labels + lsum, len)) IMRET__IDX_BAD("index: entry %lu: label is not UTF-8", (unsigned long)e);
        if (imret__idx_find(idx, id) != IMRET__IDX_EMPTY) IMRET__IDX_BAD("index: entry %lu: duplicate id %llu", (unsigned long)e, (unsigned long long)id);
        idx->ids[e] = id;
        idx->dead[e] = 0;
        idx->label_len[e] = len;
        idx->label_off[e] = 0;
        if (len) {
            idx->label_off[e] = idx->labels_len;
            memcpy(idx->labels + idx->labels_len, p + L.labels + lsum, len);
            idx->labels[idx->labels_len + len] = 0;
            idx->labels_len += (size_t)len + 1;
        }
        lsum += len;
        if (borrow) {
            const uint8_t *q = p + L.vecs + e * dim * (storage ? 2 : 4);
            for (d = 0; d < dim; d++) {
                uint32_t u = storage ? (uint32_t)(q[2 * d] | q[2 * d + 1] << 8) << 13 & 0x0f800000u : imret__rd32(q + 4 * d) & 0x7f800000u;
                if (u == (storage ? 0x0f800000u : 0x7f800000u)) IMRET__IDX_BAD("index: entry %lu: vector element %lu is inf/nan", (unsigned long)e, (unsigned long)d);
            }
        } else if (dim && storage) {
            uint16_t *h = (uint16_t *)idx->vecs + e * dim;
            for (d = 0; d < dim; d++) {
                const uint8_t *q = p + L.vecs + 2 * (e * dim + d);
                h[d] = (uint16_t)(q[0] | q[1] << 8);
                if ((h[d] & 0x7c00) == 0x7c00) IMRET__IDX_BAD("index: entry %lu: vector element %lu is inf/nan", (unsigned long)e, (unsigned long)d);
            }
        } else if (dim) {
            float *f = (float *)idx->vecs + e * dim;
            for (d = 0; d < dim; d++) {
                uint32_t u = imret__rd32(p + L.vecs + 4 * (e * dim + d));
                memcpy(&f[d], &u, 4);
                if ((u & 0x7f800000u) == 0x7f800000u) IMRET__IDX_BAD("index: entry %lu: vector element %lu is inf/nan", (unsigned long)e, (unsigned long)d);
            }
        }
        if (!borrow)
            for (w = 0; w < words; w++) idx->codes[e * words + w] = imret__rd64(p + L.codes + 8 * (e * words + w));
        if (words && (idx->codes[e * words + words - 1] & ~imret__idx_last_mask((size_t)bits)))
            IMRET__IDX_BAD("index: entry %lu: code has bits set beyond bit %llu", (unsigned long)e, (unsigned long long)bits);
        imret__idx_table_put(idx->table, idx->table_cap, idx->ids, e);
        idx->n = idx->live = e + 1;
    }
    if (lsum != lbytes) IMRET__IDX_BAD("index: labels use %llu bytes, header says %llu", (unsigned long long)lsum, (unsigned long long)lbytes);
    IMRET_FREE(desc);
    *out = idx;
    return IMRET_OK;
fail:
    IMRET_FREE(desc);
    if (idx && idx->map) { /* the caller still owns the mapping on failure */
        idx->map = NULL;
        idx->vecs = NULL;
        idx->codes = NULL;
    }
    imret_index_destroy(idx);
    return rc;
}

IMRET_DEF imret_result imret_index_load_memory(const void *data, size_t size, const imret_index_config *expected,
                                               imret_index **out) {
    return imret__idx_load(data, size, expected, 0, out);
}

#ifndef IMRET_NO_STDIO
/* Crash-safe write: temporary file in the target's directory, fsync, rename, fsync of the
   directory. (Same protocol as the whitening/hash files; one helper once the parts merge.) */
static imret_result imret__idx_write_atomic(const char *path, const uint8_t *data, size_t size) {
    size_t plen = strlen(path);
    char *tmp = (char *)imret__malloc(plen + 48);
    imret_result rc = IMRET_OK;
#if IMRET__POSIX
    int fd = -1, attempt;
    size_t done = 0;
    if (!tmp) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "index save: out of memory");
    for (attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, plen + 48, "%s.tmp-%ld-%d", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        rc = imret__fail(IMRET_ERROR_IO, "index save: cannot create %s: %s", tmp, strerror(errno));
        IMRET_FREE(tmp);
        return rc;
    }
    while (done < size) {
        ssize_t r = write(fd, data + done, size - done > ((size_t)1 << 30) ? ((size_t)1 << 30) : size - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = imret__fail(IMRET_ERROR_IO, "index save: write error on %s: %s", tmp, r < 0 ? strerror(errno) : "no progress");
            break;
        }
        done += (size_t)r;
    }
    if (rc == IMRET_OK && fsync(fd) != 0) rc = imret__fail(IMRET_ERROR_IO, "index save: fsync of %s failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == IMRET_OK) rc = imret__fail(IMRET_ERROR_IO, "index save: close of %s failed: %s", tmp, strerror(errno));
    if (rc == IMRET_OK && rename(tmp, path) != 0)
        rc = imret__fail(IMRET_ERROR_IO, "index save: cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc != IMRET_OK) {
        unlink(tmp);
    } else { /* make the rename itself durable */
        char *slash = strrchr(tmp, '/');
        int dfd;
        if (slash) {
            if (slash == tmp) slash[1] = 0;
            else *slash = 0;
        }
        dfd = open(slash ? tmp : ".", O_RDONLY);
        if (dfd >= 0) {
            if (fsync(dfd) != 0 && errno != EINVAL) rc = imret__fail(IMRET_ERROR_IO, "index save: fsync of directory %s failed: %s", slash ? tmp : ".", strerror(errno));
            close(dfd);
        }
    }
#else
    FILE *f;
    if (!tmp) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "index save: out of memory");
    snprintf(tmp, plen + 48, "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (!f) rc = imret__fail(IMRET_ERROR_IO, "index save: cannot create %s", tmp);
    else {
        if (fwrite(data, 1, size, f) != size || fflush(f) != 0) rc = imret__fail(IMRET_ERROR_IO, "index save: write error on %s", tmp);
        if (fclose(f) != 0 && rc == IMRET_OK) rc = imret__fail(IMRET_ERROR_IO, "index save: close of %s failed", tmp);
        if (rc == IMRET_OK) {
            remove(path); /* rename() does not replace on every platform */
            if (rename(tmp, path) != 0) rc = imret__fail(IMRET_ERROR_IO, "index save: cannot rename %s to %s", tmp, path);
        }
        if (rc != IMRET_OK) remove(tmp);
    }
#endif
    IMRET_FREE(tmp);
    return rc;
}

IMRET_DEF imret_result imret_index_save_file(const imret_index *idx, const char *path) {
    imret__idx_layout L;
    size_t lbytes;
    uint8_t *buf;
    imret_result rc;
    if (!idx || !path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_save_file: NULL argument");
    if ((rc = imret__idx_plan(idx, &L, &lbytes)) != IMRET_OK) return rc;
    buf = (uint8_t *)imret__calloc(L.end, 1);
    if (!buf) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "index save: cannot allocate %lu bytes", (unsigned long)L.end);
    imret__idx_serialize(idx, &L, lbytes, buf);
    rc = imret__idx_write_atomic(path, buf, L.end);
    IMRET_FREE(buf);
    return rc;
}

IMRET_DEF imret_result imret_index_load_file(const char *path, const imret_index_config *expected, imret_index **out) {
    uint8_t *data;
    size_t size;
    int mapped = 1;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_load_file: out is NULL");
    *out = NULL;
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_load_file: path is NULL");
    if ((rc = imret__read_file(path, SIZE_MAX, "index", &data, &size, &mapped)) != IMRET_OK) return rc;
    rc = imret_index_load_memory(data, size, expected, out);
    imret__release_file(data, size, mapped);
    if (rc != IMRET_OK) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", imret_last_error());
        imret__fail(rc, "%s: %s", path, tmp);
    }
    return rc;
}

IMRET_DEF imret_result imret_index_map_file(const char *path, const imret_index_config *expected, imret_index **out) {
    uint8_t *data;
    size_t size;
    int mapped = 1;
    const uint16_t one = 1;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_map_file: out is NULL");
    *out = NULL;
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_map_file: path is NULL");
    if ((rc = imret__read_file(path, SIZE_MAX, "index", &data, &size, &mapped)) != IMRET_OK) return rc;
    if (!mapped || *(const uint8_t *)&one != 1 || ((uintptr_t)data & 7)) { /* no mapping possible: copy */
        rc = imret_index_load_memory(data, size, expected, out);
        imret__release_file(data, size, mapped);
    } else {
        rc = imret__idx_load(data, size, expected, 1, out);
        if (rc != IMRET_OK) imret__release_file(data, size, mapped);
    }
    if (rc != IMRET_OK) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", imret_last_error());
        imret__fail(rc, "%s: %s", path, tmp);
    }
    return rc;
}
#endif /* IMRET_NO_STDIO */

/* ======================================================================================
   [impl: search]
   Kernels compute a block of scores: out[q * ldo + r] for nq queries against `rows`
   consecutive stored rows, as dot products (fp32 or fp16 rows) or Hamming distances. Every
   kernel computes each (query, row) pair the same way whatever the tile it falls in, so a
   score does not depend on the batch size, the block split or the thread count. Selection
   then works on keys where smaller is better (cosine: -similarity; Hamming: distance) with
   ties broken by the smaller id: a total order, so merging per-thread heaps is deterministic.
   ====================================================================================== */
typedef void (*imret__idx_dot_fn)(const float *Q, size_t nq, const void *X, size_t rows, size_t dim, float *out, size_t ldo);
typedef void (*imret__idx_ham_fn)(const uint64_t *Q, size_t nq, const uint64_t *X, size_t rows, size_t words, float *out,
                                  size_t ldo);

/* ---- scalar oracle ---- */
static void imret__idx_dot_f32_scalar(const float *Q, size_t nq, const void *Xv, size_t rows, size_t dim, float *out, size_t ldo) {
    const float *X = (const float *)Xv;
    size_t q, r, d;
    for (q = 0; q < nq; q++)
        for (r = 0; r < rows; r++) {
            float s = 0.0f;
            for (d = 0; d < dim; d++) s += Q[q * dim + d] * X[r * dim + d];
            out[q * ldo + r] = s;
        }
}
static void imret__idx_dot_f16_scalar(const float *Q, size_t nq, const void *Xv, size_t rows, size_t dim, float *out, size_t ldo) {
    const uint16_t *X = (const uint16_t *)Xv;
    size_t q, r, d;
    for (q = 0; q < nq; q++)
        for (r = 0; r < rows; r++) {
            float s = 0.0f;
            for (d = 0; d < dim; d++) s += Q[q * dim + d] * imret__half_to_float(X[r * dim + d]);
            out[q * ldo + r] = s;
        }
}
static unsigned imret__idx_popcount(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (unsigned)((x * 0x0101010101010101ull) >> 56);
}
static void imret__idx_ham_scalar(const uint64_t *Q, size_t nq, const uint64_t *X, size_t rows, size_t words, float *out, size_t ldo) {
    size_t q, r, w;
    for (q = 0; q < nq; q++)
        for (r = 0; r < rows; r++) {
            unsigned d = 0;
            for (w = 0; w < words; w++) d += imret__idx_popcount(Q[q * words + w] ^ X[r * words + w]);
            out[q * ldo + r] = (float)d;
        }
}

#if IMRET__X86
/* GCC 12's own intrinsic headers trip -Wmaybe-uninitialized (their __Y = __Y idiom in
   _mm512_cvtepi64_epi32 and friends) when optimising C++: silence it for the kernels only. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define IMRET__IDX_AVX2 __attribute__((target("avx2,fma,f16c,popcnt")))
#define IMRET__IDX_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define IMRET__IDX_AVX512P __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,popcnt")))

/* ---- AVX-512 dot products: 4 queries x 4 rows register tiles, one 16-lane accumulator per
   pair (dims d, d+16, ... in lane d % 16, masked tail), reduced in a fixed order. ---- */
#define IMRET__IDX_F4(u, a0, a1, a2, a3)       \
    a0 = _mm512_fmadd_ps(u, v0, a0);           \
    a1 = _mm512_fmadd_ps(u, v1, a1);           \
    a2 = _mm512_fmadd_ps(u, v2, a2);           \
    a3 = _mm512_fmadd_ps(u, v3, a3)
#define IMRET__IDX_DOT512(NAME, T, LOAD, LOADT)                                                                          \
    IMRET__IDX_AVX512 static void NAME(const float *Q, size_t nq, const void *Xv, size_t rows, size_t dim, float *out,  \
                                       size_t ldo) {                                                                   \
        const T *X = (const T *)Xv;                                                                                     \
        size_t full = dim & ~(size_t)15, qi = 0, r, d;                                                                  \
        __mmask16 tm = (__mmask16)((1u << (dim & 15)) - 1);                                                             \
        for (; qi + 4 <= nq; qi += 4) {                                                                                 \
            const float *q0 = Q + qi * dim, *q1 = q0 + dim, *q2 = q1 + dim, *q3 = q2 + dim;                             \
            for (r = 0; r + 4 <= rows; r += 4) {                                                                        \
                const T *x0 = X + r * dim, *x1 = x0 + dim, *x2 = x1 + dim, *x3 = x2 + dim;                              \
                __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,     \
                       a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00; \
                __m512 v0, v1, v2, v3, u;                                                                               \
                for (d = 0; d < full; d += 16) {                                                                        \
                    v0 = LOAD(x0 + d); v1 = LOAD(x1 + d); v2 = LOAD(x2 + d); v3 = LOAD(x3 + d);                         \
                    u = _mm512_loadu_ps(q0 + d); IMRET__IDX_F4(u, a00, a01, a02, a03);                                  \
                    u = _mm512_loadu_ps(q1 + d); IMRET__IDX_F4(u, a10, a11, a12, a13);                                  \
                    u = _mm512_loadu_ps(q2 + d); IMRET__IDX_F4(u, a20, a21, a22, a23);                                  \
                    u = _mm512_loadu_ps(q3 + d); IMRET__IDX_F4(u, a30, a31, a32, a33);                                  \
                }                                                                                                       \
                if (tm) {                                                                                               \
                    v0 = LOADT(x0 + d); v1 = LOADT(x1 + d); v2 = LOADT(x2 + d); v3 = LOADT(x3 + d);                     \
                    u = _mm512_maskz_loadu_ps(tm, q0 + d); IMRET__IDX_F4(u, a00, a01, a02, a03);                        \
                    u = _mm512_maskz_loadu_ps(tm, q1 + d); IMRET__IDX_F4(u, a10, a11, a12, a13);                        \
                    u = _mm512_maskz_loadu_ps(tm, q2 + d); IMRET__IDX_F4(u, a20, a21, a22, a23);                        \
                    u = _mm512_maskz_loadu_ps(tm, q3 + d); IMRET__IDX_F4(u, a30, a31, a32, a33);                        \
                }                                                                                                       \
                out[(qi + 0) * ldo + r + 0] = _mm512_reduce_add_ps(a00); out[(qi + 0) * ldo + r + 1] = _mm512_reduce_add_ps(a01); \
                out[(qi + 0) * ldo + r + 2] = _mm512_reduce_add_ps(a02); out[(qi + 0) * ldo + r + 3] = _mm512_reduce_add_ps(a03); \
                out[(qi + 1) * ldo + r + 0] = _mm512_reduce_add_ps(a10); out[(qi + 1) * ldo + r + 1] = _mm512_reduce_add_ps(a11); \
                out[(qi + 1) * ldo + r + 2] = _mm512_reduce_add_ps(a12); out[(qi + 1) * ldo + r + 3] = _mm512_reduce_add_ps(a13); \
                out[(qi + 2) * ldo + r + 0] = _mm512_reduce_add_ps(a20); out[(qi + 2) * ldo + r + 1] = _mm512_reduce_add_ps(a21); \
                out[(qi + 2) * ldo + r + 2] = _mm512_reduce_add_ps(a22); out[(qi + 2) * ldo + r + 3] = _mm512_reduce_add_ps(a23); \
                out[(qi + 3) * ldo + r + 0] = _mm512_reduce_add_ps(a30); out[(qi + 3) * ldo + r + 1] = _mm512_reduce_add_ps(a31); \
                out[(qi + 3) * ldo + r + 2] = _mm512_reduce_add_ps(a32); out[(qi + 3) * ldo + r + 3] = _mm512_reduce_add_ps(a33); \
            }                                                                                                           \
            if (r < rows) NAME##_1(q0, 4, X + r * dim, rows - r, dim, out + qi * ldo + r, ldo, full, tm);               \
        }                                                                                                               \
        if (qi < nq) NAME##_1(Q + qi * dim, nq - qi, X, rows, dim, out + qi * ldo, ldo, full, tm);                      \
    }
/* one query at a time, 4 rows per step (the single-query scan), 1 row for the rest */
#define IMRET__IDX_DOT512_1(NAME, T, LOAD, LOADT)                                                                        \
    IMRET__IDX_AVX512 static void NAME##_1(const float *Q, size_t nq, const T *X, size_t rows, size_t dim, float *out,  \
                                           size_t ldo, size_t full, __mmask16 tm) {                                     \
        size_t qi, r, d;                                                                                                \
        for (qi = 0; qi < nq; qi++) {                                                                                   \
            const float *q0 = Q + qi * dim;                                                                             \
            for (r = 0; r + 4 <= rows; r += 4) {                                                                        \
                const T *x0 = X + r * dim, *x1 = x0 + dim, *x2 = x1 + dim, *x3 = x2 + dim;                              \
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, v0, v1, v2, v3, u;                          \
                for (d = 0; d < full; d += 16) {                                                                        \
                    v0 = LOAD(x0 + d); v1 = LOAD(x1 + d); v2 = LOAD(x2 + d); v3 = LOAD(x3 + d);                         \
                    u = _mm512_loadu_ps(q0 + d); IMRET__IDX_F4(u, a0, a1, a2, a3);                                      \
                }                                                                                                       \
                if (tm) {                                                                                               \
                    v0 = LOADT(x0 + d); v1 = LOADT(x1 + d); v2 = LOADT(x2 + d); v3 = LOADT(x3 + d);                     \
                    u = _mm512_maskz_loadu_ps(tm, q0 + d); IMRET__IDX_F4(u, a0, a1, a2, a3);                            \
                }                                                                                                       \
                out[qi * ldo + r] = _mm512_reduce_add_ps(a0); out[qi * ldo + r + 1] = _mm512_reduce_add_ps(a1);         \
                out[qi * ldo + r + 2] = _mm512_reduce_add_ps(a2); out[qi * ldo + r + 3] = _mm512_reduce_add_ps(a3);     \
            }                                                                                                           \
            for (; r < rows; r++) {                                                                                     \
                const T *x0 = X + r * dim;                                                                              \
                __m512 a0 = _mm512_setzero_ps();                                                                        \
                for (d = 0; d < full; d += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + d), LOAD(x0 + d), a0);         \
                if (tm) a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, q0 + d), LOADT(x0 + d), a0);                     \
                out[qi * ldo + r] = _mm512_reduce_add_ps(a0);                                                           \
            }                                                                                                           \
        }                                                                                                               \
    }
#define IMRET__IDX_L32(p) _mm512_loadu_ps(p)
#define IMRET__IDX_L32T(p) _mm512_maskz_loadu_ps(tm, p)
#define IMRET__IDX_L16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define IMRET__IDX_L16T(p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tm, (const void *)(p)))
IMRET__IDX_DOT512_1(imret__idx_dot_f32_avx512, float, IMRET__IDX_L32, IMRET__IDX_L32T)
IMRET__IDX_DOT512(imret__idx_dot_f32_avx512, float, IMRET__IDX_L32, IMRET__IDX_L32T)
IMRET__IDX_DOT512_1(imret__idx_dot_f16_avx512, uint16_t, IMRET__IDX_L16, IMRET__IDX_L16T)
IMRET__IDX_DOT512(imret__idx_dot_f16_avx512, uint16_t, IMRET__IDX_L16, IMRET__IDX_L16T)

/* ---- AVX2 dot products: 2 queries x 4 rows (16 ymm registers), 8-lane accumulators. ---- */
IMRET__IDX_AVX2 static float imret__idx_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
IMRET__IDX_AVX2 static __m256 imret__idx_h8t(const uint16_t *p, size_t n) { /* n < 8 halves, rest 0 */
    uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(t, p, n * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)t));
}
#define IMRET__IDX_G4(u, a0, a1, a2, a3)       \
    a0 = _mm256_fmadd_ps(u, v0, a0);           \
    a1 = _mm256_fmadd_ps(u, v1, a1);           \
    a2 = _mm256_fmadd_ps(u, v2, a2);           \
    a3 = _mm256_fmadd_ps(u, v3, a3)
#define IMRET__IDX_DOT256(NAME, T, LOAD, LOADT)                                                                          \
    IMRET__IDX_AVX2 static void NAME(const float *Q, size_t nq, const void *Xv, size_t rows, size_t dim, float *out,    \
                                     size_t ldo) {                                                                     \
        const T *X = (const T *)Xv;                                                                                     \
        size_t full = dim & ~(size_t)7, tail = dim & 7, qi, r, d, l;                                                    \
        int32_t mk[8];                                                                                                  \
        __m256i tm;                                                                                                     \
        for (l = 0; l < 8; l++) mk[l] = l < tail ? -1 : 0;                                                              \
        tm = _mm256_loadu_si256((const __m256i *)(const void *)mk);                                                     \
        for (qi = 0; qi < nq; qi += 2) {                                                                                \
            const float *q0 = Q + qi * dim, *q1 = qi + 1 < nq ? q0 + dim : q0;                                          \
            for (r = 0; r < rows; r += 4) {                                                                             \
                size_t nr = rows - r < 4 ? rows - r : 4;                                                                \
                const T *x0 = X + r * dim, *x1 = nr > 1 ? x0 + dim : x0, *x2 = nr > 2 ? x0 + 2 * dim : x0,              \
                        *x3 = nr > 3 ? x0 + 3 * dim : x0;                                                               \
                __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,     \
                       a13 = a00, v0, v1, v2, v3, u;                                                                    \
                float s[8];                                                                                             \
                for (d = 0; d < full; d += 8) {                                                                         \
                    v0 = LOAD(x0 + d); v1 = LOAD(x1 + d); v2 = LOAD(x2 + d); v3 = LOAD(x3 + d);                         \
                    u = _mm256_loadu_ps(q0 + d); IMRET__IDX_G4(u, a00, a01, a02, a03);                                  \
                    u = _mm256_loadu_ps(q1 + d); IMRET__IDX_G4(u, a10, a11, a12, a13);                                  \
                }                                                                                                       \
                if (tail) {                                                                                             \
                    v0 = LOADT(x0 + d); v1 = LOADT(x1 + d); v2 = LOADT(x2 + d); v3 = LOADT(x3 + d);                     \
                    u = _mm256_maskload_ps(q0 + d, tm); IMRET__IDX_G4(u, a00, a01, a02, a03);                           \
                    u = _mm256_maskload_ps(q1 + d, tm); IMRET__IDX_G4(u, a10, a11, a12, a13);                           \
                }                                                                                                       \
                s[0] = imret__idx_hsum8(a00); s[1] = imret__idx_hsum8(a01); s[2] = imret__idx_hsum8(a02);               \
                s[3] = imret__idx_hsum8(a03); s[4] = imret__idx_hsum8(a10); s[5] = imret__idx_hsum8(a11);               \
                s[6] = imret__idx_hsum8(a12); s[7] = imret__idx_hsum8(a13);                                             \
                for (l = 0; l < nr; l++) {                                                                              \
                    out[qi * ldo + r + l] = s[l];                                                                       \
                    if (qi + 1 < nq) out[(qi + 1) * ldo + r + l] = s[4 + l];                                            \
                }                                                                                                       \
            }                                                                                                           \
        }                                                                                                               \
    }
#define IMRET__IDX_M32(p) _mm256_loadu_ps(p)
#define IMRET__IDX_M32T(p) _mm256_maskload_ps(p, tm)
#define IMRET__IDX_M16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define IMRET__IDX_M16T(p) imret__idx_h8t(p, tail)
IMRET__IDX_DOT256(imret__idx_dot_f32_avx2, float, IMRET__IDX_M32, IMRET__IDX_M32T)
IMRET__IDX_DOT256(imret__idx_dot_f16_avx2, uint16_t, IMRET__IDX_M16, IMRET__IDX_M16T)

/* ---- AVX2 Hamming: vpshufb nibble popcount + vpsadbw for whole 256-bit chunks, popcnt for
   leftover words; 256-bit codes get a 4-row path that sums lanes without extracting. ---- */
IMRET__IDX_AVX2 static __m256i imret__idx_pop256(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
                                         3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
    return _mm256_sad_epu8(c, _mm256_setzero_si256()); /* 4 qword counts */
}
IMRET__IDX_AVX2 static void imret__idx_ham_avx2(const uint64_t *Q, size_t nq, const uint64_t *X, size_t rows, size_t words,
                                                float *out, size_t ldo) {
    size_t qi, r, w, full = words & ~(size_t)3;
    for (qi = 0; qi < nq; qi++) {
        const uint64_t *q = Q + qi * words;
        float *o = out + qi * ldo;
        r = 0;
        if (words == 4) {
            __m256i qq = _mm256_loadu_si256((const __m256i *)(const void *)q);
            for (; r + 4 <= rows; r += 4) {
                const uint64_t *x = X + r * 4;
                __m256i s0 = imret__idx_pop256(_mm256_xor_si256(qq, _mm256_loadu_si256((const __m256i *)(const void *)x)));
                __m256i s1 = imret__idx_pop256(_mm256_xor_si256(qq, _mm256_loadu_si256((const __m256i *)(const void *)(x + 4))));
                __m256i s2 = imret__idx_pop256(_mm256_xor_si256(qq, _mm256_loadu_si256((const __m256i *)(const void *)(x + 8))));
                __m256i s3 = imret__idx_pop256(_mm256_xor_si256(qq, _mm256_loadu_si256((const __m256i *)(const void *)(x + 12))));
                __m256i t0 = _mm256_add_epi64(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
                __m256i t1 = _mm256_add_epi64(_mm256_unpacklo_epi64(s2, s3), _mm256_unpackhi_epi64(s2, s3));
                __m256i u = _mm256_add_epi64(_mm256_permute2x128_si256(t0, t1, 0x20), _mm256_permute2x128_si256(t0, t1, 0x31));
                __m128i d32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
                _mm_storeu_ps(o + r, _mm_cvtepi32_ps(d32));
            }
        }
        for (; r < rows; r++) {
            const uint64_t *x = X + r * words;
            __m256i acc = _mm256_setzero_si256();
            uint64_t d = 0, lanes[4];
            for (w = 0; w < full; w += 4)
                acc = _mm256_add_epi64(acc, imret__idx_pop256(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(q + w)),
                                                                                _mm256_loadu_si256((const __m256i *)(const void *)(x + w)))));
            for (; w < words; w++) d += (uint64_t)__builtin_popcountll(q[w] ^ x[w]);
            _mm256_storeu_si256((__m256i *)(void *)lanes, acc);
            o[r] = (float)(d + lanes[0] + lanes[1] + lanes[2] + lanes[3]);
        }
    }
}

/* ---- AVX-512 VPOPCNTDQ Hamming. Rows are summed 8 at a time with a transpose-add tree:
   permutex2var picks even/odd qwords of two vectors, so each level halves the qwords per row;
   codes of 1, 2, 4 words pack 8, 4, 2 rows per vector, longer codes use one vector per row
   (masked tail) and all three levels. ---- */
IMRET__IDX_AVX512P static __m512i imret__idx_pairsum(__m512i a, __m512i b) {
    const __m512i ev = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), od = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    return _mm512_add_epi64(_mm512_permutex2var_epi64(a, ev, b), _mm512_permutex2var_epi64(a, od, b));
}
IMRET__IDX_AVX512P static void imret__idx_ham_avx512(const uint64_t *Q, size_t nq, const uint64_t *X, size_t rows, size_t words,
                                                     float *out, size_t ldo) {
    size_t qi, r, w, full = words & ~(size_t)7;
    __mmask8 tm = (__mmask8)((1u << (words & 7)) - 1);
    for (qi = 0; qi < nq; qi++) {
        const uint64_t *q = Q + qi * words;
        float *o = out + qi * ldo;
        r = 0;
        if (words == 1 || words == 2 || words == 4) {
            __m512i qq;
            if (words == 1) qq = _mm512_set1_epi64((long long)q[0]);
            else if (words == 2) qq = _mm512_broadcast_i64x2(_mm_loadu_si128((const __m128i *)(const void *)q));
            else qq = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)q));
            for (; r + 8 <= rows; r += 8) {
                const uint64_t *x = X + r * words;
                __m512i d;
#define IMRET__IDX_P(i) _mm512_popcnt_epi64(_mm512_xor_si512(qq, _mm512_loadu_si512((const void *)(x + 8 * (i)))))
                if (words == 1) d = IMRET__IDX_P(0);
                else if (words == 2) d = imret__idx_pairsum(IMRET__IDX_P(0), IMRET__IDX_P(1));
                else d = imret__idx_pairsum(imret__idx_pairsum(IMRET__IDX_P(0), IMRET__IDX_P(1)),
                                            imret__idx_pairsum(IMRET__IDX_P(2), IMRET__IDX_P(3)));
#undef IMRET__IDX_P
                _mm256_storeu_ps(o + r, _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(d)));
            }
        } else {
            for (; r + 8 <= rows; r += 8) {
                __m512i p[8];
                size_t j;
                for (j = 0; j < 8; j++) {
                    const uint64_t *x = X + (r + j) * words;
                    __m512i acc = _mm512_setzero_si512();
                    for (w = 0; w < full; w += 8)
                        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512((const void *)(q + w)),
                                                                                       _mm512_loadu_si512((const void *)(x + w)))));
                    if (tm)
                        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(tm, q + w),
                                                                                       _mm512_maskz_loadu_epi64(tm, x + w))));
                    p[j] = acc;
                }
                p[0] = imret__idx_pairsum(imret__idx_pairsum(imret__idx_pairsum(p[0], p[1]), imret__idx_pairsum(p[2], p[3])),
                                          imret__idx_pairsum(imret__idx_pairsum(p[4], p[5]), imret__idx_pairsum(p[6], p[7])));
                _mm256_storeu_ps(o + r, _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(p[0])));
            }
        }
        for (; r < rows; r++) {
            const uint64_t *x = X + r * words;
            uint64_t d = 0;
            for (w = 0; w < words; w++) d += (uint64_t)_mm_popcnt_u64(q[w] ^ x[w]);
            o[r] = (float)d;
        }
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif /* IMRET__X86 */

/* ---- candidate filter: bit r of mask = (ge ? s[r] >= lim : s[r] <= lim); mask zeroed by the
   caller. The selection only visits set bits, so a block whose scores all miss the current
   k-th best costs a few vector compares instead of a branch per row. ---- */
typedef void (*imret__idx_filter_fn)(const float *s, size_t n, float lim, int ge, uint64_t *mask);
static void imret__idx_filter_scalar(const float *s, size_t n, float lim, int ge, uint64_t *mask) {
    size_t r;
    for (r = 0; r < n; r++)
        if (ge ? s[r] >= lim : s[r] <= lim) mask[r / 64] |= (uint64_t)1 << (r % 64);
}
#if IMRET__X86
IMRET__IDX_AVX2 static void imret__idx_filter_avx2(const float *s, size_t n, float lim, int ge, uint64_t *mask) {
    __m256 l = _mm256_set1_ps(lim);
    size_t r;
    for (r = 0; r + 8 <= n; r += 8) {
        __m256 v = _mm256_loadu_ps(s + r);
        unsigned m = (unsigned)_mm256_movemask_ps(ge ? _mm256_cmp_ps(v, l, _CMP_GE_OQ) : _mm256_cmp_ps(v, l, _CMP_LE_OQ));
        mask[r / 64] |= (uint64_t)m << (r % 64);
    }
    for (; r < n; r++)
        if (ge ? s[r] >= lim : s[r] <= lim) mask[r / 64] |= (uint64_t)1 << (r % 64);
}
IMRET__IDX_AVX512 static void imret__idx_filter_avx512(const float *s, size_t n, float lim, int ge, uint64_t *mask) {
    __m512 l = _mm512_set1_ps(lim);
    size_t r;
    for (r = 0; r + 16 <= n; r += 16) {
        __m512 v = _mm512_loadu_ps(s + r);
        unsigned m = ge ? (unsigned)_mm512_cmp_ps_mask(v, l, _CMP_GE_OQ) : (unsigned)_mm512_cmp_ps_mask(v, l, _CMP_LE_OQ);
        mask[r / 64] |= (uint64_t)m << (r % 64);
    }
    for (; r < n; r++)
        if (ge ? s[r] >= lim : s[r] <= lim) mask[r / 64] |= (uint64_t)1 << (r % 64);
}
#endif

static unsigned imret__idx_ctz(uint64_t x) { /* x != 0 */
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_ctzll(x);
#else
    unsigned n = 0;
    while (!(x & 1)) { x >>= 1; n++; }
    return n;
#endif
}

typedef struct imret__idx_kern {
    imret__idx_dot_fn dot;
    imret__idx_ham_fn ham;
    imret__idx_filter_fn filter;
    imret_simd level;
} imret__idx_kern;

static imret__idx_kern imret__idx_kernels(const imret_index *idx, imret_simd want) {
    imret__idx_kern k;
    imret_simd lv = imret__simd_resolve(want);
    k.level = IMRET_SIMD_SCALAR;
    k.dot = idx->storage == IMRET_INDEX_FP16 ? imret__idx_dot_f16_scalar : imret__idx_dot_f32_scalar;
    k.ham = imret__idx_ham_scalar;
    k.filter = imret__idx_filter_scalar;
#if IMRET__X86
    if (lv == IMRET_SIMD_AVX512) {
        k.level = IMRET_SIMD_AVX512;
        k.dot = idx->storage == IMRET_INDEX_FP16 ? imret__idx_dot_f16_avx512 : imret__idx_dot_f32_avx512;
        k.ham = (imret__cpu_features() & IMRET__CPU_VPOPCNTDQ) ? imret__idx_ham_avx512 : imret__idx_ham_avx2;
        k.filter = imret__idx_filter_avx512;
    } else if (lv == IMRET_SIMD_AVX2) {
        k.level = IMRET_SIMD_AVX2;
        k.dot = idx->storage == IMRET_INDEX_FP16 ? imret__idx_dot_f16_avx2 : imret__idx_dot_f32_avx2;
        k.ham = imret__idx_ham_avx2;
        k.filter = imret__idx_filter_avx2;
    }
#else
    (void)lv;
#endif
    return k;
}

IMRET_DEF imret_search_options imret_search_options_init(void) {
    imret_search_options o;
    memset(&o, 0, sizeof o);
    o.simd = IMRET_SIMD_AUTO;
    o.method = IMRET_SEARCH_AUTO;
    return o;
}

static int imret__idx_tid(void) {
#if IMRET__OMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ---- selection: max-heap on (key, id) holding the k best (smallest) pairs ---- */
typedef struct imret__idx_kv {
    float key;
    uint64_t id;
} imret__idx_kv;

static int imret__idx_worse(const imret__idx_kv *a, float key, uint64_t id) { /* a worse than (key, id)? */
    return a->key > key || (a->key == key && a->id > id);
}
static void imret__idx_heap_push(imret__idx_kv *h, size_t *n, size_t k, float key, uint64_t id) {
    size_t i, c;
    if (key != key) key = INFINITY; /* NaN (from overflowing unnormalised vectors) ranks last */
    if (*n < k) {
        i = (*n)++;
        while (i > 0 && !imret__idx_worse(&h[(i - 1) / 2], key, id)) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i].key = key;
        h[i].id = id;
        return;
    }
    if (!imret__idx_worse(&h[0], key, id)) return;
    i = 0;
    for (;;) {
        c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && imret__idx_worse(&h[c + 1], h[c].key, h[c].id)) c++;
        if (!imret__idx_worse(&h[c], key, id)) break;
        h[i] = h[c];
        i = c;
    }
    h[i].key = key;
    h[i].id = id;
}
static int imret__idx_kv_cmp(const void *a, const void *b) {
    const imret__idx_kv *x = (const imret__idx_kv *)a, *y = (const imret__idx_kv *)b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* One search job: prepared queries against the flat store. */
typedef struct imret__idx_rhit {
    size_t q;
    float key;
    uint64_t id;
} imret__idx_rhit;

typedef struct imret__idx_tls { /* per-thread state */
    float *buf;                 /* qb * block scores                        */
    uint64_t *mask;             /* block / 64 + 1 candidate bits            */
    imret__idx_kv *heaps;       /* qb * k (top-k)                           */
    size_t *hn;                 /* qb                                        */
    imret__idx_rhit *rh;        /* range hits                               */
    size_t rn, rcap;
    int oom;
} imret__idx_tls;

typedef struct imret__idx_job {
    const imret_index *idx;
    imret_metric metric;
    const float *qf;            /* prepared float queries (normalised)       */
    const uint64_t *qc;         /* prepared codes (masked)                   */
    size_t nq, k;               /* k = 0: range search                       */
    float range_key;            /* range: keep key <= range_key              */
    imret__idx_kern kern;
    int threads;
} imret__idx_job;

static size_t imret__idx_block_rows(const imret_index *idx, imret_metric metric) {
    size_t rb = metric == IMRET_METRIC_COSINE ? imret__idx_vec_bytes(idx) : idx->words * 8, b;
    b = ((size_t)96 << 10) / (rb ? rb : 1);
    b &= ~(size_t)15;
    if (b < 16) b = 16;
    if (b > 4096) b = 4096;
    return b;
}

static int imret__idx_range_put(imret__idx_tls *t, size_t q, float key, uint64_t id) {
    if (t->rn == t->rcap) {
        size_t cap = t->rcap ? t->rcap * 2 : 256;
        imret__idx_rhit *p = (imret__idx_rhit *)imret__idx_realloc(t->rh, cap, sizeof *p);
        if (!p) return 0;
        t->rh = p;
        t->rcap = cap;
    }
    t->rh[t->rn].q = q;
    t->rh[t->rn].key = key;
    t->rh[t->rn].id = id;
    t->rn++;
    return 1;
}

/* Scan rows [r0, r0 + rows) for queries [q0, q0 + qn) into thread state t. */
static void imret__idx_scan_block(const imret__idx_job *J, imret__idx_tls *t, size_t q0, size_t qn, size_t r0, size_t rows,
                                  size_t ldo) {
    const imret_index *idx = J->idx;
    size_t qi;
    float sign = J->metric == IMRET_METRIC_COSINE ? -1.0f : 1.0f;
    if (J->metric == IMRET_METRIC_COSINE)
        J->kern.dot(J->qf + q0 * idx->dim, qn, (const uint8_t *)idx->vecs + r0 * imret__idx_vec_bytes(idx), rows, idx->dim, t->buf, ldo);
    else
        J->kern.ham(J->qc + q0 * idx->words, qn, idx->codes + r0 * idx->words, rows, idx->words, t->buf, ldo);
    for (qi = 0; qi < qn; qi++) {
        const float *s = t->buf + qi * ldo;
        imret__idx_kv *h = J->k ? t->heaps + qi * J->k : NULL;
        size_t *hn = &t->hn[qi], w, words = (rows + 63) / 64;
        float thr = J->k ? (*hn == J->k ? h[0].key : INFINITY) : J->range_key;
        memset(t->mask, 0, words * sizeof(uint64_t));
        if (thr == INFINITY) { /* heap not full yet: every row is a candidate */
            for (w = 0; w < words; w++) t->mask[w] = ~(uint64_t)0;
            if (rows % 64) t->mask[words - 1] = ((uint64_t)1 << (rows % 64)) - 1;
        } else {
            J->kern.filter(s, rows, sign * thr, sign < 0, t->mask);
        }
        for (w = 0; w < words; w++) {
            uint64_t m = t->mask[w];
            while (m) {
                size_t r = w * 64 + imret__idx_ctz(m);
                float key = sign * s[r];
                m &= m - 1;
                if (idx->dead[r0 + r]) continue;
                if (J->k) {
                    if (*hn == J->k && key > h[0].key) continue;
                    imret__idx_heap_push(h, hn, J->k, key, idx->ids[r0 + r]);
                } else if (key <= J->range_key) {
                    if (!imret__idx_range_put(t, q0 + qi, key, idx->ids[r0 + r])) t->oom = 1;
                }
            }
        }
    }
}

/* Collect per-thread range hits into CSR results, each query's run sorted by (key, id). */
static imret_result imret__idx_gather_range(const imret__idx_job *J, imret__idx_tls *tls, size_t T, imret_index_results *rout) {
    size_t total = 0, t, i, *fill = NULL;
    imret__idx_kv *merge = NULL;
    imret_result rc = IMRET_OK;
    for (t = 0; t < T; t++) {
        if (tls[t].oom) rc = IMRET_ERROR_OUT_OF_MEMORY;
        total += tls[t].rn;
    }
    rout->nq = J->nq;
    rout->offsets = (size_t *)imret__calloc(J->nq + 1, sizeof(size_t));
    rout->hits = (imret_index_hit *)imret__calloc(total, sizeof(imret_index_hit));
    merge = (imret__idx_kv *)imret__calloc(total, sizeof *merge);
    fill = (size_t *)imret__calloc(J->nq, sizeof(size_t));
    if (rc != IMRET_OK || !rout->offsets || !rout->hits || !merge || !fill) {
        imret_index_results_free(rout);
        IMRET_FREE(merge);
        IMRET_FREE(fill);
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "range search: out of memory for %lu hits", (unsigned long)total);
    }
    for (t = 0; t < T; t++)
        for (i = 0; i < tls[t].rn; i++) rout->offsets[tls[t].rh[i].q + 1]++;
    for (i = 0; i < J->nq; i++) rout->offsets[i + 1] += rout->offsets[i];
    for (t = 0; t < T; t++)
        for (i = 0; i < tls[t].rn; i++) {
            const imret__idx_rhit *h = &tls[t].rh[i];
            size_t pos = rout->offsets[h->q] + fill[h->q]++;
            merge[pos].key = h->key;
            merge[pos].id = h->id;
        }
    for (i = 0; i < J->nq; i++) {
        size_t a = rout->offsets[i], e = rout->offsets[i + 1], j;
        qsort(merge + a, e - a, sizeof *merge, imret__idx_kv_cmp);
        for (j = a; j < e; j++) {
            rout->hits[j].id = merge[j].id;
            rout->hits[j].score = J->metric == IMRET_METRIC_COSINE ? -merge[j].key : merge[j].key;
        }
    }
    IMRET_FREE(merge);
    IMRET_FREE(fill);
    return IMRET_OK;
}

/* Flat top-k / range search. Top-k hits go to hits/counts; range hits to rout. */
static imret_result imret__idx_flat(const imret__idx_job *J, imret_index_hit *hits, size_t *counts, imret_index_results *rout) {
    const imret_index *idx = J->idx;
    size_t B = imret__idx_block_rows(idx, J->metric), nblocks = (idx->n + B - 1) / B, T = (size_t)J->threads, qb, t, q0, i;
    size_t k = J->k, ktot;
    imret__idx_tls *tls;
    imret__idx_kv *merge = NULL;
    imret_result rc = IMRET_OK;
    if (T > nblocks) T = nblocks ? nblocks : 1;
    /* queries per pass: 64 (enough to reuse each block from cache), fewer when k is large */
    qb = 64;
    if (k && k * T * qb > ((size_t)1 << 22)) qb = ((size_t)1 << 22) / (k * T) ? ((size_t)1 << 22) / (k * T) : 1;
    if (qb > J->nq) qb = J->nq;
    tls = (imret__idx_tls *)imret__calloc(T, sizeof *tls);
    if (!tls) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "search: out of memory");
    for (t = 0; t < T; t++) {
        tls[t].buf = (float *)imret__calloc(qb * B, sizeof(float));
        tls[t].mask = (uint64_t *)imret__calloc(B / 64 + 1, sizeof(uint64_t));
        if (!tls[t].mask) rc = IMRET_ERROR_OUT_OF_MEMORY;
        tls[t].hn = (size_t *)imret__calloc(qb, sizeof(size_t));
        if (k) tls[t].heaps = (imret__idx_kv *)imret__calloc(qb * k, sizeof(imret__idx_kv));
        if (!tls[t].buf || !tls[t].hn || (k && !tls[t].heaps)) rc = IMRET_ERROR_OUT_OF_MEMORY;
    }
    if (k && !imret__mul(T, k, &ktot)) rc = IMRET_ERROR_OUT_OF_MEMORY;
    if (k && rc == IMRET_OK && !(merge = (imret__idx_kv *)imret__calloc(ktot, sizeof *merge))) rc = IMRET_ERROR_OUT_OF_MEMORY;
    if (rc != IMRET_OK) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "search: out of memory for %lu threads x %lu queries x k %lu", (unsigned long)T,
                         (unsigned long)qb, (unsigned long)k);
        goto done;
    }
    for (q0 = 0; q0 < J->nq; q0 += qb) {
        size_t qn = J->nq - q0 < qb ? J->nq - q0 : qb;
        long b;
        for (t = 0; t < T; t++) memset(tls[t].hn, 0, qb * sizeof(size_t));
#if IMRET__OMP
#pragma omp parallel for num_threads((int)T) schedule(static)
#endif
        for (b = 0; b < (long)nblocks; b++) {
            size_t r0 = (size_t)b * B, rows = idx->n - r0 < B ? idx->n - r0 : B;
            imret__idx_scan_block(J, &tls[imret__idx_tid()], q0, qn, r0, rows, B);
        }
        if (!k) continue;
        for (i = 0; i < qn; i++) { /* merge the per-thread heaps of query q0 + i */
            size_t m = 0, j, cnt;
            imret_index_hit *h = hits + (q0 + i) * k;
            for (t = 0; t < T; t++) {
                memcpy(merge + m, tls[t].heaps + i * k, tls[t].hn[i] * sizeof *merge);
                m += tls[t].hn[i];
            }
            qsort(merge, m, sizeof *merge, imret__idx_kv_cmp);
            cnt = m < k ? m : k;
            for (j = 0; j < cnt; j++) {
                h[j].id = merge[j].id;
                h[j].score = J->metric == IMRET_METRIC_COSINE ? -merge[j].key : merge[j].key;
            }
            for (; j < k; j++) {
                h[j].id = 0;
                h[j].score = J->metric == IMRET_METRIC_COSINE ? -INFINITY : INFINITY;
            }
            if (counts) counts[q0 + i] = cnt;
        }
    }
    if (!k) rc = imret__idx_gather_range(J, tls, T, rout);
done:
    for (t = 0; t < T; t++) {
        IMRET_FREE(tls[t].buf);
        IMRET_FREE(tls[t].mask);
        IMRET_FREE(tls[t].hn);
        IMRET_FREE(tls[t].heaps);
        IMRET_FREE(tls[t].rh);
    }
    IMRET_FREE(tls);
    IMRET_FREE(merge);
    return rc;
}

IMRET_DEF void imret_index_results_free(imret_index_results *r) {
    if (!r) return;
    IMRET_FREE(r->offsets);
    IMRET_FREE(r->hits);
    r->offsets = NULL;
    r->hits = NULL;
    r->nq = 0;
}

/* Validate arguments and prepare queries (normalised floats / masked codes). */
static imret_result imret__idx_prepare(imret__idx_job *J, const imret_index *idx, imret_metric metric, const void *queries,
                                       size_t nq, const imret_search_options *opt, const char *what, void **prepared) {
    imret_search_options def = imret_search_options_init();
    size_t q, d, n;
    *prepared = NULL;
    if (!idx || !queries) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: NULL index or queries", what);
    if (!nq) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: no queries (nq == 0)", what);
    if (!opt) opt = &def;
    if (opt->threads < 0 || opt->threads > 1024)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: threads = %d (0..1024)", what, opt->threads);
    if ((int)opt->simd < 0 || (int)opt->simd > (int)IMRET_SIMD_NEON)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: simd = %d", what, (int)opt->simd);
    if ((int)opt->method < 0 || (int)opt->method > (int)IMRET_SEARCH_MIH)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: method = %d", what, (int)opt->method);
    if (metric == IMRET_METRIC_COSINE && !idx->dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: the index holds no vectors", what);
    if (metric == IMRET_METRIC_HAMMING && !idx->bits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: the index holds no codes", what);
    memset(J, 0, sizeof *J);
    J->idx = idx;
    J->metric = metric;
    J->nq = nq;
    J->kern = imret__idx_kernels(idx, opt->simd);
    J->threads = imret__threads(opt->threads);
    if (J->threads < 1) J->threads = 1;
    if (metric == IMRET_METRIC_COSINE) {
        const float *src = (const float *)queries;
        float *qf;
        if (!imret__mul(nq, idx->dim, &n) || !(qf = (float *)imret__calloc(n, sizeof(float))))
            return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory for %lu queries", what, (unsigned long)nq);
        for (q = 0; q < nq; q++) {
            double inv;
            for (d = 0; d < idx->dim; d++)
                if (!(src[q * idx->dim + d] - src[q * idx->dim + d] == 0.0f)) {
                    IMRET_FREE(qf);
                    return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: query %lu element %lu is not finite", what, (unsigned long)q,
                                       (unsigned long)d);
                }
            inv = imret__idx_inv_norm(src + q * idx->dim, idx->dim, idx->normalize);
            for (d = 0; d < idx->dim; d++) qf[q * idx->dim + d] = (float)(src[q * idx->dim + d] * inv);
        }
        J->qf = qf;
        *prepared = qf;
    } else {
        uint64_t *qc;
        if (!imret__mul(nq, idx->words, &n) || !(qc = (uint64_t *)imret__calloc(n, sizeof(uint64_t))))
            return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory for %lu queries", what, (unsigned long)nq);
        memcpy(qc, queries, n * sizeof(uint64_t));
        for (q = 0; q < nq; q++) qc[q * idx->words + idx->words - 1] &= imret__idx_last_mask(idx->bits);
        J->qc = qc;
        *prepared = qc;
    }
    return IMRET_OK;
}

static imret_result imret__idx_mih_search(const imret__idx_job *J, imret_search_method method, imret_index_hit *hits,
                                          size_t *counts, imret_index_results *rout, int *used);

static imret_result imret__idx_topk(const imret_index *idx, imret_metric metric, const void *queries, size_t nq, size_t k,
                                    const imret_search_options *opt, imret_index_hit *hits, size_t *counts, const char *what) {
    imret__idx_job J;
    void *prep;
    imret_result rc;
    size_t q, j, kk;
    int used = 0;
    if (!hits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: hits is NULL", what);
    if (!k) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: k == 0", what);
    if ((rc = imret__idx_prepare(&J, idx, metric, queries, nq, opt, what, &prep)) != IMRET_OK) return rc;
    if (!imret__mul(nq, k, &kk)) {
        IMRET_FREE(prep);
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: nq x k overflows", what);
    }
    J.k = k < idx->live ? k : idx->live;
    if (!J.k) { /* empty index */
        for (q = 0; q < nq; q++) {
            for (j = 0; j < k; j++) {
                hits[q * k + j].id = 0;
                hits[q * k + j].score = metric == IMRET_METRIC_COSINE ? -INFINITY : INFINITY;
            }
            if (counts) counts[q] = 0;
        }
        IMRET_FREE(prep);
        return IMRET_OK;
    }
    {
        /* k > count: search with k' = count into a k'-strided buffer, then spread the rows */
        imret_index_hit *dst = hits, *tmp = NULL;
        imret_search_method method = opt ? opt->method : IMRET_SEARCH_AUTO;
        if (J.k < k) {
            dst = tmp = (imret_index_hit *)imret__calloc(kk / k * J.k, sizeof *tmp);
            if (!tmp) {
                rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory", what);
                goto out;
            }
        }
        rc = IMRET_OK;
        if (metric == IMRET_METRIC_HAMMING && method != IMRET_SEARCH_FLAT)
            rc = imret__idx_mih_search(&J, method, dst, counts, NULL, &used);
        if (rc == IMRET_OK && !used) rc = imret__idx_flat(&J, dst, counts, NULL);
        if (rc == IMRET_OK && tmp)
            for (q = nq; q-- > 0;)
                for (j = k; j-- > 0;) {
                    if (j < J.k) hits[q * k + j] = tmp[q * J.k + j];
                    else {
                        hits[q * k + j].id = 0;
                        hits[q * k + j].score = metric == IMRET_METRIC_COSINE ? -INFINITY : INFINITY;
                    }
                }
        IMRET_FREE(tmp);
    }
out:
    IMRET_FREE(prep);
    return rc;
}

IMRET_DEF imret_result imret_index_search_cosine(const imret_index *idx, const float *queries, size_t nq, size_t k,
                                                 const imret_search_options *opt, imret_index_hit *hits, size_t *counts) {
    return imret__idx_topk(idx, IMRET_METRIC_COSINE, queries, nq, k, opt, hits, counts, "imret_index_search_cosine");
}
IMRET_DEF imret_result imret_index_search_hamming(const imret_index *idx, const uint64_t *queries, size_t nq, size_t k,
                                                  const imret_search_options *opt, imret_index_hit *hits, size_t *counts) {
    return imret__idx_topk(idx, IMRET_METRIC_HAMMING, queries, nq, k, opt, hits, counts, "imret_index_search_hamming");
}

static imret_result imret__idx_range(const imret_index *idx, imret_metric metric, const void *queries, size_t nq, float key,
                                     const imret_search_options *opt, imret_index_results *out, const char *what) {
    imret__idx_job J;
    void *prep;
    imret_result rc;
    int used = 0;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: out is NULL", what);
    memset(out, 0, sizeof *out);
    if ((rc = imret__idx_prepare(&J, idx, metric, queries, nq, opt, what, &prep)) != IMRET_OK) return rc;
    J.k = 0;
    J.range_key = key;
    if (metric == IMRET_METRIC_HAMMING && (opt ? opt->method : IMRET_SEARCH_AUTO) != IMRET_SEARCH_FLAT)
        rc = imret__idx_mih_search(&J, opt ? opt->method : IMRET_SEARCH_AUTO, NULL, NULL, out, &used);
    if (rc == IMRET_OK && !used) rc = imret__idx_flat(&J, NULL, NULL, out);
    IMRET_FREE(prep);
    return rc;
}

IMRET_DEF imret_result imret_index_range_cosine(const imret_index *idx, const float *queries, size_t nq, float min_similarity,
                                                const imret_search_options *opt, imret_index_results *out) {
    if (!(min_similarity == min_similarity)) {
        if (out) memset(out, 0, sizeof *out);
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_range_cosine: min_similarity is NaN");
    }
    return imret__idx_range(idx, IMRET_METRIC_COSINE, queries, nq, -min_similarity, opt, out, "imret_index_range_cosine");
}
IMRET_DEF imret_result imret_index_range_hamming(const imret_index *idx, const uint64_t *queries, size_t nq, uint32_t max_distance,
                                                 const imret_search_options *opt, imret_index_results *out) {
    return imret__idx_range(idx, IMRET_METRIC_HAMMING, queries, nq, (float)max_distance, opt, out, "imret_index_range_hamming");
}

/* ---- multi-index hashing (Norouzi, Punjani & Fleet) ----
   Substring j of a code is bits [sbit[j], sbit[j+1]) (<= 32 bits). Table j holds
   (value << 32 | slot) for every live slot, sorted (an LSD radix sort on the value, stable, so
   slots stay ascending within a value). If d(q, x) <= R = a m + b (0 <= b < m), some
   substring j <= b differs in <= a bits or some j > b in <= a - 1 bits (otherwise the sum
   exceeds R): range search probes those balls. k-NN probes growing radii rho in substring
   order; after substring j at radius rho every code within m rho + j has been seen, so it
   stops once the k-th best distance is <= m rho + j (ties included: exact). A query whose
   probing would cost more than a flat scan (by the cost model below) is scanned flat. */
static uint32_t imret__idx_sub(const uint64_t *c, unsigned a, unsigned len) {
    unsigned w = a / 64, o = a % 64;
    uint64_t v = c[w] >> o;
    if (o + len > 64) v |= c[w + 1] << (64 - o);
    return (uint32_t)(v & (((uint64_t)1 << len) - 1));
}

static int imret__idx_radix(uint64_t *a, size_t n) { /* sort by the high 32 bits, stable */
    uint64_t *tmp = (uint64_t *)imret__calloc(n, sizeof(uint64_t)), *src = a, *dst = tmp, *sw;
    size_t *cnt = (size_t *)imret__calloc(65536, sizeof(size_t)), i, pass, sum;
    if (!tmp || !cnt) {
        IMRET_FREE(tmp);
        IMRET_FREE(cnt);
        return 0;
    }
    for (pass = 0; pass < 2; pass++) {
        unsigned sh = 32 + 16 * (unsigned)pass;
        memset(cnt, 0, 65536 * sizeof(size_t));
        for (i = 0; i < n; i++) cnt[(src[i] >> sh) & 0xffff]++;
        for (i = 0, sum = 0; i < 65536; i++) {
            size_t c = cnt[i];
            cnt[i] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++) dst[cnt[(src[i] >> sh) & 0xffff]++] = src[i];
        sw = src;
        src = dst;
        dst = sw;
    }
    IMRET_FREE(tmp); /* two passes: the result is back in a */
    IMRET_FREE(cnt);
    return 1;
}

static unsigned imret__idx_mih_auto_m(size_t bits, size_t n) {
    double lg = log((double)(n < 2 ? 2 : n)) / log(2.0);
    unsigned m = (unsigned)((double)bits / lg + 0.5), mmin = (unsigned)((bits + 31) / 32);
    if (m < mmin) m = mmin;
    if (m < 1) m = 1;
    if (m > bits) m = (unsigned)bits;
    return m;
}

/* Build tables for m substrings over the live slots into *out (caller frees). */
static imret_result imret__idx_mih_make(const imret_index *idx, unsigned m, int one_table, unsigned table, imret__idx_mih **out) {
    imret__idx_mih *M;
    size_t s, e, j, nt = one_table ? 1 : m;
    *out = NULL;
    M = (imret__idx_mih *)imret__calloc(1, sizeof *M);
    if (!M) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "mih: out of memory");
    M->m = m;
    M->len = idx->live;
    M->sbit = (unsigned *)imret__calloc(m + 1, sizeof(unsigned));
    M->tab = (uint64_t *)imret__calloc(nt * (idx->live ? idx->live : 1), sizeof(uint64_t));
    if (!M->sbit || !M->tab) {
        imret__idx_mih_free(M);
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "mih: out of memory for %lu x %lu table entries", (unsigned long)nt,
                           (unsigned long)idx->live);
    }
    for (j = 0; j <= m; j++) M->sbit[j] = (unsigned)(j * idx->bits / m);
    for (j = 0; j < nt; j++) {
        unsigned tj = one_table ? table : (unsigned)j;
        uint64_t *t = M->tab + j * idx->live;
        for (s = 0, e = 0; s < idx->n; s++)
            if (!idx->dead[s])
                t[e++] = (uint64_t)imret__idx_sub(idx->codes + s * idx->words, M->sbit[tj], M->sbit[tj + 1] - M->sbit[tj]) << 32 | s;
        if (!imret__idx_radix(t, idx->live)) {
            imret__idx_mih_free(M);
            return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "mih: out of memory sorting");
        }
    }
    *out = M;
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_build_mih(imret_index *idx, unsigned substrings) {
    imret__idx_mih *M;
    imret_result rc;
    if (!idx) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_build_mih: index is NULL");
    if (!idx->bits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_build_mih: the index holds no codes");
    if (idx->n >= ((size_t)1 << 32) - 1) return imret__fail(IMRET_ERROR_LIMIT, "imret_index_build_mih: more than 2^32 slots");
    if (!substrings) substrings = imret__idx_mih_auto_m(idx->bits, idx->live);
    if (substrings > idx->bits || (idx->bits + substrings - 1) / substrings > 32)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_build_mih: %u substrings of %lu bits (each must be 1..32 bits)",
                           substrings, (unsigned long)idx->bits);
    if ((rc = imret__idx_mih_make(idx, substrings, 0, 0, &M)) != IMRET_OK) return rc;
    imret__idx_changed(idx);
    idx->mih = M;
    return IMRET_OK;
}
IMRET_DEF int imret_index_has_mih(const imret_index *idx) { return idx && idx->mih ? 1 : 0; }

static size_t imret__idx_lower(const uint64_t *t, size_t n, uint64_t v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static double imret__idx_choose(unsigned s, unsigned r) { /* C(s, r) as a double */
    double c = 1.0;
    unsigned i;
    if (r > s) return 0.0;
    for (i = 0; i < r; i++) c = c * (double)(s - i) / (double)(i + 1);
    return c;
}

/* Cost model, in nanoseconds, fitted on the 2-core AVX-512 machine (1M x 256-bit codes,
   tests/bench_index.c): a flat scan ~0.3 ns per code word (1 thread; memory-bound), a table
   probe (binary search over n entries, cache misses) ~(40 + 10 log2 n) ns, a candidate check
   ~(15 + words) ns. */
static double imret__idx_flat_cost(const imret_index *idx) { return 0.3 * (double)idx->live * (double)idx->words + 2000.0; }
static double imret__idx_probe_cost(const imret_index *idx) { return 40.0 + 10.0 * log((double)(idx->live + 2)) / log(2.0); }
static double imret__idx_cand_cost(const imret_index *idx) { return 15.0 + (double)idx->words; }

/* Estimated cost of a MIH range search with radius R (random codes). */
static double imret__idx_mih_range_cost(const imret_index *idx, const imret__idx_mih *M, unsigned R) {
    unsigned a = R / M->m, b = R % M->m, j, rho;
    double probes = 0.0, cands = 0.0;
    for (j = 0; j < M->m; j++) {
        unsigned s = M->sbit[j + 1] - M->sbit[j];
        int rj = j <= b ? (int)a : (int)a - 1;
        for (rho = 0; (int)rho <= rj && rho <= s; rho++) {
            double c = imret__idx_choose(s, rho);
            probes += c;
            cands += c * (double)M->len / ldexp(1.0, (int)s);
        }
    }
    return probes * imret__idx_probe_cost(idx) + cands * imret__idx_cand_cost(idx);
}

typedef struct imret__idx_mq { /* one MIH query in flight */
    const imret__idx_job *J;
    const imret__idx_mih *M;
    const uint64_t *q;
    uint32_t *stamp, mark;
    imret__idx_kv *heap;
    size_t hn, k;
    imret__idx_tls *t;
    size_t qi;
    float R;     /* range: keep d <= R */
    double cost, budget;
} imret__idx_mq;

/* Probe all values of substring j at exactly rho bits from the query's; returns 0 when the
   budget ran out. */
static int imret__idx_probe(imret__idx_mq *Q, unsigned j, unsigned rho) {
    const imret_index *idx = Q->J->idx;
    const imret__idx_mih *M = Q->M;
    unsigned s = M->sbit[j + 1] - M->sbit[j], c[33], i;
    uint32_t qv = imret__idx_sub(Q->q, M->sbit[j], s);
    const uint64_t *tab = M->tab + (size_t)j * M->len;
    double pc = imret__idx_probe_cost(idx), cc = imret__idx_cand_cost(idx);
    if (rho > s) return 1;
    for (i = 0; i < rho; i++) c[i] = i;
    for (;;) {
        uint32_t v = qv;
        size_t p;
        for (i = 0; i < rho; i++) v ^= (uint32_t)1 << c[i];
        Q->cost += pc;
        if (Q->cost > Q->budget) return 0;
        for (p = imret__idx_lower(tab, M->len, (uint64_t)v << 32); p < M->len && (uint32_t)(tab[p] >> 32) == v; p++) {
            size_t slot = (size_t)(uint32_t)tab[p];
            float d;
            if (Q->stamp[slot] == Q->mark) continue;
            Q->stamp[slot] = Q->mark;
            Q->cost += cc;
            Q->J->kern.ham(Q->q, 1, idx->codes + slot * idx->words, 1, idx->words, &d, 1);
            if (Q->heap) {
                if (Q->hn < Q->k || d <= Q->heap[0].key) imret__idx_heap_push(Q->heap, &Q->hn, Q->k, d, idx->ids[slot]);
            } else if (d <= Q->R) {
                if (!imret__idx_range_put(Q->t, Q->qi, d, idx->ids[slot])) Q->t->oom = 1;
            }
        }
        if (Q->cost > Q->budget) return 0;
        /* next combination of rho positions out of s */
        if (!rho) break;
        for (i = rho; i-- > 0;)
            if (c[i] < s - rho + i) break;
        if (i == (unsigned)-1 || c[i] >= s - rho + i) break;
        c[i]++;
        for (i = i + 1; i < rho; i++) c[i] = c[i - 1] + 1;
    }
    return 1;
}

static imret_result imret__idx_mih_search(const imret__idx_job *J, imret_search_method method, imret_index_hit *hits,
                                          size_t *counts, imret_index_results *rout, int *used) {
    const imret_index *idx = J->idx;
    const imret__idx_mih *M = idx->mih;
    size_t T = (size_t)J->threads, t, B = imret__idx_block_rows(idx, IMRET_METRIC_HAMMING);
    imret__idx_tls *tls;
    imret_result rc = IMRET_OK;
    long qi;
    size_t nflat;
    unsigned char *flat = NULL;
    *used = 0;
    if (!M) {
        if (method == IMRET_SEARCH_MIH)
            return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "search: method MIH but no current MIH tables (imret_index_build_mih)");
        return IMRET_OK;
    }
    if (method == IMRET_SEARCH_AUTO) {
        /* range: the model decides; k-NN: worth trying when radius m (one bit per substring)
           is cheaper than a flat scan -- queries that need more fall back on their own */
        unsigned R = J->k ? (unsigned)M->m : (unsigned)J->range_key;
        if (imret__idx_mih_range_cost(idx, M, R) > imret__idx_flat_cost(idx)) return IMRET_OK;
    }
    if (T > J->nq) T = J->nq;
    tls = (imret__idx_tls *)imret__calloc(T, sizeof *tls);
    flat = (unsigned char *)imret__calloc(J->nq, 1);
    if (!tls || !flat) {
        IMRET_FREE(tls);
        IMRET_FREE(flat);
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "mih search: out of memory");
    }
    for (t = 0; t < T; t++) {
        tls[t].buf = (float *)imret__calloc(B + idx->n, sizeof(float)); /* scores + stamps */
        if (J->k) tls[t].heaps = (imret__idx_kv *)imret__calloc(J->k, sizeof(imret__idx_kv));
        if (!tls[t].buf || (J->k && !tls[t].heaps)) rc = IMRET_ERROR_OUT_OF_MEMORY;
    }
    if (rc != IMRET_OK) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "mih search: out of memory");
        goto done;
    }
#if IMRET__OMP
#pragma omp parallel for num_threads((int)T) schedule(dynamic, 1)
#endif
    for (qi = 0; qi < (long)J->nq; qi++) {
        imret__idx_tls *th = &tls[imret__idx_tid()];
        imret__idx_mq Q;
        size_t rn0 = th->rn, j;
        int ok = 1;
        memset(&Q, 0, sizeof Q);
        Q.J = J;
        Q.M = M;
        Q.q = J->qc + (size_t)qi * idx->words;
        Q.stamp = (uint32_t *)(void *)(th->buf + B);
        Q.mark = (uint32_t)qi + 1;
        if (Q.mark == 0) { /* 2^32 queries on one thread: restart the stamps */
            memset(Q.stamp, 0, idx->n * sizeof(uint32_t));
            Q.mark = 1;
        }
        Q.heap = J->k ? th->heaps : NULL;
        Q.k = J->k;
        Q.t = th;
        Q.qi = (size_t)qi;
        Q.R = J->range_key;
        /* forced MIH may spend up to 16 flat scans on a query before giving up on probing;
           AUTO k-NN (whose radius is unknown up front) a tenth of one by the model, so a
           query without close neighbours costs about 1.5-2 flat scans (measured) */
        Q.budget = (method == IMRET_SEARCH_MIH ? 16.0 : J->k ? 0.1 : 1.0) * imret__idx_flat_cost(idx);
        if (!J->k) {
            unsigned R = (unsigned)J->range_key, a = R / M->m, b = R % M->m;
            for (j = 0; ok && j < M->m; j++) {
                int rj = j <= b ? (int)a : (int)a - 1, rho;
                for (rho = 0; ok && rho <= rj; rho++) ok = imret__idx_probe(&Q, (unsigned)j, (unsigned)rho);
            }
        } else {
            unsigned rho, smin = 32, done = 0;
            for (j = 0; j < M->m; j++)
                if (M->sbit[j + 1] - M->sbit[j] < smin) smin = M->sbit[j + 1] - M->sbit[j];
            for (rho = 0; ok && !done && rho <= smin; rho++)
                for (j = 0; ok && j < M->m; j++) {
                    ok = imret__idx_probe(&Q, (unsigned)j, rho);
                    if (ok && Q.hn == Q.k && Q.heap[0].key <= (float)(M->m * rho + j)) { done = 1; break; }
                }
        }
        if (!ok) { /* over budget: this query goes to the (parallel) flat pass below */
            th->rn = rn0;
            flat[qi] = 1;
            continue;
        }
        if (J->k) {
            size_t cnt = Q.hn, i;
            imret_index_hit *h = hits + (size_t)qi * J->k;
            qsort(Q.heap, cnt, sizeof *Q.heap, imret__idx_kv_cmp);
            for (i = 0; i < cnt; i++) {
                h[i].id = Q.heap[i].id;
                h[i].score = Q.heap[i].key;
            }
            for (; i < J->k; i++) {
                h[i].id = 0;
                h[i].score = INFINITY;
            }
            if (counts) counts[qi] = cnt;
        }
    }
    for (qi = 0, nflat = 0; qi < (long)J->nq; qi++) nflat += flat[qi];
    if (nflat) { /* the queries MIH gave up on, as one flat batch over all threads */
        imret__idx_job F = *J;
        uint64_t *qc = (uint64_t *)imret__calloc(nflat * idx->words, sizeof(uint64_t));
        imret_index_hit *fh = J->k ? (imret_index_hit *)imret__calloc(nflat * J->k, sizeof *fh) : NULL;
        size_t *fc = (size_t *)imret__calloc(nflat, sizeof(size_t)), f = 0, i;
        imret_index_results fr;
        memset(&fr, 0, sizeof fr);
        if (!qc || !fc || (J->k && !fh)) rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "mih search: out of memory");
        if (rc == IMRET_OK) {
            for (qi = 0; qi < (long)J->nq; qi++)
                if (flat[qi]) memcpy(qc + f++ * idx->words, J->qc + (size_t)qi * idx->words, idx->words * sizeof(uint64_t));
            F.qc = qc;
            F.nq = nflat;
            F.threads = J->threads;
            rc = imret__idx_flat(&F, fh, fc, J->k ? NULL : &fr);
        }
        for (qi = 0, f = 0; rc == IMRET_OK && qi < (long)J->nq; qi++) {
            if (!flat[qi]) continue;
            if (J->k) {
                memcpy(hits + (size_t)qi * J->k, fh + f * J->k, J->k * sizeof *fh);
                if (counts) counts[qi] = fc[f];
            } else {
                for (i = fr.offsets[f]; i < fr.offsets[f + 1]; i++)
                    if (!imret__idx_range_put(&tls[0], (size_t)qi, fr.hits[i].score, fr.hits[i].id)) tls[0].oom = 1;
            }
            f++;
        }
        imret_index_results_free(&fr);
        IMRET_FREE(qc);
        IMRET_FREE(fh);
        IMRET_FREE(fc);
        if (rc != IMRET_OK) goto done;
    }
    if (!J->k) rc = imret__idx_gather_range(J, tls, T, rout);
    *used = 1;
done:
    for (t = 0; t < T; t++) {
        IMRET_FREE(tls[t].buf);
        IMRET_FREE(tls[t].heaps);
        IMRET_FREE(tls[t].rh);
    }
    IMRET_FREE(tls);
    IMRET_FREE(flat);
    return rc;
}

/* ======================================================================================
   [impl: dedup]
   Union-find over slots (path halving, union by smaller root index, so the partition does
   not depend on the order pairs arrive in). Pairs come in rounds: a parallel phase finds
   close pairs for a chunk of entries (reading the union-find only to skip pairs already
   joined), then a serial phase unites them. Hamming: pigeonhole over substrings -- with
   R = a m + b, a pair within R agrees within a bits on a substring j <= b (or a - 1 on j > b);
   one sorted substring table is built at a time (8 bytes per entry), each entry probes the
   balls around its own substring values. Cosine: blocked all-pairs dot products (j > i).
   ====================================================================================== */
static size_t imret__idx_uf_find(size_t *p, size_t x) {
    while (p[x] != x) {
        p[x] = p[p[x]];
        x = p[x];
    }
    return x;
}
static size_t imret__idx_uf_peek(const size_t *p, size_t x) { /* read-only find */
    while (p[x] != x) x = p[x];
    return x;
}
static void imret__idx_uf_union(size_t *p, size_t a, size_t b) {
    a = imret__idx_uf_find(p, a);
    b = imret__idx_uf_find(p, b);
    if (a < b) p[b] = a;
    else if (b < a) p[a] = b;
}

typedef struct imret__idx_pairs {
    size_t *ab; /* pairs of slots */
    size_t n, cap;
    int oom;
} imret__idx_pairs;
static void imret__idx_pair_put(imret__idx_pairs *P, size_t a, size_t b) {
    if (P->n == P->cap) {
        size_t cap = P->cap ? P->cap * 2 : 1024;
        size_t *p = (size_t *)imret__idx_realloc(P->ab, cap, 2 * sizeof(size_t));
        if (!p) {
            P->oom = 1;
            return;
        }
        P->ab = p;
        P->cap = cap;
    }
    P->ab[2 * P->n] = a;
    P->ab[2 * P->n + 1] = b;
    P->n++;
}

IMRET_DEF imret_dedup_options imret_dedup_options_init(void) {
    imret_dedup_options o;
    memset(&o, 0, sizeof o);
    o.metric = IMRET_METRIC_HAMMING;
    o.threshold = 8;
    o.simd = IMRET_SIMD_AUTO;
    return o;
}

IMRET_DEF void imret_dedup_result_free(imret_dedup_result *r) {
    if (!r) return;
    IMRET_FREE(r->groups);
    IMRET_FREE(r->members_storage);
    memset(r, 0, sizeof *r);
}

typedef struct imret__idx_gsort {
    size_t root, size;
    uint64_t min_id;
} imret__idx_gsort;
static int imret__idx_gsort_cmp(const void *a, const void *b) {
    const imret__idx_gsort *x = (const imret__idx_gsort *)a, *y = (const imret__idx_gsort *)b;
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    return x->min_id < y->min_id ? -1 : x->min_id > y->min_id;
}

#define IMRET__IDX_CHUNK 16384

/* Hamming pairs via substring probing; unites into parent. */
static imret_result imret__idx_dedup_hamming(const imret_index *idx, unsigned R, const imret__idx_kern *kern, int threads,
                                             size_t *parent, imret__idx_pairs *P) {
    unsigned m = imret__idx_mih_auto_m(idx->bits, idx->live), a, b, j;
    size_t c0, t;
    if (m > R + 1) m = R + 1;
    if (m > idx->bits) m = (unsigned)idx->bits;
    if ((idx->bits + m - 1) / m > 32) m = (unsigned)((idx->bits + 31) / 32);
    a = R / m;
    b = R % m;
    for (j = 0; j < m; j++) {
        int rj = j <= b ? (int)a : (int)a - 1;
        imret__idx_mih *M;
        imret_result rc;
        unsigned s;
        if (rj < 0) continue;
        if ((rc = imret__idx_mih_make(idx, m, 1, j, &M)) != IMRET_OK) return rc;
        s = M->sbit[j + 1] - M->sbit[j];
        for (c0 = 0; c0 < M->len; c0 += IMRET__IDX_CHUNK) {
            size_t cn = M->len - c0 < IMRET__IDX_CHUNK ? M->len - c0 : IMRET__IDX_CHUNK;
            long e;
            /* entries are visited in table order, so equal substrings sit together in cache */
#if IMRET__OMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 256)
#endif
            for (e = 0; e < (long)cn; e++) {
                imret__idx_pairs *PP = &P[imret__idx_tid()];
                uint64_t me = M->tab[c0 + (size_t)e];
                size_t slot = (size_t)(uint32_t)me;
                uint32_t qv = (uint32_t)(me >> 32);
                const uint64_t *qc = idx->codes + slot * idx->words;
                unsigned rho, c[33], i;
                for (rho = 0; (int)rho <= rj && rho <= s; rho++) {
                    for (i = 0; i < rho; i++) c[i] = i;
                    for (;;) {
                        uint32_t v = qv;
                        size_t p;
                        for (i = 0; i < rho; i++) v ^= (uint32_t)1 << c[i];
                        for (p = imret__idx_lower(M->tab, M->len, (uint64_t)v << 32); p < M->len && (uint32_t)(M->tab[p] >> 32) == v; p++) {
                            size_t other = (size_t)(uint32_t)M->tab[p];
                            float d;
                            if (other <= slot) continue; /* each pair once, from its smaller slot */
                            if (imret__idx_uf_peek(parent, slot) == imret__idx_uf_peek(parent, other)) continue;
                            kern->ham(qc, 1, idx->codes + other * idx->words, 1, idx->words, &d, 1);
                            if (d <= (float)R) imret__idx_pair_put(PP, slot, other);
                        }
                        if (!rho) break;
                        for (i = rho; i-- > 0;)
                            if (c[i] < s - rho + i) break;
                        if (i == (unsigned)-1) break;
                        c[i]++;
                        for (i = i + 1; i < rho; i++) c[i] = c[i - 1] + 1;
                    }
                }
            }
            for (t = 0; t < (size_t)threads; t++) {
                size_t i;
                if (P[t].oom) {
                    imret__idx_mih_free(M);
                    return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "dedup: out of memory for pairs");
                }
                for (i = 0; i < P[t].n; i++) imret__idx_uf_union(parent, P[t].ab[2 * i], P[t].ab[2 * i + 1]);
                P[t].n = 0;
            }
        }
        imret__idx_mih_free(M);
    }
    return IMRET_OK;
}

/* Cosine pairs: queries = chunks of stored rows (as floats), against all later rows. */
static imret_result imret__idx_dedup_cosine(const imret_index *idx, float thr, const imret__idx_kern *kern, int threads,
                                            size_t *parent, imret__idx_pairs *P) {
    size_t QB = 64, B = imret__idx_block_rows(idx, IMRET_METRIC_COSINE), q0, t, d;
    float *qf = (float *)imret__calloc(QB * idx->dim, sizeof(float));
    float *buf = (float *)imret__calloc((size_t)threads * QB * B, sizeof(float));
    if (!qf || !buf) {
        IMRET_FREE(qf);
        IMRET_FREE(buf);
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "dedup: out of memory");
    }
    for (q0 = 0; q0 < idx->n; q0 += QB) {
        size_t qn = idx->n - q0 < QB ? idx->n - q0 : QB, qi, b0 = q0 / B, nb = (idx->n + B - 1) / B;
        long b;
        for (qi = 0; qi < qn; qi++)
            for (d = 0; d < idx->dim; d++)
                qf[qi * idx->dim + d] = idx->storage == IMRET_INDEX_FP16 ? imret__half_to_float(((const uint16_t *)idx->vecs)[(q0 + qi) * idx->dim + d])
                                                                         : ((const float *)idx->vecs)[(q0 + qi) * idx->dim + d];
#if IMRET__OMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (b = (long)b0; b < (long)nb; b++) {
            int tid = imret__idx_tid();
            float *o = buf + (size_t)tid * QB * B;
            size_t r0 = (size_t)b * B, rows = idx->n - r0 < B ? idx->n - r0 : B, r, i;
            kern->dot(qf, qn, (const uint8_t *)idx->vecs + r0 * imret__idx_vec_bytes(idx), rows, idx->dim, o, B);
            for (i = 0; i < qn; i++) {
                size_t a = q0 + i;
                if (idx->dead[a]) continue;
                for (r = 0; r < rows; r++)
                    if (r0 + r > a && o[i * B + r] >= thr && !idx->dead[r0 + r]) imret__idx_pair_put(&P[tid], a, r0 + r);
            }
        }
        for (t = 0; t < (size_t)threads; t++) {
            size_t i;
            if (P[t].oom) {
                IMRET_FREE(qf);
                IMRET_FREE(buf);
                return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "dedup: out of memory for pairs");
            }
            for (i = 0; i < P[t].n; i++) imret__idx_uf_union(parent, P[t].ab[2 * i], P[t].ab[2 * i + 1]);
            P[t].n = 0;
        }
    }
    IMRET_FREE(qf);
    IMRET_FREE(buf);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_index_dedup(const imret_index *idx, const imret_dedup_options *opt, imret_dedup_result *out) {
    imret_dedup_options def = imret_dedup_options_init();
    imret__idx_kern kern;
    imret__idx_pairs *P = NULL;
    size_t *parent = NULL, *gof = NULL, s, g, ng = 0, nm = 0, t;
    imret__idx_gsort *gs = NULL;
    imret__idx_kv *tmp = NULL;
    float *qv = NULL;
    imret_result rc = IMRET_OK;
    int threads;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: out is NULL");
    memset(out, 0, sizeof *out);
    if (!idx) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: index is NULL");
    if (!opt) opt = &def;
    if (opt->metric == IMRET_METRIC_HAMMING) {
        if (!idx->bits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: the index holds no codes");
        if (!(opt->threshold >= 0.0 && opt->threshold <= (double)idx->bits))
            return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: Hamming threshold %g outside 0..%lu", opt->threshold,
                               (unsigned long)idx->bits);
    } else if (opt->metric == IMRET_METRIC_COSINE) {
        if (!idx->dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: the index holds no vectors");
        if (!(opt->threshold == opt->threshold))
            return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: cosine threshold is NaN");
    } else {
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: metric %d", (int)opt->metric);
    }
    if (opt->threads < 0 || opt->threads > 1024)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_dedup: threads = %d (0..1024)", opt->threads);
    if (idx->n >= ((size_t)1 << 32) - 1) return imret__fail(IMRET_ERROR_LIMIT, "imret_index_dedup: more than 2^32 slots");
    kern = imret__idx_kernels(idx, opt->simd);
    threads = imret__threads(opt->threads);
    if (threads < 1) threads = 1;
    parent = (size_t *)imret__calloc(idx->n + 1, sizeof(size_t));
    P = (imret__idx_pairs *)imret__calloc((size_t)threads, sizeof *P);
    if (!parent || !P) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "dedup: out of memory");
        goto done;
    }
    for (s = 0; s < idx->n; s++) parent[s] = s;
    if (opt->metric == IMRET_METRIC_HAMMING)
        rc = imret__idx_dedup_hamming(idx, (unsigned)opt->threshold, &kern, threads, parent, P);
    else
        rc = imret__idx_dedup_cosine(idx, (float)opt->threshold, &kern, threads, parent, P);
    if (rc != IMRET_OK) goto done;
    /* parent[x] <= x always (the smaller root wins, halving only moves links down), so one
       ascending pass flattens every slot onto its root */
    for (s = 0; s < idx->n; s++) parent[s] = parent[parent[s]];
    /* groups: roots with >= 2 members */
    gof = (size_t *)imret__calloc(idx->n + 1, sizeof(size_t)); /* per root: size, then group index */
    if (!gof) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "dedup: out of memory");
        goto done;
    }
    for (s = 0; s < idx->n; s++)
        if (!idx->dead[s]) gof[parent[s]]++;
    for (s = 0; s < idx->n; s++)
        if (!idx->dead[s] && parent[s] == s && gof[s] >= 2) {
            ng++;
            nm += gof[s];
        }
    gs = (imret__idx_gsort *)imret__calloc(ng, sizeof *gs);
    out->groups = (imret_dedup_group *)imret__calloc(ng, sizeof *out->groups);
    out->members_storage = (imret_index_hit *)imret__calloc(nm, sizeof *out->members_storage);
    tmp = (imret__idx_kv *)imret__calloc(nm, sizeof *tmp);
    if (!gs || !out->groups || !out->members_storage || !tmp) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "dedup: out of memory for %lu groups", (unsigned long)ng);
        goto done;
    }
    for (s = 0, g = 0; s < idx->n; s++)
        if (!idx->dead[s] && parent[s] == s && gof[s] >= 2) {
            gs[g].root = s;
            gs[g].size = gof[s];
            gs[g].min_id = UINT64_MAX;
            g++;
        }
    for (g = 0; g < ng; g++) gof[gs[g].root] = g; /* root -> group (before sorting) */
    for (s = 0; s < idx->n; s++) { /* smallest id of each group */
        size_t gi;
        if (idx->dead[s]) continue;
        gi = gof[parent[s]];
        if (gi < ng && gs[gi].root == parent[s] && idx->ids[s] < gs[gi].min_id) gs[gi].min_id = idx->ids[s];
    }
    qsort(gs, ng, sizeof *gs, imret__idx_gsort_cmp);
    {
        size_t off = 0;
        for (g = 0; g < ng; g++) {
            gof[gs[g].root] = g;
            out->groups[g].members = out->members_storage + off;
            out->groups[g].count = 0;
            off += gs[g].size;
        }
    }
    for (s = 0; s < idx->n; s++) { /* members, in slot order */
        size_t r, gi;
        if (idx->dead[s]) continue;
        r = parent[s];
        gi = gof[r];
        if (gi >= ng || gs[gi].root != r) continue;
        out->groups[gi].members[out->groups[gi].count++].id = idx->ids[s];
    }
    if (opt->metric == IMRET_METRIC_COSINE && !(qv = (float *)imret__calloc(idx->dim, sizeof(float)))) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "dedup: out of memory");
        goto done;
    }
    for (g = 0; g < ng; g++) { /* scores to the representative, then order by (score, id) */
        imret_dedup_group *G = &out->groups[g];
        size_t i, d, rep = imret__idx_find(idx, gs[g].min_id);
        if (qv) /* the representative's stored vector is the query, as in the pair search */
            for (d = 0; d < idx->dim; d++)
                qv[d] = idx->storage == IMRET_INDEX_FP16 ? imret__half_to_float(((const uint16_t *)idx->vecs)[rep * idx->dim + d])
                                                         : ((const float *)idx->vecs)[rep * idx->dim + d];
        for (i = 0; i < G->count; i++) {
            size_t sl = imret__idx_find(idx, G->members[i].id);
            float v;
            if (qv) kern.dot(qv, 1, (const uint8_t *)idx->vecs + sl * imret__idx_vec_bytes(idx), 1, idx->dim, &v, 1);
            else kern.ham(idx->codes + rep * idx->words, 1, idx->codes + sl * idx->words, 1, idx->words, &v, 1);
            tmp[i].key = sl == rep ? -INFINITY : (qv ? -v : v);
            tmp[i].id = G->members[i].id;
            G->members[i].score = v;
        }
        qsort(tmp, G->count, sizeof *tmp, imret__idx_kv_cmp);
        for (i = 0; i < G->count; i++) {
            G->members[i].id = tmp[i].id;
            G->members[i].score = i == 0 ? (qv ? 1.0f : 0.0f) : (qv ? -tmp[i].key : tmp[i].key);
        }
    }
    out->group_count = ng;
    out->member_count = nm;
done:
    if (rc != IMRET_OK) imret_dedup_result_free(out);
    if (P)
        for (t = 0; t < (size_t)threads; t++) IMRET_FREE(P[t].ab);
    IMRET_FREE(P);
    IMRET_FREE(parent);
    IMRET_FREE(gof);
    IMRET_FREE(gs);
    IMRET_FREE(tmp);
    IMRET_FREE(qv);
    return rc;
}





/* ---- FAISS interop (faiss/impl/index_write.cpp, FAISS 1.7): little-endian, no padding.
   IndexFlatIP:     "IxFI" i32 d, i64 ntotal, i64 dummy (1 << 20), i64 dummy (1 << 20),
                    u8 is_trained, i32 metric (0 = inner product), u64 n floats, f32[ntotal][d]
   IndexBinaryFlat: "IBxF" i32 d (bits), i32 code_size (d / 8), i64 ntotal, u8 is_trained,
                    i32 metric (1), u64 n bytes, u8[ntotal][code_size]
   Codes are the bytes of our little-endian uint64 words, which is FAISS's bit order too
   (bit i = bit i % 8 of byte i / 8). ---- */
#ifndef IMRET_NO_STDIO
IMRET_DEF imret_result imret_index_export_faiss(const imret_index *idx, imret_metric what, const char *path, uint64_t *ids_out) {
    size_t hdr, per, total, s, e = 0, d;
    uint8_t *buf, *p;
    imret_result rc;
    if (!idx || !path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_export_faiss: NULL argument");
    if (what == IMRET_METRIC_COSINE) {
        if (!idx->dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "export_faiss: the index holds no vectors");
        hdr = 4 + 4 + 8 + 8 + 8 + 1 + 4 + 8;
        per = idx->dim * 4;
    } else if (what == IMRET_METRIC_HAMMING) {
        if (!idx->bits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "export_faiss: the index holds no codes");
        if (idx->bits % 8) return imret__fail(IMRET_ERROR_UNSUPPORTED, "export_faiss: IndexBinaryFlat needs bits %% 8 == 0 (have %lu)", (unsigned long)idx->bits);
        hdr = 4 + 4 + 4 + 8 + 1 + 4 + 8;
        per = idx->bits / 8;
    } else {
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "export_faiss: metric %d", (int)what);
    }
    if (!imret__mul(idx->live, per, &total) || !imret__add(total, hdr, &total))
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "export_faiss: size overflows");
    buf = (uint8_t *)imret__calloc(total, 1);
    if (!buf) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "export_faiss: cannot allocate %lu bytes", (unsigned long)total);
    p = buf;
    if (what == IMRET_METRIC_COSINE) {
        memcpy(p, "IxFI", 4);
        imret__wr32(p + 4, (uint32_t)idx->dim);
        imret__wr64(p + 8, (uint64_t)idx->live);
        imret__wr64(p + 16, (uint64_t)1 << 20);
        imret__wr64(p + 24, (uint64_t)1 << 20);
        p[32] = 1;
        imret__wr32(p + 33, 0);
        imret__wr64(p + 37, (uint64_t)idx->live * idx->dim);
    } else {
        memcpy(p, "IBxF", 4);
        imret__wr32(p + 4, (uint32_t)idx->bits);
        imret__wr32(p + 8, (uint32_t)(idx->bits / 8));
        imret__wr64(p + 12, (uint64_t)idx->live);
        p[20] = 1;
        imret__wr32(p + 21, 1);
        imret__wr64(p + 25, (uint64_t)idx->live * (idx->bits / 8));
    }
    p += hdr;
    for (s = 0; s < idx->n; s++) {
        if (idx->dead[s]) continue;
        if (ids_out) ids_out[e] = idx->ids[s];
        if (what == IMRET_METRIC_COSINE) {
            for (d = 0; d < idx->dim; d++)
                imret__idx_wrf(p + 4 * d, idx->storage == IMRET_INDEX_FP16 ? imret__half_to_float(((const uint16_t *)idx->vecs)[s * idx->dim + d])
                                                                         : ((const float *)idx->vecs)[s * idx->dim + d]);
        } else {
            for (d = 0; d < per; d++) p[d] = (uint8_t)(idx->codes[s * idx->words + d / 8] >> (8 * (d % 8)));
        }
        p += per;
        e++;
    }
    rc = imret__idx_write_atomic(path, buf, total);
    IMRET_FREE(buf);
    return rc;
}

IMRET_DEF imret_result imret_index_import_faiss(const char *path, const imret_index_config *cfg, const uint64_t *ids,
                                                imret_index **out) {
    imret_index_config c = cfg ? *cfg : imret_index_config_init();
    uint8_t *data = NULL;
    size_t size = 0, n, d, per, hdr, i, j;
    int mapped = 1, binary;
    imret_result rc;
    imret_index *idx = NULL;
    float *v = NULL;
    uint64_t *code = NULL;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_import_faiss: out is NULL");
    *out = NULL;
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_import_faiss: path is NULL");
    if ((rc = imret__read_file(path, SIZE_MAX, "faiss index", &data, &size, &mapped)) != IMRET_OK) return rc;
#define IMRET__FX(...) do { rc = imret__fail(IMRET_ERROR_FORMAT, __VA_ARGS__); goto done; } while (0)
    if (size < 4) IMRET__FX("faiss index %s: %lu bytes", path, (unsigned long)size);
    binary = !memcmp(data, "IBxF", 4);
    if (!binary && memcmp(data, "IxFI", 4) != 0)
        IMRET__FX("faiss index %s: fourcc '%.4s' is neither IxFI (IndexFlatIP) nor IBxF (IndexBinaryFlat)", path, (const char *)data);
    hdr = binary ? 33 : 45;
    if (size < hdr) IMRET__FX("faiss index %s: header truncated (%lu bytes)", path, (unsigned long)size);
    if (binary) {
        uint32_t bits = imret__rd32(data + 4), cs = imret__rd32(data + 8);
        uint64_t nt = imret__rd64(data + 12), nb = imret__rd64(data + 25);
        if (bits == 0 || bits > IMRET_INDEX_MAX_BITS || bits % 8 || cs != bits / 8) IMRET__FX("faiss index %s: d=%u code_size=%u", path, bits, cs);
        if (data[20] != 1 || imret__rd32(data + 21) != 1) IMRET__FX("faiss index %s: not a trained Hamming index", path);
        if (nt > size || nb != nt * cs || nb != size - hdr) IMRET__FX("faiss index %s: %llu codes of %u bytes do not fill %lu bytes", path, (unsigned long long)nt, cs, (unsigned long)size);
        n = (size_t)nt;
        per = cs;
        c.bits = bits;
        c.dim = 0;
    } else {
        uint32_t dim = imret__rd32(data + 4);
        uint64_t nt = imret__rd64(data + 8), nf = imret__rd64(data + 37);
        if (dim == 0 || dim > IMRET_INDEX_MAX_DIM) IMRET__FX("faiss index %s: d=%u", path, dim);
        if (imret__rd32(data + 33) != 0) IMRET__FX("faiss index %s: metric %u is not inner product", path, imret__rd32(data + 33));
        if (nt > size || nf != nt * dim || nf > (size - hdr) / 4 || nf * 4 != size - hdr)
            IMRET__FX("faiss index %s: %llu vectors of %u floats do not fill %lu bytes", path, (unsigned long long)nt, dim, (unsigned long)size);
        n = (size_t)nt;
        per = (size_t)dim * 4;
        c.dim = dim;
        c.bits = 0;
    }
#undef IMRET__FX
    if ((rc = imret_index_create(&c, &idx)) != IMRET_OK) goto done;
    v = (float *)imret__calloc(c.dim ? c.dim : 1, sizeof(float));
    code = (uint64_t *)imret__calloc(c.bits ? (c.bits + 63) / 64 : 1, sizeof(uint64_t));
    if (!v || !code || !imret__idx_reserve(idx, n) || !imret__idx_table_reserve(idx, n)) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "faiss index %s: out of memory", path);
        goto done;
    }
    for (i = 0; i < n; i++) {
        const uint8_t *p = data + hdr + i * per;
        if (binary) {
            memset(code, 0, ((c.bits + 63) / 64) * 8);
            for (j = 0; j < per; j++) code[j / 8] |= (uint64_t)p[j] << (8 * (j % 8));
        } else {
            for (d = 0; d < c.dim; d++) {
                uint32_t u = imret__rd32(p + 4 * d);
                memcpy(&v[d], &u, 4);
            }
        }
        if ((rc = imret_index_add(idx, ids ? ids[i] : (uint64_t)i, NULL, binary ? NULL : v, binary ? code : NULL)) != IMRET_OK) {
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%s", imret_last_error());
            rc = imret__fail(rc == IMRET_ERROR_INVALID_ARGUMENT ? IMRET_ERROR_FORMAT : rc, "faiss index %s: entry %lu: %s", path, (unsigned long)i, tmp);
            goto done;
        }
    }
    *out = idx;
    idx = NULL;
done:
    imret_index_destroy(idx);
    IMRET_FREE(v);
    IMRET_FREE(code);
    imret__release_file(data, size, mapped);
    return rc;
}
#endif /* IMRET_NO_STDIO */

#endif /* IMRET_INDEX_PART_IMPL */
#endif /* IMRET_IMPLEMENTATION */
