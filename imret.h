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
       imret_image_load_file("cat.jpg", NULL, &img);       // stb_image + EXIF orientation
       imret_preprocess_config pc = imret_preprocess_config_init();  // longest side 512
       imret_preprocess(model, &img, &pc, &in);            // resize + model normalisation
       imret_forward(ctx, &in, &fmap, NULL);               // C x H x W last conv feature map
       ...                                                  // pool, index, search (below)
       imret_tensor_free(&in); imret_image_free(&img);
       imret_context_destroy(ctx); imret_model_free(model);

   BUILD
       cc -O2 -fopenmp -I/usr/include/stb app.c -lm        (OpenMP optional)
   stb_image.h and stb_image_resize.h (Debian: libstb-dev) must be on the include path; the
   implementation includes them as private static copies (see IMRET_NO_STB_IMAGE).

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
   | IMRET_NO_STB_IMAGE             | no stb_image.h: no image decoding, the host fills       |
   |                                | imret_image itself (stb_image_resize.h is still used)   |
   | IMRET_STB_IMAGE_INCLUDED       | host already included stb_image[_resize].h impls        |
   | IMRET_CONV_HOOK(end, ic, oc,   | called before (end 0) and after (end 1) every           |
   |   k, stride, h, w)             | convolution of a forward pass: per-layer timing         |
   |                                | (bench/bench_layers.c); empty by default                |

   TABLE OF CONTENTS (search for the banner text)
     PUBLIC API
       [api: results and errors]  [api: SIMD dispatch]  [api: tensors and images]  [api: models]
       [api: contexts and forward pass]  [api: descriptors]  [api: whitening]  [api: hashing]
       [api: index and search]
     IMPLEMENTATION
       [impl: util and errors]          allocation, overflow checks, last-error, crc32
       [impl: threads and dispatch]     CPU features (cpuid/XGETBV), IMRET_SIMD, OpenMP
       [impl: kernels (scalar)]         conv (im2col + GEMM), pools, linear
       [impl: kernels (x86 SIMD)]       packed GEMM micro-kernels (AVX2, AVX-512; NEON beside them)
       [impl: kernels (Winograd)]       F(4x4,3x3) for 3x3 stride-1 convolutions
       [impl: kernels (int8)]           int8 x uint7 convolution (oracle, AVX2, AVX-512 VNNI); bf16 (AVX512_BF16)
       [impl: weight file]              .imw parsing and validation
       [impl: models]                   VGG / ResNet tables, BN folding, model load
       [impl: forward pass]             workspace planning, trunk, classifier heads
       [impl: file I/O]                 bounded whole-file reads, mmap, crash-safe writes
       [impl: image I/O]                decode, EXIF orientation, resize, normalisation
       [impl: descriptors]              MAC / SPoC / GeM / R-MAC pooling, multi-scale, 8 transforms
       [impl: whitening and hashing: linear algebra]  covariance, Householder + QL eigensolver
       [impl: whitening]                PCA-whitening train/apply, whitening files
       [impl: hashing]                  LSH / PCAH / ITQ / linear codes, hash files
       [impl: index]                    entries, id hash map, labels, fp16, .imri files
       [impl: search]                   cosine/Hamming kernels, top-k, range, multi-index hashing
       [impl: dedup]                    duplicate groups (range search + union-find), FAISS interop
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

/* Arithmetic of the convolutions (weights in any file dtype are dequantised to fp32 at load;
   this chooses how the forward pass computes). See weights/FORMAT.md and the README. */
typedef enum imret_precision {
    IMRET_PRECISION_FP32 = 0, /* fp32 everywhere (default)                                     */
    IMRET_PRECISION_INT8 = 1, /* convolutions after the first block in int8 x uint7 with int32
                                 sums: per-output-channel weight scales, per-tensor activation
                                 clipping values calibrated into the file (tools/calibrate.c) */
    IMRET_PRECISION_BF16 = 2  /* bf16 weights x bf16 activations, fp32 sums. With AVX512_BF16
                                 (and simd AUTO/AVX512) every convolution runs on vdpbf16ps,
                                 1.2-1.3x fp32 on AMD Zen 5 (README) -- except on Intel CPUs,
                                 which run vdpbf16ps at half their FMA rate (0.58x fp32
                                 measured): there, and without AVX512_BF16, it is emulated:
                                 activations are rounded to bf16 and the fp32 kernels run, as
                                 fast as fp32. IMRET_BF16=native|emulated in the environment
                                 overrides the choice. Needs weights that are bf16 values after
                                 loading: requantise.py --dtype bf16 (folds BatchNorm); such a
                                 model also keeps a packed bf16 copy of its weights (+50 % RAM)
                                 where vdpbf16ps runs, unless it is loaded with
                                 imret_model_config.precision = BF16 (then only that copy) */
} imret_precision;

typedef struct imret_model_config {
    int use_mmap;             /* 1 (default): map the file read-only and drop its pages as the
                                 weights are packed, so loading peaks near the model size;
                                 0: read it into memory (peak file + model; use it when the
                                 file may be truncated while loading: a mapping then faults) */
    size_t max_file_bytes;    /* refuse larger files; default 2 GiB                          */
    int skip_checksum;        /* 1: do not verify the CRC (faster load of trusted files)     */
    imret_precision precision; /* FP32 (default): the model keeps fp32 weights and serves
                                 contexts of every precision. INT8 / BF16: loaded for that
                                 precision only, it keeps just the weights it computes with
                                 (int8 ResNet-50: int8 panels, ~4x less weight RAM; bf16 with
                                 AVX512_BF16: bf16 panels, half); the file must support it
                                 (else IMRET_ERROR_UNSUPPORTED) and contexts of any other
                                 precision, or BF16 ones that cannot run natively (simd below
                                 AVX512), are refused with IMRET_ERROR_UNSUPPORTED */
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
    int exact;                /* 1: every convolution on the direct path. 0 (default): 3x3
                                 stride-1 layers with >= 36 4x4 output tiles use Winograd
                                 F(4x4,3x3) on the SIMD levels (about 3x fewer multiplies;
                                 results differ from direct by ~1e-5 relative per layer).
                                 IMRET_CONV=direct in the environment forces exact for every
                                 context (IMRET_CONV=winograd: every 3x3 stride-1 layer) */
    imret_precision precision; /* IMRET_PRECISION_FP32 (default), _INT8 or _BF16; a model
                                 without what they need: IMRET_ERROR_UNSUPPORTED           */
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

/* ---- int8 calibration (see IMRET_PRECISION_INT8) ---- */
/* Number of convolutions int8 inference quantises: all but the first, in network order.
   When names is not NULL, names[i] (borrowed from the model, i < max_names) receives the
   tensor prefix of convolution i ("layer1.0.conv1"). */
IMRET_API int imret_model_quant_layers(const imret_model *model, const char **names, int max_names);
/* Calibration step: run the fp32 network on a preprocessed input and write to layer_max[i]
   the largest input value of quantised convolution i (n >= imret_model_quant_layers()).
   build/calibrate aggregates these over a few images into act_max tensors. */
IMRET_API imret_result imret_calibrate_forward(imret_context *ctx, const imret_tensor *input, float *layer_max,
                                               size_t n);

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

/* ---- descriptor helpers ---- */

/* Multi-scale combination: out = L2( sum of the count pooled descriptors descs[count][dim] ),
   i.e. the L2-normalised average of per-scale descriptors (each already L2-normalised, as
   imret_pool gives them). out may alias descs. Errors: NULL, count or dim 0. */
IMRET_API imret_result imret_descriptor_combine(const float *descs, size_t count, size_t dim, float *out);

/* One of the 8 rotations/flips of a C x H x W tensor (an image-like network input or a
   feature map), numbered like EXIF orientations and imret_image_orient: 1 identity,
   2 mirror, 3 rotate 180, 4 flip vertical, 5 transpose, 6 rotate 90 CW, 7 transverse,
   8 rotate 90 CCW (the output shows what imret_image_orient(img, o) shows). *out is a new
   tensor owned by the caller (imret_tensor_free). Orientations 5..8 swap H and W. */
IMRET_API imret_result imret_tensor_orient(const imret_tensor *in, int orientation, imret_tensor *out);

/* ======================================================================================
   [api: whitening]
   PCA-whitening learned from a set of descriptors: y = L2( P (x - mu) ) with
   P = diag(lambda_i^-power) E^T over the top out_dim eigenpairs (lambda_i, e_i) of the
   covariance (1/n) sum (x - mu)(x - mu)^T. power 0.5 is standard whitening, 0 a plain PCA
   rotation/reduction. Off by default in the descriptor pipeline: learned on a few hundred
   images it hurts retrieval; it needs many more training vectors than output dimensions.
   A whitening object is read-only after creation and may be shared between threads.
   ====================================================================================== */
typedef struct imret_whitening imret_whitening; /* opaque */

/* Flags of a learned whitening (imret_whitening_info.flags). */
#define IMRET_WHITENING_FEW_SAMPLES 1u     /* fewer than 10 x out_dim training vectors: expect
                                              it to hurt retrieval rather than help          */
#define IMRET_WHITENING_UNDERDETERMINED 2u /* n <= out_dim (only with allow_underdetermined):
                                              some kept directions are noise                */
#define IMRET_WHITENING_RANK_DEFICIENT 4u  /* kept eigenvalues below eig_floor x lambda_max
                                              were raised to that floor                      */

typedef struct imret_whitening_config {
    size_t out_dim;     /* D' (1..D) output dimensions; 0 (default) = D                       */
    float power;        /* eigenvalue exponent in P = diag(lambda^-power) E^T; default 0.5 ;
                           0 = PCA projection only, values between = partial whitening        */
    float shrinkage;    /* s in [0, 1]: lambda <- (1 - s) lambda + s mean(lambda), i.e. the
                           covariance shrunk toward a multiple of I; default 0                */
    float post_power;   /* signed power law y <- sign(y)|y|^post_power on the projected
                           vector before the final L2; in (0, 1]; default 1 (off)           */
    float eig_floor;    /* eigenvalues below eig_floor x lambda_max are raised to it;
                           default 1e-6 (keeps rank-deficient data finite)                 */
    int allow_underdetermined; /* 0 (default): refuse n <= D' with IMRET_ERROR_INVALID_ARGUMENT;
                                  1: train anyway and set IMRET_WHITENING_UNDERDETERMINED  */
    int threads;        /* OpenMP threads for training and batch application; 0 = all       */
} imret_whitening_config;
IMRET_API imret_whitening_config imret_whitening_config_init(void);

typedef struct imret_whitening_info {
    size_t in_dim, out_dim;
    uint64_t n_train;          /* training vectors; 0 when created from given matrices   */
    float power, shrinkage, post_power, eig_floor;
    unsigned flags;            /* IMRET_WHITENING_* */
    const float *mean;         /* borrowed: in_dim values                                */
    const float *eigenvalues;  /* borrowed: out_dim covariance eigenvalues (descending,
                                  before shrinkage/floor); zeros when created from matrices */
    const float *projection;   /* borrowed: out_dim x in_dim, row-major                 */
} imret_whitening_info;

/* Learn a whitening from n descriptors x[n][dim] (row-major). Two passes in double: mean,
   then covariance; symmetric eigendecomposition by Householder tridiagonalisation + implicit
   QL. Eigenvector signs are fixed (largest-magnitude component positive), so results are
   reproducible. cfg may be NULL. Errors: IMRET_ERROR_INVALID_ARGUMENT (NULL, dim 0, bad
   option, non-finite values, n <= out_dim unless allowed, n < 2), OUT_OF_MEMORY. */
IMRET_API imret_result imret_whitening_train(const float *x, size_t n, size_t dim, const imret_whitening_config *cfg,
                                             imret_whitening **out);
/* Wrap a given projection (e.g. cirtorch's learned Lw: m and P): y = L2(P (x - mean)).
   mean may be NULL (zero). Both are copied. */
IMRET_API imret_result imret_whitening_create(const float *mean, const float *projection, size_t in_dim, size_t out_dim,
                                              imret_whitening **out);
IMRET_API void imret_whitening_free(imret_whitening *w);
IMRET_API imret_result imret_whitening_get_info(const imret_whitening *w, imret_whitening_info *info);
/* Whiten n descriptors x[n][in_dim] into out[n][out_dim] (each L2-normalised). in_dim and
   out_dim must equal the whitening's (IMRET_ERROR_SHAPE otherwise, naming both sizes).
   threads: 0 = all, 1 = serial; results do not depend on it. */
IMRET_API imret_result imret_whitening_apply(const imret_whitening *w, const float *x, size_t n, size_t in_dim, float *out,
                                             size_t out_dim, int threads);
/* Serialisation (format in the implementation banner). save_memory writes to buf when
   cap >= the size (returned in *size in any case; buf may be NULL to query the size). */
IMRET_API imret_result imret_whitening_save_memory(const imret_whitening *w, void *buf, size_t cap, size_t *size);
IMRET_API imret_result imret_whitening_load_memory(const void *data, size_t size, imret_whitening **out);
#ifndef IMRET_NO_STDIO
/* Save: temporary file in the same directory, fsync, rename, fsync of the directory. */
IMRET_API imret_result imret_whitening_save_file(const imret_whitening *w, const char *path);
IMRET_API imret_result imret_whitening_load_file(const char *path, imret_whitening **out);
#endif

/* ======================================================================================
   [api: hashing]
   Deep-hash binarisation layer: bit b of a code is set when  W_b . (x - mu) + bias_b > 0.
   Codes are B bits packed little-endian into B/64 uint64 words: bit b is bit (b % 64) of
   word b / 64. B is one of 64, 128, 256, 512, 1024. A hash object is read-only after
   creation and may be shared between threads.
   ====================================================================================== */
typedef struct imret_hash imret_hash; /* opaque */

typedef enum imret_hash_method {
    IMRET_HASH_LSH = 0,   /* random Gaussian rows (seeded, deterministic); mu = training mean
                             when vectors are given, else 0                              */
    IMRET_HASH_PCAH = 1,  /* the top-B principal directions                              */
    IMRET_HASH_ITQ = 2,   /* PCA to B dimensions + learned rotation (Gong & Lazebnik 2011) */
    IMRET_HASH_LINEAR = 3 /* a given linear layer (imret_hash_create_linear)             */
} imret_hash_method;

/* What PCAH/ITQ do when B exceeds the rank of the training set (min(n - 1, D)). */
typedef enum imret_hash_fallback {
    IMRET_HASH_FALLBACK_LSH = 0,   /* learned bits up to the rank, LSH for the rest (default) */
    IMRET_HASH_FALLBACK_REFUSE = 1 /* fail with IMRET_ERROR_INVALID_ARGUMENT                  */
} imret_hash_fallback;

typedef struct imret_hash_config {
    imret_hash_method method;     /* default IMRET_HASH_ITQ                                    */
    int bits;                     /* 64, 128, 256 (default), 512, 1024                        */
    uint64_t seed;                /* LSH rows and ITQ's initial rotation; default 1            */
    int itq_iterations;           /* default 50                                               */
    imret_hash_fallback fallback; /* default IMRET_HASH_FALLBACK_LSH                          */
    const float *itq_init;        /* optional initial ITQ rotation, k x k row-major (k = learned
                                     bits), orthogonal; NULL = random from seed (default)   */
    int threads;                  /* OpenMP threads for training/encoding; 0 = all          */
} imret_hash_config;
IMRET_API imret_hash_config imret_hash_config_init(void);

typedef struct imret_hash_info {
    imret_hash_method method;
    size_t in_dim;
    int bits, words;          /* words = bits / 64                                         */
    int learned_bits;         /* PCAH/ITQ bits (the first ones); the rest are LSH            */
    uint64_t seed, n_train;
    int itq_iterations;
    const char *message;      /* fallback note ("itq: training rank 299 < 512 bits: ..."),
                                 "" when none; borrowed                                     */
    const float *mean;        /* borrowed: in_dim                                          */
    const float *weight;      /* borrowed: bits x in_dim, row-major                        */
    const float *bias;        /* borrowed: bits                                            */
    const double *itq_loss;   /* quantisation loss ||B - V R||_F^2 / n before each R update
                                 and at the end: itq_iterations + 1 values; NULL unless
                                 trained in this process                                   */
    const double *itq_rotation; /* learned_bits^2 row-major; NULL unless trained here      */
} imret_hash_info;

/* Train (PCAH, ITQ) or draw (LSH) a hash layer. x[n][dim] may be NULL/n = 0 for LSH only.
   cfg may be NULL (ITQ, 256 bits). Errors: INVALID_ARGUMENT (bad bits/method/option, too few
   vectors: PCAH/ITQ need n >= 2; with FALLBACK_REFUSE also B > rank), OUT_OF_MEMORY. */
IMRET_API imret_result imret_hash_train(const float *x, size_t n, size_t dim, const imret_hash_config *cfg,
                                        imret_hash **out);
/* A given linear layer, e.g. torch.nn.Linear(dim, bits): bit b = (W_b . (x - mean) + bias_b > 0).
   weight is bits x dim row-major; mean and bias may be NULL (zero). Copied. */
IMRET_API imret_result imret_hash_create_linear(const float *weight, const float *bias, const float *mean, size_t dim,
                                                int bits, imret_hash **out);
IMRET_API void imret_hash_free(imret_hash *h);
IMRET_API imret_result imret_hash_get_info(const imret_hash *h, imret_hash_info *info);
/* Encode n descriptors x[n][dim] into codes[n][words]. dim must equal the hash's input
   dimension and words its bits / 64 (IMRET_ERROR_SHAPE otherwise). Results do not depend
   on threads. */
IMRET_API imret_result imret_hash_encode(const imret_hash *h, const float *x, size_t n, size_t dim, uint64_t *codes,
                                         size_t words, int threads);
IMRET_API imret_result imret_hash_save_memory(const imret_hash *h, void *buf, size_t cap, size_t *size);
IMRET_API imret_result imret_hash_load_memory(const void *data, size_t size, imret_hash **out);
#ifndef IMRET_NO_STDIO
IMRET_API imret_result imret_hash_save_file(const imret_hash *h, const char *path);
IMRET_API imret_result imret_hash_load_file(const char *path, imret_hash **out);
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
/* Import from a FAISS file already in memory (the bytes are copied into the new index). */
IMRET_API imret_result imret_index_import_faiss_memory(const void *data, size_t size, const imret_index_config *cfg,
                                                       const uint64_t *ids, imret_index **out);

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
#ifdef IMRET_USE_CBLAS
#include <cblas.h> /* any cblas: OpenBLAS (Debian libopenblas-dev), BLIS, MKL's, the reference one */
#define IMRET__CBLAS 1
#else
#define IMRET__CBLAS 0
#endif

/* POSIX file access (open/read/mmap) for the file functions; stdio elsewhere. */
#if !defined(IMRET_NO_STDIO) && (defined(__unix__) || defined(__APPLE__))
#define IMRET__POSIX 1
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
#else
#define IMRET__POSIX 0
#endif

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
#define IMRET__INLINE __inline__ __attribute__((always_inline))
/* complete unrolling, so that small accumulator arrays live in registers (measured: without
   it GCC 12 kept the AVX2 micro-kernel's accumulators in memory) */
#define IMRET__UNROLL _Pragma("GCC unroll 8")
/* p's value becomes unknown to the optimiser: it cannot relate loads through p to those of
   the previous loop iteration (measured: GCC 12 kept pixels of the last tap in spilled
   registers across taps of imret__ukr_avx512_pt, 88 GFLOP/s) */
#define IMRET__OPAQUE(p) __asm__("" : "+r"(p))
#else
#define IMRET__UNROLL
#define IMRET__INLINE
#define IMRET__OPAQUE(p) ((void)0)
#endif
#if defined(__GNUC__) || defined(__clang__)
#define IMRET__PREFETCH(p) __builtin_prefetch(p)
#else
#define IMRET__PREFETCH(p) ((void)(p))
#endif
/* Weights read once per pass, cold from memory, are prefetched ahead of their use in shares:
   share i of parts of a run of bytes covers cache lines [*first, *first + return value) (the
   last shares may be short or empty). */
static long imret__line_share(size_t bytes, long parts, long i, long *first) {
    long lines = (long)((bytes + 63) / 64), per = (lines + parts - 1) / parts;
    *first = i * per < lines ? i * per : lines;
    return lines - *first < per ? lines - *first : per;
}
static void imret__prefetch_lines(const void *p, long first, long n) {
    const char *c = (const char *)p + (size_t)64 * first;
    long l;
    for (l = 0; l < n; l++) IMRET__PREFETCH(c + (size_t)64 * l);
}
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
   first use. crc = imret__crc32(0, data, n) matches Python's zlib.crc32(data).
   Thread safety: the first caller to claim the tables (state 0 -> 1) builds them and
   publishes them (state 2, release); callers that find them not yet published use the
   bitwise loop, so no thread ever reads a table another is writing (ThreadSanitizer-clean). */
static uint32_t imret__crc_table[4][256];
#if defined(__GNUC__) || defined(__clang__)
static int imret__crc_state; /* 0 none, 1 being built, 2 ready */
#define IMRET__CRC_READY() (__atomic_load_n(&imret__crc_state, __ATOMIC_ACQUIRE) == 2)
#define IMRET__CRC_CLAIM() __atomic_compare_exchange_n(&imret__crc_state, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#define IMRET__CRC_PUBLISH() __atomic_store_n(&imret__crc_state, 2, __ATOMIC_RELEASE)
#else /* other compilers: a racing second build writes the same values */
static volatile int imret__crc_state;
#define IMRET__CRC_READY() (imret__crc_state == 2)
#define IMRET__CRC_CLAIM() (imret__crc_state == 0 ? (imret__crc_state = 1) : 0)
#define IMRET__CRC_PUBLISH() (imret__crc_state = 2)
#endif
static int imret__crc_init(void) {
    uint32_t i, j, c;
    int expected = 0;
    (void)expected;
    if (IMRET__CRC_READY()) return 1;
    if (!IMRET__CRC_CLAIM()) return 0;
    for (i = 0; i < 256; i++) {
        c = i;
        for (j = 0; j < 8; j++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        imret__crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++)
        for (j = 1; j < 4; j++)
            imret__crc_table[j][i] = imret__crc_table[0][imret__crc_table[j - 1][i] & 0xff] ^ (imret__crc_table[j - 1][i] >> 8);
    IMRET__CRC_PUBLISH();
    return 1;
}
static uint32_t imret__crc32(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    if (!imret__crc_init()) { /* another thread is building the tables */
        int k;
        while (n--)
            for (crc ^= *p++, k = 0; k < 8; k++) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
        return ~crc;
    }
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
#if defined(__linux__)
#include <sys/auxv.h>
#endif
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
    IMRET__CPU_AVXVNNI = 1u << 6,   /* AVX-VNNI (VEX vpdpbusd on ymm)            */
    IMRET__CPU_DOTPROD = 1u << 7,   /* aarch64 dot product (sdot), HWCAP_ASIMDDP */
    IMRET__CPU_INTEL = 1u << 8,     /* vendor GenuineIntel (imret__bf16_native)  */
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
        if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu)
            f |= IMRET__CPU_INTEL; /* "GenuineIntel" */
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
            if ((f & IMRET__CPU_AVX2) && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)))
                f |= IMRET__CPU_AVXVNNI;
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
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & (1ul << 20)) f |= IMRET__CPU_DOTPROD; /* HWCAP_ASIMDDP */
#endif
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

/* Floats of the packed copy of M x K weights (whole panels, zero-padded rows). */
static size_t imret__wp_floats(int M, int K) { return ((size_t)M + IMRET__MR - 1) / IMRET__MR * IMRET__MR * (size_t)K; }

/* Row-major rows [m0, m0+rows) of M x K weights -> their places in the packed wp. */
static void imret__pack_rows(float *wp, int K, int m0, int rows, const float *w) {
    int m;
    size_t k;
    for (m = m0; m < m0 + rows; m++)
        for (k = 0; k < (size_t)K; k++)
            wp[(size_t)(m / IMRET__MR) * IMRET__MR * K + k * IMRET__MR + m % IMRET__MR] = w[(size_t)(m - m0) * K + k];
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

/* dst[j] = relu?(sum[j] + bias of row m (+ residual[roff + j])), j < n: the scalar epilogue, in
   this order (sum may be dst). */
static void imret__epilogue_row(const float *sum, float *dst, int n, const imret__epilogue *ep, int m, size_t roff) {
    float bias = ep->bias ? ep->bias[m] : 0.0f;
    const float *rrow = ep->residual ? ep->residual + roff : NULL;
    int j;
    for (j = 0; j < n; j++) {
        float v = sum[j] + bias;
        if (rrow) v += rrow[j];
        if (ep->relu && v < 0.0f) v = 0.0f;
        dst[j] = v;
    }
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
        for (i = 0; i < mn; i++)
            imret__epilogue_row(acc[i], C + (size_t)(m0 + i) * ldc + n0, nn, ep, m0 + i, (size_t)(m0 + i) * ldc + n0);
    }
}

#ifdef IMRET_USE_CBLAS
/* IMRET_USE_CBLAS: C[M][N] = epilogue(A[M][K] * B[K][N]) on the host's cblas_sgemm. A is
   packed (imret__wp_at) and sgemm wants it row-major, so it is unpacked into aw (M x K floats,
   in the forward workspace) first; the epilogue (bias, residual, ReLU, in the order of
   imret__gemm_scalar) is a second pass over C, so C must not be the residual. The BLAS
   threads as it is configured (e.g. OPENBLAS_NUM_THREADS), not by the context's thread count,
   and whether its bits depend on its thread count is the BLAS's affair. */
static void imret__gemm_cblas(int M, int N, int K, const float *A, float *aw, int unpack, const float *B, size_t ldb, float *C,
                              size_t ldc, const imret__epilogue *ep) {
    int m, k;
    if (unpack)
        for (m = 0; m < M; m++)
            for (k = 0; k < K; k++) aw[(size_t)m * K + k] = imret__wp_at(A, K, m, k);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, aw, K, B, (int)ldb, 0.0f, C, (int)ldc);
    for (m = 0; m < M; m++) imret__epilogue_row(C + (size_t)m * ldc, C + (size_t)m * ldc, N, ep, m, (size_t)m * ldc);
}
#endif

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

/* Max pool, row form (the SIMD paths): per output row, one pass per valid tap (ky, kx) over the
   output columns whose input column lies inside the image, so the inner loop has no bounds
   test and vectorises. Taps are visited in imret__maxpool's order and compared the same way
   (a NaN input never wins; of equal values the first stays, so -0/+0 too), so the result is
   bit-identical to it. Channels [ch0, ch1). */
static IMRET__INLINE void imret__maxpool_rows_body(const float *in, int h, int w, int k, int stride, int pad, float *out,
                                                   int oh, int ow, int ch0, int ch1) {
    int ch, oy, ox, ky, kx;
    for (ch = ch0; ch < ch1; ch++)
        for (oy = 0; oy < oh; oy++) {
            float *dst = out + ((size_t)ch * oh + oy) * ow;
            for (ox = 0; ox < ow; ox++) dst[ox] = -INFINITY;
            for (ky = 0; ky < k; ky++) {
                int iy = oy * stride - pad + ky;
                if (iy < 0 || iy >= h) continue;
                if (k == 2 && stride == 2 && pad == 0 && w >= 2 * ow) { /* VGG: both taps of the row in one pass */
                    const float *src = in + ((size_t)ch * h + iy) * w;
                    for (ox = 0; ox < ow; ox++) {
                        float m = dst[ox], a = src[2 * ox], b = src[2 * ox + 1];
                        m = a > m ? a : m;
                        dst[ox] = b > m ? b : m;
                    }
                    continue;
                }
                for (kx = 0; kx < k; kx++) { /* columns ox with 0 <= ox * stride - pad + kx < w */
                    const float *src = in + ((size_t)ch * h + iy) * w + kx - pad;
                    int lo = pad - kx > 0 ? (pad - kx + stride - 1) / stride : 0, hi = (w - 1 + pad - kx) / stride + 1;
                    if (w - 1 + pad - kx < 0) hi = 0;
                    if (hi > ow) hi = ow;
                    if (stride == 2) { /* the common case, spelt out so the compiler sees the stride */
                        for (ox = lo; ox < hi; ox++) dst[ox] = src[2 * ox] > dst[ox] ? src[2 * ox] : dst[ox];
                    } else {
                        for (ox = lo; ox < hi; ox++) dst[ox] = src[(size_t)ox * stride] > dst[ox] ? src[(size_t)ox * stride] : dst[ox];
                    }
                }
            }
        }
}
typedef void (*imret__maxpool_fn)(const float *in, int h, int w, int k, int stride, int pad, float *out, int oh, int ow,
                                  int ch0, int ch1);
#if IMRET__NEON /* NEON is baseline on aarch64: the plain instance vectorises (x86 ones: [impl: kernels (Winograd)]) */
static void imret__maxpool_rows_generic(const float *in, int h, int w, int k, int stride, int pad, float *out, int oh, int ow,
                                        int ch0, int ch1) {
    imret__maxpool_rows_body(in, h, w, k, stride, pad, out, oh, ow, ch0, ch1);
}
#endif
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

/* A block of dot products: out[q * ldo + r] = Q[q] . X[r] for nq queries of dim floats
   against `rows` consecutive rows of X (fp32, or fp16 in the index). One concept for the
   index search and the linear layers; the kernels are in [impl: search], each computes a
   (query, row) pair the same way whatever block it falls in. */
typedef void (*imret__idx_dot_fn)(const float *Q, size_t nq, const void *X, size_t rows, size_t dim, float *out, size_t ldo);
static imret__idx_dot_fn imret__dot_f32_for(imret_simd level); /* [impl: search] */

/* y[o] = b[o] + sum_i W[o][i] x[i]  (optionally ReLU). dot NULL: the oracle, summed in double
   one row after another; else fp32 SIMD dot products over blocks of rows (the old scalar
   loop, a chain of dependent adds, took ~120 ms of VGG16's 324 at 1 thread: about 4 GB/s
   over 494 MB of weights; bench_forward, Zen 5). Any thread count gives the same bits. */
#define IMRET__LINEAR_ROWS 64
static void imret__linear(const float *W, const float *b, const float *x, int in_n, int out_n,
                          int relu, float *y, int threads, imret__idx_dot_fn dot) {
    int o, blk, nblk = (out_n + IMRET__LINEAR_ROWS - 1) / IMRET__LINEAR_ROWS;
    (void)threads;
    if (dot) {
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && nblk > 1)
#endif
        for (blk = 0; blk < nblk; blk++) {
            int o0 = blk * IMRET__LINEAR_ROWS, n = out_n - o0 < IMRET__LINEAR_ROWS ? out_n - o0 : IMRET__LINEAR_ROWS, i;
            dot(x, 1, W + (size_t)o0 * in_n, (size_t)n, (size_t)in_n, y + o0, 0);
            for (i = o0; i < o0 + n; i++) {
                float v = y[i] + (b ? b[i] : 0.0f);
                y[i] = (relu && v < 0.0f) ? 0.0f : v;
            }
        }
        return;
    }
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
    const float *ph;         /* stride 2: the input split into phase planes (imret__bsrc_phase), or NULL */
    int hp, wp;              /* rows / columns of a phase plane                                           */
    const float *pd;         /* small layers: the input in zero-padded planes (imret__bsrc_pad), or NULL  */
    int pdh, pdw;            /* rows / columns of a padded plane                                          */
} imret__bsrc;

static void imret__bsrc_init(imret__bsrc *s, const float *in, int c, int h, int w, int k, int stride, int pad, int ow) {
    s->in = in; s->c = c; s->h = h; s->w = w; s->k = k; s->stride = stride; s->pad = pad; s->ow = ow;
    s->ph = NULL; s->hp = s->wp = 0;
    s->pd = NULL; s->pdh = s->pdw = 0;
}

typedef void (*imret__ukr_fn)(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
                              int first, int last, const float *bias, const float *res, int relu);

typedef struct imret__kernels {
    imret_simd level;
    int nr;            /* columns per micro-tile (0: portable path, im2col + imret__gemm_scalar) */
    imret__ukr_fn ukr; /* MR x nr micro-kernel                                                  */
    imret__ukr_fn ukr16; /* MR x 16 micro-kernel on B panels of 16 columns, or NULL             */
    /* MR x nr micro-kernel reading B in place, rows ldb floats apart (1x1 stride-1 layers), or NULL */
    void (*ukr_d)(int kc, const float *a, const float *b, size_t ldb, float *c, size_t ldc, int mr, int nr, int first,
                  int last, const float *bias, const float *res, int relu);
    /* transposed small-N kernel (imret__ukr_avx512_t) or NULL */
    void (*ukr_t)(int K, const float *a, const float *b, float *c, size_t ldc, int np, const float *bias, const float *res,
                  int relu, const char *pf, int pf_lines);
    /* direct transposed kernel on padded planes (imret__ukr_avx512_pt) or NULL */
    void (*ukr_pt)(int K, const float *a, const float *x, long d2, int kk, size_t plane, int pdw, int S, float *c, size_t ldc,
                   int np, const float *bias, const float *res, int relu);
    /* Winograd transforms ([impl: kernels (Winograd)]), set with the micro-kernel */
    void (*wg_weights)(const float *wp, int IC, float *U, int p0, int p1, size_t xstep, int pbase);
    void (*wg_input)(const float *in, int IC, int ic0, int ic1, int h, int w, int pad, int tiles_x, long t0, int nt, int nr,
                     float *V);
    void (*wg_output)(const float *Mb, int M, int ldm, long t0, int nt, int tiles_x, int oh, int ow, float *out,
                      const struct imret__epilogue *ep, int oc0, int oc1);
    imret__maxpool_fn maxpool; /* row-form max pool (imret__maxpool_rows_body); NULL: the oracle */
    int b_outer_kc; /* packed GEMM: pixel panel outer from this kc on (imret__gemm_panels); 0: never */
} imret__kernels;

/* ======================================================================================
   [impl: kernels (x86 SIMD)]
   GotoBLAS-style convolution GEMM. A (weights) is packed once at load in panels of
   IMRET__MR = 8 output channels, k-major (imret__wp_at). B is packed per (KC x NC) block in
   panels of nr pixels, k-major, straight from the input planes. The micro-kernel keeps an
   8 x nr tile of C in registers (AVX-512: nr = 32, 16 zmm accumulators; AVX2: nr = 24, two
   passes of 4 rows x 3 ymm). Blocking: KC = 256 (an A panel is 8 KiB, L1), NC = 192 (a B
   block is 192 KiB, L2, reused by every A panel of the tile). Tiles (NC columns x a range
   of A panels) are independent and always sum k in the same order, so results do not depend
   on the thread count. The epilogue (bias, residual, ReLU) is fused into the last KC block.
   Two AVX-512 kernels skip packing B: 1x1 layers that reduce channels read it in place
   (imret__gemm_panel_inplace), and strided / stem k x k layers broadcast their pixels straight
   from zero-padded planes (imret__gemm_direct).
   ====================================================================================== */
#define IMRET__KC 256
#define IMRET__NT_PIX 7 /* pixels per tile of the transposed small-N kernel (imret__ukr_avx512_t) */
#define IMRET__PT_PIX 14 /* pixels per tile of the direct kernel (imret__ukr_avx512_pt): two runs of 7 */
#define IMRET__NC 192
/* A last column block of <= IMRET__NC_TAIL columns joins the one before (N = 196 at 14x14:
   one block of 196, not 192 + 4, which streamed all of A again for 4 columns). */
#define IMRET__NC_TAIL 64
/* floats per k row of a packed B block: the largest block rounded up to whole panels (nr <= 32) */
#define IMRET__NC_MAX (IMRET__NC + IMRET__NC_TAIL + 32)
#define IMRET__PACK_FLOATS ((size_t)IMRET__KC * IMRET__NC_MAX)

/* Column blocks of an N-column GEMM: block b starts at b * IMRET__NC and has imret__nc_of
   columns. */
static long imret__nblocks(long N) {
    long nb = (N + IMRET__NC - 1) / IMRET__NC;
    return nb > 1 && N - (nb - 1) * IMRET__NC <= IMRET__NC_TAIL ? nb - 1 : nb;
}
static int imret__nc_of(long N, long nblocks, long b) { return b == nblocks - 1 ? (int)(N - b * IMRET__NC) : IMRET__NC; }
/* A whole packed B (imret__gemm_plan's shared layout) holds the column blocks one after the
   other, each K rows of *ld floats: IMRET__NC for a full block (a whole number of panels for
   every nr: 32, 24, 8), the last block's own width + 32 for it (whole panels of any nr <= 32).
   Returns the offset of block b. Rows had been IMRET__NC_MAX = 288 floats apart in every
   block: 5.3 instead of 3.7 MB for ResNet-50 layer2's 3x3/2 at 2 threads, and 5.3 instead of
   1.5 MB for layer4's K = 4608 at 49 pixels. */
static size_t imret__pack_block(long N, long nblocks, long b, int K, size_t *ld) {
    *ld = b < nblocks - 1 ? (size_t)IMRET__NC : (size_t)imret__nc_of(N, nblocks, nblocks - 1) + 32;
    return (size_t)b * IMRET__NC * (size_t)K;
}

/* Floats of the phase planes of a stride-2 input (imret__bsrc_phase). */
static size_t imret__phase_floats(int c, int h, int w) { return (size_t)c * 4 * (size_t)((h + 1) / 2) * (size_t)((w + 1) / 2); }

/* Stride 2: split each input plane into its 4 phases ph[c][2 * py + px][y][x] = in[c][2y + py]
   [2x + px], so that imret__pack_b gathers every kernel tap as contiguous runs of one phase
   plane instead of one value at a time. It pays where the gather is a large part of the
   work: bench_gemm, Xeon, 1 thread, interleaved: ResNet-50's stem 7x7/2 3.83 -> 2.51 ms,
   layer2's 3x3/2 2.41 -> 2.20; not at 14x14 and 7x7 outputs (layer3/4 3x3/2 2.04 -> 2.11,
   2.27 -> 2.36) nor for 1x1 (1.49 -> 1.58); later padded planes beat it below 3136 pixels
   (IMRET__PHASE_MIN_PIX). buf holds imret__phase_floats. */
static void imret__bsrc_phase(imret__bsrc *s, float *buf, int threads) {
    int np = 4, hp = (s->h + 1) / 2, wp = (s->w + 1) / 2;
    long cq;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && s->c > 1)
