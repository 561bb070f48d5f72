/* SIMD convolution kernels vs the scalar oracle (im2col + imret__gemm_scalar) on awkward
   sizes: channels 1, 3, 7, 17, 63, 65, 257; spatial 1x1, 7x9, 13x17, 31x5; kernels 1, 3, 7;
   strides 1, 2; with and without padding, residual and ReLU. Every ISA this CPU supports is
   checked; each must agree with the oracle within 1e-5 x max|ref| (summation order differs)
   and be bit-identical for 1 and 2 threads.
   Then Winograd F(4x4, 3x3) (imret__conv_winograd) vs the same oracle on 3x3 stride-1 layers:
   outputs smaller than, equal to and not a multiple of the 4x4 tile, padding 0/1/2. Its
   rounding differs from the direct sum (transform constants), so its bound is WG_TOL x
   max|ref| (the measured worst is printed); a wrong transform gives errors of order 1. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

#define WG_TOL 3e-5

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* One random layer, its packed weights and the oracle's output. */
typedef struct conv_case {
    int in_c, out_c, h, w, k, stride, pad, oh, ow, K;
    long N;
    size_t nout;
    float *x, *wp, *bias, *res, *ref, *o1, *o2;
    imret__epilogue ep;
} conv_case;

static void case_make(conv_case *c, int in_c, int out_c, int h, int w, int k, int stride, int pad, int relu, int with_res) {
    size_t i, nin = (size_t)in_c * h * w;
    float *wt, *col;
    memset(c, 0, sizeof *c);
    c->in_c = in_c; c->out_c = out_c; c->h = h; c->w = w; c->k = k; c->stride = stride; c->pad = pad;
    c->oh = imret__out_dim(h, k, stride, pad); c->ow = imret__out_dim(w, k, stride, pad);
    c->K = in_c * k * k;
    c->N = (long)c->oh * c->ow;
    c->nout = (size_t)out_c * c->N;
    c->x = (float *)malloc(nin * 4); wt = (float *)malloc((size_t)out_c * c->K * 4);
    c->bias = (float *)malloc(out_c * 4); c->res = (float *)malloc(c->nout * 4);
    col = (float *)malloc((size_t)c->K * c->N * 4); c->ref = (float *)malloc(c->nout * 4);
    c->o1 = (float *)malloc(c->nout * 4); c->o2 = (float *)malloc(c->nout * 4);
    for (i = 0; i < nin; i++) c->x[i] = frand();
    for (i = 0; i < (size_t)out_c * c->K; i++) wt[i] = frand();
    for (i = 0; i < (size_t)out_c; i++) c->bias[i] = frand();
    for (i = 0; i < c->nout; i++) c->res[i] = frand();
    c->wp = (float *)calloc(imret__wp_floats(out_c, c->K), 4);
    imret__pack_rows(c->wp, c->K, 0, out_c, wt);
    c->ep.bias = c->bias; c->ep.residual = with_res ? c->res : NULL; c->ep.relu = relu;
    imret__im2col(c->x, in_c, h, w, k, stride, pad, c->ow, 0, c->N, col, 1);
    imret__gemm_scalar(out_c, (int)c->N, c->K, c->wp, col, (size_t)c->N, c->ref, (size_t)c->N, &c->ep, 1);
    free(wt); free(col);
}

/* o1 (1 thread) vs the oracle within tol x max(max|ref|, 1), and o1 == o2 (2 threads) bit for
   bit. Returns 1 on failure; *worst tracks the worst max|diff| / max|ref|. */
static int case_check(const conv_case *c, double tol, const char *what, const char *level, double *worst) {
    double maxref = 0, maxdiff = 0;
    size_t i;
    int differs = memcmp(c->o1, c->o2, c->nout * 4) != 0;
    for (i = 0; i < c->nout; i++) {
        double d = fabs((double)c->o1[i] - c->ref[i]);
        if (fabs(c->ref[i]) > maxref) maxref = fabs(c->ref[i]);
        if (!(d <= maxdiff)) maxdiff = d;
    }
    if (maxref > 0 && maxdiff / maxref > *worst) *worst = maxdiff / maxref;
    if (maxdiff > tol * (maxref > 1 ? maxref : 1) || differs) {
        printf("  FAIL %s %s in %d out %d %dx%d k%d s%d p%d: max|diff| %.3g (max|ref| %.3g)%s\n", what, level, c->in_c, c->out_c,
               c->h, c->w, c->k, c->stride, c->pad, maxdiff, maxref, differs ? ", differs between 1 and 2 threads" : "");
        return 1;
    }
    return 0;
}

