/* imret.h -- content-based image retrieval and near-duplicate detection in one C header.
   v0.1.0 -- MIT license (see end of file).

   image -> CNN forward pass (VGG / ResNet) -> global descriptor -> index -> search,
   with no deep-learning runtime. stb-style: this file is the whole library.

   QUICK START
       #define IMRET_IMPLEMENTATION      // in exactly ONE .c file
       #include "imret.h"

       imret_model *model; imret_context *ctx; imret_image img; imret_tensor in, fmap;
       if (imret_model_load_file("weights/resnet50.imw", NULL, &model)) { puts(imret_last_error()); }
       imret_context_create(model, NULL, &ctx);            // per-thread workspace, thread count
       imret_image_load_file("cat.jpg", &img);             // stb_image + EXIF orientation
       imret_preprocess_config pc = imret_preprocess_config_init();  // longest side 512
       imret_preprocess(model, &img, &pc, &in);            // resize + model normalisation
       imret_forward(ctx, &in, &fmap, NULL);               // C x H x W last conv feature map
       ...                                                  // pool, index, search (below)
       imret_tensor_free(&in); imret_image_free(&img);
       imret_context_destroy(ctx); imret_model_free(model);

   BUILD
       cc -O2 -fopenmp -I/usr/include/stb app.c -lm        (OpenMP optional)
   stb_image.h and stb_image_resize.h (Debian: libstb-dev) must be on the include path
   unless IMRET_NO_STDIO... see options. They are included by the implementation only.

   COMPILE-TIME OPTIONS (define before including with IMRET_IMPLEMENTATION)
   | option                         | effect                                                  |
   |--------------------------------|---------------------------------------------------------|
   | IMRET_IMPLEMENTATION           | emit the implementation in this translation unit        |
   | IMRET_STATIC                   | make every function static (private copy per unit)      |
   | IMRET_NO_OPENMP                | never use OpenMP even when compiled with -fopenmp       |
   | IMRET_NO_SIMD                  | only the portable scalar kernels                        |
   | IMRET_USE_CBLAS                | route GEMM-shaped layers to any cblas (e.g. OpenBLAS)   |
   | IMRET_MALLOC/REALLOC/FREE      | custom allocator (all three together)                   |
   | IMRET_NO_STDIO                 | no file functions (load from memory only)               |
   | IMRET_NO_STB_IMAGE             | do not include stb_image.h (host decodes images itself) |
   | IMRET_STB_IMAGE_INCLUDED       | host already included stb_image[_resize].h impls        |

   TABLE OF CONTENTS (search for the banner text)
     PUBLIC API
       [api: results and errors]  [api: SIMD dispatch]  [api: tensors and images]  [api: models]
       [api: contexts and forward pass]  [api: descriptors]
     IMPLEMENTATION
       [impl: util and errors]          allocation, overflow checks, last-error, crc32
       [impl: threads and dispatch]     CPU features (cpuid/XGETBV), IMRET_SIMD, OpenMP
       [impl: kernels (scalar)]         conv (im2col + GEMM), pools, linear
       [impl: weight file]              .imw parsing and validation
       [impl: models]                   VGG / ResNet tables, BN folding, model load
       [impl: forward pass]             workspace planning, trunk, classifier heads
       [impl: file I/O]                 bounded whole-file reads, mmap
       [impl: image I/O]                decode, EXIF orientation, resize, normalisation
       [impl: descriptors]              MAC / SPoC / GeM / R-MAC pooling, multi-scale, 8 transforms
*/
#ifndef IMRET_H
#define IMRET_H

#include <stddef.h>
#include <stdint.h>

#ifdef IMRET_STATIC
#define IMRET_API static
#else
#define IMRET_API extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define IMRET_VERSION_MAJOR 0
#define IMRET_VERSION_MINOR 1
#define IMRET_VERSION_PATCH 0

/* ======================================================================================
   [api: results and errors]
   Every fallible function returns imret_result (0 = IMRET_OK). The detail of the most
   recent failure on the calling thread is in imret_last_error().
   ====================================================================================== */
typedef enum imret_result {
    IMRET_OK = 0,
    IMRET_ERROR_INVALID_ARGUMENT = 1, /* NULL pointer, absurd option, k == 0, ...        */
    IMRET_ERROR_OUT_OF_MEMORY = 2,    /* allocation failed or size arithmetic overflowed */
    IMRET_ERROR_IO = 3,               /* open/read/write/fsync/rename failed             */
    IMRET_ERROR_FORMAT = 4,           /* malformed or truncated file                     */
    IMRET_ERROR_VERSION = 5,          /* file written by an unsupported version          */
    IMRET_ERROR_CHECKSUM = 6,         /* file contents do not match their checksum       */
    IMRET_ERROR_SHAPE = 7,            /* tensor/vector dimensions do not match           */
    IMRET_ERROR_MISSING = 8,          /* a required tensor or field is missing           */
    IMRET_ERROR_UNSUPPORTED = 9,      /* architecture, dtype or feature not supported    */
    IMRET_ERROR_IMAGE_DECODE = 10,    /* not an image, or a corrupt one                  */
    IMRET_ERROR_IMAGE_SIZE = 11,      /* image too small or too large for the limits     */
    IMRET_ERROR_LIMIT = 12,           /* a resource limit (file size, memory) was hit    */
    IMRET_ERROR_NOT_FOUND = 13,       /* id not present                                  */
    IMRET_ERROR_DUPLICATE = 14,       /* id already present                              */
    IMRET_ERROR_MISMATCH = 15         /* objects from different models/settings mixed    */
} imret_result;

/* Short fixed description of a result code ("format error", ...). Never NULL. */
IMRET_API const char *imret_result_string(imret_result r);
/* Detail of the last failure on this thread ("weights: tensor layer3.2.conv1.weight has
   shape 256x1024x1x1, expected 256x512x1x1"). Valid until the next failing call on the
   same thread. Empty string when nothing failed yet. */
IMRET_API const char *imret_last_error(void);

/* ======================================================================================
   [api: SIMD dispatch]
   Kernels are chosen at run time (cpuid + XGETBV, detected once). IMRET_SIMD=scalar|avx2|
   avx512|neon in the environment caps the level for the whole process (testing and
   benchmarking); options of contexts and searches can cap it per call.
   ====================================================================================== */
typedef enum imret_simd {
    IMRET_SIMD_AUTO = 0,   /* best available (after the IMRET_SIMD environment cap)      */
    IMRET_SIMD_SCALAR = 1, /* portable C; the oracle of every test                      */
    IMRET_SIMD_AVX2 = 2,   /* x86-64 AVX2 + FMA + F16C                                   */
    IMRET_SIMD_AVX512 = 3, /* x86-64 AVX-512 F/BW/VL/DQ (+VPOPCNTDQ, BF16, VNNI if there) */
    IMRET_SIMD_NEON = 4    /* aarch64 Advanced SIMD                                      */
} imret_simd;
/* Level used for IMRET_SIMD_AUTO on this machine and process. */
IMRET_API imret_simd imret_simd_detect(void);
IMRET_API const char *imret_simd_name(imret_simd s);

/* ======================================================================================
   [api: tensors and images]
   ====================================================================================== */
typedef struct imret_model imret_model; /* opaque; read-only after load, shareable */

/* A dense float tensor in C x H x W order (batch 1). Owned by whoever created it:
   free with imret_tensor_free() unless documented as borrowed. */
typedef struct imret_tensor {
    int c, h, w;
    float *data;
} imret_tensor;

/* An 8-bit image, interleaved channels (1 = grey, 3 = RGB, 4 = RGBA), rows top to bottom,
   EXIF orientation already applied by the loaders. */
typedef struct imret_image {
    int width, height, channels;
    uint8_t *pixels;
} imret_image;

IMRET_API void imret_tensor_free(imret_tensor *t);
IMRET_API void imret_image_free(imret_image *img);

/* Limits and options of the image loaders. */
typedef struct imret_image_config {
    size_t max_pixels;     /* refuse images whose header declares more; checked BEFORE
                              decoding (decompression bombs). Default 1<<28 (268 Mpx).   */
    size_t max_file_bytes; /* refuse larger files (file loader). Default 1 GiB.          */
    int apply_exif;        /* 1 (default): rotate/flip JPEGs per their EXIF orientation */
} imret_image_config;
IMRET_API imret_image_config imret_image_config_init(void);

/* Decode a JPEG/PNG/BMP/GIF/TGA/PSD/HDR/PIC/PNM file (format detected from content, not
   from the name) to 8-bit pixels, with the EXIF orientation of JPEGs applied. cfg may be
   NULL. Errors: IMRET_ERROR_IO (cannot read), IMRET_ERROR_IMAGE_DECODE (not an image or
   corrupt; includes zero-byte files), IMRET_ERROR_IMAGE_SIZE (over max_pixels),
   IMRET_ERROR_LIMIT (file over max_file_bytes). */
IMRET_API imret_result imret_image_load_file(const char *path, const imret_image_config *cfg,
                                             imret_image *out);
IMRET_API imret_result imret_image_load_memory(const void *data, size_t size,
                                               const imret_image_config *cfg, imret_image *out);
/* EXIF orientation (1..8) of a JPEG in memory; 1 when absent or not a JPEG. */
IMRET_API int imret_jpeg_orientation(const void *data, size_t size);
/* Apply an EXIF orientation (1..8) in place: afterwards the pixels are upright. */
IMRET_API imret_result imret_image_orient(imret_image *img, int orientation);

typedef enum imret_resize_mode {
    IMRET_RESIZE_LONGEST_SIDE = 0, /* keep aspect ratio, longest side = longest_side  */
    IMRET_RESIZE_CENTER_CROP = 1,  /* shorter side = resize_side, then crop_size^2 centre
                                      crop (ImageNet classification protocol)          */
    IMRET_RESIZE_NONE = 2          /* use the image at its own size                   */
} imret_resize_mode;

/* Resampling filters of stb_image_resize (its triangle filter is not offered: in the
   stb_image_resize 0.97 that Debian ships it computes wrong weights when shrinking). */
typedef enum imret_resize_filter {
    IMRET_FILTER_CATMULLROM = 0, /* cubic, sharp; close to Pillow's BICUBIC (0.14 levels)  */
    IMRET_FILTER_MITCHELL = 1,   /* cubic, softer (stb's default when shrinking); imret's
                                    default: it reproduces the reference mAPs best       */
    IMRET_FILTER_BOX = 2,        /* area average                                         */
    IMRET_FILTER_BSPLINE = 3     /* cubic B-spline, smoothest                            */
} imret_resize_filter;

typedef struct imret_preprocess_config {
    imret_resize_mode mode;
    int longest_side;      /* LONGEST_SIDE: target of the longest side; default 512    */
    int upscale;           /* LONGEST_SIDE: 1 (default) also enlarges smaller images   */
    int resize_side;       /* CENTER_CROP: default 256                                  */
    int crop_size;         /* CENTER_CROP: default 224                                  */
    int min_side;          /* result's shorter side is at least this (tiny images are
                              enlarged); default 32, the smallest input the nets take  */
    int min_source_side;   /* refuse images with a side below this; default 1           */
    uint8_t background[3]; /* RGB colour alpha channels are composited on; default
                              128,128,128 (neutral grey)                                */
    imret_resize_filter filter; /* default IMRET_FILTER_MITCHELL                        */
} imret_preprocess_config;
IMRET_API imret_preprocess_config imret_preprocess_config_init(void);

/* Image -> network input (3 x H x W floats): grey/alpha handled, resized with
   stb_image_resize (cfg->filter, on 8-bit values, edges clamped), then
   channel order, scale, mean and std from the model file. *out is owned by the caller. */
IMRET_API imret_result imret_preprocess(const imret_model *model, const imret_image *img,
                                        const imret_preprocess_config *cfg, imret_tensor *out);

/* ======================================================================================
   [api: models]
   ====================================================================================== */

typedef enum imret_arch {
    IMRET_ARCH_VGG11, IMRET_ARCH_VGG13, IMRET_ARCH_VGG16, IMRET_ARCH_VGG19,
    IMRET_ARCH_VGG11_BN, IMRET_ARCH_VGG13_BN, IMRET_ARCH_VGG16_BN, IMRET_ARCH_VGG19_BN,
    IMRET_ARCH_RESNET18, IMRET_ARCH_RESNET34, IMRET_ARCH_RESNET50, IMRET_ARCH_RESNET101,
    IMRET_ARCH_RESNET152, IMRET_ARCH_KERAS_RESNET50,
    IMRET_ARCH_COUNT
} imret_arch;

typedef struct imret_model_config {
    int use_mmap;             /* 1: map the file read-only instead of reading it (files only) */
    size_t max_file_bytes;    /* refuse larger files; default 2 GiB                          */
    int skip_checksum;        /* 1: do not verify the CRC (faster load of trusted files)     */
} imret_model_config;
IMRET_API imret_model_config imret_model_config_init(void);

typedef struct imret_model_info {
    imret_arch arch;
    const char *arch_name;    /* "resnet50", "keras_resnet50", "vgg16_bn", ...   */
    int feature_channels;     /* channels of the last conv feature map (512/2048) */
    int feature_stride;       /* input pixels per feature-map cell (16 VGG, 32 ResNet) */
    int num_classes;          /* 0 when the file has no classifier                */
    int input_bgr;            /* 1: network expects BGR channel order             */
    float input_scale;        /* pixel (0..255) multiplier before mean/std        */
    float mean[3], std[3];    /* in network channel order                         */
    size_t parameter_count;   /* number of weights in the file                    */
    const char *source;       /* provenance string from the file header, or ""   */
    uint64_t fingerprint;     /* identifies the weights (file CRC and size): indexes
                                 record it so vectors of different models never mix */
} imret_model_info;

/* Load a .imw weight file (see weights/FORMAT.md). Every header field, offset, length,
   dtype and shape is validated against the file size and the architecture before any
   tensor data is used. cfg may be NULL (defaults). On success *out owns the model. */
IMRET_API imret_result imret_model_load_file(const char *path, const imret_model_config *cfg,
                                             imret_model **out);
/* Same from memory; the bytes are copied (they may be freed after the call). */
IMRET_API imret_result imret_model_load_memory(const void *data, size_t size,
                                               const imret_model_config *cfg, imret_model **out);
IMRET_API void imret_model_free(imret_model *model);
IMRET_API imret_result imret_model_get_info(const imret_model *model, imret_model_info *info);
IMRET_API const char *imret_arch_name(imret_arch arch);

/* ======================================================================================
   [api: contexts and forward pass]
   A context owns the workspace of forward passes (one arena, grown only when a larger
   input arrives) and the thread count. One context per thread; many contexts may share
   one model.
   ====================================================================================== */
typedef struct imret_context imret_context;

typedef struct imret_context_config {
    int threads;              /* OpenMP threads for this context; 0 = all cores, 1 = serial */
    size_t max_workspace_bytes; /* refuse inputs needing more; default 4 GiB            */
    imret_simd simd;          /* kernel level: AUTO (default) = best the CPU allows, capped by
                                 the IMRET_SIMD environment variable; SCALAR = portable    */
} imret_context_config;
IMRET_API imret_context_config imret_context_config_init(void);

IMRET_API imret_result imret_context_create(const imret_model *model, const imret_context_config *cfg,
                                            imret_context **out);
IMRET_API void imret_context_destroy(imret_context *ctx);

/* Observer of intermediate results: called with a stage name ("stem", "stage1".."stage4"
   for ResNet / "block1".."block5" for VGG, "features", "pooled", "logits") and a borrowed
   tensor valid only during the call. For tests and debugging. */
typedef void (*imret_stage_fn)(void *user, const char *stage, const imret_tensor *t);

typedef struct imret_forward_options {
    imret_stage_fn on_stage;  /* may be NULL */
    void *user;
} imret_forward_options;

/* Run the trunk on a preprocessed input (3 x H x W, H and W >= 32) and return the last conv
   feature map in *features (borrowed from ctx: valid until the next call on ctx).
   opts may be NULL. */
IMRET_API imret_result imret_forward(imret_context *ctx, const imret_tensor *input,
                                     imret_tensor *features, const imret_forward_options *opts);
/* Trunk + classifier head: writes num_classes raw scores (pre-softmax) to logits.
   IMRET_ERROR_UNSUPPORTED when the file has no classifier. */
