/*
 * xentcore/_fused.h: the fused logits kernel of xentcore/_fused.c (pure C, no Python), called
 * by the `logits_rows` wrapper of xentcore/_rowops.c.
 */
#ifndef XENTCORE_FUSED_H
#define XENTCORE_FUSED_H

#include <stdint.h>

/* The kernel needs GCC / Clang vector extensions; elsewhere (MSVC) it is left out and
 * xentcore/_kernels.py uses its numpy path for logits. */
#if defined(__GNUC__) || defined(__clang__)
#define XC_FUSED 1
#else
#define XC_FUSED 0
#endif

/* Confidence methods (API.md section 3); the numbers are the `method` argument of
 * _rowops.logits_rows. */
enum { XC_MAX_PROBABILITY = 0, XC_MARGIN = 1, XC_ENTROPY = 2, XC_TRUE_CLASS = 3 };

/* One call: rows of C-contiguous (n, k) logits in, one value per row out. Inputs are trusted
 * (finite, labels in [0, k)); the wrapper checks shapes and types. */
typedef struct {
    const void *x;         /* (n, k) float32 (is_f32) or float64 */
    int64_t n, k;          /* n >= 0, k >= 1 */
    const int64_t *labels; /* n class indices, or NULL: no loss */
    const double *weights; /* k class weights, or NULL: all 1 */
    double smoothing;      /* label smoothing e in [0, 1] */
    int method;            /* XC_MAX_PROBABILITY ... XC_TRUE_CLASS */
    int64_t *predicted;    /* n: argmax, lowest index on ties */
    double *top;           /* n: probability of the argmax */
    double *confidence;    /* n, or NULL: not written (max_probability is `top`) */
    double *loss;          /* n, or NULL: not written (needs labels) */
} XcLogits;

/* x86-64 with GCC 12+ or Clang 14+: besides the baseline build, xentcore/_fused_v3.c
 * (AVX2 + FMA) and _fused_v4.c (AVX-512) compile the kernel for those instruction sets, and
 * xc_logits_rows calls the best one the CPU (and OS) supports. GCC builds them for the
 * x86-64-v3 / v4 levels; Clang for the features below, which xc_level() checks one by one. */
#if XC_FUSED && defined(__x86_64__) &&                                   \
    ((defined(__clang__) && __clang_major__ >= 14) ||                    \
     (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12))
#define XC_LEVELS 1
#else
#define XC_LEVELS 0
#endif
#define XC_V3_FEATURES "avx2,fma,bmi,bmi2"
#define XC_V4_FEATURES "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2"

#if XC_FUSED
/* The kernel at instruction-set `level` (-1: the best the CPU supports, xc_level()); a level
 * above xc_level() runs the best supported one. */
void xc_logits_rows(const XcLogits *a, int is_f32, int level);
/* The best instruction-set level of this CPU: 4 (x86-64-v4), 3 (x86-64-v3) or 0 (baseline). */
int xc_level(void);
void xc_rows_base(const XcLogits *a, int is_f32);
#endif
#if XC_LEVELS
void xc_rows_v3(const XcLogits *a, int is_f32);
void xc_rows_v4(const XcLogits *a, int is_f32);
#endif

/* The small-batch fast path (xentcore/_fused_small.c; xentcore/fastpath.py): the checks of
 * the contract as one yes / no each, the probability gather, and the finishing pass. Plain
 * C, built everywhere. */
int xc_all_finite(const void *x, int f32, int64_t count);
int xc_labels_in_range(const int64_t *labels, int64_t n, int64_t k);
int xc_probability_rows(const void *x, int f32, int64_t n, int64_t k, double tol);
int64_t xc_gather_rows(const void *x, int f32, int64_t n, int64_t k, const int64_t *labels,
                       double eps, int64_t *predicted, double *top, double *given,
                       double *clipped);
double xc_pairwise_sum(const double *a, int64_t n);

/* The flag masks of xentcore/flags.py (apply_rules) and the correctness of each prediction;
 * a rule that is off is NaN (min_confidence, max_loss) or 0 (misclassified). */
typedef struct {
    int64_t n;
    const double *confidence; /* n */
    const double *loss;       /* n, or NULL: no labels */
    const int64_t *predicted; /* n */
    const int64_t *labels;    /* n, or NULL */
    double min_confidence, max_loss;
    int misclassified;
    uint8_t *correct; /* n each (numpy bool); correct written only with labels */
    uint8_t *low, *high, *mis, *risk, *flagged;
} XcFinish;

/* Write the masks; return numpy's pairwise sum of the loss (0 without labels). */
double xc_finish_rows(const XcFinish *f);

#endif