static void case_free(conv_case *c) {
    free(c->x); free(c->wp); free(c->bias); free(c->res); free(c->ref); free(c->o1); free(c->o2);
}

/* The case's GEMM with B from src, at 1 and 2 threads (into o1 and o2), checked. */
static int gemm_check(conv_case *c, const imret__kernels *kern, const imret__bsrc *src, float *pack, const char *what,
                      double *worst) {
    memset(c->o1, 0, c->nout * 4);
    imret__conv_gemm_fast(kern, c->out_c, c->N, c->K, c->wp, src, c->o1, &c->ep, pack, 1);
    imret__conv_gemm_fast(kern, c->out_c, c->N, c->K, c->wp, src, c->o2, &c->ep, pack, 2);
    return case_check(c, 1e-5, what, imret_simd_name(kern->level), worst);
}

/* The case's GEMM again, on kern with epilogue ep into out (which starts as the residual when ep
   reads its residual from out) at `threads`: 1 and a FAIL line saying `what` when it is not o1
   bit for bit. */
static int same_bits(const conv_case *c, const imret__kernels *kern, const imret__bsrc *src, float *pack, const imret__epilogue *ep,
                     float *out, int threads, const char *what) {
    if (ep->residual == out) memcpy(out, c->res, c->nout * 4);
    imret__conv_gemm_fast(kern, c->out_c, c->N, c->K, c->wp, src, out, ep, pack, threads);
    if (!memcmp(c->o1, out, c->nout * 4)) return 0;
    printf("FAIL gemm %s %d>%d %dx%d k%d s%d, %d threads: %s\n", imret_simd_name(kern->level), c->in_c, c->out_c, c->h, c->w, c->k,
           c->stride, threads, what);
    return 1;
}

static const int chans[] = {1, 3, 7, 17, 63, 65, 257};
static const imret_simd levels[] = {IMRET_SIMD_AVX2, IMRET_SIMD_AVX512, IMRET_SIMD_NEON};

