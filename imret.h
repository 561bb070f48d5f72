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
       [api: contexts and forward pass]
     IMPLEMENTATION
       [impl: util and errors]          allocation, overflow checks, last-error, crc32
       [impl: threads and dispatch]     CPU features (cpuid/XGETBV), IMRET_SIMD, OpenMP
       [impl: kernels (scalar)]         conv (im2col + GEMM), pools, linear
       [impl: weight file]              .imw parsing and validation
       [impl: models]                   VGG / ResNet tables, BN folding, forward pass
       [impl: image I/O]                decode, EXIF orientation, resize, normalisation
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

/* ======================================================================================
   [api: models]
   ====================================================================================== */
typedef struct imret_model imret_model; /* opaque; read-only after load, shareable */

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

#ifdef IMRET_STATIC
#define IMRET_DEF static
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
static int imret__add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}
/* a*b*c*d with overflow check (use 1 for unused factors). */
static int imret__mul4(size_t a, size_t b, size_t c, size_t d, size_t *out) {
    size_t t;
    return imret__mul(a, b, &t) && imret__mul(t, c, &t) && imret__mul(t, d, out);
}

static void *imret__malloc(size_t n) { return IMRET_MALLOC(n ? n : 1); }
/* calloc through IMRET_MALLOC, overflow-checked. */
static void *imret__calloc(size_t count, size_t size) {
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
static uint64_t imret__rd64(const uint8_t *p) { return imret__rd32(p) | (uint64_t)imret__rd32(p + 4) << 32; }
static void imret__wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void imret__wr64(uint8_t *p, uint64_t v) { imret__wr32(p, (uint32_t)v); imret__wr32(p + 4, (uint32_t)(v >> 32)); }

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

/* ---- @@BASE_END@@ (the rest of the implementation follows) ---- */

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
