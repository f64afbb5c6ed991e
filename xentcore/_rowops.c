/*
 * xentcore._rowops: row kernels over C-contiguous (N, K) float32 / float64 arrays.
 *
 * numpy's argmax, max and dtype-converting sums along a short last axis pay a function call
 * per row (~25 ns): for 100,000 x 10 probabilities the argmax alone cost more than every other
 * step of a score together. These loops do the same work in one pass at memory speed. They
 * take any object with the buffer protocol (numpy arrays, native byte order), write into
 * caller-allocated outputs, and release the GIL while they run, so scoring threads of the
 * service use every core.
 *
 * logits_rows wraps the fused softmax cross-entropy kernel of xentcore/_fused.c (one pass
 * per row: loss, top probability, confidence, argmax), compiled into this module.
 *
 * Private to xentcore: xentcore/_kernels.py wraps each function and keeps a numpy fallback for
 * when this module was not built (no C compiler): bit-identical for argmax_max, a few float64
 * ulps apart for row_sums (another order of summation), within 1e-6 relative for logits_rows
 * (API.md's contract; tests/xentcore/test_fused.py). Inputs are trusted to be finite
 * (validate.py checks first); NaN is not handled specially.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_fused.h"
#include "_lists.h"
#include "_sums.h"

/* The struct-module type code of a buffer's items ('d', 'f', 'l', ...), byte order dropped. */
static char type_code(const Py_buffer *view) {
    const char *fmt = view->format ? view->format : "B";
    if (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') {
        fmt++;
    }
    return strlen(fmt) == 1 ? fmt[0] : '?';
}

/* The buffer of `obj` as a C-contiguous array of `ndim` dimensions whose items are `itemsize`
 * bytes with one of the type codes in `codes`; on mismatch a TypeError naming `name`. */
