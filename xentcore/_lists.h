/*
 * xentcore/_lists.h: the list converters of xentcore/_lists.c, registered in xentcore/_rowops.c
 * as `_rowops.float_values(value, out)`, `_rowops.int_values(value, out)` and
 * `_rowops.reason_lists(masks, names, indices)`.
 */
#ifndef XENTCORE_LISTS_H
#define XENTCORE_LISTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* float_values(value, out): fill float64 `out` ((n,) or (n, k)) from the exact list `value`
 * (of n numbers, or of n lists of k numbers); True when every item was accepted. */
PyObject *xc_float_values(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* int_values(value, out): fill int64 `out` ((n,)) from the exact list `value` of n ints. */
PyObject *xc_int_values(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* reason_lists(masks, names, indices): tuples of R <= 8 boolean (n,) masks and R names; a list
 * per item (each of the n, or those of int64 `indices`) of the names whose mask is True. */
PyObject *xc_reason_lists(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