#endif
    for (cq = 0; cq < (long)s->c * np; cq++) {
        int ic = (int)(cq / np), q = (int)(cq % np), py = q >> 1, px = q & 1, y, x;
        const float *plane = s->in + (size_t)ic * s->h * s->w;
        float *dst = buf + (size_t)cq * hp * wp;
        for (y = 0; y < hp; y++) {
            const float *row = plane + (size_t)(2 * y + py) * s->w + px;
            float *d = dst + (size_t)y * wp;
            int n = 2 * y + py < s->h ? (s->w - px + 1) / 2 : 0;
            for (x = 0; x < n; x++) d[x] = row[2 * x];
            for (; x < wp; x++) d[x] = 0.0f;
        }
    }
    s->ph = buf; s->hp = hp; s->wp = wp;
}

/* Column offsets imret__pack_b computes at a time from padded planes (a multiple of every nr) */
#define IMRET__OFF_MAX 448

/* Floats of the zero-padded planes of imret__bsrc_pad (none when pad is 0). */
static size_t imret__pad_floats(int c, int h, int w, int pad) {
    return pad ? (size_t)c * (size_t)(h + 2 * pad) * (size_t)(w + 2 * pad) : 0;
}

/* Small and strided layers (imret__conv_run: IMRET__PHASE_MIN_PIX, IMRET__PAD_MAX_OW): the
   input copied once into zero-padded planes pd[c][y + pad][x + pad] =
   in[c][y][x] (or read as it is when pad is 0), so that imret__pack_b gathers any tap of any
   stride through one offset per column, with no bounds tests and no per-run copies. The runs
   of these layers are short (7 pixels at 7x7), and copying them one memcpy at a time with
   bounds took 0.32 ms of ResNet-50's 1.8 ms 3x3 layer4 convolutions at 1 thread (all 7 pixel
   panels packed, K = 4608; Zen 5). buf holds imret__pad_floats. */
static void imret__bsrc_pad(imret__bsrc *s, float *buf, int threads) {
    int pdh = s->h + 2 * s->pad, pdw = s->w + 2 * s->pad;
    long ic;
    (void)threads;
    if (!s->pad) {
        s->pd = s->in; s->pdh = s->h; s->pdw = s->w;
        return;
    }
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && s->c > 1)
#endif
    for (ic = 0; ic < s->c; ic++) {
        const float *plane = s->in + (size_t)ic * s->h * s->w;
        float *dst = buf + (size_t)ic * pdh * pdw;
        int y, x;
        memset(dst, 0, (size_t)s->pad * pdw * sizeof(float));
        for (y = 0; y < s->h; y++) {
            float *d = dst + (size_t)(y + s->pad) * pdw;
            for (x = 0; x < s->pad; x++) d[x] = d[s->pad + s->w + x] = 0.0f;
            memcpy(d + s->pad, plane + (size_t)y * s->w, (size_t)s->w * sizeof(float));
        }
        memset(dst + (size_t)(s->pad + s->h) * pdw, 0, (size_t)s->pad * pdw * sizeof(float));
    }
    s->pd = buf; s->pdh = pdh; s->pdw = pdw;
}

/* Stride-2 convolutions with k > 1 and at least this many output pixels gather B from phase
   planes (imret__bsrc_phase): ResNet's stem. Smaller strided ones gather from padded planes
   (imret__bsrc_pad): ResNet-50 at 224, bench/ab_layers.sh, 6 alternating rounds x 15 runs,
   layer2's 3x3/2 (784 pixels) 0.949 / 0.834 the phase-plane time at 1 / 2 threads, the stem
   (12544 pixels) 1.085 / 1.073. */
#define IMRET__PHASE_MIN_PIX 3136
/* Stride-1 convolutions with k > 1 (not Winograd) and output rows at most this long gather
   from padded planes too; longer rows are copied as runs (packing alone, 1 thread: 3x3 at
   14x14 0.49 -> 0.32 ms padded, 28x28 0.44 -> 0.39, 56x56 0.62 -> 0.77). */
#define IMRET__PAD_MAX_OW 32

/* How B of a (not Winograd) k x k convolution of stride `stride`, output rows of ow pixels and
   npix pixels in all, is gathered (imret__conv_run): 2 from phase planes, 1 from padded planes,
   0 from the input as it is. imret__bsrc_prepare makes the planes in buf, which holds
   imret__bsrc_floats of them. */
static int imret__bsrc_mode(int k, int stride, int ow, long npix) {
    if (stride == 2 && k > 1 && npix >= IMRET__PHASE_MIN_PIX) return 2;
    return stride > 1 || (k > 1 && ow <= IMRET__PAD_MAX_OW);
}
static size_t imret__bsrc_floats(int mode, int c, int h, int w, int pad) {
    return mode == 2 ? imret__phase_floats(c, h, w) : mode == 1 ? imret__pad_floats(c, h, w, pad) : 0;
}
static void imret__bsrc_prepare(imret__bsrc *s, int mode, float *buf, int threads) {
    if (mode == 2) imret__bsrc_phase(s, buf, threads);
    if (mode == 1) imret__bsrc_pad(s, buf, threads);
}

/* dst[0..run) = row[ix0 + u], 0 where ix0 + u lies outside [0, w): one stride-1 run of B. */
static void imret__copy_run(float *dst, const float *row, int w, int ix0, int run) {
    int lo = ix0 < 0 ? -ix0 : 0, hi = w - ix0 < run ? w - ix0 : run, u;
    if (lo > run) lo = run; /* the whole run may lie left of the image */
    if (hi < lo) hi = lo;
    for (u = 0; u < lo; u++) dst[u] = 0.0f;
    if (hi > lo) memcpy(dst + lo, row + (ix0 + lo), (size_t)(hi - lo) * sizeof(float));
    for (u = hi; u < run; u++) dst[u] = 0.0f;
}

/* Pack rows [k0, k0+kc) x columns [n0, n0+nc) of the implicit im2col matrix of s into
   panels of nr columns: out[(j*kc + kk)*nr + t], zero-padded to whole panels. */
static void imret__pack_b(const imret__bsrc *s, int k0, int kc, long n0, int nc, int nr, float *out) {
    int kk, j, npan = (nc + nr - 1) / nr, k2 = s->k * s->k;
    int plain = s->k == 1 && s->stride == 1 && s->pad == 0;
    if (s->pd && nr <= IMRET__OFF_MAX) { /* padded planes: tap (ky, kx) of column t is pd[off[t] + ky * pdw + kx] */
        int off[IMRET__OFF_MAX], t, c0, span = IMRET__OFF_MAX / nr * nr; /* columns in whole panels per pass */
        for (c0 = 0; c0 < nc; c0 += span) {
            int cn = nc - c0 < span ? nc - c0 : span, j0 = c0 / nr, ic, ky, kx;
            for (t = 0; t < cn; t++) {
                long p = n0 + c0 + t;
                off[t] = (int)(p / s->ow) * s->stride * s->pdw + (int)(p % s->ow) * s->stride;
            }
            ic = k0 / k2; ky = k0 / s->k % s->k; kx = k0 % s->k; /* then counted: a division per row cost more than its copy */
            for (kk = 0; kk < kc; kk++) {
                const float *src = s->pd + ((size_t)ic * s->pdh + ky) * s->pdw + kx;
                for (j = 0; j * nr < cn; j++) {
                    float *dst = out + ((size_t)(j0 + j) * kc + kk) * nr;
                    const int *o = off + j * nr;
                    int cols = cn - j * nr < nr ? cn - j * nr : nr;
                    for (t = 0; t < cols; t++) dst[t] = src[o[t]];
                    for (; t < nr; t++) dst[t] = 0.0f;
                }
                if (++kx == s->k) {
                    kx = 0;
                    if (++ky == s->k) { ky = 0; ic++; }
                }
            }
        }
        return;
    }
    for (kk = 0; kk < kc; kk++) {
        int r = k0 + kk, ic = r / k2, ky = r / s->k % s->k, kx = r % s->k;
        const float *plane = s->in + (size_t)ic * s->h * s->w;
        if (s->ph) { /* stride 2 from phase planes: tap (ky, kx) reads phase (py, px) at offset (dy, dx), stride 1 */
            int py = (ky - s->pad) & 1, px = (kx - s->pad) & 1, dy = (ky - s->pad - py) / 2, dx = (kx - s->pad - px) / 2;
            int hv = (s->h - py + 1) / 2, wv = (s->w - px + 1) / 2;
            const float *ph = s->ph + ((size_t)ic * 4 + 2 * py + px) * s->hp * s->wp;
            for (j = 0; j < npan; j++) {
                float *dst = out + ((size_t)j * kc + kk) * nr;
                int cols = nc - j * nr < nr ? nc - j * nr : nr, t = 0;
                long p = n0 + (long)j * nr;
                while (t < cols) {
                    int oy = (int)(p / s->ow), ox = (int)(p % s->ow);
                    int run = cols - t < s->ow - ox ? cols - t : s->ow - ox, iy = oy + dy, ix0 = ox + dx;
                    if (iy < 0 || iy >= hv) memset(dst + t, 0, (size_t)run * sizeof(float));
                    else imret__copy_run(dst + t, ph + (size_t)iy * s->wp, wv, ix0, run);
                    t += run;
                    p += run;
                }
                for (; t < nr; t++) dst[t] = 0.0f;
            }
            continue;
        }
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
                    imret__copy_run(dst + t, plane + (size_t)iy * s->w, s->w, ox - s->pad + kx, run);
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
/* g++ -O2 reports -Wmaybe-uninitialized inside GCC 12's own intrinsic headers (the
   _mm512_undefined_ps idiom): a false positive, silenced for these kernels only. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define IMRET__AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
/* One step of an AVX-512 micro-kernel row: x broadcast times two vectors into two named
   accumulators (named, not an array: an array may be kept in memory). */
#define IMRET__BFMA2(x, v0, v1, s0, s1)                                        \
    do {                                                                       \
        __m512 bx_ = _mm512_set1_ps(x);                                        \
        s0 = _mm512_fmadd_ps(bx_, v0, s0);                                     \
        s1 = _mm512_fmadd_ps(bx_, v1, s1);                                     \
    } while (0)
#define IMRET__AVX2 __attribute__((target("avx2,fma,f16c")))

/* 8 x 16 micro-kernel for panels of <= 16 columns (the last columns of a layer, e.g. 4 of the
   196 at 14x14): the 8 x 32 kernel would run its second zmm column on nothing. bench_gemm,
   Xeon, interleaved: ResNet-50 layer3 1x1 at 224 0.699 -> 0.615 and 0.672 -> 0.641 ms. B rows
   ldb floats apart; masked: the B loads read only the nr columns (B read in place). */
IMRET__AVX512 static IMRET__INLINE void imret__ukr_avx512_n16_body(int kc, const float *a, const float *b, size_t ldb, int masked,
                                                                    float *c, size_t ldc, int mr, int nr, int first, int last,
                                                                    const float *bias, const float *res, int relu) {
    __m512 acc[8];
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    int k, i;
    IMRET__UNROLL for (i = 0; i < 8; i++)
        acc[i] = (first || i >= mr) ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, c + (size_t)i * ldc);
    for (k = 0; k < kc; k++) {
        __m512 b0 = masked ? _mm512_maskz_loadu_ps(m0, b) : _mm512_loadu_ps(b);
        IMRET__UNROLL for (i = 0; i < 8; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b0, acc[i]);
        a += 8;
        b += ldb;
    }
    IMRET__UNROLL for (i = 0; i < 8; i++) {
        __m512 v = acc[i];
        if (i >= mr) break;
        if (last) {
            if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[i]));
            if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m0, res + (size_t)i * ldc));
            if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
        }
        _mm512_mask_storeu_ps(c + (size_t)i * ldc, m0, v);
    }
}

/* B panels of the 8 x 32 kernel keep their 32-float rows */
IMRET__AVX512 static void imret__ukr_avx512_n16(int kc, const float *a, const float *b, float *c, size_t ldc, int mr,
                                                int nr, int first, int last, const float *bias, const float *res, int relu) {
    imret__ukr_avx512_n16_body(kc, a, b, 32, 0, c, ldc, mr, nr, first, last, bias, res, relu);
}
/* B panels of 16-float rows (kern->ukr16): Winograd blocks of <= 16 tiles (see imret__conv_winograd) */
IMRET__AVX512 static void imret__ukr_avx512_p16(int kc, const float *a, const float *b, float *c, size_t ldc, int mr,
                                                int nr, int first, int last, const float *bias, const float *res, int relu) {
    imret__ukr_avx512_n16_body(kc, a, b, 16, 0, c, ldc, mr, nr, first, last, bias, res, relu);
}

#ifndef IMRET__INPLACE_PF
#define IMRET__INPLACE_PF 8
#endif
/* 8 x 32 micro-kernel: rows of C are 8 output channels, columns 32 pixels (2 zmm). B rows
   ldb floats apart; masked: B loads only the nr columns (B read in place, not packed). */
IMRET__AVX512 static IMRET__INLINE void imret__ukr_avx512_body(int kc, const float *a, const float *b, size_t ldb, int masked,
                                                                float *c, size_t ldc, int mr, int nr, int first, int last,
                                                                const float *bias, const float *res, int relu) {
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    int k, i;
    for (i = 0; i < mr; i++) { /* the C (and residual) rows this call ends with, fetched while it computes: forward
                                  pass, Xeon, ResNet-50's 64 -> 256 1x1 convs with residual 70 -> 93 GFLOP/s */
        IMRET__PREFETCH(c + (size_t)i * ldc);
        IMRET__PREFETCH(c + (size_t)i * ldc + 16);
        if (res && last) {
            IMRET__PREFETCH(res + (size_t)i * ldc);
            IMRET__PREFETCH(res + (size_t)i * ldc + 16);
        }
    }
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
        __m512 b0, b1;
        if (masked) { /* B read in place: rows N floats apart, which the hardware prefetchers miss */
            IMRET__PREFETCH(b + IMRET__INPLACE_PF * ldb);
            IMRET__PREFETCH(b + IMRET__INPLACE_PF * ldb + 16);
        }
        b0 = masked ? _mm512_maskz_loadu_ps(m0, b) : _mm512_loadu_ps(b);
        b1 = masked ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_loadu_ps(b + 16);
        IMRET__BFMA2(a[0], b0, b1, c00, c01); IMRET__BFMA2(a[1], b0, b1, c10, c11);
        IMRET__BFMA2(a[2], b0, b1, c20, c21); IMRET__BFMA2(a[3], b0, b1, c30, c31);
        IMRET__BFMA2(a[4], b0, b1, c40, c41); IMRET__BFMA2(a[5], b0, b1, c50, c51);
        IMRET__BFMA2(a[6], b0, b1, c60, c61); IMRET__BFMA2(a[7], b0, b1, c70, c71);
        a += 8;
        b += ldb;
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

IMRET__AVX512 static void imret__ukr_avx512(int kc, const float *a, const float *b, float *c, size_t ldc, int mr,
                                            int nr, int first, int last, const float *bias, const float *res, int relu) {
    if (nr <= 16) imret__ukr_avx512_n16(kc, a, b, c, ldc, mr, nr, first, last, bias, res, relu);
    else imret__ukr_avx512_body(kc, a, b, 32, 0, c, ldc, mr, nr, first, last, bias, res, relu);
}
/* B read in place: rows ldb floats apart (a 1x1 stride-1 convolution's input planes) */
IMRET__AVX512 static void imret__ukr_avx512_d(int kc, const float *a, const float *b, size_t ldb, float *c, size_t ldc,
                                              int mr, int nr, int first, int last, const float *bias, const float *res,
                                              int relu) {
    if (nr <= 16) imret__ukr_avx512_n16_body(kc, a, b, ldb, 1, c, ldc, mr, nr, first, last, bias, res, relu);
    else imret__ukr_avx512_body(kc, a, b, ldb, 1, c, ldc, mr, nr, first, last, bias, res, relu);
}

/* Epilogue of the transposed kernels (imret__ukr_avx512_t, imret__ukr_avx512_pt): tile holds
   np <= 16 pixels x 32 channels, pixel-major; each channel row's np pixels are gathered,
   given the epilogue of imret__ukr_avx512 (bias, residual, max with 0, in that order: the same
   bits) and stored. A scalar transpose took 1.1 of the direct kernel's 2.5 ms on ResNet-50's
   stem (Xeon, 1 thread). */
IMRET__AVX512 static IMRET__INLINE void imret__store_tile_t(const float *tile, int np, float *c, size_t ldc, const float *bias,
                                                            const float *res, int relu) {
    __m512i gi = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(32));
    __mmask16 pm = (__mmask16)((1u << np) - 1);
    int ch;
    for (ch = 0; ch < 32; ch++) {
        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), pm, gi, tile + ch, 4);
        if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[ch]));
        if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(pm, res + (size_t)ch * ldc));
        if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
        _mm512_mask_storeu_ps(c + (size_t)ch * ldc, pm, v);
    }
}

/* Small-N micro-kernel, transposed: a tile of 32 output channels x np <= IMRET__NT_PIX pixels
   over all of K, with the pixels broadcast from B (packed whole in panels of IMRET__NT_PIX:
   imret__pack_b with nr = 7, kc = K) and 16 channels per zmm, each from two 8-row A panels
   (two ymm loads and an insert: the packed layout stays as it is). 49 pixels (ResNet layer4 at
   224) fill 7 tiles exactly, where 8 x 32 tiles over pixels computed 64 columns. Used up to
   IMRET__SMALL_N pixels: at 196 it lost to the 8 x 32 kernel (see there).
   The results go to C transposed, through a small buffer (imret__store_tile_t): every sum
   runs over k in the same order with the same FMA, so the bits are the same. a: panel of channels 0..7 at k = 0; the next panels 8 K floats apart. The
   pf_lines cache lines from pf on are prefetched, spread evenly over the k loop. */
IMRET__AVX512 static void imret__ukr_avx512_t(int K, const float *a, const float *b, float *c, size_t ldc, int np,
                                              const float *bias, const float *res, int relu, const char *pf, int pf_lines) {
    const float *a1 = a + (size_t)8 * K, *a2 = a + (size_t)16 * K, *a3 = a + (size_t)24 * K;
    __m512 s00 = _mm512_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    __m512 s40 = s00, s41 = s00, s50 = s00, s51 = s00, s60 = s00, s61 = s00;
    float tile[IMRET__NT_PIX][32];
    int k, pl = 0;
    for (k = 0; k < K; k++) {
        __m512 v0;
        __m512 v1;
        const float *bk;
        if (pl < pf_lines && (long)pl * K <= (long)k * pf_lines) IMRET__PREFETCH(pf + (size_t)64 * pl++);
        v0 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a + 8 * k)), _mm256_loadu_ps(a1 + 8 * k), 1);
        v1 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a2 + 8 * k)), _mm256_loadu_ps(a3 + 8 * k), 1);
        bk = b + (size_t)IMRET__NT_PIX * k;
        IMRET__BFMA2(bk[0], v0, v1, s00, s01); IMRET__BFMA2(bk[1], v0, v1, s10, s11); IMRET__BFMA2(bk[2], v0, v1, s20, s21);
        IMRET__BFMA2(bk[3], v0, v1, s30, s31); IMRET__BFMA2(bk[4], v0, v1, s40, s41); IMRET__BFMA2(bk[5], v0, v1, s50, s51);
        IMRET__BFMA2(bk[6], v0, v1, s60, s61);
    }
    _mm512_storeu_ps(tile[0], s00); _mm512_storeu_ps(tile[0] + 16, s01); _mm512_storeu_ps(tile[1], s10); _mm512_storeu_ps(tile[1] + 16, s11);
    _mm512_storeu_ps(tile[2], s20); _mm512_storeu_ps(tile[2] + 16, s21); _mm512_storeu_ps(tile[3], s30); _mm512_storeu_ps(tile[3] + 16, s31);
    _mm512_storeu_ps(tile[4], s40); _mm512_storeu_ps(tile[4] + 16, s41); _mm512_storeu_ps(tile[5], s50); _mm512_storeu_ps(tile[5] + 16, s51);
    _mm512_storeu_ps(tile[6], s60); _mm512_storeu_ps(tile[6] + 16, s61);
    imret__store_tile_t(tile[0], np, c, ldc, bias, res, relu);
}

/* imret__ukr_avx512_t in ymm: each k's 32 weights are the four 8-row panels' own ymm loads,
   and each pixel is broadcast once for all four (28 ymm accumulators, in AVX-512VL's 32 ymm
   registers): the same FMA per lane in the same k order, the same bits. Used on CPUs other than
   Intel's (imret__kernels_for): a Zen 4 runs a 256-bit FMA pair as fast as one 512-bit FMA, and
   the two zmm inserts per 14 FMAs held the zmm form to 94 GFLOP/s there, where this one ran at
   115 (hot caches, K = 512; peak 116). ResNet-50 at 224, bench/ab_layers.sh: layer4's 1x1
   convolutions 0.91x their time at 1 thread and 0.88-0.91x at 2, the forward pass 0.983 / 0.975.
   An Intel Xeon with two 512-bit FMA units would run it at half the zmm form's rate. */
#define IMRET__YFMA4(x, w0, w1, w2, w3, s0, s1, s2, s3)                                                                 \
    do {                                                                                                             \
        __m256 bx_ = _mm256_set1_ps(x);                                                                              \
        s0 = _mm256_fmadd_ps(bx_, w0, s0);                                                                           \
        s1 = _mm256_fmadd_ps(bx_, w1, s1);                                                                           \
        s2 = _mm256_fmadd_ps(bx_, w2, s2);                                                                           \
        s3 = _mm256_fmadd_ps(bx_, w3, s3);                                                                           \
    } while (0)
/* the four ymm accumulators of pixel i into row i of a transposed kernel's tile */
#define IMRET__YST4(i, q0, q1, q2, q3)                                                                                \
    do {                                                                                                             \
        _mm256_storeu_ps(tile[i], q0); _mm256_storeu_ps(tile[i] + 8, q1);                                            \
        _mm256_storeu_ps(tile[i] + 16, q2); _mm256_storeu_ps(tile[i] + 24, q3);                                      \
    } while (0)
IMRET__AVX512 static void imret__ukr_avx512_ty(int K, const float *a, const float *b, float *c, size_t ldc, int np,
                                               const float *bias, const float *res, int relu, const char *pf, int pf_lines) {
    const float *a1 = a + (size_t)8 * K, *a2 = a + (size_t)16 * K, *a3 = a + (size_t)24 * K;
    __m256 s00 = _mm256_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00;
    __m256 s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00, s32 = s00, s33 = s00;
    __m256 s40 = s00, s41 = s00, s42 = s00, s43 = s00, s50 = s00, s51 = s00, s52 = s00, s53 = s00;
    __m256 s60 = s00, s61 = s00, s62 = s00, s63 = s00;
    float tile[IMRET__NT_PIX][32];
    int k, pl = 0;
    for (k = 0; k < K; k++) {
        __m256 w0 = _mm256_loadu_ps(a + 8 * k), w1 = _mm256_loadu_ps(a1 + 8 * k), w2 = _mm256_loadu_ps(a2 + 8 * k);
        __m256 w3 = _mm256_loadu_ps(a3 + 8 * k);
        const float *bk = b + (size_t)IMRET__NT_PIX * k;
        if (pl < pf_lines && (long)pl * K <= (long)k * pf_lines) IMRET__PREFETCH(pf + (size_t)64 * pl++);
        IMRET__YFMA4(bk[0], w0, w1, w2, w3, s00, s01, s02, s03); IMRET__YFMA4(bk[1], w0, w1, w2, w3, s10, s11, s12, s13);
        IMRET__YFMA4(bk[2], w0, w1, w2, w3, s20, s21, s22, s23); IMRET__YFMA4(bk[3], w0, w1, w2, w3, s30, s31, s32, s33);
        IMRET__YFMA4(bk[4], w0, w1, w2, w3, s40, s41, s42, s43); IMRET__YFMA4(bk[5], w0, w1, w2, w3, s50, s51, s52, s53);
        IMRET__YFMA4(bk[6], w0, w1, w2, w3, s60, s61, s62, s63);
    }
    IMRET__YST4(0, s00, s01, s02, s03); IMRET__YST4(1, s10, s11, s12, s13); IMRET__YST4(2, s20, s21, s22, s23);
    IMRET__YST4(3, s30, s31, s32, s33); IMRET__YST4(4, s40, s41, s42, s43); IMRET__YST4(5, s50, s51, s52, s53);
    IMRET__YST4(6, s60, s61, s62, s63);
    imret__store_tile_t(tile[0], np, c, ldc, bias, res, relu);
}

/* Direct transposed kernel: a tile of 32 output channels x 14 pixels (two runs of 7, each
   within an output row) over all of K, reading the pixels straight from zero-padded input
   planes (imret__bsrc_pad): tap (ic, ky, kx) of pixel i < 7 is x[ic * plane + ky * pdw + kx +
   i * S], of pixel i >= 7 the same at x + d2 + (i - 7) * S, so B is never packed; np <= 14
   pixels are stored. Weights as in imret__ukr_avx512_t (four 8-row A panels, 8 K floats
   apart: two zmm of 16 channels per k); each pixel is broadcast once for both: 28
   accumulators. The same sums in the same k order with the same FMA as the packed kernels,
   then their epilogue: the same bits. Used for k x k layers (imret__direct_ok), where packing
   B cost more than the GEMM saved: ResNet-50 at 224, 1 thread (Xeon, AVX-512), stem 2.8 ->
   1.7 ms, layer2's 3x3/2 2.4 -> 1.8, layer3's 3.1 -> 1.7, layer4's 3x3 0.87-0.93x. */
#ifndef IMRET__PT_PF
#define IMRET__PT_PF 8 /* input planes ahead that imret__ukr_avx512_pt prefetches */
#endif
IMRET__AVX512 static IMRET__INLINE void imret__ukr_avx512_pt_body(int K, const float *a, const float *x, long d2, int kk,
                                                                   size_t plane, int pdw, float *c, size_t ldc, int np,
                                                                   const float *bias, const float *res, int relu, const int S) {
    const float *a1 = a + (size_t)8 * K, *a2 = a + (size_t)16 * K, *a3 = a + (size_t)24 * K;
    __m512 s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51, s60, s61;
    __m512 s70, s71, s80, s81, s90, s91, sa0, sa1, sb0, sb1, sc0, sc1, sd0, sd1;
    float tile[IMRET__PT_PIX][32];
    int ic, ky, kx, IC = K / (kk * kk);
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = s40 = s41 = s50 = s51 = s60 = s61 = _mm512_setzero_ps();
    s70 = s71 = s80 = s81 = s90 = s91 = sa0 = sa1 = sb0 = sb1 = sc0 = sc1 = sd0 = sd1 = _mm512_setzero_ps();
    for (ic = 0; ic < IC; ic++) {
        const float *xp = x + (size_t)ic * plane;
        if (ic + IMRET__PT_PF < IC) /* planes lie far apart: the hardware prefetchers miss them */
            for (ky = 0; ky < kk; ky++) {
                IMRET__PREFETCH(xp + IMRET__PT_PF * plane + (size_t)ky * pdw);
                IMRET__PREFETCH(xp + IMRET__PT_PF * plane + (size_t)ky * pdw + 6 * S + kk - 1);
                IMRET__PREFETCH(xp + IMRET__PT_PF * plane + (size_t)ky * pdw + d2 + 6 * S + kk - 1);
            }
        for (ky = 0; ky < kk; ky++, xp += pdw)
            for (kx = 0; kx < kk; kx++) {
                __m512 v0 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a)), _mm256_loadu_ps(a1), 1);
                __m512 v1 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a2)), _mm256_loadu_ps(a3), 1);
                const float *xk = xp + kx, *xl = xk + d2;
                IMRET__OPAQUE(xk);
                IMRET__OPAQUE(xl);
                IMRET__BFMA2(xk[0], v0, v1, s00, s01); IMRET__BFMA2(xk[S], v0, v1, s10, s11);
                IMRET__BFMA2(xk[2 * S], v0, v1, s20, s21); IMRET__BFMA2(xk[3 * S], v0, v1, s30, s31);
                IMRET__BFMA2(xk[4 * S], v0, v1, s40, s41); IMRET__BFMA2(xk[5 * S], v0, v1, s50, s51);
                IMRET__BFMA2(xk[6 * S], v0, v1, s60, s61); IMRET__BFMA2(xl[0], v0, v1, s70, s71);
                IMRET__BFMA2(xl[S], v0, v1, s80, s81); IMRET__BFMA2(xl[2 * S], v0, v1, s90, s91);
                IMRET__BFMA2(xl[3 * S], v0, v1, sa0, sa1); IMRET__BFMA2(xl[4 * S], v0, v1, sb0, sb1);
                IMRET__BFMA2(xl[5 * S], v0, v1, sc0, sc1); IMRET__BFMA2(xl[6 * S], v0, v1, sd0, sd1);
                a += 8; a1 += 8; a2 += 8; a3 += 8;
            }
    }
    _mm512_storeu_ps(tile[0], s00); _mm512_storeu_ps(tile[0] + 16, s01); _mm512_storeu_ps(tile[1], s10); _mm512_storeu_ps(tile[1] + 16, s11);
    _mm512_storeu_ps(tile[2], s20); _mm512_storeu_ps(tile[2] + 16, s21); _mm512_storeu_ps(tile[3], s30); _mm512_storeu_ps(tile[3] + 16, s31);
    _mm512_storeu_ps(tile[4], s40); _mm512_storeu_ps(tile[4] + 16, s41); _mm512_storeu_ps(tile[5], s50); _mm512_storeu_ps(tile[5] + 16, s51);
    _mm512_storeu_ps(tile[6], s60); _mm512_storeu_ps(tile[6] + 16, s61); _mm512_storeu_ps(tile[7], s70); _mm512_storeu_ps(tile[7] + 16, s71);
    _mm512_storeu_ps(tile[8], s80); _mm512_storeu_ps(tile[8] + 16, s81); _mm512_storeu_ps(tile[9], s90); _mm512_storeu_ps(tile[9] + 16, s91);
    _mm512_storeu_ps(tile[10], sa0); _mm512_storeu_ps(tile[10] + 16, sa1); _mm512_storeu_ps(tile[11], sb0); _mm512_storeu_ps(tile[11] + 16, sb1);
    _mm512_storeu_ps(tile[12], sc0); _mm512_storeu_ps(tile[12] + 16, sc1); _mm512_storeu_ps(tile[13], sd0); _mm512_storeu_ps(tile[13] + 16, sd1);
    imret__store_tile_t(tile[0], np, c, ldc, bias, res, relu);
}
IMRET__AVX512 static void imret__ukr_avx512_pt(int K, const float *a, const float *x, long d2, int kk, size_t plane, int pdw,
                                               int S, float *c, size_t ldc, int np, const float *bias, const float *res,
                                               int relu) {
    if (S == 1) imret__ukr_avx512_pt_body(K, a, x, d2, kk, plane, pdw, c, ldc, np, bias, res, relu, 1);
    else imret__ukr_avx512_pt_body(K, a, x, d2, kk, plane, pdw, c, ldc, np, bias, res, relu, 2);
}

/* imret__ukr_avx512_pt in ymm, for CPUs other than Intel's (see imret__ukr_avx512_ty): one
   run of 7 pixels at a time (the second run after the first), 28 ymm accumulators, the four
   8-row weight panels' own ymm loads; the same FMA per lane in the same order, the same bits.
   It reads the weights twice per tile, so it is used only where a 32-channel block of them is
   at most IMRET__PTY_MAX_K x 128 bytes (L2). Zen 4, hot caches (bench_gemm shapes): ResNet-50's
   stem (K = 147) 94 -> 113 GFLOP/s, 3x3/2 at K = 1152 and 2304 108 -> 113, but K = 4608
   (layer4) 100-105 -> 81-95. */
#define IMRET__PTY_MAX_K 2304
IMRET__AVX512 static IMRET__INLINE void imret__ukr_avx512_pty_run(int K, const float *a, const float *x, int kk, size_t plane,
                                                                   int pdw, float tile[][32], const int S) {
    const float *a1 = a + (size_t)8 * K, *a2 = a + (size_t)16 * K, *a3 = a + (size_t)24 * K;
    __m256 s00 = _mm256_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00;
    __m256 s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00, s32 = s00, s33 = s00;
    __m256 s40 = s00, s41 = s00, s42 = s00, s43 = s00, s50 = s00, s51 = s00, s52 = s00, s53 = s00;
    __m256 s60 = s00, s61 = s00, s62 = s00, s63 = s00;
    int ic, ky, kx, IC = K / (kk * kk);
    for (ic = 0; ic < IC; ic++) {
        const float *xp = x + (size_t)ic * plane;
        if (ic + IMRET__PT_PF < IC) /* as imret__ukr_avx512_pt_body */
            for (ky = 0; ky < kk; ky++) {
                IMRET__PREFETCH(xp + IMRET__PT_PF * plane + (size_t)ky * pdw);
                IMRET__PREFETCH(xp + IMRET__PT_PF * plane + (size_t)ky * pdw + 6 * S + kk - 1);
            }
        for (ky = 0; ky < kk; ky++, xp += pdw)
            for (kx = 0; kx < kk; kx++) {
                __m256 w0 = _mm256_loadu_ps(a), w1 = _mm256_loadu_ps(a1), w2 = _mm256_loadu_ps(a2), w3 = _mm256_loadu_ps(a3);
                const float *xk = xp + kx;
                IMRET__OPAQUE(xk);
                IMRET__YFMA4(xk[0], w0, w1, w2, w3, s00, s01, s02, s03); IMRET__YFMA4(xk[S], w0, w1, w2, w3, s10, s11, s12, s13);
                IMRET__YFMA4(xk[2 * S], w0, w1, w2, w3, s20, s21, s22, s23);
                IMRET__YFMA4(xk[3 * S], w0, w1, w2, w3, s30, s31, s32, s33);
                IMRET__YFMA4(xk[4 * S], w0, w1, w2, w3, s40, s41, s42, s43);
                IMRET__YFMA4(xk[5 * S], w0, w1, w2, w3, s50, s51, s52, s53);
                IMRET__YFMA4(xk[6 * S], w0, w1, w2, w3, s60, s61, s62, s63);
                a += 8; a1 += 8; a2 += 8; a3 += 8;
            }
    }
    IMRET__YST4(0, s00, s01, s02, s03); IMRET__YST4(1, s10, s11, s12, s13); IMRET__YST4(2, s20, s21, s22, s23);
    IMRET__YST4(3, s30, s31, s32, s33); IMRET__YST4(4, s40, s41, s42, s43); IMRET__YST4(5, s50, s51, s52, s53);
    IMRET__YST4(6, s60, s61, s62, s63);
}
IMRET__AVX512 static void imret__ukr_avx512_pty(int K, const float *a, const float *x, long d2, int kk, size_t plane, int pdw,
                                                int S, float *c, size_t ldc, int np, const float *bias, const float *res,
                                                int relu) {
    float tile[IMRET__PT_PIX][32];
    if (K > IMRET__PTY_MAX_K) {
        imret__ukr_avx512_pt(K, a, x, d2, kk, plane, pdw, S, c, ldc, np, bias, res, relu);
        return;
    }
    if (S == 1) imret__ukr_avx512_pty_run(K, a, x, kk, plane, pdw, tile, 1);
    else imret__ukr_avx512_pty_run(K, a, x, kk, plane, pdw, tile, 2);
    if (np > 7) {
        if (S == 1) imret__ukr_avx512_pty_run(K, a, x + d2, kk, plane, pdw, tile + 7, 1);
        else imret__ukr_avx512_pty_run(K, a, x + d2, kk, plane, pdw, tile + 7, 2);
    }
    imret__store_tile_t(tile[0], np, c, ldc, bias, res, relu);
}

