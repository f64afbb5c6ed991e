/*
 * xentcore/_sums.h: the compensated sums of xentcore/_sums.c, registered in xentcore/_rowops.c
 * as `_rowops.chain_sums` and `_rowops.uniform_bins`.
 */
#ifndef XENTCORE_SUMS_H
#define XENTCORE_SUMS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Independent TwoSum chains of one bin (a row of `out` holds their sums, then their errors). */
#define XC_SUM_LANES 8

/* chain_sums(x, out): float64 (n,) values; float64 out (2 * XC_SUM_LANES,) gets the chain sums,
 * then the chain error sums. Releases the GIL. */
PyObject *xc_chain_sums(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* uniform_bins(confidence, correct, sums, counts, rights): float64 (n,) confidences and bool
 * (n,) correctness; for each of B uniform bins (b / B, (b + 1) / B] (bin 0 also holds 0, NaN),
 * int64 counts[b] and rights[b] (correct items), and float64 sums[b] (B, 2 * XC_SUM_LANES): the
 * TwoSum chain of its confidences (sum in column 0, error in column XC_SUM_LANES). */
PyObject *xc_uniform_bins(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
