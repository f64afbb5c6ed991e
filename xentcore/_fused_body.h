/*
 * xentcore/_fused_body.h: the fused logits kernel, written once for vectors of XC_LANES
 * float64 lanes. Each of xentcore/_fused.c (baseline, 2 lanes), _fused_v3.c (AVX2 + FMA, 4)
 * and _fused_v4.c (AVX-512, 8) defines XC_LANES and XC_ENTRY, sets its instruction set and
 * includes this file once; _fused.c picks the entry point for the CPU at run time. See
 * _fused.c for what is computed and how accurately.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_fused.h"

/* XC_ISA: which intrinsics the including file may use: 4 (AVX-512), 3 (AVX2 + FMA), 2 (SSE2)
 * or 0 (none: GCC vector extensions only). */
#ifndef XC_ISA
#if defined(__SSE2__)
#define XC_ISA 2
#else
#define XC_ISA 0
#endif
#endif

#if XC_ISA >= 2
#include <immintrin.h>
#endif

#define LANES XC_LANES
#define XC_INLINE static inline __attribute__((always_inline))

/* Rows at most this wide go LANES at a time (one per lane); wider rows one at a time (the
 * crossover measured on AVX-512: 1.2 against 1.5 ns a value at K = 48, 1.4 against 0.95 at
 * K = 64). */
#ifndef XC_NARROW_K
#define XC_NARROW_K 48
#endif
/* Values per block of a wide row: 8 KiB of float32, 16 KiB of float64, in L1. */
#define XC_BLOCK 2048

typedef double vd __attribute__((vector_size(8 * LANES)));
typedef int64_t vl __attribute__((vector_size(8 * LANES)));
typedef uint64_t vu __attribute__((vector_size(8 * LANES)));
typedef float vfh __attribute__((vector_size(4 * LANES))); /* LANES floats: one vd widened */
typedef float vff __attribute__((vector_size(8 * LANES))); /* 2 LANES floats: one register */
typedef int32_t vif __attribute__((vector_size(8 * LANES)));

#define SPLAT(c) ((vd){0} + (double)(c))
#define SPLAT_L(c) ((vl){0} + (int64_t)(c))

