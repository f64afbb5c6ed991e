/*
 * xentcore/_lists.c: JSON-shaped Python lists -> caller-allocated arrays, in one pass.
 *
 * A parsed JSON body holds its numbers as Python lists of floats and ints. Turning 32 x 10 of
 * them into an array through a strict validator (pydantic) and np.asarray costs ~60 us; these
 * loops do it in ~1 us, and refuse anything they would have to interpret. They accept only
 *   - exact `list` objects (no tuples, no subclasses), rows of one length;
 *   - exact `float` items that are finite, and exact `int` items (never `bool`) with
 *     |v| <= 2**53, so that every accepted value converts to float64 exactly as Python's
 *     float() and numpy's casts do.
 * Anything else makes them return False with no exception set: the caller then validates the
 * value the general way, which words the error. They call no Python code and hold the GIL.
 *
 * reason_lists builds the per-item reason lists of a scored batch from its flag masks: one
 * list per item holding the (shared) name strings, where numpy needs a call per reason and a
 * Python append per firing reason.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_lists.h"

#define XC_EXACT_INT (1LL << 53)
#define XC_MAX_REASONS 8

/* An exact int within +-2**53 into *out; 0 for anything else (no exception set). */
static int exact_int(PyObject *item, long long *out) {
    if (!PyLong_CheckExact(item)) {
        return 0;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
    if (overflow != 0 || v > XC_EXACT_INT || v < -XC_EXACT_INT) {
        return 0;
    }
    *out = v;
    return 1;
}

/* A finite exact float, or an exact int within +-2**53, into *out as float64; else 0. */
static int exact_number(PyObject *item, double *out) {
    if (PyFloat_CheckExact(item)) {
        double v = PyFloat_AS_DOUBLE(item);
        if (!isfinite(v)) {
            return 0;
        }
        *out = v;
        return 1;
    }
    long long i;
    if (!exact_int(item, &i)) {
        return 0;
    }
    *out = (double)i;
    return 1;
}

/* The numbers of the exact list `row` (length n) into out[0:n]; 0 on any other item. */
static int number_row(PyObject *row, Py_ssize_t n, double *out) {
    if (!PyList_CheckExact(row) || PyList_GET_SIZE(row) != n) {
        return 0;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        if (!exact_number(PyList_GET_ITEM(row, j), &out[j])) {
            return 0;
        }
    }
    return 1;
}

/* The C-contiguous buffer of `out` (writable when asked), items of `itemsize` bytes with type code one of
 * `codes`, 1-D or 2-D; -1 with a TypeError otherwise. */
static int out_buffer(PyObject *out, Py_buffer *view, Py_ssize_t itemsize, const char *codes,
                      int max_ndim, const char *name, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(out, view, flags) < 0) {
        return -1;
    }
    const char *fmt = view->format ? view->format : "B";
    if (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') {
        fmt++;
    }
    if (view->ndim < 1 || view->ndim > max_ndim || view->itemsize != itemsize ||
        strlen(fmt) != 1 || strchr(codes, fmt[0]) == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous array of '%s'",
                     name, codes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyObject *xc_float_values(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "float_values: expected 2 arguments");
        return NULL;
    }
    PyObject *value = args[0];
    Py_buffer view;
    if (out_buffer(args[1], &view, 8, "d", 2, "float_values: out", 1) < 0) {
        return NULL;
    }
    Py_ssize_t n = view.shape[0];
    double *out = (double *)view.buf;
    int ok = PyList_CheckExact(value) && PyList_GET_SIZE(value) == n;
    if (ok && view.ndim == 1) {
        ok = number_row(value, n, out);
    } else if (ok) {
        Py_ssize_t k = view.shape[1];
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            ok = number_row(PyList_GET_ITEM(value, i), k, out + i * k);
        }
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

PyObject *xc_int_values(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "int_values: expected 2 arguments");
        return NULL;
    }
    PyObject *value = args[0];
    Py_buffer view;
    if (out_buffer(args[1], &view, 8, "lq", 1, "int_values: out", 1) < 0) {
        return NULL;
    }
    Py_ssize_t n = view.shape[0];
    int64_t *out = (int64_t *)view.buf;
    int ok = PyList_CheckExact(value) && PyList_GET_SIZE(value) == n;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        long long v = 0;
        ok = exact_int(PyList_GET_ITEM(value, i), &v);
        out[i] = (int64_t)v;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

/* reason_lists(masks, names, indices): for each item (every one of the n, or those `indices`
 * names), the list of names[r] whose mask r is True there, in the order of `masks`. */
PyObject *xc_reason_lists(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[0]) != PyTuple_GET_SIZE(args[1]) ||
        PyTuple_GET_SIZE(args[0]) > XC_MAX_REASONS) {
        PyErr_SetString(PyExc_TypeError,
                        "reason_lists: expected (masks, names, indices), at most 8 masks");
        return NULL;
    }
    Py_ssize_t r_count = PyTuple_GET_SIZE(args[0]);
    Py_buffer views[XC_MAX_REASONS + 1];
    const uint8_t *masks[XC_MAX_REASONS];
    const int64_t *indices = NULL;
    Py_ssize_t n = -1, m = 0, held = 0;
    PyObject *out = NULL;
    for (Py_ssize_t r = 0; r < r_count; r++) {
        if (out_buffer(PyTuple_GET_ITEM(args[0], r), &views[held], 1, "?", 1, "reason_lists",
                       0) < 0) {
            goto done;
        }
        held++;
        if (n >= 0 && views[r].shape[0] != n) {
            PyErr_SetString(PyExc_ValueError, "reason_lists: masks of different lengths");
            goto done;
        }
        n = views[r].shape[0];
        masks[r] = (const uint8_t *)views[r].buf;
    }
    m = n < 0 ? 0 : n;
    if (args[2] != Py_None) {
        if (out_buffer(args[2], &views[held], 8, "lq", 1, "reason_lists: indices", 0) < 0) {
            goto done;
        }
        indices = (const int64_t *)views[held].buf;
        m = views[held++].shape[0];
        for (Py_ssize_t i = 0; i < m; i++) {
            if (indices[i] < 0 || indices[i] >= n) {
                PyErr_SetString(PyExc_IndexError, "reason_lists: index out of range");
                goto done;
            }
        }
    }
    out = PyList_New(m);
    for (Py_ssize_t i = 0; out != NULL && i < m; i++) {
        Py_ssize_t at = indices ? (Py_ssize_t)indices[i] : i, count = 0;
        for (Py_ssize_t r = 0; r < r_count; r++) {
            count += masks[r][at] != 0;
        }
        PyObject *row = PyList_New(count);
        if (row == NULL) {
            Py_CLEAR(out);
            break;
        }
        for (Py_ssize_t r = 0, j = 0; r < r_count; r++) {
            if (masks[r][at]) {
                PyObject *name = PyTuple_GET_ITEM(args[1], r);
                Py_INCREF(name);
                PyList_SET_ITEM(row, j++, name);
            }
        }
        PyList_SET_ITEM(out, i, row);
    }
done:
    while (held > 0) {
        PyBuffer_Release(&views[--held]);
    }
    return out;
}
