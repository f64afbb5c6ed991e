"""Rows of a ``.npy`` / ``.npz`` array, opened without reading it.

``.npy`` files and uncompressed ``.npz`` members (``np.savez``) are memory-mapped; compressed
``.npz`` members (``np.savez_compressed``) are decompressed as a stream, one chunk of rows at a
time (so they are read in order). Fortran-ordered compressed members with more than one axis
are the exception: their rows are not contiguous in the stream, so they are read whole.

A file that is neither a ``.npy`` array nor a zip archive is refused from its first bytes, with
what it looks like instead (numpy would try to unpickle it, and say so).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from xentcore.files.errors import FileError
from xentcore.files.formats import looks_like

__all__ = [
    "CHUNK_ELEMENTS",
    "FileError",
    "RowSource",
    "default_chunk_rows",
    "open_rows",
    "peek",
]

#: Numbers per chunk when ``chunk_rows`` is not given (about 32 MB of float64 work per chunk).
CHUNK_ELEMENTS = 1 << 22
#: Bytes :func:`peek` reads at each end of a file.
_PEEK = 512


@dataclass
class RowSource:
    """Rows of one array in a file, read in order by :meth:`read`.

    ``name`` is how messages refer to it (``eval.npz:logits``). ``array`` is the memory-mapped
    array, or None for a compressed ``.npz`` member, which is decompressed from ``stream`` by
    ``read`` (rows must then be asked for in order, as :func:`~xentcore.files.score_file` does).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    array: npt.NDArray[Any] | None = None
    stream: IO[bytes] | None = None
    _next_row: int = field(default=0, init=False, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)

    @property
    def n_rows(self) -> int:
        """Rows (items): the length of the first axis."""
        return self.shape[0] if self.shape else 0

    def read(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Rows ``start:stop`` as an array (a view of the map, or freshly decompressed bytes).

        A stream reads ``(stop - start) * prod(shape[1:]) * itemsize`` bytes; it raises
        :class:`FileError` when ``start`` is not where the previous read stopped or when the
        member ends early.
        """
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

    def on_close(self, *closers: Callable[[], None]) -> None:
        """Have :meth:`close` call ``closers`` (the last added first)."""
        self._closers.extend(closers)

    def close(self) -> None:
        """Close the files this source keeps open (idempotent)."""
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
    """The member to read: the one named, else the file's only array, else ``default``."""
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
    """(shape, fortran order, dtype) of the ``.npy`` header at ``fp``'s position."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except ValueError as exc:
        raise FileError(f"{name}: not a .npy array ({exc})") from None
    return tuple(shape), bool(fortran), np.dtype(dtype)


def _map_stored(path: Path, info: zipfile.ZipInfo, name: str) -> RowSource:
    """Memory-map an uncompressed member where its bytes start in the zip file."""
    with path.open("rb") as raw:
        # The member's bytes are stored as they are: map them where they start, after the zip's
        # local header (its own name and extra field lengths may differ from the central
        # directory's, so read them there).
        raw.seek(info.header_offset + 26)
        n_name, n_extra = np.frombuffer(raw.read(4), dtype="<u2").tolist()
        raw.seek(info.header_offset + 30 + n_name + n_extra)
        shape, fortran, dtype = _read_header(raw, name)
        offset = raw.tell()
    order: Literal["C", "F"] = "F" if fortran else "C"
    if math.prod(shape) == 0:
        return RowSource(name, shape, dtype, np.empty(shape, dtype=dtype, order=order))
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    return RowSource(name, shape, dtype, mapped)


def _open_npz(path: Path, member: str, name: str) -> RowSource:
    """A source for one ``.npz`` member: mapped if stored, streamed if compressed."""
    zf = zipfile.ZipFile(path)
    info = zf.getinfo(member + ".npy")
    if info.compress_type == zipfile.ZIP_STORED:
        zf.close()
        return _map_stored(path, info, name)
    stream = zf.open(info)
    try:
        shape, fortran, dtype = _read_header(stream, name)
    except FileError:
        stream.close()
        zf.close()
        raise
    if fortran and len(shape) > 1:  # rows are not contiguous in the stream: read it whole
        arr = np.lib.format.read_array(zf.open(info), allow_pickle=False)
        stream.close()
        zf.close()
        return RowSource(name, shape, dtype, arr)
    source = RowSource(name, shape, dtype, stream=stream)
    source.on_close(zf.close, stream.close)
    return source


def peek(path: Path) -> tuple[bytes, bytes]:
    """The first and the last bytes of a local file (512 of each at most)."""
    with path.open("rb") as fp:
        head = fp.read(_PEEK)
        fp.seek(max(0, fp.seek(0, 2) - _PEEK))
        return head, fp.read(_PEEK)


def _not_an_array(path: Path) -> FileError:
    """The error of a file that is neither .npy nor zip, saying what it looks like."""
    seen = looks_like(*peek(path))
    what = f"; it looks like {seen}" if seen else ""
    return FileError(f"{path}: cannot read it as an array: not a .npy or .npz file{what}")


def _open_npy(path: Path) -> RowSource:
    """A memory-mapped ``.npy`` file; its header is read first, so that a file of another kind
    or an object array is refused by name (numpy would try to unpickle them)."""
    if not peek(path)[0].startswith(b"\x93NUMPY"):
        raise _not_an_array(path)
    with path.open("rb") as fp:
        _, _, dtype = _read_header(fp, str(path))
    if dtype.hasobject:
        raise FileError(f"{path}: object arrays are not read (expected numbers)")
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return RowSource(str(path), arr.shape, arr.dtype, arr)


def open_rows(spec: str, *, default_member: str = "predictions") -> RowSource:
    """Open ``FILE.npy``, ``FILE.npz:NAME`` or ``FILE.npz`` (its only array, or ``default_member``).

    Nothing is read but the header. Raises :class:`FileError` for a missing or unreadable file,
    a file that is not an array (saying what it looks like), an unknown member, an object
    (pickled) array or a scalar.
    """
    path, member = _split_spec(spec)
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            member = _npz_member(path, member, default_member)
            source = _open_npz(path, member, f"{path}:{member}")
        else:
            source = _open_npy(path)
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
    """Rows per chunk so that a chunk holds about :data:`CHUNK_ELEMENTS` numbers.

    ``max(1, CHUNK_ELEMENTS // prod(shape[1:]))``: at least one row, however wide.
    """
    return max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))