IMRET_API imret_result imret_forward_logits(imret_context *ctx, const imret_tensor *input,
                                            float *logits, size_t logits_len,
                                            const imret_forward_options *opts);

/* ======================================================================================
   [api: descriptors]
   Global descriptors from the last conv feature map, L2-normalised (cosine = dot product).
   ====================================================================================== */
typedef enum imret_pooling {
    IMRET_POOL_GEM = 0,  /* generalised mean, (mean x^p)^(1/p) (Radenovic et al.); default */
    IMRET_POOL_MAC = 1,  /* max per channel                                              */
    IMRET_POOL_SPOC = 2, /* mean per channel (sum pooling)                               */
    IMRET_POOL_RMAC = 3  /* regional MAC, L levels of square regions (Tolias et al.),
                            computed exactly as cirtorch's rmac()                       */
} imret_pooling;

typedef enum imret_setting {
    IMRET_SETTING_RETRIEVAL = 0, /* longest side 512: "find similar images"          */
    IMRET_SETTING_DUPLICATE = 1  /* longest side 224, transform-invariant matching:
                                    cheaper, and finds more copies at zero false pairs */
} imret_setting;

typedef struct imret_descriptor_config {
    imret_pooling pooling;
    float gem_p;          /* GeM exponent; default 3                                      */
    int rmac_levels;      /* R-MAC levels L; default 3                                    */
    int longest_side;     /* input size; default 512 (224 for the duplicate setting)      */
    int multiscale;       /* 1: average the descriptors at scales 1, 1/sqrt(2), 1/2        */
    imret_setting setting;
    imret_preprocess_config preprocess; /* resize filter, background, minimum sizes    */
} imret_descriptor_config;
/* Defaults of a setting (GeM p=3, R-MAC L=3, single scale). */
IMRET_API imret_descriptor_config imret_descriptor_config_init(imret_setting setting);
IMRET_API const char *imret_pooling_name(imret_pooling p);

/* Pool a feature map (C x H x W, values >= 0) into out[C], L2-normalised. */
IMRET_API imret_result imret_pool(const imret_tensor *fmap, const imret_descriptor_config *cfg, float *out,
                                  size_t out_len);
/* Image -> descriptor in one call, with the model's own preprocessing. out_len must be at
   least the model's feature_channels. */
IMRET_API imret_result imret_describe(imret_context *ctx, const imret_image *img, const imret_descriptor_config *cfg,
                                      float *out, size_t out_len);
/* Descriptors of the image under the 8 rotations/flips (EXIF orientations 1..8: identity,
   mirror, 180, flip, transpose, 90 CW, transverse, 90 CCW) into out[8][C]. */
IMRET_API imret_result imret_describe_transforms(imret_context *ctx, const imret_image *img,
                                                 const imret_descriptor_config *cfg, float *out, size_t out_len);
/* Similarity for transform-invariant matching: max over the q_count query descriptors of
   their dot product with db (all of dimension dim). */
IMRET_API float imret_similarity_best(const float *queries, int q_count, const float *db, size_t dim);

#ifdef __cplusplus
}
#endif
#endif /* IMRET_H */

/* ######################################################################################
   IMPLEMENTATION
   ###################################################################################### */
#ifdef IMRET_IMPLEMENTATION
#ifndef IMRET_IMPLEMENTATION_DONE
#define IMRET_IMPLEMENTATION_DONE

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <limits.h>
#include <errno.h>

#if defined(_OPENMP) && !defined(IMRET_NO_OPENMP)
#include <omp.h>
#define IMRET__OMP 1
#else
#define IMRET__OMP 0
#endif

#if !defined(IMRET_MALLOC)
#define IMRET_MALLOC(sz) malloc(sz)
#define IMRET_REALLOC(p, sz) realloc(p, sz)
#define IMRET_FREE(p) free(p)
#endif


#if defined(__GNUC__) || defined(__clang__)
#define IMRET__UNUSED __attribute__((unused))
#else
#define IMRET__UNUSED
#endif

#ifdef IMRET_STATIC
#define IMRET_DEF static IMRET__UNUSED /* a static copy may use only part of the API */
#else
#define IMRET_DEF
#endif

#if defined(_MSC_VER)
#define IMRET__THREAD_LOCAL __declspec(thread)
#elif defined(__GNUC__) || defined(__clang__)
#define IMRET__THREAD_LOCAL __thread
#else
#define IMRET__THREAD_LOCAL /* no TLS: last-error detail is shared between threads */
#endif

/* ======================================================================================
   [impl: util and errors]
   ====================================================================================== */
static IMRET__THREAD_LOCAL char imret__errbuf[512];

IMRET_DEF const char *imret_result_string(imret_result r) {
    switch (r) {
    case IMRET_OK: return "ok";
    case IMRET_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case IMRET_ERROR_OUT_OF_MEMORY: return "out of memory";
    case IMRET_ERROR_IO: return "i/o error";
    case IMRET_ERROR_FORMAT: return "malformed file";
    case IMRET_ERROR_VERSION: return "unsupported file version";
    case IMRET_ERROR_CHECKSUM: return "checksum mismatch";
    case IMRET_ERROR_SHAPE: return "dimension mismatch";
    case IMRET_ERROR_MISSING: return "missing field or tensor";
    case IMRET_ERROR_UNSUPPORTED: return "unsupported";
    case IMRET_ERROR_IMAGE_DECODE: return "cannot decode image";
    case IMRET_ERROR_IMAGE_SIZE: return "image size out of range";
    case IMRET_ERROR_LIMIT: return "resource limit exceeded";
    case IMRET_ERROR_NOT_FOUND: return "not found";
    case IMRET_ERROR_DUPLICATE: return "duplicate";
    case IMRET_ERROR_MISMATCH: return "mismatched model or settings";
    }
    return "unknown result code";
}

IMRET_DEF const char *imret_last_error(void) { return imret__errbuf; }

/* Record the detail of a failure and return its code: `return imret__fail(IMRET_ERROR_X,
   "weights: ...", ...);`. The message names the object and the reason. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static imret_result imret__fail(imret_result r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(imret__errbuf, sizeof imret__errbuf, fmt, ap);
    va_end(ap);
    return r;
}

/* Overflow-checked size arithmetic: return 0 on overflow. */
static int imret__mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static IMRET__UNUSED int imret__add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}
/* a*b*c*d with overflow check (use 1 for unused factors). */
static IMRET__UNUSED int imret__mul4(size_t a, size_t b, size_t c, size_t d, size_t *out) {
    size_t t;
    return imret__mul(a, b, &t) && imret__mul(t, c, &t) && imret__mul(t, d, out);
}

static void *imret__malloc(size_t n) { return IMRET_MALLOC(n ? n : 1); }
/* calloc through IMRET_MALLOC, overflow-checked. */
static IMRET__UNUSED void *imret__calloc(size_t count, size_t size) {
    size_t n;
    void *p;
    if (!imret__mul(count, size, &n)) return NULL;
    p = imret__malloc(n);
    if (p) memset(p, 0, n);
    return p;
}

static uint32_t imret__rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static IMRET__UNUSED uint64_t imret__rd64(const uint8_t *p) { return imret__rd32(p) | (uint64_t)imret__rd32(p + 4) << 32; }
static IMRET__UNUSED void imret__wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static IMRET__UNUSED void imret__wr64(uint8_t *p, uint64_t v) { imret__wr32(p, (uint32_t)v); imret__wr32(p + 4, (uint32_t)(v >> 32)); }

/* CRC-32 (zlib / ISO-HDLC polynomial, reflected 0xEDB88320), slicing-by-4 tables built on
   first use. crc = imret__crc32(0, data, n) matches Python's zlib.crc32(data). */
static uint32_t imret__crc_table[4][256];
static volatile int imret__crc_ready;
static void imret__crc_init(void) {
    uint32_t i, j, c;
    if (imret__crc_ready) return;
    for (i = 0; i < 256; i++) {
        c = i;
        for (j = 0; j < 8; j++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        imret__crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++)
        for (j = 1; j < 4; j++)
            imret__crc_table[j][i] = imret__crc_table[0][imret__crc_table[j - 1][i] & 0xff] ^ (imret__crc_table[j - 1][i] >> 8);
    imret__crc_ready = 1; /* tables are deterministic, so a racing second init is harmless */
}
static uint32_t imret__crc32(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    imret__crc_init();
    crc = ~crc;
    while (n >= 4) {
        crc ^= imret__rd32(p);
        crc = imret__crc_table[3][crc & 0xff] ^ imret__crc_table[2][(crc >> 8) & 0xff] ^
              imret__crc_table[1][(crc >> 16) & 0xff] ^ imret__crc_table[0][crc >> 24];
        p += 4;
        n -= 4;
    }
    while (n--) crc = imret__crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ======================================================================================
   [impl: threads and dispatch]
   The CPU-feature cache is the only global state of the library. Each ISA body is compiled
   with a target attribute, so no -march flag is needed; IMRET__CPU_* bits say what the CPU
   and OS (XGETBV) allow.
   ====================================================================================== */
#if !defined(IMRET_NO_SIMD) && (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define IMRET__X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define IMRET__X86 0
#endif
#if !defined(IMRET_NO_SIMD) && defined(__aarch64__)
#define IMRET__NEON 1
#include <arm_neon.h>
#else
#define IMRET__NEON 0
#endif

enum {
    IMRET__CPU_AVX2 = 1u << 0,      /* AVX2 + FMA + F16C, OS saves YMM           */
    IMRET__CPU_AVX512 = 1u << 1,    /* AVX-512 F+BW+VL+DQ, OS saves ZMM/opmask   */
    IMRET__CPU_VPOPCNTDQ = 1u << 2, /* AVX512_VPOPCNTDQ                          */
    IMRET__CPU_BF16 = 1u << 3,      /* AVX512_BF16                               */
    IMRET__CPU_VNNI = 1u << 4,      /* AVX512_VNNI                               */
    IMRET__CPU_NEON = 1u << 5,      /* aarch64 Advanced SIMD (always)            */
    IMRET__CPU_DETECTED = 1 << 30
};
static volatile unsigned imret__cpu_cache;

static unsigned imret__cpu_features(void) {
    unsigned f = imret__cpu_cache;
    if (f) return f;
    f = IMRET__CPU_DETECTED;
#if IMRET__X86
    {
        unsigned a, b, c, d, xcr0 = 0;
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 27))) { /* OSXSAVE */
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = lo;
            (void)hi;
        }
        if ((xcr0 & 6) == 6 && (c & (1u << 12)) && (c & (1u << 29)) && (c & (1u << 28)) &&
            __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            unsigned b7 = b, c7 = c;
            if (b7 & (1u << 5)) f |= IMRET__CPU_AVX2; /* + FMA (c1 bit 12) + F16C (bit 29) */
            if ((f & IMRET__CPU_AVX2) && (xcr0 & 0xe6) == 0xe6 && (b7 & (1u << 16)) &&
                (b7 & (1u << 30)) && (b7 & (1u << 31)) && (b7 & (1u << 17))) {
                f |= IMRET__CPU_AVX512;
                if (c7 & (1u << 14)) f |= IMRET__CPU_VPOPCNTDQ;
                if (c7 & (1u << 11)) f |= IMRET__CPU_VNNI;
                if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5))) f |= IMRET__CPU_BF16;
            }
        }
    }
#endif
#if IMRET__NEON
    f |= IMRET__CPU_NEON;
#endif
    imret__cpu_cache = f; /* idempotent: a race writes the same value */
    return f;
}

static imret_simd imret__simd_best_hw(void) {
    unsigned f = imret__cpu_features();
    if (f & IMRET__CPU_AVX512) return IMRET_SIMD_AVX512;
    if (f & IMRET__CPU_AVX2) return IMRET_SIMD_AVX2;
    if (f & IMRET__CPU_NEON) return IMRET_SIMD_NEON;
    return IMRET_SIMD_SCALAR;
}

/* Level to use for a request: AUTO -> best the hardware allows, capped by the IMRET_SIMD
   environment variable; an explicit request is honoured when the hardware allows it and
   otherwise lowered to the best available level below it. */
static imret_simd imret__simd_resolve(imret_simd requested) {
    imret_simd hw = imret__simd_best_hw(), cap = hw;
    const char *env = getenv("IMRET_SIMD");
    if (env) {
        if (!strcmp(env, "scalar")) cap = IMRET_SIMD_SCALAR;
        else if (!strcmp(env, "avx2") && hw >= IMRET_SIMD_AVX2 && hw != IMRET_SIMD_NEON) cap = IMRET_SIMD_AVX2;
        else if (!strcmp(env, "avx512") && hw == IMRET_SIMD_AVX512) cap = IMRET_SIMD_AVX512;
    }
    if (requested == IMRET_SIMD_AUTO) return cap;
    if (requested == IMRET_SIMD_SCALAR) return IMRET_SIMD_SCALAR;
    if (requested == IMRET_SIMD_NEON) return hw == IMRET_SIMD_NEON ? IMRET_SIMD_NEON : IMRET_SIMD_SCALAR;
    if (hw == IMRET_SIMD_NEON) return IMRET_SIMD_SCALAR;
    return requested < hw ? requested : hw;
}

IMRET_DEF imret_simd imret_simd_detect(void) { return imret__simd_resolve(IMRET_SIMD_AUTO); }
IMRET_DEF const char *imret_simd_name(imret_simd s) {
    switch (s) {
    case IMRET_SIMD_AUTO: return "auto";
    case IMRET_SIMD_SCALAR: return "scalar";
    case IMRET_SIMD_AVX2: return "avx2";
    case IMRET_SIMD_AVX512: return "avx512";
    case IMRET_SIMD_NEON: return "neon";
    }
    return "unknown";
}

/* Threads to use for an option value: 0 = all cores (OpenMP's default), n = n. Always 1
   without OpenMP. */
static int imret__threads(int requested) {
#if IMRET__OMP
    if (requested <= 0) return omp_get_max_threads();
    return requested;
#else
    (void)requested;
    return 1;
#endif
}

/* ======================================================================================
   [impl: kernels (scalar)]
   The portable kernels. They are the oracle of the SIMD paths and are written to be read
   against the math. Layout: activations C x H x W (channel planes), convolution weights
   out x (in*kh*kw), so a convolution is one GEMM  out[oc][p] = sum_k W[oc][k] * col[k][p]
   over an im2col matrix (or the input itself for 1x1 stride-1 convolutions).
   ====================================================================================== */
#if IMRET__OMP
#define IMRET__PRAGMA_SIMD _Pragma("omp simd")
#else
#define IMRET__PRAGMA_SIMD
#endif