static int get_array(PyObject *obj, Py_buffer *view, int ndim, Py_ssize_t itemsize,
                     const char *codes, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        return -1;
    }
    char code = type_code(view);
    if (view->ndim != ndim || view->itemsize != itemsize || code == '?' ||
        strchr(codes, code) == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %d-D array of '%s' items",
                     name, ndim, codes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The buffer of `obj` as a C-contiguous (N, K) float32 or float64 array with K >= 1. */
static int get_float_matrix(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    char code = type_code(view);
    if (view->ndim != 2 ||
        !((code == 'd' && view->itemsize == 8) || (code == 'f' && view->itemsize == 4)) ||
        view->shape[1] < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "x: expected a C-contiguous 2-D float32 or float64 array with K >= 1");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* argmax (lowest index on ties) and max of each row. */
#define ARGMAX_MAX(T)                                                                 \
    static void argmax_max_##T(const T *x, Py_ssize_t n, Py_ssize_t k, int64_t *index, \
                               double *top) {                                         \
        for (Py_ssize_t i = 0; i < n; i++) {                                          \
            const T *row = x + i * k;                                                 \
            T best = row[0];                                                          \
            Py_ssize_t at = 0;                                                        \
            for (Py_ssize_t j = 1; j < k; j++) {                                      \
                if (row[j] > best) {                                                  \
                    best = row[j];                                                    \
                    at = j;                                                           \
                }                                                                     \
            }                                                                         \
            index[i] = (int64_t)at;                                                   \
            top[i] = (double)best;                                                    \
        }                                                                             \
    }
ARGMAX_MAX(float)
ARGMAX_MAX(double)

PyDoc_STRVAR(argmax_max_doc,
             "argmax_max(x, index, top)\n--\n\n"
             "Write each row's argmax (lowest index on ties) into `index` (int64, N) and its\n"
             "maximum into `top` (float64, N), for a C-contiguous (N, K) float32 or float64\n"
             "array `x` with K >= 1.");

static PyObject *argmax_max(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *x_obj, *index_obj, *top_obj;
    if (!PyArg_ParseTuple(args, "OOO:argmax_max", &x_obj, &index_obj, &top_obj)) {
        return NULL;
    }
    Py_buffer x, index, top;
    if (get_float_matrix(x_obj, &x) < 0) {
        return NULL;
    }
    char code = type_code(&x);
    Py_ssize_t n = x.shape[0], k = x.shape[1];
    if (get_array(index_obj, &index, 1, 8, "lq", 1, "index") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_array(top_obj, &top, 1, 8, "d", 1, "top") < 0) {
        PyBuffer_Release(&index);
        PyBuffer_Release(&x);
        return NULL;
    }
    if (index.shape[0] != n || top.shape[0] != n) {
        PyErr_Format(PyExc_ValueError, "index and top need %zd entries, got %zd and %zd", n,
                     index.shape[0], top.shape[0]);
    } else {
        Py_BEGIN_ALLOW_THREADS
        if (code == 'd') {
            argmax_max_double((const double *)x.buf, n, k, (int64_t *)index.buf,
                              (double *)top.buf);
        } else {
            argmax_max_float((const float *)x.buf, n, k, (int64_t *)index.buf,
                             (double *)top.buf);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&top);
    PyBuffer_Release(&index);
    PyBuffer_Release(&x);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Sum of `len` values in double, with eight independent accumulators: the CPU overlaps them
 * (and may pair them into SIMD adds), where one running sum waits on each add in turn. */
#define SUM_RANGE(T)                                                                   \
    static inline double sum_range_##T(const T *a, Py_ssize_t len) {                   \
        double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};                      \
        Py_ssize_t j = 0;                                                              \
        for (; j + 8 <= len; j += 8) {                                                 \
            for (int q = 0; q < 8; q++) {                                              \
                acc[q] += (double)a[j + q];                                            \
            }                                                                          \
        }                                                                              \
        double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
        for (; j < len; j++) {                                                         \
            s += (double)a[j];                                                         \
        }                                                                              \
        return s;                                                                      \
    }
SUM_RANGE(float)
SUM_RANGE(double)

/* Row sums of rows shorter than 8, four rows at a time: one running sum per row, so four
 * independent chains of adds are in flight; the skipped entry is added as 0. */
#define ROW_SUMS_NARROW(T)                                                                   \
    static void row_sums_narrow_##T(const T *x, Py_ssize_t n, Py_ssize_t k,                  \
                                    const int64_t *skip, double *out) {                      \
        Py_ssize_t i = 0;                                                                    \
        for (; i + 4 <= n; i += 4) {                                                         \
            const T *r0 = x + i * k, *r1 = r0 + k, *r2 = r1 + k, *r3 = r2 + k;               \
            int64_t a0 = skip ? skip[i] : -1, a1 = skip ? skip[i + 1] : -1;                  \
            int64_t a2 = skip ? skip[i + 2] : -1, a3 = skip ? skip[i + 3] : -1;              \
            double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                                   \
            for (Py_ssize_t j = 0; j < k; j++) {                                             \
                s0 += j == a0 ? 0.0 : (double)r0[j];                                         \
                s1 += j == a1 ? 0.0 : (double)r1[j];                                         \
                s2 += j == a2 ? 0.0 : (double)r2[j];                                         \
                s3 += j == a3 ? 0.0 : (double)r3[j];                                         \
            }                                                                                \
            out[i] = s0;                                                                     \
            out[i + 1] = s1;                                                                 \
            out[i + 2] = s2;                                                                 \
            out[i + 3] = s3;                                                                 \
        }                                                                                    \
        for (; i < n; i++) {                                                                 \
            const T *row = x + i * k;                                                        \
            int64_t at = skip ? skip[i] : -1;                                                \
            double s = 0.0;                                                                  \
            for (Py_ssize_t j = 0; j < k; j++) {                                             \
                s += j == at ? 0.0 : (double)row[j];                                         \
            }                                                                                \
            out[i] = s;                                                                      \
        }                                                                                    \
    }
ROW_SUMS_NARROW(float)
ROW_SUMS_NARROW(double)