static const int64_t LANE_INDEX[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

XC_INLINE vl lane_index(void) {
    vl v;
    memcpy(&v, LANE_INDEX, sizeof v);
    return v;
}

XC_INLINE vd vsel(vl mask, vd a, vd b) { return (vd)(((vl)a & mask) | ((vl)b & ~mask)); }
XC_INLINE vl lsel(vl mask, vl a, vl b) { return (a & mask) | (b & ~mask); }
XC_INLINE vd vzero_where(vl mask, vd a) { return (vd)((vl)a & ~mask); }

/* a > b ? a : b and a < b ? a : b, lane by lane (the instructions' own semantics). */
XC_INLINE vd vmax(vd a, vd b) {
#if XC_ISA == 4
    return (vd)_mm512_max_pd((__m512d)a, (__m512d)b);
#elif XC_ISA == 3
    return (vd)_mm256_max_pd((__m256d)a, (__m256d)b);
#elif XC_ISA == 2
    return (vd)_mm_max_pd((__m128d)a, (__m128d)b);
#else
    return vsel((vl)(a > b), a, b);
#endif
}

XC_INLINE vd vmin(vd a, vd b) {
#if XC_ISA == 4
    return (vd)_mm512_min_pd((__m512d)a, (__m512d)b);
#elif XC_ISA == 3
    return (vd)_mm256_min_pd((__m256d)a, (__m256d)b);
#elif XC_ISA == 2
    return (vd)_mm_min_pd((__m128d)a, (__m128d)b);
#else
    return vsel((vl)(a < b), a, b);
#endif
}

XC_INLINE double hsum(vd v) {
    double s = 0.0;
    for (int i = 0; i < LANES; i++) {
        s += v[i];
    }
    return s;
}

XC_INLINE double value(const void *x, int f32, ptrdiff_t j) {
    return f32 ? (double)((const float *)x)[j] : ((const double *)x)[j];
}

/* LANES values from x[j], as float64. */
XC_INLINE vd load(const void *x, int f32, ptrdiff_t j) {
    if (f32) { /* GCC splits __builtin_convertvector into halves: the instruction itself */
#if XC_ISA == 4
        return (vd)_mm512_cvtps_pd(_mm256_loadu_ps((const float *)x + j));
#elif XC_ISA == 3
        return (vd)_mm256_cvtps_pd(_mm_loadu_ps((const float *)x + j));
#else
        vfh v;
        memcpy(&v, (const float *)x + j, sizeof v);
        return __builtin_convertvector(v, vd);
#endif
    }
    vd v;
    memcpy(&v, (const double *)x + j, sizeof v);
    return v;
}

/* The first `count` (< LANES) values from x[j], the other lanes set to `pad`. */
XC_INLINE vd load_part(const void *x, int f32, ptrdiff_t j, ptrdiff_t count, double pad) {
    double buf[LANES];
    for (int i = 0; i < LANES; i++) {
        buf[i] = i < count ? value(x, f32, j + i) : pad;
    }
    vd v;
    memcpy(&v, buf, sizeof v);
    return v;
}

/* ---------------------------------------------------------------------------------------- */
/* exp, expm1, log1p                                                                         */

#define LOG2E 1.4426950408889634
#define LN2_HI 6.93147180369123816490e-01 /* fdlibm's ln2_hi: 32 significant bits */
#define LN2_LO 1.90821492927058770002e-10
#define LN2 0.6931471805599453
#define SHIFT 6755399441055744.0 /* 1.5 * 2^52: adding it rounds to an integer */
#define EXP_FLOOR -746.0         /* exp(-746) < 2^-1075: rounds to 0 */
#define EXP_NORMAL -708.0        /* exp(-708) > 2^-1022, the least normal double */

/* exp(r) = 1 + r q(r) on |r| <= ln2 / 2: Taylor to degree 13 (fine) or the degree-6 minimax
 * fit (Lawson's algorithm on the relative error). */
XC_INLINE vd exp_poly_q(vd r, int fine) {
    if (fine) {
        vd q = SPLAT(1.0 / 6227020800.0); /* 1 / 13! */
        q = q * r + 1.0 / 479001600.0;
        q = q * r + 1.0 / 39916800.0;
        q = q * r + 1.0 / 3628800.0;
        q = q * r + 1.0 / 362880.0;
        q = q * r + 1.0 / 40320.0;
        q = q * r + 1.0 / 5040.0;
        q = q * r + 1.0 / 720.0;
        q = q * r + 1.0 / 120.0;
        q = q * r + 1.0 / 24.0;
        q = q * r + 1.0 / 6.0;
        return q * r + 0.5;
    }
    vd q = SPLAT(0.0013843653488040024);
    q = q * r + 0.008374155317384583;
    q = q * r + 0.04166800203642278;
    q = q * r + 0.1666643126252663;
    return q * r + 0.4999999420904112;
}

XC_INLINE vd exp_poly(vd r, int fine) {
    vd q = exp_poly_q(r, fine);
    vd c1 = SPLAT(fine ? 1.0 : 1.0000000321650833);
    return (q * r + c1) * r + 1.0;
}

/* r = t - n ln 2. fine: Cody-Waite in two steps (n ln2_hi is exact, so r is within an ulp);
 * else one step with ln 2 rounded to double: off by at most n 2.3e-17 <= 2.5e-14, far below
 * the coarse polynomial's 2e-9. */
XC_INLINE vd exp_arg(vd t, vd nd, int fine) {
    if (fine) {
        vd r = t - nd * LN2_HI;
        return r - nd * LN2_LO;
    }
    return t - nd * LN2;
}

/* exp(t) for t <= 709, -inf included. t = n ln2 + r, |r| <= ln2 / 2 (Cody-Waite: n ln2_hi is
 * exact), exp(t) = 2^n exp(r). AVX-512 scales with vscalefpd (subnormal results rounded
 * once); elsewhere the exponent field is built from n, and t < -708 (results below 3.3e-308)
 * gives 0. */
XC_INLINE vd vexp(vd t, int fine) {
#if XC_ISA == 4
    /* coarse (float32 input): t >= -2 FLT_MAX, so nd is finite; r may then be far from
     * [-ln2/2, ln2/2] but its polynomial stays finite (|r| < 1e24, r^6 < 1e144) and vscalefpd
     * by nd < -1e38 takes it to 0: no clamp needed */
    if (fine) {
        t = vmax(t, SPLAT(EXP_FLOOR));
    }
    vd nd = (t * LOG2E + SHIFT) - SHIFT;
    return (vd)_mm512_scalef_pd((__m512d)exp_poly(exp_arg(t, nd, fine), fine), (__m512d)nd);
#else
    vl tiny = (vl)(t < EXP_NORMAL);
    t = vmax(t, SPLAT(EXP_NORMAL));
    vd kd = t * LOG2E + (SHIFT + 1023.0); /* low bits: n + 1023, in [1, 1023] */
    vd nd = kd - (SHIFT + 1023.0);
    vd scale = (vd)((vu)kd << 52);
    return vzero_where(tiny, exp_poly(exp_arg(t, nd, fine), fine) * scale);
#endif
}

/* expm1(t) for t <= 0: r + r^2 q(r) itself when n = 0 (|t| <= ln2 / 2), else exp(t) - 1,
 * at least 0.29 in magnitude, where the subtraction loses nothing. */
XC_INLINE vd vexpm1(vd t) {
    t = vmax(t, SPLAT(EXP_FLOOR));
    vd nd = (t * LOG2E + SHIFT) - SHIFT;
    vd r = exp_arg(t, nd, 1);
    vd small = (exp_poly_q(r, 1) * r + 1.0) * r;
    return vsel((vl)(nd == 0.0), small, vexp(t, 1) - 1.0);
}

/* log1p(d) for finite d >= 0, given inv_u = 1 / (1 + d): fdlibm's s_log1p.c, vectorised.
 * u = 1 + d rounded and c its rounding error over u; u = 2^k (1 + f) with sqrt(2)/2 <= 1 + f
 * < sqrt(2); s = f / (2 + f); log(1 + f) = f - (f^2/2 - s (f^2/2 + R(s^2))) with fdlibm's
 * polynomial R (error < 2^-58.45): under 1 ulp. */
XC_INLINE vd vlog1p(vd d, vd inv_u) {
    const double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01,
                 lg3 = 2.857142874366239149e-01, lg4 = 2.222219843214978396e-01,
                 lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01,
                 lg7 = 1.479819860511658591e-01;
    vd u = d + 1.0;
    vu bits = (vu)u;
    vl k = (vl)(bits >> 52) - 1023; /* u >= 1: the sign bit is clear */
    /* Fast2Sum of 1 and d, the larger first: u >= 2 means d >= 1 */
    vd c = vsel((vl)(k > 0), 1.0 - (u - d), d - (u - 1.0)) * inv_u; /* a tiny correction */
    vu mant = bits & 0x000fffffffffffffULL;
    vu half = (mant + 0x00095f6400000000ULL) & 0x0010000000000000ULL; /* mantissa > sqrt 2 */
    vd xr = (vd)(mant | (half ^ 0x3ff0000000000000ULL));            /* [sqrt(2)/2, sqrt(2)) */
    k = k + (vl)(half >> 52);
    vd dk = (vd)(k + (vl)SPLAT(SHIFT)) - SHIFT; /* exact: |k| < 2^51 */
    vd f = xr - 1.0;
    vd s = f / (f + 2.0);
    vd z = s * s;
    vd w = z * z;
    vd t1 = w * (lg2 + w * (lg4 + w * lg6));
    vd t2 = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7)));
    vd big_r = t2 + t1;
    vd hfsq = 0.5 * f * f;
    return dk * LN2_HI - ((hfsq - (s * (hfsq + big_r) + (dk * LN2_LO + c))) - f);
}