/* Output size of a convolution/pool along one axis (floor mode, as PyTorch). */
static int imret__out_dim(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

/* Epilogue shared by every GEMM kernel: y = acc + bias[m] (+ residual), then ReLU. */
typedef struct imret__epilogue {
    const float *bias;     /* [M] or NULL      */
    const float *residual; /* [M][ldc] or NULL */
    int relu;
} imret__epilogue;

/* Packed weights: panel p holds output channels 8p..8p+7, k-major, zero-padded rows. */
#define IMRET__MR 8
static float imret__wp_at(const float *wp, int K, int m, int k) {
    return wp[(size_t)(m / IMRET__MR) * IMRET__MR * K + (size_t)k * IMRET__MR + m % IMRET__MR];
}

/* Row-major M x K weights -> a fresh packed copy (NULL when out of memory). */
static float *imret__pack_weights(const float *w, int M, int K) {
    size_t panels = ((size_t)M + IMRET__MR - 1) / IMRET__MR, k;
    float *wp = (float *)imret__calloc(panels * IMRET__MR * (size_t)K, sizeof(float));
    int m;
    if (!wp) return NULL;
    for (m = 0; m < M; m++)
        for (k = 0; k < (size_t)K; k++)
            wp[(size_t)(m / IMRET__MR) * IMRET__MR * K + k * IMRET__MR + m % IMRET__MR] = w[(size_t)m * K + k];
    return wp;
}

/* Columns per tile: keep the K x TN panel of B around 256 KiB so it stays in L2 while the
   row tiles of A walk over it (a tile is reused M/IMRET__TM times). */
#define IMRET__TM 4
#define IMRET__TN_MAX 256
static int imret__gemm_tn(int K) {
    int tn = 65536 / (K > 0 ? K : 1);
    tn = tn / 16 * 16;
    if (tn < 16) tn = 16;
    if (tn > IMRET__TN_MAX) tn = IMRET__TN_MAX;
    return tn;
}

/* C[M][N] = epilogue(A[M][K] * B[K][N]); A packed (imret__wp_at), B rows ldb apart, C (and
   the residual) rows ldc apart. Tiles of IMRET__TM rows
   x TN columns are independent, and each sums over k in the same order whatever the thread
   count, so results are bit-identical for any number of threads. */
static void imret__gemm_scalar(int M, int N, int K, const float *A, const float *B, size_t ldb,
                               float *C, size_t ldc, const imret__epilogue *ep, int threads) {
    int tn = imret__gemm_tn(K);
    long m_tiles = (M + IMRET__TM - 1) / IMRET__TM, n_tiles = (N + tn - 1) / tn;
    long total = m_tiles * n_tiles, t;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && total > 1)
#endif
    for (t = 0; t < total; t++) {
        float acc[IMRET__TM][IMRET__TN_MAX];
        int m0 = (int)(t % m_tiles) * IMRET__TM, n0 = (int)(t / m_tiles) * tn;
        int mn = M - m0 < IMRET__TM ? M - m0 : IMRET__TM, nn = N - n0 < tn ? N - n0 : tn;
        int i, j, kk;
        for (i = 0; i < mn; i++)
            for (j = 0; j < nn; j++) acc[i][j] = 0.0f;
        for (kk = 0; kk < K; kk++) {
            const float *brow = B + (size_t)kk * ldb + n0;
            for (i = 0; i < mn; i++) {
                float a = imret__wp_at(A, K, m0 + i, kk);
                float *arow = acc[i];
                IMRET__PRAGMA_SIMD
                for (j = 0; j < nn; j++) arow[j] += a * brow[j];
            }
        }
        for (i = 0; i < mn; i++) {
            float bias = ep->bias ? ep->bias[m0 + i] : 0.0f;
            float *crow = C + (size_t)(m0 + i) * ldc + n0;
            const float *rrow = ep->residual ? ep->residual + (size_t)(m0 + i) * ldc + n0 : NULL;
            for (j = 0; j < nn; j++) {
                float v = acc[i][j] + bias;
                if (rrow) v += rrow[j];
                if (ep->relu && v < 0.0f) v = 0.0f;
                crow[j] = v;
            }
        }
    }
}

/* im2col for a k x k convolution, output pixels [p0, p0+pn): col[(ic*k + ky)*k + kx][p-p0] =
   in[ic][iy][ix] for p = oy*ow + ox, zero outside the image. Working on pixel ranges bounds
   the col buffer (the caller chunks large layers). */
static void imret__im2col(const float *in, int ic_n, int h, int w, int k, int stride, int pad,
                          int ow, long p0, long pn, float *col, int threads) {
    long rows = (long)ic_n * k * k, r;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
        int ic = (int)(r / (k * k)), ky = (int)(r / k % k), kx = (int)(r % k);
        const float *plane = in + (size_t)ic * h * w;
        float *dst = col + (size_t)r * pn;
        long p;
        for (p = 0; p < pn; p++) {
            int oy = (int)((p0 + p) / ow), ox = (int)((p0 + p) % ow);
            int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
            dst[p] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? plane[(size_t)iy * w + ix] : 0.0f;
        }
    }
}

/* Max pool k x k / stride / pad; padded cells never win (PyTorch semantics). */
static void imret__maxpool(const float *in, int c, int h, int w, int k, int stride, int pad,
                           float *out, int oh, int ow, int threads) {
    int ch;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *plane = in + (size_t)ch * h * w;
        float *dst = out + (size_t)ch * oh * ow;
        int oy, ox, ky, kx;
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                float m = -INFINITY;
                for (ky = 0; ky < k; ky++) {
                    int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= h) continue;
                    for (kx = 0; kx < k; kx++) {
                        int ix = ox * stride - pad + kx;
                        if (ix >= 0 && ix < w && plane[iy * w + ix] > m) m = plane[iy * w + ix];
                    }
                }
                dst[oy * ow + ox] = m;
            }
    }
}

/* PyTorch AdaptiveAvgPool2d: cell i covers [floor(i*n/o), ceil((i+1)*n/o)). */
static void imret__adaptive_avgpool(const float *in, int c, int h, int w, int oh, int ow, float *out) {
    int ch, oy, ox, y, x;
    for (ch = 0; ch < c; ch++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                int y0 = oy * h / oh, y1 = ((oy + 1) * h + oh - 1) / oh;
                int x0 = ox * w / ow, x1 = ((ox + 1) * w + ow - 1) / ow;
                double s = 0.0;
                for (y = y0; y < y1; y++)
                    for (x = x0; x < x1; x++) s += in[((size_t)ch * h + y) * w + x];
                out[((size_t)ch * oh + oy) * ow + ox] = (float)(s / ((y1 - y0) * (x1 - x0)));
            }
}

/* y[o] = b[o] + sum_i W[o][i] x[i]  (optionally ReLU). */
static void imret__linear(const float *W, const float *b, const float *x, int in_n, int out_n,
                          int relu, float *y, int threads) {
    int o;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (o = 0; o < out_n; o++) {
        const float *row = W + (size_t)o * in_n;
        double s = b ? b[o] : 0.0;
        int i;
        for (i = 0; i < in_n; i++) s += (double)row[i] * x[i];
        y[o] = (relu && s < 0.0) ? 0.0f : (float)s;
    }
}

/* Kernel table: the convolution GEMM in its portable form (the oracle) and the packed SIMD
   form. The SIMD form never materialises im2col: it packs B panels straight from the input
   planes (see imret__pack_b). */
typedef struct imret__bsrc { /* B operand of a convolution GEMM: the implicit im2col matrix */
    const float *in;         /* input planes c x h x w                                     */
    int c, h, w, k, stride, pad, ow;
} imret__bsrc;

typedef void (*imret__ukr_fn)(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
                              int first, int last, const float *bias, const float *res, int relu);

typedef struct imret__kernels {
    imret_simd level;
    int nr;            /* columns per micro-tile (0: portable path, im2col + imret__gemm_scalar) */
    imret__ukr_fn ukr; /* MR x nr micro-kernel                                                  */
} imret__kernels;

/* ======================================================================================
   [impl: kernels (x86 SIMD)]
   GotoBLAS-style convolution GEMM. A (weights) is packed once at load in panels of
   IMRET__MR = 8 output channels, k-major (imret__wp_at). B is packed per (KC x NC) block in
   panels of nr pixels, k-major, straight from the input planes. The micro-kernel keeps an
   8 x nr tile of C in registers (AVX-512: nr = 32, 16 zmm accumulators; AVX2: nr = 16, two
   passes of 4 rows x 2 ymm). Blocking: KC = 256 (an A panel is 8 KiB, L1), NC = 192 (a B
   block is 192 KiB, L2, reused by every A panel of the tile). Tiles (NC columns x a range
   of A panels) are independent and always sum k in the same order, so results do not depend
   on the thread count. The epilogue (bias, residual, ReLU) is fused into the last KC block.
   ====================================================================================== */
#define IMRET__KC 256
#define IMRET__NC 192
#define IMRET__PACK_FLOATS ((size_t)IMRET__KC * IMRET__NC)

/* Pack rows [k0, k0+kc) x columns [n0, n0+nc) of the implicit im2col matrix of s into
   panels of nr columns: out[(j*kc + kk)*nr + t], zero-padded to whole panels. */
static void imret__pack_b(const imret__bsrc *s, int k0, int kc, long n0, int nc, int nr, float *out) {
    int kk, j, npan = (nc + nr - 1) / nr, k2 = s->k * s->k;
    int plain = s->k == 1 && s->stride == 1 && s->pad == 0;
    for (kk = 0; kk < kc; kk++) {
        int r = k0 + kk, ic = r / k2, ky = r / s->k % s->k, kx = r % s->k;
        const float *plane = s->in + (size_t)ic * s->h * s->w;
        for (j = 0; j < npan; j++) {
            float *dst = out + ((size_t)j * kc + kk) * nr;
            int cols = nc - j * nr < nr ? nc - j * nr : nr, t = 0;
            long p = n0 + (long)j * nr;
            if (plain) {
                memcpy(dst, plane + p, (size_t)cols * sizeof(float));
                t = cols;
            }
            while (t < cols) {
                int oy = (int)(p / s->ow), ox = (int)(p % s->ow);
                int run = cols - t < s->ow - ox ? cols - t : s->ow - ox, u;
                int iy = oy * s->stride - s->pad + ky;
                if (iy < 0 || iy >= s->h) {
                    memset(dst + t, 0, (size_t)run * sizeof(float));
                } else if (s->stride == 1) {
                    const float *row = plane + (size_t)iy * s->w;
                    int ix0 = ox - s->pad + kx, lo = ix0 < 0 ? -ix0 : 0, hi = s->w - ix0 < run ? s->w - ix0 : run;
                    if (lo > run) lo = run; /* the whole run may lie left of the image */
                    if (hi < lo) hi = lo;
                    for (u = 0; u < lo; u++) dst[t + u] = 0.0f;
                    if (hi > lo) memcpy(dst + t + lo, row + ix0 + lo, (size_t)(hi - lo) * sizeof(float));
                    for (u = hi; u < run; u++) dst[t + u] = 0.0f;
                } else {
                    const float *row = plane + (size_t)iy * s->w;
                    for (u = 0; u < run; u++) {
                        int ix = (ox + u) * s->stride - s->pad + kx;
                        dst[t + u] = (ix >= 0 && ix < s->w) ? row[ix] : 0.0f;
                    }
                }
                t += run;
                p += run;
            }
            for (; t < nr; t++) dst[t] = 0.0f;
        }
    }
}

#if IMRET__X86
#define IMRET__AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define IMRET__AVX2 __attribute__((target("avx2,fma,f16c")))

/* 8 x 32 micro-kernel: rows of C are 8 output channels, columns 32 pixels (2 zmm). */
IMRET__AVX512 static void imret__ukr_avx512(int kc, const float *a, const float *b, float *c, size_t ldc, int mr,
                                            int nr, int first, int last, const float *bias, const float *res, int relu) {
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    int k, i;
    if (first) {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm512_setzero_ps();
        c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = _mm512_setzero_ps();
    } else {
#define IMRET__LD(r) (r < mr ? _mm512_maskz_loadu_ps(m0, c + (size_t)r * ldc) : _mm512_setzero_ps())
#define IMRET__LD1(r) (r < mr ? _mm512_maskz_loadu_ps(m1, c + (size_t)r * ldc + 16) : _mm512_setzero_ps())
        c00 = IMRET__LD(0); c01 = IMRET__LD1(0); c10 = IMRET__LD(1); c11 = IMRET__LD1(1);
        c20 = IMRET__LD(2); c21 = IMRET__LD1(2); c30 = IMRET__LD(3); c31 = IMRET__LD1(3);
        c40 = IMRET__LD(4); c41 = IMRET__LD1(4); c50 = IMRET__LD(5); c51 = IMRET__LD1(5);
        c60 = IMRET__LD(6); c61 = IMRET__LD1(6); c70 = IMRET__LD(7); c71 = IMRET__LD1(7);
#undef IMRET__LD
#undef IMRET__LD1
    }
    for (k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), av;
        av = _mm512_set1_ps(a[0]); c00 = _mm512_fmadd_ps(av, b0, c00); c01 = _mm512_fmadd_ps(av, b1, c01);
        av = _mm512_set1_ps(a[1]); c10 = _mm512_fmadd_ps(av, b0, c10); c11 = _mm512_fmadd_ps(av, b1, c11);
        av = _mm512_set1_ps(a[2]); c20 = _mm512_fmadd_ps(av, b0, c20); c21 = _mm512_fmadd_ps(av, b1, c21);
        av = _mm512_set1_ps(a[3]); c30 = _mm512_fmadd_ps(av, b0, c30); c31 = _mm512_fmadd_ps(av, b1, c31);
        av = _mm512_set1_ps(a[4]); c40 = _mm512_fmadd_ps(av, b0, c40); c41 = _mm512_fmadd_ps(av, b1, c41);
        av = _mm512_set1_ps(a[5]); c50 = _mm512_fmadd_ps(av, b0, c50); c51 = _mm512_fmadd_ps(av, b1, c51);
        av = _mm512_set1_ps(a[6]); c60 = _mm512_fmadd_ps(av, b0, c60); c61 = _mm512_fmadd_ps(av, b1, c61);
        av = _mm512_set1_ps(a[7]); c70 = _mm512_fmadd_ps(av, b0, c70); c71 = _mm512_fmadd_ps(av, b1, c71);
        a += 8;
        b += 32;
    }
    {
        __m512 acc[8][2];
        acc[0][0] = c00; acc[0][1] = c01; acc[1][0] = c10; acc[1][1] = c11;
        acc[2][0] = c20; acc[2][1] = c21; acc[3][0] = c30; acc[3][1] = c31;
        acc[4][0] = c40; acc[4][1] = c41; acc[5][0] = c50; acc[5][1] = c51;
        acc[6][0] = c60; acc[6][1] = c61; acc[7][0] = c70; acc[7][1] = c71;
        for (i = 0; i < mr; i++) {
            __m512 v0 = acc[i][0], v1 = acc[i][1];
            float *crow = c + (size_t)i * ldc;
            if (last) {
                if (bias) {
                    __m512 bv = _mm512_set1_ps(bias[i]);
                    v0 = _mm512_add_ps(v0, bv);
                    v1 = _mm512_add_ps(v1, bv);
                }
                if (res) {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, res + (size_t)i * ldc));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, res + (size_t)i * ldc + 16));
                }
                if (relu) {
                    v0 = _mm512_max_ps(v0, _mm512_setzero_ps());
                    v1 = _mm512_max_ps(v1, _mm512_setzero_ps());
                }
            }
            _mm512_mask_storeu_ps(crow, m0, v0);
            _mm512_mask_storeu_ps(crow + 16, m1, v1);
        }
    }
}

IMRET__AVX2 static __m256i imret__mask8(int n) { /* lanes < n set */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 x 16 micro-kernel as two passes of 4 rows x 2 ymm (16 ymm registers are not enough for
   a single 8 x 16 pass). */
IMRET__AVX2 static void imret__ukr_avx2(int kc, const float *a, const float *b, float *c, size_t ldc, int mr,
                                        int nr, int first, int last, const float *bias, const float *res, int relu) {
    __m256i m0 = imret__mask8(nr), m1 = imret__mask8(nr - 8);
    int half, k, i;
    for (half = 0; half < 2 && half * 4 < mr; half++) {
        __m256 acc[4][2];
        const float *ap = a + half * 4, *bp = b;
        int rows = mr - half * 4 < 4 ? mr - half * 4 : 4;
        float *c0 = c + (size_t)half * 4 * ldc;
        for (i = 0; i < 4; i++) {
            if (first || i >= rows) {
                acc[i][0] = acc[i][1] = _mm256_setzero_ps();
            } else {
                acc[i][0] = _mm256_maskload_ps(c0 + (size_t)i * ldc, m0);
                acc[i][1] = _mm256_maskload_ps(c0 + (size_t)i * ldc + 8, m1);
            }
        }
        for (k = 0; k < kc; k++) {
            __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8), av;
            av = _mm256_broadcast_ss(ap + 0); acc[0][0] = _mm256_fmadd_ps(av, b0, acc[0][0]); acc[0][1] = _mm256_fmadd_ps(av, b1, acc[0][1]);
            av = _mm256_broadcast_ss(ap + 1); acc[1][0] = _mm256_fmadd_ps(av, b0, acc[1][0]); acc[1][1] = _mm256_fmadd_ps(av, b1, acc[1][1]);
            av = _mm256_broadcast_ss(ap + 2); acc[2][0] = _mm256_fmadd_ps(av, b0, acc[2][0]); acc[2][1] = _mm256_fmadd_ps(av, b1, acc[2][1]);
            av = _mm256_broadcast_ss(ap + 3); acc[3][0] = _mm256_fmadd_ps(av, b0, acc[3][0]); acc[3][1] = _mm256_fmadd_ps(av, b1, acc[3][1]);
            ap += 8;
            bp += 16;
        }
        for (i = 0; i < rows; i++) {
            __m256 v0 = acc[i][0], v1 = acc[i][1];
            float *crow = c0 + (size_t)i * ldc;
            if (last) {
                if (bias) {
                    __m256 bv = _mm256_set1_ps(bias[half * 4 + i]);
                    v0 = _mm256_add_ps(v0, bv);
                    v1 = _mm256_add_ps(v1, bv);
                }
                if (res) {
                    const float *rrow = res + (size_t)(half * 4 + i) * ldc;
                    v0 = _mm256_add_ps(v0, _mm256_maskload_ps(rrow, m0));
                    v1 = _mm256_add_ps(v1, _mm256_maskload_ps(rrow + 8, m1));
                }
                if (relu) {
                    v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
                    v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
                }
            }
            _mm256_maskstore_ps(crow, m0, v0);
            _mm256_maskstore_ps(crow + 8, m1, v1);
        }
    }
}
#endif /* IMRET__X86 */