/* Each row's sum in double, leaving out the entry skip[i] of row i when skip is not NULL. */
#define ROW_SUMS(T)                                                                        \
    static void row_sums_##T(const T *x, Py_ssize_t n, Py_ssize_t k, const int64_t *skip,  \
                             double *out) {                                                \
        if (k < 8) {                                                                       \
            row_sums_narrow_##T(x, n, k, skip, out);                                       \
            return;                                                                        \
        }                                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            const T *row = x + i * k;                                                      \
            if (skip == NULL) {                                                            \
                out[i] = sum_range_##T(row, k);                                            \
            } else {                                                                       \
                Py_ssize_t at = (Py_ssize_t)skip[i];                                       \
                out[i] = sum_range_##T(row, at) + sum_range_##T(row + at + 1, k - at - 1); \
            }                                                                              \
        }                                                                                  \
    }
ROW_SUMS(float)
ROW_SUMS(double)

PyDoc_STRVAR(row_sums_doc,
             "row_sums(x, out, skip=None)\n--\n\n"
             "Write each row's sum, accumulated in float64, into `out` (float64, N) for a\n"
             "C-contiguous (N, K) float32 or float64 array `x`. With `skip` (int64, N, each in\n"
             "[0, K)), row i's sum leaves out x[i, skip[i]].");

