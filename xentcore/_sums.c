/*
 * xentcore/_sums.c: compensated (double-double) sums of float64 values, and the 15 uniform
 * confidence bins of a Summary (counts, correct counts, confidence sums), in one pass.
 *
 * xentcore.Summary keeps its sums as double-doubles so that merges in any order agree to
 * ~1e-30 relative. Each value is added with TwoSum (Knuth; Ogita, Rump and Oishi 2005, "Sum2"):
 * t = s + v exactly splits into t and the error (s - (t - z)) + (v - z), z = t - s, which is
 * accumulated apart. Values are spread over XC_SUM_LANES independent chains (one per bin when
 * bins are given: bins interleave), so the adds overlap in the pipeline. Per chain the final
 * s + e is within u |s| + gamma_{m-1}^2 sum |x| of the exact sum (m values in the chain); the
 * caller adds the chains' s and e with math.fsum.
 *
 * An overflowing sum gives inf or NaN in s: the caller checks and falls back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_sums.h"

/* the C-contiguous 1-D buffer of `obj` with items of `itemsize` bytes and type code in
 * `codes` (writable when asked); -1 with a TypeError otherwise */
static int vector(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *codes,
                  int ndim, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        return -1;
    }
    const char *fmt = view->format ? view->format : "B";
    if (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') {
        fmt++;
    }
    if (view->ndim != ndim || view->itemsize != itemsize || strlen(fmt) != 1 ||
        strchr(codes, fmt[0]) == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %d-D array of '%s'", name,
                     ndim, codes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Add v to the chain (s, e) by TwoSum. */
static inline void two_sum_add(double *s, double *e, double v) {
    double t = *s + v;
    double z = t - *s;
    *e += (*s - (t - z)) + (v - z);
    *s = t;
}

/* Release the buffers of views[0, held). */
static void release(Py_buffer *views, int held) {
    while (held > 0) {
        PyBuffer_Release(&views[--held]);
    }
}

PyObject *xc_chain_sums(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "chain_sums: expected (x, out)");
        return NULL;
    }
    Py_buffer v[2];
    int held = 0;
    if (vector(args[0], &v[held], 8, "d", 1, 0, "chain_sums: x") < 0 ||
        (++held, vector(args[1], &v[held], 8, "d", 1, 1, "chain_sums: out") < 0)) {
        release(v, held);
        return NULL;
    }
    held++;
    if (v[1].shape[0] != 2 * XC_SUM_LANES) {
        release(v, held);
        PyErr_SetString(PyExc_ValueError, "chain_sums: out must hold 2 * SUM_LANES values");
        return NULL;
    }
    const double *x = (const double *)v[0].buf;
    double *out = (double *)v[1].buf;
    Py_ssize_t n = v[0].shape[0];
    Py_BEGIN_ALLOW_THREADS;
    double s[XC_SUM_LANES] = {0}, e[XC_SUM_LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + XC_SUM_LANES <= n; i += XC_SUM_LANES) {
        for (int l = 0; l < XC_SUM_LANES; l++) {
            two_sum_add(&s[l], &e[l], x[i + l]);
        }
    }
    for (; i < n; i++) {
        two_sum_add(&s[0], &e[0], x[i]);
    }
    for (int l = 0; l < XC_SUM_LANES; l++) {
        out[l] = s[l];
        out[XC_SUM_LANES + l] = e[l];
    }
    Py_END_ALLOW_THREADS;
    release(v, held);
    Py_RETURN_NONE;
}

PyObject *xc_uniform_bins(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "uniform_bins: expected (confidence, correct, sums, counts, rights)");
        return NULL;
    }
    Py_buffer v[5];
    int held = 0;
    static const char *const names[5] = {"uniform_bins: confidence", "uniform_bins: correct",
                                         "uniform_bins: sums", "uniform_bins: counts",
                                         "uniform_bins: rights"};
    static const Py_ssize_t sizes[5] = {8, 1, 8, 8, 8};
    static const char *const codes[5] = {"d", "?", "d", "lq", "lq"};
    static const int dims[5] = {1, 1, 2, 1, 1};
    for (; held < 5; held++) {
        if (vector(args[held], &v[held], sizes[held], codes[held], dims[held], held >= 2,
                   names[held]) < 0) {
            release(v, held);
            return NULL;
        }
    }
    Py_ssize_t n = v[0].shape[0], bins = v[2].shape[0];
    if (v[1].shape[0] != n || v[2].shape[1] != 2 * XC_SUM_LANES || v[3].shape[0] != bins ||
        v[4].shape[0] != bins || bins < 1) {
        release(v, held);
        PyErr_SetString(PyExc_ValueError, "uniform_bins: arrays of inconsistent shapes");
        return NULL;
    }
    const double *conf = (const double *)v[0].buf;
    const uint8_t *correct = (const uint8_t *)v[1].buf;
    double *sums = (double *)v[2].buf;
    int64_t *counts = (int64_t *)v[3].buf, *rights = (int64_t *)v[4].buf;
    Py_BEGIN_ALLOW_THREADS;
    memset(sums, 0, (size_t)bins * 2 * XC_SUM_LANES * sizeof(double));
    memset(counts, 0, (size_t)bins * sizeof(int64_t));
    memset(rights, 0, (size_t)bins * sizeof(int64_t));
    const double nb = (double)bins;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* xentcore.calibration.uniform_bin_index: clip(ceil(c * B) - 1, 0, B - 1), NaN in 0 */
        double t = ceil(conf[i] * nb) - 1.0;
        Py_ssize_t b = t >= 1.0 ? (t < nb - 1.0 ? (Py_ssize_t)t : bins - 1) : 0;
        double *row = sums + (size_t)b * 2 * XC_SUM_LANES;
        two_sum_add(&row[0], &row[XC_SUM_LANES], conf[i]);
        counts[b] += 1;
        rights[b] += correct[i] != 0;
    }
    Py_END_ALLOW_THREADS;
    release(v, held);
    Py_RETURN_NONE;
}