static imret__kernels imret__kernels_for(imret_simd level) {
    imret__kernels k;
    memset(&k, 0, sizeof k);
    k.level = imret__simd_resolve(level);
#if IMRET__X86
    if (k.level == IMRET_SIMD_AVX512) { k.nr = 32; k.ukr = imret__ukr_avx512; }
    else if (k.level == IMRET_SIMD_AVX2) { k.nr = 16; k.ukr = imret__ukr_avx2; }
#endif
    return k;
}

/* out[M][N] = epilogue(A * im2col(src)) with packed A, on the SIMD micro-kernel. pack holds
   threads x IMRET__PACK_FLOATS floats. */
static void imret__conv_gemm_fast(const imret__kernels *kern, int M, long N, int K, const float *A, const imret__bsrc *src,
                                  float *out, const imret__epilogue *ep, float *pack, int threads) {
    int panels = (M + IMRET__MR - 1) / IMRET__MR, nr = kern->nr, chunks = 1;
    long nblocks = (N + IMRET__NC - 1) / IMRET__NC, tiles, t;
    /* enough tiles to balance the threads: split the channel panels when pixels are few */
    while (nblocks * chunks < 4L * threads && chunks * 2 <= panels) chunks *= 2;
    tiles = nblocks * chunks;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && tiles > 1)
#endif
    for (t = 0; t < tiles; t++) {
#if IMRET__OMP
        float *bp = pack + (size_t)omp_get_thread_num() * IMRET__PACK_FLOATS;
#else
        float *bp = pack;
#endif
        long n0 = (t / chunks) * IMRET__NC;
        int chunk = (int)(t % chunks), p0 = (int)((long)chunk * panels / chunks), p1 = (int)((long)(chunk + 1) * panels / chunks);
        int nc = N - n0 < IMRET__NC ? (int)(N - n0) : IMRET__NC, k0, p, j;
        for (k0 = 0; k0 < K; k0 += IMRET__KC) {
            int kc = K - k0 < IMRET__KC ? K - k0 : IMRET__KC;
            imret__pack_b(src, k0, kc, n0, nc, nr, bp);
            for (p = p0; p < p1; p++) {
                int m0 = p * IMRET__MR, mr = M - m0 < IMRET__MR ? M - m0 : IMRET__MR;
                const float *ap = A + (size_t)p * IMRET__MR * K + (size_t)k0 * IMRET__MR;
                for (j = 0; j * nr < nc; j++) {
                    long col = n0 + (long)j * nr;
                    kern->ukr(kc, ap, bp + (size_t)j * kc * nr, out + (size_t)m0 * N + col, (size_t)N, mr,
                              nc - j * nr < nr ? nc - j * nr : nr, k0 == 0, k0 + kc == K, ep->bias ? ep->bias + m0 : NULL,
                              ep->residual ? ep->residual + (size_t)m0 * N + col : NULL, ep->relu);
                }
            }
        }
    }
}

/* ======================================================================================
   [impl: weight file]
   .imw parsing (weights/FORMAT.md). Everything is validated against the byte count before
   a tensor is touched: header text, table bounds, each record's dtype/ndim/shape/offset/
   length, alignment and overlap, then the CRC of the whole file.
   ====================================================================================== */
#define IMRET__IMW_MAGIC "\x89IMRETW\n"
#define IMRET__IMW_FIXED 32
#define IMRET__IMW_RECORD 96
#define IMRET__IMW_MAX_HEADER 65536
#define IMRET__IMW_MAX_TENSORS 4096

enum { IMRET__DT_F32 = 1, IMRET__DT_F16 = 2, IMRET__DT_BF16 = 3, IMRET__DT_I8 = 4 };

typedef struct imret__imw_tensor {
    char name[48];
    uint32_t dtype, ndim;
    uint32_t shape[4];
    const uint8_t *data;
    uint64_t nbytes;
    size_t count; /* number of elements */
} imret__imw_tensor;

typedef struct imret__imw {
    const char *header; /* not NUL-terminated: header_len bytes */
    size_t header_len;
    uint32_t n;
    imret__imw_tensor *t;
    uint32_t crc;
    uint64_t file_size;
} imret__imw;

#define IMRET__BAIL(code, ...) do { rc = imret__fail(code, __VA_ARGS__); goto fail; } while (0)

static size_t imret__dtype_size(uint32_t dt) {
    switch (dt) {
    case IMRET__DT_F32: return 4;
    case IMRET__DT_F16: case IMRET__DT_BF16: return 2;
    case IMRET__DT_I8: return 1;
    }
    return 0;
}

static size_t imret__align(size_t v, size_t a) { return (v + a - 1) / a * a; }