IMRET__AVX2 static __m256i imret__mask8(int n) { /* lanes < n set */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* _mm256_maskstore_ps(p, m, v), but a plain store where every lane is set and none where no
   lane is: the same bytes written. AMD CPUs microcode the masked store: on a Zen 4 (EPYC, 1
   thread) the Winograd input transform spent most of its time on its gather's masked stores
   into a local buffer (now plain stores and blends) and the output transform on its scatter's;
   ResNet-50's Winograd layers took 0.67-0.90x their time without them (bench/ab_layers.sh),
   the whole forward pass 0.96x; VGG16's features 0.84x. The AVX2 kernels store C with it too
   (IMRET_SIMD=avx2: ResNet-50 0.89x). */
IMRET__AVX2 static IMRET__INLINE void imret__maskstore8(float *p, __m256i m, __m256 v) {
    int bits = _mm256_movemask_ps(_mm256_castsi256_ps(m));
    if (bits == 0xFF) _mm256_storeu_ps(p, v);
    else if (bits) _mm256_maskstore_ps(p, m, v);
}

/* 8 x (8*NB) micro-kernel as two passes of 4 rows x NB ymm: 16 ymm registers hold 4 x NB
   accumulators + NB B vectors + 1 broadcast, so NB <= 3. NB = 3 (8 x 24, the one used) does 12
   FMAs per 3 B loads + 4 broadcasts, NB = 2 (8 x 16) 8 per 2 + 4. Measured with
   bench/bench_gemm.c interleaved on the ResNet-50 layer shapes, 8 x 24 took 0.90x the time of
   8 x 16 in total -- but that was before IMRET__UNROLL put the accumulators in registers. With
   registers, whole forward passes interleaved on the (very busy) machine: ResNet-50 8x24
   751/786/700 ms vs 8x16 846/759/917 ms, VGG16 features 1161 vs 1958 ms; to be re-measured
   on a quiet machine. */
IMRET__AVX2 static IMRET__INLINE void imret__ukr_avx2_body(int kc, const float *a, const float *b, float *c, size_t ldc, int mr,
                                                           int nr, int first, int last, const float *bias, const float *res,
                                                           int relu, const int NB) { /* B rows stay 24 apart */
    __m256i mask[3];
    int half, k, i, v;
    for (v = 0; v < NB; v++) mask[v] = imret__mask8(nr - 8 * v);
    for (half = 0; half < 2 && half * 4 < mr; half++) {
        __m256 acc[4][3];
        const float *ap = a + half * 4, *bp = b;
        int rows = mr - half * 4 < 4 ? mr - half * 4 : 4;
        float *c0 = c + (size_t)half * 4 * ldc;
        IMRET__UNROLL for (i = 0; i < 4; i++)
            IMRET__UNROLL for (v = 0; v < NB; v++)
                acc[i][v] = (first || i >= rows) ? _mm256_setzero_ps() : _mm256_maskload_ps(c0 + (size_t)i * ldc + 8 * v, mask[v]);
        for (k = 0; k < kc; k++) {
            __m256 bv[3], av;
            IMRET__UNROLL for (v = 0; v < NB; v++) bv[v] = _mm256_loadu_ps(bp + 8 * v);
            IMRET__UNROLL for (i = 0; i < 4; i++) {
                av = _mm256_broadcast_ss(ap + i);
                IMRET__UNROLL for (v = 0; v < NB; v++) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
            }
            ap += 8;
            bp += 24;
        }
        IMRET__UNROLL for (i = 0; i < 4; i++) {
            float *crow = c0 + (size_t)i * ldc;
            if (i >= rows) break;
            IMRET__UNROLL for (v = 0; v < NB; v++) {
                __m256 x = acc[i][v];
                if (last) {
                    if (bias) x = _mm256_add_ps(x, _mm256_set1_ps(bias[half * 4 + i]));
                    if (res) x = _mm256_add_ps(x, _mm256_maskload_ps(res + (size_t)(half * 4 + i) * ldc + 8 * v, mask[v]));
                    if (relu) x = _mm256_max_ps(x, _mm256_setzero_ps());
                }
                imret__maskstore8(crow + 8 * v, mask[v], x);
            }
        }
    }
}
/* A partial panel (the last columns of a layer, e.g. 49 = 24 + 24 + 1 pixels at 7x7) runs
   only the ymm columns it has. */
IMRET__AVX2 static void imret__ukr_avx2(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
                                        int first, int last, const float *bias, const float *res, int relu) {
    if (nr > 16) imret__ukr_avx2_body(kc, a, b, c, ldc, mr, nr, first, last, bias, res, relu, 3);
    else if (nr > 8) imret__ukr_avx2_body(kc, a, b, c, ldc, mr, nr, first, last, bias, res, relu, 2);
    else imret__ukr_avx2_body(kc, a, b, c, ldc, mr, nr, first, last, bias, res, relu, 1);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif /* IMRET__X86 */

/* Work split of imret__conv_gemm_fast: tiles are (NC-column block) x (chunk of the A panels);
   the panels are split only when the column blocks are too few to balance the threads. B is
   packed once, whole (shared, *whole floats), when the panels are split or there is a single
   column block, instead of once per tile: measured on ResNet-50 at 1 thread (Zen 5, AVX-512),
   layer4's 3x3 conv (49 pixels, 4 chunks) packed the same B 4 times and ran at 62 GFLOP/s.
   A whole B also lets each A panel run over all of K before the next (see
   imret__conv_gemm_fast). Returns the floats of pack the call needs: threads x
   IMRET__PACK_FLOATS, or the whole packed B when it is shared (never less for more threads). */
#define IMRET__PACK_ALL_MAX ((size_t)2 << 20) /* floats (8 MiB): larger B keeps per-tile packing */
static size_t imret__gemm_plan(int M, long N, int K, int threads, int *chunks_out, int *shared_out) {
    int panels = (M + IMRET__MR - 1) / IMRET__MR, chunks = 1, shared;
    long nblocks = imret__nblocks(N);
    size_t ld_last, whole = imret__pack_block(N, nblocks, nblocks - 1, K, &ld_last) + ld_last * (size_t)K;
    size_t per_thread = (size_t)(threads > 0 ? threads : 1) * IMRET__PACK_FLOATS;
    while (nblocks * chunks < 4L * threads && chunks * 2 <= panels) chunks *= 2;
    /* one thread: nothing to balance, and B is packed once; >= 2 column blocks per thread: split
       columns only (ResNet-50's 28x28 layers, 4 blocks at 2 threads: each core then reads half of
       B, not all of it; bench/ab_layers.sh, 2 threads: 128 -> 512 0.93-0.95 of the time with 2
       chunks, 512 -> 128 in place 0.83 -> 0.68, whole network 0.988; without the in-place path
       512 -> 128 had lost 5-17 %) */
    if (threads <= 1 || nblocks >= 2L * threads) chunks = 1;
    shared = (chunks > 1 || nblocks == 1) && whole <= IMRET__PACK_ALL_MAX;
    if (chunks_out) *chunks_out = chunks;
    if (shared_out) *shared_out = shared;
    return shared && whole > per_thread ? whole : per_thread;
}

/* A panels p0..p1 (output channels p0*MR..) times the kc x nc block of packed B at bp,
   columns n0.. of out. A panel outer (its kc x 8 weights stay in L1 while the block's B panels
   come from L2), or, where kern->b_outer_kc is set and kc reaches it, pixel panel outer (the
   kc x nr B panel stays in L1 while the A panels come from L2: per k 32 bytes from L2 instead of
   128). Intel Xeon (Golden Cove class, 48 KB L1), hot micro-kernel loop (6 B panels, 32 A
   panels): 185 instead of 165 GFLOP/s at kc = 256 and 128, 174 instead of 164 at kc = 64; in
   ResNet-50 (bench/ab_layers.sh, 8 alternating rounds) the 28x28 expanding 1x1 layers (kc =
   128) 0.93x their time, the 1x1/2 downsamples 0.94-0.96x, but the 56x56 ones (kc = 64) 1.04-1.49x
   and the in-place path (imret__gemm_panel_inplace) 1.04-1.13x, so those keep A outer. Not
   measured on AMD (a Zen 4 L1 of 32 KB holds no 32 KB B panel): b_outer_kc is 0 there.
   pf_next: prefetch each next A panel's KC slice (cold weights) during the first pixel panel
   (imret__conv_gemm_fast's whole-B path does it per panel when A is outer).
   The tiles and each sum's k order are the same either way: the same bits. */
#define IMRET__B_OUTER_KC 128
/* Prefetch rows k0..k0+kc of packed A panel p (kc x 8 contiguous floats): weights read once per
   pass, cold from memory, fetched while the panel before runs. */
static void imret__prefetch_slice(const float *A, int K, int p, int k0, int kc) {
    imret__prefetch_lines(A + (size_t)p * IMRET__MR * K + (size_t)k0 * IMRET__MR, 0,
                          ((long)kc * IMRET__MR * (long)sizeof(float) + 63) / 64);
}
static void imret__gemm_panels(const imret__kernels *kern, int M, long N, int K, const float *A, int p0, int p1, int k0, int kc,
                               const float *bp, long n0, int nc, float *out, const imret__epilogue *ep, int pf_next) {
    int nr = kern->nr, npan = (nc + nr - 1) / nr, b_outer = kern->b_outer_kc && kc >= kern->b_outer_kc, i, n = (p1 - p0) * npan;
    for (i = 0; i < n; i++) {
        int j = b_outer ? i / (p1 - p0) : i % npan, p = p0 + (b_outer ? i % (p1 - p0) : i / npan);
        int m0 = p * IMRET__MR, mr = M - m0 < IMRET__MR ? M - m0 : IMRET__MR;
        long col = n0 + (long)j * nr;
        if (pf_next && j == 0 && p + 1 < p1) imret__prefetch_slice(A, K, p + 1, k0, kc);
        kern->ukr(kc, A + (size_t)p * IMRET__MR * K + (size_t)k0 * IMRET__MR, bp + (size_t)j * kc * nr, out + (size_t)m0 * N + col,
                  (size_t)N, mr, nc - j * nr < nr ? nc - j * nr : nr, k0 == 0, k0 + kc == K, ep->bias ? ep->bias + m0 : NULL,
                  ep->residual ? ep->residual + (size_t)m0 * N + col : NULL, ep->relu);
    }
}

/* Layers of at most this many pixels run on the transposed kernel where there is one
   (imret__ukr_avx512_t): measured with bench_gemm (see imret__gemm_small_n). */
#define IMRET__SMALL_N 64

/* out = epilogue(A * im2col(src)) for a layer of N <= IMRET__SMALL_N pixels and M % 32 == 0
   on kern->ukr_t: B packed whole in panels of IMRET__NT_PIX pixels (K x 7 floats each: at most
   K x (N + 6), within the whole-B pack of imret__gemm_plan), then tiles of 32 channels x 7
   pixels. */
static void imret__gemm_small_n(const imret__kernels *kern, int M, long N, int K, const float *A, const imret__bsrc *src,
                                float *out, const imret__epilogue *ep, float *pack, int threads) {
    long npan = (N + IMRET__NT_PIX - 1) / IMRET__NT_PIX, tiles = (long)(M / 32) * npan, t;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && npan > 1)
#endif
    for (t = 0; t < npan; t++)
        imret__pack_b(src, 0, K, t * IMRET__NT_PIX, N - t * IMRET__NT_PIX < IMRET__NT_PIX ? (int)(N - t * IMRET__NT_PIX) : IMRET__NT_PIX,
                      IMRET__NT_PIX, pack + (size_t)t * K * IMRET__NT_PIX);
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tiles > 1)
#endif
    for (t = 0; t < tiles; t++) { /* channel block outer: its 32 x K weights stay in L2 across the pixel panels, and
                                     static ranges give each thread whole blocks (interleaved tiles had both cores
                                     read every block: no gain at 2 threads) */
        int m0 = (int)(t / npan) * 32, pfl = 0;
        long p0 = (t % npan) * IMRET__NT_PIX;
        const char *pf = NULL;
        /* each pixel panel's call prefetches a 1/npan share of the next block's weights (read
           once, cold from memory: 590 KB for a 3x3 layer4 conv, at 128 B per 14 FMAs, faster
           than the hardware prefetcher fetched it while the block's first panel ran). ResNet-50
           at 224, per-layer timing, 5 x 15 runs interleaved, layer4 + its downsample: 10.68 ->
           9.74 ms at 1 thread (3x3 3.55 -> 3.29); 3 x 20 runs at 2 threads 7.25 -> 6.69. */
        if (m0 + 32 < M) {
            long first;
            pfl = (int)imret__line_share((size_t)32 * K * sizeof(float), npan, t % npan, &first);
            pf = (const char *)(A + (size_t)(m0 + 32) * K) + (size_t)64 * first;
        }
        kern->ukr_t(K, A + (size_t)m0 * K, pack + (size_t)(t % npan) * K * IMRET__NT_PIX, out + (size_t)m0 * N + p0, (size_t)N,
                    N - p0 < IMRET__NT_PIX ? (int)(N - p0) : IMRET__NT_PIX, ep->bias ? ep->bias + m0 : NULL,
                    ep->residual ? ep->residual + (size_t)m0 * N + p0 : NULL, ep->relu, pf, pfl);
    }
}

/* Whether a k x k convolution of M output channels, stride `stride` and output rows of ow
   pixels runs on the direct kernel (kern->ukr_pt, B from padded planes): k > 1, stride 1 or 2,
   M % 32 == 0 and rows of whole 7-pixel runs. Not used for 1x1 stride-2 layers (no taps share
   pixels, and the packed kernel was faster: 1.6 vs 1.9 ms for ResNet-50's 256 -> 512/2 at 1
   thread). */
static int imret__direct_ok(const imret__kernels *kern, int M, int k, int stride, int ow) {
    return kern->ukr_pt && k > 1 && (stride == 1 || stride == 2) && M % 32 == 0 && ow % 7 == 0;
}

/* How the fp32 GEMM of such a convolution with M output channels gathers B (imret__bsrc_mode):
   from padded planes wherever the direct kernel takes it. */
static int imret__bsrc_mode_f32(const imret__kernels *kern, int M, int k, int stride, int ow, long npix) {
    return imret__direct_ok(kern, M, k, stride, ow) ? 1 : imret__bsrc_mode(k, stride, ow, npix);
}

/* out = epilogue(A * im2col(src)) on kern->ukr_pt (imret__direct_ok), B in padded planes
   (src->pd): tiles of 32 channels x 14 pixels (the last may have 7), channel block outer (its
   32 x K weights stay in L2 across the pixel tiles). */
static void imret__gemm_direct(const imret__kernels *kern, int M, long N, int K, const float *A, const imret__bsrc *src,
                               float *out, const imret__epilogue *ep, int threads) {
    long ntp = (N + IMRET__PT_PIX - 1) / IMRET__PT_PIX, tiles = (long)(M / 32) * ntp, t;
    size_t plane = (size_t)src->pdh * src->pdw;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tiles > 1)
#endif
    for (t = 0; t < tiles; t++) {
        int m0 = (int)(t / ntp) * 32;
        long p0 = (t % ntp) * IMRET__PT_PIX, p1 = p0 + 7 < N ? p0 + 7 : p0; /* the second run; none: the first again */
        long x0 = (p0 / src->ow * src->pdw + p0 % src->ow) * src->stride, x1 = (p1 / src->ow * src->pdw + p1 % src->ow) * src->stride;
        kern->ukr_pt(K, A + (size_t)m0 * K, src->pd + x0, x1 - x0, src->k, plane, src->pdw, src->stride, out + (size_t)m0 * N + p0,
                     (size_t)N, N - p0 < IMRET__PT_PIX ? (int)(N - p0) : IMRET__PT_PIX, ep->bias ? ep->bias + m0 : NULL,
                     ep->residual ? ep->residual + (size_t)m0 * N + p0 : NULL, ep->relu);
    }
}

/* One A panel times B for a 1x1 stride-1 layer on kern->ukr_d, columns n0.. of the nc-column
   block, reading B (the input planes, N floats apart) in place: no packing, and each 8 x 32
   tile of C sums all of K in one call, so C is written once (the packed path reloads it every
   IMRET__KC rows). The same tiles and sums in the same order as the packed path: the same
   bits. imret__conv_gemm_fast uses it for M <= 2K:
   packing B costs K x N copies for M x K x N FMAs, most for the layers that reduce channels,
   while an expanding layer's B block, reused by M / 8 weight panels, is read faster packed.
   ResNet-50 at 224, bench/ab_layers.sh, 8 alternating rounds x 15 runs, both builds with
   -falign-loops=64 (Zen 5): 2 threads 256 -> 64 at 56x56 0.80 / 0.79 of the packed time, 512
   -> 128 0.83 / 0.84 (0.67-0.70 with the plan's columns-first split, imret__gemm_plan), 1024 ->
   256 0.88-0.91; 64 -> 256 1.00 (M = 4K, packed either way); whole network 0.984, then 0.971
   with that split. 1 thread: 512 -> 128 0.88-0.94, 1024 -> 256 0.91-0.94, whole 0.993. */
static void imret__gemm_panel_inplace(const imret__kernels *kern, int M, long N, int K, const float *A, int p, const float *B,
                                      long n0, int nc, float *out, const imret__epilogue *ep) {
    int m0 = p * IMRET__MR, mr = M - m0 < IMRET__MR ? M - m0 : IMRET__MR, nr = kern->nr, j;
    for (j = 0; j * nr < nc; j++) {
        long col = n0 + (long)j * nr;
        kern->ukr_d(K, A + (size_t)p * IMRET__MR * K, B + col, (size_t)N, out + (size_t)m0 * N + col, (size_t)N, mr,
                    nc - j * nr < nr ? nc - j * nr : nr, 1, 1, ep->bias ? ep->bias + m0 : NULL,
                    ep->residual ? ep->residual + (size_t)m0 * N + col : NULL, ep->relu);
    }
}

/* Whether a 1x1 stride-1 layer of M output channels, N pixels and K input channels reads B in
   place (imret__gemm_panel_inplace): where it reduces channels (M <= 2K, see there). Where the
   pixel-panel-outer order applies (Intel, K >= b_outer_kc) layers of several column blocks pack
   B instead (bench/ab_layers.sh, Xeon, 1 thread: 256 -> 64 and 256 -> 128 at 56x56 0.94-0.95x
   their time, 512 -> 128 and 512 -> 256 at 28x28 0.89-0.96x), while 64 -> 64 (K = 64: 1.42x
   packed) and the 14x14 layers (1024 -> 256, one column block: 1.06x) stay in place. */
static int imret__inplace_ok(const imret__kernels *kern, int M, long N, int K) {
    return kern->ukr_d && M <= 2 * K && !(kern->b_outer_kc && K >= kern->b_outer_kc && imret__nblocks(N) > 1);
}

/* Whether imret__conv_gemm_fast may run a 1x1 stride-1 layer with out == ep->residual: each
   tile sums all of K in one call and loads its residual rows before it stores them (K <=
   IMRET__KC, or B read in place); see imret__res_alias_ok. test_kernels checks it. */
static int imret__gemm_alias_ok(const imret__kernels *kern, int M, long N, int K) {
    return kern->nr && (K <= IMRET__KC || imret__inplace_ok(kern, M, N, K));
}

/* out[M][N] = epilogue(A * im2col(src)) with packed A, on the SIMD micro-kernel. pack holds
   imret__gemm_plan(M, N, K, threads) floats. */
static void imret__conv_gemm_fast(const imret__kernels *kern, int M, long N, int K, const float *A, const imret__bsrc *src,
                                  float *out, const imret__epilogue *ep, float *pack, int threads) {
    int panels = (M + IMRET__MR - 1) / IMRET__MR, nr = kern->nr, chunks, shared, inplace;
    long nblocks = imret__nblocks(N), kblocks = (K + IMRET__KC - 1) / IMRET__KC, tiles, t;
    if (src->pd && imret__direct_ok(kern, M, src->k, src->stride, src->ow)) {
        imret__gemm_direct(kern, M, N, K, A, src, out, ep, threads);
        return;
    }
    imret__gemm_plan(M, N, K, threads, &chunks, &shared);
    if (shared && kern->ukr_t && N <= IMRET__SMALL_N && M % 32 == 0) {
        imret__gemm_small_n(kern, M, N, K, A, src, out, ep, pack, threads);
        return;
    }
    tiles = nblocks * chunks;
    inplace = src->k == 1 && src->stride == 1 && src->pad == 0 && imret__inplace_ok(kern, M, N, K);
    (void)threads;
    /* Static schedules, here and in the Winograd and int8 convolutions: a thread gets the same
       column (pixel) range in consecutive layers, so the next layer mostly reads what its own
       core wrote. Dynamic ones had handed the blocks out in a different order every time: on
       a Zen 4 VM whose two vCPUs sat far apart (bench/core_pingpong.c: 340-390 ns round trip
       instead of 55-75), ResNet-50 at 2 threads ran in 47.3 instead of 51.5 ms; with the vCPUs
       close, bench/ab_layers.sh 0.986 (VGG16 0.954). Tiles are independent: the same bits. */
    if (shared && !inplace) { /* block b, rows k0.. at pack + imret__pack_block(b) + k0 * ld */
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && nblocks * kblocks > 1)
#endif
        for (t = 0; t < nblocks * kblocks; t++) {
            long n0 = (t / kblocks) * IMRET__NC;
            int k0 = (int)(t % kblocks) * IMRET__KC, kc = K - k0 < IMRET__KC ? K - k0 : IMRET__KC;
            int nc = imret__nc_of(N, nblocks, t / kblocks);
            size_t ld, off = imret__pack_block(N, nblocks, t / kblocks, K, &ld);
            imret__pack_b(src, k0, kc, n0, nc, nr, pack + off + (size_t)k0 * ld);
        }
    }
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tiles > 1)
#endif
    for (t = 0; t < tiles; t++) {
        long n0 = (t / chunks) * IMRET__NC;
        int chunk = (int)(t % chunks), p0 = (int)((long)chunk * panels / chunks), p1 = (int)((long)(chunk + 1) * panels / chunks);
        int nc = imret__nc_of(N, nblocks, t / chunks), k0, p;
        if (inplace) {
            for (p = p0; p < p1; p++) imret__gemm_panel_inplace(kern, M, N, K, A, p, src->in, n0, nc, out, ep);
            continue;
        }
        if (shared) {
            /* B is whole: each A panel runs over all of K before the next, so the weights stream
               from memory in one contiguous run per panel (they are k-major within a panel)
               rather than in KC-row pieces 8 K floats apart, which restarted the hardware
               prefetcher at every piece. The k order of every sum is unchanged. ResNet-50 at
               224, 1 thread, interleaved (Zen 5, other core busy): layer4's convolutions
               0.77-0.83x their time (3x3 3.1 -> 2.4 ms), layer3's unchanged. */
            size_t ld;
            const float *bb = pack + imret__pack_block(N, nblocks, t / chunks, K, &ld);
            if (kern->b_outer_kc) { /* pixel panel outer (imret__gemm_panels): a KC slice of every panel at a time */
                for (k0 = 0; k0 < K; k0 += IMRET__KC)
                    imret__gemm_panels(kern, M, N, K, A, p0, p1, k0, K - k0 < IMRET__KC ? K - k0 : IMRET__KC, bb + (size_t)k0 * ld,
                                       n0, nc, out, ep, 1);
                continue;
            }
            for (p = p0; p < p1; p++)
                for (k0 = 0; k0 < K; k0 += IMRET__KC) {
                    int kc = K - k0 < IMRET__KC ? K - k0 : IMRET__KC;
                    /* the next panel's KC slice, cold from memory, fetched while this one runs
                       (ResNet-50 layer3 256 -> 1024 1x1 convs, per-layer timing, 5 x 15 runs
                       interleaved: 4.00 -> 3.73 ms at 1 thread, 2.68 -> 2.48 at 2) */
                    if (p + 1 < p1) imret__prefetch_slice(A, K, p + 1, k0, kc);
                    imret__gemm_panels(kern, M, N, K, A, p, p + 1, k0, kc, bb + (size_t)k0 * ld, n0, nc, out, ep, 0);
                }
            continue;
        }
        for (k0 = 0; k0 < K; k0 += IMRET__KC) {
            int kc = K - k0 < IMRET__KC ? K - k0 : IMRET__KC;
#if IMRET__OMP
            float *bp = pack + (size_t)omp_get_thread_num() * IMRET__PACK_FLOATS;
#else
            float *bp = pack;
#endif
            imret__pack_b(src, k0, kc, n0, nc, nr, bp);
            imret__gemm_panels(kern, M, N, K, A, p0, p1, k0, kc, bp, n0, nc, out, ep, 0);
        }
    }
}

#if IMRET__NEON
/* aarch64 8 x 8 micro-kernel: 16 q-register accumulators, per k two B loads, two A loads and
   16 lane FMAs (vfmaq_laneq_f32), within the 32 NEON registers. Partial tiles (nr < 8) go
   through a small buffer. Tested under qemu-user (make test-arm); not timed on hardware. */
static void imret__ukr_neon(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr, int first,
                            int last, const float *bias, const float *res, int relu) {
    float32x4_t acc[8][2];
    float tmp[8];
    int k, i, j;
    for (i = 0; i < 8; i++) {
        if (first || i >= mr) {
            acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
        } else {
            for (j = 0; j < 8; j++) tmp[j] = j < nr ? c[(size_t)i * ldc + j] : 0.0f;
            acc[i][0] = vld1q_f32(tmp);
            acc[i][1] = vld1q_f32(tmp + 4);
        }
    }
    for (k = 0; k < kc; k++) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
#define IMRET__NFMA(row, av, lane)                                        \
        acc[row][0] = vfmaq_laneq_f32(acc[row][0], b0, av, lane);        \
        acc[row][1] = vfmaq_laneq_f32(acc[row][1], b1, av, lane)
        IMRET__NFMA(0, a0, 0); IMRET__NFMA(1, a0, 1); IMRET__NFMA(2, a0, 2); IMRET__NFMA(3, a0, 3);
        IMRET__NFMA(4, a1, 0); IMRET__NFMA(5, a1, 1); IMRET__NFMA(6, a1, 2); IMRET__NFMA(7, a1, 3);
#undef IMRET__NFMA
        a += 8;
        b += 8;
    }
    for (i = 0; i < mr; i++) {
        float32x4_t v0 = acc[i][0], v1 = acc[i][1];
        float *crow = c + (size_t)i * ldc;
        if (last) {
            if (bias) {
                v0 = vaddq_f32(v0, vdupq_n_f32(bias[i]));
                v1 = vaddq_f32(v1, vdupq_n_f32(bias[i]));
            }
            if (res) {
                for (j = 0; j < 8; j++) tmp[j] = j < nr ? res[(size_t)i * ldc + j] : 0.0f;
                v0 = vaddq_f32(v0, vld1q_f32(tmp));
                v1 = vaddq_f32(v1, vld1q_f32(tmp + 4));
            }
            if (relu) {
                v0 = vmaxq_f32(v0, vdupq_n_f32(0.0f));
                v1 = vmaxq_f32(v1, vdupq_n_f32(0.0f));
            }
        }
        if (nr == 8) {
            vst1q_f32(crow, v0);
            vst1q_f32(crow + 4, v1);
        } else {
            vst1q_f32(tmp, v0);
            vst1q_f32(tmp + 4, v1);
            for (j = 0; j < nr; j++) crow[j] = tmp[j];
        }
    }
}
#endif /* IMRET__NEON */

/* ======================================================================================
   [impl: kernels (Winograd)]
   Winograd F(4x4, 3x3) (Lavin & Gray 2016) for 3x3 stride-1 convolutions: a 4x4 output
   tile is A^T [(G g G^T) .* (B^T d B)] A of its 6x6 input patch d, 36 multiply-adds per
   (in, out) channel pair instead of 144. Summed over input channels the 36 element-wise
   products become 36 independent GEMMs  M[xi] (out x tiles) = U[xi] (out x in) * V[xi]
   (in x tiles), run on the packed micro-kernels of the direct convolution:
   - U is transformed from the packed 3x3 weights straight into the packed A layout
     [xi][panel][in][8] (162 multiply-adds per channel pair) on a layer's first use by a
     context, which keeps it (imret__wg_weights_of: 4x the layer's weights, ResNet-50 at 224
     11 MB; the model itself holds none, so loading peaks at the model size). Transforming per
     call had cost as much as the GEMMs on the 28x28 layers (bench_winograd: 512->512 at 28x28
     0.93x direct with it, 0.51x without);
   - V is transformed per block of ~32 tiles (whole nr panels; 16-column panels for a block of
     <= 16 tiles, imret__wg_pw) into packed B panels [xi][panel][in][nr];
   - the block's M [xi][out][tile] is transformed back with the fused epilogue.
   The transforms work on 8 lanes (8 output channels, or 8 tiles) so they compile to vector
   code; they are instantiated per ISA with the target attribute (the weight transform also
   in AVX-512 intrinsics, two input channels per zmm: it runs on every call of the fused
   layers). On x86 the input and output transforms are AVX2 code in ymm values (the portable
   ones are used on aarch64), and the 8 tiles' input patches are gathered and their outputs
   scattered with masked row loads/stores and 4 x 8 transposes (imret__wg_gather8_avx2 /
   imret__wg_scatter8_avx2) where the tiles lie in at most two tile rows; elsewhere lane by
   lane. Rounding: the constants (1/6, 1/24, ...) and the cancellation in B^T d B make the
   result differ from the direct sum by ~1e-6..1e-5 x max|out| per layer (test_kernels,
   test_parity report it); imret_context_config.exact = 1 or IMRET_CONV=direct keeps every
   layer on the direct path.
   ====================================================================================== */
/* Tiles per block: whole panels of nr, about 32 (V and M of a 256-channel block fit in L2). */
static int imret__wg_nt(int nr) { return nr >= 32 ? nr : 32 / nr * nr; }

/* Floats between consecutive xi planes of V and M beyond their size: without it the planes
   are a power of two apart (e.g. 32 KiB) and the 36 strided stores / loads of a transform
   all fall in one L1 set. */
#define IMRET__WG_PAD 16
/* Floats between the xi planes of a block's V (ldm tiles x IC) and M (M x ldm tiles). */
static size_t imret__wg_vstep(int ldm, int IC) { return (size_t)ldm * IC + IMRET__WG_PAD; }
static size_t imret__wg_mstep(int M, int ldm) { return (size_t)M * ldm + IMRET__WG_PAD; }
#define IMRET__WG_L8 for (l = 0; l < 8; l++)

/* Output channel panels [p0, p1): U[xi][p - pbase][ic][8] = G g G^T, xi = 6 * row + column,
   xi planes xstep floats apart (all panels: panels * IC * 8, from pbase 0; one panel for the
   fused path: imret__wg_ustep). */
static IMRET__INLINE void imret__wg_weights_body(const float *wp, int IC, float *U, int p0, int p1, size_t xstep, int pbase) {
    int p, ic, i, j, l;
    for (p = p0; p < p1; p++)
        for (ic = 0; ic < IC; ic++) {
            const float *g = wp + (size_t)p * IMRET__MR * IC * 9 + (size_t)ic * 9 * IMRET__MR; /* [ky*3+kx][8] */
            float t[6][3][8];
            for (j = 0; j < 3; j++) IMRET__WG_L8 { /* G along ky */
                float g0 = g[j * 8 + l], g1 = g[(3 + j) * 8 + l], g2 = g[(6 + j) * 8 + l];
                t[0][j][l] = 0.25f * g0;
                t[1][j][l] = (g0 + g1 + g2) * (-1.0f / 6);
                t[2][j][l] = (g0 - g1 + g2) * (-1.0f / 6);
                t[3][j][l] = (g0 + 2 * g1 + 4 * g2) * (1.0f / 24);
                t[4][j][l] = (g0 - 2 * g1 + 4 * g2) * (1.0f / 24);
                t[5][j][l] = g2;
            }
            for (i = 0; i < 6; i++) { /* G along kx (into a local row: the strided stores would
                                         otherwise keep the compiler from vectorising) */
                float u[6][8];
                IMRET__WG_L8 {
                    float g0 = t[i][0][l], g1 = t[i][1][l], g2 = t[i][2][l];
                    u[0][l] = 0.25f * g0;
                    u[1][l] = (g0 + g1 + g2) * (-1.0f / 6);
                    u[2][l] = (g0 - g1 + g2) * (-1.0f / 6);
                    u[3][l] = (g0 + 2 * g1 + 4 * g2) * (1.0f / 24);
                    u[4][l] = (g0 - 2 * g1 + 4 * g2) * (1.0f / 24);
                    u[5][l] = g2;
                }
                for (j = 0; j < 6; j++) memcpy(U + (size_t)(i * 6 + j) * xstep + ((size_t)(p - pbase) * IC + ic) * 8, u[j], sizeof u[j]);
            }
        }
}

#if IMRET__X86
/* Vector gather / scatter of 8 horizontally adjacent tiles (imret__wg_input_avx2,
   imret__wg_output_avx2).
   gather: d[r][c] lane l = the input at row iy0 + r, column xs + 4 l + c (0 outside the h x w
   plane), r, c < 6, for the lanes l >= lane0 (the others are left as they are).
   scatter (one output row at orow, its residual row at rrow): column xs + 4 l + j (j < 4, l < 8,
   only columns in [0, ow)) = yj lane l (+ residual), ReLU as in the per-lane code. */
/* m[q] lane l: column xs + 8 q + l lies in [0, w) */
IMRET__AVX2 static IMRET__INLINE void imret__wg_cols8(int xs, int w, __m256i m[4]) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int q;
    for (q = 0; q < 4; q++) {
        __m256i col = _mm256_add_epi32(_mm256_set1_epi32(xs + 8 * q), iota);
        m[q] = _mm256_and_si256(_mm256_cmpgt_epi32(col, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(_mm256_set1_epi32(w), col));
    }
}
/* Per input row: 4 masked loads, a 4 x 8 transpose (columns 0..3 of the 8 patches) and a
   one-lane shift (columns 4, 5 are columns 0, 1 of the next tile). perf on VGG16 had shown the
   per-lane gather (scalar loads into the lanes, an idiv per lane) as the transform's cost. */
IMRET__AVX2 static IMRET__INLINE void imret__wg_gather8_avx2(const float *plane, int h, int w, int iy0, int xs, int lane0,
                                                             __m256 d[6][6]) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
    const __m256 lanesf = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(lane0 - 1)));
    __m256i m[4];
    int r;
    imret__wg_cols8(xs, w, m);
    for (r = 0; r < 6; r++) { /* named values, not arrays: GCC 12 moved arrays of them through the stack in pieces */
        int iy = iy0 + r;
        __m256 v0, v1, v2, v3, a, b, c, e, t0, t1, t2, t3, o0, o1, o2, o3, o4, o5;
        if (iy < 0 || iy >= h) {
            o0 = o1 = o2 = o3 = o4 = o5 = _mm256_setzero_ps();
        } else {
            const float *row = plane + (size_t)iy * w + xs;
            float x32 = xs + 32 >= 0 && xs + 32 < w ? row[32] : 0.0f, x33 = xs + 33 >= 0 && xs + 33 < w ? row[33] : 0.0f;
            v0 = _mm256_maskload_ps(row, m[0]); v1 = _mm256_maskload_ps(row + 8, m[1]);
            v2 = _mm256_maskload_ps(row + 16, m[2]); v3 = _mm256_maskload_ps(row + 24, m[3]);
            a = _mm256_permute2f128_ps(v0, v2, 0x20); /* tiles 0 | 4, columns 0..3 */
            b = _mm256_permute2f128_ps(v0, v2, 0x31); /* tiles 1 | 5 */
            c = _mm256_permute2f128_ps(v1, v3, 0x20); /* tiles 2 | 6 */
            e = _mm256_permute2f128_ps(v1, v3, 0x31); /* tiles 3 | 7 */
            t0 = _mm256_unpacklo_ps(a, b); t1 = _mm256_unpackhi_ps(a, b);
            t2 = _mm256_unpacklo_ps(c, e); t3 = _mm256_unpackhi_ps(c, e);
            o0 = _mm256_shuffle_ps(t0, t2, 0x44); o1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            o2 = _mm256_shuffle_ps(t1, t3, 0x44); o3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            o4 = _mm256_blend_ps(_mm256_permutevar8x32_ps(o0, next), _mm256_set1_ps(x32), 0x80);
            o5 = _mm256_blend_ps(_mm256_permutevar8x32_ps(o1, next), _mm256_set1_ps(x33), 0x80);
        }
        if (lane0) { /* the second tile row: only lanes >= lane0 */
            o0 = _mm256_blendv_ps(d[r][0], o0, lanesf); o1 = _mm256_blendv_ps(d[r][1], o1, lanesf);
            o2 = _mm256_blendv_ps(d[r][2], o2, lanesf); o3 = _mm256_blendv_ps(d[r][3], o3, lanesf);
            o4 = _mm256_blendv_ps(d[r][4], o4, lanesf); o5 = _mm256_blendv_ps(d[r][5], o5, lanesf);
        }
        d[r][0] = o0; d[r][1] = o1; d[r][2] = o2; d[r][3] = o3; d[r][4] = o4; d[r][5] = o5;
    }
}

/* Per output row: a 4 x 8 transpose of y0..y3 into the 32 contiguous outputs of the 8 tiles,
   then 4 masked stores (the residual read with the same masks m, imret__wg_cols8). */
IMRET__AVX2 static IMRET__INLINE void imret__wg_scatter8_avx2(__m256 y0, __m256 y1, __m256 y2, __m256 y3, float *orow,
                                                              const float *rrow, const __m256i m[4], int relu) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 t0 = _mm256_unpacklo_ps(y0, y1), t1 = _mm256_unpackhi_ps(y0, y1);
    __m256 t2 = _mm256_unpacklo_ps(y2, y3), t3 = _mm256_unpackhi_ps(y2, y3);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE); /* tiles 0 | 4, 1 | 5 */
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE); /* tiles 2 | 6, 3 | 7 */
    __m256 o0 = _mm256_permute2f128_ps(u0, u1, 0x20), o1 = _mm256_permute2f128_ps(u2, u3, 0x20);
    __m256 o2 = _mm256_permute2f128_ps(u0, u1, 0x31), o3 = _mm256_permute2f128_ps(u2, u3, 0x31);
    if (rrow) {
        o0 = _mm256_add_ps(o0, _mm256_maskload_ps(rrow, m[0])); o1 = _mm256_add_ps(o1, _mm256_maskload_ps(rrow + 8, m[1]));
        o2 = _mm256_add_ps(o2, _mm256_maskload_ps(rrow + 16, m[2])); o3 = _mm256_add_ps(o3, _mm256_maskload_ps(rrow + 24, m[3]));
    }
    if (relu) { /* v < 0 -> 0: NaN and -0 stay */
        o0 = _mm256_blendv_ps(o0, zero, _mm256_cmp_ps(o0, zero, _CMP_LT_OQ));
        o1 = _mm256_blendv_ps(o1, zero, _mm256_cmp_ps(o1, zero, _CMP_LT_OQ));
        o2 = _mm256_blendv_ps(o2, zero, _mm256_cmp_ps(o2, zero, _CMP_LT_OQ));
        o3 = _mm256_blendv_ps(o3, zero, _mm256_cmp_ps(o3, zero, _CMP_LT_OQ));
    }
    imret__maskstore8(orow, m[0], o0); imret__maskstore8(orow + 8, m[1], o1);
    imret__maskstore8(orow + 16, m[2], o2); imret__maskstore8(orow + 24, m[3], o3);
}
#endif

/* d[r][c][l] = the 6x6 input patch of tile t + l (0 outside the plane; lanes l >= n all 0),
   lane by lane. */
static IMRET__INLINE void imret__wg_gather_lanes(const float *plane, int h, int w, int pad, int tiles_x, long t, int n,
                                                 float d[6][6][8]) {
    int r, c, l;
    IMRET__WG_L8 {
        int iy0 = (int)((t + l) / tiles_x) * 4 - pad, ix0 = (int)((t + l) % tiles_x) * 4 - pad;
        if (l >= n) {
            for (r = 0; r < 6; r++)
                for (c = 0; c < 6; c++) d[r][c][l] = 0.0f;
        } else if (iy0 >= 0 && ix0 >= 0 && iy0 + 6 <= h && ix0 + 6 <= w) {
            for (r = 0; r < 6; r++)
                for (c = 0; c < 6; c++) d[r][c][l] = plane[(size_t)(iy0 + r) * w + ix0 + c];
        } else {
            for (r = 0; r < 6; r++)
                for (c = 0; c < 6; c++) {
                    int iy = iy0 + r, ix = ix0 + c;
                    d[r][c][l] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? plane[(size_t)iy * w + ix] : 0.0f;
                }
        }
    }
}

/* The n <= 8 output tiles t.. of y[i][j][l] (+ residual, ReLU), lane by lane, clipped to oh x ow. */
static IMRET__INLINE void imret__wg_store_lanes(float y[4][4][8], float *oplane, const float *rplane, int oh, int ow, long t, int n,
                                                int tiles_x, int relu) {
    int i, j, l;
    for (l = 0; l < n; l++) {
        int oy0 = (int)((t + l) / tiles_x) * 4, ox0 = (int)((t + l) % tiles_x) * 4;
        for (i = 0; i < 4 && oy0 + i < oh; i++)
            for (j = 0; j < 4 && ox0 + j < ow; j++) {
                size_t at = (size_t)(oy0 + i) * ow + ox0 + j;
                float v = y[i][j][l];
                if (rplane) v += rplane[at];
                if (relu && v < 0.0f) v = 0.0f;
                oplane[at] = v;
            }
    }
}

