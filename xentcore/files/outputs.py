"""What ``xent score`` writes: per-item columns (``--out`` Parquet, ``--per-item`` .npz) and
flagged row indices (``--flagged-out``).

Every file is written beside its target under a hidden temporary name and renamed into place
only when the whole run has succeeded (:class:`Outputs` commits them together), so a failure
leaves nothing under an asked name and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore import ScoreResult
from xentcore.files._lazy import pa, pq
from xentcore.files.errors import FileError
from xentcore.types import REASONS

__all__ = [
    "ITEM_COLUMNS",
    "ItemTable",
    "Outputs",
    "PerItemWriter",
    "item_columns",
    "write_indices",
]

#: Indices turned into text per write by :func:`write_indices` (bounds its temporary strings).
_TEXT_BATCH = 1 << 20
#: The per-item columns of ``--out``, after the id column (``loss`` only with labels).
ITEM_COLUMNS = ("loss", "confidence", "predicted", "flagged", "reasons")


def _exclusive(out: Path) -> Path:
    """A new empty hidden file beside ``out`` (created with the umask's permissions, which
    ``tempfile.mkstemp``'s 0600 would not give the renamed output)."""
    for _ in range(100):
        tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
        try:
            tmp.open("xb").close()
        except FileExistsError:
            continue
        return tmp
    raise FileError(f"{out}: cannot create a temporary file beside it")


def _unwritable(path: Path, exc: OSError) -> FileError:
    return FileError(f"{path}: cannot write: {exc.strerror or exc}")


class PerItemWriter:
    """Per-item columns of ``n_total`` rows, written as chunks arrive, zipped into ``out``.

    Columns: ``loss`` (float64, NaN where ignored; only when the results carry a loss),
    ``confidence`` (float64), ``predicted`` (int64, or (N, K) bool for multilabel) and
    ``flagged`` (bool). Each is a memory-mapped ``.npy`` in a temporary directory next to
    ``out`` until :meth:`stage` stores them (uncompressed) in ``out.part`` and :meth:`commit`
    renames that to ``out`` (:meth:`finish` does both); :meth:`discard` removes the temporary
    files whatever happened.
    """

    def __init__(self, out: Path, n_total: int) -> None:
        self.out = out
        self.n_total = n_total
        self.tmp = Path(tempfile.mkdtemp(prefix=".xent-items-", dir=out.parent))
        self.partial = out.with_name(out.name + ".part")
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

    def stage(self) -> None:
        """Flush the columns and store them in ``out.part``."""
        for arr in self.maps.values():
            arr.flush()
        self.maps.clear()  # drop the maps before the files are read back
        with zipfile.ZipFile(self.partial, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in sorted(self.tmp.glob("*.npy")):
                zf.write(path, arcname=path.name)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def commit(self) -> None:
        """Rename the staged ``out.part`` to ``out``."""
        self.partial.replace(self.out)

    def finish(self) -> None:
        """:meth:`stage`, then :meth:`commit`."""
        self.stage()
        self.commit()

    def discard(self) -> None:
        """Drop the maps and remove the temporary files (idempotent)."""
        self.maps.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.partial.unlink(missing_ok=True)


def _lists(present: npt.NDArray[np.bool_], values: Any, n: int) -> Any:
    """A list array of ``n`` rows: row i holds as many of ``values`` (in order) as ``present``
    (n x m booleans) has true entries in its row i."""
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def item_columns(r: ScoreResult) -> dict[str, Any]:
    """The per-item columns of a scored chunk as Arrow arrays (see :data:`ITEM_COLUMNS`).

    ``loss`` is null where an item has no loss (ignored), ``confidence`` null where it has none;
    ``predicted`` holds class indices, or class names with ``class_names`` (multilabel: the
    list of predicted classes); ``reasons`` the list of reasons each item is flagged for.
    """
    out: dict[str, Any] = {}
    if r.item_loss is not None:
        out["loss"] = pa.array(r.item_loss, from_pandas=True)  # NaN -> null
    out["confidence"] = pa.array(r.confidence, from_pandas=True)
    names = None if r.class_names is None else pa.array(list(r.class_names), pa.string())
    pred = r.predicted_index
    if pred.ndim == 2:  # multilabel: the classes predicted positive, per item
        classes = pa.array(np.nonzero(pred)[1].astype(np.int64))
        out["predicted"] = _lists(
            pred, classes if names is None else names.take(classes), r.n_items
        )
    else:
        classes = pa.array(pred.astype(np.int64, copy=False))
        out["predicted"] = classes if names is None else names.take(classes)
    out["flagged"] = pa.array(r.flagged)
    fired = np.stack([getattr(r.masks, name) for name in REASONS], axis=1)
    codes = pa.array(np.nonzero(fired)[1].astype(np.int64))
    out["reasons"] = _lists(fired, pa.array(list(REASONS), pa.string()).take(codes), r.n_items)
    return out


class ItemTable:
    """The ``--out`` Parquet file: an id column, then the columns of :func:`item_columns`, one
    row group per chunk, written to a hidden temporary file beside ``out`` until :meth:`commit`.

    ``id_column``: the name of the ids column (its values come with each chunk); None writes
    ``row``, the 0-based global row index.
    """

    def __init__(self, out: Path, id_column: str | None = None) -> None:
        name = id_column or "row"
        if name in ITEM_COLUMNS:
            raise FileError(f"--ids-col {name!r} is also the name of an output column of --out")
        self.out, self.id_name = out, name
        self.tmp = _exclusive(out)
        self.writer: Any = None
        self.schema: Any = None

    def add(self, r: ScoreResult, start: int, ids: Any = None) -> None:
        """Write the chunk ``r`` (rows ``start:start + n``; ``ids`` its ids, if any)."""
        if ids is None:
            ids = pa.array(np.arange(start, start + r.n_items, dtype=np.int64))
        columns = {self.id_name: ids, **item_columns(r)}
        table = pa.table(columns)
        try:
            if self.writer is None:
                self.schema = table.schema
                self.writer = pq.ParquetWriter(self.tmp, self.schema)
            elif not table.schema.equals(self.schema):
                table = table.cast(self.schema)
            self.writer.write_table(table)
        except OSError as exc:
            raise _unwritable(self.out, exc) from None
        except pa.ArrowException as exc:
            raise FileError(f"{self.out}: cannot write: {exc}") from None

    def stage(self) -> None:
        """Close the file (its footer written)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def commit(self) -> None:
        """Rename the staged file to ``out``."""
        self.tmp.replace(self.out)

    def discard(self) -> None:
        """Close and remove the temporary file (idempotent)."""
        if self.writer is not None:
            with contextlib.suppress(Exception):  # already failing: the file goes anyway
                self.writer.close()
            self.writer = None
        self.tmp.unlink(missing_ok=True)


def _write_indices_to(tmp: Path, path: Path, indices: npt.NDArray[Any]) -> None:
    with tmp.open("wb") as out:
        if path.suffix == ".npy":
            np.save(out, np.asarray(indices, dtype=np.int64))
        else:
            for start in range(0, indices.size, _TEXT_BATCH):
                chunk = indices[start : start + _TEXT_BATCH].tolist()
                out.write(("\n".join(map(str, chunk)) + "\n").encode())


def write_indices(path: Path, indices: np.ndarray[Any, np.dtype[np.int64]]) -> None:
    """Write row indices to ``path``: a ``.npy`` int64 array, else text with one index a line.

    Written to a temporary file next to ``path`` and renamed, so a failure leaves no half file
    (and raises :class:`FileError`). No indices give an empty text file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _write_indices_to(tmp, path, indices)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _unwritable(path, exc) from None


class Outputs:
    """The files of one run, committed together: ``table`` (``--out``, Parquet), ``per_item``
    (``--per-item``, .npz) and ``flagged`` (``--flagged-out``).

    Construction checks that their directories exist (before anything is scored). Then
    :meth:`open` (with the row count, which only ``per_item`` needs), :meth:`add` per chunk,
    :meth:`finish` with the flagged indices (staging every file), :meth:`commit`; or
    :meth:`discard` at any point, which removes every temporary file.
    """

    def __init__(
        self,
        *,
        table: Path | None = None,
        per_item: Path | None = None,
        flagged: Path | None = None,
        id_column: str | None = None,
    ) -> None:
        for path in (table, per_item, flagged):
            if path is not None and not path.parent.is_dir():
                raise FileError(f"{path}: cannot write: its directory does not exist")
        self.table_path, self.per_item_path, self.flagged_path = table, per_item, flagged
        self.id_column = id_column
        self.table: ItemTable | None = None
        self.per_item: PerItemWriter | None = None
        self.flagged_tmp: Path | None = None

    @property
    def wanted(self) -> bool:
        """Whether any file is to be written."""
        return any(p is not None for p in (self.table_path, self.per_item_path, self.flagged_path))

    def open(self, n_total: int | None) -> None:
        """Create the temporary files (``n_total``: rows of the input; needed by per_item)."""
        try:
            if self.table_path is not None:
                self.table = ItemTable(self.table_path, self.id_column)
            if self.per_item_path is not None:
                assert n_total is not None
                self.per_item = PerItemWriter(self.per_item_path, n_total)
        except OSError as exc:
            self.discard()
            raise FileError(f"cannot write beside the outputs: {exc.strerror or exc}") from None

    def add(self, r: ScoreResult, start: int, ids: Any = None) -> None:
        """Write a scored chunk whose first row is global row ``start``."""
        if self.table is not None:
            self.table.add(r, start, ids)
        if self.per_item is not None:
            self.per_item.add(r, start)

    def finish(self, flagged_indices: npt.NDArray[Any]) -> None:
        """Stage every file (the flagged indices written to theirs)."""
        try:
            if self.table is not None:
                self.table.stage()
            if self.per_item is not None:
                self.per_item.stage()
            if self.flagged_path is not None:
                self.flagged_tmp = self.flagged_path.with_name(f".{self.flagged_path.name}.tmp")
                _write_indices_to(self.flagged_tmp, self.flagged_path, flagged_indices)
        except OSError as exc:
            failed = exc.filename or "an output"
            raise FileError(f"{failed}: cannot write: {exc.strerror or exc}") from None

    def commit(self) -> None:
        """Rename every staged file into place."""
        if self.table is not None:
            self.table.commit()
        if self.per_item is not None:
            self.per_item.commit()
        if self.flagged_tmp is not None and self.flagged_path is not None:
            self.flagged_tmp.replace(self.flagged_path)
            self.flagged_tmp = None

    def discard(self) -> None:
        """Remove every temporary file (idempotent)."""
        if self.table is not None:
            self.table.discard()
        if self.per_item is not None:
            self.per_item.discard()
        if self.flagged_tmp is not None:
            self.flagged_tmp.unlink(missing_ok=True)
