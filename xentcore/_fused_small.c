/*
 * xentcore/_fused_small.c: the checks and the finishing pass of the small-batch fast path
 * (xentcore/fastpath.py), pure C, no Python (the wrappers are in xentcore/_rowops.c).
 *
 * A score of a few items costs what its Python steps cost, not its arithmetic: each numpy call
 * is a microsecond or so, and the general path makes dozens. These loops do the work of those
 * calls in one pass each, with the results the general path gives, bit for bit:
 *
 * - the checks answer only "is every rule of the contract met?": when one is not, the caller
 *   takes the general path, which raises the precise error. Finiteness is read off the
 *   exponent bits (integer operations, which the compiler vectorises). The sum-to-one rule of
 *   probability rows keeps a margin (XC_SUM_MARGIN) from the tolerance's edges: the general
 *   path sums with BLAS in the input's dtype, another order of additions, so a row within a
 *   few ulps of the edge goes to it for the verdict;
 * - the probability gather clips p_y as np.clip does for the general path's arrays (float32
 *   input: float32 bounds, the Python floats eps and 1 - eps rounded to float32; float64: as
 *   given); the log stays numpy's, in Python (glibc's log and numpy's differ in the last bit
 *   of one value in ~600);
 * - the loss sum is numpy's pairwise summation of contiguous float64 (numpy/_core/src/umath/
 *   loops_utils.h.src, DOUBLE_pairwise_sum: eight running sums below 128 values, halves
 *   above), so loss_sum is float(item_loss.sum()) to the bit;
 * - the flag masks and the correctness of each prediction are the comparisons of
 *   xentcore/flags.py (apply_rules), a rule that is off given as NaN (no comparison fires).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_fused.h"

/* Finiteness: an exponent field of all ones (NaN or infinity) carries into the top bit when
 * one more unit of the exponent's lowest bit is added. */
int xc_all_finite(const void *x, int f32, int64_t count) {
    if (f32) {
        const uint32_t *b = (const uint32_t *)x;
        uint32_t acc = 0;
        for (int64_t i = 0; i < count; i++) {
            acc |= (b[i] & 0x7f800000u) + 0x00800000u;
        }
        return (acc & 0x80000000u) == 0;
    }
    const uint64_t *b = (const uint64_t *)x;
    uint64_t acc = 0;
    for (int64_t i = 0; i < count; i++) {
        acc |= (b[i] & 0x7ff0000000000000ull) + 0x0010000000000000ull;
    }
    return (acc & 0x8000000000000000ull) == 0;
}

int xc_labels_in_range(const int64_t *labels, int64_t n, int64_t k) {
    uint64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        bad |= (uint64_t)labels[i] >= (uint64_t)k; /* a negative label wraps to a huge one */
    }
    return bad == 0;
}

/* Rows of probabilities: every value in [0, 1] (NaN fails too) and every row sum within
 * [1 - tol, 1 + tol] by at least the margin. The general path's sums are BLAS sums in the
 * input's dtype: for a row of K values in [0, 1] summing to at most 2, each is within
 * (K - 1) u 2 of the exact sum, u the unit roundoff (half the machine epsilon), so a margin
 * of 2 K eps holds both its verdict and this one's (a float64 sum, nearer still). */
#define PROBABILITY_ROWS(T, EPS)                                                           \
    static int probability_rows_##T(const T *x, int64_t n, int64_t k, double tol) {        \
        const double margin = 2.0 * (double)k * (EPS);                                     \
        const double low = (1.0 - tol) + margin, high = (1.0 + tol) - margin;              \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const T *row = x + i * k;                                                      \
            double s = 0.0;                                                                \
            int out = 0;                                                                   \
            for (int64_t j = 0; j < k; j++) {                                              \
                out |= !(row[j] >= (T)0 && row[j] <= (T)1);                                \
                s += (double)row[j];                                                       \
            }                                                                              \
            if (out || !(s >= low && s <= high)) {                                         \
                return 0;                                                                  \
            }                                                                              \
        }                                                                                  \
        return 1;                                                                          \
    }