/* B^T x of the 6 values x0..x5 into o0..o5 (the rows, then the columns, of B^T d B); MUL,
   ADD, SUB and C (a constant) are the scalar or the ymm operations, so that the portable and
   the AVX2 input transforms run the same operations in the same order. */
#define IMRET__WG_BT6(MUL, ADD, SUB, C, x0, x1, x2, x3, x4, x5, o0, o1, o2, o3, o4, o5)                               \
    do {                                                                                                             \
        o0 = ADD(SUB(MUL(C(4), x0), MUL(C(5), x2)), x4);                                                             \
        o1 = ADD(ADD(MUL(C(-4), ADD(x1, x2)), x3), x4);                                                              \
        o2 = ADD(SUB(MUL(C(4), SUB(x1, x2)), x3), x4);                                                               \
        o3 = ADD(SUB(MUL(C(2), SUB(x3, x1)), x2), x4);                                                               \
        o4 = ADD(SUB(MUL(C(2), SUB(x1, x3)), x2), x4);                                                               \
        o5 = ADD(SUB(MUL(C(4), x1), MUL(C(5), x3)), x5);                                                             \
    } while (0)
#define IMRET__WG_SMUL(a, b) ((a) * (b))
#define IMRET__WG_SADD(a, b) ((a) + (b))
#define IMRET__WG_SSUB(a, b) ((a) - (b))
#define IMRET__WG_SC(v) ((float)(v))

/* One group of 8 tiles of the input transform: the 6x6 patches of tiles t.. of plane (n of them
   real; n may be < 8 or <= 0: the other lanes are 0) -> B^T d B into the 36 xi planes of V,
   8 floats at v, v + step, ... */
typedef void (*imret__wg_group_fn)(const float *plane, int h, int w, int pad, int tiles_x, long t, int n, float *v,
                                   size_t step);

/* Tiles [t0, t0+nt) of input channels [ic0, ic1) (tile t: output rows 4*(t / tiles_x)..,
   columns 4*(t % tiles_x)..) -> V[xi][j][ic][nr] = B^T d B, tile t0 + j*nr + lane; lanes past nt
   are 0. IC is the channel count of the layer (V's layout). group transforms 8 tiles of one
   channel: imret__wg_group_generic, or on x86 imret__wg_group_avx2 (in registers); each
   transform instance inlines it. The next channel's input rectangle (rows y0..y1, columns
   x0..x1 of the block's tiles, clipped) is prefetched while one is transformed: the reads of
   short rows of IC different planes are beyond the hardware prefetcher, and they were the
   hottest instructions of the transform (perf, VGG16). */
static IMRET__INLINE void imret__wg_input_loop(const float *in, int IC, int ic0, int ic1, int h, int w, int pad, int tiles_x,
                                               long t0, int nt, int nr, float *V, imret__wg_group_fn group) {
    int npan = (nt + nr - 1) / nr, ic, g;
    size_t step = imret__wg_vstep(npan * nr, IC); /* between xi planes */
    long ty0 = t0 / tiles_x, ty1 = (t0 + nt - 1) / tiles_x;
    int y0 = (int)ty0 * 4 - pad, y1 = (int)ty1 * 4 - pad + 6, x0 = ty0 == ty1 ? (int)(t0 % tiles_x) * 4 - pad : 0;
    int x1 = ty0 == ty1 ? (int)((t0 + nt - 1) % tiles_x) * 4 - pad + 6 : w;
    y0 = y0 < 0 ? 0 : y0; y1 = y1 > h ? h : y1; x0 = x0 < 0 ? 0 : x0; x1 = x1 > w ? w : x1;
    for (ic = ic0; ic < ic1; ic++) {
        const float *plane = in + (size_t)ic * h * w;
        if (ic + 1 < ic1) {
            int y, x;
            for (y = y0; y < y1; y++)
                for (x = x0; x < x1 + 15; x += 16) IMRET__PREFETCH(plane + (size_t)h * w + (size_t)y * w + (x < x1 ? x : x1 - 1));
        }
        for (g = 0; g * 8 < npan * nr; g++)
            group(plane, h, w, pad, tiles_x, t0 + g * 8, nt - g * 8, V + ((size_t)(g * 8 / nr) * IC + ic) * nr + g * 8 % nr, step);
    }
}

/* The portable group: patches lane by lane, transforms on arrays of 8 lanes. */
static IMRET__INLINE void imret__wg_group_generic(const float *plane, int h, int w, int pad, int tiles_x, long t, int n, float *v,
                                                  size_t step) {
    float d[6][6][8], e[6][6][8];
    int r, c, l;
    imret__wg_gather_lanes(plane, h, w, pad, tiles_x, t, n, d);
    for (c = 0; c < 6; c++) IMRET__WG_L8 /* B^T along rows */
        IMRET__WG_BT6(IMRET__WG_SMUL, IMRET__WG_SADD, IMRET__WG_SSUB, IMRET__WG_SC, d[0][c][l], d[1][c][l], d[2][c][l], d[3][c][l],
                      d[4][c][l], d[5][c][l], e[0][c][l], e[1][c][l], e[2][c][l], e[3][c][l], e[4][c][l], e[5][c][l]);
    for (r = 0; r < 6; r++) IMRET__WG_L8 /* B along columns, into the packed panels */
        IMRET__WG_BT6(IMRET__WG_SMUL, IMRET__WG_SADD, IMRET__WG_SSUB, IMRET__WG_SC, e[r][0][l], e[r][1][l], e[r][2][l], e[r][3][l],
                      e[r][4][l], e[r][5][l], v[(size_t)(r * 6) * step + l], v[(size_t)(r * 6 + 1) * step + l],
                      v[(size_t)(r * 6 + 2) * step + l], v[(size_t)(r * 6 + 3) * step + l], v[(size_t)(r * 6 + 4) * step + l],
                      v[(size_t)(r * 6 + 5) * step + l]);
}
/* The portable input transform (aarch64; x86 has imret__wg_input_avx2). */
static void imret__wg_input_generic(const float *in, int IC, int ic0, int ic1, int h, int w, int pad, int tiles_x, long t0,
                                    int nt, int nr, float *V) {
    imret__wg_input_loop(in, IC, ic0, ic1, h, w, pad, tiles_x, t0, nt, nr, V, imret__wg_group_generic);
}

/* A^T x of the 6 values x0..x5 into o0..o3 (the rows, then the columns, of A^T m A), with the
   operations of IMRET__WG_BT6. */
#define IMRET__WG_AT6(MUL, ADD, SUB, C, x0, x1, x2, x3, x4, x5, o0, o1, o2, o3)                                        \
    do {                                                                                                             \
        o0 = ADD(ADD(ADD(ADD(x0, x1), x2), x3), x4);                                                                 \
        o1 = ADD(SUB(x1, x2), MUL(C(2), SUB(x3, x4)));                                                               \
        o2 = ADD(ADD(x1, x2), MUL(C(4), ADD(x3, x4)));                                                               \
        o3 = ADD(ADD(SUB(x1, x2), MUL(C(8), SUB(x3, x4))), x5);                                                      \
    } while (0)

/* Output channels [oc0, oc1) of the block's Mb[xi][M][ldm] -> A^T m A + epilogue, clipped
   to the oh x ow output. The portable form; x86 has its own in registers
   (imret__wg_output_avx2). */
static void imret__wg_output_generic(const float *Mb, int M, int ldm, long t0, int nt, int tiles_x, int oh, int ow, float *out,
                                     const imret__epilogue *ep, int oc0, int oc1) {
    int oc, g, i, j, l;
    size_t step = imret__wg_mstep(M, ldm); /* between xi planes */
    for (oc = oc0; oc < oc1; oc++) {
        float bias = ep->bias ? ep->bias[oc] : 0.0f;
        float *oplane = out + (size_t)oc * oh * ow;
        const float *rplane = ep->residual ? ep->residual + (size_t)oc * oh * ow : NULL;
        for (g = 0; g * 8 < nt; g++) {
            float s[4][6][8], y[4][4][8];
            const float *m = Mb + (size_t)oc * ldm + g * 8;
            for (j = 0; j < 6; j++) IMRET__WG_L8 /* A^T along rows */
                IMRET__WG_AT6(IMRET__WG_SMUL, IMRET__WG_SADD, IMRET__WG_SSUB, IMRET__WG_SC, m[(size_t)j * step + l],
                              m[(size_t)(6 + j) * step + l], m[(size_t)(12 + j) * step + l], m[(size_t)(18 + j) * step + l],
                              m[(size_t)(24 + j) * step + l], m[(size_t)(30 + j) * step + l], s[0][j][l], s[1][j][l], s[2][j][l],
                              s[3][j][l]);
            for (i = 0; i < 4; i++) IMRET__WG_L8 { /* A along columns, + bias */
                IMRET__WG_AT6(IMRET__WG_SMUL, IMRET__WG_SADD, IMRET__WG_SSUB, IMRET__WG_SC, s[i][0][l], s[i][1][l], s[i][2][l],
                              s[i][3][l], s[i][4][l], s[i][5][l], y[i][0][l], y[i][1][l], y[i][2][l], y[i][3][l]);
                for (j = 0; j < 4; j++) y[i][j][l] += bias;
            }
            imret__wg_store_lanes(y, oplane, rplane, oh, ow, t0 + g * 8, nt - g * 8 < 8 ? nt - g * 8 : 8, tiles_x, ep->relu);
        }
    }
}

/* Weight transform instances (the body inlined into each). */
#define IMRET__WG_INSTANCES(sfx, attr)                                                                               \
    attr static void imret__wg_weights_##sfx(const float *wp, int IC, float *U, int p0, int p1, size_t xstep,        \
                                             int pbase) {                                                            \
        imret__wg_weights_body(wp, IC, U, p0, p1, xstep, pbase);                                                     \
    }
IMRET__WG_INSTANCES(generic, )
#if IMRET__X86
IMRET__WG_INSTANCES(avx2, IMRET__AVX2)
#define IMRET__WG_VC(v) _mm256_set1_ps((float)(v))
/* imret__wg_group_generic on 8 tiles per ymm, the patches and their transforms in ymm values
   (imret__wg_gather8_avx2 where the 8 tiles lie in at most two tile rows, else lane by lane):
   the same operations, the same bits. The portable form, compiled for AVX2, had GCC 12 copy
   its 8-float rows through the stack in 16-byte halves (and some through general registers).
   With imret__wg_output_avx2, bench/ab_layers.sh on a Zen 4, 1 thread: ResNet-50's Winograd
   layers 0.87-0.88x their time at 56x56, 0.92-0.93 at 28x28, 0.96-0.98 at 14x14, the forward
   pass 0.992 (2 threads 0.95); VGG16's features 0.948. */
IMRET__AVX2 static IMRET__INLINE void imret__wg_group_avx2(const float *plane, int h, int w, int pad, int tiles_x, long t, int n,
                                                          float *v, size_t step) {
    __m256 d[6][6], e[6][6];
    int tx = (int)(t % tiles_x), ty = (int)(t / tiles_x), r, c;
    if (n >= 8 && tx + 8 <= 2 * tiles_x) { /* 8 tiles in one or two tile rows */
        imret__wg_gather8_avx2(plane, h, w, ty * 4 - pad, tx * 4 - pad, 0, d);
        if (tx + 8 > tiles_x) /* lanes tiles_x - tx.. are the first tiles of the next row */
            imret__wg_gather8_avx2(plane, h, w, ty * 4 + 4 - pad, -4 * (tiles_x - tx) - pad, tiles_x - tx, d);
    } else {
        float dl[6][6][8];
        imret__wg_gather_lanes(plane, h, w, pad, tiles_x, t, n, dl);
        for (r = 0; r < 6; r++)
            for (c = 0; c < 6; c++) d[r][c] = _mm256_loadu_ps(dl[r][c]);
    }
    for (c = 0; c < 6; c++) /* B^T along rows */
        IMRET__WG_BT6(_mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, IMRET__WG_VC, d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c],
                      e[0][c], e[1][c], e[2][c], e[3][c], e[4][c], e[5][c]);
    for (r = 0; r < 6; r++) { /* B along columns, into the packed panels */
        __m256 o0, o1, o2, o3, o4, o5;
        IMRET__WG_BT6(_mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, IMRET__WG_VC, e[r][0], e[r][1], e[r][2], e[r][3], e[r][4], e[r][5],
                      o0, o1, o2, o3, o4, o5);
        _mm256_storeu_ps(v + (size_t)(r * 6) * step, o0);
        _mm256_storeu_ps(v + (size_t)(r * 6 + 1) * step, o1);
        _mm256_storeu_ps(v + (size_t)(r * 6 + 2) * step, o2);
        _mm256_storeu_ps(v + (size_t)(r * 6 + 3) * step, o3);
        _mm256_storeu_ps(v + (size_t)(r * 6 + 4) * step, o4);
        _mm256_storeu_ps(v + (size_t)(r * 6 + 5) * step, o5);
    }
}
IMRET__AVX2 static void imret__wg_input_avx2(const float *in, int IC, int ic0, int ic1, int h, int w, int pad, int tiles_x,
                                             long t0, int nt, int nr, float *V) {
    imret__wg_input_loop(in, IC, ic0, ic1, h, w, pad, tiles_x, t0, nt, nr, V, imret__wg_group_avx2);
}

/* imret__wg_output_generic on 8 tiles per ymm, in ymm values, each output row scattered as it
   is computed (imret__wg_scatter8_avx2 where the 8 tiles lie in at most two tile rows, else
   lane by lane): the same operations, the same bits. */
IMRET__AVX2 static void imret__wg_output_avx2(const float *Mb, int M, int ldm, long t0, int nt, int tiles_x, int oh, int ow,
                                              float *out, const imret__epilogue *ep, int oc0, int oc1) {
    int oc, g, i, j;
    size_t step = imret__wg_mstep(M, ldm); /* between xi planes */
    for (oc = oc0; oc < oc1; oc++) {
        __m256 bias = _mm256_set1_ps(ep->bias ? ep->bias[oc] : 0.0f);
        float *oplane = out + (size_t)oc * oh * ow;
        const float *rplane = ep->residual ? ep->residual + (size_t)oc * oh * ow : NULL;
        for (g = 0; g * 8 < nt; g++) {
            const float *m = Mb + (size_t)oc * ldm + g * 8;
            int tx = (int)((t0 + g * 8) % tiles_x), ty = (int)((t0 + g * 8) / tiles_x);
            int vec = g * 8 + 8 <= nt && tx + 8 <= 2 * tiles_x, two = tx + 8 > tiles_x; /* 8 tiles in one or two rows */
            __m256 s[4][6];
            __m256i ma[4], mb[4];
            float yl[4][4][8];
            for (j = 0; j < 6; j++) /* A^T along rows */
                IMRET__WG_AT6(_mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, IMRET__WG_VC, _mm256_loadu_ps(m + (size_t)j * step),
                              _mm256_loadu_ps(m + (size_t)(6 + j) * step), _mm256_loadu_ps(m + (size_t)(12 + j) * step),
                              _mm256_loadu_ps(m + (size_t)(18 + j) * step), _mm256_loadu_ps(m + (size_t)(24 + j) * step),
                              _mm256_loadu_ps(m + (size_t)(30 + j) * step), s[0][j], s[1][j], s[2][j], s[3][j]);
            if (vec) {
                imret__wg_cols8(tx * 4, ow, ma); /* lanes past the row: columns >= ow */
                if (two) imret__wg_cols8(-4 * (tiles_x - tx), ow, mb);
            }
            for (i = 0; i < 4; i++) { /* A along columns, + bias */
                __m256 y0, y1, y2, y3;
                IMRET__WG_AT6(_mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, IMRET__WG_VC, s[i][0], s[i][1], s[i][2], s[i][3], s[i][4],
                              s[i][5], y0, y1, y2, y3);
                y0 = _mm256_add_ps(y0, bias); y1 = _mm256_add_ps(y1, bias);
                y2 = _mm256_add_ps(y2, bias); y3 = _mm256_add_ps(y3, bias);
                if (vec) {
                    size_t at = (size_t)(ty * 4 + i) * ow + (size_t)tx * 4;
                    if (ty * 4 + i < oh) imret__wg_scatter8_avx2(y0, y1, y2, y3, oplane + at, rplane ? rplane + at : NULL, ma, ep->relu);
                    at = (size_t)(ty * 4 + 4 + i) * ow - (size_t)4 * (tiles_x - tx);
                    if (two && ty * 4 + 4 + i < oh)
                        imret__wg_scatter8_avx2(y0, y1, y2, y3, oplane + at, rplane ? rplane + at : NULL, mb, ep->relu);
                } else {
                    _mm256_storeu_ps(yl[i][0], y0); _mm256_storeu_ps(yl[i][1], y1);
                    _mm256_storeu_ps(yl[i][2], y2); _mm256_storeu_ps(yl[i][3], y3);
                }
            }
            if (!vec) imret__wg_store_lanes(yl, oplane, rplane, oh, ow, t0 + g * 8, nt - g * 8 < 8 ? nt - g * 8 : 8, tiles_x, ep->relu);
        }
    }
}
/* The weight transform on 16 lanes: two input channels of a panel per zmm (their 8-float
   rows are 72 floats apart in wp and adjacent in U), the operations of
   imret__wg_weights_body in the same order, so U gets the same bits (an odd last channel
   goes through the body). */
IMRET__AVX512 static void imret__wg_weights_avx512(const float *wp, int IC, float *U, int p0, int p1, size_t xstep, int pbase) {
    const __m512 c4 = _mm512_set1_ps(0.25f), c6 = _mm512_set1_ps(-1.0f / 6), c24 = _mm512_set1_ps(1.0f / 24);
    const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f);
    int p, ic, i, j;
#define IMRET__WG_G6(g0, g1, g2, o)                                                                                   \
    do {                                                                                                             \
        o[0] = _mm512_mul_ps(c4, g0);                                                                                \
        o[1] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(g0, g1), g2), c6);                                          \
        o[2] = _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(g0, g1), g2), c6);                                          \
        o[3] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(g0, _mm512_mul_ps(two, g1)), _mm512_mul_ps(four, g2)), c24); \
        o[4] = _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(g0, _mm512_mul_ps(two, g1)), _mm512_mul_ps(four, g2)), c24); \
        o[5] = g2;                                                                                                   \
    } while (0)
    for (p = p0; p < p1; p++) {
        for (ic = 0; ic + 2 <= IC; ic += 2) {
            const float *g = wp + (size_t)p * IMRET__MR * IC * 9 + (size_t)ic * 9 * IMRET__MR; /* [ky*3+kx][8], ic + 1 at g + 72 */
            __m512 t[3][6], r[3], u[6];
            for (j = 0; j < 3; j++) { /* G along ky */
                for (i = 0; i < 3; i++)
                    r[i] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(g + (i * 3 + j) * 8)),
                                              _mm256_loadu_ps(g + 72 + (i * 3 + j) * 8), 1);
                IMRET__WG_G6(r[0], r[1], r[2], t[j]);
            }
            for (i = 0; i < 6; i++) { /* G along kx */
                IMRET__WG_G6(t[0][i], t[1][i], t[2][i], u);
                for (j = 0; j < 6; j++) _mm512_storeu_ps(U + (size_t)(i * 6 + j) * xstep + ((size_t)(p - pbase) * IC + ic) * 8, u[j]);
            }
        }
        if (ic < IC) { /* the odd last channel: the body on a one-channel view of the panel */
            int c;
            float last[9 * IMRET__MR], ul[36 * IMRET__MR];
            memcpy(last, wp + (size_t)p * IMRET__MR * IC * 9 + (size_t)ic * 9 * IMRET__MR, sizeof last);
            imret__wg_weights_body(last, 1, ul, 0, 1, IMRET__MR, 0);
            for (c = 0; c < 36; c++) memcpy(U + (size_t)c * xstep + ((size_t)(p - pbase) * IC + ic) * 8, ul + c * 8, 8 * sizeof(float));
        }
    }
#undef IMRET__WG_G6
}
IMRET__AVX2 static void imret__maxpool_rows_avx2(const float *in, int h, int w, int k, int stride, int pad, float *out, int oh,
                                                 int ow, int ch0, int ch1) {
    imret__maxpool_rows_body(in, h, w, k, stride, pad, out, oh, ow, ch0, ch1);
}
IMRET__AVX512 static void imret__maxpool_rows_avx512(const float *in, int h, int w, int k, int stride, int pad, float *out,
                                                     int oh, int ow, int ch0, int ch1) {
    imret__maxpool_rows_body(in, h, w, k, stride, pad, out, oh, ow, ch0, ch1);
}
#endif

/* Floats of a layer's transformed weights U. */
static size_t imret__wg_u_floats(int M, int IC) { return (size_t)36 * ((size_t)(M + IMRET__MR - 1) / IMRET__MR * IMRET__MR) * IC; }

/* U (imret__wg_u_floats) = the transformed packed 3x3 weights wp of an M x IC layer. */
static void imret__wg_transform_weights(const imret__kernels *kern, int M, int IC, const float *wp, float *U, int threads) {
    int panels = (M + IMRET__MR - 1) / IMRET__MR, p;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && panels > 1)
#endif
    for (p = 0; p < panels; p++) kern->wg_weights(wp, IC, U, p, p + 1, (size_t)panels * IC * IMRET__MR, 0);
}

/* Work split of imret__conv_winograd for an oh x ow output: tasks are (block of imret__wg_nt
   tiles) x (chunk of the output-channel panels). Panels are split only with several threads
   and too few blocks to balance them; the chunks of a block then share its transformed input
   V, computed once up front in parallel over (block, channel group) -- each chunk had
   transformed the whole block again (VGG16 conv4 at 28x28: 2 blocks x 4 chunks, 4x the input
   transform; and at one thread 2 chunks, for nothing). Returns the workspace floats (U not
   included): the V of every block when shared, else one V per thread, then one M per thread,
   then (fused) one transformed weight panel per thread; never less for more threads. */
#define IMRET__WG_ICG 32 /* input channels per task of the shared input transform */
/* Floats between the xi planes of one transformed weight panel (fused path): padded like V and M. */
static size_t imret__wg_ustep(int IC) { return (size_t)IC * IMRET__MR + IMRET__WG_PAD; }
static size_t imret__wg_plan(int M, int IC, int oh, int ow, int nr, int threads, int fused, int *chunks_out, long *nblocks_out) {
    int panels = (M + IMRET__MR - 1) / IMRET__MR, chunks = 1, nt = imret__wg_nt(nr);
    long T = (long)((ow + 3) / 4) * ((oh + 3) / 4), nblocks = (T + nt - 1) / nt;
    size_t v = (size_t)36 * imret__wg_vstep(nt, IC), m = (size_t)36 * imret__wg_mstep(M, nt);
    long want;
    if (threads < 1) threads = 1;
    /* Below 256 output channels a block's GEMMs are too short to pay for moving its V between
       cores: split only when there are fewer blocks than threads (2 threads, cold caches,
       interleaved: 64->64 at 56x56 0.595 -> 0.45 ms, 128->128 at 28x28 0.483 -> 0.421; from
       256 channels on the balance wins: 512->512 at 28x28 6.12 shared vs 6.75 not). */
    want = M >= 256 ? 4L * threads : threads;
    while (threads > 1 && nblocks * chunks < want && chunks * 2 <= panels) chunks *= 2;
    if (chunks_out) *chunks_out = chunks;
    if (nblocks_out) *nblocks_out = nblocks;
    return (size_t)(chunks > 1 && nblocks > threads ? nblocks : threads) * v + (size_t)threads * m +
           (fused ? (size_t)threads * 36 * imret__wg_ustep(IC) : 0);
}

/* Columns of the V panels of a block of nt tiles: 16 where there is a 16-column kernel and
   nt <= 16 (ResNet-50's layer3 and VGG16's conv5 at 224: one block of 16 tiles), else nr. In
   32-column panels such a block used half of every B row it read and its V (IC x 32 x 36
   floats, 1.2 MB at 256 channels) overflowed L2, which the GEMM of each of the layer's 32
   weight panels then re-read from L3. */
static int imret__wg_pw(const imret__kernels *kern, int nt) { return kern->ukr16 && nt <= 16 ? 16 : kern->nr; }

/* M[xi] rows of panel q = U[xi] panel a (8 x IC) times V[xi] (IC x the block's nt tiles). */
static void imret__wg_gemm(const imret__kernels *kern, const float *a, const float *V, float *Mb, int xi, int q, int M, int IC,
                           int nt, size_t vstep, size_t mstep) {
    int nr = imret__wg_pw(kern, nt), npan = (nt + nr - 1) / nr, ldm = npan * nr, j;
    int mr = M - q * IMRET__MR < IMRET__MR ? M - q * IMRET__MR : IMRET__MR;
    imret__ukr_fn ukr = nr == kern->nr ? kern->ukr : kern->ukr16;
    for (j = 0; j < npan; j++) { /* the columns of the block's tiles, in whole groups of 8 */
        int cols = (nt - j * nr + 7) / 8 * 8;
        ukr(IC, a, V + xi * vstep + (size_t)j * IC * nr, Mb + xi * mstep + (size_t)q * IMRET__MR * ldm + j * nr, (size_t)ldm, mr,
            cols < nr ? cols : nr, 1, 1, NULL, NULL, 0);
    }
}

/* out (M x oh x ow) = epilogue(conv3x3 stride 1 (in: IC x h x w, padding pad)) by F(4x4, 3x3)
   with U from imret__wg_transform_weights, or, U NULL (fused), each task transforming the
   panels of the packed 3x3 weights wp it uses just before their 36 GEMMs (a layer of one
   block: nothing transformed twice, nothing kept); ws holds imret__wg_plan floats. Every
   output value is computed by the same operations whatever the thread count (tiles, channel
   groups and channel panels are independent tasks). */
static void imret__conv_winograd(const imret__kernels *kern, int M, int IC, int h, int w, int pad, const float *in,
                                 float *out, const imret__epilogue *ep, const float *U, const float *wp, float *ws, int threads) {
    int oh = h + 2 * pad - 2, ow = w + 2 * pad - 2, tiles_x = (ow + 3) / 4, nr = kern->nr, chunks, shared;
    int panels = (M + IMRET__MR - 1) / IMRET__MR;
    long NT = imret__wg_nt(nr), T = (long)tiles_x * ((oh + 3) / 4), nblocks, tiles, t, groups = (IC + IMRET__WG_ICG - 1) / IMRET__WG_ICG;
    size_t vfull = (size_t)36 * imret__wg_vstep((int)NT, IC), mfull = (size_t)36 * imret__wg_mstep(M, (int)NT);
    float *Mws;
    imret__wg_plan(M, IC, oh, ow, nr, threads, !U, &chunks, &nblocks);
    shared = chunks > 1;
    Mws = ws + (size_t)(shared && nblocks > threads ? nblocks : threads) * vfull;
    tiles = nblocks * chunks;
    (void)threads;
    if (shared) {
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
        for (t = 0; t < nblocks * groups; t++) {
            long t0 = (t / groups) * NT;
            int ic0 = (int)(t % groups) * IMRET__WG_ICG, ic1 = IC - ic0 < IMRET__WG_ICG ? IC : ic0 + IMRET__WG_ICG;
            int nt = T - t0 < NT ? (int)(T - t0) : (int)NT;
            kern->wg_input(in, IC, ic0, ic1, h, w, pad, tiles_x, t0, nt, imret__wg_pw(kern, nt), ws + (size_t)(t / groups) * vfull);
        }
    }
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tiles > 1)
#endif
    for (t = 0; t < tiles; t++) {
#if IMRET__OMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        long t0 = (t / chunks) * NT;
        int chunk = (int)(t % chunks), p0 = (int)((long)chunk * panels / chunks), p1 = (int)((long)(chunk + 1) * panels / chunks);
        int nt = T - t0 < NT ? (int)(T - t0) : (int)NT, pw = imret__wg_pw(kern, nt), ldm = (nt + pw - 1) / pw * pw, xi, q;
        size_t vstep = imret__wg_vstep(ldm, IC), mstep = imret__wg_mstep(M, ldm);
        float *V = ws + (size_t)(shared ? t / chunks : tid) * vfull, *Mb = Mws + (size_t)tid * mfull;
        if (!shared) kern->wg_input(in, IC, 0, IC, h, w, pad, tiles_x, t0, nt, pw, V);
        if (U) { /* xi outer: each U[xi] is one contiguous run over the panels */
            for (xi = 0; xi < 36; xi++)
                for (q = p0; q < p1; q++)
                    imret__wg_gemm(kern, U + ((size_t)xi * panels + q) * IMRET__MR * IC, V, Mb, xi, q, M, IC, nt, vstep, mstep);
        } else { /* fused: one panel's 36 transformed planes, in L2, then its 36 GEMMs */
            float *Uq = Mws + (size_t)threads * mfull + (size_t)tid * 36 * imret__wg_ustep(IC);
            for (q = p0; q < p1; q++) {
                /* the next panel's 3x3 weights (72 IC floats, read cold from memory) are fetched a
                   36th at a time during this panel's GEMMs: the transform had stalled on them
                   (perf: its hottest instructions waited on those loads) */
                const char *next = (const char *)(wp + (size_t)(q + 1) * IMRET__MR * IC * 9);
                kern->wg_weights(wp, IC, Uq, q, q + 1, imret__wg_ustep(IC), q);
                for (xi = 0; xi < 36; xi++) {
                    if (q + 1 < p1) {
                        long first, n = imret__line_share((size_t)IMRET__MR * IC * 9 * sizeof(float), 36, xi, &first);
                        imret__prefetch_lines(next, first, n);
                    }
                    imret__wg_gemm(kern, Uq + xi * imret__wg_ustep(IC), V, Mb, xi, q, M, IC, nt, vstep, mstep);
                }
            }
        }
        kern->wg_output(Mb, M, ldm, t0, nt, tiles_x, oh, ow, out, ep, p0 * IMRET__MR, p1 * IMRET__MR < M ? p1 * IMRET__MR : M);
    }
}

/* The kernel table of a SIMD level (nr == 0: the portable path). */
static imret__kernels imret__kernels_for(imret_simd level) {
    imret__kernels k;
    memset(&k, 0, sizeof k);
    k.level = imret__simd_resolve(level);
    k.wg_weights = imret__wg_weights_generic;
    k.wg_input = imret__wg_input_generic;
    k.wg_output = imret__wg_output_generic;
#if IMRET__X86
    if (k.level == IMRET_SIMD_AVX512) {
        int zmm = imret__cpu_features() & IMRET__CPU_INTEL; /* the transposed kernels' form (imret__ukr_avx512_ty) */
        k.nr = 32; k.ukr = imret__ukr_avx512; k.ukr16 = imret__ukr_avx512_p16; k.ukr_d = imret__ukr_avx512_d;
        k.ukr_t = zmm ? imret__ukr_avx512_t : imret__ukr_avx512_ty;
        k.ukr_pt = zmm ? imret__ukr_avx512_pt : imret__ukr_avx512_pty;
        k.maxpool = imret__maxpool_rows_avx512;
        k.b_outer_kc = zmm ? IMRET__B_OUTER_KC : 0; /* measured on Intel only (imret__gemm_panels) */
    }
    else if (k.level == IMRET_SIMD_AVX2) { k.nr = 24; k.ukr = imret__ukr_avx2; k.maxpool = imret__maxpool_rows_avx2; }
    if (k.nr) { /* AVX-512 implies AVX2: the 8-lane transforms are ymm code on both (the weight
                   transform is zmm code on AVX-512) */
        k.wg_weights = k.level == IMRET_SIMD_AVX512 ? imret__wg_weights_avx512 : imret__wg_weights_avx2;
        k.wg_input = imret__wg_input_avx2;
        k.wg_output = imret__wg_output_avx2;
    }
#endif
#if IMRET__NEON
    if (k.level == IMRET_SIMD_NEON) { k.nr = 8; k.ukr = imret__ukr_neon; k.maxpool = imret__maxpool_rows_generic; } /* transforms: generic (NEON is baseline) */
#endif
    return k;
}

/* Max pool of c channels: the row form of kern's level split over threads by channel, or the
   oracle (imret__maxpool) on the portable path. */
static void imret__maxpool_run(const imret__kernels *kern, const float *in, int c, int h, int w, int k, int stride, int pad,
                               float *out, int oh, int ow, int threads) {
    int ch;
    if (!kern->maxpool) {
        imret__maxpool(in, c, h, w, k, stride, pad, out, oh, ow, threads);
        return;
    }
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && c > 1)
#endif
    for (ch = 0; ch < c; ch++) kern->maxpool(in, h, w, k, stride, pad, out, oh, ow, ch, ch + 1);
}

/* [reduced precision] x -> the nearest bf16 value (ties to even), kept as a float: BF16 precision. Inputs are
   finite. */
static uint16_t imret__bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float imret__bf16_round(float x) {
    uint32_t u = (uint32_t)imret__bf16_bits(x) << 16;
    memcpy(&x, &u, 4);
    return x;
}
static void imret__round_bf16(const float *in, float *out, size_t n, int threads) {
    long i;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for simd schedule(static) num_threads(threads) if (threads > 1 && n > 65536)
#endif
    for (i = 0; i < (long)n; i++) out[i] = imret__bf16_round(in[i]);
}

/* ======================================================================================
   [impl: kernels (int8)]
   Int8 convolution for IMRET_PRECISION_INT8: weights int8 per output channel (symmetric),
   inputs uint7 per tensor (u = round(x / act_scale) clamped to 0..127; every quantised
   input is a ReLU output), exact int32 sums, then the fp32 epilogue
   y = (float)sum * dq[oc] + bias[oc] (+ residual), ReLU, with dq = weight scale * act_scale.
   7 bits, not 8: AVX2's vpmaddubsw adds two u8 x s8 products into an int16 with saturation;
   127 * 127 * 2 < 2^15 never saturates, so every level gives the same integers.
   Layout: the quantised input keeps 4 channels of a pixel together (4-channel groups,
   g = ic / 4: byte ((g*H*W) + p)*4 + ic%4), so one uint32 is the 4 bytes vpmaddubsw /
   vpdpbusd sum. Convolutions are a GEMM over K = groups x taps: B is the implicit im2col of
   those uint32 and is packed by imret__pack_b itself (a uint32 of values <= 127 never has
   the bits of a NaN/Inf, so moving it as a float is exact); A (weights) is packed at load in
   panels of 4 output channels x 4 input channels per tap (imret__wq_at). Sums cover the
   whole K at once (no partial sums to store); B blocks are sized to stay in L2.
   Micro-kernels (imret__kernels8_for): AVX2 vpmaddubsw 4x16, AVX-VNNI ymm vpdpbusd 4x16
   (1.6-1.8x AVX2, bench_int8), AVX-512 VNNI 4x64, aarch64 sdot 4x16; every one gives the
   oracle's results bit for bit (test_quant --kernels).
   ====================================================================================== */
#define IMRET__MR8 4 /* output channels per int8 weight panel */
#define IMRET__QA 127 /* top activation level: 7 bits (see above)  */
#define IMRET__QW 127 /* top weight level: symmetric int8          */

/* Number of K groups of a convolution: 4 input channels x one tap. */
static int imret__conv_kg(int in_c, int k) { return (in_c + 3) / 4 * k * k; }

/* Weight panel layout: panel oc/4, group r = ((ic/4)*k + ky)*k + kx, 16 bytes per group:
   bytes 4*(oc%4) + ic%4. Channels beyond in_c/out_c are zero. */
static size_t imret__wq_index(int kg, int k, int oc, int ic, int ky, int kx) {
    size_t r = ((size_t)(ic / 4) * k + ky) * k + kx;
    return ((size_t)(oc / IMRET__MR8) * kg + r) * 16 + (size_t)(oc % IMRET__MR8) * 4 + ic % 4;
}

/* Pixels per packed B block: about 256 KiB of uint32 (L2), a multiple of nr. */
static int imret__i8_nc(int kg, int nr) {
    int nc = 65536 / kg / nr * nr;
    return nc < nr ? nr : nc;
}

/* One plane element of the quantised input: x * inv clamped to 0..127, rounded to nearest
   even (as cvtps2dq). */
static uint8_t imret__quant_u7(float x, float inv) {
    float v = x * inv;
    v = v > 0.0f ? v : 0.0f;
    v = v < (float)IMRET__QA ? v : (float)IMRET__QA;
    return (uint8_t)lrintf(v);
}

#if IMRET__X86
/* Quantise 8 pixels of 4 channel planes into 8 uint32 (4-channel groups). */
__attribute__((target("avx2,fma"))) static void imret__quant_u7_avx2(const float *p0, size_t hw, int nch, float inv,
                                                                     size_t p, uint8_t *dst) {
    __m256 vinv = _mm256_set1_ps(inv), zero = _mm256_setzero_ps(), top = _mm256_set1_ps((float)IMRET__QA);
    __m256i acc = _mm256_setzero_si256();
    int j;
    for (j = 0; j < nch; j++) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(p0 + (size_t)j * hw + p), vinv);
        v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
        acc = _mm256_or_si256(acc, _mm256_sll_epi32(_mm256_cvtps_epi32(v), _mm_cvtsi32_si128(8 * j)));
    }
    _mm256_storeu_si256((__m256i *)(void *)dst, acc);
}
#endif

/* in: C x H x W floats -> out: 4-channel groups of uint7 (see above); simd > 0: AVX2. */
static void imret__quantise_input(const float *in, int c, size_t hw, float act_scale, uint8_t *out, int simd, int threads) {
    long groups = (c + 3) / 4, g;
    float inv = 1.0f / act_scale;
    (void)threads; (void)simd;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (g = 0; g < groups; g++) {
        const float *p0 = in + (size_t)g * 4 * hw;
        uint8_t *dst = out + (size_t)g * hw * 4;
        int nch = c - (int)g * 4 < 4 ? c - (int)g * 4 : 4, j;
        size_t p = 0;
#if IMRET__X86
        if (simd)
            for (; p + 8 <= hw; p += 8) imret__quant_u7_avx2(p0, hw, nch, inv, p, dst + p * 4);
#endif
        for (; p < hw; p++)
            for (j = 0; j < 4; j++) dst[p * 4 + j] = j < nch ? imret__quant_u7(p0[(size_t)j * hw + p], inv) : 0;
    }
}

/* The oracle: out[oc][oy][ox] = epilogue(sum over ic, ky, kx of wq * uq), read straight from
   the packed weights and the grouped input, no packing of B. */