static int test_gemm(void) {
    /* 23 x 29 = 667 pixels: several column blocks, so B is packed per tile (the others have one
       block and pack B whole, imret__gemm_plan) */
    static const int sizes[][2] = {{1, 1}, {7, 9}, {13, 17}, {31, 5}, {23, 29}};
    static const int ks[] = {1, 3, 7};
    int li, cases = 0, failures = 0, tested_levels = 0, inplace = 0, direct = 0, reordered = 0, aliased = 0;
    double worst = 0;
    for (li = 0; li < 3; li++) {
        imret__kernels kern = imret__kernels_for(levels[li]);
        int ci, si, ki, stride, padded;
        if (kern.level != levels[li] || !kern.nr) { printf("%s: not supported by this CPU, skipped\n", imret_simd_name(levels[li])); continue; }
        tested_levels++;
        for (ci = 0; ci < 7; ci++)
            for (si = 0; si < 5; si++)
                for (ki = 0; ki < 3; ki++)
                    for (stride = 1; stride <= 2; stride++)
                        for (padded = 0; padded <= 1; padded++) {
                            int k = ks[ki], pad = padded ? k / 2 : 0, h = sizes[si][0], w = sizes[si][1];
                            float *pack;
                            conv_case c;
                            imret__bsrc src;
                            if (imret__out_dim(h, k, stride, pad) < 1 || imret__out_dim(w, k, stride, pad) < 1) continue;
                            case_make(&c, chans[ci], chans[(ci * 3 + ki + si) % 7], h, w, k, stride, pad, (ci + si) & 1, (ki + stride) & 1);
                            pack = (float *)malloc(imret__gemm_plan(c.out_c, c.N, c.K, 2, NULL, NULL) * 4); /* covers 1 thread too */
                            imret__bsrc_init(&src, c.x, c.in_c, h, w, k, stride, pad, c.ow);
                            cases++;
                            failures += gemm_check(&c, &kern, &src, pack, "gemm", &worst);
                            {
                                float *o3 = (float *)malloc(c.nout * 4);
                                imret__kernels other = kern;
                                imret__epilogue ea = c.ep;
                                int th;
                                if (kern.ukr_d && k == 1 && stride == 1 && !pad) { /* B read in place (imret__gemm_panel_inplace) where
                                                                                      M <= 2K: the same bits as packed */
                                    other.ukr_d = NULL;
                                    failures += same_bits(&c, &other, &src, pack, &c.ep, o3, 1, "in-place B differs from packed B");
                                    inplace += c.out_c <= c.K * 2;
                                }
                                if (k == 1 && stride == 1 && !pad && c.ep.residual && imret__gemm_alias_ok(&kern, c.out_c, c.N, c.K)) {
                                    /* the output written over its residual (imret__res_alias_ok): the same bits */
                                    ea.residual = o3;
                                    for (th = 1; th <= 2; th++)
                                        failures += same_bits(&c, &kern, &src, pack, &ea, o3, th, "output over its residual differs");
                                    aliased++;
                                }
                                /* the other loop order of imret__gemm_panels (pixel panel outer from kc 1 on, or A panel outer
                                   throughout): the same bits */
                                other = kern;
                                other.b_outer_kc = kern.b_outer_kc ? 0 : 1;
                                for (th = 1; th <= 2; th++)
                                    failures += same_bits(&c, &other, &src, pack, &c.ep, o3, th,
                                                          other.b_outer_kc ? "pixel panel outer differs" : "A panel outer differs");
                                reordered++;
                                free(o3);
                            }
                            if (stride == 2) { /* the same from phase planes, as the forward pass runs it */
                                float *ph = (float *)malloc(imret__phase_floats(c.in_c, h, w) * 4);
                                imret__bsrc_phase(&src, ph, 2);
                                cases++;
                                failures += gemm_check(&c, &kern, &src, pack, "gemm, stride-2 phase planes", &worst);
                                free(ph);
                            }
                            { /* the same from zero-padded planes (imret__bsrc_pad), as the forward pass runs small layers */
                                float *pd = (float *)malloc(imret__pad_floats(c.in_c, h, w, pad) * 4 + 4);
                                imret__bsrc_init(&src, c.x, c.in_c, h, w, k, stride, pad, c.ow);
                                imret__bsrc_pad(&src, pd, 2);
                                cases++;
                                failures += gemm_check(&c, &kern, &src, pack, "gemm, padded planes", &worst);
                                free(pd);
                            }
                            free(pack);
                            case_free(&c);
                        }
        if (kern.ukr_t) { /* the transposed small-N kernel: output channels a multiple of 32 (both AVX-512 forms, zmm and
                             ymm, whichever imret__kernels_for picks on this CPU) */
            static const int outs[] = {32, 96};
            imret__kernels plain = kern;
            int form, forms = 1;
            plain.ukr_t = NULL;
#if IMRET__X86
            if (kern.level == IMRET_SIMD_AVX512) forms = 2;
#endif
            for (form = 0; form < forms; form++) {
#if IMRET__X86
            if (forms == 2) kern.ukr_t = form ? imret__ukr_avx512_ty : imret__ukr_avx512_t;
#endif
            for (ci = 0; ci < 7; ci += 2)
                for (si = 0; si < 5; si++)
                    for (ki = 0; ki < 3; ki++)
                        for (stride = 1; stride <= 2; stride++) {
                            int k = ks[ki], pad = k / 2, h = sizes[si][0], w = sizes[si][1];
                            float *pack, *o3;
                            conv_case c;
                            imret__bsrc src;
                            if (imret__out_dim(h, k, stride, pad) < 1 || imret__out_dim(w, k, stride, pad) < 1) continue;
                            case_make(&c, chans[ci], outs[(ci + si + ki) & 1], h, w, k, stride, pad, si & 1, (ki + stride) & 1);
                            pack = (float *)malloc(imret__gemm_plan(c.out_c, c.N, c.K, 2, NULL, NULL) * 4);
                            o3 = (float *)malloc(c.nout * 4);
                            imret__bsrc_init(&src, c.x, c.in_c, h, w, k, stride, pad, c.ow);
                            imret__conv_gemm_fast(&plain, c.out_c, c.N, c.K, c.wp, &src, o3, &c.ep, pack, 1);
                            cases++;
                            failures += gemm_check(&c, &kern, &src, pack, "gemm, small-N kernel", &worst);
                            if (memcmp(c.o1, o3, c.nout * 4)) { /* same sums in the same order as the 8 x nr kernel */
                                failures++;
                                printf("FAIL gemm small-N kernel %s %d>%d %dx%d k%d s%d: differs from the %dx%d kernel\n",
                                       imret_simd_name(kern.level), c.in_c, c.out_c, h, w, k, stride, IMRET__MR, kern.nr);
                            }
                            { /* B from zero-padded planes (layer4 of ResNet at 224 runs so): the same bits */
                                float *pd = (float *)malloc(imret__pad_floats(c.in_c, h, w, pad) * 4 + 4);
                                imret__bsrc_pad(&src, pd, 2);
                                cases++;
                                failures += gemm_check(&c, &kern, &src, pack, "gemm, small-N kernel, padded planes", &worst);
                                if (memcmp(c.o1, o3, c.nout * 4)) {
                                    failures++;
                                    printf("FAIL gemm small-N kernel, padded planes %s %d>%d %dx%d k%d s%d: differs from unpadded\n",
                                           imret_simd_name(kern.level), c.in_c, c.out_c, h, w, k, stride);
                                }
                                free(pd);
                            }
                            free(pack); free(o3);
                            case_free(&c);
                        }
            }
        }
        if (kern.ukr_pt) { /* the direct kernel (imret__gemm_direct): output rows of 7, 14, 21, 28 and 56 pixels
                               (49 and 63 pixels end on a 7-pixel tile), stride 1 and 2, k 3 and 7, output
                               channels a multiple of 32; the same bits as packed B */
            static const int outs[] = {32, 64, 96}, dsz[][2] = {{14, 14}, {5, 28}, {28, 56}, {3, 42}, {7, 7}, {3, 21}};
            imret__kernels plain = kern;
            int form, forms = 1;
            plain.ukr_pt = NULL;
#if IMRET__X86
            if (kern.level == IMRET_SIMD_AVX512) forms = 2; /* zmm, and ymm up to IMRET__PTY_MAX_K */
#endif
            for (form = 0; form < forms; form++) {
#if IMRET__X86
            if (forms == 2) kern.ukr_pt = form ? imret__ukr_avx512_pty : imret__ukr_avx512_pt;
#endif
            for (ci = 0; ci < 7; ci++)
                for (si = 0; si < 6; si++)
                    for (ki = 1; ki < 3; ki++)
                        for (stride = 1; stride <= 2; stride++) {
                            int k = ks[ki], pad = k / 2, h = dsz[si][0] * stride, w = dsz[si][1] * stride - (stride - 1);
                            float *pack, *o3, *pd;
                            conv_case c;
                            imret__bsrc src;
                            if (imret__out_dim(h, k, stride, pad) < 1) continue;
                            case_make(&c, chans[ci], outs[(ci + si + ki) % 3], h, w, k, stride, pad, si & 1, (ci + stride) & 1);
                            if (!imret__direct_ok(&kern, c.out_c, k, stride, c.ow)) { /* every case here must take the kernel */
                                failures++;
                                printf("FAIL direct kernel not chosen for %d>%d %dx%d k%d s%d (ow %d)\n", c.in_c, c.out_c, h, w, k, stride, c.ow);
                            }
                            pack = (float *)malloc(imret__gemm_plan(c.out_c, c.N, c.K, 2, NULL, NULL) * 4);
                            o3 = (float *)malloc(c.nout * 4);
                            pd = (float *)malloc(imret__pad_floats(c.in_c, h, w, pad) * 4 + 4);
                            imret__bsrc_init(&src, c.x, c.in_c, h, w, k, stride, pad, c.ow);
                            imret__bsrc_pad(&src, pd, 2);
                            imret__conv_gemm_fast(&plain, c.out_c, c.N, c.K, c.wp, &src, o3, &c.ep, pack, 1);
                            cases++;
                            direct++;
                            failures += gemm_check(&c, &kern, &src, pack, "gemm, direct kernel", &worst);
                            if (memcmp(c.o1, o3, c.nout * 4)) { /* same sums in the same order as the 8 x nr kernel */
                                failures++;
                                printf("FAIL gemm direct kernel %s %d>%d %dx%d k%d s%d: differs from packed B\n",
                                       imret_simd_name(kern.level), c.in_c, c.out_c, h, w, k, stride);
                            }
                            free(pack); free(o3); free(pd);
                            case_free(&c);
                        }
            }
        }
        printf("%s: conv GEMM vs scalar oracle checked\n", imret_simd_name(kern.level));
    }
    printf("%d cases on %d ISA(s) (%d 1x1 with B read in place, %d on the direct kernel, %d also in the other loop order, %d also "
           "over their residual), worst relative error %.2e, %d failed\n", cases, tested_levels, inplace, direct, reordered, aliased,
           worst, failures);
    return failures;
}

