"""Offline scoring of files in bounded memory: the engine of ``xent score``.

Inputs: ``.npy`` / ``.npz`` arrays (:mod:`~xentcore.files.sources`: memory maps, or a
decompressing stream for compressed ``.npz`` members), and tables through pyarrow
(:mod:`~xentcore.files.tables`: Parquet, Arrow IPC, CSV, JSON Lines; one file, a directory, a
partitioned dataset; local or remote) whose columns :mod:`~xentcore.files.columns` turns into
arrays. The input is cut into pieces (Parquet row groups, files) and chunks of rows
(:mod:`~xentcore.files.chunks`); each chunk is scored by :func:`xentcore.score` exactly as the
service would score it, and the chunks are merged from their sums and counts
(:mod:`~xentcore.files.partial`, through :class:`xentcore.Summary`), so a file larger than
memory gives the in-memory answer:

    loss.sum        = the chunks' loss sums added in double-double, rounded once
    loss.mean       = loss.sum / the weight sum                  (null when no weight)
    accuracy        = sum n_correct / sum n_scored
    confidence.mean = the chunks' confidence sums (double-double) / their count
    flagged.indices = the chunk's flagged indices + the chunk's first row

Per-item rules (the loss, the confidence, the prediction, the flags) depend on one row only, so
they are identical whatever the chunk size; the sums differ from one in-memory pass at most by
float rounding. Invalid input raises :class:`~xentcore.InputError` whose location carries the
global row index (``("predictions", 1234, 5)``) for arrays, and :class:`RowError` (the file, the
global row, the column) for tables. Per-item columns and flagged indices are written by
:mod:`~xentcore.files.outputs`, all renamed into place when the run has succeeded. The same
pieces can be scored as the tasks of a Dask cluster and merged in row order
(:mod:`~xentcore.files.cluster`, ``xent score --dask``; Dask is the optional extra
``xentcore[dask]``, imported only there).

>>> import numpy as np, pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = pathlib.Path(tmp) / "p.npy"
...     np.save(path, np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
...     source = open_rows(str(path))
...     result = score_file(source, options={"flag": {"min_confidence": 0.7}}, chunk_rows=2)
...     source.close()
>>> result.n_items, result.flagged_indices.tolist(), round(result.confidence_mean, 6)
(3, [2], 0.766667)
"""

from xentcore.files.chunks import Chunk, array_chunks, table_chunks
from xentcore.files.columns import Columns, Part, Selection
from xentcore.files.errors import FileError, RowError
from xentcore.files.formats import (
    ARRAY_FORMATS,
    FORMAT_CHOICES,
    TABLE_FORMATS,
    canonical_format,
    format_of,
)
from xentcore.files.outputs import ItemTable, Outputs, PerItemWriter, item_columns, write_indices
from xentcore.files.partial import (
    CALIBRATION_BINS,
    MAX_JSON_INDICES,
    CalibrationSums,
    OfflineResult,
    Partial,
)
from xentcore.files.scoring import (
    PER_ITEM_OPTIONS,
    score_chunk,
    score_chunks,
    score_file,
    score_piece,
    score_table,
)
from xentcore.files.sources import (
    CHUNK_ELEMENTS,
    RowSource,
    default_chunk_rows,
    open_rows,
)
from xentcore.files.tables import Piece, TableSource, open_table

__all__ = [
    "ARRAY_FORMATS",
    "CALIBRATION_BINS",
    "CHUNK_ELEMENTS",
    "FORMAT_CHOICES",
    "MAX_JSON_INDICES",
    "PER_ITEM_OPTIONS",
    "TABLE_FORMATS",
    "CalibrationSums",
    "Chunk",
    "Columns",
    "FileError",
    "ItemTable",
    "OfflineResult",
    "Outputs",
    "Part",
    "Partial",
    "PerItemWriter",
    "Piece",
    "RowError",
    "RowSource",
    "Selection",
    "TableSource",
    "array_chunks",
    "canonical_format",
    "default_chunk_rows",
    "format_of",
    "item_columns",
    "open_rows",
    "open_table",
    "score_chunk",
    "score_chunks",
    "score_file",
    "score_piece",
    "score_table",
    "table_chunks",
    "write_indices",
]
