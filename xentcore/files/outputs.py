"""What ``xent score`` writes: per-item columns (an ``.npz``) and flagged row indices.

Both are written next to their target and renamed into place at the end, so a failure leaves
no half-written file under the asked name.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore import ScoreResult
from xentcore.files.sources import FileError

__all__ = ["PerItemWriter", "write_indices"]

#: Indices turned into text per write by :func:`write_indices` (bounds its temporary strings).
_TEXT_BATCH = 1 << 20


class PerItemWriter:
    """Per-item columns of ``n_total`` rows, written as chunks arrive, zipped into ``out``.

    Columns: ``loss`` (float64, NaN where ignored; only when the results carry a loss),
    ``confidence`` (float64), ``predicted`` (int64, or (N, K) bool for multilabel) and
    ``flagged`` (bool). Each is a memory-mapped ``.npy`` in a temporary directory next to
    ``out`` until :meth:`finish` stores them (uncompressed) in ``out``; :meth:`discard` removes
    the temporary files whatever happened.
    """

    def __init__(self, out: Path, n_total: int) -> None:
        self.out = out
        self.n_total = n_total
        self.tmp = Path(tempfile.mkdtemp(prefix=".xent-items-", dir=out.parent))
        self.maps: dict[str, np.memmap[Any, Any]] = {}

    def add(self, r: ScoreResult, start: int) -> None:
        """Write the columns of the chunk ``r`` whose first row is row ``start`` of the file."""
        if r.item_loss is not None:
            self.write("loss", start, r.item_loss)
        self.write("confidence", start, r.confidence)
        self.write("predicted", start, r.predicted_index)
        self.write("flagged", start, r.flagged)

    def write(self, name: str, start: int, values: npt.NDArray[Any]) -> None:
        """Rows ``start:start + len(values)`` of column ``name`` (created on first write)."""
        if name not in self.maps:
            self.maps[name] = np.lib.format.open_memmap(
                self.tmp / f"{name}.npy",
                mode="w+",
                dtype=values.dtype,
                shape=(self.n_total, *values.shape[1:]),
            )
        self.maps[name][start : start + values.shape[0]] = values

    def finish(self) -> None:
        """Flush the columns and store them in ``out`` (via ``out.part``, then renamed)."""
        for arr in self.maps.values():
            arr.flush()
        self.maps.clear()  # drop the maps before the files are read back
        partial = self.out.with_name(self.out.name + ".part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in sorted(self.tmp.glob("*.npy")):
                zf.write(path, arcname=path.name)
        partial.replace(self.out)
        self.discard()

    def discard(self) -> None:
        """Drop the maps and remove the temporary directory (idempotent)."""
        self.maps.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_indices(path: Path, indices: np.ndarray[Any, np.dtype[np.int64]]) -> None:
    """Write row indices to ``path``: a ``.npy`` int64 array, else text with one index a line.

    Written to a temporary file next to ``path`` and renamed, so a failure leaves no half file
    (and raises :class:`FileError`). No indices give an empty text file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as out:
            if path.suffix == ".npy":
                np.save(out, np.asarray(indices, dtype=np.int64))
            else:
                for start in range(0, indices.size, _TEXT_BATCH):
                    chunk = indices[start : start + _TEXT_BATCH].tolist()
                    out.write(("\n".join(map(str, chunk)) + "\n").encode())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FileError(f"{path}: cannot write: {exc.strerror or exc}") from None