/* Parse and validate; on success w->t is allocated (free with IMRET_FREE). */
static imret_result imret__imw_parse(const uint8_t *buf, size_t size, int check_crc, imret__imw *w) {
    uint32_t version, hlen, n, i;
    size_t table, data_start;
    uint64_t *spans = NULL;
    imret_result rc = IMRET_ERROR_FORMAT;
    memset(w, 0, sizeof *w);
    if (size < IMRET__IMW_FIXED)
        return imret__fail(IMRET_ERROR_FORMAT, "weights: file is %lu bytes, shorter than the %d-byte header",
                           (unsigned long)size, IMRET__IMW_FIXED);
    if (memcmp(buf, IMRET__IMW_MAGIC, 8) != 0)
        return imret__fail(IMRET_ERROR_FORMAT, "weights: bad magic (not an .imw weight file)");
    version = imret__rd32(buf + 8);
    if (version != 1)
        return imret__fail(IMRET_ERROR_VERSION, "weights: file version %u, this build reads version 1", version);
    hlen = imret__rd32(buf + 12);
    n = imret__rd32(buf + 16);
    w->crc = imret__rd32(buf + 20);
    w->file_size = imret__rd64(buf + 24);
    if (w->file_size != (uint64_t)size)
        return imret__fail(IMRET_ERROR_FORMAT, "weights: header says %llu bytes but the file has %lu (truncated or padded)",
                           (unsigned long long)w->file_size, (unsigned long)size);
    if (hlen == 0 || hlen > IMRET__IMW_MAX_HEADER)
        return imret__fail(IMRET_ERROR_FORMAT, "weights: header length %u out of range 1..%d", hlen, IMRET__IMW_MAX_HEADER);
    if (n == 0 || n > IMRET__IMW_MAX_TENSORS)
        return imret__fail(IMRET_ERROR_FORMAT, "weights: tensor count %u out of range 1..%d", n, IMRET__IMW_MAX_TENSORS);
    table = imret__align(IMRET__IMW_FIXED + (size_t)hlen, 8);
    data_start = table + (size_t)n * IMRET__IMW_RECORD;
    if (data_start > size)
        return imret__fail(IMRET_ERROR_FORMAT, "weights: tensor table (%u records) runs past the end of the file", n);
    if (memchr(buf + IMRET__IMW_FIXED, 0, hlen))
        return imret__fail(IMRET_ERROR_FORMAT, "weights: header text contains a NUL byte");
    if (check_crc) {
        uint32_t crc = imret__crc32(0, buf + 24, size - 24);
        if (crc != w->crc)
            return imret__fail(IMRET_ERROR_CHECKSUM, "weights: CRC-32 is %08x, header says %08x (file corrupted)", crc, w->crc);
    }
    w->header = (const char *)buf + IMRET__IMW_FIXED;
    w->header_len = hlen;
    w->n = n;
    w->t = (imret__imw_tensor *)imret__calloc(n, sizeof *w->t);
    spans = (uint64_t *)imret__calloc((size_t)n * 2, sizeof *spans);
    if (!w->t || !spans) {
        IMRET_FREE(w->t);
        IMRET_FREE(spans);
        w->t = NULL;
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory for %u tensor records", n);
    }
    for (i = 0; i < n; i++) {
        const uint8_t *r = buf + table + (size_t)i * IMRET__IMW_RECORD;
        imret__imw_tensor *t = &w->t[i];
        uint64_t off = imret__rd64(r + 72), nb = imret__rd64(r + 80);
        size_t count = 1, j, len, esz;
        memcpy(t->name, r, 48);
        len = memchr(t->name, 0, 48) ? strlen(t->name) : 48;
        if (len == 0 || len > 47) { IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor record %u has an empty or unterminated name", i); }
        for (j = 0; j < len; j++) {
            char ch = t->name[j];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.')) {
                IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor record %u has an invalid name", i);
            }
        }
        for (j = len; j < 48; j++)
            if (t->name[j]) { IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s: name padding is not zero", t->name); }
        t->dtype = imret__rd32(r + 48);
        t->ndim = imret__rd32(r + 52);
        esz = imret__dtype_size(t->dtype);
        if (!esz) { IMRET__BAIL(IMRET_ERROR_UNSUPPORTED, "weights: tensor %s has unknown dtype %u", t->name, t->dtype); }
        if (t->ndim < 1 || t->ndim > 4) { IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s has %u dimensions (1..4 allowed)", t->name, t->ndim); }
        for (j = 0; j < 4; j++) {
            t->shape[j] = imret__rd32(r + 56 + 4 * j);
            if (j < t->ndim ? t->shape[j] == 0 : t->shape[j] != 0) {
                IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s has an invalid shape entry %u = %u", t->name, (unsigned)j, t->shape[j]);
            }
            if (j < t->ndim && !imret__mul(count, t->shape[j], &count)) {
                IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s: element count overflows", t->name);
            }
        }
        if (!imret__mul(count, esz, &len) || (uint64_t)len != nb) {
            IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s: byte length %llu does not match its shape and dtype",
                        t->name, (unsigned long long)nb);
        }
        if (off % 64 != 0 || off < data_start || off > size || nb > size - off) {
            IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s: data [%llu, +%llu) is misaligned or outside the file (%lu bytes)",
                        t->name, (unsigned long long)off, (unsigned long long)nb, (unsigned long)size);
        }
        if (imret__rd64(r + 88) != 0) { IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s: reserved field is not zero", t->name); }
        for (j = 0; j < i; j++)
            if (!strcmp(w->t[j].name, t->name)) { IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor %s appears twice", t->name); }
        t->data = buf + off;
        t->nbytes = nb;
        t->count = count;
        spans[2 * i] = off;
        spans[2 * i + 1] = off + nb;
    }
    /* Overlap: sort the (start, end) pairs by start; each must end before the next starts.
       Pairs are sorted as 128-bit units so starts and ends stay together. */
    {
        uint64_t *starts = spans; /* reuse: build index order by start */
        uint32_t a, b;
        for (a = 1; a < n; a++) { /* insertion sort on pairs: n <= 4096, and files are ordered */
            uint64_t s0 = starts[2 * a], e0 = starts[2 * a + 1];
            b = a;
            while (b > 0 && starts[2 * (b - 1)] > s0) {
                starts[2 * b] = starts[2 * (b - 1)];
                starts[2 * b + 1] = starts[2 * (b - 1) + 1];
                b--;
            }
            starts[2 * b] = s0;
            starts[2 * b + 1] = e0;
        }
        for (a = 1; a < n; a++)
            if (starts[2 * a] < starts[2 * (a - 1) + 1]) {
                IMRET__BAIL(IMRET_ERROR_FORMAT, "weights: tensor data regions overlap at offset %llu", (unsigned long long)starts[2 * a]);
            }
    }
    IMRET_FREE(spans);
    return IMRET_OK;
fail:
    IMRET_FREE(spans);
    IMRET_FREE(w->t);
    w->t = NULL;
    return rc;
}

static const imret__imw_tensor *imret__imw_find(const imret__imw *w, const char *name) {
    uint32_t i;
    for (i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return &w->t[i];
    return NULL;
}

/* Header lookup: copies the value of `key` (up to the end of its line) into out. */
static int imret__imw_get(const imret__imw *w, const char *key, char *out, size_t out_size) {
    size_t klen = strlen(key), pos = 0;
    while (pos < w->header_len) {
        size_t end = pos;
        while (end < w->header_len && w->header[end] != '\n') end++;
        if (end - pos > klen && !memcmp(w->header + pos, key, klen) && w->header[pos + klen] == '=') {
            size_t vlen = end - pos - klen - 1;
            if (vlen >= out_size) vlen = out_size - 1;
            memcpy(out, w->header + pos + klen + 1, vlen);
            out[vlen] = 0;
            while (vlen > 0 && (out[vlen - 1] == '\r' || out[vlen - 1] == ' ')) out[--vlen] = 0;
            return 1;
        }
        pos = end + 1;
    }
    return 0;
}

/* Parse up to n comma-separated finite floats; returns how many were read, -1 on junk. */
static int imret__parse_floats(const char *s, float *out, int n) {
    int i = 0;
    while (*s && i < n) {
        char *end;
        double v;
        errno = 0;
        v = strtod(s, &end);
        if (end == s || errno == ERANGE || v != v || v > 3.0e38 || v < -3.0e38) return -1;
        out[i++] = (float)v;
        s = end;
        while (*s == ' ') s++;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return *s ? -1 : i;
}

static float imret__half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, mant = h & 1023, bits;
    float f;
    if (exp == 0) {
        f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    if (exp == 31) bits = sign | 0x7f800000u | (mant << 13);
    else bits = sign | ((exp + 112) << 23) | (mant << 13);
    memcpy(&f, &bits, 4);
    return f;
}

/* Copy tensor t into floats (converting f16/bf16). i8 needs its scale tensor: unsupported
   here until the reduced-precision path lands. */
static imret_result imret__imw_to_f32(const imret__imw_tensor *t, float *dst) {
    size_t i;
    switch (t->dtype) {
    case IMRET__DT_F32:
        for (i = 0; i < t->count; i++) {
            uint32_t b = imret__rd32(t->data + 4 * i);
            memcpy(&dst[i], &b, 4);
        }
        break;
    case IMRET__DT_F16:
        for (i = 0; i < t->count; i++) dst[i] = imret__half_to_float((uint16_t)(t->data[2 * i] | t->data[2 * i + 1] << 8));
        break;
    case IMRET__DT_BF16:
        for (i = 0; i < t->count; i++) {
            uint32_t b = (uint32_t)(t->data[2 * i] | t->data[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &b, 4);
        }
        break;
    default:
        return imret__fail(IMRET_ERROR_UNSUPPORTED, "weights: tensor %s: dtype %u is not supported by this build", t->name, t->dtype);
    }
    for (i = 0; i < t->count; i++)
        if (!(dst[i] - dst[i] == 0.0f))
            return imret__fail(IMRET_ERROR_FORMAT, "weights: tensor %s holds a NaN or infinity at element %lu", t->name, (unsigned long)i);
    return IMRET_OK;
}

/* ======================================================================================
   [impl: models]
   Architectures are built from small tables (VGG config lists; ResNet block type, layer
   counts and stride placement). BatchNorm is folded into the convolution at load:
   w' = w * g/sqrt(v+eps), b' = (b - m) * g/sqrt(v+eps) + beta  (computed in double).
   ====================================================================================== */
typedef struct imret__conv {
    int in_c, out_c, k, stride, pad;
    float *w; /* BN folded, packed in panels of IMRET__MR output channels (imret__wp_at) */
    float *b; /* out_c                         */
} imret__conv;

typedef struct imret__block { /* ResNet basic (c1,c2) or bottleneck (c1,c2,c3) block */
    imret__conv c1, c2, c3, down;
    int has_down;
} imret__block;

typedef struct imret__fc {
    int in_n, out_n;
    float *w, *b;
} imret__fc;

#define IMRET__VGG_MAX 24
struct imret_model {
    imret_arch arch;
    int is_vgg, bottleneck, keras;
    float bn_eps;
    int input_bgr;
    float input_scale, mean[3], std[3];
    int vgg_plan[IMRET__VGG_MAX], vgg_n; /* >= 0: index into convs; -1: 2x2 max pool */
    imret__conv *convs;                  /* VGG convolutions                         */
    int n_convs;
    imret__conv stem;                    /* ResNet                                   */
    imret__block *blocks;
    int n_blocks, stage_blocks[4];
    imret__fc fc[3];
    int n_fc, num_classes, feature_channels;
    size_t params;
    uint64_t fingerprint;
    char source[256];
};

static const char *const imret__arch_names[IMRET_ARCH_COUNT] = {
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "keras_resnet50"};

IMRET_DEF const char *imret_arch_name(imret_arch arch) {
    return (unsigned)arch < IMRET_ARCH_COUNT ? imret__arch_names[arch] : "unknown";
}

/* VGG configurations (torchvision): channel counts, 0 = max pool, terminated by -1. */
static const int imret__vgg_cfg[4][22] = {
    {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1},
    {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1},
    {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0, -1},
    {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0, -1}};
static const int imret__resnet_layers[5][4] = {{2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}, {3, 4, 23, 3}, {3, 8, 36, 3}};

typedef struct imret__loader {
    const imret__imw *w;
    unsigned char *used; /* per tensor: consumed by the architecture */
    imret_model *m;
} imret__loader;

static const imret__imw_tensor *imret__need(imret__loader *L, const char *name, int ndim, const uint32_t *shape,
                                            imret_result *rc) {
    const imret__imw_tensor *t = imret__imw_find(L->w, name);
    int j;
    if (!t) {
        *rc = imret__fail(IMRET_ERROR_MISSING, "weights: tensor %s is missing (arch %s)", name, imret_arch_name(L->m->arch));
        return NULL;
    }
    for (j = 0; j < 4; j++) {
        uint32_t want = j < ndim ? shape[j] : 0;
        if ((int)t->ndim != ndim || t->shape[j] != want) {
            char got[64], exp[64];
            snprintf(got, sizeof got, "%ux%ux%ux%u", t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
            snprintf(exp, sizeof exp, "%ux%ux%ux%u", shape[0], ndim > 1 ? shape[1] : 0, ndim > 2 ? shape[2] : 0, ndim > 3 ? shape[3] : 0);
            *rc = imret__fail(IMRET_ERROR_SHAPE, "weights: tensor %s has shape %s (%u dims), expected %s (%d dims) for %s",
                              name, got, t->ndim, exp, ndim, imret_arch_name(L->m->arch));
            return NULL;
        }
    }
    L->used[t - L->w->t] = 1;
    L->m->params += t->count;
    return t;
}

/* Load conv `cname` (+ optional bias) and fold BatchNorm `bname` (NULL: none) into it. */
static imret_result imret__load_conv(imret__loader *L, const char *cname, const char *bname, int in_c, int out_c,
                                     int k, int stride, int pad, int has_bias, imret__conv *cv) {
    char name[64];
    uint32_t wshape[4], vshape[4] = {0, 0, 0, 0};
    const imret__imw_tensor *tw, *tb = NULL, *bn[4] = {NULL, NULL, NULL, NULL};
    static const char *const bn_parts[4] = {"weight", "bias", "running_mean", "running_var"};
    float *tmp = NULL;
    size_t per_out = (size_t)in_c * k * k, i;
    imret_result rc = IMRET_OK;
    int oc, j;
    wshape[0] = (uint32_t)out_c; wshape[1] = (uint32_t)in_c; wshape[2] = wshape[3] = (uint32_t)k;
    vshape[0] = (uint32_t)out_c;
    cv->in_c = in_c; cv->out_c = out_c; cv->k = k; cv->stride = stride; cv->pad = pad;
    snprintf(name, sizeof name, "%s.weight", cname);
    if (!(tw = imret__need(L, name, 4, wshape, &rc))) return rc;
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", cname);
        if (!(tb = imret__need(L, name, 1, vshape, &rc))) return rc;
    }
    if (bname)
        for (j = 0; j < 4; j++) {
            snprintf(name, sizeof name, "%s.%s", bname, bn_parts[j]);
            if (!(bn[j] = imret__need(L, name, 1, vshape, &rc))) return rc;
        }
    cv->w = (float *)imret__calloc(per_out * out_c, sizeof(float));
    cv->b = (float *)imret__calloc((size_t)out_c, sizeof(float));
    tmp = (float *)imret__calloc((size_t)out_c * 5, sizeof(float));
    if (!cv->w || !cv->b || !tmp) { IMRET_FREE(tmp); return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory loading %s", cname); }
    if ((rc = imret__imw_to_f32(tw, cv->w)) != IMRET_OK) goto done;
    if (tb && (rc = imret__imw_to_f32(tb, tmp + 4 * (size_t)out_c)) != IMRET_OK) goto done;
    for (j = 0; j < 4 && bname; j++)
        if ((rc = imret__imw_to_f32(bn[j], tmp + (size_t)j * out_c)) != IMRET_OK) goto done;
    for (oc = 0; oc < out_c; oc++) {
        double bias = tb ? tmp[4 * (size_t)out_c + oc] : 0.0, scale = 1.0;
        if (bname) {
            double var = tmp[3 * (size_t)out_c + oc];
            if (var < 0.0) { rc = imret__fail(IMRET_ERROR_FORMAT, "weights: %s.running_var[%d] is negative", bname, oc); goto done; }
            scale = tmp[oc] / sqrt(var + L->m->bn_eps);
            bias = (bias - tmp[2 * (size_t)out_c + oc]) * scale + tmp[(size_t)out_c + oc];
            for (i = 0; i < per_out; i++) cv->w[oc * per_out + i] = (float)(cv->w[oc * per_out + i] * scale);
        }
        cv->b[oc] = (float)bias;
    }
    { /* re-pack into the panel layout every kernel reads (imret__wp_at) */
        float *wp = imret__pack_weights(cv->w, out_c, (int)per_out);
        if (!wp) { rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory packing %s", cname); goto done; }
        IMRET_FREE(cv->w);
        cv->w = wp;
    }
done:
    IMRET_FREE(tmp);
    return rc;
}

static imret_result imret__load_fc(imret__loader *L, const char *name, int in_n, int out_n, imret__fc *fc) {
    char nm[64];
    uint32_t ws[4], bs[4] = {0, 0, 0, 0};
    const imret__imw_tensor *tw, *tb;
    imret_result rc = IMRET_OK;
    ws[0] = (uint32_t)out_n; ws[1] = (uint32_t)in_n; ws[2] = ws[3] = 0;
    bs[0] = (uint32_t)out_n;
    snprintf(nm, sizeof nm, "%s.weight", name);
    if (!(tw = imret__need(L, nm, 2, ws, &rc))) return rc;
    snprintf(nm, sizeof nm, "%s.bias", name);
    if (!(tb = imret__need(L, nm, 1, bs, &rc))) return rc;
    fc->in_n = in_n; fc->out_n = out_n;
    fc->w = (float *)imret__calloc((size_t)in_n * out_n, sizeof(float));
    fc->b = (float *)imret__calloc((size_t)out_n, sizeof(float));
    if (!fc->w || !fc->b) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory loading %s", name);
    if ((rc = imret__imw_to_f32(tw, fc->w)) != IMRET_OK) return rc;
    return imret__imw_to_f32(tb, fc->b);
}

static void imret__conv_free(imret__conv *c) { IMRET_FREE(c->w); IMRET_FREE(c->b); c->w = c->b = NULL; }

IMRET_DEF void imret_model_free(imret_model *m) {
    int i;
    if (!m) return;
    for (i = 0; i < m->n_convs; i++) imret__conv_free(&m->convs[i]);
    IMRET_FREE(m->convs);
    imret__conv_free(&m->stem);
    for (i = 0; i < m->n_blocks; i++) {
        imret__conv_free(&m->blocks[i].c1); imret__conv_free(&m->blocks[i].c2);
        imret__conv_free(&m->blocks[i].c3); imret__conv_free(&m->blocks[i].down);
    }
    IMRET_FREE(m->blocks);
    for (i = 0; i < 3; i++) { IMRET_FREE(m->fc[i].w); IMRET_FREE(m->fc[i].b); }
    IMRET_FREE(m);
}

static imret_result imret__build_vgg(imret__loader *L) {
    imret_model *m = L->m;
    const int *cfg = imret__vgg_cfg[m->arch % 4];
    int bn = m->arch >= IMRET_ARCH_VGG11_BN, idx = 0, in_c = 3, i, n = 0;
    imret_result rc;
    for (i = 0; cfg[i] >= 0; i++) n += cfg[i] > 0;
    m->convs = (imret__conv *)imret__calloc((size_t)n, sizeof(imret__conv));
    if (!m->convs) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory");
    for (i = 0; cfg[i] >= 0; i++) {
        if (cfg[i] == 0) {
            m->vgg_plan[m->vgg_n++] = -1;
            idx += 1;
        } else {
            char cn[32], bnn[32];
            snprintf(cn, sizeof cn, "features.%d", idx);
            snprintf(bnn, sizeof bnn, "features.%d", idx + 1);
            rc = imret__load_conv(L, cn, bn ? bnn : NULL, in_c, cfg[i], 3, 1, 1, 1, &m->convs[m->n_convs]);
            m->n_convs++;
            if (rc) return rc;
            m->vgg_plan[m->vgg_n++] = m->n_convs - 1;
            in_c = cfg[i];
            idx += bn ? 3 : 2;
        }
    }
    m->feature_channels = 512;
    if (m->num_classes) {
        static const char *const names[3] = {"classifier.0", "classifier.3", "classifier.6"};
        int ins[3] = {512 * 7 * 7, 4096, 4096}, outs[3] = {4096, 4096, 0};
        outs[2] = m->num_classes;
        for (i = 0; i < 3; i++)
            if ((rc = imret__load_fc(L, names[i], ins[i], outs[i], &m->fc[i])) != IMRET_OK) return rc;
        m->n_fc = 3;
    }
    return IMRET_OK;
}

static imret_result imret__build_resnet(imret__loader *L) {
    imret_model *m = L->m;
    int depth_idx = m->keras ? 2 : m->arch - IMRET_ARCH_RESNET18;
    int exp = m->bottleneck ? 4 : 1, in_c = 64, s, i, b = 0, total = 0;
    const int *layers = imret__resnet_layers[depth_idx];
    int bias = m->keras;
    imret_result rc;
    for (s = 0; s < 4; s++) total += layers[s];
    m->blocks = (imret__block *)imret__calloc((size_t)total, sizeof(imret__block));
    if (!m->blocks) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory");
    if ((rc = imret__load_conv(L, "conv1", "bn1", 3, 64, 7, 2, 3, bias, &m->stem)) != IMRET_OK) return rc;
    for (s = 0; s < 4; s++) {
        int width = 64 << s;
        m->stage_blocks[s] = layers[s];
        for (i = 0; i < layers[s]; i++, b++) {
            imret__block *blk = &m->blocks[b];
            int stride = (i == 0 && s > 0) ? 2 : 1;
            char p[32], c[64], n[64];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, i);
            m->n_blocks = b + 1;
            if (m->bottleneck) {
                /* v1.5 (torchvision): stride on the 3x3; v1 (Keras): on the first 1x1 */
                int s1 = m->keras ? stride : 1, s2 = m->keras ? 1 : stride;
                snprintf(c, sizeof c, "%s.conv1", p); snprintf(n, sizeof n, "%s.bn1", p);
                if ((rc = imret__load_conv(L, c, n, in_c, width, 1, s1, 0, bias, &blk->c1))) return rc;
                snprintf(c, sizeof c, "%s.conv2", p); snprintf(n, sizeof n, "%s.bn2", p);
                if ((rc = imret__load_conv(L, c, n, width, width, 3, s2, 1, bias, &blk->c2))) return rc;
                snprintf(c, sizeof c, "%s.conv3", p); snprintf(n, sizeof n, "%s.bn3", p);
                if ((rc = imret__load_conv(L, c, n, width, width * exp, 1, 1, 0, bias, &blk->c3))) return rc;
            } else {
                snprintf(c, sizeof c, "%s.conv1", p); snprintf(n, sizeof n, "%s.bn1", p);
                if ((rc = imret__load_conv(L, c, n, in_c, width, 3, stride, 1, bias, &blk->c1))) return rc;
                snprintf(c, sizeof c, "%s.conv2", p); snprintf(n, sizeof n, "%s.bn2", p);
                if ((rc = imret__load_conv(L, c, n, width, width, 3, 1, 1, bias, &blk->c2))) return rc;
            }
            if (stride != 1 || in_c != width * exp) {
                blk->has_down = 1;
                snprintf(c, sizeof c, "%s.downsample.0", p); snprintf(n, sizeof n, "%s.downsample.1", p);
                if ((rc = imret__load_conv(L, c, n, in_c, width * exp, 1, stride, 0, bias, &blk->down))) return rc;
            }
            in_c = width * exp;
        }
    }
    m->feature_channels = in_c;
    if (m->num_classes) {
        if ((rc = imret__load_fc(L, "fc", in_c, m->num_classes, &m->fc[0])) != IMRET_OK) return rc;
        m->n_fc = 1;
    }
    return IMRET_OK;
}

static imret_result imret__model_from_imw(const imret__imw *w, imret_model **out) {
    char val[256];
    imret_model *m;
    imret__loader L;
    imret_result rc = IMRET_OK;
    int i, nf;
    *out = NULL;
    m = (imret_model *)imret__calloc(1, sizeof *m);
    L.w = w; L.m = m;
    L.used = (unsigned char *)imret__calloc(w->n, 1);
    if (!m || !L.used) { IMRET_FREE(m); IMRET_FREE(L.used); return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory"); }
    if (!imret__imw_get(w, "arch", val, sizeof val)) { rc = imret__fail(IMRET_ERROR_MISSING, "weights: header has no arch= line"); goto done; }
    m->arch = IMRET_ARCH_COUNT;
    for (i = 0; i < IMRET_ARCH_COUNT; i++)
        if (!strcmp(val, imret__arch_names[i])) m->arch = (imret_arch)i;
    if (m->arch == IMRET_ARCH_COUNT) { rc = imret__fail(IMRET_ERROR_UNSUPPORTED, "weights: unknown architecture '%s'", val); goto done; }
    m->is_vgg = m->arch <= IMRET_ARCH_VGG19_BN;
    m->keras = m->arch == IMRET_ARCH_KERAS_RESNET50;
    m->bottleneck = m->keras || (m->arch >= IMRET_ARCH_RESNET50 && m->arch <= IMRET_ARCH_RESNET152);
#define IMRET__HDR_FLOATS(key, dst, n, lo, hi)                                                                  \
    do {                                                                                                         \
        int k_;                                                                                                  \
        if (!imret__imw_get(w, key, val, sizeof val)) { rc = imret__fail(IMRET_ERROR_MISSING, "weights: header has no %s= line", key); goto done; } \
        if (imret__parse_floats(val, dst, n) != n) { rc = imret__fail(IMRET_ERROR_FORMAT, "weights: header %s='%s' is not %d numbers", key, val, n); goto done; } \
        for (k_ = 0; k_ < n; k_++)                                                                               \
            if (!((dst)[k_] >= (lo) && (dst)[k_] <= (hi))) { rc = imret__fail(IMRET_ERROR_FORMAT, "weights: header %s='%s' is out of range", key, val); goto done; } \
    } while (0)
    IMRET__HDR_FLOATS("input_scale", &m->input_scale, 1, 1e-6f, 1e6f);
    IMRET__HDR_FLOATS("mean", m->mean, 3, -1e6f, 1e6f);
    IMRET__HDR_FLOATS("std", m->std, 3, 1e-6f, 1e6f);
    IMRET__HDR_FLOATS("bn_eps", &m->bn_eps, 1, 0.0f, 1.0f);
    {
        float classes;
        IMRET__HDR_FLOATS("classes", &classes, 1, 0.0f, 100000.0f);
        m->num_classes = (int)classes;
        if ((float)m->num_classes != classes) { rc = imret__fail(IMRET_ERROR_FORMAT, "weights: header classes is not an integer"); goto done; }
    }
#undef IMRET__HDR_FLOATS
    if (!imret__imw_get(w, "input_order", val, sizeof val) || (strcmp(val, "rgb") && strcmp(val, "bgr"))) {
        rc = imret__fail(IMRET_ERROR_FORMAT, "weights: header input_order must be rgb or bgr");
        goto done;
    }
    m->input_bgr = !strcmp(val, "bgr");
    if (imret__imw_get(w, "source", val, sizeof val)) snprintf(m->source, sizeof m->source, "%s", val);
    m->fingerprint = ((uint64_t)w->crc << 32) ^ w->file_size;
    rc = m->is_vgg ? imret__build_vgg(&L) : imret__build_resnet(&L);
    if (rc) goto done;
    for (i = 0, nf = 0; i < (int)w->n; i++)
        if (!L.used[i]) {
            rc = imret__fail(IMRET_ERROR_FORMAT, "weights: tensor %s is not part of %s%s (wrong arch= in header?)",
                             w->t[i].name, imret_arch_name(m->arch), m->num_classes ? "" : " without classifier");
            goto done;
        }
    (void)nf;
done:
    IMRET_FREE(L.used);
    if (rc) imret_model_free(m);
    else *out = m;
    return rc;
}

IMRET_DEF imret_model_config imret_model_config_init(void) {
    imret_model_config c;
    memset(&c, 0, sizeof c);
    c.max_file_bytes = (size_t)2 << 30;
    return c;
}

IMRET_DEF imret_result imret_model_load_memory(const void *data, size_t size, const imret_model_config *cfg,
                                               imret_model **out) {
    imret_model_config def = imret_model_config_init();
    imret__imw w;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_load_memory: out is NULL");
    *out = NULL;
    if (!data) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_load_memory: data is NULL");
    if (!cfg) cfg = &def;
    if (size > cfg->max_file_bytes)
        return imret__fail(IMRET_ERROR_LIMIT, "weights: %lu bytes exceeds max_file_bytes (%lu)", (unsigned long)size,
                           (unsigned long)cfg->max_file_bytes);
    if ((rc = imret__imw_parse((const uint8_t *)data, size, !cfg->skip_checksum, &w)) != IMRET_OK) return rc;
    rc = imret__model_from_imw(&w, out);
    IMRET_FREE(w.t);
    return rc;
}

IMRET_DEF imret_result imret_model_get_info(const imret_model *m, imret_model_info *info) {
    int i;
    if (!m || !info) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    info->arch = m->arch;
    info->arch_name = imret_arch_name(m->arch);
    info->feature_channels = m->feature_channels;
    info->feature_stride = m->is_vgg ? 16 : 32;
    info->num_classes = m->num_classes;
    info->input_bgr = m->input_bgr;
    info->input_scale = m->input_scale;
    for (i = 0; i < 3; i++) { info->mean[i] = m->mean[i]; info->std[i] = m->std[i]; }
    info->parameter_count = m->params;
    info->source = m->source;
    info->fingerprint = m->fingerprint;
    return IMRET_OK;
}

/* ======================================================================================
   [impl: forward pass]
   One walker runs the network twice: a dry run (sizes only) plans the workspace, the real
   run computes. Both share the code, so the plan cannot disagree with the execution.
   ====================================================================================== */
struct imret_context {
    const imret_model *model;
    int threads;
    size_t max_ws;
    imret__kernels kern;
    float *ws;                /* one arena: 4 activation buffers, col buffer, head buffers */
    size_t ws_floats;
};

/* Cap of the im2col buffer: larger convolutions are run in pixel chunks. */
#define IMRET__COL_MAX_FLOATS ((size_t)4 << 20)

typedef struct imret__run {
    imret_context *ctx;
    int dry;
    size_t max_act, max_col; /* dry run: largest activation / col chunk, in floats */
    float *col, *pack;
    const imret_forward_options *opts;
} imret__run;

/* out = relu?(conv(in) + bias (+ residual)); shapes in/out as C x H x W. The portable path
   (kern.nr == 0) is im2col in pixel chunks + imret__gemm_scalar; the SIMD path packs B from
   the input directly (imret__conv_gemm_fast). */
static void imret__conv_run(imret__run *R, const imret__conv *cv, const float *in, int h, int w, float *out,
                            const float *residual, int relu, int *oh_out, int *ow_out) {
    int oh = imret__out_dim(h, cv->k, cv->stride, cv->pad), ow = imret__out_dim(w, cv->k, cv->stride, cv->pad);
    long npix = (long)oh * ow, K = (long)cv->in_c * cv->k * cv->k, chunk, p0;
    int direct = cv->k == 1 && cv->stride == 1 && cv->pad == 0, fast = R->ctx->kern.nr > 0;
    imret__epilogue ep;
    *oh_out = oh;
    *ow_out = ow;
    chunk = direct ? npix : (long)(IMRET__COL_MAX_FLOATS / (size_t)K);
    if (chunk > npix) chunk = npix;
    if (chunk > 256) chunk = chunk / 256 * 256;
    if (chunk < 1) chunk = 1;
    if (R->dry) {
        size_t act = (size_t)cv->out_c * (size_t)npix, col = (direct || fast) ? 0 : (size_t)K * (size_t)chunk;
        if (act > R->max_act) R->max_act = act;
        if (col > R->max_col) R->max_col = col;
        return;
    }
    ep.bias = cv->b;
    ep.relu = relu;
    ep.residual = residual;
    if (fast) {
        imret__bsrc src;
        src.in = in; src.c = cv->in_c; src.h = h; src.w = w;
        src.k = cv->k; src.stride = cv->stride; src.pad = cv->pad; src.ow = ow;
        imret__conv_gemm_fast(&R->ctx->kern, cv->out_c, npix, (int)K, cv->w, &src, out, &ep, R->pack, R->ctx->threads);
        return;
    }
    for (p0 = 0; p0 < npix; p0 += chunk) {
        long pn = npix - p0 < chunk ? npix - p0 : chunk;
        ep.residual = residual ? residual + p0 : NULL;
        if (direct) {
            imret__gemm_scalar(cv->out_c, (int)pn, (int)K, cv->w, in + p0, (size_t)npix, out + p0, (size_t)npix, &ep, R->ctx->threads);
        } else {
            imret__im2col(in, cv->in_c, h, w, cv->k, cv->stride, cv->pad, ow, p0, pn, R->col, R->ctx->threads);
            imret__gemm_scalar(cv->out_c, (int)pn, (int)K, cv->w, R->col, (size_t)pn, out + p0, (size_t)npix, &ep, R->ctx->threads);
        }
    }
}

static void imret__stage(imret__run *R, const char *name, float *data, int c, int h, int w) {
    imret_tensor t;
    if (R->dry || !R->opts || !R->opts->on_stage) return;
    t.c = c; t.h = h; t.w = w; t.data = data;
    R->opts->on_stage(R->opts->user, name, &t);
}

static void imret__pool_run(imret__run *R, const float *in, int c, int h, int w, int k, int s, int p, float *out,
                            int *oh, int *ow) {
    *oh = imret__out_dim(h, k, s, p);
    *ow = imret__out_dim(w, k, s, p);
    if (R->dry) {
        size_t act = (size_t)c * (size_t)*oh * (size_t)*ow;
        if (act > R->max_act) R->max_act = act;
        return;
    }
    imret__maxpool(in, c, h, w, k, s, p, out, *oh, *ow, R->ctx->threads);
}

/* Runs the trunk; buf[0..3] are activation buffers. Returns the feature map location. */
static float *imret__trunk(imret__run *R, const imret_tensor *x, float **buf, int *fc, int *fh, int *fw) {
    const imret_model *m = R->ctx->model;
    int h = x->h, w = x->w, c = 3, oh, ow, i;
    const float *cur = x->data;
    if (m->is_vgg) {
        int which = 0, pools = 0;
        char name[24];
        for (i = 0; i < m->vgg_n; i++) {
            float *dst = buf[which];
            if (m->vgg_plan[i] < 0) {
                if (i == m->vgg_n - 1) { /* features are taken before the last pool; the
                                            classifier's pool later runs in the col buffer */
                    size_t last = (size_t)c * (size_t)imret__out_dim(h, 2, 2, 0) * (size_t)imret__out_dim(w, 2, 2, 0);
                    if (R->dry && last > R->max_col) R->max_col = last;
                    break;
                }
                imret__pool_run(R, cur, c, h, w, 2, 2, 0, dst, &oh, &ow);
                snprintf(name, sizeof name, "block%d", ++pools);
                imret__stage(R, name, dst, c, oh, ow);
            } else {
                const imret__conv *cv = &m->convs[m->vgg_plan[i]];
                imret__conv_run(R, cv, cur, h, w, dst, NULL, 1, &oh, &ow);
                c = cv->out_c;
            }
            h = oh; w = ow; cur = dst; which ^= 1;
        }
    } else {
        float *t1, *t2, *t3;
        int b = 0, s;
        imret__conv_run(R, &m->stem, cur, h, w, buf[0], NULL, 1, &oh, &ow);
        imret__pool_run(R, buf[0], 64, oh, ow, 3, 2, 1, buf[1], &h, &w);
        c = 64;
        imret__stage(R, "stem", buf[1], c, h, w);
        cur = buf[1];
        t1 = buf[0]; t2 = buf[2]; t3 = buf[3];
        for (s = 0; s < 4; s++) {
            char name[24];
            for (i = 0; i < m->stage_blocks[s]; i++, b++) {
                const imret__block *blk = &m->blocks[b];
                const float *shortcut = cur;
                float *outp;
                int h1, w1, h2, w2, hd, wd;
                imret__conv_run(R, &blk->c1, cur, h, w, t1, NULL, 1, &h1, &w1);
                if (blk->has_down) {
                    imret__conv_run(R, &blk->down, cur, h, w, t3, NULL, 0, &hd, &wd);
                    shortcut = t3;
                }
                if (m->bottleneck) {
                    imret__conv_run(R, &blk->c2, t1, h1, w1, t2, NULL, 1, &h2, &w2);
                    imret__conv_run(R, &blk->c3, t2, h2, w2, t1, shortcut, 1, &oh, &ow);
                    outp = t1;
                    c = blk->c3.out_c;
                } else {
                    imret__conv_run(R, &blk->c2, t1, h1, w1, t2, shortcut, 1, &oh, &ow);
                    outp = t2;
                    c = blk->c2.out_c;
                }
                /* rotate: the block output becomes cur, the old cur a free buffer */
                {
                    float *old = (float *)cur;
                    cur = outp;
                    if (outp == t1) t1 = old; else t2 = old;
                }
                h = oh; w = ow;
            }
            snprintf(name, sizeof name, "stage%d", s + 1);
            imret__stage(R, name, (float *)cur, c, h, w);
        }
    }
    *fc = c; *fh = h; *fw = w;
    imret__stage(R, "features", (float *)cur, c, h, w);
    return (float *)cur;
}

IMRET_DEF imret_context_config imret_context_config_init(void) {
    imret_context_config c;
    memset(&c, 0, sizeof c);
    c.threads = 0;
    c.max_workspace_bytes = (size_t)4 << 30;
    return c;
}

IMRET_DEF imret_result imret_context_create(const imret_model *model, const imret_context_config *cfg,
                                            imret_context **out) {
    imret_context_config def = imret_context_config_init();
    imret_context *ctx;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_context_create: out is NULL");
    *out = NULL;
    if (!model) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_context_create: model is NULL");
    if (!cfg) cfg = &def;
    if (cfg->threads < 0 || cfg->threads > 1024)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_context_create: threads = %d (0..1024)", cfg->threads);
    ctx = (imret_context *)imret__calloc(1, sizeof *ctx);
    if (!ctx) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_context_create: out of memory");
    ctx->model = model;
    ctx->threads = imret__threads(cfg->threads);
    ctx->max_ws = cfg->max_workspace_bytes ? cfg->max_workspace_bytes : def.max_workspace_bytes;
    if ((unsigned)cfg->simd > IMRET_SIMD_NEON)
        return IMRET_FREE(ctx), imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_context_create: simd = %d", (int)cfg->simd);
    ctx->kern = imret__kernels_for(cfg->simd);
    *out = ctx;
    return IMRET_OK;
}

IMRET_DEF void imret_context_destroy(imret_context *ctx) {
    if (!ctx) return;
    IMRET_FREE(ctx->ws);
    IMRET_FREE(ctx);
}

#define IMRET__MAX_INPUT_SIDE 8192
#define IMRET__HEAD_FLOATS (512 * 7 * 7 + 4096 + 4096 + 2048)

/* Validate the input, plan, and (re)grow the arena; then run. */
static imret_result imret__forward(imret_context *ctx, const imret_tensor *x, const imret_forward_options *opts,
                                   float **feat, int *fc, int *fh, int *fw, float **head, float **scratch) {
    imret__run R;
    float *buf[4];
    size_t need, act4, pack;
    if (!ctx || !x) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_forward: NULL argument");
    if (!x->data) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_forward: input tensor has no data");
    if (x->c != 3) return imret__fail(IMRET_ERROR_SHAPE, "imret_forward: input has %d channels, expected 3", x->c);
    if (x->h < 32 || x->w < 32)
        return imret__fail(IMRET_ERROR_IMAGE_SIZE, "imret_forward: input %dx%d is smaller than 32x32", x->w, x->h);
    if (x->h > IMRET__MAX_INPUT_SIDE || x->w > IMRET__MAX_INPUT_SIDE)
        return imret__fail(IMRET_ERROR_IMAGE_SIZE, "imret_forward: input %dx%d is larger than %dx%d", x->w, x->h,
                           IMRET__MAX_INPUT_SIDE, IMRET__MAX_INPUT_SIDE);
    memset(&R, 0, sizeof R);
    R.ctx = ctx;
    R.dry = 1;
    buf[0] = buf[1] = buf[2] = buf[3] = NULL;
    imret__trunk(&R, x, buf, fc, fh, fw);
    pack = ctx->kern.nr ? (size_t)ctx->threads * IMRET__PACK_FLOATS : 0;
    if (!imret__mul(R.max_act, 4, &act4) || !imret__add(act4, R.max_col, &need) || !imret__add(need, pack, &need) ||
        !imret__add(need, IMRET__HEAD_FLOATS, &need) || need > ctx->max_ws / sizeof(float))
        return imret__fail(IMRET_ERROR_LIMIT, "imret_forward: input %dx%d needs more workspace than max_workspace_bytes (%lu)",
                           x->w, x->h, (unsigned long)ctx->max_ws);
    if (need > ctx->ws_floats) {
        float *ws = (float *)imret__malloc(need * sizeof(float));
        if (!ws) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_forward: cannot allocate %lu bytes of workspace",
                                    (unsigned long)(need * sizeof(float)));
        IMRET_FREE(ctx->ws);
        ctx->ws = ws;
        ctx->ws_floats = need;
    }
    buf[0] = ctx->ws;
    buf[1] = buf[0] + R.max_act;
    buf[2] = buf[1] + R.max_act;
    buf[3] = buf[2] + R.max_act;
    R.col = buf[3] + R.max_act;
    R.pack = R.col + R.max_col;
    *head = R.pack + pack;
    *scratch = R.col;
    R.dry = 0;
    R.opts = opts;
    *feat = imret__trunk(&R, x, buf, fc, fh, fw);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_forward(imret_context *ctx, const imret_tensor *input, imret_tensor *features,
                                     const imret_forward_options *opts) {
    float *feat, *head, *scratch;
    int c, h, w;
    imret_result rc;
    if (!features) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_forward: features is NULL");
    memset(features, 0, sizeof *features);
    if ((rc = imret__forward(ctx, input, opts, &feat, &c, &h, &w, &head, &scratch)) != IMRET_OK) return rc;
    features->c = c; features->h = h; features->w = w; features->data = feat;
    return IMRET_OK;
}

IMRET_DEF imret_result imret_forward_logits(imret_context *ctx, const imret_tensor *input, float *logits,
                                            size_t logits_len, const imret_forward_options *opts) {
    const imret_model *m;
    float *feat, *head, *scratch;
    int c, h, w, i;
    imret_result rc;
    imret__run R;
    if (!ctx || !logits) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_forward_logits: NULL argument");
    m = ctx->model;
    if (!m->num_classes) return imret__fail(IMRET_ERROR_UNSUPPORTED, "imret_forward_logits: the model file has no classifier");
    if (logits_len < (size_t)m->num_classes)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_forward_logits: logits has room for %lu scores, model has %d classes",
                           (unsigned long)logits_len, m->num_classes);
    if ((rc = imret__forward(ctx, input, opts, &feat, &c, &h, &w, &head, &scratch)) != IMRET_OK) return rc;
    memset(&R, 0, sizeof R);
    R.ctx = ctx;
    R.opts = opts;
    if (m->is_vgg) {
        /* last max pool (into the col buffer, planned for it), adaptive 7x7 average, 3 linear */
        float *a = head, *b1 = head + 512 * 7 * 7, *b2 = b1 + 4096;
        int ph = imret__out_dim(h, 2, 2, 0), pw = imret__out_dim(w, 2, 2, 0);
        imret__maxpool(feat, c, h, w, 2, 2, 0, scratch, ph, pw, ctx->threads);
        imret__adaptive_avgpool(scratch, c, ph, pw, 7, 7, a);
        imret__linear(m->fc[0].w, m->fc[0].b, a, m->fc[0].in_n, 4096, 1, b1, ctx->threads);
        imret__linear(m->fc[1].w, m->fc[1].b, b1, 4096, 4096, 1, b2, ctx->threads);
        imret__linear(m->fc[2].w, m->fc[2].b, b2, 4096, m->num_classes, 0, logits, ctx->threads);
    } else {
        float *pooled = head;
        for (i = 0; i < c; i++) {
            double s = 0.0;
            long p;
            for (p = 0; p < (long)h * w; p++) s += feat[(size_t)i * h * w + p];
            pooled[i] = (float)(s / ((double)h * w));
        }
        imret__stage(&R, "pooled", pooled, c, 1, 1);
        imret__linear(m->fc[0].w, m->fc[0].b, pooled, c, m->num_classes, 0, logits, ctx->threads);
    }
    {
        imret_tensor t;
        t.c = m->num_classes; t.h = 1; t.w = 1; t.data = logits;
        if (opts && opts->on_stage) opts->on_stage(opts->user, "logits", &t);
    }
    return IMRET_OK;
}

/* ======================================================================================
   [impl: file I/O]
   Whole-file reads with a size limit, and read-only mappings. POSIX open/read/mmap where
   available (checked descriptors, no stdio FILE), stdio elsewhere.
   ====================================================================================== */
#ifndef IMRET_NO_STDIO
#if defined(__unix__) || defined(__APPLE__)
#define IMRET__POSIX 1
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
#else
#define IMRET__POSIX 0
#endif

/* Read a whole file (<= max_bytes) into a fresh buffer (free with IMRET_FREE), or map it
   read-only when *mapped is non-NULL and mapping is possible (then *mapped = 1 and the
   caller releases it with imret__unmap). what names the kind of file in messages. */
static imret_result imret__read_file(const char *path, size_t max_bytes, const char *what, uint8_t **data,
                                     size_t *size, int *mapped) {
#if IMRET__POSIX
    struct stat st;
    int fd;
    size_t got = 0;
    uint8_t *buf;
    *data = NULL;
    *size = 0;
    fd = open(path, O_RDONLY);
    if (fd < 0) return imret__fail(IMRET_ERROR_IO, "%s: cannot open %s: %s", what, path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return imret__fail(IMRET_ERROR_IO, "%s: %s is not a regular file", what, path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return imret__fail(IMRET_ERROR_LIMIT, "%s: %s is %llu bytes, over the limit of %lu", what, path,
                           (unsigned long long)st.st_size, (unsigned long)max_bytes);
    }
    if (mapped && *mapped && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (p == MAP_FAILED) return imret__fail(IMRET_ERROR_IO, "%s: cannot map %s: %s", what, path, strerror(errno));
        *data = (uint8_t *)p;
        *size = (size_t)st.st_size;
        return IMRET_OK;
    }
    if (mapped) *mapped = 0;
    buf = (uint8_t *)imret__malloc((size_t)st.st_size);
    if (!buf) {
        close(fd);
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: cannot allocate %llu bytes for %s", what,
                           (unsigned long long)st.st_size, path);
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            IMRET_FREE(buf);
            close(fd);
            return imret__fail(IMRET_ERROR_IO, "%s: read error on %s: %s", what, path, r < 0 ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = got;
    return IMRET_OK;
#else
    FILE *f = fopen(path, "rb");
    long n;
    uint8_t *buf;
    if (mapped) *mapped = 0;
    *data = NULL;
    *size = 0;
    if (!f) return imret__fail(IMRET_ERROR_IO, "%s: cannot open %s", what, path);
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return imret__fail(IMRET_ERROR_IO, "%s: cannot size %s", what, path);
    }
    if ((unsigned long)n > max_bytes) {
        fclose(f);
        return imret__fail(IMRET_ERROR_LIMIT, "%s: %s is %ld bytes, over the limit of %lu", what, path, n, (unsigned long)max_bytes);
    }
    buf = (uint8_t *)imret__malloc((size_t)n);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        IMRET_FREE(buf);
        fclose(f);
        return imret__fail(buf ? IMRET_ERROR_IO : IMRET_ERROR_OUT_OF_MEMORY, "%s: cannot read %s", what, path);
    }
    fclose(f);
    *data = buf;
    *size = (size_t)n;
    return IMRET_OK;
#endif
}

static void imret__release_file(uint8_t *data, size_t size, int mapped) {
#if IMRET__POSIX
    if (mapped) {
        if (data) munmap(data, size);
        return;
    }
#endif
    (void)size;
    (void)mapped;
    IMRET_FREE(data);
}

IMRET_DEF imret_result imret_model_load_file(const char *path, const imret_model_config *cfg, imret_model **out) {
    imret_model_config def = imret_model_config_init();
    uint8_t *data;
    size_t size;
    int mapped;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_load_file: out is NULL");
    *out = NULL;
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_load_file: path is NULL");
    if (!cfg) cfg = &def;
    mapped = cfg->use_mmap;
    if ((rc = imret__read_file(path, cfg->max_file_bytes, "weights", &data, &size, &mapped)) != IMRET_OK) return rc;
    rc = imret_model_load_memory(data, size, cfg, out);
    imret__release_file(data, size, mapped);
    if (rc != IMRET_OK) {
        /* prefix the file name to the detail */
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", imret_last_error());
        imret__fail(rc, "%s: %s", path, tmp);
    }
    return rc;
}
#endif /* IMRET_NO_STDIO */

/* ======================================================================================
   [impl: image I/O]
   Decoding with stb_image (compiled privately into this unit unless the host provides it),
   EXIF orientation for JPEGs, resizing with stb_image_resize, model normalisation.
   ====================================================================================== */
#ifndef IMRET_NO_STB_IMAGE
#ifndef IMRET_STB_IMAGE_INCLUDED
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wpedantic"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wduplicated-branches"
#endif
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_MALLOC(sz) IMRET_MALLOC(sz)
#define STBI_REALLOC(p, sz) IMRET_REALLOC(p, sz)
#define STBI_FREE(p) IMRET_FREE(p)
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#define STBI_ASSERT(x) ((void)0) /* a library must not abort its host */
#include "stb_image.h"
/* stb_image 2.27 declares this but never defines it; with STB_IMAGE_STATIC that warns. */
STBIDEF void stbi_set_unpremultiply_on_load_thread(int flag_true_if_should_unpremultiply) {
    (void)flag_true_if_should_unpremultiply;
}
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STBIR_MALLOC(sz, ctx) ((void)(ctx), IMRET_MALLOC(sz))
#define STBIR_FREE(p, ctx) ((void)(ctx), IMRET_FREE(p))
#define STBIR_ASSERT(x) ((void)0)
#include "stb_image_resize.h"
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif /* IMRET_STB_IMAGE_INCLUDED */
#endif /* IMRET_NO_STB_IMAGE */

IMRET_DEF void imret_tensor_free(imret_tensor *t) {
    if (!t) return;
    IMRET_FREE(t->data);
    memset(t, 0, sizeof *t);
}

IMRET_DEF void imret_image_free(imret_image *img) {
    if (!img) return;
    IMRET_FREE(img->pixels);
    memset(img, 0, sizeof *img);
}

IMRET_DEF imret_image_config imret_image_config_init(void) {
    imret_image_config c;
    memset(&c, 0, sizeof c);
    c.max_pixels = (size_t)1 << 28;
    c.max_file_bytes = (size_t)1 << 30;
    c.apply_exif = 1;
    return c;
}

/* Walk the JPEG marker segments up to the first scan, looking for APP1 "Exif\0\0" and its
   IFD0 tag 0x0112. Every read is bounds-checked against size. */
IMRET_DEF int imret_jpeg_orientation(const void *data, size_t size) {
    const uint8_t *p = (const uint8_t *)data;
    size_t pos = 2;
    if (!p || size < 4 || p[0] != 0xFF || p[1] != 0xD8) return 1;
    while (pos + 4 <= size) {
        uint8_t marker;
        size_t len;
        if (p[pos] != 0xFF) return 1;
        marker = p[pos + 1];
        if (marker == 0xFF) { pos++; continue; } /* fill byte */
        if (marker == 0xDA || marker == 0xD9) return 1; /* start of scan / end: no EXIF */
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { pos += 2; continue; }
        len = (size_t)p[pos + 2] << 8 | p[pos + 3];
        if (len < 2 || len > size - pos - 2) return 1;
        if (marker == 0xE1 && len >= 2 + 6 + 8 && !memcmp(p + pos + 4, "Exif\0\0", 6)) {
            const uint8_t *t = p + pos + 10; /* TIFF header */
            size_t tlen = len - 8, ifd, n, i;
            int le;
            if (t[0] == 'I' && t[1] == 'I') le = 1;
            else if (t[0] == 'M' && t[1] == 'M') le = 0;
            else return 1;
#define IMRET__T16(o) (le ? (unsigned)(t[o] | t[(o) + 1] << 8) : (unsigned)(t[o] << 8 | t[(o) + 1]))
#define IMRET__T32(o) (le ? ((size_t)t[o] | (size_t)t[(o) + 1] << 8 | (size_t)t[(o) + 2] << 16 | (size_t)t[(o) + 3] << 24) \
                          : ((size_t)t[o] << 24 | (size_t)t[(o) + 1] << 16 | (size_t)t[(o) + 2] << 8 | (size_t)t[(o) + 3]))
            if (IMRET__T16(2) != 42) return 1;
            ifd = IMRET__T32(4);
            if (ifd > tlen || tlen - ifd < 2) return 1;
            n = IMRET__T16(ifd);
            for (i = 0; i < n; i++) {
                size_t e = ifd + 2 + 12 * i;
                if (e > tlen || tlen - e < 12) return 1;
                if (IMRET__T16(e) == 0x0112 && IMRET__T16(e + 2) == 3) {
                    unsigned v = IMRET__T16(e + 8);
                    return (v >= 1 && v <= 8) ? (int)v : 1;
                }
            }
#undef IMRET__T16
#undef IMRET__T32
            return 1;
        }
        pos += 2 + len;
    }
    return 1;
}

IMRET_DEF imret_result imret_image_orient(imret_image *img, int orientation) {
    int w, h, c, ow, oh, x, y, k;
    uint8_t *dst;
    if (!img || !img->pixels) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_image_orient: NULL image");
    if (orientation < 1 || orientation > 8)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_image_orient: orientation %d (1..8)", orientation);
    if (orientation == 1) return IMRET_OK;
    w = img->width; h = img->height; c = img->channels;
    ow = orientation >= 5 ? h : w;
    oh = orientation >= 5 ? w : h;
    dst = (uint8_t *)imret__calloc((size_t)w * h, (size_t)c);
    if (!dst) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_image_orient: out of memory");
    for (y = 0; y < oh; y++)
        for (x = 0; x < ow; x++) {
            int sx, sy; /* source pixel of output (x, y), as PIL's ImageOps.exif_transpose */
            switch (orientation) {
            case 2: sx = w - 1 - x; sy = y; break;             /* mirror horizontal */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;     /* rotate 180        */
            case 4: sx = x; sy = h - 1 - y; break;             /* mirror vertical   */
            case 5: sx = y; sy = x; break;                     /* transpose         */
            case 6: sx = y; sy = h - 1 - x; break;             /* rotate 90 CW      */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;     /* transverse        */
            default: sx = w - 1 - y; sy = x; break;            /* 8: rotate 90 CCW  */
            }
            for (k = 0; k < c; k++) dst[((size_t)y * ow + x) * c + k] = img->pixels[((size_t)sy * w + sx) * c + k];
        }
    IMRET_FREE(img->pixels);
    img->pixels = dst;
    img->width = ow;
    img->height = oh;
    return IMRET_OK;
}

#ifndef IMRET_NO_STB_IMAGE
IMRET_DEF imret_result imret_image_load_memory(const void *data, size_t size, const imret_image_config *cfg,
                                               imret_image *out) {
    imret_image_config def = imret_image_config_init();
    int w, h, comp;
    uint8_t *px;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_image_load_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!data && size) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_image_load_memory: data is NULL");
    if (!cfg) cfg = &def;
    if (size == 0) return imret__fail(IMRET_ERROR_IMAGE_DECODE, "image: empty (0 bytes)");
    if (size > (size_t)INT_MAX) return imret__fail(IMRET_ERROR_LIMIT, "image: %lu bytes is too large to decode", (unsigned long)size);
    /* PNG: read the declared size from IHDR ourselves; stb_image refuses large ones before
       its info call can report the size */
    if (size >= 24 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8) && !memcmp((const uint8_t *)data + 12, "IHDR", 4)) {
        const uint8_t *p = (const uint8_t *)data + 16;
        size_t pw = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        size_t ph = (size_t)p[4] << 24 | (size_t)p[5] << 16 | (size_t)p[6] << 8 | p[7];
        if (pw && ph && pw > cfg->max_pixels / ph)
            return imret__fail(IMRET_ERROR_IMAGE_SIZE, "image: PNG header declares %lux%lu pixels, over the limit of %lu pixels",
                               (unsigned long)pw, (unsigned long)ph, (unsigned long)cfg->max_pixels);
    }
    if (!stbi_info_from_memory((const stbi_uc *)data, (int)size, &w, &h, &comp)) {
        const char *why = stbi_failure_reason();
        if (why && strstr(why, "large"))
            return imret__fail(IMRET_ERROR_IMAGE_SIZE, "image: declared size is too large to decode (%s)", why);
        return imret__fail(IMRET_ERROR_IMAGE_DECODE, "image: not a supported image format (%s)", why ? why : "unknown");
    }
    if (w <= 0 || h <= 0 || (size_t)w > cfg->max_pixels / (size_t)h)
        return imret__fail(IMRET_ERROR_IMAGE_SIZE, "image: %dx%d pixels exceeds the limit of %lu pixels", w, h,
                           (unsigned long)cfg->max_pixels);
    px = stbi_load_from_memory((const stbi_uc *)data, (int)size, &w, &h, &comp, comp == 2 ? 4 : 0);
    if (!px) return imret__fail(IMRET_ERROR_IMAGE_DECODE, "image: decoding failed (%s)", stbi_failure_reason());
    out->width = w;
    out->height = h;
    out->channels = comp == 2 ? 4 : comp;
    out->pixels = px;
    if (cfg->apply_exif) {
        imret_result rc = imret_image_orient(out, imret_jpeg_orientation(data, size));
        if (rc) { imret_image_free(out); return rc; }
    }
    return IMRET_OK;
}

#ifndef IMRET_NO_STDIO
IMRET_DEF imret_result imret_image_load_file(const char *path, const imret_image_config *cfg, imret_image *out) {
    imret_image_config def = imret_image_config_init();
    uint8_t *data;
    size_t size;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_image_load_file: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_image_load_file: path is NULL");
    if (!cfg) cfg = &def;
    if ((rc = imret__read_file(path, cfg->max_file_bytes, "image", &data, &size, NULL)) != IMRET_OK) return rc;
    rc = imret_image_load_memory(data, size, cfg, out);
    IMRET_FREE(data);
    if (rc != IMRET_OK) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", imret_last_error());
        imret__fail(rc, "%s: %s", path, tmp);
    }
    return rc;
}
#endif
#endif /* IMRET_NO_STB_IMAGE */

IMRET_DEF imret_preprocess_config imret_preprocess_config_init(void) {
    imret_preprocess_config c;
    memset(&c, 0, sizeof c);
    c.mode = IMRET_RESIZE_LONGEST_SIDE;
    c.longest_side = 512;
    c.upscale = 1;
    c.resize_side = 256;
    c.crop_size = 224;
    c.min_side = 32;
    c.min_source_side = 1;
    c.background[0] = c.background[1] = c.background[2] = 128;
    c.filter = IMRET_FILTER_MITCHELL;
    return c;
}

static const stbir_filter imret__stbir_filter[4] = {STBIR_FILTER_CATMULLROM, STBIR_FILTER_MITCHELL, STBIR_FILTER_BOX,
                                                    STBIR_FILTER_CUBICBSPLINE};

static int imret__round_pos(double v) { return v < 1.0 ? 1 : (int)(v + 0.5); }

IMRET_DEF imret_result imret_preprocess(const imret_model *model, const imret_image *img,
                                        const imret_preprocess_config *cfg, imret_tensor *out) {
    imret_preprocess_config def = imret_preprocess_config_init();
    int w, h, nw, nh, cx = 0, cy = 0, ow, oh, x, y, ch;
    size_t npx;
    uint8_t *rgb = NULL, *rs = NULL;
    const uint8_t *src;
    double scale = 1.0;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_preprocess: out is NULL");
    memset(out, 0, sizeof *out);
    if (!model || !img || !img->pixels) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_preprocess: NULL argument");
    if (!cfg) cfg = &def;
    w = img->width; h = img->height;
    if (img->channels != 1 && img->channels != 3 && img->channels != 4)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_preprocess: %d channels (1, 3 or 4 supported)", img->channels);
    if (w <= 0 || h <= 0 || w > 1 << 20 || h > 1 << 20)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_preprocess: image size %dx%d", w, h);
    if (w < cfg->min_source_side || h < cfg->min_source_side)
        return imret__fail(IMRET_ERROR_IMAGE_SIZE, "image: %dx%d is smaller than the minimum side of %d", w, h, cfg->min_source_side);
    if (cfg->min_side < 1 || cfg->min_side > 4096 || (cfg->mode == IMRET_RESIZE_LONGEST_SIDE && (cfg->longest_side < cfg->min_side || cfg->longest_side > 8192)) ||
        (cfg->mode == IMRET_RESIZE_CENTER_CROP && (cfg->crop_size < 1 || cfg->crop_size > cfg->resize_side || cfg->resize_side > 8192)) ||
        (unsigned)cfg->mode > IMRET_RESIZE_NONE || (unsigned)cfg->filter > IMRET_FILTER_BSPLINE)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_preprocess: invalid sizes in config (mode %d, longest %d, resize %d, crop %d, min %d)",
                           (int)cfg->mode, cfg->longest_side, cfg->resize_side, cfg->crop_size, cfg->min_side);
    /* target size */
    if (cfg->mode == IMRET_RESIZE_LONGEST_SIDE) {
        scale = (double)cfg->longest_side / (w > h ? w : h);
        if (!cfg->upscale && scale > 1.0) scale = 1.0;
    } else if (cfg->mode == IMRET_RESIZE_CENTER_CROP) {
        scale = (double)cfg->resize_side / (w < h ? w : h);
    }
    if ((w < h ? w : h) * scale < cfg->min_side) scale = (double)cfg->min_side / (w < h ? w : h);
    nw = imret__round_pos(w * scale);
    nh = imret__round_pos(h * scale);
    if ((nw < h ? nw : nh) < cfg->min_side) { /* rounding: keep the shorter side >= min_side */
        if (nw < nh) nw = cfg->min_side; else nh = cfg->min_side;
    }
    if (nw > 16384 || nh > 16384)
        return imret__fail(IMRET_ERROR_IMAGE_SIZE, "image: %dx%d would be resized to %dx%d, over 16384 pixels per side", w, h, nw, nh);
    /* grey / alpha -> RGB */
    npx = (size_t)w * h;
    if (img->channels == 3) {
        src = img->pixels;
    } else {
        size_t i;
        rgb = (uint8_t *)imret__calloc(npx, 3);
        if (!rgb) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_preprocess: out of memory");
        for (i = 0; i < npx; i++) {
            if (img->channels == 1) {
                rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = img->pixels[i];
            } else {
                unsigned a = img->pixels[4 * i + 3];
                for (ch = 0; ch < 3; ch++)
                    rgb[3 * i + ch] = (uint8_t)((a * img->pixels[4 * i + ch] + (255 - a) * cfg->background[ch] + 127) / 255);
            }
        }
        src = rgb;
    }
    if (nw != w || nh != h) {
        rs = (uint8_t *)imret__calloc((size_t)nw * nh, 3);
        if (!rs || !stbir_resize_uint8_generic(src, w, h, w * 3, rs, nw, nh, nw * 3, 3, STBIR_ALPHA_CHANNEL_NONE, 0,
                                               STBIR_EDGE_CLAMP, imret__stbir_filter[cfg->filter], STBIR_COLORSPACE_LINEAR, NULL)) {
            IMRET_FREE(rs);
            IMRET_FREE(rgb);
            return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_preprocess: resizing to %dx%d failed (out of memory)", nw, nh);
        }
        src = rs;
    }
    ow = nw; oh = nh;
    if (cfg->mode == IMRET_RESIZE_CENTER_CROP) {
        ow = oh = cfg->crop_size;
        if (ow > nw) ow = nw;
        if (oh > nh) oh = nh;
        cx = (nw - ow) / 2;
        cy = (nh - oh) / 2;
    }
    out->data = (float *)imret__calloc((size_t)3 * ow * oh, sizeof(float));
    if (!out->data) {
        IMRET_FREE(rs);
        IMRET_FREE(rgb);
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_preprocess: out of memory");
    }
    out->c = 3; out->h = oh; out->w = ow;
    for (ch = 0; ch < 3; ch++) {
        int sc = model->input_bgr ? 2 - ch : ch;
        float mul = model->input_scale / model->std[ch], add = -model->mean[ch] / model->std[ch];
        float *plane = out->data + (size_t)ch * ow * oh;
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++)
                plane[(size_t)y * ow + x] = src[((size_t)(y + cy) * nw + (x + cx)) * 3 + sc] * mul + add;
    }
    IMRET_FREE(rs);
    IMRET_FREE(rgb);
    return IMRET_OK;
}