static PyObject *row_sums(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *x_obj, *out_obj, *skip_obj = Py_None;
    if (!PyArg_ParseTuple(args, "OO|O:row_sums", &x_obj, &out_obj, &skip_obj)) {
        return NULL;
    }
    Py_buffer x, out, skip;
    int has_skip = skip_obj != Py_None;
    if (get_float_matrix(x_obj, &x) < 0) {
        return NULL;
    }
    if (get_array(out_obj, &out, 1, 8, "d", 1, "out") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (has_skip && get_array(skip_obj, &skip, 1, 8, "lq", 0, "skip") < 0) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_ssize_t n = x.shape[0], k = x.shape[1];
    const int64_t *at = has_skip ? (const int64_t *)skip.buf : NULL;
    if (out.shape[0] != n || (has_skip && skip.shape[0] != n)) {
        PyErr_Format(PyExc_ValueError, "out and skip need %zd entries", n);
    } else {
        for (Py_ssize_t i = 0; at != NULL && i < n; i++) {
            if (at[i] < 0 || at[i] >= k) {
                PyErr_Format(PyExc_ValueError, "skip[%zd] = %lld is outside [0, %zd)", i,
                             (long long)at[i], k);
                break;
            }
        }
    }
    if (!PyErr_Occurred()) {
        char code = type_code(&x);
        Py_BEGIN_ALLOW_THREADS
        if (code == 'd') {
            row_sums_double((const double *)x.buf, n, k, at, (double *)out.buf);
        } else {
            row_sums_float((const float *)x.buf, n, k, at, (double *)out.buf);
        }
        Py_END_ALLOW_THREADS
    }
    if (has_skip) {
        PyBuffer_Release(&skip);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&x);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#if XC_FUSED
PyDoc_STRVAR(logits_rows_doc,
             "logits_rows(x, labels, weights, smoothing, method, predicted, top, confidence,\n"
             "            loss, level=-1)\n"
             "--\n\n"
             "Softmax cross-entropy of each row of a C-contiguous (N, K) float32 / float64 logits\n"
             "array `x`, in one pass (xentcore/_fused.c). `labels` (int64, N, each in [0, K)) or\n"
             "None; `weights` (float64, K) or None; `smoothing` in [0, 1]; `method` 0-3\n"
             "(max_probability, margin, entropy, true_class). Writes the argmax into `predicted`\n"
             "(int64, N), 1 / sum_k exp(x_k - max) into `top`, the method's confidence into\n"
             "`confidence` (float64, N; None for max_probability) and the loss into `loss`\n"
             "(float64, N; None exactly when `labels` is None). `level`: the instruction set\n"
             "(4 AVX-512, 3 AVX2, 0 baseline; -1 the best of this CPU, see isa_level()), for\n"
             "tests. Releases the GIL.");

PyDoc_STRVAR(isa_level_doc,
             "isa_level()\n--\n\n"
             "The instruction set logits_rows runs on this CPU: 4 (x86-64-v4, AVX-512), 3\n"
             "(x86-64-v3, AVX2 + FMA) or 0 (the baseline build).");

static PyObject *isa_level(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(args)) {
    return PyLong_FromLong(xc_level());
}

static PyObject *logits_rows(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *x_obj, *labels_obj, *weights_obj, *pred_obj, *top_obj, *conf_obj, *loss_obj;
    double smoothing;
    int method, level = -1;
    if (!PyArg_ParseTuple(args, "OOOdiOOOO|i:logits_rows", &x_obj, &labels_obj, &weights_obj,
                          &smoothing, &method, &pred_obj, &top_obj, &conf_obj, &loss_obj,
                          &level)) {
        return NULL;
    }
    if (method < XC_MAX_PROBABILITY || method > XC_TRUE_CLASS) {
        PyErr_Format(PyExc_ValueError, "method: expected 0-3, got %d", method);
        return NULL;
    }
    if (!(smoothing >= 0.0 && smoothing <= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "smoothing: expected a number in [0, 1]");
        return NULL;
    }
    if ((labels_obj == Py_None) != (loss_obj == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "labels and loss: give both or neither");
        return NULL;
    }
    if ((method == XC_MAX_PROBABILITY) != (conf_obj == Py_None)) {
        PyErr_SetString(PyExc_ValueError,
                        "confidence: None exactly for method 0 (max_probability)");
        return NULL;
    }
    if (method == XC_TRUE_CLASS && labels_obj == Py_None) {
        PyErr_SetString(PyExc_ValueError, "method 3 (true_class) needs labels");
        return NULL;
    }
    Py_buffer views[7];
    int held = 0;
    XcLogits a;
    memset(&a, 0, sizeof a);
    if (get_float_matrix(x_obj, &views[held]) < 0) {
        goto done;
    }
    Py_buffer *x = &views[held++];
    Py_ssize_t n = x->shape[0], k = x->shape[1];
    a.x = x->buf;
    a.n = n;
    a.k = k;
    a.smoothing = smoothing;
    a.method = method;
    if (labels_obj != Py_None) {
        if (get_array(labels_obj, &views[held], 1, 8, "lq", 0, "labels") < 0) {
            goto done;
        }
        a.labels = (const int64_t *)views[held++].buf;
        if (views[held - 1].shape[0] != n) {
            PyErr_Format(PyExc_ValueError, "labels: expected %zd entries", n);
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (a.labels[i] < 0 || a.labels[i] >= k) {
                PyErr_Format(PyExc_ValueError, "labels[%zd] = %lld is outside [0, %zd)", i,
                             (long long)a.labels[i], k);
                goto done;
            }
        }
    }
    if (weights_obj != Py_None) {
        if (get_array(weights_obj, &views[held], 1, 8, "d", 0, "weights") < 0) {
            goto done;
        }
        a.weights = (const double *)views[held++].buf;
        if (views[held - 1].shape[0] != k) {
            PyErr_Format(PyExc_ValueError, "weights: expected %zd entries", k);
            goto done;
        }
    }
    PyObject *outs[4] = {pred_obj, top_obj, conf_obj, loss_obj};
    const char *names[4] = {"predicted", "top", "confidence", "loss"};
    void *bufs[4] = {NULL, NULL, NULL, NULL};
    for (int o = 0; o < 4; o++) {
        if (outs[o] == Py_None) {
            continue;
        }
        if (get_array(outs[o], &views[held], 1, 8, o == 0 ? "lq" : "d", 1, names[o]) < 0) {
            goto done;
        }
        bufs[o] = views[held++].buf;
        if (views[held - 1].shape[0] != n) {
            PyErr_Format(PyExc_ValueError, "%s: expected %zd entries", names[o], n);
            goto done;
        }
    }
    a.predicted = (int64_t *)bufs[0];
    a.top = (double *)bufs[1];
    a.confidence = (double *)bufs[2];
    a.loss = (double *)bufs[3];
    {
        int is_f32 = type_code(x) == 'f';
        Py_BEGIN_ALLOW_THREADS
        xc_logits_rows(&a, is_f32, level);
        Py_END_ALLOW_THREADS
    }
done:
    while (held > 0) {
        PyBuffer_Release(&views[--held]);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* The small-batch fast path (xentcore/fastpath.py): one call checks and scores a batch.      */

/* The buffer of `obj` as a writable C-contiguous (rows, n) array of `itemsize`-byte items of
 * struct format `format` ("d": float64, "?": numpy's bool). */
static int get_block(PyObject *obj, Py_buffer *view, Py_ssize_t rows, Py_ssize_t n,
                     Py_ssize_t itemsize, const char *format, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) <
        0) {
        return -1;
    }
    const char *fmt = view->format ? view->format : "B";
    if (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') {
        fmt++;
    }
    if (strcmp(fmt, format) != 0 || view->itemsize != itemsize || view->ndim != 2 ||
        view->shape[0] != rows || view->shape[1] != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous (%zd, %zd) array of '%s'",
                     name, rows, n, format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* A float argument (NaN: a rule that is off). */
static int get_double(PyObject *obj, double *out) {
    *out = PyFloat_AsDouble(obj);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* The buffers every entry point of the fast path takes: x, labels or None, predicted,
 * values and (finish) masks. */
typedef struct {
    Py_buffer views[5];
    int held;
    Py_ssize_t n, k;
    int f32;
    const void *x;
    const int64_t *labels;
    int64_t *predicted;
    double *values;
    uint8_t *masks;
} SmallArgs;

static void small_release(SmallArgs *s) {
    while (s->held > 0) {
        PyBuffer_Release(&s->views[--s->held]);
    }
}

/* x (or, without x, predicted fixes N), predicted (N), labels, values (3, N), masks (6, N). */
static int small_get(SmallArgs *s, PyObject *x_obj, PyObject *labels_obj, PyObject *pred_obj,
                     PyObject *values_obj, PyObject *masks_obj) {
    memset(s, 0, sizeof *s);
    if (x_obj != NULL) {
        if (get_float_matrix(x_obj, &s->views[s->held]) < 0) {
            return -1;
        }
        Py_buffer *x = &s->views[s->held++];
        s->n = x->shape[0];
        s->k = x->shape[1];
        s->f32 = type_code(x) == 'f';
        s->x = x->buf;
    }
    if (get_array(pred_obj, &s->views[s->held], 1, 8, "lq", 1, "predicted") < 0) {
        return -1;
    }
    Py_buffer *pred = &s->views[s->held++];
    if (x_obj == NULL) {
        s->n = pred->shape[0];
    } else if (pred->shape[0] != s->n) {
        PyErr_Format(PyExc_ValueError, "predicted: expected %zd entries", s->n);
        return -1;
    }
    s->predicted = (int64_t *)pred->buf;
    if (labels_obj != Py_None) {
        if (get_array(labels_obj, &s->views[s->held], 1, 8, "lq", 0, "labels") < 0) {
            return -1;
        }
        Py_buffer *v = &s->views[s->held++];
        if (v->shape[0] != s->n) {
            PyErr_Format(PyExc_ValueError, "labels: expected %zd entries", s->n);
            return -1;
        }
        s->labels = (const int64_t *)v->buf;
    }
    if (get_block(values_obj, &s->views[s->held], 3, s->n, 8, "d", "values") < 0) {
        return -1;
    }
    s->values = (double *)s->views[s->held++].buf;
    if (masks_obj != NULL) {
        if (get_block(masks_obj, &s->views[s->held], 6, s->n, 1, "?", "masks") < 0) {
            return -1;
        }
        s->masks = (uint8_t *)s->views[s->held++].buf;
    }
    return 0;
}

/* Batches of fewer values keep the GIL: a release costs little, but taking the GIL back
 * from a thread that took it meanwhile may wait a whole switch interval (5 ms). */
#define SMALL_NOGIL_VALUES 16384

/* The masks and the loss sum of rows whose values are written (see finish_rows). */
static double small_finish(const SmallArgs *s, int method, double min_confidence,
                           double max_loss, int misclassified) {
    const Py_ssize_t n = s->n;
    XcFinish f;
    f.n = n;
    f.confidence = s->values + (method == 0 ? 0 : n);
    f.loss = s->labels != NULL ? s->values + 2 * n : NULL;
    f.predicted = s->predicted;
    f.labels = s->labels;
    f.min_confidence = min_confidence;
    f.max_loss = max_loss;
    f.misclassified = misclassified;
    f.correct = s->masks;
    f.low = s->masks + n;
    f.high = s->masks + 2 * n;
    f.mis = s->masks + 3 * n;
    f.risk = s->masks + 4 * n;
    f.flagged = s->masks + 5 * n;
    return xc_finish_rows(&f);
}

static int method_ok(int method, const SmallArgs *s) {
    if (method < 0 || method > 3 || (method == 3 && s->labels == NULL)) {
        PyErr_Format(PyExc_ValueError, "method: expected 0-3 (3 with labels), got %d", method);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(finish_rows_doc,
             "finish_rows(values, predicted, labels, method, min_confidence, max_loss,\n"
             "            misclassified, masks)\n"
             "--\n\n"
             "The flag masks and loss sum of scored rows. `values` (float64, (3, N)): the top\n"
             "probability, the confidence (read when `method` is not 0, max_probability) and\n"
             "the loss (read with `labels`, int64 (N,) or None); `predicted` (int64, N).\n"
             "Writes into `masks` (bool, (6, N)) the rows correct (with labels), low\n"
             "confidence, high loss, misclassified, risk (all False) and flagged, for the rules\n"
             "`min_confidence`, `max_loss` (NaN: off) and `misclassified` (0 / 1). Returns the\n"
             "loss sum, numpy's pairwise float64 sum to the bit (0.0 without labels).");

static PyObject *finish_rows(PyObject *Py_UNUSED(self), PyObject *const *args,
                             Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "finish_rows: expected 8 arguments");
        return NULL;
    }
    double min_confidence, max_loss;
    int method = (int)PyLong_AsLong(args[3]);
    int misclassified = (int)PyLong_AsLong(args[6]);
    if (PyErr_Occurred() || get_double(args[4], &min_confidence) < 0 ||
        get_double(args[5], &max_loss) < 0) {
        return NULL;
    }
    SmallArgs s;
    double total = 0.0;
    if (small_get(&s, NULL, args[2], args[1], args[0], args[7]) == 0 && method_ok(method, &s)) {
        total = small_finish(&s, method, min_confidence, max_loss, misclassified);
    }
    small_release(&s);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyFloat_FromDouble(total);
}

PyDoc_STRVAR(small_probabilities_doc,
             "small_probabilities(x, labels, tol, eps, predicted, values)\n"
             "--\n\n"
             "Check a C-contiguous (N, K) float32 / float64 array `x` of probability rows\n"
             "(every value in [0, 1], every row sum within 1 +- `tol` by a margin of 2 K\n"
             "machine epsilons) and `labels` (int64 (N,) in [0, K), or None); None when a\n"
             "check fails. Else write each row's argmax into `predicted` (int64, N) and its\n"
             "maximum into values[0]; with labels p_y into values[1] and p_y clipped to\n"
             "[eps, 1 - eps] (float32 bounds for float32 input, as np.clip) into values[2];\n"
             "return how many were clipped (0 without labels).");

static PyObject *small_probabilities(PyObject *Py_UNUSED(self), PyObject *const *args,
                                     Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "small_probabilities: expected 6 arguments");
        return NULL;
    }
    double tol, eps;
    if (get_double(args[2], &tol) < 0 || get_double(args[3], &eps) < 0) {
        return NULL;
    }
    SmallArgs s;
    int ok = 0;
    int64_t n_clipped = 0;
    if (small_get(&s, args[0], args[1], args[4], args[5], NULL) == 0) {
        const Py_ssize_t n = s.n;
        PyThreadState *saved = n * s.k >= SMALL_NOGIL_VALUES ? PyEval_SaveThread() : NULL;
        ok = xc_probability_rows(s.x, s.f32, n, s.k, tol) &&
             (s.labels == NULL || xc_labels_in_range(s.labels, n, s.k));
        if (ok) {
            n_clipped = xc_gather_rows(s.x, s.f32, n, s.k, s.labels, eps, s.predicted,
                                       s.values, s.values + n, s.values + 2 * n);
        }
        if (saved != NULL) {
            PyEval_RestoreThread(saved);
        }
    }
    small_release(&s);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!ok) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong((long long)n_clipped);
}

PyDoc_STRVAR(small_check_doc,
             "small_check(x, labels, tol)\n"
             "--\n\n"
             "Whether a C-contiguous (N, K) float32 / float64 array `x` and `labels` (int64\n"
             "(N,) in [0, K), or None) meet the rules small_logits (`tol` < 0: every value\n"
             "finite) or small_probabilities (`tol` >= 0: probability rows) check.");

static PyObject *small_check(PyObject *Py_UNUSED(self), PyObject *const *args,
                             Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "small_check: expected 3 arguments");
        return NULL;
    }
    double tol;
    if (get_double(args[2], &tol) < 0) {
        return NULL;
    }
    Py_buffer views[2];
    int held = 0, ok = 0;
    if (get_float_matrix(args[0], &views[held]) < 0) {
        return NULL;
    }
    Py_buffer *x = &views[held++];
    Py_ssize_t n = x->shape[0], k = x->shape[1];
    int f32 = type_code(x) == 'f';
    const int64_t *labels = NULL;
    if (args[1] != Py_None) {
        if (get_array(args[1], &views[held], 1, 8, "lq", 0, "labels") < 0) {
            goto done;
        }
        labels = (const int64_t *)views[held++].buf;
        if (views[held - 1].shape[0] != n) {
            PyErr_Format(PyExc_ValueError, "labels: expected %zd entries", n);
            goto done;
        }
    }
    PyThreadState *saved = n * k >= SMALL_NOGIL_VALUES ? PyEval_SaveThread() : NULL;
    ok = (tol < 0 ? xc_all_finite(x->buf, f32, (int64_t)n * k)
                  : xc_probability_rows(x->buf, f32, n, k, tol)) &&
         (labels == NULL || xc_labels_in_range(labels, n, k));
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }
done:
    while (held > 0) {
        PyBuffer_Release(&views[--held]);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyBool_FromLong(ok);
}

