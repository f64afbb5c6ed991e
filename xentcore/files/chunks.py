"""Chunks: runs of consecutive rows as the arrays one :func:`xentcore.score` call takes.

:func:`array_chunks` cuts ``.npy`` / ``.npz`` arrays into chunks (views of the memory maps, or
decompressed rows). :func:`table_chunks` reads one piece of a table (a Parquet row group, a
file) in record batches of an eighth of a chunk, converts each (:class:`~.columns.Selection`)
and copies it into a chunk buffer that is reused from chunk to chunk: the reader then holds an
eighth of a chunk at a time, and the chunk exists once. A chunk never spans two pieces.

Each chunk carries ``locate``, which turns the core's :class:`~xentcore.InputError` about the
chunk into the error to raise: for arrays the same error with the row made global, for tables a
:class:`~xentcore.files.RowError` naming the file, the global row and the column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.errors import InputError
from xentcore.files._lazy import pa
from xentcore.files.columns import Part, Selection
from xentcore.files.errors import FileError
from xentcore.files.sources import RowSource
from xentcore.files.tables import Piece, TableSource

__all__ = [
    "MIN_SLICE",
    "READS_PER_CHUNK",
    "RESULT_BYTES",
    "Chunk",
    "array_chunks",
    "global_error",
    "table_chunks",
]

#: A table is read in record batches of ``chunk_rows / READS_PER_CHUNK`` rows.
READS_PER_CHUNK = 8
#: Bytes a row of one core call's per-item results takes, about (:meth:`Chunk.slices`).
RESULT_BYTES = 64
#: Rows a chunk's slices have at least (per-call costs stay small beside the work).
MIN_SLICE = 1 << 13


def global_error(err: InputError, start: int) -> Exception:
    """The same error with the chunk's row index made global (offset by the chunk's start)."""
    loc = err.location
    if start and len(loc) > 1 and loc[0] in ("predictions", "labels", "sample_weights"):
        if isinstance(loc[1], int):
            return InputError((loc[0], loc[1] + start, *loc[2:]), err.reason, kind=err.kind)
    return err


@dataclass
class Chunk:
    """Rows ``start:start + n_rows`` of the input (``start``: the global index of the first).

    ``ids`` is an Arrow array (tables with ``--ids-col``) or None; ``locate(err, start)`` maps
    the core's error about these rows to the error to raise.
    """

    start: int
    predictions: npt.NDArray[Any]
    labels: npt.NDArray[Any] | None = None
    sample_weights: npt.NDArray[Any] | None = None
    ids: Any = None
    locate: Callable[[InputError, int], Exception] = global_error

    @property
    def n_rows(self) -> int:
        return int(self.predictions.shape[0])

    def rows(self, a: int, b: int) -> Chunk:
        """Rows ``a:b`` of this chunk (views)."""
        return Chunk(
            self.start + a,
            self.predictions[a:b],
            None if self.labels is None else self.labels[a:b],
            None if self.sample_weights is None else self.sample_weights[a:b],
            None if self.ids is None else self.ids.slice(a, b - a),
            self.locate,
        )

    def slices(self) -> Iterator[Chunk]:
        """The chunk in the slices one core call scores (one slice unless its rows are narrow).

        A call's per-item results (loss, confidences, prediction, true class, flags) take about
        :data:`RESULT_BYTES` a row; a slice has as many rows as keeps them under a quarter of
        the chunk's input (at least :data:`MIN_SLICE` rows): a binary chunk of one float64 and
        one int64 label a row is scored in sixteenths, ten float32 logits in fifths, a row of
        a thousand classes whole.
        """
        n = self.n_rows
        arrays = (self.predictions, self.labels, self.sample_weights)
        row_bytes = sum(a.nbytes for a in arrays if a is not None) // max(1, n)
        size = max(MIN_SLICE, n * row_bytes // (4 * RESULT_BYTES))
        if size >= n:
            yield self
            return
        for a in range(0, n, size):
            yield self.rows(a, min(n, a + size))


def _row_ranges(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of every chunk; one empty chunk for an empty file (the core decides)."""
    if n == 0:
        yield 0, 0
    for start in range(0, n, size):
        yield start, min(n, start + size)


