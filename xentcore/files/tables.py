"""Tables through pyarrow: Parquet, Arrow IPC (Feather), CSV and JSON Lines, read in bounded
memory from one file, a directory or a hive-partitioned dataset, on the local disk or on any
filesystem pyarrow knows (``s3://``, ``gs://``, ``hdfs://``, ``file://``) or fsspec provides.

:func:`open_table` discovers the files with ``pyarrow.dataset`` (their format from the extension
unless given; hidden files and ``_SUCCESS``-like files are skipped; files in path order; a
directory's hive partitions become columns) and reads nothing but the schema.
:meth:`TableSource.pieces` splits the table into the parts scored in one go: one per Parquet row
group, one per file of the other formats. :meth:`TableSource.batches` streams one piece with
each format's own streaming reader, so that memory follows the batch, not the file:

* Parquet: ``ParquetFile.iter_batches`` on a buffered stream without pre-buffering (a dataset
  scan decodes a whole row group at once, and pre-buffering holds all its compressed bytes);
* Arrow IPC: the file's stored record batches, one at a time;
* CSV and JSON Lines: ``open_csv`` / ``open_json``, single-threaded, in blocks sized from the
  rows asked for (their parsers hold a few dozen blocks: a dataset scan with 1 MB blocks held
  40 MB of a 55 MB CSV file), only the columns asked for parsed.

Columns that must hold numbers are read as float64 from CSV and JSON Lines (their types are
otherwise guessed from the first block, and an integer column meeting 0.5 further down fails).
A value a reader cannot convert becomes a :class:`~xentcore.files.RowError` naming the file, the
global row and the column: from the CSV reader's line number (or the column read again as
text), or, for JSON Lines, by reading the lines again from the last good row.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xentcore.files._lazy import ds, pa, pa_csv, pa_fs, pa_json, pc, pq
from xentcore.files.errors import FileError, RowError
from xentcore.files.formats import (
    FORMAT_NAMES,
    TABLE_FORMATS,
    compressed,
    format_of,
    looks_like,
)

__all__ = ["Piece", "TableSource", "open_table"]

#: Bytes of the buffered stream a Parquet file is read through.
_BUFFER = 1 << 18
#: Bytes of the blocks CSV and JSON Lines are parsed in (the readers' memory is a few dozen
#: blocks): 8 bytes per row asked for, within these bounds.
_MIN_BLOCK, _MAX_BLOCK = 1 << 16, 1 << 20
#: Bytes looked at to say what a file is.
_PEEK = 512


@dataclass(frozen=True)
class Piece:
    """A part of a table scored in one go (chunks never span two pieces): one row group of a
    Parquet file, or one whole file of another format. ``path`` is the file in the source's
    filesystem; ``n_rows`` is known without reading for Parquet (its metadata), else None.
    Pieces are plain values: they pickle, so they can be scored in other processes."""

    path: str
    row_group: int | None = None
    n_rows: int | None = None


@dataclass
class TableSource:
    """A table opened by :func:`open_table`: its files, format and schema (nothing read yet).

    ``name`` is the input as given (messages name files from it); ``path`` is where it is in
    ``filesystem``; ``is_dir`` tells a directory (a dataset of files) from one file.
    """

    name: str
    path: str
    format: str
    filesystem: Any
    dataset: Any
    is_dir: bool
    _fragments: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def schema(self) -> Any:
        """The table's ``pyarrow.Schema`` (partition fields last)."""
        return self.dataset.schema

    @property
    def column_names(self) -> list[str]:
        """Column names, in the schema's order."""
        return list(self.dataset.schema.names)

    @property
    def files(self) -> list[str]:
        """The table's files, in the order their rows are numbered."""
        return list(self.dataset.files)

    def display(self, path: str) -> str:
        """How messages name the file ``path``: from the input as given (``data/`` + its
        path in the directory, or the input itself for a single file)."""
        if not self.is_dir:
            return self.name
        rel = os.path.relpath(path, self.path) if self.path else path
        return self.name.rstrip("/") + "/" + rel.replace(os.sep, "/")

    def describe(self) -> str:
        """``Parquet, 3 files`` / ``CSV``: the format (and file count of a directory)."""
        n = len(self.dataset.files)
        files = f", {n} file{'s' * (n != 1)}" if self.is_dir else ""
        return f"{FORMAT_NAMES[self.format]}{files}"

    def _fragment_map(self) -> dict[str, Any]:
        """The dataset's fragments by path (listed once)."""
        if not self._fragments:
            self._fragments = {f.path: f for f in self.dataset.get_fragments()}
        return self._fragments

    def _fragment(self, path: str) -> Any:
        return self._fragment_map()[path]

    def pieces(self) -> list[Piece]:
        """The table's pieces in row order: Parquet row groups (with their row counts; reading
        each file's footer), else one per file."""
        out: list[Piece] = []
        for path in self.dataset.files:
            if self.format != "parquet":
                out.append(Piece(path))
                continue
            try:
                meta = self._fragment(path).metadata
            except (pa.ArrowException, OSError) as exc:
                raise FileError(f"{self.display(path)}: cannot read its metadata: {exc}") from None
            out += [Piece(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        return out

    def count_rows(self) -> int:
        """Rows of the whole table: from the metadata of Parquet and IPC files; CSV and JSON
        Lines are read through once (their first column only) to count them."""
        if self.format == "parquet":
            return sum(p.n_rows or 0 for p in self.pieces())
        if self.format == "ipc":
            try:
                return int(self.dataset.count_rows())
            except (pa.ArrowException, OSError) as exc:
                raise FileError(f"{self.name}: cannot read it: {_short(exc)}") from None
        first = self._file_columns()[:1]
        return sum(b.num_rows for p in self.pieces() for b in self.batches(p, first, 1 << 17))

    def batches(
        self,
        piece: Piece,
        columns: list[str],
        rows: int,
        *,
        start: int = 0,
        numeric: Collection[str] = (),
    ) -> Iterator[Any]:
        """Record batches of ``columns`` of ``piece``, in order: at most ``rows`` rows each from
        Parquet; the stored batches of an IPC file; blocks of about ``rows`` rows' bytes from
        CSV and JSON Lines.

        ``start`` is the global index of the piece's first row (for messages); ``numeric``
        names columns read as float64 (lists of float64) from CSV and JSON Lines. A value the
        reader cannot convert raises :class:`RowError`; an unreadable file :class:`FileError`.
        """
        done = 0
        try:
            for batch in self._read(piece, columns, rows, numeric):
                yield batch
                done += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise self._read_error(exc, piece, columns, numeric, start, done) from None

    def _read(
        self, piece: Piece, columns: list[str], rows: int, numeric: Collection[str]
    ) -> Iterator[Any]:
        keys = ds.get_partition_keys(self._fragment(piece.path).partition_expression)
        stored = [c for c in columns if c not in keys]
        if self.format == "parquet":
            yield from self._parquet(piece, columns, stored, rows, keys)
            return
        if self.format == "ipc":
            with self.filesystem.open_input_file(piece.path) as fp:
                reader = pa.ipc.open_file(fp)
                present = set(reader.schema.names)
                wanted = [c for c in stored if c in present]
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i).select(wanted)
                    yield self._complete(batch, columns, set(wanted), keys)
            return
        schema = self._read_schema(numeric)
        types = {c: schema.field(c).type for c in stored}
        block = min(_MAX_BLOCK, max(_MIN_BLOCK, rows * 8))
        with self.filesystem.open_input_stream(piece.path, compression="detect") as stream:
            if self.format == "csv":
                reader = pa_csv.open_csv(
                    stream,
                    read_options=pa_csv.ReadOptions(block_size=block, use_threads=False),
                    convert_options=pa_csv.ConvertOptions(
                        column_types=types, include_columns=stored, include_missing_columns=True
                    ),
                )
            else:  # only the columns asked for are parsed: an unused column cannot fail
                reader = pa_json.open_json(
                    stream,
                    read_options=pa_json.ReadOptions(block_size=block, use_threads=False),
                    parse_options=pa_json.ParseOptions(
                        explicit_schema=pa.schema(list(types.items())),
                        unexpected_field_behavior="ignore",
                    ),
                )
            for batch in reader:
                yield self._complete(batch, columns, set(stored), keys)

    def _parquet(
        self,
        piece: Piece,
        columns: list[str],
        stored: list[str],
        rows: int,
        keys: dict[str, Any],
    ) -> Iterator[Any]:
        fragment = self._fragment(piece.path)
        with self.filesystem.open_input_file(piece.path) as fp:
            pf = pq.ParquetFile(
                fp, metadata=fragment.metadata, pre_buffer=False, buffer_size=_BUFFER
            )
            present = set(pf.schema_arrow.names)
            wanted = [c for c in stored if c in present]
            for batch in pf.iter_batches(
                batch_size=rows,
                row_groups=[piece.row_group],
                columns=wanted,
                use_threads=False,
            ):
                yield self._complete(batch, columns, set(wanted), keys)

    def _complete(
        self, batch: Any, columns: list[str], stored: set[str], keys: dict[str, Any]
    ) -> Any:
        """The batch with every column asked for, in order: partition values of the file's
        path as constant columns, nulls for a column this file lacks."""
        if list(batch.schema.names) == columns:
            return batch
        arrays = []
        for name in columns:
            kind = self.schema.field(name).type
            if name in stored:
                arrays.append(batch.column(name))
            elif name in keys:
                arrays.append(pa.repeat(pa.scalar(keys[name], kind), batch.num_rows))
            else:
                arrays.append(pa.nulls(batch.num_rows, kind))
        return pa.RecordBatch.from_arrays(arrays, names=columns)

    def _file_columns(self) -> list[str]:
        """The columns stored in the files (the partition fields of a directory left out).

        The partition fields are the keys of the files' partition expressions: a directory
        without partitions has a ``partitioning`` whose schema lists every column, and an
        unpickled dataset (a Dask worker's) has none at all."""
        parts: set[str] = set()
        if self.is_dir:
            for fragment in self._fragment_map().values():
                parts.update(ds.get_partition_keys(fragment.partition_expression))
        return [n for n in self.schema.names if n not in parts]

    def _read_schema(self, numeric: Collection[str]) -> Any:
        """The schema CSV and JSON Lines files are read with: ``numeric`` columns as float64."""
        fields = []
        for f in self.schema:
            if f.name in numeric:
                is_list = pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
                f = f.with_type(pa.list_(pa.float64()) if is_list else pa.float64())
            fields.append(f)
        return pa.schema(fields)

    def _read_error(
        self,
        exc: Exception,
        piece: Piece,
        columns: list[str],
        numeric: Collection[str],
        start: int,
        done: int,
    ) -> FileError:
        """The error of a piece that failed to read after ``done`` good rows."""
        where, text = self.display(piece.path), _short(exc)
        found: tuple[int, str | None, str] | None = None
        if self.format == "csv":
            found = _csv_error(self, piece, text, done)
        elif self.format == "json":
            found = _json_error(self, piece, columns, numeric, done)
        if found is not None:
            return RowError(where, start + found[0], found[1], found[2])
        name = FORMAT_NAMES[self.format]
        return FileError(f"{where}: cannot read it as {name} after row {start + done}: {text}")


def _short(exc: BaseException) -> str:
    """An Arrow error's message, without pyarrow's dataset-creation preamble."""
    text = str(exc).strip()
    return text.split("?: ", 1)[1] if "Is this a '" in text and "?: " in text else text


_CSV_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\w+): invalid value '(.*)'"
)
_CSV_PARSE = re.compile(r"CSV parse error: Row #(\d+): (.*)", re.S)