static int test_winograd(void) {
    /* 29 x 23 (48 tiles): two blocks of tiles, whose input transforms 2 threads share (imret__wg_plan: from 256 output channels) */
    static const int sizes[][2] = {{1, 1}, {2, 3}, {4, 4}, {7, 9}, {13, 17}, {31, 5}, {6, 6}, {29, 23}};
    int li, cases = 0, failures = 0;
    double worst = 0;
    for (li = 0; li < 3; li++) {
        imret__kernels kern = imret__kernels_for(levels[li]);
        int ci, si, pad;
        if (kern.level != levels[li] || !kern.nr) continue;
        for (ci = 0; ci < 7; ci++)
            for (si = 0; si < 8; si++)
                for (pad = 0; pad <= 2; pad++) {
                    int h = sizes[si][0], w = sizes[si][1], in_c = chans[ci], out_c = chans[(ci * 5 + si + pad) % 7];
                    float *U, *ws;
                    conv_case c;
                    if (h + 2 * pad - 2 < 1 || w + 2 * pad - 2 < 1) continue;
                    case_make(&c, in_c, out_c, h, w, 3, 1, pad, (ci + si) & 1, (si + pad) & 1);
                    U = (float *)malloc(imret__wg_u_floats(out_c, in_c) * 4);
                    /* fused, 2 threads: covers the kept-U path and 1 thread too */
                    ws = (float *)malloc(imret__wg_plan(out_c, in_c, h + 2 * pad - 2, w + 2 * pad - 2, kern.nr, 2, 1, NULL, NULL) * 4);
                    imret__wg_transform_weights(&kern, out_c, in_c, c.wp, U, 1 + (si & 1));
                    imret__conv_winograd(&kern, out_c, in_c, h, w, pad, c.x, c.o1, &c.ep, U, c.wp, ws, 1);
                    imret__conv_winograd(&kern, out_c, in_c, h, w, pad, c.x, c.o2, &c.ep, U, c.wp, ws, 2);
                    cases++;
                    failures += case_check(&c, WG_TOL, "winograd", imret_simd_name(kern.level), &worst);
                    { /* fused (each task transforms the weight panels it uses): the same operations, so the same bits */
                        float *kept = (float *)malloc(c.nout * 4);
                        memcpy(kept, c.o1, c.nout * 4);
                        imret__conv_winograd(&kern, out_c, in_c, h, w, pad, c.x, c.o1, &c.ep, NULL, c.wp, ws, 1);
                        imret__conv_winograd(&kern, out_c, in_c, h, w, pad, c.x, c.o2, &c.ep, NULL, c.wp, ws, 2);
                        cases++;
                        if (memcmp(kept, c.o1, c.nout * 4) || memcmp(kept, c.o2, c.nout * 4)) {
                            failures++;
                            printf("FAIL winograd fused %s %d>%d %dx%d pad %d: differs from the kept-U result\n", imret_simd_name(kern.level),
                                   in_c, out_c, h, w, pad);
                        }
                        free(kept);
                    }
                    free(U); free(ws);
                    case_free(&c);
                }
        printf("%s: Winograd F(4x4,3x3) vs direct oracle checked\n", imret_simd_name(kern.level));
    }
    printf("winograd: %d cases, worst relative error %.2e (bound %.0e), %d failed\n", cases, worst, WG_TOL, failures);
    return failures;
}