/* ======================================================================================
   [impl: descriptors]
   ====================================================================================== */
IMRET_DEF const char *imret_pooling_name(imret_pooling p) {
    switch (p) {
    case IMRET_POOL_GEM: return "gem";
    case IMRET_POOL_MAC: return "mac";
    case IMRET_POOL_SPOC: return "spoc";
    case IMRET_POOL_RMAC: return "rmac";
    }
    return "unknown";
}

IMRET_DEF imret_descriptor_config imret_descriptor_config_init(imret_setting setting) {
    imret_descriptor_config c;
    memset(&c, 0, sizeof c);
    c.pooling = IMRET_POOL_GEM;
    c.gem_p = 3.0f;
    c.rmac_levels = 3;
    c.setting = setting;
    c.longest_side = setting == IMRET_SETTING_DUPLICATE ? 224 : 512;
    c.preprocess = imret_preprocess_config_init();
    return c;
}

/* v /= (||v|| + 1e-6), as cirtorch's l2n */
static void imret__l2n(float *v, size_t n) {
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)v[i] * v[i];
    s = 1.0 / (sqrt(s) + 1e-6);
    for (i = 0; i < n; i++) v[i] = (float)(v[i] * s);
}

/* max over rows [y0, y0+hh) x cols [x0, x0+ww) of every channel, L2-normalised, added to acc */
static void imret__region_mac_add(const imret_tensor *f, int y0, int x0, int hh, int ww, float *tmp, double *acc) {
    int c, y, x;
    double s = 0;
    for (c = 0; c < f->c; c++) {
        const float *plane = f->data + (size_t)c * f->h * f->w;
        float m = -INFINITY;
        for (y = y0; y < y0 + hh; y++)
            for (x = x0; x < x0 + ww; x++)
                if (plane[(size_t)y * f->w + x] > m) m = plane[(size_t)y * f->w + x];
        tmp[c] = m;
        s += (double)m * m;
    }
    s = 1.0 / (sqrt(s) + 1e-6);
    for (c = 0; c < f->c; c++) acc[c] += tmp[c] * s;
}

