"""Offline scoring of ``.npy`` / ``.npz`` files in row chunks: the engine of ``xent score``.

Files are opened without reading them: ``.npy`` files and uncompressed ``.npz`` members
(``np.savez``) are memory-mapped; compressed ``.npz`` members (``np.savez_compressed``) are
decompressed as a stream, one chunk at a time. Each chunk of rows is scored by
``xentcore.score`` exactly as the service would score it, and the chunks are merged from their
sums and counts, so a file larger than memory gives the in-memory answer:

    loss.sum        = fsum over chunks of the chunk's loss_sum   (exactly rounded merge)
    loss.mean       = loss.sum / fsum(weight_sum)                (null when no weight)
    accuracy        = sum n_correct / sum n_scored
    confidence.mean = fsum(chunk sums of the existing confidences) / their count
    flagged.indices = the chunk's flagged indices + the chunk's first row

Per-item rules (the loss, the confidence, the prediction, the flags) depend on one row only, so
they are identical whatever the chunk size; the sums differ from one in-memory pass at most by
float rounding. Invalid input raises :class:`~xentcore.InputError` whose location carries the
global row index (``("predictions", 1234, 5)``).
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

import xentcore as xc
from xentcore import InputError, ScoreResult
from xentcore.score import NO_WEIGHT_WARNING, clip_warning
from xentcore.validate import DEFAULT_EPS

__all__ = [
    "MAX_JSON_INDICES",
    "FileError",
    "OfflineResult",
    "ProgressBar",
    "RowSource",
    "default_chunk_rows",
    "write_indices",
    "open_rows",
    "score_file",
]

#: Numbers per chunk when ``chunk_rows`` is not given (about 32 MB of float64 work per chunk).
CHUNK_ELEMENTS = 1 << 22
#: Flagged indices in the JSON of ``xent score --json`` (``--max-flagged``; all go to a file
#: with ``--flagged-out``).
MAX_JSON_INDICES = 1000


class FileError(Exception):
    """A file that cannot be read as an array (missing, not .npy/.npz, unknown member...)."""


@dataclass
class RowSource:
    """Rows of one array in a file, read in order by :meth:`read`.

    ``name`` is how messages refer to it (``eval.npz:logits``). ``array`` is the memory-mapped
    array, or None for a compressed ``.npz`` member, which is decompressed as a stream by
    ``read`` (rows must then be asked for in order, as :func:`score_file` does).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    array: npt.NDArray[Any] | None = None
    stream: IO[bytes] | None = None
    _next_row: int = 0
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        """Rows (items): the length of the first axis."""
        return self.shape[0] if self.shape else 0

    def read(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Rows ``start:stop`` as an array (a view of the map, or freshly decompressed bytes)."""
        if self.array is not None:
            return self.array[start:stop]
        assert self.stream is not None
        if start != self._next_row:
            raise FileError(f"{self.name}: compressed members can only be read in order")
        row_items = math.prod(self.shape[1:])
        want = (stop - start) * row_items * self.dtype.itemsize
        data = self.stream.read(want)
        if len(data) != want:
            raise FileError(f"{self.name}: the file ends before row {stop}")
        self._next_row = stop
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start, *self.shape[1:]))

    def close(self) -> None:
        """Close the files this source keeps open."""
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """``"a.npz:logits"`` -> (a.npz, "logits"); a path without ``.npz:`` -> (path, None)."""
    head, sep, member = spec.rpartition(":")
    if sep and head.lower().endswith(".npz") and member:
        return Path(head), member
    return Path(spec), None


def _npz_member(path: Path, member: str | None, default: str) -> str:
    with zipfile.ZipFile(path) as zf:
        names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    if member is None:
        if len(names) == 1:
            return names[0]
        if default in names:
            return default
        raise FileError(f"{path}: holds {', '.join(names) or 'no arrays'}; name one as {path}:NAME")
    if member not in names:
        raise FileError(f"{path}: no array named {member!r} (it holds {', '.join(names)})")
    return member


def _read_header(fp: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except ValueError as exc:
        raise FileError(f"{name}: not a .npy array ({exc})") from None
    return tuple(shape), bool(fortran), np.dtype(dtype)


def _open_npz(path: Path, member: str, name: str) -> RowSource:
    zf = zipfile.ZipFile(path)
    info = zf.getinfo(member + ".npy")
    if info.compress_type == zipfile.ZIP_STORED:
        with path.open("rb") as raw:
            # The member's bytes are stored as they are: map them where they start, after the
            # zip's local header (its own name and extra field lengths may differ from the
            # central directory's, so read them there).
            raw.seek(info.header_offset + 26)
            n_name, n_extra = np.frombuffer(raw.read(4), dtype="<u2").tolist()
            start = info.header_offset + 30 + n_name + n_extra
            raw.seek(start)
            shape, fortran, dtype = _read_header(raw, name)
            offset = raw.tell()
        zf.close()
        order: Literal["C", "F"] = "F" if fortran else "C"
        if math.prod(shape) == 0:
            return RowSource(name, shape, dtype, np.empty(shape, dtype=dtype, order=order))
        mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
        return RowSource(name, shape, dtype, mapped)
    stream = zf.open(info)
    shape, fortran, dtype = _read_header(stream, name)
    if fortran and len(shape) > 1:  # rows are not contiguous in the stream: read it whole
        arr = np.lib.format.read_array(zf.open(info), allow_pickle=False)
        stream.close()
        zf.close()
        return RowSource(name, shape, dtype, arr)
    source = RowSource(name, shape, dtype, stream=stream)
    source._closers += [zf.close, stream.close]
    return source


def open_rows(spec: str, *, default_member: str = "predictions") -> RowSource:
    """Open ``FILE.npy``, ``FILE.npz:NAME`` or ``FILE.npz`` (its only array, or ``default_member``).

    Nothing is read but the header. Raises :class:`FileError` for a missing or unreadable file,
    an unknown member, or an object (pickled) array.
    """
    path, member = _split_spec(spec)
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            member = _npz_member(path, member, default_member)
            source = _open_npz(path, member, f"{path}:{member}")
        else:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if not isinstance(arr, np.ndarray):
                raise FileError(f"{path}: not a .npy or .npz file")
            source = RowSource(str(path), arr.shape, arr.dtype, arr)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FileError(f"{path}: cannot read it as an array ({exc})") from None
    if source.dtype.hasobject:
        source.close()
        raise FileError(f"{source.name}: object arrays are not read (expected numbers)")
    if not source.shape:
        source.close()
        raise FileError(f"{source.name}: expected an array of rows, got a scalar")
    return source


def default_chunk_rows(shape: tuple[int, ...]) -> int:
    """Rows per chunk so that a chunk holds about :data:`CHUNK_ELEMENTS` numbers."""
    return max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))


class ProgressBar:
    """A carriage-return progress bar on a text stream (stderr), redrawn at most 10 times/s."""

    def __init__(self, total: int, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total, self.width = total, width
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        """Redraw for ``done`` of ``total`` rows."""
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        frac = done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self.started
        self.stream.write(f"\r[{bar}] {frac:6.1%} {done:,}/{self.total:,} rows {elapsed:.1f}s")
        self.stream.flush()

    def close(self, done: int) -> None:
        """Draw the final state and end the line."""
        self.update(done, force=True)
        self.stream.write("\n")
        self.stream.flush()


@dataclass
class OfflineResult:
    """The merged figures of a file: the ``/v1/score`` answer without ``items``."""

    task: str
    input_type: str
    n_items: int
    n_classes: int
    confidence_method: str
    loss_sum: float | None
    weight_sum: float | None
    n_scored: int | None
    n_correct: int | None
    confidence_sum: float
    confidence_count: int
    flagged_indices: npt.NDArray[np.intp]
    warnings: list[str]

    @property
    def loss_mean(self) -> float | None:
        """loss_sum / weight_sum (None without labels or weight)."""
        if self.loss_sum is None or not self.weight_sum:
            return None
        return self.loss_sum / self.weight_sum

    @property
    def accuracy(self) -> float | None:
        """n_correct / n_scored (None without labels or scored items)."""
        if self.n_correct is None or not self.n_scored:
            return None
        return self.n_correct / self.n_scored

    @property
    def confidence_mean(self) -> float | None:
        """Plain mean of the confidences that exist (None if none do)."""
        return self.confidence_sum / self.confidence_count if self.confidence_count else None

    def as_json(self, max_indices: int | None = MAX_JSON_INDICES) -> dict[str, Any]:
        """The ``/v1/score`` response shape, without ``items`` and ``recorded``.

        ``flagged.indices`` holds the first ``max_indices`` flagged rows (all with None), and
        ``flagged.indices_truncated`` says whether rows were left out; ``count`` and ``rate``
        always cover them all. (A file of millions of rows can flag millions: 24 MB of JSON.)
        """
        loss = None
        if self.loss_sum is not None:
            loss = {"mean": self.loss_mean, "sum": self.loss_sum, "n_scored": self.n_scored}
        count = int(self.flagged_indices.size)
        shown = self.flagged_indices if max_indices is None else self.flagged_indices[:max_indices]
        return {
            "task": self.task,
            "n_items": self.n_items,
            "n_classes": self.n_classes,
            "loss": loss,
            "accuracy": self.accuracy,
            "confidence": {"method": self.confidence_method, "mean": self.confidence_mean},
            "flagged": {
                "count": count,
                "rate": count / self.n_items if self.n_items else 0.0,
                "indices": shown.tolist(),
                "indices_truncated": shown.size < count,
            },
            "warnings": self.warnings,
        }


def _other_warnings(seen: dict[str, None], r: ScoreResult, clip_eps: float) -> None:
    """Add a chunk's warnings other than the clip count (summed) and the weight one (decided
    on the whole file), once each, in order."""
    per_file = {NO_WEIGHT_WARNING, *clip_warning(r.input_type, clip_eps, r.n_clipped)}
    for text in r.warnings:
        if text not in per_file:
            seen.setdefault(text, None)


class _PerItem:
    """Per-item columns written to .npy files as chunks arrive, zipped into an .npz at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp = Path(tempfile.mkdtemp(prefix=".xent-items-", dir=out.parent))
        self.maps: dict[str, np.memmap[Any, Any]] = {}

    def write(self, name: str, start: int, n_total: int, values: npt.NDArray[Any]) -> None:
        if name not in self.maps:
            self.maps[name] = np.lib.format.open_memmap(
                self.tmp / f"{name}.npy",
                mode="w+",
                dtype=values.dtype,
                shape=(n_total, *values.shape[1:]),
            )
        self.maps[name][start : start + values.shape[0]] = values

    def finish(self) -> None:
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
        self.maps.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _global(err: InputError, start: int) -> InputError:
    """The same error with the chunk's row index made global (offset by the chunk's start)."""
    loc = err.location
    if start and len(loc) > 1 and loc[0] in ("predictions", "labels") and isinstance(loc[1], int):
        return InputError((loc[0], loc[1] + start, *loc[2:]), err.reason, kind=err.kind)
    return err


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of every chunk; one empty chunk for an empty file (the core decides)."""
    if n == 0:
        yield 0, 0
    for start in range(0, n, size):
        yield start, min(n, start + size)


def score_file(
    predictions: RowSource,
    labels: RowSource | None = None,
    *,
    chunk_rows: int | None = None,
    per_item: Path | None = None,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> OfflineResult:
    """Score a file chunk by chunk; merge the chunks' sums exactly (see the module docstring).

    ``options`` are those of :func:`xentcore.score` (``task``, ``input_type``, ``confidence``,
    ``flag``, ``ignore_index``...); options with one value per item (``sample_weights``) are not
    supported here. ``per_item``: write ``loss`` (float64, NaN where ignored; only with labels),
    ``confidence`` (float64), ``predicted`` (int64, or (N, K) bool for multilabel) and
    ``flagged`` (bool) to this ``.npz``. ``progress(rows_done)`` is called after every chunk.

    Raises :class:`InputError` (global row index in its location) for invalid data, and
    :class:`FileError` when the files do not fit together.
    """
    n = predictions.n_rows
    if labels is not None and labels.n_rows != n:
        raise FileError(f"{labels.name} has {labels.n_rows:,} rows, {predictions.name} has {n:,}")
    size = chunk_rows or default_chunk_rows(predictions.shape)
    items = _PerItem(per_item) if per_item is not None else None
    try:
        result = _score_chunks(predictions, labels, n, size, items, progress, options)
        if items is not None:
            items.finish()
    finally:
        if items is not None:
            items.discard()
    return result


def _score_chunks(
    predictions: RowSource,
    labels: RowSource | None,
    n: int,
    size: int,
    items: _PerItem | None,
    progress: Callable[[int], None] | None,
    options: dict[str, Any],
) -> OfflineResult:
    losses: list[float] = []
    weights: list[float] = []
    confs: list[float] = []
    conf_count = n_scored = n_correct = 0
    flagged: list[npt.NDArray[np.intp]] = []
    seen: dict[str, None] = {}
    n_clipped = 0
    clip_eps = float(options.get("clip_eps", DEFAULT_EPS))
    first: ScoreResult | None = None
    for start, stop in _chunks(n, size):
        x = predictions.read(start, stop)
        y = None if labels is None else labels.read(start, stop)
        try:
            r = xc.score(x, y, **options)
        except InputError as err:
            raise _global(err, start) from None
        if first is None:
            first = r
            options = {**options, "task": r.task}  # every chunk the same task as the first
        if r.loss_sum is not None:
            losses.append(r.loss_sum)
            weights.append(r.weight_sum or 0.0)
            n_scored += r.n_scored or 0
            n_correct += r.n_correct or 0
        ok = ~np.isnan(r.confidence)
        confs.append(float(r.confidence[ok].sum()))
        conf_count += int(np.count_nonzero(ok))
        flagged.append(r.flagged_indices + start)
        n_clipped += r.n_clipped
        _other_warnings(seen, r, clip_eps)
        if items is not None:
            _write_items(items, r, start, n)
        if progress is not None:
            progress(stop)
    assert first is not None
    warnings = [*clip_warning(first.input_type, clip_eps, n_clipped), *seen]
    has_loss = first.loss_sum is not None
    loss_sum = math.fsum(losses) if has_loss else None
    weight_sum = math.fsum(weights) if has_loss else None
    if has_loss and not weight_sum:
        warnings.append(NO_WEIGHT_WARNING)
    return OfflineResult(
        task=first.task,
        input_type=first.input_type,
        n_items=n,
        n_classes=first.n_classes,
        confidence_method=first.confidence_method,
        loss_sum=loss_sum,
        weight_sum=weight_sum,
        n_scored=n_scored if has_loss else None,
        n_correct=n_correct if has_loss else None,
        confidence_sum=math.fsum(confs),
        confidence_count=conf_count,
        flagged_indices=np.concatenate(flagged),
        warnings=warnings,
    )


def _write_items(items: _PerItem, r: ScoreResult, start: int, n: int) -> None:
    if r.item_loss is not None:
        items.write("loss", start, n, r.item_loss)
    items.write("confidence", start, n, r.confidence)
    items.write("predicted", start, n, r.predicted_index)
    items.write("flagged", start, n, r.flagged)


def write_indices(path: Path, indices: np.ndarray[Any, np.dtype[np.int64]]) -> None:
    """Write row indices to ``path``: a ``.npy`` array, else text with one index a line.

    Written to a temporary file next to ``path`` and renamed, so a failure leaves no half file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as out:
            if path.suffix == ".npy":
                np.save(out, np.asarray(indices, dtype=np.int64))
            else:
                for start in range(0, indices.size, 1 << 20):
                    chunk = indices[start : start + (1 << 20)].tolist()
                    out.write(("\n".join(map(str, chunk)) + "\n").encode())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FileError(f"{path}: cannot write: {exc.strerror or exc}") from None