def _csv_error(
    source: TableSource | None, piece: Piece | None, text: str, done: int
) -> tuple[int, str | None, str] | None:
    """(row in the file, column, reason) of a CSV reader's message, or None.

    The reader counts lines from 1 with the header: data row r is line r + 2 (when no quoted
    value spans lines; the message gives the line too). A conversion error without a line (the
    reader gives none in a file's first block) is found by reading the column again as text.
    """
    m = _CSV_CONVERSION.search(text)
    names = source._file_columns() if source is not None else []
    if m:
        col, kind, value = int(m[1]), m[3], m[4]
        number = kind in ("double", "float", "int64", "int32")
        what = "is not a number" if number else f"cannot be read as {kind}"
        column = names[col] if col < len(names) else f"#{col}"
        if m[2] is not None:
            line = int(m[2])
            return line - 2, column, f"{value!r} {what} (CSV line {line})"
        if source is not None and piece is not None and col < len(names):
            row = _csv_find(source, piece, column, value, done)
            if row is not None:
                return row, column, f"{value!r} {what} (CSV line {row + 2})"
        return None
    m = _CSV_PARSE.search(text)
    if m:
        line = int(m[1])
        return line - 2, None, f"{m[2].strip()} (CSV line {line})"
    return None


def _csv_find(source: TableSource, piece: Piece, column: str, value: str, done: int) -> int | None:
    """The first row at or after ``done`` whose ``column`` holds the text ``value``."""
    convert = pa_csv.ConvertOptions(column_types={column: pa.string()}, include_columns=[column])
    read = pa_csv.ReadOptions(block_size=_MAX_BLOCK // 4, use_threads=False)
    row = 0
    with source.filesystem.open_input_stream(piece.path, compression="detect") as stream:
        for batch in pa_csv.open_csv(stream, read_options=read, convert_options=convert):
            n = batch.num_rows
            if row + n > done:
                values = batch.column(0).slice(max(0, done - row))
                hits = pc.equal(values, value)
                if pc.any(hits).as_py():
                    return max(row, done) + int(
                        np.flatnonzero(hits.to_numpy(zero_copy_only=False))[0]
                    )
            row += n
    return None


def _lines(stream: Any) -> Iterator[bytes]:
    """The lines of a byte stream (a NativeFile has no readline)."""
    rest = b""
    while block := stream.read(_BUFFER):
        *whole, rest = (rest + block).split(b"\n")
        yield from whole
    if rest:
        yield rest


def _json_kind(kind: Any) -> str | None:
    """What a JSON value of an Arrow type is: number, string, bool, list, list of numbers
    (None: anything)."""
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return "list of numbers" if _json_kind(kind.value_type) == "number" else "list"
    return None


def _json_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _json_mismatch(value: Any, kind: str | None) -> str | None:
    """Why a JSON value does not fit ``kind`` (None when it does, or is null)."""
    if value is None or kind is None:
        return None
    got = _json_name(value)
    expected = "list" if kind == "list of numbers" else kind
    if got != expected:
        return f"{json.dumps(value)[:60]} is a {got}, expected a {expected}"
    if kind == "list of numbers":
        bad = [v for v in value if v is not None and _json_name(v) != "number"]
        if bad:
            return f"{json.dumps(bad[0])[:60]} is a {_json_name(bad[0])}, expected a number"
    return None


def _json_error(
    source: TableSource, piece: Piece, columns: list[str], numeric: Collection[str], done: int
) -> tuple[int, str | None, str] | None:
    """(row in the file, column, reason) of the first bad JSON line at or after row ``done``
    (the rows before were read), or None when none is found (blank lines are not rows)."""
    schema = source._read_schema(numeric)
    kinds = {c: _json_kind(schema.field(c).type) for c in columns if c in schema.names}
    row = -1
    with source.filesystem.open_input_stream(piece.path, compression="detect") as stream:
        for line in _lines(stream):
            if not line.strip():
                continue
            row += 1
            if row < done:
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                return row, None, f"invalid JSON ({getattr(exc, 'msg', exc)})"
            if not isinstance(obj, dict):
                return row, None, f"expected a JSON object, got a {_json_name(obj)}"
            for name, kind in kinds.items():
                found = _json_mismatch(obj.get(name), kind)
                if found is not None:
                    return row, name, found
    return None


def _filesystem(spec: str) -> tuple[Any, str]:
    """The filesystem of ``spec`` and the path in it: local for a plain path; pyarrow's own
    for the schemes it knows; fsspec's (wrapped for pyarrow) for the others."""
    if "://" not in spec:
        return pa_fs.LocalFileSystem(), os.path.abspath(spec)
    try:
        fs, path = pa_fs.FileSystem.from_uri(spec)
        return fs, str(path)
    except pa.ArrowInvalid as exc:
        if "Unrecognized filesystem type" not in str(exc):
            raise FileError(f"{spec}: {_short(exc)}") from None
    except (pa.ArrowException, OSError) as exc:
        raise FileError(f"{spec}: cannot open it: {_short(exc)}") from None
    scheme = spec.split("://", 1)[0]
    try:
        fsspec = importlib.import_module("fsspec")
    except ImportError:
        raise FileError(
            f"{spec}: pyarrow has no filesystem for {scheme}:// and fsspec is not installed "
            f"(pip install fsspec and its {scheme} package)"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(spec)
    except (ImportError, ValueError, OSError) as exc:  # unknown protocol, missing backend
        raise FileError(f"{spec}: no filesystem for {scheme}:// ({exc})") from None
    return pa_fs.PyFileSystem(pa_fs.FSSpecHandler(fs)), str(path)


def _visible(path: str, base: str) -> bool:
    """Not under a hidden or ``_``-prefixed name below ``base`` (as pyarrow.dataset skips)."""
    return not any(p.startswith((".", "_")) for p in os.path.relpath(path, base).split(os.sep))


def _directory_files(fs: Any, path: str, name: str, fmt: str | None) -> tuple[str, list[str]]:
    """The format of a directory's files and those of its files to read, in path order.

    The visible files (none under a name starting with ``.`` or ``_``) of the format asked for,
    else of the one table format their extensions name; files without a known extension only
    when no file has one (a dataset of extension-less files, read with ``--format``).
    """
    infos = fs.get_file_info(pa_fs.FileSelector(path, recursive=True))
    visible = sorted(
        i.path for i in infos if i.type == pa_fs.FileType.File and _visible(i.path, path)
    )
    found = {format_of(f) for f in visible}
    known = sorted(f for f in found if f in TABLE_FORMATS)
    if fmt is None:
        if not known:
            raise FileError(
                f"{name}: no Parquet, Arrow, CSV or JSON Lines files in it (or give --format)"
            )
        if len(known) > 1:
            raise FileError(
                f"{name}: holds files of several formats ({', '.join(known)}); give --format"
            )
        fmt = known[0]
    if found <= {None}:
        return fmt, visible
    files = [f for f in visible if format_of(f) == fmt]
    if not files:
        raise FileError(f"{name}: no {FORMAT_NAMES[fmt]} files in it")
    return fmt, files


def _file_format(fmt: str) -> Any:
    """The dataset format; CSV and JSON Lines infer their schema from a first block of
    :data:`_MIN_BLOCK` bytes (their parsers hold a few dozen blocks while they do)."""
    if fmt == "csv":
        return ds.CsvFileFormat(read_options=pa_csv.ReadOptions(block_size=_MIN_BLOCK))
    if fmt == "json":
        return ds.JsonFileFormat(read_options=pa_json.ReadOptions(block_size=_MIN_BLOCK))
    return ds.ParquetFileFormat() if fmt == "parquet" else ds.IpcFileFormat()


def _peek(fs: Any, path: str) -> tuple[bytes, bytes]:
    try:
        with fs.open_input_file(path) as fp:
            size = fp.size()
            head = fp.read(_PEEK)
            fp.seek(max(0, size - _PEEK))
            return head, fp.read(_PEEK)
    except (pa.ArrowException, OSError):
        return b"", b""


def _not_its_format(fs: Any, path: str, shown: str, fmt: str) -> FileError | None:
    """The error of a file whose first bytes say it is not ``fmt`` (None when they do not, or
    when its name says it is compressed: its bytes are not its format's)."""
    if compressed(path):
        return None
    seen = looks_like(*_peek(fs, path))
    if seen is None or f"(--format {fmt})" in seen:
        return None
    return FileError(f"{shown}: not a {FORMAT_NAMES[fmt]} file; it looks like {seen}")


_JSON_PARSE = re.compile(r"JSON parse error: (.*) in row (\d+)")
_JSON_TYPE_CHANGE = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+) in row (\d+)")


def _open_error(exc: Exception, fs: Any, path: str, name: str, fmt: str) -> FileError:
    """Why a table would not open: not of its format (and what it looks like), or, for a bad
    value in the first block of a JSON Lines file, that value's row and column."""
    text, what = _short(exc), FORMAT_NAMES[fmt]
    m = re.search(r"input source '([^']*)'", str(exc))
    failing = m[1] if m else path
    shown = name if failing == path else failing
    mismatch = _not_its_format(fs, failing, shown, fmt)
    if mismatch is not None:
        return mismatch
    m = _JSON_TYPE_CHANGE.search(text)
    if fmt == "json" and m:  # in the first block, which starts the file: rows are the file's
        reason = f"a {m[3]} where the rows before hold a {m[2]}"
        return RowError(shown, int(m[4]), m[1], reason)
    m = _JSON_PARSE.search(text)
    if fmt == "json" and m:
        return RowError(shown, int(m[2]), None, f"invalid JSON ({m[1].rstrip('.')})")
    if fmt == "csv":
        found = _csv_error(None, None, text, 0)
        if found is not None:
            return RowError(shown, found[0], found[1], found[2])
    return FileError(f"{shown}: cannot read it as {what}: {text}")


def open_table(spec: str, *, format: str | None = None, filesystem: Any = None) -> TableSource:
    """Open a table file, directory or partitioned dataset (reading only its schema).

    ``spec``: a local path, or a URI (``s3://bucket/eval/``, ``file:///data/eval.parquet``...);
    with ``filesystem`` (a ``pyarrow.fs.FileSystem``), a path in it. ``format``: one of
    ``parquet``, ``ipc``, ``csv``, ``json``; default from the extension (a directory: from its
    files'). A directory is read as a dataset with hive partitioning (``year=2024/``: a
    ``year`` column). Raises :class:`FileError` for a missing path, an unknown format, a file
    that is not of its format (saying what it looks like) and an unreadable one.
    """
    fs, path = (filesystem, spec) if filesystem is not None else _filesystem(spec)
    try:
        info = fs.get_file_info(path)
    except (pa.ArrowException, OSError) as exc:
        raise FileError(f"{spec}: cannot open it: {_short(exc)}") from None
    if info.type == pa_fs.FileType.NotFound:
        raise FileError(f"{spec}: no such file or directory")
    is_dir = info.type == pa_fs.FileType.Directory
    fmt: str | None
    if is_dir:
        fmt, files = _directory_files(fs, path, spec, format)
    else:
        fmt = format or format_of(path)
    if fmt is None or fmt not in TABLE_FORMATS:
        raise FileError(
            f"{spec}: cannot tell its format from its name; give --format (parquet, ipc, csv, json)"
        )
    mismatch = None if is_dir else _not_its_format(fs, path, spec, fmt)
    if mismatch is not None:
        raise mismatch
    try:
        if is_dir:
            dataset = ds.dataset(
                files,
                filesystem=fs,
                format=_file_format(fmt),
                partitioning="hive",
                partition_base_dir=path,
            )
        else:
            dataset = ds.dataset(path, filesystem=fs, format=_file_format(fmt))
    except (pa.ArrowException, OSError) as exc:
        raise _open_error(exc, fs, path, spec, fmt) from None
    return TableSource(spec, path, fmt, fs, dataset, is_dir)
