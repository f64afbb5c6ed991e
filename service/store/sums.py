"""Sums read from the store as one numpy table: a row per bucket (or stream), a column per sum.

Summaries over 720 hourly buckets or 1,000 streams are added and turned into figures with a few
numpy passes (``xentcore.summary.figures_rows``), not one Python object per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from service.store.base import StreamInfo, Sums
from service.store.schema import BIN_COLUMNS, COUNT_COLUMNS, SUM_COLUMNS
from xentcore.summary import BIN_FIELDS, SCALAR_FIELDS, BatchSummary, summary_from_columns

__all__ = ["StreamsTable", "SumsTable", "group_rows", "summary_of", "summary_values"]

_INDEX = {name: i for i, name in enumerate(SUM_COLUMNS)}
_SCALARS = tuple(c for c in SUM_COLUMNS if not c.startswith("bin_"))


@dataclass(frozen=True)
class SumsTable:
    """``keys[i]`` (a bucket number, or a row number), ``n_batches[i]`` and the sums of row i in
    ``values[i]`` (columns in the order of ``schema.SUM_COLUMNS``), rows sorted by key."""

    keys: npt.NDArray[np.int64]
    n_batches: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def columns(
        self, rows: npt.NDArray[np.float64] | None = None
    ) -> dict[str, npt.NDArray[np.float64]]:
        """The columns by BatchSummary field name, as ``figures_rows`` takes them."""
        v = self.values if rows is None else rows
        out = {name: v[..., _INDEX[name]] for name in SCALAR_FIELDS}
        for field, names in zip(BIN_FIELDS, BIN_COLUMNS, strict=True):
            out[field] = v[..., [_INDEX[n] for n in names]]
        return out

    def aligned(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """The sums of the rows of ``keys`` (sorted), one row per key: zeros where this table
        has none (label sums are absent from buckets nothing was labelled in)."""
        out = np.zeros((keys.shape[0], self.values.shape[1]))
        if keys.shape[0] == 0 or len(self) == 0:
            return out
        at = np.searchsorted(keys, self.keys)
        found = (at < keys.shape[0]) & (keys[np.minimum(at, keys.shape[0] - 1)] == self.keys)
        out[at[found]] = self.values[found]
        return out

    def total(self) -> BatchSummary:
        """Every row added up."""
        return summary_from_columns(self.columns(self.values.sum(axis=0, keepdims=True)), 0)

    def summary(self, i: int) -> BatchSummary:
        return summary_from_columns(self.columns(), i)

    def as_dict(self) -> dict[int, Sums]:
        """{key: Sums} (tests and tools)."""
        return {
            int(k): Sums(int(n), self.summary(i))
            for i, (k, n) in enumerate(zip(self.keys, self.n_batches, strict=True))
        }


@dataclass(frozen=True)
class StreamsTable:
    """Every stream (``infos[i]``) and its lifetime sums (row i of ``sums``)."""

    infos: list[StreamInfo]
    sums: SumsTable


def group_rows(rows: Sequence[Sequence[float]], width: int | None = None) -> SumsTable:
    """Rows of ``(key, n_batches, *sums)`` (several per key possible) added per key; rows with
    no batch are dropped. ``width``: the number of sums (default: ``SUM_COLUMNS``)."""
    if not rows:
        n = len(SUM_COLUMNS) if width is None else width
        return SumsTable(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n)))
    data = np.asarray(rows, dtype=np.float64)
    data = data[data[:, 1] > 0]
    keys, inverse = np.unique(data[:, 0].astype(np.int64), return_inverse=True)
    sums = np.zeros((keys.shape[0], data.shape[1] - 1))
    np.add.at(sums, inverse, data[:, 1:])
    return SumsTable(keys, sums[:, 0].astype(np.int64), sums[:, 1:])


def summary_values(s: BatchSummary) -> dict[str, Any]:
    """The column values of a summary (bins spread over their 45 columns)."""
    out: dict[str, Any] = {name: getattr(s, name) for name in _SCALARS}
    for names, values in zip(
        BIN_COLUMNS, (s.bin_count, s.bin_confidence_sum, s.bin_correct_sum), strict=True
    ):
        out.update(zip(names, values, strict=True))
    for name in BIN_COLUMNS[0]:
        out[name] = int(out[name])
    return out


def summary_of(row: Mapping[str, Any] | sa.RowMapping) -> BatchSummary:
    """The summary held by a row of sums (SUM over no rows = NULL = 0)."""
    scalars: dict[str, Any] = {
        name: (int(row[name] or 0) if name in COUNT_COLUMNS else float(row[name] or 0.0))
        for name in _SCALARS
    }
    count, conf, correct = ([float(row[name] or 0.0) for name in names] for names in BIN_COLUMNS)
    return BatchSummary(
        **scalars, bin_count=count, bin_confidence_sum=conf, bin_correct_sum=correct
    )
