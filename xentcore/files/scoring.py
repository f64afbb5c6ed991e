"""A whole input scored chunk by chunk and merged: ``.npy`` / ``.npz`` arrays (:func:`score_file`)
and tables (:func:`score_table`).

The unit of work is a *piece* (a Parquet row group, a file of another format, a run of array
rows): :func:`score_chunks` scores its chunks in order, each by one :func:`score_chunk` (the
core's ``check_batch`` and ``score_batch``, exactly what :func:`xentcore.score` runs, with the
same options), and returns their merged :class:`~xentcore.files.Partial`. Pieces scored
anywhere merge in row order (``a + b``) into the answer of one pass (see
:mod:`xentcore.files.partial` for the merge). :func:`score_piece` is that for one piece of a
table. Every chunk after the first is scored with the first chunk's task.

Per-item rules (the loss, the confidence, the prediction, the flags) depend on one row only, so
they are identical whatever the chunk size; the sums differ from one in-memory pass at most by
float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from xentcore import InputError, ScoreResult
from xentcore.files.chunks import Chunk, array_chunks, table_chunks
from xentcore.files.columns import Selection
from xentcore.files.errors import FileError
from xentcore.files.outputs import Outputs
from xentcore.files.partial import MAX_JSON_INDICES, CalibrationSums, OfflineResult, Partial
from xentcore.files.sources import CHUNK_ELEMENTS, RowSource, default_chunk_rows
from xentcore.files.tables import Piece, TableSource
from xentcore.score import check_threads, score_batch
from xentcore.types import ScoreOptions
from xentcore.validate import check_batch, check_flag_rules

__all__ = [
    "MAX_JSON_INDICES",
    "PER_ITEM_OPTIONS",
    "OfflineResult",
    "score_chunk",
    "score_chunks",
    "score_file",
    "score_piece",
    "score_table",
]

#: Options of :func:`xentcore.score` with one value per item: a chunk cannot take them (sample
#: weights come from a file or a column, chunk by chunk).
PER_ITEM_OPTIONS = frozenset({"sample_weights"})

#: ``on_chunk(chunk, result)``: called after each chunk is scored.
OnChunk = Callable[[Chunk, ScoreResult], None]


def score_chunk(
    chunk: Chunk, options: Mapping[str, Any], *, calibration: bool = False
) -> tuple[ScoreResult, Partial]:
    """Score one chunk: :func:`xentcore.score` of its arrays with ``options`` (keyword
    arguments of ``score``, ``flag`` included), and the chunk's :class:`Partial` (with the
    calibration sums when ``calibration``). The core's errors are raised as
    ``chunk.locate`` makes them (global rows; for tables, the file and the column)."""
    raw = {name: value for name, value in options.items() if name != "flag"}
    try:
        b = check_batch(
            chunk.predictions,
            chunk.labels,
            ScoreOptions(**raw, sample_weights=chunk.sample_weights),
        )
        r = score_batch(b, check_flag_rules(options.get("flag")), threads=check_threads(None))
        sums = CalibrationSums.of(b, r) if calibration else None
    except InputError as err:
        raise chunk.locate(err, chunk.start) from None
    return r, Partial.of(r, clip_eps=b.options.clip_eps, calibration=sums)


def score_chunks(
    chunks: Iterable[Chunk],
    options: Mapping[str, Any],
    *,
    calibration: bool = False,
    on_chunk: OnChunk | None = None,
) -> Partial | None:
    """Score the chunks of one piece in order and merge them (None when there are none).

    Each chunk is scored in the slices of :meth:`Chunk.slices` (narrow rows: several core
    calls, so that their per-item results stay small beside the chunk), and ``on_chunk`` is
    called with each slice and its result. The chunks may be views of reused buffers: each is
    scored before the next is taken.
    """
    call = dict(options)
    total: Partial | None = None
    for chunk in chunks:
        for piece in chunk.slices():
            r, part = score_chunk(piece, call, calibration=calibration)
            call["task"] = r.task  # every chunk the same task as the first
            if on_chunk is not None:
                on_chunk(piece, r)
            del r  # before the next slice is scored: one slice's results alive at a time
            if total is None:
                total = part
            else:
                total += part
    return total


def score_piece(
    source: TableSource,
    piece: Piece,
    selection: Selection,
    options: Mapping[str, Any],
    *,
    start: int = 0,
    chunk_rows: int,
    calibration: bool = False,
    on_chunk: OnChunk | None = None,
) -> Partial | None:
    """Score one piece of a table (``start``: the global index of its first row, for messages
    and outputs). Its partial counts flagged rows from the piece's first row."""
    chunks = table_chunks(source, piece, selection, start=start, chunk_rows=chunk_rows)
    return score_chunks(chunks, options, calibration=calibration, on_chunk=on_chunk)


def _call(options: Mapping[str, Any] | None) -> dict[str, Any]:
    call = dict(options or {})
    if not PER_ITEM_OPTIONS.isdisjoint(call):
        raise ValueError(f"score_file takes no per-item options ({', '.join(PER_ITEM_OPTIONS)})")
    return call