/* cirtorch rmac(): the global max region plus, for l = 1..L, square regions of side
   floor(2w/(l+1)) (w = shorter side) on a grid whose count along the longer side is chosen
   for about 40 % overlap. */
static void imret__rmac(const imret_tensor *f, int L, float *tmp, double *acc) {
    int H = f->h, W = f->w, w = H < W ? H : W, Wd = 0, Hd = 0, l, i, j, best = 0;
    double bestd = 1e30;
    for (i = 0; i < 6; i++) { /* steps 2..7 */
        double b = (double)((H > W ? H : W) - w) / (i + 1);
        double d = fabs(((double)w * w - w * b) / ((double)w * w) - 0.4);
        if (d < bestd) { bestd = d; best = i; }
    }
    if (H < W) Wd = best + 1;
    else if (H > W) Hd = best + 1;
    imret__region_mac_add(f, 0, 0, H, W, tmp, acc);
    for (l = 1; l <= L; l++) {
        int wl = (int)floor(2.0 * w / (l + 1)), wl2 = (int)floor(wl / 2.0 - 1);
        double bw = l + Wd == 1 ? 0 : (double)(W - wl) / (l + Wd - 1);
        double bh = l + Hd == 1 ? 0 : (double)(H - wl) / (l + Hd - 1);
        if (wl == 0) continue;
        for (i = 0; i < l + Hd; i++)
            for (j = 0; j < l + Wd; j++) {
                int cy = (int)floor(wl2 + i * bh) - wl2, cx = (int)floor(wl2 + j * bw) - wl2;
                imret__region_mac_add(f, cy, cx, wl, wl, tmp, acc);
            }
    }
}

