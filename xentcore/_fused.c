/*
 * xentcore/_fused.c: softmax cross-entropy of logits rows in one pass over the input.
 *
 * For each row z of an (N, K) float32 / float64 array it finds, in one sweep over memory,
 *   m = max_k z_k and its first index (the prediction), delta = sum_{k != argmax} exp(z_k - m),
 *   z_y (the label's logit), and when asked the second largest z (margin), the entropy sum
 *   sum_k exp(z_k - m)(z_k - m) and the smoothing sum sum_k w_k (z_k - m),
 * then turns them into the per-row results of xentcore/multiclass.py (_logits_sparse):
 *   loss = w_y (m - z_y + log1p(delta)) [times (1 - e), plus the label-smoothing terms],
 *   top = 1 / (1 + delta), and the confidence of the chosen method.
 * delta leaves the argmax term out (it is exactly 1): log1p(delta) keeps the digits of the loss
 * of a confident, correct row (4e-18 stays 4e-18 instead of rounding to 0).
 *
 * Rows of K > XC_NARROW_K values: "online softmax" (Milakov & Gimelshein 2018, arXiv
 * 1805.02867) over blocks of XC_BLOCK values, which stay in L1 between the block's two
 * looks (its maximum, then its exponentials): when a block raises the running maximum from m
 * to m', the sums so far are rescaled by exp(m - m') instead of being recomputed, so each
 * value is read from memory once. Narrower rows go several at a time, one row per lane.
 *
 * Arithmetic (the contract, API.md preamble: results within 1e-6 relative of float64): every
 * value is widened to float64 before the shift z - m (exact for float32 input), every sum is a
 * float64 sum, and exp is computed by the vector code of _fused_body.h:
 *   exp(t) = 2^n exp(r), n = round(t / ln 2), |r| <= ln2 / 2, then
 *   - float64 input, and rows of K <= XC_NARROW_K whatever the input: r = t - n ln2_hi -
 *     n ln2_lo (Cody-Waite: ln2_hi has 32 significant bits, so n ln2_hi is exact) and the
 *     Taylor polynomial of degree 13, truncation error < 5.3e-18 relative on |r| <= ln2 / 2;
 *     with the rounding of its evaluation within 1.2 ulp (measured against long double over
 *     16 million points in [-745, 0]);
 *   - float32 input, wider rows: r = t - n ln2 (ln 2 rounded to double: r off by at most
 *     2.5e-14) and a degree-6 minimax polynomial (Lawson's algorithm on the relative error):
 *     relative error < 2.0e-9 (1.98e-9 at the worst point of the fit, evaluated exactly),
 *     500 times under the contract's 1e-6. A sum of positive terms keeps the largest relative
 *     error of its terms, and so do delta, log1p(delta) and the loss (tests/xentcore/
 *     test_fused.py checks 2e-9 on rows built to carry the error undiluted).
 *   Terms below exp(-708) = 3.3e-308 count as 0 (AVX-512: rounded to the subnormal instead).
 * log1p (fdlibm's reduction and polynomial, < 1 ulp), expm1 (< 2 ulp) and the per-row exp of
 * the results are float64-accurate whatever the input, vectorised across rows.
 *
 * Dispatch: _fused_body.h is compiled three times, by this file (the baseline: 2 lanes, SSE2
 * on x86-64, NEON on arm64), _fused_v3.c (AVX2 + FMA, 4 lanes) and _fused_v4.c (AVX-512,
 * 8 lanes), each with GCC vector extensions at its native register width and a few
 * intrinsics (vscalefpd, the float32 widening, max/min); xc_logits_rows asks the CPU once
 * (__builtin_cpu_supports, which also checks that the OS saves the vector registers) and calls
 * the best. GCC's target_clones was tried first: GCC 12 cannot expand 8-lane vectors in its
 * AVX2 clone (an internal compiler error) and spills them to the stack in the others.
 * Other architectures and compilers build the baseline only.
 *
 * GCC 12 with glibc's libmvec was checked too: without -ffast-math (which the contract's
 * exactness forbids) `#pragma omp simd` loops over expf still call the scalar expf, since
 * glibc declares its vector variants (_ZGVdN8v_expf, ...) only under __FAST_MATH__.
 */
#include "_fused.h"

#if XC_FUSED

#define XC_LANES 2
#define XC_ENTRY xc_rows_base
#include "_fused_body.h"

int xc_level(void) {
#if XC_LEVELS
    static int level = -1; /* every thread computes the same value: a race is harmless */
    if (level < 0) {
        __builtin_cpu_init();
#if defined(__clang__) /* the features of XC_V3_FEATURES and XC_V4_FEATURES */
        int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
        int v3 = __builtin_cpu_supports("x86-64-v3");
        int v4 = __builtin_cpu_supports("x86-64-v4");
#endif
        level = v4 ? 4 : v3 ? 3 : 0;
    }
    return level;
#else
    return 0;
#endif
}

void xc_logits_rows(const XcLogits *a, int is_f32, int level) {
#if XC_LEVELS
    if (level < 0 || level > xc_level()) {
        level = xc_level();
    }
    if (level == 4) {
        xc_rows_v4(a, is_f32);
        return;
    }
    if (level == 3) {
        xc_rows_v3(a, is_f32);
        return;
    }
#else
    (void)level;
#endif
    xc_rows_base(a, is_f32);
}

#else
typedef int xc_no_fused; /* no GCC / Clang vector extensions: _kernels.py uses numpy */
#endif