/* The Winograd weight transform of every ISA (AVX-512: two channels per zmm, intrinsics) vs
   the portable body: the same operations in the same order, so the same bits (the project
   builds with -std=c99: no FP contraction), odd channel counts and partial panels included. */
static int test_wg_weights(void) {
    int li, ci, oi, cases = 0, failures = 0;
    imret__kernels gen = imret__kernels_for(IMRET_SIMD_SCALAR);
    for (li = 0; li < 3; li++) {
        imret__kernels kern = imret__kernels_for(levels[li]);
        if (kern.level != levels[li] || !kern.nr) continue;
        for (ci = 0; ci < 7; ci++)
            for (oi = 0; oi < 7; oi += 3) {
                int in_c = chans[ci], out_c = chans[oi], K = in_c * 9, panels = (out_c + IMRET__MR - 1) / IMRET__MR, i;
                size_t nu = imret__wg_u_floats(out_c, in_c);
                float *wt = (float *)malloc((size_t)out_c * K * 4), *wp = (float *)calloc(imret__wp_floats(out_c, K), 4);
                float *u1 = (float *)malloc(nu * 4), *u2 = (float *)malloc(nu * 4);
                for (i = 0; i < out_c * K; i++) wt[i] = frand();
                imret__pack_rows(wp, K, 0, out_c, wt);
                gen.wg_weights(wp, in_c, u1, 0, panels, (size_t)panels * in_c * IMRET__MR, 0);
                kern.wg_weights(wp, in_c, u2, 0, panels, (size_t)panels * in_c * IMRET__MR, 0);
                cases++;
                if (memcmp(u1, u2, nu * 4)) {
                    failures++;
                    printf("FAIL winograd weight transform %s %d>%d: differs from the portable one\n", imret_simd_name(kern.level), in_c,
                           out_c);
                }
                free(wt); free(wp); free(u1); free(u2);
            }
    }
    printf("winograd weight transform: %d cases, bit-identical to the portable one, %d failed\n", cases, failures);
    return failures;
}