IMRET_DEF imret_result imret_pool(const imret_tensor *f, const imret_descriptor_config *cfg, float *out, size_t out_len) {
    imret_descriptor_config def = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
    size_t hw, c;
    double *acc;
    if (!f || !f->data || !out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_pool: NULL argument");
    if (!cfg) cfg = &def;
    if (f->c <= 0 || f->h <= 0 || f->w <= 0) return imret__fail(IMRET_ERROR_SHAPE, "imret_pool: empty feature map %dx%dx%d", f->c, f->h, f->w);
    if (out_len < (size_t)f->c) return imret__fail(IMRET_ERROR_SHAPE, "imret_pool: output has room for %lu values, feature map has %d channels",
                                                   (unsigned long)out_len, f->c);
    if ((unsigned)cfg->pooling > IMRET_POOL_RMAC || !(cfg->gem_p >= 0.5f && cfg->gem_p <= 100.0f) || cfg->rmac_levels < 1 || cfg->rmac_levels > 8)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_pool: invalid options (pooling %d, p %g, levels %d)", (int)cfg->pooling,
                           (double)cfg->gem_p, cfg->rmac_levels);
    hw = (size_t)f->h * f->w;
    acc = (double *)imret__calloc((size_t)f->c, sizeof(double));
    if (!acc) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_pool: out of memory");
    if (cfg->pooling == IMRET_POOL_RMAC) {
        imret__rmac(f, cfg->rmac_levels, out, acc);
    } else {
        for (c = 0; c < (size_t)f->c; c++) {
            const float *plane = f->data + c * hw;
            size_t i;
            double s = 0, p = cfg->gem_p;
            float m = -INFINITY;
            for (i = 0; i < hw; i++) {
                if (cfg->pooling == IMRET_POOL_MAC) { if (plane[i] > m) m = plane[i]; }
                else if (cfg->pooling == IMRET_POOL_SPOC) s += plane[i];
                else s += pow(plane[i] > 1e-6f ? plane[i] : 1e-6, p);
            }
            acc[c] = cfg->pooling == IMRET_POOL_MAC ? m : cfg->pooling == IMRET_POOL_SPOC ? s / hw : pow(s / hw, 1.0 / p);
        }
    }
    for (c = 0; c < (size_t)f->c; c++) out[c] = (float)acc[c];
    IMRET_FREE(acc);
    imret__l2n(out, (size_t)f->c);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_describe(imret_context *ctx, const imret_image *img, const imret_descriptor_config *cfg, float *out,
                                      size_t out_len) {
    imret_descriptor_config def = imret_descriptor_config_init(IMRET_SETTING_RETRIEVAL);
    static const double scales[3] = {1.0, 0.70710678118654752, 0.5};
    int ns, si, C;
    float *tmp;
    imret_result rc = IMRET_OK;
    if (!ctx || !img || !out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_describe: NULL argument");
    if (!cfg) cfg = &def;
    C = ctx->model->feature_channels;
    if (out_len < (size_t)C)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_describe: output has room for %lu values, the model gives %d", (unsigned long)out_len, C);
    if (cfg->longest_side < 32 || cfg->longest_side > 8192)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_describe: longest_side %d (32..8192)", cfg->longest_side);
    ns = cfg->multiscale ? 3 : 1;
    tmp = (float *)imret__calloc((size_t)C, sizeof(float));
    if (!tmp) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_describe: out of memory");
    for (si = 0; si < ns && rc == IMRET_OK; si++) {
        imret_preprocess_config pc = cfg->preprocess;
        imret_tensor x, f;
        int c;
        pc.mode = IMRET_RESIZE_LONGEST_SIDE;
        pc.longest_side = (int)(cfg->longest_side * scales[si] + 0.5);
        if (pc.longest_side < pc.min_side) pc.longest_side = pc.min_side;
        if ((rc = imret_preprocess(ctx->model, img, &pc, &x)) != IMRET_OK) break;
        rc = imret_forward(ctx, &x, &f, NULL);
        imret_tensor_free(&x);
        if (rc == IMRET_OK) rc = imret_pool(&f, cfg, si ? tmp : out, (size_t)C);
        if (rc == IMRET_OK && si)
            for (c = 0; c < C; c++) out[c] += tmp[c];
    }
    IMRET_FREE(tmp);
    if (rc == IMRET_OK && ns > 1) imret__l2n(out, (size_t)C);
    return rc;
}

IMRET_DEF imret_result imret_describe_transforms(imret_context *ctx, const imret_image *img, const imret_descriptor_config *cfg,
                                                 float *out, size_t out_len) {
    imret_image t;
    size_t C, n;
    int o;
    imret_result rc = IMRET_OK;
    if (!ctx || !img || !img->pixels || !out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_describe_transforms: NULL argument");
    C = (size_t)ctx->model->feature_channels;
    if (out_len < 8 * C)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_describe_transforms: output has room for %lu values, needs 8 x %lu", (unsigned long)out_len,
                           (unsigned long)C);
    if (!imret__mul4((size_t)img->width, (size_t)img->height, (size_t)img->channels, 1, &n))
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_describe_transforms: image size overflows");
    for (o = 1; o <= 8 && rc == IMRET_OK; o++) {
        t = *img;
        t.pixels = (uint8_t *)imret__malloc(n);
        if (!t.pixels) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_describe_transforms: out of memory");
        memcpy(t.pixels, img->pixels, n);
        rc = imret_image_orient(&t, o);
        if (rc == IMRET_OK) rc = imret_describe(ctx, &t, cfg, out + (size_t)(o - 1) * C, C);
        imret_image_free(&t);
    }
    return rc;
}

IMRET_DEF float imret_similarity_best(const float *q, int q_count, const float *db, size_t dim) {
    float best = -INFINITY;
    int i;
    size_t k;
    if (!q || !db) return -INFINITY;
    for (i = 0; i < q_count; i++) {
        double s = 0;
        for (k = 0; k < dim; k++) s += (double)q[(size_t)i * dim + k] * db[k];
        if (s > best) best = (float)s;
    }
    return best;
}

#endif /* IMRET_IMPLEMENTATION_DONE */
#endif /* IMRET_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the imret authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
