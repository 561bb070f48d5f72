/* parts/descriptor.h -- descriptor helpers, PCA-whitening and the deep-hash layer of imret.
   Written as a part of imret.h (it will be pasted into it): include it right after imret.h,

       #define IMRET_IMPLEMENTATION
       #include "imret.h"
       #include "parts/descriptor.h"

   Pooling (MAC/SPoC/GeM/R-MAC), imret_describe() and the 8-transform descriptors already
   live in imret.h's [api: descriptors]; this part adds what a host needs around them:

     [api: descriptors]  imret_descriptor_combine (multi-scale average of pooled vectors),
                         imret_tensor_orient (the 8 rotations/flips of a C x H x W tensor)
     [api: whitening]    PCA-whitening learned in C, applied, saved and loaded
     [api: hashing]      codes = sign(W (x - mu) + b) from LSH, PCAH, ITQ or a given linear layer
*/
#ifndef IMRET_DESCRIPTOR_PART_API
#define IMRET_DESCRIPTOR_PART_API

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================
   [api: descriptors] (helpers)
   ====================================================================================== */

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

#ifdef __cplusplus
}
#endif
#endif /* IMRET_DESCRIPTOR_PART_API */

/* ######################################################################################
   IMPLEMENTATION (part: descriptors, whitening, hashing)
   ###################################################################################### */
#ifdef IMRET_IMPLEMENTATION
#ifndef IMRET_DESCRIPTOR_PART_IMPL
#define IMRET_DESCRIPTOR_PART_IMPL

#if defined(__cplusplus)
#define IMRET__DESC_RESTRICT __restrict
#else
#define IMRET__DESC_RESTRICT restrict
#endif

/* ======================================================================================
   [impl: descriptors] (helpers)
   ====================================================================================== */
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

/* ---- crash-safe file writes: temporary file in the target's directory, fsync, rename,
   fsync of the directory; a crash leaves the old or the new file, never a torn one. ---- */
#ifndef IMRET_NO_STDIO
static imret_result imret__desc_write_atomic(const char *path, const uint8_t *data, size_t size, const char *what) {
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
        ssize_t r = write(fd, data + done, size - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { rc = imret__fail(IMRET_ERROR_IO, "%s: write error on %s: %s", what, tmp, r < 0 ? strerror(errno) : "no progress"); break; }
        done += (size_t)r;
    }
    if (rc == IMRET_OK && fsync(fd) != 0) rc = imret__fail(IMRET_ERROR_IO, "%s: fsync of %s failed: %s", what, tmp, strerror(errno));
    if (close(fd) != 0 && rc == IMRET_OK) rc = imret__fail(IMRET_ERROR_IO, "%s: close of %s failed: %s", what, tmp, strerror(errno));
    if (rc == IMRET_OK && rename(tmp, path) != 0) rc = imret__fail(IMRET_ERROR_IO, "%s: cannot rename %s to %s: %s", what, tmp, path, strerror(errno));
    if (rc != IMRET_OK) {
        unlink(tmp);
    } else { /* make the rename itself durable */
        char *slash = strrchr(tmp, '/');
        int dfd;
        if (slash) { if (slash == tmp) slash[1] = 0; else *slash = 0; }
        dfd = open(slash ? tmp : ".", O_RDONLY);
        if (dfd >= 0) { (void)fsync(dfd); close(dfd); }
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
#endif

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
    if (rc == IMRET_OK) rc = imret__desc_write_atomic(path, buf, size, "whitening");
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
    if (rc == IMRET_OK) rc = imret__desc_write_atomic(path, buf, size, "hash");
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

#endif /* IMRET_DESCRIPTOR_PART_IMPL */
#endif /* IMRET_IMPLEMENTATION */