#if XC_FUSED
PyDoc_STRVAR(small_logits_doc,
             "small_logits(x, labels, method, min_confidence, max_loss, misclassified,\n"
             "             predicted, values, masks)\n"
             "--\n\n"
             "Check and score a C-contiguous (N, K) float32 / float64 logits array `x` in one\n"
             "call: None when a value is not finite or a label (int64 (N,), or None) is outside\n"
             "[0, K). Else the fused kernel (logits_rows) writes the argmax into `predicted`\n"
             "and the top probability, the confidence (`method` 1-3) and the loss (with\n"
             "labels) into the rows of `values` (float64, (3, N)), then finish_rows writes the\n"
             "masks; returns the loss sum (0.0 without labels). Releases the GIL.");

static PyObject *small_logits(PyObject *Py_UNUSED(self), PyObject *const *args,
                              Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "small_logits: expected 9 arguments");
        return NULL;
    }
    double min_confidence, max_loss;
    int method = (int)PyLong_AsLong(args[2]);
    int misclassified = (int)PyLong_AsLong(args[5]);
    if (PyErr_Occurred() || get_double(args[3], &min_confidence) < 0 ||
        get_double(args[4], &max_loss) < 0) {
        return NULL;
    }
    SmallArgs s;
    int ok = 0;
    double total = 0.0;
    if (small_get(&s, args[0], args[1], args[6], args[7], args[8]) == 0 &&
        method_ok(method, &s)) {
        const Py_ssize_t n = s.n;
        XcLogits a;
        memset(&a, 0, sizeof a);
        a.x = s.x;
        a.n = n;
        a.k = s.k;
        a.labels = s.labels;
        a.method = method;
        a.predicted = s.predicted;
        a.top = s.values;
        a.confidence = method == XC_MAX_PROBABILITY ? NULL : s.values + n;
        a.loss = s.labels != NULL ? s.values + 2 * n : NULL;
        PyThreadState *saved = n * s.k >= SMALL_NOGIL_VALUES ? PyEval_SaveThread() : NULL;
        ok = xc_all_finite(s.x, s.f32, (int64_t)n * s.k) &&
             (s.labels == NULL || xc_labels_in_range(s.labels, n, s.k));
        if (ok) {
            xc_logits_rows(&a, s.f32, -1);
            total = small_finish(&s, method, min_confidence, max_loss, misclassified);
        }
        if (saved != NULL) {
            PyEval_RestoreThread(saved);
        }
    }
    small_release(&s);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!ok) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble(total);
}
#endif