PROBABILITY_ROWS(float, 1.1920928955078125e-07)
PROBABILITY_ROWS(double, 2.220446049250313e-16)

int xc_probability_rows(const void *x, int f32, int64_t n, int64_t k, double tol) {
    return f32 ? probability_rows_float((const float *)x, n, k, tol)
               : probability_rows_double((const double *)x, n, k, tol);
}

/* Argmax (lowest index on ties) and maximum of each row, as xentcore._kernels.row_argmax_max;
 * with labels, p_y as given into `given` and clipped to [eps, 1 - eps] into `clipped`;
 * returns how many were clipped. */
#define GATHER_ROWS(T)                                                                     \
    static int64_t gather_rows_##T(const T *x, int64_t n, int64_t k, const int64_t *labels, \
                                   double eps, int64_t *predicted, double *top,            \
                                   double *given, double *clipped) {                       \
        const T lo = (T)eps, hi = (T)(1.0 - eps);                                          \
        int64_t n_clipped = 0;                                                             \
        for (int64_t i = 0; i < n; i++) {                                                  \
            const T *row = x + i * k;                                                      \
            T best = row[0];                                                               \
            int64_t at = 0;                                                                \
            for (int64_t j = 1; j < k; j++) {                                              \
                if (row[j] > best) {                                                       \
                    best = row[j];                                                         \
                    at = j;                                                                \
                }                                                                          \
            }                                                                              \
            predicted[i] = at;                                                             \
            top[i] = (double)best;                                                         \
            if (labels != NULL) {                                                          \
                T g = row[labels[i]];                                                      \
                T c = g < lo ? lo : (g > hi ? hi : g);                                     \
                given[i] = (double)g;                                                      \
                clipped[i] = (double)c;                                                    \
                n_clipped += c != g;                                                       \
            }                                                                              \
        }                                                                                  \
        return n_clipped;                                                                  \
    }
GATHER_ROWS(float)
GATHER_ROWS(double)

int64_t xc_gather_rows(const void *x, int f32, int64_t n, int64_t k, const int64_t *labels,
                       double eps, int64_t *predicted, double *top, double *given,
                       double *clipped) {
    if (f32) {
        return gather_rows_float((const float *)x, n, k, labels, eps, predicted, top, given,
                                 clipped);
    }
    return gather_rows_double((const double *)x, n, k, labels, eps, predicted, top, given,
                              clipped);
}

/* numpy's pairwise sum of contiguous float64 (DOUBLE_pairwise_sum), the same additions in
 * the same order. */
double xc_pairwise_sum(const double *a, int64_t n) {
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; i++) {
            res += a[i];
        }
        return res;
    }
    if (n <= 128) {
        double r[8];
        memcpy(r, a, sizeof r);
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8) {
            for (int q = 0; q < 8; q++) {
                r[q] += a[i + q];
            }
        }
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) {
            res += a[i];
        }
        return res;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return xc_pairwise_sum(a, half) + xc_pairwise_sum(a + half, n - half);
}

double xc_finish_rows(const XcFinish *f) {
    const int64_t n = f->n;
    for (int64_t i = 0; i < n; i++) {
        uint8_t low = f->confidence[i] < f->min_confidence;
        uint8_t high = f->loss != NULL && f->loss[i] > f->max_loss;
        uint8_t mis = 0;
        if (f->labels != NULL) {
            uint8_t correct = f->predicted[i] == f->labels[i];
            f->correct[i] = correct;
            mis = f->misclassified && !correct;
        }
        f->low[i] = low;
        f->high[i] = high;
        f->mis[i] = mis;
        f->risk[i] = 0;
        f->flagged[i] = low | high | mis;
    }
    return f->loss != NULL ? xc_pairwise_sum(f->loss, n) : 0.0;
}