/* ---------------------------------------------------------------------------------------- */
/* Per-row results from the row terms, LANES rows at a time                                  */

typedef struct {
    int has_dot, has_tilt, has_second; /* what the method / options need */
    double one_minus_e, c_log, c_tilt; /* (1 - e), e sum_k w_k / K, e / K */
    double inv_log_k;                  /* 1 / log K (0 for K = 1) */
} Consts;

typedef struct {
    vd m, delta, second, dot, tilt; /* max, sum without the argmax term, ... (see _fused.c) */
    vl am;                          /* argmax */
} Terms;

XC_INLINE void store_d(double *out, vd v, int count) {
    if (count == LANES) {
        memcpy(out, &v, sizeof v);
        return;
    }
    double buf[LANES];
    memcpy(buf, &v, sizeof v);
    for (int i = 0; i < count; i++) {
        out[i] = buf[i];
    }
}

XC_INLINE void store_l(int64_t *out, vl v, int count) {
    if (count == LANES) {
        memcpy(out, &v, sizeof v);
        return;
    }
    int64_t buf[LANES];
    memcpy(buf, &v, sizeof v);
    for (int i = 0; i < count; i++) {
        out[i] = buf[i];
    }
}

/* {F(0), ..., F(LANES - 1)}: a vector built in registers (a store of lanes followed by a
 * vector load would stall on store forwarding). */
#if LANES == 8
#define PER_LANE(F) {F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7)}
#elif LANES == 4
#define PER_LANE(F) {F(0), F(1), F(2), F(3)}
#else
#define PER_LANE(F) {F(0), F(1)}
#endif