static void imret__conv_i8_scalar(const int8_t *wq, const float *dq, int in_c, int out_c, int k, int stride, int pad,
                                  const uint8_t *xq, int h, int w, float *out, const imret__epilogue *ep, int threads) {
    int oh = imret__out_dim(h, k, stride, pad), ow = imret__out_dim(w, k, stride, pad), kg = imret__conv_kg(in_c, k), oc;
    size_t npix = (size_t)oh * ow;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (oc = 0; oc < out_c; oc++) {
        int oy, ox, ic, ky, kx;
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                int32_t acc = 0;
                size_t p = (size_t)oy * ow + ox;
                float v;
                for (ic = 0; ic < in_c; ic++)
                    for (ky = 0; ky < k; ky++)
                        for (kx = 0; kx < k; kx++) {
                            int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            acc += wq[imret__wq_index(kg, k, oc, ic, ky, kx)] *
                                   xq[((size_t)(ic / 4) * h * w + (size_t)iy * w + ix) * 4 + ic % 4];
                        }
                v = (float)acc * dq[oc];
                if (ep->bias) v += ep->bias[oc];
                if (ep->residual) v += ep->residual[(size_t)oc * npix + p];
                if (ep->relu && v < 0.0f) v = 0.0f;
                out[(size_t)oc * npix + p] = v;
            }
    }
}

/* Micro-kernel: C[mr][nr] = epilogue(A panel (kg x 4 oc x 4 bytes) . B panel (kg x nr x 4
   bytes)), whole K. */
typedef void (*imret__ukr8_fn)(int kg, const int8_t *a, const uint8_t *b, float *c, size_t ldc, int mr, int nr,
                               const float *dq, const float *bias, const float *res, int relu);

#if IMRET__X86
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized" /* C++ -O2 reports the same idiom under this name */
#endif
static int32_t imret__ld32(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

/* The 4 x 16 ymm tile of the AVX2 and AVX-VNNI kernels: per K group, 2 ymm of B (16 pixels x
   4 bytes) times each row's broadcast 4 weights, 8 named accumulators; OP(acc, b, w) adds the
   4 u8 x s8 products of every uint32 lane to acc (exact: see the 7-bit inputs above). */
#define IMRET__TILE4X16(OP)                                                                                   \
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00; \
    int r;                                                                                                    \
    for (r = 0; r < kg; r++) {                                                                                \
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(const void *)b);                                    \
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 32)), w;                          \
        w = _mm256_set1_epi32(imret__ld32(a)); c00 = OP(c00, b0, w); c01 = OP(c01, b1, w);                    \
        w = _mm256_set1_epi32(imret__ld32(a + 4)); c10 = OP(c10, b0, w); c11 = OP(c11, b1, w);                \
        w = _mm256_set1_epi32(imret__ld32(a + 8)); c20 = OP(c20, b0, w); c21 = OP(c21, b1, w);                \
        w = _mm256_set1_epi32(imret__ld32(a + 12)); c30 = OP(c30, b0, w); c31 = OP(c31, b1, w);               \
        a += 16;                                                                                              \
        b += 64;                                                                                              \
    }                                                                                                         \
    {                                                                                                         \
        __m256i acc[4][2];                                                                                    \
        acc[0][0] = c00; acc[0][1] = c01; acc[1][0] = c10; acc[1][1] = c11;                                   \
        acc[2][0] = c20; acc[2][1] = c21; acc[3][0] = c30; acc[3][1] = c31;                                   \
        imret__store_4x16(acc, c, ldc, mr, nr, dq, bias, res, relu);                                          \
    }

/* Epilogue of a 4 x 16 int32 tile: y = (float)sum * dq (+ bias) (+ residual), ReLU, as the
   oracle does it. */
IMRET__AVX2 static void imret__store_4x16(__m256i acc[4][2], float *c, size_t ldc, int mr, int nr, const float *dq,
                                          const float *bias, const float *res, int relu) {
    __m256i m0 = imret__mask8(nr), m1 = imret__mask8(nr - 8);
    int i;
    for (i = 0; i < mr; i++) {
        __m256 s = _mm256_set1_ps(dq[i]);
        __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][0]), s), v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][1]), s);
        float *crow = c + (size_t)i * ldc;
        if (bias) {
            v0 = _mm256_add_ps(v0, _mm256_set1_ps(bias[i]));
            v1 = _mm256_add_ps(v1, _mm256_set1_ps(bias[i]));
        }
        if (res) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(res + (size_t)i * ldc, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(res + (size_t)i * ldc + 8, m1));
        }
        if (relu) {
            v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
            v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
        }
        imret__maskstore8(crow, m0, v0);
        imret__maskstore8(crow + 8, m1, v1);
    }
}

/* 4 x 16 on AVX2: vpmaddubsw (u8 x s8 pairs -> int16) + vpmaddwd by 1 (-> int32) + add. */
#define IMRET__MADDUBS(acc, bv, wv) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(bv, wv), ones))
IMRET__AVX2 static void imret__ukr8_avx2(int kg, const int8_t *a, const uint8_t *b, float *c, size_t ldc, int mr, int nr,
                                         const float *dq, const float *bias, const float *res, int relu) {
    const __m256i ones = _mm256_set1_epi16(1);
    IMRET__TILE4X16(IMRET__MADDUBS)
}

/* 4 x 16 on AVX-VNNI (VEX-encoded vpdpbusd on ymm: Intel client cores from Alder Lake, AMD
   Zen 5): one instruction instead of three. Compilers from before the instruction (GCC < 11,
   clang < 12) build without it (AVX2 kernel instead). */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define IMRET__HAVE_AVXVNNI 1
#else
#define IMRET__HAVE_AVXVNNI 0
#endif
#if IMRET__HAVE_AVXVNNI
#define IMRET__AVXVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#define IMRET__DPBUSD_AVX(acc, bv, wv) _mm256_dpbusd_avx_epi32(acc, bv, wv)
IMRET__AVXVNNI static void imret__ukr8_avxvnni(int kg, const int8_t *a, const uint8_t *b, float *c, size_t ldc, int mr,
                                               int nr, const float *dq, const float *bias, const float *res, int relu) {
    IMRET__TILE4X16(IMRET__DPBUSD_AVX)
}
#endif

/* The 4 x 64 AVX-512 tile shared by the VNNI and BF16 kernels: per K group, 4 zmm of B
   (64 pixels x 4 bytes) times each row's broadcast 4 bytes (4 int8 weights / 2 bf16 weights),
   16 accumulators named one by one so they stay in registers (an acc[4][4] array was kept
   on the stack by gcc 12, a load and a store per instruction: int8 ran at 1.44x fp32 with it
   and 2.5x without in an earlier session's bench_quant, 2.27x on 2026-12-06; ResNet-50, 1
   thread, Zen 5). T: accumulator type; OP(acc, b, w). */
#define IMRET__TILE4X64(T, ZERO, OP)                                                                          \
    T c00 = ZERO, c01 = ZERO, c02 = ZERO, c03 = ZERO, c10 = ZERO, c11 = ZERO, c12 = ZERO, c13 = ZERO;         \
    T c20 = ZERO, c21 = ZERO, c22 = ZERO, c23 = ZERO, c30 = ZERO, c31 = ZERO, c32 = ZERO, c33 = ZERO;         \
    int r;                                                                                                    \
    for (r = 0; r < kg; r++) {                                                                                \
        __m512i b0 = _mm512_loadu_si512((const void *)b), b1 = _mm512_loadu_si512((const void *)(b + 64));    \
        __m512i b2 = _mm512_loadu_si512((const void *)(b + 128)), b3 = _mm512_loadu_si512((const void *)(b + 192)); \
        __m512i w0 = _mm512_set1_epi32(imret__ld32(a)), w1 = _mm512_set1_epi32(imret__ld32(a + 4));           \
        __m512i w2 = _mm512_set1_epi32(imret__ld32(a + 8)), w3 = _mm512_set1_epi32(imret__ld32(a + 12));      \
        c00 = OP(c00, b0, w0); c01 = OP(c01, b1, w0); c02 = OP(c02, b2, w0); c03 = OP(c03, b3, w0);           \
        c10 = OP(c10, b0, w1); c11 = OP(c11, b1, w1); c12 = OP(c12, b2, w1); c13 = OP(c13, b3, w1);           \
        c20 = OP(c20, b0, w2); c21 = OP(c21, b1, w2); c22 = OP(c22, b2, w2); c23 = OP(c23, b3, w2);           \
        c30 = OP(c30, b0, w3); c31 = OP(c31, b1, w3); c32 = OP(c32, b2, w3); c33 = OP(c33, b3, w3);           \
        a += 16;                                                                                              \
        b += 256;                                                                                             \
    }

/* Epilogue of a 4 x 64 tile: v[i][j] = row i, pixels 16j..16j+15, already scaled. */
IMRET__AVX512 static void imret__store_4x64(__m512 v[4][4], float *c, size_t ldc, int mr, int nr, const float *bias,
                                             const float *res, int relu) {
    int i, j;
    for (j = 0; j < 4; j++) {
        int n = nr - 16 * j;
        __mmask16 mk = (__mmask16)(n >= 16 ? 0xFFFF : n > 0 ? (1u << n) - 1 : 0);
        for (i = 0; i < mr; i++) {
            __m512 x = v[i][j];
            if (bias) x = _mm512_add_ps(x, _mm512_set1_ps(bias[i]));
            if (res) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, res + (size_t)i * ldc + 16 * j));
            if (relu) x = _mm512_max_ps(x, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(c + (size_t)i * ldc + 16 * j, mk, x);
        }
    }
}

/* 4 x 64 on AVX-512 VNNI: vpdpbusd does the 4 u8 x s8 products and the int32 sum in one
   instruction. */
#define IMRET__VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define IMRET__DPBUSD(acc, bv, wv) _mm512_dpbusd_epi32(acc, bv, wv)
IMRET__VNNI static void imret__ukr8_vnni(int kg, const int8_t *a, const uint8_t *b, float *c, size_t ldc, int mr, int nr,
                                         const float *dq, const float *bias, const float *res, int relu) {
    IMRET__TILE4X64(__m512i, _mm512_setzero_si512(), IMRET__DPBUSD)
    {
        __m512 v[4][4], s;
#define IMRET__SCALE8(i, x0, x1, x2, x3)                                                                  \
        s = _mm512_set1_ps(dq[i < mr ? i : 0]);                                                           \
        v[i][0] = _mm512_mul_ps(_mm512_cvtepi32_ps(x0), s); v[i][1] = _mm512_mul_ps(_mm512_cvtepi32_ps(x1), s); \
        v[i][2] = _mm512_mul_ps(_mm512_cvtepi32_ps(x2), s); v[i][3] = _mm512_mul_ps(_mm512_cvtepi32_ps(x3), s);
        IMRET__SCALE8(0, c00, c01, c02, c03) IMRET__SCALE8(1, c10, c11, c12, c13)
        IMRET__SCALE8(2, c20, c21, c22, c23) IMRET__SCALE8(3, c30, c31, c32, c33)
#undef IMRET__SCALE8
        imret__store_4x64(v, c, ldc, mr, nr, bias, res, relu);
    }
}

/* 4 x 64 on AVX512_BF16 ([bf16 inference] below): vdpbf16ps adds the 2 bf16 x bf16 products
   of a 4-byte pair to an fp32 lane. dq is unused (the sums are the outputs). */
#define IMRET__BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define IMRET__DPBF16(acc, bv, wv) _mm512_dpbf16_ps(acc, (__m512bh)(bv), (__m512bh)(wv))
IMRET__BF16 static void imret__ukrbf_avx512(int kg, const int8_t *a, const uint8_t *b, float *c, size_t ldc, int mr,
                                            int nr, const float *dq, const float *bias, const float *res, int relu) {
    IMRET__TILE4X64(__m512, _mm512_setzero_ps(), IMRET__DPBF16)
    {
        __m512 v[4][4];
        v[0][0] = c00; v[0][1] = c01; v[0][2] = c02; v[0][3] = c03; v[1][0] = c10; v[1][1] = c11; v[1][2] = c12; v[1][3] = c13;
        v[2][0] = c20; v[2][1] = c21; v[2][2] = c22; v[2][3] = c23; v[3][0] = c30; v[3][1] = c31; v[3][2] = c32; v[3][3] = c33;
        (void)dq;
        imret__store_4x64(v, c, ldc, mr, nr, bias, res, relu);
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif /* IMRET__X86 */

#if IMRET__NEON
/* 4 x 16 on aarch64 dot product (sdot, Armv8.2+; HWCAP_ASIMDDP): per K group one q register
   holds the 4 rows' 4 weights (16 bytes: the panel's group) and 4 q registers 16 pixels x 4
   bytes; vdotq_laneq_s32 adds row `lane`'s 4 products to each pixel's int32. The uint7 inputs
   are valid int8, so the signed instruction is exact. 16 named accumulators. Tested under
   qemu-user (make test-arm); not timed on hardware. */
#define IMRET__SDOT __attribute__((target("arch=armv8.2-a+dotprod")))
IMRET__SDOT static void imret__ukr8_sdot(int kg, const int8_t *a, const uint8_t *b, float *c, size_t ldc, int mr, int nr,
                                         const float *dq, const float *bias, const float *res, int relu) {
    int32x4_t z = vdupq_n_s32(0), c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
    int32x4_t c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
    int32x4_t acc[4][4];
    float tmp[16];
    int r, i, j;
    for (r = 0; r < kg; r++) {
        int8x16_t w = vld1q_s8(a), b0 = vld1q_s8((const int8_t *)b), b1 = vld1q_s8((const int8_t *)b + 16);
        int8x16_t b2 = vld1q_s8((const int8_t *)b + 32), b3 = vld1q_s8((const int8_t *)b + 48);
        c00 = vdotq_laneq_s32(c00, b0, w, 0); c01 = vdotq_laneq_s32(c01, b1, w, 0);
        c02 = vdotq_laneq_s32(c02, b2, w, 0); c03 = vdotq_laneq_s32(c03, b3, w, 0);
        c10 = vdotq_laneq_s32(c10, b0, w, 1); c11 = vdotq_laneq_s32(c11, b1, w, 1);
        c12 = vdotq_laneq_s32(c12, b2, w, 1); c13 = vdotq_laneq_s32(c13, b3, w, 1);
        c20 = vdotq_laneq_s32(c20, b0, w, 2); c21 = vdotq_laneq_s32(c21, b1, w, 2);
        c22 = vdotq_laneq_s32(c22, b2, w, 2); c23 = vdotq_laneq_s32(c23, b3, w, 2);
        c30 = vdotq_laneq_s32(c30, b0, w, 3); c31 = vdotq_laneq_s32(c31, b1, w, 3);
        c32 = vdotq_laneq_s32(c32, b2, w, 3); c33 = vdotq_laneq_s32(c33, b3, w, 3);
        a += 16;
        b += 64;
    }
    acc[0][0] = c00; acc[0][1] = c01; acc[0][2] = c02; acc[0][3] = c03; acc[1][0] = c10; acc[1][1] = c11; acc[1][2] = c12; acc[1][3] = c13;
    acc[2][0] = c20; acc[2][1] = c21; acc[2][2] = c22; acc[2][3] = c23; acc[3][0] = c30; acc[3][1] = c31; acc[3][2] = c32; acc[3][3] = c33;
    for (i = 0; i < mr; i++) { /* the oracle's epilogue, 4 pixels at a time */
        float32x4_t s = vdupq_n_f32(dq[i]);
        float *crow = c + (size_t)i * ldc;
        for (j = 0; j < 4; j++) {
            float32x4_t v = vmulq_f32(vcvtq_f32_s32(acc[i][j]), s);
            int n = nr - 4 * j, l;
            if (n <= 0) break;
            if (bias) v = vaddq_f32(v, vdupq_n_f32(bias[i]));
            if (res) {
                for (l = 0; l < 4; l++) tmp[l] = l < n ? res[(size_t)i * ldc + 4 * j + l] : 0.0f;
                v = vaddq_f32(v, vld1q_f32(tmp));
            }
            if (relu) v = vmaxq_f32(v, vdupq_n_f32(0.0f));
            if (n >= 4) {
                vst1q_f32(crow + 4 * j, v);
            } else {
                vst1q_f32(tmp, v);
                for (l = 0; l < n; l++) crow[4 * j + l] = tmp[l];
            }
        }
    }
}
#endif /* IMRET__NEON */

typedef struct imret__kernels8 {
    int nr;             /* pixels per micro-tile; 0: the scalar oracle */
    imret__ukr8_fn ukr;
    const char *name;
    imret_simd level;   /* the dispatch level it serves (AVX2 kernels also serve AVX512) */
} imret__kernels8;

/* Every int8 micro-kernel this CPU can run, slowest first (at most 4): the dispatcher below
   picks the fastest one a level allows; tests and bench_int8 run them all. */
static int imret__kernels8_all(imret__kernels8 *ks) {
    int n = 0;
    unsigned f = imret__cpu_features();
    (void)f;
    memset(ks, 0, 4 * sizeof *ks);
#define IMRET__K8(NR, UKR, NAME, LEVEL) do { ks[n].nr = NR; ks[n].ukr = UKR; ks[n].name = NAME; ks[n++].level = LEVEL; } while (0)
#if IMRET__X86
    if (f & IMRET__CPU_AVX2) IMRET__K8(16, imret__ukr8_avx2, "avx2", IMRET_SIMD_AVX2);
#if IMRET__HAVE_AVXVNNI
    if (f & IMRET__CPU_AVXVNNI) IMRET__K8(16, imret__ukr8_avxvnni, "avx-vnni", IMRET_SIMD_AVX2);
#endif
    if ((f & IMRET__CPU_AVX512) && (f & IMRET__CPU_VNNI)) IMRET__K8(64, imret__ukr8_vnni, "avx512-vnni", IMRET_SIMD_AVX512);
#endif
#if IMRET__NEON
    if (f & IMRET__CPU_DOTPROD) IMRET__K8(16, imret__ukr8_sdot, "neon-sdot", IMRET_SIMD_NEON);
#endif
#undef IMRET__K8
    return n;
}

/* Whether BF16 precision runs on vdpbf16ps where the CPU has AVX512_BF16: not on Intel CPUs,
   which run it at half their fp32 FMA rate. Measured on a Xeon with AVX512_BF16 (2026-12-07):
   the 4 x 64 tile ran 1.75 vdpbf16ps per ns against 4.16 vpdpbusd per ns for the int8 one, so
   its 32 products per instruction gave half the fp32 multiply-add rate, and ResNet-50 ran at
   0.58x fp32's speed (95 vs 55 ms); emulated BF16 runs at fp32 speed. On AMD Zen 5 the native
   path was 1.2-1.3x faster than fp32. IMRET_BF16=native or emulated overrides. */
static IMRET__UNUSED int imret__bf16_native(void) { /* unused where there is no x86 code */
    const char *env = getenv("IMRET_BF16");
    if (env && !strcmp(env, "native")) return 1;
    if (env && !strcmp(env, "emulated")) return 0;
    return !(imret__cpu_features() & IMRET__CPU_INTEL);
}

/* The int8 (bf16 = 0) or bf16 (bf16 = 1) micro-kernel for a dispatch level. nr = 0: none;
   int8 then runs the scalar oracle, BF16 precision is emulated (inputs rounded to bf16, fp32
   kernels). */
static imret__kernels8 imret__kernels8_for(imret_simd level, int bf16) {
    imret__kernels8 k, all[4];
    int i;
    memset(&k, 0, sizeof k);
    k.name = bf16 ? "emulated" : "scalar";
    level = imret__simd_resolve(level);
    if (bf16) {
#if IMRET__X86
        if (level == IMRET_SIMD_AVX512 && (imret__cpu_features() & IMRET__CPU_BF16) && imret__bf16_native()) {
            k.nr = 64; k.ukr = imret__ukrbf_avx512; k.name = "avx512-bf16"; k.level = IMRET_SIMD_AVX512;
        }
#endif
        return k;
    }
    for (i = imret__kernels8_all(all) - 1; i >= 0; i--) /* fastest first */
        if (all[i].level == level || (all[i].level == IMRET_SIMD_AVX2 && level == IMRET_SIMD_AVX512)) return all[i];
    return k;
}

/* The int8 (and bf16) convolution on a micro-kernel: tiles of (B block of nc pixels) x (range
   of weight panels), each B block packed once per tile by imret__pack_b over the grouped
   input. group: input channels per uint32 (4 int8, 2 bf16); wq: the weight panels (16 bytes
   per K group); dq: int8 output scales (NULL for bf16). pack holds threads x (kg *
   imret__i8_nc) floats; planes imret__i8_planes_floats, for B gathered as imret__bsrc_mode says
   (as fp32 layers are), or NULL: B from the input as it is. */
static size_t imret__i8_planes_floats(int group, int in_c, int k, int stride, int pad, int h, int w) {
    int oh = imret__out_dim(h, k, stride, pad), ow = imret__out_dim(w, k, stride, pad);
    return imret__bsrc_floats(imret__bsrc_mode(k, stride, ow, (long)oh * ow), (in_c + group - 1) / group, h, w, pad);
}
static void imret__conv_i8_fast(const imret__kernels8 *k8, int group, const void *wq, const float *dq, int in_c,
                                int out_c, int k, int stride, int pad, const uint8_t *xq, int h, int w, float *out,
                                const imret__epilogue *ep, float *pack, float *planes, int threads) {
    int oh = imret__out_dim(h, k, stride, pad), ow = imret__out_dim(w, k, stride, pad);
    int kg = (in_c + group - 1) / group * k * k;
    int nr = k8->nr, nc = imret__i8_nc(kg, nr), panels = (out_c + IMRET__MR8 - 1) / IMRET__MR8, chunks = 1;
    int reducing = out_c <= 2 * in_c * k * k; /* no more outputs than twice the inputs */
    long N = (long)oh * ow, nblocks, tiles, t;
    imret__bsrc src;
    /* uint32 groups moved as floats (see above) */
    imret__bsrc_init(&src, (const float *)(const void *)xq, (in_c + group - 1) / group, h, w, k, stride, pad, ow);
    if (planes) imret__bsrc_prepare(&src, imret__bsrc_mode(k, stride, ow, N), planes, threads);
    /* Every tile packs its own B block, so splitting a block's weight panels into chunks packs
       it once per chunk: never at 1 thread, and for layers with no more outputs than twice their
       inputs (B large against the weights) threads get at least 2 column blocks each where N
       allows, so the panels are split only where it does not. Layers that expand keep their
       large blocks and split panels (their B is cheap to pack again, their weights are not to
       read again). int8 ResNet-50, bench/ab_layers.sh int8: 1 thread 0.979 of the time (layer4
       3x3 0.90, strided 1x1 0.81-0.90); 2 threads reducing 1x1 layers 0.72-0.90, while column
       blocks for every layer had made the expanding ones 1.08-1.45x slower. */
    if (threads > 1 && reducing) {
        long per = (N + 2L * threads - 1) / (2L * threads);
        per = (per + nr - 1) / nr * nr;
        if (per < nc) nc = (int)per;
    }
    nblocks = (N + nc - 1) / nc;
    while (threads > 1 && nblocks * chunks < (reducing ? 2L : 4L) * threads && chunks * 2 <= panels) chunks *= 2;
    tiles = nblocks * chunks;
    (void)threads;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && tiles > 1)
#endif
    for (t = 0; t < tiles; t++) {
#if IMRET__OMP
        float *bp = pack + (size_t)omp_get_thread_num() * kg * nc;
#else
        float *bp = pack;
#endif
        long n0 = (t / chunks) * nc;
        int chunk = (int)(t % chunks), p0 = (int)((long)chunk * panels / chunks), p1 = (int)((long)(chunk + 1) * panels / chunks);
        int ncur = N - n0 < nc ? (int)(N - n0) : nc, p, j;
        imret__pack_b(&src, 0, kg, n0, ncur, nr, bp);
        for (p = p0; p < p1; p++) {
            int m0 = p * IMRET__MR8, mr = out_c - m0 < IMRET__MR8 ? out_c - m0 : IMRET__MR8;
            for (j = 0; j * nr < ncur; j++) {
                long col = n0 + (long)j * nr;
                k8->ukr(kg, (const int8_t *)wq + (size_t)p * kg * 16, (const uint8_t *)(const void *)(bp + (size_t)j * kg * nr),
                        out + (size_t)m0 * N + col, (size_t)N, mr, ncur - j * nr < nr ? ncur - j * nr : nr, dq ? dq + m0 : NULL,
                        ep->bias ? ep->bias + m0 : NULL, ep->residual ? ep->residual + (size_t)m0 * N + col : NULL, ep->relu);
            }
        }
    }
}

/* Row-major fp32 weights [out][in*k*k] -> packed int8 (symmetric per output channel) and
   dq[oc] = weight step * act_scale. Returns 0 when out of memory. */
static int imret__quantise_weights(const float *w, int out_c, int in_c, int k, float act_scale, int8_t **wq_out, float **dq_out) {
    int kg = imret__conv_kg(in_c, k), oc, ic, ky, kx;
    size_t per_out = (size_t)in_c * k * k;
    int8_t *wq = (int8_t *)imret__calloc((size_t)(out_c + IMRET__MR8 - 1) / IMRET__MR8 * kg, 16);
    float *dq = (float *)imret__calloc((size_t)out_c, sizeof(float));
    if (!wq || !dq) { IMRET_FREE(wq); IMRET_FREE(dq); return 0; }
    for (oc = 0; oc < out_c; oc++) {
        const float *row = w + (size_t)oc * per_out;
        float mx = 0.0f, step;
        size_t i;
        for (i = 0; i < per_out; i++) mx = fabsf(row[i]) > mx ? fabsf(row[i]) : mx;
        step = mx > 0.0f ? mx / (float)IMRET__QW : 1.0f;
        for (ic = 0; ic < in_c; ic++)
            for (ky = 0; ky < k; ky++)
                for (kx = 0; kx < k; kx++) {
                    float q = row[((size_t)ic * k + ky) * k + kx] / step;
                    q = q < -(float)IMRET__QW ? -(float)IMRET__QW : q > (float)IMRET__QW ? (float)IMRET__QW : q;
                    wq[imret__wq_index(kg, k, oc, ic, ky, kx)] = (int8_t)lrintf(q);
                }
        dq[oc] = step * act_scale;
    }
    *wq_out = wq;
    *dq_out = dq;
    return 1;
}

/* [bf16 inference] IMRET_PRECISION_BF16 with AVX512_BF16: the int8 machinery above with 2
   bf16 channels per uint32 instead of 4 uint7 ones. The input is paired per pixel
   (imret__pair_bf16: uint32 (g*H*W + p) = bf16(channel 2g) | bf16(channel 2g+1) << 16,
   rounded to nearest even as imret__bf16_round), B is its implicit im2col packed by
   imret__pack_b, the weights are packed at model load (imret__pack_bf16_weights) in panels
   of 4 output channels x 2 input channels per tap, 16 bytes per K group as for int8, and
   imret__ukrbf_avx512 sums in fp32. Every product is exact in fp32, so the result differs
   from the emulated path (bf16 inputs, fp32 kernels) only in summation order. */

/* Number of K groups of a bf16 convolution: 2 input channels x one tap. */
static int imret__conv_kg2(int in_c, int k) { return (in_c + 1) / 2 * k * k; }

/* bf16 weight panel layout (uint16 index): panel oc/4, group r = ((ic/2)*k + ky)*k + kx,
   8 values per group: 2*(oc%4) + ic%2. Channels beyond in_c/out_c are zero. */
static size_t imret__wb_index(int kg, int k, int oc, int ic, int ky, int kx) {
    size_t r = ((size_t)(ic / 2) * k + ky) * k + kx;
    return ((size_t)(oc / IMRET__MR8) * kg + r) * 8 + (size_t)(oc % IMRET__MR8) * 2 + ic % 2;
}

/* The packed fp32 weights of a convolution (imret__wp_at) -> bf16 panels; NULL when out of
   memory. Exact when the weights are bf16 values (imret_model.weights_bf16). */
static uint16_t *imret__pack_bf16_weights(const float *wp, int out_c, int in_c, int k) {
    int kg = imret__conv_kg2(in_c, k), K = in_c * k * k, oc, ic, t;
    uint16_t *wb = (uint16_t *)imret__calloc((size_t)(out_c + IMRET__MR8 - 1) / IMRET__MR8 * kg, 16);
    if (!wb) return NULL;
    for (oc = 0; oc < out_c; oc++)
        for (ic = 0; ic < in_c; ic++)
            for (t = 0; t < k * k; t++)
                wb[imret__wb_index(kg, k, oc, ic, t / k, t % k)] = imret__bf16_bits(imret__wp_at(wp, K, oc, ic * k * k + t));
    return wb;
}

#if IMRET__X86
#if defined(__GNUC__) && !defined(__clang__) /* GCC 12's _mm512_undefined idiom in the shifts (see above) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/* 16 pixels of a channel pair -> 16 uint32, the same integer rounding as imret__bf16_bits. */
IMRET__AVX512 static void imret__pair_bf16_avx512(const float *p0, const float *p1, uint32_t *dst) {
    const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    __m512i u0 = _mm512_castps_si512(_mm512_loadu_ps(p0)), u1 = _mm512_castps_si512(_mm512_loadu_ps(p1));
    u0 = _mm512_srli_epi32(_mm512_add_epi32(u0, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u0, 16), one))), 16);
    u1 = _mm512_add_epi32(u1, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u1, 16), one)));
    u1 = _mm512_slli_epi32(_mm512_srli_epi32(u1, 16), 16);
    _mm512_storeu_si512((void *)dst, _mm512_or_si512(u0, u1));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/* in: C x H x W floats -> out: (C+1)/2 planes of paired bf16 (see above); simd: AVX-512. */
static void imret__pair_bf16(const float *in, int c, size_t hw, uint32_t *out, int simd, int threads) {
    long groups = (c + 1) / 2, g;
    (void)threads; (void)simd;
#if IMRET__OMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (g = 0; g < groups; g++) {
        const float *p0 = in + (size_t)g * 2 * hw, *p1 = p0 + hw;
        uint32_t *dst = out + (size_t)g * hw;
        size_t p = 0;
        if (2 * g + 1 >= c) { /* odd c: the missing channel is zero */
            for (; p < hw; p++) dst[p] = imret__bf16_bits(p0[p]);
            continue;
        }
#if IMRET__X86
        if (simd)
            for (; p + 16 <= hw; p += 16) imret__pair_bf16_avx512(p0 + p, p1 + p, dst + p);
#endif
        for (; p < hw; p++) dst[p] = imret__bf16_bits(p0[p]) | (uint32_t)imret__bf16_bits(p1[p]) << 16;
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
    int mapped;         /* the bytes are a private read-only file mapping (IMRET__IMW_MAPPED) */
} imret__imw;

enum { IMRET__IMW_CHECK_CRC = 1, IMRET__IMW_MAPPED = 2 }; /* imret__imw_parse flags */

/* Bytes of a private read-only file mapping that are not needed any more: drop their pages
   from the process (the page cache keeps them; a later read faults them back in, so rounding
   out to whole pages is safe). Mapping + dropping keeps the peak RSS of a model load near
   the packed model size instead of file + model. No-op where madvise is not declared. */
static void imret__drop_pages(const void *p, size_t n) {
#if IMRET__POSIX && defined(MADV_DONTNEED)
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, e = a + n;
    if (page <= 0 || n == 0) return;
    a -= a % (uintptr_t)page;
    madvise((void *)a, e - a, MADV_DONTNEED);
#else
    (void)p;
    (void)n;
#endif
}

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

/* Parse and validate; on success w->t is allocated (free with IMRET_FREE). flags:
   IMRET__IMW_CHECK_CRC verifies the checksum; IMRET__IMW_MAPPED says buf is a private file
   mapping whose pages may be dropped once read (imret__drop_pages). */
static imret_result imret__imw_parse(const uint8_t *buf, size_t size, int flags, imret__imw *w) {
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
    if (flags & IMRET__IMW_CHECK_CRC) {
        uint32_t crc = 0;
        size_t pos = 24, step = (size_t)4 << 20;
        while (pos < size) { /* mapped: drop each 4 MiB once summed, except the first (header, table) */
            size_t n = size - pos < step ? size - pos : step;
            crc = imret__crc32(crc, buf + pos, n);
            if ((flags & IMRET__IMW_MAPPED) && pos > 24) imret__drop_pages(buf + pos, n);
            pos += n;
        }
        if (crc != w->crc)
            return imret__fail(IMRET_ERROR_CHECKSUM, "weights: CRC-32 is %08x, header says %08x (file corrupted)", crc, w->crc);
    }
    w->mapped = (flags & IMRET__IMW_MAPPED) != 0;
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

/* Copy tensor t into floats (converting f16/bf16). i8 tensors need their scale tensor:
   imret__imw_rows_f32 (with imret__imw_weight_scales) converts those. */
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
        return imret__fail(IMRET_ERROR_UNSUPPORTED, "weights: tensor %s: dtype %u is only allowed for convolution and "
                           "linear weights (with a .scale tensor)", t->name, t->dtype);
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
    /* int8 inference ([impl: kernels (int8)]): convolutions after the first have qidx >= 0
       (their place in calibration order); wq/dq exist when the file has act_max tensors */
    int qidx;
    float act_scale;
    int8_t *wq; /* packed int8 weights (imret__wq_index)         */
    float *dq;  /* out_c: weight step * act_scale                 */
    uint16_t *wb; /* bf16 weight panels (imret__wb_index) when the model's weights are bf16
                     values and the CPU has AVX512_BF16, else NULL */
    char name[40];
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
    int bn_folded;                       /* header bn_folded=1: no BN tensors, every conv has a bias */
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
    int n_quant, n_act_scales;           /* convolutions int8 inference quantises / calibrated */
    imret_precision only;                /* FP32: serves every precision; INT8/BF16: loaded for
                                            that one (imret_model_config.precision): convs
                                            with int8 / bf16 panels have w == NULL           */
    int weights_bf16;                    /* every conv weight is a bf16 value after folding    */
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
    int fp32_block;      /* loading convolutions int8 inference keeps in fp32 */
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

/* Per-output-channel scales of an int8 weight tensor ("<name>.scale": f32/f16/bf16 [out],
   finite, > 0; marked used) into a new array, or *scale = NULL for float tensors. */
static imret_result imret__imw_weight_scales(imret__loader *L, const imret__imw_tensor *t, float **scale) {
    char name[64];
    const imret__imw_tensor *ts;
    uint32_t oc;
    imret_result rc;
    *scale = NULL;
    if (t->dtype != IMRET__DT_I8) return IMRET_OK;
    snprintf(name, sizeof name, "%s.scale", t->name);
    if (!(ts = imret__imw_find(L->w, name)))
        return imret__fail(IMRET_ERROR_MISSING, "weights: int8 tensor %s has no scale tensor %s", t->name, name);
    if (ts->ndim != 1 || ts->shape[0] != t->shape[0])
        return imret__fail(IMRET_ERROR_SHAPE, "weights: %s has %u dims, first %u; expected 1 dim of %u (one scale per output channel)",
                           name, ts->ndim, ts->shape[0], t->shape[0]);
    if (!(*scale = (float *)imret__calloc(t->shape[0], sizeof(float))))
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory loading %s", name);
    if ((rc = imret__imw_to_f32(ts, *scale)) != IMRET_OK) goto fail;
    L->used[ts - L->w->t] = 1;
    for (oc = 0; oc < t->shape[0]; oc++)
        if (!((*scale)[oc] > 0.0f)) {
            rc = imret__fail(IMRET_ERROR_FORMAT, "weights: %s[%u] = %g is not a positive scale", name, oc, (double)(*scale)[oc]);
            goto fail;
        }
    return IMRET_OK;
fail:
    IMRET_FREE(*scale);
    *scale = NULL;
    return rc;
}

/* Rows [row0, row0 + rows) of a weight tensor [out, ...] into floats. Int8 rows are
   dequantised with scale (from imret__imw_weight_scales); int8 values must lie in the
   symmetric range -127..127. */
static imret_result imret__imw_rows_f32(const imret__imw_tensor *t, const float *scale, uint32_t row0, uint32_t rows,
                                        float *dst) {
    size_t per_out = t->count / t->shape[0], esz = imret__dtype_size(t->dtype), i;
    imret__imw_tensor part = *t; /* view of the rows */
    uint32_t r;
    part.data = t->data + (size_t)row0 * per_out * esz;
    part.count = (size_t)rows * per_out;
    part.nbytes = part.count * esz;
    if (t->dtype != IMRET__DT_I8) return imret__imw_to_f32(&part, dst);
    for (r = 0; r < rows; r++)
        for (i = 0; i < per_out; i++) {
            int q = (int8_t)part.data[(size_t)r * per_out + i];
            if (q == -128) return imret__fail(IMRET_ERROR_FORMAT, "weights: %s holds -128 (int8 weights are symmetric, -127..127)", t->name);
            dst[(size_t)r * per_out + i] = (float)q * scale[row0 + r];
        }
    return IMRET_OK;
}

/* A tensor's bytes were consumed: drop them when the file is mapped (imret__drop_pages). */
static void imret__loader_release(imret__loader *L, const imret__imw_tensor *t) {
    if (L->w->mapped) imret__drop_pages(t->data, (size_t)t->nbytes);
}

/* Load conv `cname` (+ optional bias) and fold BatchNorm `bname` (NULL: none) into it. */
static imret_result imret__load_conv(imret__loader *L, const char *cname, const char *bname, int in_c, int out_c,
                                     int k, int stride, int pad, int has_bias, imret__conv *cv) {
    char name[64];
    uint32_t wshape[4], vshape[4] = {0, 0, 0, 0};
    const imret__imw_tensor *tw, *tb = NULL, *bn[4] = {NULL, NULL, NULL, NULL};
    static const char *const bn_parts[4] = {"weight", "bias", "running_mean", "running_var"};
    float *tmp = NULL, *wscale = NULL, *full = NULL;
    double *scales = NULL;
    size_t per_out = (size_t)in_c * k * k, i;
    imret_result rc = IMRET_OK;
    int oc, j;
    wshape[0] = (uint32_t)out_c; wshape[1] = (uint32_t)in_c; wshape[2] = wshape[3] = (uint32_t)k;
    vshape[0] = (uint32_t)out_c;
    cv->in_c = in_c; cv->out_c = out_c; cv->k = k; cv->stride = stride; cv->pad = pad;
    snprintf(cv->name, sizeof cv->name, "%s", cname);
    /* fp32: the first conv (it sees the signed image) and, in ResNets, the first block
       (its input, the stem's output, has the widest range: int8 there alone cost 0.007 of
       descriptor cosine on the worst of 12 test images, 0.985 -> 0.992; 5.6 % of the MACs) */
    cv->qidx = in_c == 3 || L->fp32_block ? -1 : L->m->n_quant++;
    if (cv->qidx >= 0) {
        const imret__imw_tensor *ta;
        snprintf(name, sizeof name, "%s.act_max", cname);
        if ((ta = imret__imw_find(L->w, name)) != NULL) {
            if (ta->ndim != 1 || ta->shape[0] != 1)
                return imret__fail(IMRET_ERROR_SHAPE, "weights: %s must have shape [1]", name);
            if ((rc = imret__imw_to_f32(ta, &cv->act_scale)) != IMRET_OK) return rc;
            if (!(cv->act_scale > 0.0f))
                return imret__fail(IMRET_ERROR_FORMAT, "weights: %s = %g is not a positive clipping value", name, (double)cv->act_scale);
            cv->act_scale /= (float)IMRET__QA; /* the file holds the clipping value; this is the step */
            L->used[ta - L->w->t] = 1;
            L->m->n_act_scales++;
        }
    }
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
    /* The weights go straight into the panel layout every kernel reads (imret__wp_at), one
       panel of IMRET__MR output channels at a time through a small row buffer, so loading
       never holds an unpacked copy of a layer (peak RSS; see imret__drop_pages) -- except for
       int8 inference, whose quantisation needs the whole BN-folded layer once. */
    cv->w = (float *)imret__calloc(imret__wp_floats(out_c, (int)per_out), sizeof(float));
    cv->b = (float *)imret__calloc((size_t)out_c, sizeof(float));
    tmp = (float *)imret__calloc((size_t)out_c * 5 + IMRET__MR * per_out, sizeof(float));
    scales = (double *)imret__calloc((size_t)out_c, sizeof(double));
    if (cv->act_scale > 0.0f) full = (float *)imret__calloc(per_out * out_c, sizeof(float));
    if (!cv->w || !cv->b || !tmp || !scales || (cv->act_scale > 0.0f && !full)) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory loading %s", cname);
        goto done;
    }
    if ((rc = imret__imw_weight_scales(L, tw, &wscale)) != IMRET_OK) goto done;
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
        }
        cv->b[oc] = (float)bias;
        scales[oc] = scale;
    }
    for (oc = 0; oc < out_c; oc += IMRET__MR) {
        int rows = out_c - oc < IMRET__MR ? out_c - oc : IMRET__MR, r;
        float *rowbuf = tmp + 5 * (size_t)out_c;
        if ((rc = imret__imw_rows_f32(tw, wscale, (uint32_t)oc, (uint32_t)rows, rowbuf)) != IMRET_OK) goto done;
        for (r = 0; r < rows && bname; r++)
            for (i = 0; i < per_out; i++) rowbuf[r * per_out + i] = (float)(rowbuf[r * per_out + i] * scales[oc + r]);
        for (i = 0; i < (size_t)rows * per_out && L->m->weights_bf16; i++) { /* bf16 precision needs bf16 values */
            uint32_t bits;
            memcpy(&bits, &rowbuf[i], 4);
            if (bits & 0xffffu) L->m->weights_bf16 = 0;
        }
        if (full) memcpy(full + (size_t)oc * per_out, rowbuf, sizeof(float) * (size_t)rows * per_out);
        imret__pack_rows(cv->w, (int)per_out, oc, rows, rowbuf);
    }
    if (full && !imret__quantise_weights(full, out_c, in_c, k, cv->act_scale, &cv->wq, &cv->dq)) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory quantising %s", cname);
        goto done;
    }
    if (cv->wq && L->m->only == IMRET_PRECISION_INT8) { /* int8 only: the panels are all it needs */
        IMRET_FREE(cv->w);
        cv->w = NULL;
    }
    imret__loader_release(L, tw);