def _writer(outputs: Outputs, progress: Callable[[int], None] | None) -> OnChunk:
    def on_chunk(chunk: Chunk, r: ScoreResult) -> None:
        outputs.add(r, chunk.start, chunk.ids)
        if progress is not None:
            progress(chunk.start + chunk.n_rows)

    return on_chunk


def _finish(total: Partial, outputs: Outputs) -> OfflineResult:
    result = total.result()
    outputs.finish(result.flagged_indices)
    outputs.commit()
    return result


def score_file(
    predictions: RowSource,
    labels: RowSource | None = None,
    *,
    sample_weights: RowSource | None = None,
    options: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    per_item: Path | None = None,
    out: Path | None = None,
    flagged_out: Path | None = None,
    calibration: bool = False,
    progress: Callable[[int], None] | None = None,
) -> OfflineResult:
    """Score arrays (``.npy`` / ``.npz``) chunk by chunk; merge the chunks' sums exactly.

    ``options`` maps keyword arguments of :func:`xentcore.score` (``task``, ``input_type``,
    ``confidence``, ``flag``, ``ignore_index``...) to their values; those with one value per
    item (:data:`PER_ITEM_OPTIONS`) raise ValueError: ``sample_weights`` is an array read beside
    the predictions. ``chunk_rows``: rows per chunk (default :func:`default_chunk_rows`).
    ``per_item`` (.npz), ``out`` (Parquet, with a ``row`` column) and ``flagged_out`` are
    written only when the whole file has been scored. ``calibration`` adds the calibration
    figures. ``progress(rows_done)`` is called after every chunk.

    Raises :class:`InputError` (global row index in its location) for invalid data, and
    :class:`FileError` when the files do not fit together or an output cannot be written.
    """
    call = _call(options)
    size = chunk_rows or default_chunk_rows(predictions.shape)
    outputs = Outputs(table=out, per_item=per_item, flagged=flagged_out)
    try:
        outputs.open(predictions.n_rows)
        chunks = array_chunks(predictions, labels, sample_weights, chunk_rows=size)
        total = score_chunks(
            chunks, call, calibration=calibration, on_chunk=_writer(outputs, progress)
        )
        assert total is not None  # array_chunks yields at least one chunk
        return _finish(total, outputs)
    finally:
        outputs.discard()


def table_chunk_rows(source: TableSource, selection: Selection, pieces: list[Piece]) -> int:
    """Rows per chunk so that a chunk holds about :data:`CHUNK_ELEMENTS` predictions: K from the
    schema (several columns, a fixed-size list), else from the first row read."""
    name = selection.predictions[0]
    kind = source.schema.field(name).type
    width = selection.width()
    if width is None and not selection.spread and hasattr(kind, "list_size"):
        width = int(kind.list_size)
    if width is None and hasattr(kind, "value_type") and pieces:
        for batch in source.batches(pieces[0], [name], 1, numeric=selection.numeric):
            if batch.num_rows:
                width = len(batch.column(0)[0].values or [])
            break
    return max(1, CHUNK_ELEMENTS // max(1, width or 1))


def score_table(
    source: TableSource,
    selection: Selection,
    *,
    options: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    per_item: Path | None = None,
    out: Path | None = None,
    flagged_out: Path | None = None,
    calibration: bool = False,
    progress: Callable[[int], None] | None = None,
) -> OfflineResult:
    """Score a table piece by piece (:func:`score_piece`) and merge the pieces in row order.

    As :func:`score_file`, with the columns of ``selection``; ``out`` gets the ids of its
    ``ids`` column (else a ``row`` column). ``per_item`` needs the row count first (a reading
    pass for CSV and JSON Lines). Raises :class:`~xentcore.files.RowError` for a value that
    cannot be scored (file, global row, column), :class:`FileError` for a file that cannot be
    read, and :class:`InputError` for an invalid option.
    """
    call = _call(options)
    pieces = source.pieces()
    size = chunk_rows or table_chunk_rows(source, selection, pieces)
    outputs = Outputs(table=out, per_item=per_item, flagged=flagged_out, id_column=selection.ids)
    selection = replace(selection, read_ids=out is not None)  # ids only for --out
    try:
        outputs.open(source.count_rows() if per_item is not None else None)
        total: Partial | None = None
        on_chunk = _writer(outputs, progress)
        for piece in pieces:
            start = 0 if total is None else total.n_items
            part = score_piece(
                source,
                piece,
                selection,
                call,
                start=start,
                chunk_rows=size,
                calibration=calibration,
                on_chunk=on_chunk,
            )
            if part is None:  # an empty file or row group
                continue
            call["task"] = part.task
            if total is None:
                total = part
            else:
                total += part
        if total is None:
            raise FileError(f"{source.name}: no rows to score")
        return _finish(total, outputs)
    finally:
        outputs.discard()