/* The label's logit and weight of rows r0 .. r0 + count - 1 (lanes past count repeat the
 * last row; they are not stored). */
XC_INLINE void label_terms(const XcLogits *a, int f32, ptrdiff_t r0, int count, vd *zy,
                           vd *wy) {
    const ptrdiff_t k = (ptrdiff_t)a->k;
    ptrdiff_t row[LANES], at[LANES];
    int64_t y[LANES];
    for (int i = 0; i < LANES; i++) {
        row[i] = r0 + (i < count ? i : count - 1);
        y[i] = a->labels[row[i]];
        at[i] = row[i] * k + (ptrdiff_t)y[i];
    }
    if (f32) {
        const float *x = (const float *)a->x;
#define Z_AT(i) (double)x[at[i]]
        *zy = (vd)PER_LANE(Z_AT);
#undef Z_AT
    } else {
        const double *x = (const double *)a->x;
#define Z_AT(i) x[at[i]]
        *zy = (vd)PER_LANE(Z_AT);
#undef Z_AT
    }
    if (a->weights != NULL) {
        const double *w = a->weights;
#define W_AT(i) w[y[i]]
        *wy = (vd)PER_LANE(W_AT);
#undef W_AT
    } else {
        *wy = SPLAT(1.0);
    }
}

XC_INLINE void finish(const XcLogits *a, int f32, const Consts *c, ptrdiff_t r0, int count,
                      const Terms *t) {
    vd top = 1.0 / (t->delta + 1.0);
    vd log_s = vlog1p(t->delta, top); /* log of the shifted partition sum s = 1 + delta */
    store_l(a->predicted + r0, t->am, count);
    store_d(a->top + r0, top, count);
    vd conf = top;
    if (a->method == XC_MARGIN) { /* p_top - p_second = top (1 - exp(second - m)) */
        conf = -top * vexpm1(t->second);
    } else if (a->method == XC_ENTROPY) { /* H = log s - sum_k p_k (z_k - m) */
        vd h = log_s - t->dot * top;
        conf = vmin(vmax(1.0 - h * c->inv_log_k, SPLAT(0.0)), SPLAT(1.0));
    }
    if (a->labels != NULL) {
        vd zy, wy;
        label_terms(a, f32, r0, count, &zy, &wy);
        vd nll = (t->m - zy) + log_s; /* m - z_y in float64: exact for float32 input */
        if (a->method == XC_TRUE_CLASS) {
            conf = vexp(-nll, 1);
        }
        vd loss = a->weights ? nll * wy : nll;
        if (c->has_tilt) { /* (1 - e) w_y nll + (e / K) sum_k w_k (log s - (z_k - m)) */
            loss = loss * c->one_minus_e + c->c_log * log_s - c->c_tilt * t->tilt;
        }
        store_d(a->loss + r0, loss, count);
    }
    if (a->confidence != NULL) {
        store_d(a->confidence + r0, conf, count);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Narrow rows (K <= XC_NARROW_K): LANES rows at a time, row i of the group in lane i        */

#if LANES == 8
#define GATHER(p, b, j)                                                                  \
    ((vd){p[b[0] + j], p[b[1] + j], p[b[2] + j], p[b[3] + j], p[b[4] + j], p[b[5] + j], \
          p[b[6] + j], p[b[7] + j]})
#elif LANES == 4
#define GATHER(p, b, j) ((vd){p[b[0] + j], p[b[1] + j], p[b[2] + j], p[b[3] + j]})
#else
#define GATHER(p, b, j) ((vd){p[b[0] + j], p[b[1] + j]})
#endif

XC_INLINE void narrow_group(const XcLogits *a, int f32, const Consts *c, ptrdiff_t r0,
                            int count) {
    const ptrdiff_t k = (ptrdiff_t)a->k;
    vd v[XC_NARROW_K];
    ptrdiff_t base[LANES];
    v[0] = SPLAT(0.0); /* k >= 1: never read as such (quiets -Wmaybe-uninitialized) */
    for (int i = 0; i < LANES; i++) { /* lanes past the last row repeat it (not stored) */
        base[i] = (r0 + (i < count ? i : count - 1)) * k;
    }
    for (ptrdiff_t j = 0; j < k; j++) {
        if (f32) {
            const float *x = (const float *)a->x;
            v[j] = GATHER(x, base, j);
        } else {
            const double *x = (const double *)a->x;
            v[j] = GATHER(x, base, j);
        }
    }
    if (k == 2) { /* closed form: delta = exp(-|z_1 - z_0|), one exp a row */
        vl gt = (vl)(v[1] > v[0]);
        vd m = vmax(v[1], v[0]);
        vd sh = vmin(v[1], v[0]) - m;
        vd e = vexp(sh, 1);
        vd tilt = SPLAT(0.0);
        if (c->has_tilt) { /* only the other class's shift is nonzero */
            vd w0 = SPLAT(a->weights ? a->weights[0] : 1.0);
            vd w1 = SPLAT(a->weights ? a->weights[1] : 1.0);
            tilt = vsel(gt, w0, w1) * sh;
        }
        Terms t = {m, e, sh, e * vmax(sh, SPLAT(EXP_FLOOR)), tilt, gt & SPLAT_L(1)};
        finish(a, f32, c, r0, count, &t);
        return;
    }
    vd m = v[0], second = SPLAT(-INFINITY);
    vl am = SPLAT_L(0);
    for (ptrdiff_t j = 1; j < k; j++) {
        vl gt = (vl)(v[j] > m); /* strictly: ties keep the first index */
        if (c->has_second) {
            second = vmax(second, vmin(m, v[j])); /* the smaller of the two is a runner-up */
        }
        m = vsel(gt, v[j], m);
        am = lsel(gt, SPLAT_L(j), am);
    }
    vd delta = SPLAT(0.0), dot = SPLAT(0.0), tilt = SPLAT(0.0);
    for (ptrdiff_t j = 0; j < k; j++) {
        vd sh = v[j] - m;
        /* the argmax term is apart; float64-accurate exp whatever the input: these rows cost
         * their per-row work more than their exponentials, and K = 2 rows of float32 input
         * stay exact to the last bits (softplus of a float32 difference is a float64 value) */
        vd e = vzero_where((vl)(am == j), vexp(sh, 1));
        delta += e;
        if (c->has_dot) {
            dot += e * vmax(sh, SPLAT(EXP_FLOOR)); /* e = 0 below the floor: no 0 * -inf */
        }
        if (c->has_tilt) {
            tilt += (a->weights ? a->weights[j] : 1.0) * sh;
        }
    }
    Terms t = {m, delta, second - m, dot, tilt, am};
    finish(a, f32, c, r0, count, &t);
}

/* ---------------------------------------------------------------------------------------- */
/* Wide rows: blocks of XC_BLOCK values, online rescaling                                    */

/* Max of x[lo, hi) (-inf when empty). */
XC_INLINE double range_max(const void *x, int f32, ptrdiff_t lo, ptrdiff_t hi) {
    vd m0 = SPLAT(-INFINITY), m1 = m0;
    ptrdiff_t j = lo;
    for (; j + 2 * LANES <= hi; j += 2 * LANES) {
        m0 = vmax(load(x, f32, j), m0);
        m1 = vmax(load(x, f32, j + LANES), m1);
    }
    m0 = vmax(m0, m1);
    double best = -INFINITY;
    for (int i = 0; i < LANES; i++) {
        best = m0[i] > best ? m0[i] : best;
    }
    for (; j < hi; j++) {
        double xj = value(x, f32, j);
        best = xj > best ? xj : best;
    }
    return best;
}

#if XC_ISA == 4
#define MAX_F(a, b) (vff) _mm512_max_ps((__m512)(a), (__m512)(b))
#elif XC_ISA == 3
#define MAX_F(a, b) (vff) _mm256_max_ps((__m256)(a), (__m256)(b))
#elif XC_ISA == 2
#define MAX_F(a, b) (vff) _mm_max_ps((__m128)(a), (__m128)(b))
#else
#define MAX_F(a, b) (vff)(((vif)(a) & (vif)((a) > (b))) | ((vif)(b) & ~(vif)((a) > (b))))
#endif

/* The max of x[lo, hi) (non-empty), float32 data: 2 LANES float lanes per register. */
XC_INLINE double block_max_f32(const float *x, ptrdiff_t lo, ptrdiff_t hi) {
    const ptrdiff_t w = 2 * LANES;
    ptrdiff_t j = lo;
    float best = x[lo];
    if (hi - lo >= 2 * w) {
        vff m0, m1;
        memcpy(&m0, x + j, sizeof m0);
        memcpy(&m1, x + j + w, sizeof m1);
        for (j += 2 * w; j + 2 * w <= hi; j += 2 * w) {
            vff v0, v1;
            memcpy(&v0, x + j, sizeof v0);
            memcpy(&v1, x + j + w, sizeof v1);
            m0 = MAX_F(v0, m0);
            m1 = MAX_F(v1, m1);
        }
        m0 = MAX_F(m0, m1);
        for (int i = 0; i < w; i++) {
            best = m0[i] > best ? m0[i] : best;
        }
    }
    for (; j < hi; j++) {
        best = x[j] > best ? x[j] : best;
    }
    return (double)best;
}

/* The first index in [lo, hi) holding `want` (there is one). */
XC_INLINE ptrdiff_t first_equal(const void *x, int f32, ptrdiff_t lo, ptrdiff_t hi,
                                double want) {
    ptrdiff_t j = lo;
#if XC_ISA == 4
    if (f32) {
        const __m512 target = _mm512_set1_ps((float)want);
        for (; j + 16 <= hi; j += 16) {
            __mmask16 eq = _mm512_cmpeq_ps_mask(_mm512_loadu_ps((const float *)x + j), target);
            if (eq) {
                return j + __builtin_ctz(eq);
            }
        }
    } else {
        const __m512d target = _mm512_set1_pd(want);
        for (; j + 8 <= hi; j += 8) {
            __mmask8 eq = _mm512_cmpeq_pd_mask(_mm512_loadu_pd((const double *)x + j), target);
            if (eq) {
                return j + __builtin_ctz(eq);
            }
        }
    }
#elif XC_ISA == 3
    if (f32) {
        const __m256 target = _mm256_set1_ps((float)want);
        for (; j + 8 <= hi; j += 8) {
            __m256 v = _mm256_loadu_ps((const float *)x + j);
            int eq = _mm256_movemask_ps(_mm256_cmp_ps(v, target, _CMP_EQ_OQ));
            if (eq) {
                return j + __builtin_ctz((unsigned)eq);
            }
        }
    } else {
        const __m256d target = _mm256_set1_pd(want);
        for (; j + 4 <= hi; j += 4) {
            __m256d v = _mm256_loadu_pd((const double *)x + j);
            int eq = _mm256_movemask_pd(_mm256_cmp_pd(v, target, _CMP_EQ_OQ));
            if (eq) {
                return j + __builtin_ctz((unsigned)eq);
            }
        }
    }
#endif
    for (; j < hi; j++) {
        if (value(x, f32, j) == want) {
            return j;
        }
    }
    return hi - 1; /* not reached: value is one of x[lo, hi) */
}

/* The max of x[lo, hi) (non-empty) and the first index holding it: a pass for the maximum,
 * then a scan for its first position (both over values that stay in L1). */
XC_INLINE double block_argmax(const void *x, int f32, ptrdiff_t lo, ptrdiff_t hi,
                              ptrdiff_t *at) {
    double best = f32 ? block_max_f32((const float *)x, lo, hi) : range_max(x, 0, lo, hi);
    *at = first_equal(x, f32, lo, hi, best);
    return best;
}

typedef struct {
    vd sum, dot, tilt; /* lane sums at the current maximum */
    vd fin;            /* sum of v - v over the row's values: 0, or NaN when one is not finite */
} Acc;

/* Add the terms of LANES values v (shifted by m) to the sums; `drop` zeroes lanes' exp. */
XC_INLINE void add_terms(Acc *acc, vd v, vd m, vl drop, int masked, vd w, int fine,
                         int has_dot, int has_tilt) {
    vd sh = v - m;
    vd e = vexp(sh, fine);
    if (masked) {
        e = vzero_where(drop, e);
    }
    acc->sum += e;
    acc->fin += v - v; /* padding lanes hold m: 0 unless m itself is infinite */
    if (has_dot) {
        acc->dot += e * vmax(sh, SPLAT(EXP_FLOOR));
    }
    if (has_tilt) {
        acc->tilt += w * sh;
    }
}

/* Class weights of x[j, j + count) (1 without weights), 0 in lanes past count. */
XC_INLINE vd weights_at(const XcLogits *a, ptrdiff_t j, ptrdiff_t count) {
    if (a->weights == NULL) {
        vd ones = SPLAT(1.0);
        return count >= LANES ? ones : vsel((vl)(lane_index() < count), ones, SPLAT(0.0));
    }
    if (count >= LANES) {
        vd w;
        memcpy(&w, a->weights + j, sizeof w);
        return w;
    }
    return load_part(a->weights, 0, j, count, 0.0);
}

/* The terms of the whole vectors x[j, j + count * LANES), unmasked, two at a time (their sum
 * is added at once: one dependent add per two vectors), each fetching the value one block
 * further from memory while the exponentials keep the core busy. */
XC_INLINE void add_vectors(const XcLogits *a, const void *row, int f32, ptrdiff_t j,
                           ptrdiff_t count, vd mv, Acc *acc, int has_dot, int has_tilt) {
    const char *ahead = (const char *)row + XC_BLOCK * (f32 ? sizeof(float) : sizeof(double));
    const ptrdiff_t size = f32 ? (ptrdiff_t)sizeof(float) : (ptrdiff_t)sizeof(double);
    const int fine = !f32;
    const vd ones = SPLAT(1.0);
    ptrdiff_t end = j + count * LANES;
    if (!has_dot && !has_tilt) {
        for (; j + 2 * LANES <= end; j += 2 * LANES) {
            __builtin_prefetch(ahead + j * size);
            vd v0 = load(row, f32, j), v1 = load(row, f32, j + LANES);
            vd e0 = vexp(v0 - mv, fine);
            vd e1 = vexp(v1 - mv, fine);
            acc->sum += e0 + e1;
            acc->fin += (v0 - v0) + (v1 - v1);
        }
    }
    for (; j < end; j += LANES) {
        vd w = has_tilt ? weights_at(a, j, LANES) : ones;
        __builtin_prefetch(ahead + j * size);
        add_terms(acc, load(row, f32, j), mv, SPLAT_L(0), 0, w, fine, has_dot, has_tilt);
    }
}

/* The terms of x[lo, hi) at maximum m, leaving out index am. */
XC_INLINE void add_block(const XcLogits *a, const void *row, int f32, ptrdiff_t lo,
                         ptrdiff_t hi, double m, ptrdiff_t am, Acc *acc, int has_dot,
                         int has_tilt) {
    const vd mv = SPLAT(m);
    const vl lane = lane_index();
    const int fine = !f32;
    const ptrdiff_t whole = (hi - lo) / LANES; /* whole vectors; then hi - j < LANES values */
    ptrdiff_t j = lo;
    if (am >= lo && am < lo + whole * LANES) { /* the vector holding the argmax goes apart */
        ptrdiff_t before = (am - lo) / LANES;
        add_vectors(a, row, f32, lo, before, mv, acc, has_dot, has_tilt);
        j = lo + before * LANES;
        vd w = has_tilt ? weights_at(a, j, LANES) : SPLAT(1.0);
        add_terms(acc, load(row, f32, j), mv, (vl)(lane + j == am), 1, w, fine, has_dot,
                  has_tilt);
        j += LANES;
        add_vectors(a, row, f32, j, whole - before - 1, mv, acc, has_dot, has_tilt);
    } else {
        add_vectors(a, row, f32, lo, whole, mv, acc, has_dot, has_tilt);
    }
    j = lo + whole * LANES;
    if (j < hi) { /* padded with m: shift 0, so only the exp needs dropping */
        vd v = load_part(row, f32, j, hi - j, m);
        vd w = has_tilt ? weights_at(a, j, hi - j) : SPLAT(1.0);
        vl drop = (vl)(lane >= hi - j) | (vl)(lane + j == am);
        add_terms(acc, v, mv, drop, 1, w, fine, has_dot, has_tilt);
    }
}

/* sum of w[lo, hi), LANES partial sums at a time. */
XC_INLINE double weight_sum(const double *w, ptrdiff_t lo, ptrdiff_t hi) {
    vd acc = SPLAT(0.0);
    ptrdiff_t j = lo;
    for (; j + LANES <= hi; j += LANES) {
        vd v;
        memcpy(&v, w + j, sizeof v);
        acc += v;
    }
    double total = hsum(acc);
    for (; j < hi; j++) {
        total += w[j];
    }
    return total;
}

/* The terms of one wide row. */
XC_INLINE void wide_row(const XcLogits *a, int f32, const Consts *c, const void *row,
                        int has_dot, int has_tilt, double *m_out, int64_t *am_out,
                        double *delta_out, double *second_out, double *dot_out,
                        double *tilt_out) {
    const ptrdiff_t k = (ptrdiff_t)a->k;
    double m = -INFINITY, second = -INFINITY;
    double extra = 0.0, extra_dot = 0.0, extra_tilt = 0.0, w_seen = 0.0;
    ptrdiff_t am = 0;
    Acc acc = {SPLAT(0.0), SPLAT(0.0), SPLAT(0.0), SPLAT(0.0)};
    for (ptrdiff_t lo = 0; lo < k; lo += XC_BLOCK) {
        ptrdiff_t hi = lo + XC_BLOCK < k ? lo + XC_BLOCK : k;
        ptrdiff_t at;
        double bm = block_argmax(row, f32, lo, hi, &at);
        if (bm > m) {
            if (c->has_second) { /* the old maximum, or the block's best but one */
                double before = range_max(row, f32, lo, at);
                double after = range_max(row, f32, at + 1, hi);
                double rest = after > before ? after : before;
                second = rest > m ? rest : m;
            }
            if (m > -INFINITY) {
                /* rescale the sums from maximum m to bm: each e becomes e sc and each shift
                 * grows by d; the old argmax term (1, shift 0) joins the sum as sc */
                double d = m - bm, sc = exp(d);
                if (has_dot) {
                    acc.dot = sc * (acc.dot + d * acc.sum);
                    extra_dot = sc * (extra_dot + d * extra) + sc * d;
                }
                acc.sum = sc * acc.sum;
                extra = sc * extra + sc;
                if (has_tilt) {
                    extra_tilt += d * w_seen;
                }
            }
            m = bm;
            am = at;
        } else if (c->has_second && bm > second) {
            second = bm;
        }
        add_block(a, row, f32, lo, hi, m, am, &acc, has_dot, has_tilt);
        if (has_tilt) {
            w_seen += a->weights ? weight_sum(a->weights, lo, hi) : (double)(hi - lo);
        }
    }
    *m_out = m;
    *am_out = am;
    /* + 0.0 for a finite row; NaN (so NaN top probability, loss, confidence) for a row holding
     * a NaN or an infinity, which xentcore.score then locates with its exact scan */
    *delta_out = hsum(acc.sum) + extra + hsum(acc.fin);
    *second_out = second - m;
    *dot_out = hsum(acc.dot) + extra_dot;
    *tilt_out = hsum(acc.tilt) + extra_tilt;
}

XC_INLINE void wide_group(const XcLogits *a, int f32, const Consts *c, ptrdiff_t r0, int count,
                          int has_dot, int has_tilt) {
    double m[LANES], delta[LANES], second[LANES], dot[LANES], tilt[LANES];
    int64_t am[LANES];
    for (int i = 0; i < LANES; i++) {
        m[i] = delta[i] = dot[i] = tilt[i] = 0.0;
        second[i] = -INFINITY;
        am[i] = 0;
    }
    size_t row_bytes = (size_t)a->k * (f32 ? sizeof(float) : sizeof(double));
    for (int i = 0; i < count; i++) {
        const void *row = (const char *)a->x + (size_t)(r0 + i) * row_bytes;
        wide_row(a, f32, c, row, has_dot, has_tilt, &m[i], &am[i], &delta[i], &second[i],
                 &dot[i], &tilt[i]);
    }
    Terms t;
    memcpy(&t.m, m, sizeof m);
    memcpy(&t.am, am, sizeof am);
    memcpy(&t.delta, delta, sizeof delta);
    memcpy(&t.second, second, sizeof second);
    memcpy(&t.dot, dot, sizeof dot);
    memcpy(&t.tilt, tilt, sizeof tilt);
    finish(a, f32, c, r0, count, &t);
}

/* ---------------------------------------------------------------------------------------- */
/* Entry point                                                                               */

XC_INLINE void rows(const XcLogits *a, int f32) {
    Consts c;
    double w_sum = (double)a->k;
    if (a->weights != NULL) {
        w_sum = 0.0;
        for (int64_t j = 0; j < a->k; j++) {
            w_sum += a->weights[j];
        }
    }
    c.has_dot = a->method == XC_ENTROPY;
    c.has_second = a->method == XC_MARGIN;
    c.has_tilt = a->labels != NULL && a->smoothing > 0.0;
    c.one_minus_e = 1.0 - a->smoothing;
    c.c_log = a->smoothing * w_sum / (double)a->k;
    c.c_tilt = a->smoothing / (double)a->k;
    c.inv_log_k = a->k > 1 ? 1.0 / log((double)a->k) : 0.0;
    const ptrdiff_t n = (ptrdiff_t)a->n;
    for (ptrdiff_t r0 = 0; r0 < n; r0 += LANES) {
        int count = n - r0 < LANES ? (int)(n - r0) : LANES;
        if (a->k <= XC_NARROW_K) {
            narrow_group(a, f32, &c, r0, count);
        } else if (!c.has_dot && !c.has_tilt) { /* the common case, compiled apart */
            wide_group(a, f32, &c, r0, count, 0, 0);
        } else {
            wide_group(a, f32, &c, r0, count, c.has_dot, c.has_tilt);
        }
    }
}

void XC_ENTRY(const XcLogits *a, int is_f32) {
    if (is_f32) {
        rows(a, 1);
    } else {
        rows(a, 0);
    }
}