/* Max pool, row form of every ISA vs the oracle: bit-identical (NaN inputs and -0/+0 ties
   included), 1 and 2 threads, awkward sizes, kernel sizes, strides and paddings. */
static int test_maxpool(void) {
    static const int sizes[][2] = {{1, 1}, {2, 3}, {7, 9}, {13, 17}, {31, 5}, {112, 112}};
    int li, si, k, stride, pad, i, cases = 0, failures = 0;
    for (li = 0; li < 3; li++) {
        imret__kernels kern = imret__kernels_for(levels[li]);
        if (kern.level != levels[li] || !kern.maxpool) continue;
        for (si = 0; si < 6; si++)
            for (k = 1; k <= 5; k++)
                for (stride = 1; stride <= 3; stride++)
                    for (pad = 0; pad <= k / 2; pad++) {
                        int c = 3, h = sizes[si][0], w = sizes[si][1], oh = imret__out_dim(h, k, stride, pad), ow = imret__out_dim(w, k, stride, pad);
                        size_t n = (size_t)c * h * w, no;
                        float *x, *ref, *o1, *o2;
                        if (oh < 1 || ow < 1) continue;
                        no = (size_t)c * oh * ow;
                        x = (float *)malloc(n * 4); ref = (float *)malloc(no * 4); o1 = (float *)malloc(no * 4); o2 = (float *)malloc(no * 4);
                        for (i = 0; i < (int)n; i++) { /* ties of -0 / +0, a NaN now and then */
                            int r = (int)(frand() * 8 + 8) % 8;
                            x[i] = r == 0 ? -0.0f : r == 1 ? 0.0f : r == 2 ? NAN : frand();
                        }
                        imret__maxpool(x, c, h, w, k, stride, pad, ref, oh, ow, 1);
                        imret__maxpool_run(&kern, x, c, h, w, k, stride, pad, o1, oh, ow, 1);
                        imret__maxpool_run(&kern, x, c, h, w, k, stride, pad, o2, oh, ow, 2);
                        cases++;
                        if (memcmp(ref, o1, no * 4) || memcmp(ref, o2, no * 4)) {
                            failures++;
                            printf("FAIL maxpool %s %dx%d k%d s%d p%d: differs from the oracle\n", imret_simd_name(kern.level), h, w, k, stride, pad);
                        }
                        free(x); free(ref); free(o1); free(o2);
                    }
        printf("%s: max pool vs scalar oracle checked\n", imret_simd_name(kern.level));
    }
    printf("maxpool: %d cases, bit-identical to the oracle, %d failed\n", cases, failures);
    return failures;
}

int main(void) {
    int failures = test_gemm();
    failures += test_winograd();
    failures += test_wg_weights();
    failures += test_maxpool();
    return failures ? 1 : 0;
}
