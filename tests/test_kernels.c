/* SIMD convolution kernels vs the scalar oracle (im2col + imret__gemm_scalar) on awkward
   sizes: channels 1, 3, 7, 17, 63, 65, 257; spatial 1x1, 7x9, 13x17, 31x5; kernels 1, 3, 7;
   strides 1, 2; with and without padding, residual and ReLU. Every ISA this CPU supports is
   checked; each must agree with the oracle within 1e-5 x max|ref| (summation order differs)
   and be bit-identical for 1 and 2 threads. */
#define IMRET_IMPLEMENTATION
#include "imret.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

int main(void) {
    static const int chans[] = {1, 3, 7, 17, 63, 65, 257};
    static const int sizes[][2] = {{1, 1}, {7, 9}, {13, 17}, {31, 5}};
    static const int ks[] = {1, 3, 7};
    imret_simd levels[] = {IMRET_SIMD_AVX2, IMRET_SIMD_AVX512};
    int li, cases = 0, failures = 0, tested_levels = 0;
    double worst = 0;
    for (li = 0; li < 2; li++) {
        imret__kernels kern = imret__kernels_for(levels[li]);
        int ci, si, ki, stride, padded;
        if (kern.level != levels[li] || !kern.nr) { printf("%s: not supported by this CPU, skipped\n", imret_simd_name(levels[li])); continue; }
        tested_levels++;
        for (ci = 0; ci < 7; ci++)
            for (si = 0; si < 4; si++)
                for (ki = 0; ki < 3; ki++)
                    for (stride = 1; stride <= 2; stride++)
                        for (padded = 0; padded <= 1; padded++) {
                            int in_c = chans[ci], out_c = chans[(ci * 3 + ki + si) % 7], h = sizes[si][0], w = sizes[si][1];
                            int k = ks[ki], pad = padded ? k / 2 : 0, oh = imret__out_dim(h, k, stride, pad), ow = imret__out_dim(w, k, stride, pad);
                            int K = in_c * k * k, relu = (ci + si) & 1, with_res = (ki + stride) & 1;
                            long N = (long)oh * ow;
                            size_t i, nin, nout;
                            float *x, *wt, *wp, *bias, *res, *col, *ref, *o1, *o2, *pack;
                            imret__epilogue ep;
                            imret__bsrc src;
                            double maxref = 0, maxdiff = 0;
                            if (oh < 1 || ow < 1) continue;
                            nin = (size_t)in_c * h * w;
                            nout = (size_t)out_c * N;
                            x = (float *)malloc(nin * 4); wt = (float *)malloc((size_t)out_c * K * 4);
                            bias = (float *)malloc(out_c * 4); res = (float *)malloc(nout * 4);
                            col = (float *)malloc((size_t)K * N * 4); ref = (float *)malloc(nout * 4);
                            o1 = (float *)malloc(nout * 4); o2 = (float *)malloc(nout * 4);
                            pack = (float *)malloc(2 * IMRET__PACK_FLOATS * 4);
                            for (i = 0; i < nin; i++) x[i] = frand();
                            for (i = 0; i < (size_t)out_c * K; i++) wt[i] = frand();
                            for (i = 0; i < (size_t)out_c; i++) bias[i] = frand();
                            for (i = 0; i < nout; i++) res[i] = frand();
                            wp = (float *)calloc(imret__wp_floats(out_c, K), 4);
                            imret__pack_rows(wp, K, 0, out_c, wt);
                            ep.bias = bias; ep.residual = with_res ? res : NULL; ep.relu = relu;
                            imret__im2col(x, in_c, h, w, k, stride, pad, ow, 0, N, col, 1);
                            imret__gemm_scalar(out_c, (int)N, K, wp, col, (size_t)N, ref, (size_t)N, &ep, 1);
                            src.in = x; src.c = in_c; src.h = h; src.w = w; src.k = k; src.stride = stride; src.pad = pad; src.ow = ow;
                            imret__conv_gemm_fast(&kern, out_c, N, K, wp, &src, o1, &ep, pack, 1);
                            imret__conv_gemm_fast(&kern, out_c, N, K, wp, &src, o2, &ep, pack, 2);
                            for (i = 0; i < nout; i++) {
                                double d = fabs((double)o1[i] - ref[i]);
                                if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
                                if (!(d <= maxdiff)) maxdiff = d;
                            }
                            cases++;
                            if (maxdiff > 1e-5 * (maxref > 1 ? maxref : 1) || memcmp(o1, o2, nout * 4)) {
                                failures++;
                                printf("  FAIL %s in %d out %d %dx%d k%d s%d p%d: max|diff| %.3g (max|ref| %.3g)%s\n", imret_simd_name(kern.level),
                                       in_c, out_c, h, w, k, stride, pad, maxdiff, maxref, memcmp(o1, o2, nout * 4) ? ", differs between 1 and 2 threads" : "");
                            }
                            if (maxref > 0 && maxdiff / maxref > worst) worst = maxdiff / maxref;
                            free(x); free(wt); free(wp); free(bias); free(res); free(col); free(ref); free(o1); free(o2); free(pack);
                        }
        printf("%s: conv GEMM vs scalar oracle checked\n", imret_simd_name(kern.level));
    }
    printf("%d cases on %d ISA(s), worst relative error %.2e, %d failed\n", cases, tested_levels, worst, failures);
    return failures ? 1 : 0;
}