def array_chunks(
    predictions: RowSource,
    labels: RowSource | None = None,
    sample_weights: RowSource | None = None,
    *,
    chunk_rows: int,
) -> Iterator[Chunk]:
    """Chunks of ``chunk_rows`` rows of arrays read side by side (one empty chunk for an empty
    file). Raises :class:`FileError` when the arrays' row counts differ."""
    n = predictions.n_rows
    for other in (labels, sample_weights):
        if other is not None and other.n_rows != n:
            raise FileError(f"{other.name} has {other.n_rows:,} rows, {predictions.name} has {n:,}")
    for start, stop in _row_ranges(n, chunk_rows):
        yield Chunk(
            start,
            predictions.read(start, stop),
            None if labels is None else labels.read(start, stop),
            None if sample_weights is None else sample_weights.read(start, stop),
        )


class _Buffer:
    """Chunk buffers filled from converted batches; full chunks come out as views of them
    (valid until the next chunk is taken: the buffers are reused)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.arrays: dict[str, npt.NDArray[Any]] = {}
        self.ids: list[Any] = []
        self.filled = 0

    def _put(self, name: str, values: npt.NDArray[Any], at: int) -> None:
        have = self.arrays.get(name)
        if have is None or have.dtype != values.dtype:  # first rows, or a wider type
            dtype = values.dtype if have is None else np.result_type(have, values)
            grown = np.empty((self.rows, *values.shape[1:]), dtype=dtype)
            if have is not None and at:
                grown[:at] = have[:at]
            self.arrays[name] = have = grown
        have[at : at + values.shape[0]] = values

    def add(self, part: Part) -> Iterator[dict[str, Any]]:
        """Copy ``part`` in; yield each chunk it fills (as a mapping of views)."""
        done = 0
        while done < part.n_rows:
            take = min(part.n_rows - done, self.rows - self.filled)
            for name in ("predictions", "labels", "sample_weights"):
                values = getattr(part, name)
                if values is not None:
                    self._put(name, values[done : done + take], self.filled)
            if part.ids is not None:
                self.ids.append(part.ids.slice(done, take))
            self.filled += take
            done += take
            if self.filled == self.rows:
                yield self.take()

    def take(self) -> dict[str, Any]:
        """The filled rows as a chunk's arrays (and ids), and an empty buffer."""
        n = self.filled
        out: dict[str, Any] = {name: a[:n] for name, a in self.arrays.items()}
        if self.ids:
            out["ids"] = pa.concat_arrays(self.ids)
        self.ids, self.filled = [], 0
        return out


def table_chunks(
    source: TableSource,
    piece: Piece,
    selection: Selection,
    *,
    start: int,
    chunk_rows: int,
) -> Iterator[Chunk]:
    """The chunks of one piece of a table (``start``: the global index of its first row).

    Chunks are views of buffers reused from one chunk to the next: score each before taking
    the next. Raises :class:`~xentcore.files.RowError` for a value that cannot be read or
    converted.
    """
    where = source.display(piece.path)

    def locate(err: InputError, first: int) -> Exception:
        return selection.locate(err, where, first)

    buffer = _Buffer(chunk_rows)
    row = first = start
    batches = source.batches(
        piece,
        selection.columns,
        max(1, chunk_rows // READS_PER_CHUNK),
        start=start,
        numeric=selection.numeric,
    )
    for batch in batches:
        part = selection.convert(batch, where, row)
        row += part.n_rows
        for arrays in buffer.add(part):
            yield Chunk(first, **arrays, locate=locate)
            first += chunk_rows
    if buffer.filled:
        yield Chunk(first, **buffer.take(), locate=locate)