static PyMethodDef methods[] = {
    {"row_sums", row_sums, METH_VARARGS, row_sums_doc},
    {"argmax_max", argmax_max, METH_VARARGS, argmax_max_doc},
    {"finish_rows", (PyCFunction)(void (*)(void))finish_rows, METH_FASTCALL, finish_rows_doc},
    {"small_probabilities", (PyCFunction)(void (*)(void))small_probabilities, METH_FASTCALL,
     small_probabilities_doc},
    {"small_check", (PyCFunction)(void (*)(void))small_check, METH_FASTCALL, small_check_doc},
    {"float_values", (PyCFunction)(void (*)(void))xc_float_values, METH_FASTCALL,
     "float_values(value, out)\n--\n\nFill float64 `out` ((n,) or (n, k)) from an exact list of "
     "n finite floats / ints\n(|v| <= 2**53), or of n such lists of k; False (nothing raised) "
     "on anything else."},
    {"int_values", (PyCFunction)(void (*)(void))xc_int_values, METH_FASTCALL,
     "int_values(value, out)\n--\n\nFill int64 `out` ((n,)) from an exact list of n ints "
     "(never bool, |v| <= 2**53); False\n(nothing raised) on anything else."},
    {"chain_sums", (PyCFunction)(void (*)(void))xc_chain_sums, METH_FASTCALL,
     "chain_sums(x, out)\n--\n\nTwoSum chains of float64 `x` into float64 `out` (2 * "
     "SUM_LANES,): the chain sums, then\ntheir errors."},
    {"uniform_bins", (PyCFunction)(void (*)(void))xc_uniform_bins, METH_FASTCALL,
     "uniform_bins(confidence, correct, sums, counts, rights)\n--\n\nCounts, correct counts "
     "and TwoSum chains of the confidences of B uniform bins."},
    {"reason_lists", (PyCFunction)(void (*)(void))xc_reason_lists, METH_FASTCALL,
     "reason_lists(masks, names, indices)\n--\n\nFor each item (all n, or int64 `indices`), the "
     "list of names[r] whose boolean\n(n,) mask r is True there, in the order of the tuple "
     "`masks`."},
#if XC_FUSED
    {"logits_rows", logits_rows, METH_VARARGS, logits_rows_doc},
    {"isa_level", isa_level, METH_NOARGS, isa_level_doc},
    {"small_logits", (PyCFunction)(void (*)(void))small_logits, METH_FASTCALL, small_logits_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_rowops",
    "Row kernels of xentcore (private; see _kernels.py).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__rowops(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "SUM_LANES", XC_SUM_LANES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
