"""Offline scoring of ``.npy`` / ``.npz`` files in row chunks: the engine of ``xent score``.

Files are opened without reading them (:mod:`xentcore.files.sources`: memory maps, or a
decompressing stream for compressed ``.npz`` members). Each chunk of rows is scored by
:func:`xentcore.score` exactly as the service would score it, and the chunks are merged from
their sums and counts (:mod:`xentcore.files.scoring`), so a file larger than memory gives the
in-memory answer:

    loss.sum        = fsum over chunks of the chunk's loss_sum   (exactly rounded merge)
    loss.mean       = loss.sum / fsum(weight_sum)                (null when no weight)
    accuracy        = sum n_correct / sum n_scored
    confidence.mean = fsum(chunk sums of the existing confidences) / their count
    flagged.indices = the chunk's flagged indices + the chunk's first row

Per-item rules (the loss, the confidence, the prediction, the flags) depend on one row only, so
they are identical whatever the chunk size; the sums differ from one in-memory pass at most by
float rounding. Invalid input raises :class:`~xentcore.InputError` whose location carries the
global row index (``("predictions", 1234, 5)``). Per-item columns and flagged indices are
written by :mod:`xentcore.files.outputs`.

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

from xentcore.files.outputs import PerItemWriter, write_indices
from xentcore.files.scoring import MAX_JSON_INDICES, PER_ITEM_OPTIONS, OfflineResult, score_file
from xentcore.files.sources import (
    CHUNK_ELEMENTS,
    FileError,
    RowSource,
    default_chunk_rows,
    open_rows,
)

__all__ = [
    "CHUNK_ELEMENTS",
    "MAX_JSON_INDICES",
    "PER_ITEM_OPTIONS",
    "FileError",
    "OfflineResult",
    "PerItemWriter",
    "RowSource",
    "default_chunk_rows",
    "open_rows",
    "score_file",
    "write_indices",
]