done:
    IMRET_FREE(tmp);
    IMRET_FREE(scales);
    IMRET_FREE(wscale);
    IMRET_FREE(full);
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
    {
        float *ws8 = NULL;
        if ((rc = imret__imw_weight_scales(L, tw, &ws8)) != IMRET_OK) return rc;
        rc = imret__imw_rows_f32(tw, ws8, 0, tw->shape[0], fc->w);
        IMRET_FREE(ws8);
        if (rc != IMRET_OK) return rc;
    }
    imret__loader_release(L, tw);
    return imret__imw_to_f32(tb, fc->b);
}

static void imret__conv_free(imret__conv *c) {
    IMRET_FREE(c->w); IMRET_FREE(c->b); IMRET_FREE(c->wq); IMRET_FREE(c->dq); IMRET_FREE(c->wb);
    c->w = c->b = c->dq = NULL;
    c->wq = NULL;
    c->wb = NULL;
}

/* The bf16 weight panels of a loaded convolution (none for absent ones: w == NULL); drop:
   free the fp32 weights then (a model loaded for bf16 only). */
static imret_result imret__conv_bf16(imret__conv *cv, int drop) {
    if (!cv->w) return IMRET_OK;
    cv->wb = imret__pack_bf16_weights(cv->w, cv->out_c, cv->in_c, cv->k);
    if (!cv->wb) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory packing %s as bf16", cv->name);
    if (drop) {
        IMRET_FREE(cv->w);
        cv->w = NULL;
    }
    return IMRET_OK;
}

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
            rc = imret__load_conv(L, cn, bn && !m->bn_folded ? bnn : NULL, in_c, cfg[i], 3, 1, 1, 1, &m->convs[m->n_convs]);
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
    int bias = m->keras || m->bn_folded;
    imret_result rc;
    for (s = 0; s < 4; s++) total += layers[s];
    m->blocks = (imret__block *)imret__calloc((size_t)total, sizeof(imret__block));
    if (!m->blocks) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "weights: out of memory");
    if ((rc = imret__load_conv(L, "conv1", m->bn_folded ? NULL : "bn1", 3, 64, 7, 2, 3, bias, &m->stem)) != IMRET_OK) return rc;
    for (s = 0; s < 4; s++) {
        int width = 64 << s;
        m->stage_blocks[s] = layers[s];
        for (i = 0; i < layers[s]; i++, b++) {
            imret__block *blk = &m->blocks[b];
            int stride = (i == 0 && s > 0) ? 2 : 1;
            char p[32], c[64], n[64];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, i);
            m->n_blocks = b + 1;
            L->fp32_block = s == 0 && i == 0;
            if (m->bottleneck) {
                /* v1.5 (torchvision): stride on the 3x3; v1 (Keras): on the first 1x1 */
                int s1 = m->keras ? stride : 1, s2 = m->keras ? 1 : stride;
                snprintf(c, sizeof c, "%s.conv1", p); snprintf(n, sizeof n, "%s.bn1", p);
                if ((rc = imret__load_conv(L, c, m->bn_folded ? NULL : n, in_c, width, 1, s1, 0, bias, &blk->c1))) return rc;
                snprintf(c, sizeof c, "%s.conv2", p); snprintf(n, sizeof n, "%s.bn2", p);
                if ((rc = imret__load_conv(L, c, m->bn_folded ? NULL : n, width, width, 3, s2, 1, bias, &blk->c2))) return rc;
                snprintf(c, sizeof c, "%s.conv3", p); snprintf(n, sizeof n, "%s.bn3", p);
                if ((rc = imret__load_conv(L, c, m->bn_folded ? NULL : n, width, width * exp, 1, 1, 0, bias, &blk->c3))) return rc;
            } else {
                snprintf(c, sizeof c, "%s.conv1", p); snprintf(n, sizeof n, "%s.bn1", p);
                if ((rc = imret__load_conv(L, c, m->bn_folded ? NULL : n, in_c, width, 3, stride, 1, bias, &blk->c1))) return rc;
                snprintf(c, sizeof c, "%s.conv2", p); snprintf(n, sizeof n, "%s.bn2", p);
                if ((rc = imret__load_conv(L, c, m->bn_folded ? NULL : n, width, width, 3, 1, 1, bias, &blk->c2))) return rc;
            }
            if (stride != 1 || in_c != width * exp) {
                blk->has_down = 1;
                snprintf(c, sizeof c, "%s.downsample.0", p); snprintf(n, sizeof n, "%s.downsample.1", p);
                if ((rc = imret__load_conv(L, c, m->bn_folded ? NULL : n, in_c, width * exp, 1, stride, 0, bias, &blk->down))) return rc;
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

/* Whether the loaded weights of m can run precision p (the file carries what it needs);
   who prefixes the message. */
static imret_result imret__precision_supported(const imret_model *m, imret_precision p, const char *who) {
    if (p == IMRET_PRECISION_INT8 && !m->n_act_scales)
        return imret__fail(IMRET_ERROR_UNSUPPORTED, "%s: int8 precision needs a model file with activation scales "
                           "(build/calibrate + tools/requantise.py --act-max)", who);
    if (p == IMRET_PRECISION_BF16 && !m->weights_bf16)
        return imret__fail(IMRET_ERROR_UNSUPPORTED, "%s: bf16 precision needs weights that are bf16 values after loading "
                           "(tools/requantise.py --dtype bf16, BatchNorm folded)", who);
    return IMRET_OK;
}

static imret_result imret__model_from_imw(const imret__imw *w, imret_precision only, imret_model **out) {
    char val[256];
    imret_model *m;
    imret__loader L;
    imret_result rc = IMRET_OK;
    int i, nf;
    *out = NULL;
    m = (imret_model *)imret__calloc(1, sizeof *m);
    L.w = w; L.m = m; L.fp32_block = 0;
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
    if (imret__imw_get(w, "bn_folded", val, sizeof val)) {
        if (strcmp(val, "0") && strcmp(val, "1")) { rc = imret__fail(IMRET_ERROR_FORMAT, "weights: header bn_folded must be 0 or 1"); goto done; }
        m->bn_folded = val[0] == '1';
    }
    if (imret__imw_get(w, "source", val, sizeof val)) snprintf(m->source, sizeof m->source, "%s", val);
    m->fingerprint = ((uint64_t)w->crc << 32) ^ w->file_size;
    m->weights_bf16 = 1; /* until a weight says otherwise (imret__load_conv) */
    m->only = only;
    rc = m->is_vgg ? imret__build_vgg(&L) : imret__build_resnet(&L);
    if (rc) goto done;
    for (i = 0, nf = 0; i < (int)w->n; i++)
        if (!L.used[i]) {
            rc = imret__fail(IMRET_ERROR_FORMAT, "weights: tensor %s is not part of %s%s (wrong arch= in header?)",
                             w->t[i].name, imret_arch_name(m->arch), m->num_classes ? "" : " without classifier");
            goto done;
        }
    if (m->n_act_scales && m->n_act_scales != m->n_quant) {
        rc = imret__fail(IMRET_ERROR_MISSING, "weights: %d of the %d quantisable convolutions have an act_max tensor "
                         "(calibration must cover all or none)", m->n_act_scales, m->n_quant);
        goto done;
    }
    (void)nf;
    if ((rc = imret__precision_supported(m, only, "weights")) != IMRET_OK) goto done;
    if (m->weights_bf16 && m->only != IMRET_PRECISION_INT8 && imret__kernels8_for(IMRET_SIMD_AUTO, 1).nr) {
        int b, drop = m->only == IMRET_PRECISION_BF16; /* native bf16 ([bf16 inference]) */
        for (i = 0; i < m->n_convs && rc == IMRET_OK; i++) rc = imret__conv_bf16(&m->convs[i], drop);
        if (!m->is_vgg && rc == IMRET_OK) rc = imret__conv_bf16(&m->stem, drop);
        for (b = 0; b < m->n_blocks && rc == IMRET_OK; b++) {
            imret__block *B = &m->blocks[b];
            if ((rc = imret__conv_bf16(&B->c1, drop)) == IMRET_OK && (rc = imret__conv_bf16(&B->c2, drop)) == IMRET_OK &&
                (rc = imret__conv_bf16(&B->c3, drop)) == IMRET_OK)
                rc = imret__conv_bf16(&B->down, drop);
        }
    }
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
    c.use_mmap = 1;
    return c;
}

/* Load from bytes; mapped = the bytes are a private read-only mapping of the file, whose
   pages are dropped as they are consumed (imret__drop_pages). */
static imret_result imret__model_load(const void *data, size_t size, const imret_model_config *cfg, int mapped,
                                      imret_model **out) {
    imret__imw w;
    imret_result rc;
    int flags = (cfg->skip_checksum ? 0 : IMRET__IMW_CHECK_CRC) | (mapped ? IMRET__IMW_MAPPED : 0);
    if (size > cfg->max_file_bytes)
        return imret__fail(IMRET_ERROR_LIMIT, "weights: %lu bytes exceeds max_file_bytes (%lu)", (unsigned long)size,
                           (unsigned long)cfg->max_file_bytes);
    if ((unsigned)cfg->precision > IMRET_PRECISION_BF16)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_load: precision = %d", (int)cfg->precision);
    if ((rc = imret__imw_parse((const uint8_t *)data, size, flags, &w)) != IMRET_OK) return rc;
    rc = imret__model_from_imw(&w, cfg->precision, out);
    IMRET_FREE(w.t);
    return rc;
}

IMRET_DEF imret_result imret_model_load_memory(const void *data, size_t size, const imret_model_config *cfg,
                                               imret_model **out) {
    imret_model_config def = imret_model_config_init();
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_load_memory: out is NULL");
    *out = NULL;
    if (!data) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_model_load_memory: data is NULL");
    return imret__model_load(data, size, cfg ? cfg : &def, 0, out);
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
/* Layers whose transformed Winograd weights a context keeps (ResNet-152 has 50 3x3 convs; the
   ones past this many transform per call). */
#define IMRET__WG_CACHE 64
struct imret_context {
    const imret_model *model;
    int threads;
    long wg_min_tiles;        /* Winograd for 3x3 stride-1 layers with >= this many tiles; 0: never */
    size_t max_ws;
    imret__kernels kern;
    float *ws;                /* one arena: 3 activation buffers, col buffer, head buffers */
    size_t ws_floats;
    imret_precision precision;
    imret__kernels8 k8;       /* int8 micro-kernel (precision INT8)                         */
    imret__kernels8 kb;       /* bf16 micro-kernel (precision BF16); nr = 0: emulated       */
    imret__idx_dot_fn dot;    /* linear layers: fp32 SIMD dot kernel; NULL: scalar oracle    */
    float *calib;             /* imret_calibrate_forward: per-conv input maxima, else NULL  */
    /* Winograd weights transformed once per layer and kept (imret__wg_weights_of): U of
       wg_key[i] is wg_u[i]; the model is immutable while contexts exist */
    const imret__conv *wg_key[IMRET__WG_CACHE];
    float *wg_u[IMRET__WG_CACHE];
    size_t wg_bytes;          /* held by wg_u                                              */
    int wg_n;
};

/* Winograd needs enough 4x4 output tiles (bench/bench_winograd.c). With the weights
   transformed on every call (AVX2 8x24 kernel, 1 thread, machine very busy): 28x28 outputs
   (49 tiles) and larger ran in 0.17-0.71x the direct time, 14x14 and 16x16 (16 tiles) in
   1.10-1.43x, 7x7 in 2.9x. With the transformed weights kept per context (AVX-512 8x32, Zen 5,
   2026-12-06, "kept U" column): 49 tiles and more 0.42-0.58x; 16 tiles 0.82-1.04x (0.89 for
   VGG16 conv5, 1.04 for ResNet-50 layer3 at 224, where keeping its 57 MB of transformed
   weights would break the 1.3x peak-RSS target for no gain); 7x7 2.2x. */
#define IMRET__WG_MIN_TILES 36
/* ... and enough input channels: VGG's first layer (3 -> 64 at 224x224) ran 1.5-2.1x slower. */
#define IMRET__WG_MIN_IN 16
/* Below IMRET__WG_MIN_TILES, layers whose tiles fit in one block (imret__wg_nt) and number at
   least this many run fused (imret__conv_winograd with U NULL): each weight panel transformed
   just before its GEMMs, nothing kept, so no memory beyond the workspace. */
#define IMRET__WG_FUSED_MIN_TILES 16

/* Cap of the im2col buffer: larger convolutions are run in pixel chunks. */
#define IMRET__COL_MAX_FLOATS ((size_t)4 << 20)

typedef struct imret__run {
    imret_context *ctx;
    int dry;
    size_t max_act, max_col; /* dry run: largest activation / col chunk, in floats */
    size_t max_wg;           /* dry run: largest Winograd workspace (U + per-thread blocks)   */
    size_t max_pack;         /* dry run: largest packed-B workspace (imret__gemm_plan)        */
    size_t max_pack8;        /* dry run: largest int8 / bf16 B block, in floats (uint32) */
    float *col, *pack, *wg;
    float *pack8;            /* int8 and native bf16: threads x max_pack8 floats          */
    uint8_t *xq;             /* int8: the quantised input of the current conv; native
                                bf16: its paired channels (imret__pair_bf16)               */
    float *aw;               /* IMRET_USE_CBLAS: the current conv's weights, row-major       */
    size_t max_aw;           /* dry run: their largest size, in floats                     */
    float *xbf;              /* emulated bf16: the input of the current conv rounded       */
    const imret_forward_options *opts;
} imret__run;

/* out = relu?(conv(in) + bias (+ residual)); shapes in/out as C x H x W. The portable path
   (kern.nr == 0) is im2col in pixel chunks + imret__gemm_scalar; the SIMD path packs B from
   the input directly (imret__conv_gemm_fast). */
/* The transformed Winograd weights (wg_u floats) of cv for this context: transformed on the
   layer's first use and kept, while the cache has a slot and the context's arena plus the
   kept weights stay within max_workspace_bytes (ResNet-50 at 224: 11 MB for its 7 Winograd
   layers); otherwise transformed into the workspace on every call. The transform of a
   512x512 layer writes 38 MB, as much as its GEMMs at 28x28 read. */
static const float *imret__wg_weights_of(imret__run *R, const imret__conv *cv, size_t wg_u) {
    imret_context *ctx = R->ctx;
    float *U = R->wg;
    int i;
    for (i = 0; i < ctx->wg_n; i++)
        if (ctx->wg_key[i] == cv) return ctx->wg_u[i];
    if (ctx->wg_n < IMRET__WG_CACHE && ctx->ws_floats * sizeof(float) + ctx->wg_bytes + wg_u * sizeof(float) <= ctx->max_ws) {
        float *kept = (float *)imret__malloc(wg_u * sizeof(float));
        if (kept) { /* out of memory: the workspace copy still works */
            ctx->wg_key[ctx->wg_n] = cv;
            ctx->wg_u[ctx->wg_n++] = kept;
            ctx->wg_bytes += wg_u * sizeof(float);
            U = kept;
        }
    }
    imret__wg_transform_weights(&ctx->kern, cv->out_c, cv->in_c, cv->w, U, ctx->threads);
    return U;
}

static void imret__conv_run_body(imret__run *R, const imret__conv *cv, const float *in, int h, int w, float *out,
                                 const float *residual, int relu, int *oh_out, int *ow_out) {
    int oh = imret__out_dim(h, cv->k, cv->stride, cv->pad), ow = imret__out_dim(w, cv->k, cv->stride, cv->pad);
    long npix = (long)oh * ow, K = (long)cv->in_c * cv->k * cv->k, chunk, p0;
    int direct = cv->k == 1 && cv->stride == 1 && cv->pad == 0, fast = R->ctx->kern.nr > 0;
    long tiles = (long)((oh + 3) / 4) * ((ow + 3) / 4);
    /* native bf16 on every layer: it ran ResNet-50 in 35 ms where bf16 on the direct layers
       and fp32 Winograd on the others took 48 (fp32: 70-74; bench_quant, 1 thread, Zen 5) */
    int bf16 = R->ctx->precision == IMRET_PRECISION_BF16 && R->ctx->kb.nr && cv->wb;
    int wg_ok = fast && !bf16 && cv->k == 3 && cv->stride == 1 && R->ctx->wg_min_tiles;
    int wino = wg_ok && tiles >= R->ctx->wg_min_tiles && (cv->in_c >= IMRET__WG_MIN_IN || R->ctx->wg_min_tiles == 1);
    int fused = !wino && wg_ok && cv->in_c >= IMRET__WG_MIN_IN && tiles >= IMRET__WG_FUSED_MIN_TILES &&
                tiles <= imret__wg_nt(R->ctx->kern.nr);
    size_t wg_u = wino ? imret__wg_u_floats(cv->out_c, cv->in_c) : 0;
    /* IMRET_USE_CBLAS: every fp32 layer but the Winograd ones goes to cblas_sgemm (imret__gemm_cblas) */
    int cb = IMRET__CBLAS && !wino && !fused && !bf16 && !(R->ctx->precision == IMRET_PRECISION_INT8 && cv->wq);
    int bmode = fast && !cb && !wino && !fused ? imret__bsrc_mode_f32(&R->ctx->kern, cv->out_c, cv->k, cv->stride, ow, npix) : 0;
    imret__epilogue ep;
    *oh_out = oh;
    *ow_out = ow;
    chunk = direct ? npix : (long)(IMRET__COL_MAX_FLOATS / (size_t)K);
    if (chunk > npix) chunk = npix;
    if (chunk > 256) chunk = chunk / 256 * 256;
    if (chunk < 1) chunk = 1;
    if (R->dry) {
        size_t act = (size_t)cv->out_c * (size_t)npix, col = direct || (fast && !cb) ? 0 : (size_t)K * (size_t)chunk;
        if (bmode) col = imret__bsrc_floats(bmode, cv->in_c, h, w, cv->pad);
        if (act > R->max_act) R->max_act = act;
        if (col > R->max_col) R->max_col = col;
        if (cb && (size_t)cv->out_c * (size_t)K > R->max_aw) R->max_aw = (size_t)cv->out_c * (size_t)K;
        if (fast && !cb) {
            size_t pk = imret__gemm_plan(cv->out_c, npix, (int)K, R->ctx->threads, NULL, NULL);
            if (pk > R->max_pack) R->max_pack = pk;
        }
        if (wino || fused) {
            size_t wg = wg_u + imret__wg_plan(cv->out_c, cv->in_c, oh, ow, R->ctx->kern.nr, R->ctx->threads, fused, NULL, NULL);
            if (wg > R->max_wg) R->max_wg = wg;
        }
        if ((R->ctx->precision == IMRET_PRECISION_INT8 && cv->wq && R->ctx->k8.nr) || bf16) {
            int kg = bf16 ? imret__conv_kg2(cv->in_c, cv->k) : imret__conv_kg(cv->in_c, cv->k);
            size_t b8 = (size_t)kg * imret__i8_nc(kg, bf16 ? R->ctx->kb.nr : R->ctx->k8.nr);
            size_t pl = imret__i8_planes_floats(bf16 ? 2 : 4, cv->in_c, cv->k, cv->stride, cv->pad, h, w);
            if (b8 > R->max_pack8) R->max_pack8 = b8;
            if (pl > R->max_col) R->max_col = pl;
        }
        return;
    }
    ep.bias = cv->b;
    ep.relu = relu;
    ep.residual = residual;
    if (R->ctx->calib && cv->qidx >= 0) { /* calibration: largest input of each quantised conv */
        size_t i, n = (size_t)cv->in_c * h * w;
        float mx = R->ctx->calib[cv->qidx];
        for (i = 0; i < n; i++) mx = in[i] > mx ? in[i] : mx;
        R->ctx->calib[cv->qidx] = mx;
    }
    if (bf16) {
        imret__pair_bf16(in, cv->in_c, (size_t)h * w, (uint32_t *)(void *)R->xq, 1, R->ctx->threads);
        imret__conv_i8_fast(&R->ctx->kb, 2, cv->wb, NULL, cv->in_c, cv->out_c, cv->k, cv->stride, cv->pad, R->xq, h, w, out,
                            &ep, R->pack8, R->col, R->ctx->threads);
        return;
    }
    if (R->ctx->precision == IMRET_PRECISION_BF16) {
        imret__round_bf16(in, R->xbf, (size_t)cv->in_c * h * w, R->ctx->threads);
        in = R->xbf;
    }
    if (R->ctx->precision == IMRET_PRECISION_INT8 && cv->wq) {
        imret__quantise_input(in, cv->in_c, (size_t)h * w, cv->act_scale, R->xq, R->ctx->kern.level >= IMRET_SIMD_AVX2 &&
                              R->ctx->kern.level != IMRET_SIMD_NEON, R->ctx->threads);
        if (R->ctx->k8.nr)
            imret__conv_i8_fast(&R->ctx->k8, 4, cv->wq, cv->dq, cv->in_c, cv->out_c, cv->k, cv->stride, cv->pad, R->xq, h, w,
                                out, &ep, R->pack8, R->col, R->ctx->threads);
        else
            imret__conv_i8_scalar(cv->wq, cv->dq, cv->in_c, cv->out_c, cv->k, cv->stride, cv->pad, R->xq, h, w, out, &ep,
                                  R->ctx->threads);
        return;
    }
    if (wino || fused) {
        imret__conv_winograd(&R->ctx->kern, cv->out_c, cv->in_c, h, w, cv->pad, in, out, &ep,
                             wino ? imret__wg_weights_of(R, cv, wg_u) : NULL, cv->w, R->wg + wg_u, R->ctx->threads);
        return;
    }
    if (fast && !cb) {
        imret__bsrc src;
        imret__bsrc_init(&src, in, cv->in_c, h, w, cv->k, cv->stride, cv->pad, ow);
        imret__bsrc_prepare(&src, bmode, R->col, R->ctx->threads);
        imret__conv_gemm_fast(&R->ctx->kern, cv->out_c, npix, (int)K, cv->w, &src, out, &ep, R->pack, R->ctx->threads);
        return;
    }
    for (p0 = 0; p0 < npix; p0 += chunk) { /* the portable path and cblas: 1x1 layers straight from the input, others im2col */
        long pn = npix - p0 < chunk ? npix - p0 : chunk;
        const float *B = direct ? in + p0 : R->col;
        size_t ldb = direct ? (size_t)npix : (size_t)pn;
        ep.residual = residual ? residual + p0 : NULL;
        if (!direct) imret__im2col(in, cv->in_c, h, w, cv->k, cv->stride, cv->pad, ow, p0, pn, R->col, R->ctx->threads);
#ifdef IMRET_USE_CBLAS
        if (cb) {
            imret__gemm_cblas(cv->out_c, (int)pn, (int)K, cv->w, R->aw, p0 == 0, B, ldb, out + p0, (size_t)npix, &ep);
            continue;
        }
#endif
        imret__gemm_scalar(cv->out_c, (int)pn, (int)K, cv->w, B, ldb, out + p0, (size_t)npix, &ep, R->ctx->threads);
    }
}

/* Whether cv may write its output over its residual (out == residual, imret__trunk): where
   each output value is written once, by the call that has just read its residual value: the
   fp32 SIMD GEMM of a 1x1 stride-1 layer summing all of K in one call per tile (K <=
   IMRET__KC, or B read in place, imret__inplace_ok; its epilogue loads a tile's residual
   rows before it stores them; packed, K > IMRET__KC, C holds partial sums before the last
   KC slice reads the residual). Not cblas (its epilogue is a pass after the GEMM), int8 or bf16.
   Then the layer reads and writes one buffer instead of reading a second: in the AVX-512 GEMM,
   hot, ResNet-50's 128 -> 512 conv3 at 28x28 took 0.78 instead of 0.91 ms, 64 -> 256 at 56x56
   0.81 instead of 0.90 (Intel Xeon). */
static int imret__res_alias_ok(const imret__run *R, const imret__conv *cv, int h, int w) {
    const imret_context *ctx = R->ctx;
    if (IMRET__CBLAS || ctx->precision != IMRET_PRECISION_FP32 || cv->k != 1 || cv->stride != 1 || cv->pad != 0) return 0;
    return imret__gemm_alias_ok(&ctx->kern, cv->out_c, (long)h * w, cv->in_c);
}

#ifndef IMRET_CONV_HOOK
#define IMRET_CONV_HOOK(end, in_c, out_c, k, stride, h, w) ((void)0)
#endif
static void imret__conv_run(imret__run *R, const imret__conv *cv, const float *in, int h, int w, float *out,
                            const float *residual, int relu, int *oh_out, int *ow_out) {
    if (!R->dry) IMRET_CONV_HOOK(0, cv->in_c, cv->out_c, cv->k, cv->stride, h, w);
    imret__conv_run_body(R, cv, in, h, w, out, residual, relu, oh_out, ow_out);
    if (!R->dry) IMRET_CONV_HOOK(1, cv->in_c, cv->out_c, cv->k, cv->stride, h, w);
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
    imret__maxpool_run(&R->ctx->kern, in, c, h, w, k, s, p, out, *oh, *ow, R->ctx->threads);
}

/* Runs the trunk; buf[0..2] are activation buffers. Returns the feature map location. */
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
        float *t1, *t2;
        int b = 0, s;
        imret__conv_run(R, &m->stem, cur, h, w, buf[0], NULL, 1, &oh, &ow);
        imret__pool_run(R, buf[0], 64, oh, ow, 3, 2, 1, buf[1], &h, &w);
        c = 64;
        imret__stage(R, "stem", buf[1], c, h, w);
        cur = buf[1];
        /* Three activation buffers: cur (the block input, from here on always in the arena), t1,
           t2. A downsampling block runs its shortcut conv once a buffer is free (after c2 in a
           bottleneck, into t1; in a basic block into t2) and writes its output over its input,
           which nothing reads any more; other blocks write their output to the free buffer.
           Where the last conv's kernels allow it (imret__res_alias_ok), it writes over its
           residual instead (the block input, or the shortcut's output). The convolutions are
           independent, so the order changes no value. */
        t1 = buf[0]; t2 = buf[2];
        for (s = 0; s < 4; s++) {
            char name[24];
            for (i = 0; i < m->stage_blocks[s]; i++, b++) {
                const imret__block *blk = &m->blocks[b];
                /* the block's last conv (c3, or c2 of a basic block) reads last_in; spare is free */
                const imret__conv *last = m->bottleneck ? &blk->c3 : &blk->c2;
                float *in = (float *)cur, *last_in = t1, *spare = t2, *outp, *res;
                int hl, wl, hd, wd;
                imret__conv_run(R, &blk->c1, in, h, w, t1, NULL, 1, &hl, &wl);
                if (m->bottleneck) {
                    imret__conv_run(R, &blk->c2, t1, hl, wl, t2, NULL, 1, &hl, &wl);
                    last_in = t2;
                    spare = t1;
                }
                if (blk->has_down) imret__conv_run(R, &blk->down, in, h, w, spare, NULL, 0, &hd, &wd);
                res = blk->has_down ? spare : in;
                /* over the residual where the layer's kernels allow it (imret__res_alias_ok), else
                   into the buffer that is free */
                outp = imret__res_alias_ok(R, last, hl, wl) ? res : blk->has_down ? in : spare;
                imret__conv_run(R, last, last_in, hl, wl, outp, res, 1, &oh, &ow);
                c = last->out_c;
                /* rotate: the block output becomes cur, the old cur a free buffer */
                if (outp != in) {
                    cur = outp;
                    if (outp == t1) t1 = in; else t2 = in;
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
    if ((unsigned)cfg->precision > IMRET_PRECISION_BF16)
        return IMRET_FREE(ctx), imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_context_create: precision = %d", (int)cfg->precision);
    if (model->only != IMRET_PRECISION_FP32 && cfg->precision != model->only)
        return IMRET_FREE(ctx), imret__fail(IMRET_ERROR_UNSUPPORTED, "imret_context_create: the model was loaded for %s "
                                            "only (imret_model_config.precision); load it with FP32 for other precisions",
                                            model->only == IMRET_PRECISION_INT8 ? "int8" : "bf16");
    if (imret__precision_supported(model, cfg->precision, "imret_context_create") != IMRET_OK)
        return IMRET_FREE(ctx), IMRET_ERROR_UNSUPPORTED;
    ctx->precision = cfg->precision;
    ctx->k8 = imret__kernels8_for(cfg->simd, 0);
    ctx->kb = imret__kernels8_for(cfg->simd, 1);
    if (model->only == IMRET_PRECISION_BF16 && (model->is_vgg ? model->convs[0].wb : model->stem.wb) && !ctx->kb.nr)
        return IMRET_FREE(ctx), imret__fail(IMRET_ERROR_UNSUPPORTED, "imret_context_create: the model was loaded for native "
                                            "bf16 only (no fp32 weights) and this context's simd level has no AVX512_BF16 "
                                            "kernel; use simd AUTO/AVX512 or load the model with precision FP32");
    ctx->dot = imret__dot_f32_for(cfg->simd);
    {
        const char *conv = getenv("IMRET_CONV");
        ctx->wg_min_tiles = IMRET__WG_MIN_TILES;
        if (cfg->exact || !ctx->kern.nr || (conv && !strcmp(conv, "direct"))) ctx->wg_min_tiles = 0;
        else if (conv && !strcmp(conv, "winograd")) ctx->wg_min_tiles = 1;
    }
    *out = ctx;
    return IMRET_OK;
}

IMRET_DEF void imret_context_destroy(imret_context *ctx) {
    int i;
    if (!ctx) return;
    for (i = 0; i < ctx->wg_n; i++) IMRET_FREE(ctx->wg_u[i]);
    IMRET_FREE(ctx->ws);
    IMRET_FREE(ctx);
}

#define IMRET__MAX_INPUT_SIDE 8192
#define IMRET__HEAD_FLOATS (512 * 7 * 7 + 4096 + 4096 + 2048)

/* Validate the input, plan, and (re)grow the arena; then run. */
static imret_result imret__forward(imret_context *ctx, const imret_tensor *x, const imret_forward_options *opts,
                                   float **feat, int *fc, int *fh, int *fw, float **head, float **scratch) {
    imret__run R;
    float *buf[3];
    size_t need, act3, pack, q8 = 0;
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
    buf[0] = buf[1] = buf[2] = NULL;
    imret__trunk(&R, x, buf, fc, fh, fw);
    pack = ctx->kern.nr ? R.max_pack : 0;
    if (ctx->precision == IMRET_PRECISION_INT8) /* B blocks + the quantised input (1 byte per value) */
        q8 = (size_t)ctx->threads * R.max_pack8 + R.max_act / 4 + 16;
    if (ctx->precision == IMRET_PRECISION_BF16) /* B blocks (native) + the rounded or paired input */
        q8 = (size_t)ctx->threads * R.max_pack8 + (R.max_act > (size_t)3 * x->h * x->w ? R.max_act : (size_t)3 * x->h * x->w);
    if (!imret__mul(R.max_act, 3, &act3) || !imret__add(act3, R.max_col, &need) || !imret__add(need, pack, &need) ||
        !imret__add(need, R.max_wg, &need) || !imret__add(need, IMRET__HEAD_FLOATS, &need) || !imret__add(need, q8, &need) ||
        !imret__add(need, R.max_aw, &need) ||
        need > ctx->max_ws / sizeof(float))
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
    R.col = buf[2] + R.max_act;
    R.pack = R.col + R.max_col;
    R.wg = R.pack + pack;
    *head = R.wg + R.max_wg;
    R.pack8 = *head + IMRET__HEAD_FLOATS;
    R.xq = (uint8_t *)(R.pack8 + (size_t)ctx->threads * R.max_pack8);
    R.xbf = R.pack8 + (size_t)ctx->threads * R.max_pack8;
    R.aw = R.pack8 + q8;
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
        imret__maxpool_run(&ctx->kern, feat, c, h, w, 2, 2, 0, scratch, ph, pw, ctx->threads);
        imret__adaptive_avgpool(scratch, c, ph, pw, 7, 7, a);
        imret__linear(m->fc[0].w, m->fc[0].b, a, m->fc[0].in_n, 4096, 1, b1, ctx->threads, ctx->dot);
        imret__linear(m->fc[1].w, m->fc[1].b, b1, 4096, 4096, 1, b2, ctx->threads, ctx->dot);
        imret__linear(m->fc[2].w, m->fc[2].b, b2, 4096, m->num_classes, 0, logits, ctx->threads, ctx->dot);
    } else {
        float *pooled = head;
        for (i = 0; i < c; i++) {
            double s = 0.0;
            long p;
            for (p = 0; p < (long)h * w; p++) s += feat[(size_t)i * h * w + p];
            pooled[i] = (float)(s / ((double)h * w));
        }
        imret__stage(&R, "pooled", pooled, c, 1, 1);
        imret__linear(m->fc[0].w, m->fc[0].b, pooled, c, m->num_classes, 0, logits, ctx->threads, ctx->dot);
    }
    {
        imret_tensor t;
        t.c = m->num_classes; t.h = 1; t.w = 1; t.data = logits;
        if (opts && opts->on_stage) opts->on_stage(opts->user, "logits", &t);
    }
    return IMRET_OK;
}

/* Every convolution of a model, in load order (calls fn on each). */
static void imret__for_convs(const imret_model *m, void (*fn)(const imret__conv *, void *), void *user) {
    int i;
    for (i = 0; i < m->n_convs; i++) fn(&m->convs[i], user);
    if (m->is_vgg) return;
    fn(&m->stem, user);
    for (i = 0; i < m->n_blocks; i++) {
        fn(&m->blocks[i].c1, user);
        fn(&m->blocks[i].c2, user);
        if (m->bottleneck) fn(&m->blocks[i].c3, user);
        if (m->blocks[i].has_down) fn(&m->blocks[i].down, user);
    }
}

typedef struct imret__qnames { const char **names; int max; } imret__qnames;
static void imret__qname(const imret__conv *cv, void *user) {
    imret__qnames *q = (imret__qnames *)user;
    if (cv->qidx >= 0 && cv->qidx < q->max) q->names[cv->qidx] = cv->name;
}

IMRET_DEF int imret_model_quant_layers(const imret_model *model, const char **names, int max_names) {
    imret__qnames q;
    if (!model) return 0;
    q.names = names;
    q.max = names ? max_names : 0;
    imret__for_convs(model, imret__qname, &q);
    return model->n_quant;
}

IMRET_DEF imret_result imret_calibrate_forward(imret_context *ctx, const imret_tensor *input, float *layer_max, size_t n) {
    float *feat, *head, *scratch;
    int c, h, w;
    imret_precision prec;
    imret_result rc;
    if (!ctx || !layer_max) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_calibrate_forward: NULL argument");
    if (n < (size_t)ctx->model->n_quant)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_calibrate_forward: layer_max has %lu entries, the model quantises %d convolutions",
                           (unsigned long)n, ctx->model->n_quant);
    if (ctx->model->only != IMRET_PRECISION_FP32)
        return imret__fail(IMRET_ERROR_UNSUPPORTED, "imret_calibrate_forward: calibration runs the fp32 network; this "
                           "model was loaded without fp32 weights (imret_model_config.precision)");
    memset(layer_max, 0, sizeof(float) * (size_t)ctx->model->n_quant);
    prec = ctx->precision;
    ctx->precision = IMRET_PRECISION_FP32; /* calibration observes the fp32 network */
    ctx->calib = layer_max;
    rc = imret__forward(ctx, input, NULL, &feat, &c, &h, &w, &head, &scratch);
    ctx->calib = NULL;
    ctx->precision = prec;
    return rc;
}

/* ======================================================================================
   [impl: file I/O]
   Whole-file reads with a size limit, and read-only mappings. POSIX open/read/mmap where
   available (checked descriptors, no stdio FILE), stdio elsewhere.
   ====================================================================================== */
#ifndef IMRET_NO_STDIO

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
    rc = imret__model_load(data, size, cfg, mapped, out);
    imret__release_file(data, size, mapped);
    if (rc != IMRET_OK) {
        /* prefix the file name to the detail */
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", imret_last_error());
        imret__fail(rc, "%s: %s", path, tmp);
    }
    return rc;
}
/* Crash-safe write of every file imret writes (index, whitening, hash, FAISS export):
   temporary file in the target's directory, fsync, rename, fsync of the directory. A crash
   at any point leaves the old or the new file, never a torn one; on failure the temporary
   file is removed and the old file is untouched. what names the operation in messages. */
static imret_result imret__write_atomic(const char *path, const uint8_t *data, size_t size, const char *what) {
    size_t plen = strlen(path);
    char *tmp = (char *)imret__malloc(plen + 48);
    imret_result rc = IMRET_OK;
#if IMRET__POSIX
    int fd = -1, attempt;
    size_t done = 0;
    if (!tmp) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory", what);
    for (attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, plen + 48, "%s.tmp-%ld-%d", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        rc = imret__fail(IMRET_ERROR_IO, "%s: cannot create %s: %s", what, tmp, strerror(errno));
        IMRET_FREE(tmp);
        return rc;
    }
    while (done < size) {
        ssize_t r = write(fd, data + done, size - done > ((size_t)1 << 30) ? ((size_t)1 << 30) : size - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = imret__fail(IMRET_ERROR_IO, "%s: write error on %s: %s", what, tmp, r < 0 ? strerror(errno) : "no progress");
            break;
        }
        done += (size_t)r;
    }
    if (rc == IMRET_OK && fsync(fd) != 0) rc = imret__fail(IMRET_ERROR_IO, "%s: fsync of %s failed: %s", what, tmp, strerror(errno));
    if (close(fd) != 0 && rc == IMRET_OK) rc = imret__fail(IMRET_ERROR_IO, "%s: close of %s failed: %s", what, tmp, strerror(errno));
    if (rc == IMRET_OK && rename(tmp, path) != 0)
        rc = imret__fail(IMRET_ERROR_IO, "%s: cannot rename %s to %s: %s", what, tmp, path, strerror(errno));
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
            if (fsync(dfd) != 0 && errno != EINVAL) rc = imret__fail(IMRET_ERROR_IO, "%s: fsync of directory %s failed: %s", what, slash ? tmp : ".", strerror(errno));
            close(dfd);
        }
    }
#else
    FILE *f;
    if (!tmp) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory", what);
    snprintf(tmp, plen + 48, "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (!f) rc = imret__fail(IMRET_ERROR_IO, "%s: cannot create %s", what, tmp);
    else {
        if (fwrite(data, 1, size, f) != size || fflush(f) != 0) rc = imret__fail(IMRET_ERROR_IO, "%s: write error on %s", what, tmp);
        if (fclose(f) != 0 && rc == IMRET_OK) rc = imret__fail(IMRET_ERROR_IO, "%s: close of %s failed", what, tmp);
        if (rc == IMRET_OK) {
            remove(path); /* rename() does not replace on every platform */
            if (rename(tmp, path) != 0) rc = imret__fail(IMRET_ERROR_IO, "%s: cannot rename %s to %s", what, tmp, path);
        }
        if (rc != IMRET_OK) remove(tmp);
    }
#endif
    IMRET_FREE(tmp);
    return rc;
}

#endif /* IMRET_NO_STDIO */

/* ======================================================================================
   [impl: image I/O]
   Decoding with stb_image (compiled privately into this unit unless the host provides it),
   EXIF orientation for JPEGs, resizing with stb_image_resize, model normalisation.
   ====================================================================================== */
/* stb_image (decoding; left out with IMRET_NO_STB_IMAGE) and stb_image_resize (always: the
   preprocessing resizes with it), private static copies unless the host has its own. */
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
#ifndef IMRET_NO_STB_IMAGE
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
#endif /* IMRET_NO_STB_IMAGE */
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

/* Inputs that crash the stb_image 2.27 Debian ships (fixed upstream in 2.28), refused before
   it sees them; found by tests/fuzz/fuzz_image.c, each with a reproducer in
   tests/fuzz/regressions/image/. Returns NULL or the reason.
   - JPEG DHT tables whose 16 code-length counts sum past 256 overflow stbi__huffman's
     size[257] / values[256] (stb issue #1289). Tables can follow any scan (progressive
     files), so every marker segment of the file is visited, skipping entropy-coded data; the
     SOI marker may follow fill bytes (FF FF D8), as stb reads markers.
   - A JPEG scan that decodes with a Huffman table no DHT segment defined before it makes
     stbi__jpeg_huff_decode index the table's uninitialised arrays (out of bounds; stb 2.28
     checks the symbol index instead). A scan needs its DC table when it codes DC values
     (Ss = 0, Ah = 0) and its AC table when it codes AC values (Se > 0), as stb decodes them.
   - A binary PNM (P5/P6) header number past INT_MAX overflows stbi__pnm_getinteger's int
     (undefined behaviour). The header is read here exactly as stb reads it: whitespace and
     '#' comments, then width, height and maximum value. */
static int imret__pnm_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
static IMRET__UNUSED const char *imret__stb_guard(const uint8_t *p, size_t size) {
    size_t pos = 2;
    unsigned defined = 0; /* JPEG Huffman tables seen so far: bit class * 4 + id */
    if (size >= 2 && p[0] == 'P' && (p[1] == '5' || p[1] == '6')) { /* stbi__pnm_info's reads; past the end, 0 */
        size_t i = 2;
        int c = i < size ? p[i++] : 0, n;
        for (n = 0; n < 3; n++) {
            unsigned long v = 0;
            for (;;) { /* stbi__pnm_skip_whitespace */
                while (i < size && imret__pnm_space(c)) c = p[i++];
                if (i >= size || c != '#') break;
                while (i < size && c != '\n' && c != '\r') c = p[i++];
            }
            while (i < size && c >= '0' && c <= '9') { /* stbi__pnm_getinteger */
                if (v > (unsigned long)(INT_MAX - (c - '0')) / 10) return "PNM header number too large";
                v = v * 10 + (unsigned long)(c - '0');
                c = p[i++];
            }
        }
        return NULL;
    }
    if (size >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) {
        /* PNG: a zero-length IDAT before any image data makes stb_image 2.27 add 0 to a NULL
           pointer (undefined behaviour; found by fuzz_image). No encoder writes one. */
        for (pos = 8; pos + 8 <= size;) {
            size_t len = (size_t)p[pos] << 24 | (size_t)p[pos + 1] << 16 | (size_t)p[pos + 2] << 8 | p[pos + 3];
            if (!memcmp(p + pos + 4, "IDAT", 4)) return len == 0 ? "PNG with an empty IDAT chunk before its image data" : NULL;
            if (len > size - pos - 8) return NULL; /* truncated: stb reports it */
            pos += 12 + len;
        }
        return NULL;
    }
    /* stb_image takes any run of 0xFF fill bytes before the SOI marker (stbi__get_marker) */
    for (pos = 0; pos < size && p[pos] == 0xFF; pos++) {}
    if (pos == 0 || pos >= size || p[pos] != 0xD8) return NULL;
    pos++;
    while (pos + 4 <= size) {
        uint8_t marker;
        size_t len;
        if (p[pos] != 0xFF) { /* entropy-coded data: skip to the next real marker */
            pos++;
            continue;
        }
        marker = p[pos + 1];
        if (marker == 0xFF || marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { pos += marker == 0xFF ? 1 : 2; continue; }
        if (marker == 0xD9) return NULL;
        len = (size_t)p[pos + 2] << 8 | p[pos + 3];
        if (marker == 0xC4) { /* DHT: tables of 1 + 16 + n bytes read exactly as stb does: while
                                 the segment length says more follows, bytes past the end as 0 */
            long left = (long)len - 2;
            size_t t = pos + 4;
            while (left > 0 && t < size) {
                size_t n = 0, i;
                for (i = 0; i < 16; i++) n += t + 1 + i < size ? p[t + 1 + i] : 0;
                if (n > 256) return "JPEG Huffman table with more than 256 codes";
                if (p[t] >> 4 <= 1 && (p[t] & 15) <= 3) defined |= 1u << ((p[t] >> 4) * 4 + (p[t] & 15));
                t += 17 + n;
                left -= 17 + (long)n;
            }
        }
        if (marker == 0xDA && pos + 5 <= size) { /* SOS: the Huffman tables its components decode with */
            size_t ns = p[pos + 4], i, e = pos + 5 + 2 * ns;
            if (e + 3 <= size) {
                int ss = p[e], se = p[e + 1], ah = p[e + 2] >> 4;
                for (i = 0; i < ns; i++) {
                    int td = p[pos + 6 + 2 * i] >> 4, ta = p[pos + 6 + 2 * i] & 15;
                    if ((ss == 0 && ah == 0 && td <= 3 && !(defined >> td & 1)) || (se > 0 && ta <= 3 && !(defined >> (4 + ta) & 1)))
                        return "JPEG scan decoding with a Huffman table never defined";
                }
            }
        }
        pos += 2 + len;
    }
    return NULL;
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
    {
        const char *bad = imret__stb_guard((const uint8_t *)data, size);
        if (bad) return imret__fail(IMRET_ERROR_IMAGE_DECODE, "image: corrupt file (%s)", bad);
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
    if (!px) {
        const char *why = stbi_failure_reason();
        if (why && (strstr(why, "Out of memory") || strstr(why, "outofmem"))) /* STBI_FAILURE_USERMSG or not */
            return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "image: out of memory decoding %dx%d pixels", w, h);
        return imret__fail(IMRET_ERROR_IMAGE_DECODE, "image: decoding failed (%s)", why ? why : "unknown");
    }
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
    if ((nw < nh ? nw : nh) < cfg->min_side) { /* rounding: keep the shorter side >= min_side */
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

#if defined(__cplusplus)
#define IMRET__DESC_RESTRICT __restrict
#else
#define IMRET__DESC_RESTRICT restrict
#endif

/* ---- descriptor helpers: multi-scale combination, tensor orientation ---- */
IMRET_DEF imret_result imret_descriptor_combine(const float *descs, size_t count, size_t dim, float *out) {
    double *acc;
    size_t s, k;
    if (!descs || !out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_descriptor_combine: NULL argument");
    if (!count || !dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_descriptor_combine: count %lu, dim %lu (both must be > 0)",
                                           (unsigned long)count, (unsigned long)dim);
    if (!imret__mul(count, dim, &k)) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_descriptor_combine: size overflows");
    acc = (double *)imret__calloc(dim, sizeof(double));
    if (!acc) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_descriptor_combine: out of memory");
    for (s = 0; s < count; s++)
        for (k = 0; k < dim; k++) acc[k] += descs[s * dim + k];
    for (k = 0; k < dim; k++) out[k] = (float)acc[k];
    IMRET_FREE(acc);
    imret__l2n(out, dim);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_tensor_orient(const imret_tensor *in, int orientation, imret_tensor *out) {
    int w, h, ow, oh, x, y, c;
    size_t n;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_tensor_orient: out is NULL");
    memset(out, 0, sizeof *out);
    if (!in || !in->data) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_tensor_orient: NULL tensor");
    if (orientation < 1 || orientation > 8)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_tensor_orient: orientation %d (1..8)", orientation);
    if (in->c <= 0 || in->h <= 0 || in->w <= 0)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_tensor_orient: empty tensor %dx%dx%d", in->c, in->h, in->w);
    if (!imret__mul4((size_t)in->c, (size_t)in->h, (size_t)in->w, sizeof(float), &n))
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_tensor_orient: size overflows");
    w = in->w; h = in->h;
    ow = orientation >= 5 ? h : w;
    oh = orientation >= 5 ? w : h;
    out->data = (float *)imret__malloc(n);
    if (!out->data) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_tensor_orient: out of memory");
    out->c = in->c; out->h = oh; out->w = ow;
    for (c = 0; c < in->c; c++) {
        const float *src = in->data + (size_t)c * w * h;
        float *dst = out->data + (size_t)c * w * h;
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {
                int sx, sy; /* source of output (x, y): the same table as imret_image_orient */
                switch (orientation) {
                case 1: sx = x; sy = y; break;
                case 2: sx = w - 1 - x; sy = y; break;
                case 3: sx = w - 1 - x; sy = h - 1 - y; break;
                case 4: sx = x; sy = h - 1 - y; break;
                case 5: sx = y; sy = x; break;
                case 6: sx = y; sy = h - 1 - x; break;
                case 7: sx = w - 1 - y; sy = h - 1 - x; break;
                default: sx = w - 1 - y; sy = x; break;
                }
                dst[(size_t)y * ow + x] = src[(size_t)sy * w + sx];
            }
    }
    return IMRET_OK;
}

/* ======================================================================================
   [impl: whitening and hashing: linear algebra]
   Everything in double. The symmetric eigensolver is Householder tridiagonalisation +
   implicit QL (the EISPACK tred2/tql2 pair, as in JAMA), with the matrix stored column-major
   so the inner loops of both phases (Householder updates, Givens rotations of eigenvector
   columns) run over contiguous memory: with row-major storage the rotations stride by n
   doubles and D = 2048 ran several times slower.
   ====================================================================================== */
/* vectorised sums: the order is fixed by the build, never by the thread count */
#if IMRET__OMP
#define IMRET__DESC_STR(x) #x
#define IMRET__DESC_SIMD_SUM(v) _Pragma(IMRET__DESC_STR(omp simd reduction(+:v)))
#else
#define IMRET__DESC_SIMD_SUM(v)
#endif
#define IMRET__DESC_V(r, c) a[(size_t)(c) * (size_t)n + (size_t)(r)] /* column-major */

/* Eigen-decompose the symmetric n x n matrix a (both triangles filled). On success (0) w
   holds the eigenvalues in descending order and column j of a (a + j n) the unit
   eigenvector of w[j], its largest-magnitude component made positive. -1: QL did not
   converge (non-finite input). d/e scratch: 2n doubles in scratch. */
static int imret__desc_eigh(double *a, long n, double *w, double *scratch, int threads) {
    double *d = w, *e = scratch, f, g, h, hh, scale, tst1, eps = 2.220446049250313e-16;
    long i, j, k, l, m;
    int nt = imret__threads(threads);
    (void)nt;
    if (n == 1) { w[0] = a[0]; a[0] = 1; return 0; }
    /* -- tred2: Householder reduction to tridiagonal form, accumulating the transforms -- */
    for (j = 0; j < n; j++) d[j] = IMRET__DESC_V(n - 1, j);
    for (i = n - 1; i > 0; i--) {
        scale = 0; h = 0;
        for (k = 0; k < i; k++) scale += fabs(d[k]);
        if (scale == 0.0) {
            e[i] = d[i - 1];
            for (j = 0; j < i; j++) {
                d[j] = IMRET__DESC_V(i - 1, j);
                IMRET__DESC_V(i, j) = 0;
                IMRET__DESC_V(j, i) = 0;
            }
        } else {
            for (k = 0; k < i; k++) { d[k] /= scale; h += d[k] * d[k]; }
            f = d[i - 1];
            g = sqrt(h);
            if (f > 0) g = -g;
            e[i] = scale * g;
            h = h - f * g;
            d[i - 1] = f - g;
            for (j = 0; j < i; j++) e[j] = 0;
            for (j = 0; j < i; j++) {
                const double *col = a + (size_t)j * n;
                f = d[j];
                IMRET__DESC_V(j, i) = f;
                g = e[j] + col[j] * f;
                IMRET__DESC_SIMD_SUM(g)
                for (k = j + 1; k <= i - 1; k++) {
                    g += col[k] * d[k];
                    e[k] += col[k] * f;
                }
                e[j] = g;
            }
            f = 0;
            for (j = 0; j < i; j++) { e[j] /= h; f += e[j] * d[j]; }
            hh = f / (h + h);
            for (j = 0; j < i; j++) e[j] -= hh * d[j];
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (i > 256)
#endif
            for (j = 0; j < i; j++) {
                double *IMRET__DESC_RESTRICT col = a + (size_t)j * n;
                const double fj = d[j], gj = e[j];
                long kk;
                IMRET__PRAGMA_SIMD
                for (kk = j; kk <= i - 1; kk++) col[kk] -= fj * e[kk] + gj * d[kk];
            }
            for (j = 0; j < i; j++) {
                d[j] = IMRET__DESC_V(i - 1, j);
                IMRET__DESC_V(i, j) = 0;
            }
        }
        d[i] = h;
    }
    for (i = 0; i < n - 1; i++) {
        double *IMRET__DESC_RESTRICT vi1 = a + (size_t)(i + 1) * n;
        IMRET__DESC_V(n - 1, i) = IMRET__DESC_V(i, i);
        IMRET__DESC_V(i, i) = 1;
        h = d[i + 1];
        if (h != 0.0) {
            for (k = 0; k <= i; k++) d[k] = vi1[k] / h;
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (i > 256)
#endif
            for (j = 0; j <= i; j++) {
                double *IMRET__DESC_RESTRICT col = a + (size_t)j * n, gj = 0;
                long kk;
                IMRET__DESC_SIMD_SUM(gj)
                for (kk = 0; kk <= i; kk++) gj += vi1[kk] * col[kk];
                IMRET__PRAGMA_SIMD
                for (kk = 0; kk <= i; kk++) col[kk] -= gj * d[kk];
            }
        }
        for (k = 0; k <= i; k++) vi1[k] = 0;
    }
    for (j = 0; j < n; j++) { d[j] = IMRET__DESC_V(n - 1, j); IMRET__DESC_V(n - 1, j) = 0; }
    IMRET__DESC_V(n - 1, n - 1) = 1;
    e[0] = 0;
    /* -- tql2: implicit QL on the tridiagonal matrix, rotating the eigenvector columns -- */
    for (i = 1; i < n; i++) e[i - 1] = e[i];
    e[n - 1] = 0;
    f = 0; tst1 = 0;
    for (l = 0; l < n; l++) {
        int iter = 0;
        if (fabs(d[l]) + fabs(e[l]) > tst1) tst1 = fabs(d[l]) + fabs(e[l]);
        m = l;
        while (m < n - 1 && !(fabs(e[m]) <= eps * tst1)) m++;
        if (m > l) {
            do {
                double p, r, dl1, c, c2, c3, el1, s, s2;
                if (++iter > 60) return -1;
                g = d[l];
                p = (d[l + 1] - g) / (2.0 * e[l]);
                r = hypot(p, 1.0);
                if (p < 0) r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                dl1 = d[l + 1];
                h = g - d[l];
                for (i = l + 2; i < n; i++) d[i] -= h;
                f += h;
                p = d[m];
                c = 1; c2 = c; c3 = c;
                el1 = e[l + 1];
                s = 0; s2 = 0;
                for (i = m - 1; i >= l; i--) {
                    double *IMRET__DESC_RESTRICT v0 = a + (size_t)i * n, *IMRET__DESC_RESTRICT v1 = a + (size_t)(i + 1) * n;
                    c3 = c2; c2 = c; s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = hypot(p, e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    IMRET__PRAGMA_SIMD
                    for (k = 0; k < n; k++) {
                        double t = v1[k];
                        v1[k] = s * v0[k] + c * t;
                        v0[k] = c * v0[k] - s * t;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
            } while (fabs(e[l]) > eps * tst1);
        }
        if (!(d[l] == d[l])) return -1; /* NaN */
        d[l] += f;
        e[l] = 0;
    }
    /* -- sort descending (selection: n column swaps of contiguous columns), fix signs -- */
    for (i = 0; i < n; i++) {
        long best = i, kmax = 0;
        double amax = -1;
        double *col;
        for (j = i + 1; j < n; j++)
            if (d[j] > d[best]) best = j;
        if (best != i) {
            double t = d[i];
            double *ci = a + (size_t)i * n, *cb = a + (size_t)best * n;
            d[i] = d[best]; d[best] = t;
            for (k = 0; k < n; k++) { t = ci[k]; ci[k] = cb[k]; cb[k] = t; }
        }
        col = a + (size_t)i * n;
        for (k = 0; k < n; k++)
            if (fabs(col[k]) > amax) { amax = fabs(col[k]); kmax = k; }
        if (col[kmax] < 0)
            for (k = 0; k < n; k++) col[k] = -col[k];
    }
    return 0;
}
#undef IMRET__DESC_V

/* Mean (dim) and covariance (dim x dim, both triangles) = (1/n) sum (x - mean)(x - mean)^T
   of x[n][dim], in double, two passes. The covariance is accumulated a block of 64 centred
   vectors at a time: each row of the (lower) triangle stays in cache while the block runs
   over it, and a thread owns whole rows, so the sums do not depend on the thread count. */
static imret_result imret__desc_mean_cov(const float *x, size_t n, size_t dim, int threads, const char *what, double *mean,
                                         double *cov) {
    enum { T = 64 };
    double *blk;
    size_t i, j, t0;
    int nt = imret__threads(threads);
    (void)nt;
    for (j = 0; j < dim; j++) mean[j] = 0;
    for (i = 0; i < n; i++)
        for (j = 0; j < dim; j++) {
            float v = x[i * dim + j];
            if (!(v - v == 0)) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: training vector %lu has a non-finite value at %lu", what,
                                                  (unsigned long)i, (unsigned long)j);
            mean[j] += v;
        }
    for (j = 0; j < dim; j++) mean[j] /= (double)n;
    blk = (double *)imret__calloc(T * dim, sizeof(double));
    if (!blk) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory (covariance block)", what);
    memset(cov, 0, dim * dim * sizeof(double));
    for (t0 = 0; t0 < n; t0 += T) {
        long tn = (long)(n - t0 < (size_t)T ? n - t0 : (size_t)T), r;
        for (r = 0; r < tn; r++)
            for (j = 0; j < dim; j++) blk[(size_t)r * dim + j] = (double)x[(t0 + r) * dim + j] - mean[j];
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16) if (dim >= 128)
#endif
        for (r = 0; r < (long)dim; r++) {
            double *IMRET__DESC_RESTRICT row = cov + (size_t)r * dim;
            long t;
            for (t = 0; t < tn; t++) {
                const double *IMRET__DESC_RESTRICT xt = blk + (size_t)t * dim;
                const double xr = xt[r];
                long c;
                IMRET__PRAGMA_SIMD
                for (c = 0; c <= r; c++) row[c] += xr * xt[c];
            }
        }
    }
    IMRET_FREE(blk);
    for (i = 0; i < dim; i++)
        for (j = 0; j <= i; j++) cov[j * dim + i] = cov[i * dim + j] = cov[i * dim + j] / (double)n;
    return IMRET_OK;
}

/* Mean, covariance and its eigendecomposition of x[n][dim]: *mean (dim), *vec (dim x dim,
   column j = eigenvector j), *val (dim, descending). Freed by the caller. */
static imret_result imret__desc_pca(const float *x, size_t n, size_t dim, int threads, const char *what, double **mean, double **vec,
                                    double **val) {
    size_t dd;
    double *scratch;
    imret_result rc;
    *mean = *vec = *val = NULL;
    if (!imret__mul4(dim, dim, sizeof(double), 1, &dd) || dim > 65536)
        return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: dimension %lu too large", what, (unsigned long)dim);
    *mean = (double *)imret__calloc(dim, sizeof(double));
    *val = (double *)imret__calloc(dim, sizeof(double));
    *vec = (double *)imret__malloc(dd);
    scratch = (double *)imret__calloc(dim, sizeof(double));
    if (!*mean || !*val || !*vec || !scratch) {
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory (%lu x %lu covariance)", what, (unsigned long)dim, (unsigned long)dim);
        goto fail;
    }
    if ((rc = imret__desc_mean_cov(x, n, dim, threads, what, *mean, *vec)) != IMRET_OK) goto fail;
    if (imret__desc_eigh(*vec, (long)dim, *val, scratch, threads) != 0) {
        rc = imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "%s: eigendecomposition did not converge (extreme values in the training set?)", what);
        goto fail;
    }
    IMRET_FREE(scratch);
    return IMRET_OK;
fail:
    IMRET_FREE(scratch);
    IMRET_FREE(*mean); IMRET_FREE(*vec); IMRET_FREE(*val);
    *mean = *vec = *val = NULL;
    return rc;
}

/* ---- deterministic Gaussian numbers: splitmix64 -> Marsaglia's polar method. The log is
   computed with + - * / only (frexp + atanh series), sqrt is correctly rounded, so the
   stream is bit-identical on every IEEE-754 platform (and in tests/ref_hash.py). ---- */
typedef struct imret__desc_rng {
    uint64_t state;
    int has_spare;
    double spare;
} imret__desc_rng;

static uint64_t imret__desc_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double imret__desc_log(double x) { /* x > 0, finite */
    int e, k;
    double m = frexp(x, &e), t, t2, term, sum = 0;
    if (m < 0.70710678118654752) { m *= 2; e--; }
    t = (m - 1) / (m + 1); /* |t| < 0.172: 20 terms reach far below double precision */
    t2 = t * t;
    term = t;
    for (k = 0; k < 20; k++) {
        sum += term / (2 * k + 1);
        term *= t2;
    }
    return 2 * sum + e * 0.6931471805599453;
}

static double imret__desc_gauss(imret__desc_rng *g) {
    double u, v, s, f;
    if (g->has_spare) { g->has_spare = 0; return g->spare; }
    do {
        u = ((double)(imret__desc_splitmix64(&g->state) >> 11) + 0.5) * (2.0 / 9007199254740992.0) - 1.0;
        v = ((double)(imret__desc_splitmix64(&g->state) >> 11) + 0.5) * (2.0 / 9007199254740992.0) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    f = sqrt(-2.0 * imret__desc_log(s) / s);
    g->spare = v * f;
    g->has_spare = 1;
    return u * f;
}

/* finite float32 from its little-endian bits */
static float imret__desc_rdf(const uint8_t *p) {
    uint32_t u = imret__rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void imret__desc_wrf(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    imret__wr32(p, u);
}
static int imret__desc_finite(float f) { return f - f == 0; }

/* ======================================================================================
   [impl: whitening]
   File format (version 1, little-endian), 64-byte header then float32 arrays:
     0  magic "\x89IMRWHT\n"        8  u32 version (1)     12 u32 header bytes (64)
     16 u64 file size               24 u32 in_dim D         28 u32 out_dim D' (<= D)
     32 u64 training vectors n      40 f32 power            44 f32 shrinkage
     48 f32 post_power              52 f32 eig_floor        56 u32 flags
     60 u32 CRC-32 (zlib) of bytes [0, 60) followed by [64, end)
     64 mean[D], eigenvalues[D'], projection[D'][D]
   ====================================================================================== */
#define IMRET__WHT_MAGIC "\x89IMRWHT\n"
#define IMRET__DESC_HEADER 64
#define IMRET__DESC_MAX_DIM 16384 /* 16384^2 floats = 1 GiB: far above any CNN descriptor */

struct imret_whitening {
    size_t in_dim, out_dim;
    uint64_t n_train;
    float power, shrinkage, post_power, eig_floor;
    unsigned flags;
    float *mean, *eigval, *proj; /* one allocation: mean | eigval | proj */
};

IMRET_DEF imret_whitening_config imret_whitening_config_init(void) {
    imret_whitening_config c;
    memset(&c, 0, sizeof c);
    c.power = 0.5f;
    c.post_power = 1.0f;
    c.eig_floor = 1e-6f;
    return c;
}

IMRET_DEF void imret_whitening_free(imret_whitening *w) {
    if (!w) return;
    IMRET_FREE(w->mean);
    IMRET_FREE(w);
}

static imret_whitening *imret__whiten_alloc(size_t in_dim, size_t out_dim) {
    size_t n, pd;
    imret_whitening *w;
    if (!imret__mul(in_dim, out_dim, &pd) || !imret__add(pd, in_dim + out_dim, &n) || !imret__mul(n, sizeof(float), &n)) return NULL;
    w = (imret_whitening *)imret__calloc(1, sizeof *w);
    if (!w) return NULL;
    w->mean = (float *)imret__calloc(n, 1);
    if (!w->mean) { IMRET_FREE(w); return NULL; }
    w->eigval = w->mean + in_dim;
    w->proj = w->eigval + out_dim;
    w->in_dim = in_dim;
    w->out_dim = out_dim;
    w->power = 0.5f;
    w->post_power = 1.0f;
    return w;
}

IMRET_DEF imret_result imret_whitening_train(const float *x, size_t n, size_t dim, const imret_whitening_config *cfg,
                                             imret_whitening **out) {
    imret_whitening_config def = imret_whitening_config_init();
    imret_whitening *w;
    double *mean = NULL, *vec = NULL, *val = NULL, lmax, lmean = 0, fl;
    size_t od, i, j;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_train: out is NULL");
    *out = NULL;
    if (!cfg) cfg = &def;
    if (!x || !dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_train: no training vectors (x NULL or dim 0)");
    if (dim > IMRET__DESC_MAX_DIM) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_train: dimension %lu over %d", (unsigned long)dim, IMRET__DESC_MAX_DIM);
    od = cfg->out_dim ? cfg->out_dim : dim;
    if (od > dim)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_train: out_dim %lu is larger than the descriptor dimension %lu",
                           (unsigned long)od, (unsigned long)dim);
    if (!(cfg->power >= 0 && cfg->power <= 1) || !(cfg->shrinkage >= 0 && cfg->shrinkage <= 1) ||
        !(cfg->post_power > 0 && cfg->post_power <= 1) || !(cfg->eig_floor >= 0 && cfg->eig_floor < 1))
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT,
                           "imret_whitening_train: options out of range (power %g in [0,1], shrinkage %g in [0,1], post_power %g in (0,1], eig_floor %g in [0,1))",
                           (double)cfg->power, (double)cfg->shrinkage, (double)cfg->post_power, (double)cfg->eig_floor);
    if (n < 2) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_train: %lu training vectors (at least 2, and more than out_dim %lu)",
                                  (unsigned long)n, (unsigned long)od);
    if (n <= od && !cfg->allow_underdetermined)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT,
                           "imret_whitening_train: %lu training vectors for %lu output dimensions: whitening needs more vectors than "
                           "output dimensions (many more to help retrieval); lower out_dim or set allow_underdetermined",
                           (unsigned long)n, (unsigned long)od);
    if ((rc = imret__desc_pca(x, n, dim, cfg->threads, "imret_whitening_train", &mean, &vec, &val)) != IMRET_OK) return rc;
    lmax = val[0];
    for (i = 0; i < dim; i++) lmean += val[i] > 0 ? val[i] : 0;
    lmean /= (double)dim;
    if (!(lmax > 0)) {
        rc = imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_train: all %lu training vectors are identical", (unsigned long)n);
        goto done;
    }
    w = imret__whiten_alloc(dim, od);
    if (!w) { rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_whitening_train: out of memory"); goto done; }
    w->n_train = n;
    w->power = cfg->power; w->shrinkage = cfg->shrinkage; w->post_power = cfg->post_power; w->eig_floor = cfg->eig_floor;
    if (n <= od) w->flags |= IMRET_WHITENING_UNDERDETERMINED;
    if (n / 10 < od) w->flags |= IMRET_WHITENING_FEW_SAMPLES;
    fl = cfg->eig_floor * ((1 - cfg->shrinkage) * lmax + cfg->shrinkage * lmean);
    for (j = 0; j < dim; j++) w->mean[j] = (float)mean[j];
    for (i = 0; i < od; i++) {
        double lam = (1 - cfg->shrinkage) * (val[i] > 0 ? val[i] : 0) + cfg->shrinkage * lmean, sc;
        const double *e = vec + i * dim;
        if (lam < fl) { lam = fl; w->flags |= IMRET_WHITENING_RANK_DEFICIENT; }
        if (!(lam > 0)) lam = 1e-300; /* eig_floor 0 on rank-deficient data */
        sc = cfg->power == 0 ? 1.0 : pow(lam, -(double)cfg->power);
        w->eigval[i] = (float)val[i];
        for (j = 0; j < dim; j++) w->proj[i * dim + j] = (float)(sc * e[j]);
    }
    *out = w;
    rc = IMRET_OK;
done:
    IMRET_FREE(mean); IMRET_FREE(vec); IMRET_FREE(val);
    return rc;
}

IMRET_DEF imret_result imret_whitening_create(const float *mean, const float *projection, size_t in_dim, size_t out_dim,
                                              imret_whitening **out) {
    imret_whitening *w;
    size_t i;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_create: out is NULL");
    *out = NULL;
    if (!projection) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_create: projection is NULL");
    if (!in_dim || !out_dim || in_dim > IMRET__DESC_MAX_DIM || out_dim > in_dim)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_whitening_create: dimensions %lu -> %lu (need 1 <= out <= in <= %d)", (unsigned long)in_dim,
                           (unsigned long)out_dim, IMRET__DESC_MAX_DIM);
    w = imret__whiten_alloc(in_dim, out_dim);
    if (!w) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_whitening_create: out of memory");
    for (i = 0; i < in_dim; i++) w->mean[i] = mean ? mean[i] : 0.0f;
    memcpy(w->proj, projection, in_dim * out_dim * sizeof(float));
    for (i = 0; i < in_dim + out_dim * in_dim; i++) {
        float v = i < in_dim ? w->mean[i] : w->proj[i - in_dim];
        if (!imret__desc_finite(v)) {
            imret_whitening_free(w);
            return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_create: non-finite value in the %s", i < in_dim ? "mean" : "projection");
        }
    }
    *out = w;
    return IMRET_OK;
}

IMRET_DEF imret_result imret_whitening_get_info(const imret_whitening *w, imret_whitening_info *info) {
    if (!w || !info) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    info->in_dim = w->in_dim;
    info->out_dim = w->out_dim;
    info->n_train = w->n_train;
    info->power = w->power; info->shrinkage = w->shrinkage; info->post_power = w->post_power; info->eig_floor = w->eig_floor;
    info->flags = w->flags;
    info->mean = w->mean;
    info->eigenvalues = w->eigval;
    info->projection = w->proj;
    return IMRET_OK;
}

IMRET_DEF imret_result imret_whitening_apply(const imret_whitening *w, const float *x, size_t n, size_t in_dim, float *out,
                                             size_t out_dim, int threads) {
    long i;
    int nt = imret__threads(threads);
    (void)nt;
    if (!w || (!x && n) || (!out && n)) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_apply: NULL argument");
    if (in_dim != w->in_dim)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_whitening_apply: descriptors have %lu dimensions, the whitening was learned on %lu",
                           (unsigned long)in_dim, (unsigned long)w->in_dim);
    if (out_dim != w->out_dim)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_whitening_apply: output rows of %lu values, the whitening gives %lu", (unsigned long)out_dim,
                           (unsigned long)w->out_dim);
    if (n > (size_t)LONG_MAX / (in_dim > out_dim ? in_dim : out_dim))
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_apply: %lu vectors is too many", (unsigned long)n);
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
#endif
    for (i = 0; i < (long)n; i++) {
        const float *xi = x + (size_t)i * in_dim;
        float *yi = out + (size_t)i * out_dim;
        size_t o, k;
        for (o = 0; o < out_dim; o++) {
            const float *p = w->proj + o * in_dim;
            double s = 0;
            for (k = 0; k < in_dim; k++) s += (double)p[k] * ((double)xi[k] - w->mean[k]);
            if (w->post_power != 1.0f) s = s < 0 ? -pow(-s, w->post_power) : pow(s, w->post_power);
            yi[o] = (float)s;
        }
        imret__l2n(yi, out_dim);
    }
    return IMRET_OK;
}

static size_t imret__whiten_size(size_t in_dim, size_t out_dim) { /* dims already bounded by IMRET__DESC_MAX_DIM */
    return IMRET__DESC_HEADER + 4 * (in_dim + out_dim + in_dim * out_dim);
}

IMRET_DEF imret_result imret_whitening_save_memory(const imret_whitening *w, void *buf, size_t cap, size_t *size) {
    uint8_t *p = (uint8_t *)buf;
    size_t total, i, nf;
    uint32_t crc;
    if (!w || !size) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_save_memory: NULL argument");
    *size = total = imret__whiten_size(w->in_dim, w->out_dim);
    if (!buf) return IMRET_OK;
    if (cap < total) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_save_memory: buffer of %lu bytes, needs %lu", (unsigned long)cap,
                                        (unsigned long)total);
    memset(p, 0, IMRET__DESC_HEADER);
    memcpy(p, IMRET__WHT_MAGIC, 8);
    imret__wr32(p + 8, 1);
    imret__wr32(p + 12, IMRET__DESC_HEADER);
    imret__wr64(p + 16, (uint64_t)total);
    imret__wr32(p + 24, (uint32_t)w->in_dim);
    imret__wr32(p + 28, (uint32_t)w->out_dim);
    imret__wr64(p + 32, w->n_train);
    imret__desc_wrf(p + 40, w->power);
    imret__desc_wrf(p + 44, w->shrinkage);
    imret__desc_wrf(p + 48, w->post_power);
    imret__desc_wrf(p + 52, w->eig_floor);
    imret__wr32(p + 56, w->flags);
    nf = w->in_dim + w->out_dim + w->in_dim * w->out_dim; /* mean | eigval | proj are contiguous */
    for (i = 0; i < nf; i++) imret__desc_wrf(p + IMRET__DESC_HEADER + 4 * i, w->mean[i]);
    crc = imret__crc32(imret__crc32(0, p, 60), p + IMRET__DESC_HEADER, total - IMRET__DESC_HEADER);
    imret__wr32(p + 60, crc);
    return IMRET_OK;
}

/* Header checks shared by the whitening and hash loaders: magic, version, header size, the
   recorded size against the real one, and the CRC. */
static imret_result imret__desc_check_file(const uint8_t *p, size_t size, const char *magic, const char *what) {
    uint64_t recorded;
    uint32_t v;
    if (size < IMRET__DESC_HEADER || memcmp(p, magic, 8) != 0) {
        if (size >= 8 && memcmp(p, magic, 8) == 0)
            return imret__fail(IMRET_ERROR_FORMAT, "%s: truncated file: %lu bytes, the header alone is %d", what, (unsigned long)size, IMRET__DESC_HEADER);
        return imret__fail(IMRET_ERROR_FORMAT, "%s: not a %s file (bad magic)", what, what);
    }
    v = imret__rd32(p + 8);
    if (v != 1) return imret__fail(IMRET_ERROR_VERSION, "%s: file version %u, this imret reads version 1", what, (unsigned)v);
    if (imret__rd32(p + 12) != IMRET__DESC_HEADER)
        return imret__fail(IMRET_ERROR_FORMAT, "%s: header size %u, expected %d", what, (unsigned)imret__rd32(p + 12), IMRET__DESC_HEADER);
    recorded = imret__rd64(p + 16);
    if (recorded != (uint64_t)size)
        return imret__fail(IMRET_ERROR_FORMAT, "%s: %s: file is %lu bytes, its header says %llu", what, recorded > size ? "truncated file" : "trailing bytes",
                           (unsigned long)size, (unsigned long long)recorded);
    if (imret__crc32(imret__crc32(0, p, 60), p + IMRET__DESC_HEADER, size - IMRET__DESC_HEADER) != imret__rd32(p + 60))
        return imret__fail(IMRET_ERROR_CHECKSUM, "%s: checksum mismatch (file corrupted)", what);
    return IMRET_OK;
}

IMRET_DEF imret_result imret_whitening_load_memory(const void *data, size_t size, imret_whitening **out) {
    const uint8_t *p = (const uint8_t *)data;
    const char *what = "whitening";
    uint32_t in_dim, out_dim, flags;
    float power, shrink, post, floor_;
    imret_whitening *w;
    size_t i, nf;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_load_memory: out is NULL");
    *out = NULL;
    if (!data) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_load_memory: data is NULL");
    if ((rc = imret__desc_check_file(p, size, IMRET__WHT_MAGIC, what)) != IMRET_OK) return rc;
    in_dim = imret__rd32(p + 24);
    out_dim = imret__rd32(p + 28);
    if (!in_dim || in_dim > IMRET__DESC_MAX_DIM || !out_dim || out_dim > in_dim)
        return imret__fail(IMRET_ERROR_FORMAT, "%s: dimensions %u -> %u (need 1 <= out <= in <= %d)", what, (unsigned)in_dim, (unsigned)out_dim,
                           IMRET__DESC_MAX_DIM);
    if (imret__whiten_size(in_dim, out_dim) != size)
        return imret__fail(IMRET_ERROR_FORMAT, "%s: %u -> %u dimensions need %lu bytes, the file has %lu", what, (unsigned)in_dim, (unsigned)out_dim,
                           (unsigned long)imret__whiten_size(in_dim, out_dim), (unsigned long)size);
    power = imret__desc_rdf(p + 40);
    shrink = imret__desc_rdf(p + 44);
    post = imret__desc_rdf(p + 48);
    floor_ = imret__desc_rdf(p + 52);
    flags = imret__rd32(p + 56);
    if (!(power >= 0 && power <= 1) || !(shrink >= 0 && shrink <= 1) || !(post > 0 && post <= 1) || !(floor_ >= 0 && floor_ < 1) || flags > 7)
        return imret__fail(IMRET_ERROR_FORMAT, "%s: options out of range (power %g, shrinkage %g, post_power %g, eig_floor %g, flags %u)", what,
                           (double)power, (double)shrink, (double)post, (double)floor_, (unsigned)flags);
    w = imret__whiten_alloc(in_dim, out_dim);
    if (!w) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory", what);
    w->n_train = imret__rd64(p + 32);
    w->power = power; w->shrinkage = shrink; w->post_power = post; w->eig_floor = floor_;
    w->flags = flags;
    nf = (size_t)in_dim + out_dim + (size_t)in_dim * out_dim;
    for (i = 0; i < nf; i++) {
        w->mean[i] = imret__desc_rdf(p + IMRET__DESC_HEADER + 4 * i);
        if (!imret__desc_finite(w->mean[i])) {
            imret_whitening_free(w);
            return imret__fail(IMRET_ERROR_FORMAT, "%s: non-finite value at float %lu of the data", what, (unsigned long)i);
        }
    }
    *out = w;
    return IMRET_OK;
}

#ifndef IMRET_NO_STDIO
IMRET_DEF imret_result imret_whitening_save_file(const imret_whitening *w, const char *path) {
    size_t size;
    uint8_t *buf;
    imret_result rc;
    if (!w || !path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_save_file: NULL argument");
    imret_whitening_save_memory(w, NULL, 0, &size);
    buf = (uint8_t *)imret__malloc(size);
    if (!buf) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_whitening_save_file: out of memory");
    rc = imret_whitening_save_memory(w, buf, size, &size);
    if (rc == IMRET_OK) rc = imret__write_atomic(path, buf, size, "whitening");
    IMRET_FREE(buf);
    return rc;
}

IMRET_DEF imret_result imret_whitening_load_file(const char *path, imret_whitening **out) {
    uint8_t *buf;
    size_t size;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_load_file: out is NULL");
    *out = NULL;
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_whitening_load_file: path is NULL");
    if ((rc = imret__read_file(path, imret__whiten_size(IMRET__DESC_MAX_DIM, IMRET__DESC_MAX_DIM), "whitening", &buf, &size, NULL)) != IMRET_OK)
        return rc;
    rc = imret_whitening_load_memory(buf, size, out);
    imret__release_file(buf, size, 0);
    return rc;
}
#endif

/* ======================================================================================
   [impl: hashing]
   LSH row b is row b of a Gaussian stream seeded with `seed` (imret__desc_gauss, row-major
   bits x dim), so the fallback LSH rows of a PCAH/ITQ layer are the same rows a pure LSH
   layer with that seed has. ITQ: V = (X - mu) E_k (top-k PCA), R0 random orthogonal (QR of
   a Gaussian k x k from seed ^ 0x1D1D...) or given; each iteration B = sign(V R) (0 -> +1),
   R = polar factor of V^T B (from the eigendecomposition of (V^T B)^T (V^T B)); the layer
   is W = (E_k R)^T.
   File format (version 1, little-endian), 64-byte header then float32 arrays:
     0  magic "\x89IMRHSH\n"        8  u32 version (1)     12 u32 header bytes (64)
     16 u64 file size               24 u32 in_dim D         28 u32 bits B
     32 u32 method                  36 u32 learned bits     40 u64 seed
     48 u64 training vectors n      56 u32 ITQ iterations
     60 u32 CRC-32 (zlib) of bytes [0, 60) followed by [64, end)
     64 mean[D], bias[B], weight[B][D]
   ====================================================================================== */
#define IMRET__HSH_MAGIC "\x89IMRHSH\n"

struct imret_hash {
    imret_hash_method method;
    size_t in_dim;
    int bits, learned_bits, itq_iterations;
    uint64_t seed, n_train;
    float *mean, *bias, *weight; /* one allocation: mean | bias | weight */
    double *itq_loss, *itq_rot;
    char message[256];
};

IMRET_DEF imret_hash_config imret_hash_config_init(void) {
    imret_hash_config c;
    memset(&c, 0, sizeof c);
    c.method = IMRET_HASH_ITQ;
    c.bits = 256;
    c.seed = 1;
    c.itq_iterations = 50;
    c.fallback = IMRET_HASH_FALLBACK_LSH;
    return c;
}

IMRET_DEF void imret_hash_free(imret_hash *h) {
    if (!h) return;
    IMRET_FREE(h->mean);
    IMRET_FREE(h->itq_loss);
    IMRET_FREE(h->itq_rot);
    IMRET_FREE(h);
}

static int imret__hash_bits_ok(int bits) { return bits == 64 || bits == 128 || bits == 256 || bits == 512 || bits == 1024; }

static imret_hash *imret__hash_alloc(size_t in_dim, int bits) {
    size_t n;
    imret_hash *h;
    if (!imret__mul(in_dim, (size_t)bits, &n) || !imret__add(n, in_dim + (size_t)bits, &n) || !imret__mul(n, sizeof(float), &n)) return NULL;
    h = (imret_hash *)imret__calloc(1, sizeof *h);
    if (!h) return NULL;
    h->mean = (float *)imret__calloc(n, 1);
    if (!h->mean) { IMRET_FREE(h); return NULL; }
    h->bias = h->mean + in_dim;
    h->weight = h->bias + bits;
    h->in_dim = in_dim;
    h->bits = bits;
    return h;
}

/* Rows [from, bits) of the LSH stream of seed. */
static void imret__hash_lsh_rows(imret_hash *h, int from) {
    imret__desc_rng g;
    size_t b, k;
    g.state = h->seed; g.has_spare = 0; g.spare = 0;
    for (b = 0; b < (size_t)h->bits; b++)
        for (k = 0; k < h->in_dim; k++) {
            double v = imret__desc_gauss(&g);
            if ((int)b >= from) h->weight[b * h->in_dim + k] = (float)v;
        }
}

/* Orthonormalise the columns of u (k x k, column-major: column j at u + j k) in order by
   modified Gram-Schmidt; a column that vanishes (rank-deficient input) is replaced by the
   first unit vector that is independent of the previous columns. */
static void imret__desc_orthonormalise(double *u, long k) {
    long j, p, q, basis = 0;
    for (j = 0; j < k; j++) {
        double *uj = u + (size_t)j * k, nrm;
        int tries = 0;
        for (;;) {
            for (p = 0; p < j; p++) {
                const double *up = u + (size_t)p * k;
                double dot = 0;
                for (q = 0; q < k; q++) dot += up[q] * uj[q];
                for (q = 0; q < k; q++) uj[q] -= dot * up[q];
            }
            nrm = 0;
            for (q = 0; q < k; q++) nrm += uj[q] * uj[q];
            nrm = sqrt(nrm);
            if (nrm > 1e-6 || tries > k) break;
            for (q = 0; q < k; q++) uj[q] = 0; /* degenerate: try the next unit vector */
            uj[basis++ % k] = 1;
            tries++;
        }
        for (q = 0; q < k; q++) uj[q] /= nrm;
    }
}

/* R = polar factor of m (k x k row-major) = S Sh^T for m = S Omega Sh^T: from the
   eigendecomposition m^T m = Sh Omega^2 Sh^T, S = m Sh Omega^-1 (re-orthonormalised). */
static int imret__desc_polar(const double *m, double *r, long k, double *g, double *u, double *w, double *scratch, int nt) {
    long i, j;
    (void)nt;
    /* g = m^T m, symmetric: g[i][j] = sum_q m[q][i] m[q][j] */
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (k >= 64)
#endif
    for (i = 0; i < k; i++) {
        double *IMRET__DESC_RESTRICT gi = g + (size_t)i * k;
        long qq, jj;
        for (jj = 0; jj < k; jj++) gi[jj] = 0;
        for (qq = 0; qq < k; qq++) {
            const double *IMRET__DESC_RESTRICT mq = m + (size_t)qq * k;
            const double mqi = mq[i];
            IMRET__PRAGMA_SIMD
            for (jj = 0; jj < k; jj++) gi[jj] += mqi * mq[jj];
        }
    }
    for (i = 0; i < k; i++) /* exact symmetry for the solver */
        for (j = 0; j < i; j++) g[(size_t)j * k + i] = g[(size_t)i * k + j] = 0.5 * (g[(size_t)i * k + j] + g[(size_t)j * k + i]);
    if (imret__desc_eigh(g, k, w, scratch, nt) != 0) return -1; /* g now holds Sh column-major */
    /* u column j = m sh_j / omega_j */
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (k >= 64)
#endif
    for (j = 0; j < k; j++) {
        const double *sh = g + (size_t)j * k;
        double om = w[j] > 0 ? sqrt(w[j]) : 0, *uj = u + (size_t)j * k;
        long rr, qq;
        for (rr = 0; rr < k; rr++) {
            const double *mr = m + (size_t)rr * k;
            double s = 0;
            IMRET__DESC_SIMD_SUM(s)
            for (qq = 0; qq < k; qq++) s += mr[qq] * sh[qq];
            uj[rr] = om > 0 ? s / om : 0;
        }
    }
    imret__desc_orthonormalise(u, k);
    /* r[i][q] = sum_j u[j][i] sh[j][q]  (u, sh column-major) */
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (k >= 64)
#endif
    for (i = 0; i < k; i++) {
        double *IMRET__DESC_RESTRICT ri = r + (size_t)i * k;
        long jj, qq;
        for (qq = 0; qq < k; qq++) ri[qq] = 0;
        for (jj = 0; jj < k; jj++) {
            const double uji = u[(size_t)jj * k + i];
            const double *IMRET__DESC_RESTRICT sj = g + (size_t)jj * k;
            IMRET__PRAGMA_SIMD
            for (qq = 0; qq < k; qq++) ri[qq] += uji * sj[qq];
        }
    }
    return 0;
}

/* ITQ on v (n x k row-major, centred PCA projections). r in: initial rotation, out: learned.
   loss: iters + 1 values. */
static imret_result imret__hash_itq(const double *v, size_t n, long k, int iters, double *r, double *loss, int nt) {
    double *z, *m, *g, *u, *w, *scratch;
    long it, i;
    imret_result rc = IMRET_OK;
    size_t kk = (size_t)k * k;
    z = (double *)imret__calloc(n * (size_t)k, sizeof(double));
    m = (double *)imret__calloc(kk, sizeof(double));
    g = (double *)imret__calloc(kk, sizeof(double));
    u = (double *)imret__calloc(kk, sizeof(double));
    w = (double *)imret__calloc((size_t)k, sizeof(double));
    scratch = (double *)imret__calloc((size_t)k, sizeof(double));
    if (!z || !m || !g || !u || !w || !scratch) { rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_train: out of memory (ITQ)"); goto done; }
    for (it = 0; it <= iters; it++) {
        double l = 0;
        /* z = sign... first z = v r, rows split over threads */
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n * (size_t)k > 65536)
#endif
        for (i = 0; i < (long)n; i++) {
            const double *vi = v + (size_t)i * k;
            double *IMRET__DESC_RESTRICT zi = z + (size_t)i * k;
            long a, q;
            for (q = 0; q < k; q++) zi[q] = 0;
            for (a = 0; a < k; a++) {
                const double via = vi[a];
                const double *IMRET__DESC_RESTRICT ra = r + (size_t)a * k;
                IMRET__PRAGMA_SIMD
                for (q = 0; q < k; q++) zi[q] += via * ra[q];
            }
        }
        for (i = 0; i < (long)(n * (size_t)k); i++) { /* loss of B = sign(z), then z <- B */
            double b = z[i] >= 0 ? 1.0 : -1.0;
            l += (b - z[i]) * (b - z[i]);
            z[i] = b;
        }
        loss[it] = l / (double)n;
        if (it == iters) break;
        /* m = v^T B: m[a][q] = sum_t v[t][a] B[t][q]. Blocks of 32 rows of m (in cache)
           are split over threads, each streaming B once: row by row it read B k times. */
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (k >= 64)
#endif
        for (i = 0; i < (k + 31) / 32; i++) {
            long a0 = i * 32, a1 = a0 + 32 < k ? a0 + 32 : k, a, q;
            size_t t;
            for (a = a0; a < a1; a++)
                for (q = 0; q < k; q++) m[(size_t)a * k + q] = 0;
            for (t = 0; t < n; t++) {
                const double *IMRET__DESC_RESTRICT bt = z + t * (size_t)k;
                const double *vt = v + t * (size_t)k;
                for (a = a0; a < a1; a++) {
                    double *IMRET__DESC_RESTRICT ma = m + (size_t)a * k;
                    const double vta = vt[a];
                    IMRET__PRAGMA_SIMD
                    for (q = 0; q < k; q++) ma[q] += vta * bt[q];
                }
            }
        }
        if (imret__desc_polar(m, r, k, g, u, w, scratch, nt) != 0) {
            rc = imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: ITQ rotation update did not converge (iteration %ld)", it);
            goto done;
        }
    }
done:
    IMRET_FREE(z); IMRET_FREE(m); IMRET_FREE(g); IMRET_FREE(u); IMRET_FREE(w); IMRET_FREE(scratch);
    return rc;
}

IMRET_DEF imret_result imret_hash_train(const float *x, size_t n, size_t dim, const imret_hash_config *cfg, imret_hash **out) {
    imret_hash_config def = imret_hash_config_init();
    imret_hash *h;
    double *mean = NULL, *vec = NULL, *val = NULL, *v = NULL;
    size_t rank = 0, i, j;
    long k = 0;
    int nt;
    imret_result rc = IMRET_OK;
    static const char *const names[] = {"lsh", "pcah", "itq", "linear"};
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: out is NULL");
    *out = NULL;
    if (!cfg) cfg = &def;
    nt = imret__threads(cfg->threads);
    if (!imret__hash_bits_ok(cfg->bits))
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: %d bits (64, 128, 256, 512 or 1024)", cfg->bits);
    if ((unsigned)cfg->method > IMRET_HASH_ITQ)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: method %d (LSH, PCAH or ITQ; a given layer goes through imret_hash_create_linear)",
                           (int)cfg->method);
    if (!dim || dim > IMRET__DESC_MAX_DIM) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: dimension %lu (1..%d)", (unsigned long)dim, IMRET__DESC_MAX_DIM);
    if ((unsigned)cfg->fallback > IMRET_HASH_FALLBACK_REFUSE || cfg->itq_iterations < 0 || cfg->itq_iterations > 10000)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: options out of range (fallback %d, itq_iterations %d)", (int)cfg->fallback,
                           cfg->itq_iterations);
    if (n && !x) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: x is NULL with n = %lu", (unsigned long)n);
    if (cfg->method != IMRET_HASH_LSH && n < 2)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: %s needs training vectors (%lu given, at least 2)", names[cfg->method], (unsigned long)n);
    h = imret__hash_alloc(dim, cfg->bits);
    if (!h) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_train: out of memory");
    h->method = cfg->method;
    h->seed = cfg->seed;
    h->n_train = n;
    if (cfg->method == IMRET_HASH_LSH) {
        if (n) { /* centre on the training mean */
            double *mu = (double *)imret__calloc(dim, sizeof(double));
            if (!mu) { rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_train: out of memory"); goto fail; }
            for (i = 0; i < n; i++)
                for (j = 0; j < dim; j++) mu[j] += x[i * dim + j];
            for (j = 0; j < dim; j++) {
                h->mean[j] = (float)(mu[j] / (double)n);
                if (!imret__desc_finite(h->mean[j])) { IMRET_FREE(mu); rc = imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: non-finite training values"); goto fail; }
            }
            IMRET_FREE(mu);
        }
        imret__hash_lsh_rows(h, 0);
        *out = h;
        return IMRET_OK;
    }
    if ((rc = imret__desc_pca(x, n, dim, cfg->threads, "imret_hash_train", &mean, &vec, &val)) != IMRET_OK) goto fail;
    for (i = 0; i < dim; i++)
        if (val[i] > 1e-10 * val[0] && val[0] > 0) rank++;
    if (rank > n - 1) rank = n - 1;
    k = (long)(rank < (size_t)cfg->bits ? rank : (size_t)cfg->bits);
    if (k < cfg->bits) {
        if (cfg->fallback == IMRET_HASH_FALLBACK_REFUSE) {
            rc = imret__fail(IMRET_ERROR_INVALID_ARGUMENT,
                             "imret_hash_train: %s with %d bits needs a training set of rank >= %d; these %lu vectors of dimension %lu have rank %lu",
                             names[cfg->method], cfg->bits, cfg->bits, (unsigned long)n, (unsigned long)dim, (unsigned long)rank);
            goto fail;
        }
        snprintf(h->message, sizeof h->message, "%s: training set rank %lu < %d bits (%lu vectors, dimension %lu): %ld %s bits + %ld LSH bits",
                 names[cfg->method], (unsigned long)rank, cfg->bits, (unsigned long)n, (unsigned long)dim, k, names[cfg->method],
                 (long)cfg->bits - k);
    }
    if (cfg->itq_init && cfg->method == IMRET_HASH_ITQ) { /* a given initial rotation must be k x k and orthogonal */
        double worst = 0;
        long a, b2, q;
        for (a = 0; a < k; a++)
            for (b2 = 0; b2 < k; b2++) {
                double s = 0;
                for (q = 0; q < k; q++) s += (double)cfg->itq_init[q * k + a] * cfg->itq_init[q * k + b2];
                s -= a == b2;
                if (fabs(s) > worst || !(s == s)) worst = s == s ? fabs(s) : 1e30;
            }
        if (worst > 1e-3) {
            rc = imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_train: itq_init is not a %ld x %ld orthogonal matrix (max |R^T R - I| = %g)", k, k, worst);
            goto fail;
        }
    }
    h->learned_bits = (int)k;
    for (j = 0; j < dim; j++) h->mean[j] = (float)mean[j];
    if (cfg->method == IMRET_HASH_PCAH) {
        for (i = 0; i < (size_t)k; i++)
            for (j = 0; j < dim; j++) h->weight[i * dim + j] = (float)vec[i * dim + j];
    } else if (k > 0) {
        double *r;
        long a, q, it;
        h->itq_iterations = cfg->itq_iterations;
        h->itq_loss = (double *)imret__calloc((size_t)cfg->itq_iterations + 1, sizeof(double));
        h->itq_rot = r = (double *)imret__calloc((size_t)k * k, sizeof(double));
        v = (double *)imret__calloc(n * (size_t)k, sizeof(double));
        if (!h->itq_loss || !r || !v) { rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_train: out of memory (ITQ, %lu x %ld)", (unsigned long)n, k); goto fail; }
        /* v = (x - mu) E_k */
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 16)
#endif
        for (it = 0; it < (long)n; it++) {
            const float *xi = x + (size_t)it * dim;
            long aa;
            for (aa = 0; aa < k; aa++) {
                const double *e = vec + (size_t)aa * dim;
                double s = 0;
                size_t d;
                IMRET__DESC_SIMD_SUM(s)
                for (d = 0; d < dim; d++) s += ((double)xi[d] - mean[d]) * e[d];
                v[(size_t)it * k + aa] = s;
            }
        }
        if (cfg->itq_init) {
            for (a = 0; a < k * k; a++) r[a] = cfg->itq_init[a];
        } else { /* random orthogonal: Gram-Schmidt on a Gaussian matrix (columns) */
            imret__desc_rng g;
            double *u = (double *)imret__calloc((size_t)k * k, sizeof(double));
            if (!u) { rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_train: out of memory"); goto fail; }
            g.state = cfg->seed ^ 0x1D1D1D1D1D1D1D1Dull; g.has_spare = 0; g.spare = 0;
            for (a = 0; a < k * k; a++) u[a] = imret__desc_gauss(&g);
            imret__desc_orthonormalise(u, k);
            for (a = 0; a < k; a++) /* u column-major -> r row-major: r[q][a] = u[a][q] */
                for (q = 0; q < k; q++) r[q * k + a] = u[a * k + q];
            IMRET_FREE(u);
        }
        if ((rc = imret__hash_itq(v, n, k, cfg->itq_iterations, r, h->itq_loss, nt)) != IMRET_OK) goto fail;
        /* W row b = column b of E_k R:  W[b][d] = sum_a E[a][d] R[a][b], accumulated in double */
        IMRET_FREE(v);
        v = (double *)imret__calloc((size_t)k * dim, sizeof(double));
        if (!v) { rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_train: out of memory"); goto fail; }
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (k >= 64)
#endif
        for (it = 0; it < k; it++) {
            double *IMRET__DESC_RESTRICT acc = v + (size_t)it * dim;
            long aa;
            size_t d;
            for (aa = 0; aa < k; aa++) {
                const double rab = r[(size_t)aa * k + it];
                const double *IMRET__DESC_RESTRICT e = vec + (size_t)aa * dim;
                IMRET__PRAGMA_SIMD
                for (d = 0; d < dim; d++) acc[d] += rab * e[d];
            }
            for (d = 0; d < dim; d++) h->weight[(size_t)it * dim + d] = (float)acc[d];
        }
    }
    if (k < cfg->bits) imret__hash_lsh_rows(h, (int)k);
    IMRET_FREE(mean); IMRET_FREE(vec); IMRET_FREE(val); IMRET_FREE(v);
    *out = h;
    return IMRET_OK;
fail:
    IMRET_FREE(mean); IMRET_FREE(vec); IMRET_FREE(val); IMRET_FREE(v);
    imret_hash_free(h);
    return rc;
}

IMRET_DEF imret_result imret_hash_create_linear(const float *weight, const float *bias, const float *mean, size_t dim, int bits,
                                                imret_hash **out) {
    imret_hash *h;
    size_t i, nf;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_create_linear: out is NULL");
    *out = NULL;
    if (!weight) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_create_linear: weight is NULL");
    if (!imret__hash_bits_ok(bits)) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_create_linear: %d bits (64, 128, 256, 512 or 1024)", bits);
    if (!dim || dim > IMRET__DESC_MAX_DIM)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_hash_create_linear: dimension %lu (1..%d)", (unsigned long)dim, IMRET__DESC_MAX_DIM);
    h = imret__hash_alloc(dim, bits);
    if (!h) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_create_linear: out of memory");
    h->method = IMRET_HASH_LINEAR;
    h->learned_bits = bits;
    for (i = 0; i < dim; i++) h->mean[i] = mean ? mean[i] : 0.0f;
    for (i = 0; i < (size_t)bits; i++) h->bias[i] = bias ? bias[i] : 0.0f;
    memcpy(h->weight, weight, (size_t)bits * dim * sizeof(float));
    nf = dim + (size_t)bits + (size_t)bits * dim;
    for (i = 0; i < nf; i++)
        if (!imret__desc_finite(h->mean[i])) {
            imret_hash_free(h);
            return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_create_linear: non-finite value in the %s",
                               i < dim ? "mean" : i < dim + (size_t)bits ? "bias" : "weight");
        }
    *out = h;
    return IMRET_OK;
}

IMRET_DEF imret_result imret_hash_get_info(const imret_hash *h, imret_hash_info *info) {
    if (!h || !info) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    info->method = h->method;
    info->in_dim = h->in_dim;
    info->bits = h->bits;
    info->words = h->bits / 64;
    info->learned_bits = h->learned_bits;
    info->seed = h->seed;
    info->n_train = h->n_train;
    info->itq_iterations = h->itq_iterations;
    info->message = h->message;
    info->mean = h->mean;
    info->weight = h->weight;
    info->bias = h->bias;
    info->itq_loss = h->itq_loss;
    info->itq_rotation = h->itq_rot;
    return IMRET_OK;
}

IMRET_DEF imret_result imret_hash_encode(const imret_hash *h, const float *x, size_t n, size_t dim, uint64_t *codes, size_t words,
                                         int threads) {
    long i;
    int nt = imret__threads(threads);
    (void)nt;
    if (!h || (n && (!x || !codes))) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_encode: NULL argument");
    if (dim != h->in_dim)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_hash_encode: descriptors have %lu dimensions, the hash layer takes %lu", (unsigned long)dim,
                           (unsigned long)h->in_dim);
    if (words != (size_t)h->bits / 64)
        return imret__fail(IMRET_ERROR_SHAPE, "imret_hash_encode: codes of %lu words, the hash layer gives %d bits = %d words", (unsigned long)words,
                           h->bits, h->bits / 64);
    if (n > (size_t)LONG_MAX / dim) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_encode: %lu vectors is too many", (unsigned long)n);
#if IMRET__OMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 1)
#endif
    for (i = 0; i < (long)n; i++) {
        const float *xi = x + (size_t)i * dim;
        uint64_t *code = codes + (size_t)i * words;
        size_t b, k;
        for (b = 0; b < words; b++) code[b] = 0;
        for (b = 0; b < (size_t)h->bits; b++) {
            const float *wb = h->weight + b * dim;
            double s = h->bias[b];
            for (k = 0; k < dim; k++) s += (double)wb[k] * ((double)xi[k] - h->mean[k]);
            if (s > 0) code[b >> 6] |= (uint64_t)1 << (b & 63);
        }
    }
    return IMRET_OK;
}

static size_t imret__hash_size(size_t dim, int bits) { return IMRET__DESC_HEADER + 4 * (dim + (size_t)bits + dim * (size_t)bits); }

IMRET_DEF imret_result imret_hash_save_memory(const imret_hash *h, void *buf, size_t cap, size_t *size) {
    uint8_t *p = (uint8_t *)buf;
    size_t total, i, nf;
    if (!h || !size) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_save_memory: NULL argument");
    *size = total = imret__hash_size(h->in_dim, h->bits);
    if (!buf) return IMRET_OK;
    if (cap < total)
        return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_save_memory: buffer of %lu bytes, needs %lu", (unsigned long)cap, (unsigned long)total);
    memset(p, 0, IMRET__DESC_HEADER);
    memcpy(p, IMRET__HSH_MAGIC, 8);
    imret__wr32(p + 8, 1);
    imret__wr32(p + 12, IMRET__DESC_HEADER);
    imret__wr64(p + 16, (uint64_t)total);
    imret__wr32(p + 24, (uint32_t)h->in_dim);
    imret__wr32(p + 28, (uint32_t)h->bits);
    imret__wr32(p + 32, (uint32_t)h->method);
    imret__wr32(p + 36, (uint32_t)h->learned_bits);
    imret__wr64(p + 40, h->seed);
    imret__wr64(p + 48, h->n_train);
    imret__wr32(p + 56, (uint32_t)h->itq_iterations);
    nf = h->in_dim + (size_t)h->bits + h->in_dim * (size_t)h->bits;
    for (i = 0; i < nf; i++) imret__desc_wrf(p + IMRET__DESC_HEADER + 4 * i, h->mean[i]);
    imret__wr32(p + 60, imret__crc32(imret__crc32(0, p, 60), p + IMRET__DESC_HEADER, total - IMRET__DESC_HEADER));
    return IMRET_OK;
}

IMRET_DEF imret_result imret_hash_load_memory(const void *data, size_t size, imret_hash **out) {
    const uint8_t *p = (const uint8_t *)data;
    const char *what = "hash";
    uint32_t dim, bits, method, learned, iters;
    imret_hash *h;
    size_t i, nf;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_load_memory: out is NULL");
    *out = NULL;
    if (!data) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_load_memory: data is NULL");
    if ((rc = imret__desc_check_file(p, size, IMRET__HSH_MAGIC, what)) != IMRET_OK) return rc;
    dim = imret__rd32(p + 24);
    bits = imret__rd32(p + 28);
    method = imret__rd32(p + 32);
    learned = imret__rd32(p + 36);
    iters = imret__rd32(p + 56);
    if (!dim || dim > IMRET__DESC_MAX_DIM || bits > 1024 || !imret__hash_bits_ok((int)bits))
        return imret__fail(IMRET_ERROR_FORMAT, "%s: dimension %u, %u bits (need 1..%d and 64/128/256/512/1024)", what, (unsigned)dim, (unsigned)bits,
                           IMRET__DESC_MAX_DIM);
    if (method > IMRET_HASH_LINEAR || learned > bits || iters > 10000)
        return imret__fail(IMRET_ERROR_FORMAT, "%s: method %u, learned bits %u, iterations %u out of range", what, (unsigned)method, (unsigned)learned,
                           (unsigned)iters);
    if (imret__hash_size(dim, (int)bits) != size)
        return imret__fail(IMRET_ERROR_FORMAT, "%s: dimension %u and %u bits need %lu bytes, the file has %lu", what, (unsigned)dim, (unsigned)bits,
                           (unsigned long)imret__hash_size(dim, (int)bits), (unsigned long)size);
    h = imret__hash_alloc(dim, (int)bits);
    if (!h) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "%s: out of memory", what);
    h->method = (imret_hash_method)method;
    h->learned_bits = (int)learned;
    h->seed = imret__rd64(p + 40);
    h->n_train = imret__rd64(p + 48);
    h->itq_iterations = (int)iters;
    nf = (size_t)dim + bits + (size_t)dim * bits;
    for (i = 0; i < nf; i++) {
        h->mean[i] = imret__desc_rdf(p + IMRET__DESC_HEADER + 4 * i);
        if (!imret__desc_finite(h->mean[i])) {
            imret_hash_free(h);
            return imret__fail(IMRET_ERROR_FORMAT, "%s: non-finite value at float %lu of the data", what, (unsigned long)i);
        }
    }
    if ((method == IMRET_HASH_PCAH || method == IMRET_HASH_ITQ) && learned < bits)
        snprintf(h->message, sizeof h->message, "%s: %u learned bits + %u LSH bits", method == IMRET_HASH_PCAH ? "pcah" : "itq", (unsigned)learned,
                 (unsigned)(bits - learned));
    *out = h;
    return IMRET_OK;
}

#ifndef IMRET_NO_STDIO
IMRET_DEF imret_result imret_hash_save_file(const imret_hash *h, const char *path) {
    size_t size;
    uint8_t *buf;
    imret_result rc;
    if (!h || !path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_save_file: NULL argument");
    imret_hash_save_memory(h, NULL, 0, &size);
    buf = (uint8_t *)imret__malloc(size);
    if (!buf) return imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "imret_hash_save_file: out of memory");
    rc = imret_hash_save_memory(h, buf, size, &size);
    if (rc == IMRET_OK) rc = imret__write_atomic(path, buf, size, "hash");
    IMRET_FREE(buf);
    return rc;
}

IMRET_DEF imret_result imret_hash_load_file(const char *path, imret_hash **out) {
    uint8_t *buf;
    size_t size;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_load_file: out is NULL");
    *out = NULL;
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_hash_load_file: path is NULL");
    if ((rc = imret__read_file(path, imret__hash_size(IMRET__DESC_MAX_DIM, 1024), "hash", &buf, &size, NULL)) != IMRET_OK) return rc;
    rc = imret_hash_load_memory(buf, size, out);
    imret__release_file(buf, size, 0);
    return rc;
}
#endif

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
    rc = imret__write_atomic(path, buf, L.end, "index save");
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

/* The fp32 dot kernel of a dispatch level (the linear layers, [impl: kernels (scalar)]);
   NULL for SCALAR: those keep their double-precision oracle. */
static imret__idx_dot_fn imret__dot_f32_for(imret_simd level) {
    level = imret__simd_resolve(level);
#if IMRET__X86
    if (level == IMRET_SIMD_AVX512) return imret__idx_dot_f32_avx512;
    if (level == IMRET_SIMD_AVX2) return imret__idx_dot_f32_avx2;
#endif
    return NULL;
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
    rc = imret__write_atomic(path, buf, total, "FAISS export");
    IMRET_FREE(buf);
    return rc;
}

#endif /* IMRET_NO_STDIO */

IMRET_DEF imret_result imret_index_import_faiss_memory(const void *data_, size_t size, const imret_index_config *cfg,
                                                       const uint64_t *ids, imret_index **out) {
    const uint8_t *data = (const uint8_t *)data_;
    imret_index_config c = cfg ? *cfg : imret_index_config_init();
    size_t n, d, per, hdr, i, j;
    int binary;
    imret_result rc;
    imret_index *idx = NULL;
    float *v = NULL;
    uint64_t *code = NULL;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_import_faiss: out is NULL");
    *out = NULL;
    if (!data && size) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_import_faiss: data is NULL");
#define IMRET__FX(...) do { rc = imret__fail(IMRET_ERROR_FORMAT, __VA_ARGS__); goto done; } while (0)
    if (size < 4) IMRET__FX("faiss index: %lu bytes", (unsigned long)size);
    binary = !memcmp(data, "IBxF", 4);
    if (!binary && memcmp(data, "IxFI", 4) != 0)
        IMRET__FX("faiss index: fourcc '%.4s' is neither IxFI (IndexFlatIP) nor IBxF (IndexBinaryFlat)", (const char *)data);
    hdr = binary ? 33 : 45;
    if (size < hdr) IMRET__FX("faiss index: header truncated (%lu bytes)", (unsigned long)size);
    if (binary) {
        uint32_t bits = imret__rd32(data + 4), cs = imret__rd32(data + 8);
        uint64_t nt = imret__rd64(data + 12), nb = imret__rd64(data + 25);
        if (bits == 0 || bits > IMRET_INDEX_MAX_BITS || bits % 8 || cs != bits / 8) IMRET__FX("faiss index: d=%u code_size=%u", bits, cs);
        if (data[20] != 1 || imret__rd32(data + 21) != 1) IMRET__FX("faiss index: not a trained Hamming index");
        if (nt > size || nb != nt * cs || nb != size - hdr) IMRET__FX("faiss index: %llu codes of %u bytes do not fill %lu bytes", (unsigned long long)nt, cs, (unsigned long)size);
        n = (size_t)nt;
        per = cs;
        c.bits = bits;
        c.dim = 0;
    } else {
        uint32_t dim = imret__rd32(data + 4);
        uint64_t nt = imret__rd64(data + 8), nf = imret__rd64(data + 37);
        if (dim == 0 || dim > IMRET_INDEX_MAX_DIM) IMRET__FX("faiss index: d=%u", dim);
        if (imret__rd32(data + 33) != 0) IMRET__FX("faiss index: metric %u is not inner product", imret__rd32(data + 33));
        if (nt > size || nf != nt * dim || nf > (size - hdr) / 4 || nf * 4 != size - hdr)
            IMRET__FX("faiss index: %llu vectors of %u floats do not fill %lu bytes", (unsigned long long)nt, dim, (unsigned long)size);
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
        rc = imret__fail(IMRET_ERROR_OUT_OF_MEMORY, "faiss index: out of memory for %lu entries", (unsigned long)n);
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
            rc = imret__fail(rc == IMRET_ERROR_INVALID_ARGUMENT ? IMRET_ERROR_FORMAT : rc, "faiss index: entry %lu: %s", (unsigned long)i, tmp);
            goto done;
        }
    }
    *out = idx;
    idx = NULL;
done:
    imret_index_destroy(idx);
    IMRET_FREE(v);
    IMRET_FREE(code);
    return rc;
}

#ifndef IMRET_NO_STDIO
IMRET_DEF imret_result imret_index_import_faiss(const char *path, const imret_index_config *cfg, const uint64_t *ids,
                                                imret_index **out) {
    uint8_t *data = NULL;
    size_t size = 0;
    int mapped = 1;
    imret_result rc;
    if (!out) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_import_faiss: out is NULL");
    *out = NULL;
    if (!path) return imret__fail(IMRET_ERROR_INVALID_ARGUMENT, "imret_index_import_faiss: path is NULL");
    if ((rc = imret__read_file(path, SIZE_MAX, "faiss index", &data, &size, &mapped)) != IMRET_OK) return rc;
    rc = imret_index_import_faiss_memory(data, size, cfg, ids, out);
    imret__release_file(data, size, mapped);
    if (rc != IMRET_OK) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", imret_last_error());
        imret__fail(rc, "%s: %s", path, tmp);
    }
    return rc;
}
#endif /* IMRET_NO_STDIO */

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
