"""Scoring on a Dask cluster (``xent score --dask``): an input's pieces as tasks, their
partials merged in row order.

The pieces are those of one machine: the row groups of Parquet files, the files of the other
table formats (:meth:`~xentcore.files.TableSource.pieces`), runs of rows of ``.npy`` / ``.npz``
arrays (:func:`array_pieces`). Each becomes one task (``client.map``) that scores it exactly as
:func:`~xentcore.files.score_table` / :func:`~xentcore.files.score_file` would (the same
chunks: a piece is a whole number of chunks, and chunks never span two pieces) and returns
its :class:`~xentcore.files.Partial`. The driver merges the partials in piece order as they
arrive, so the result is the single-machine result: the same per-item values, the same
flagged indices, and the sums of the same chunk partials merged in another grouping, which
:class:`xentcore.Summary`'s double-double sums make agree within about 1e-30 relative before
the one final rounding.

What the workers need travels with the tasks: the opened table (its files, format and
filesystem; sent to each worker once, by ``client.scatter``), the column selection, the options
and the chunk size. The workers read the files themselves, so they must see the same paths or
URIs as the driver: any worker of a local cluster does; a remote cluster needs a shared
filesystem or an object store (``s3://...``). They must run this version of xentcore
(:func:`connect` checks).

Errors: a piece that cannot be scored sends its error back as a value (:class:`Failure`: the
core's and the readers' errors do not survive pickling), and the driver raises the error of the
first failing piece in row order once the pieces before it are merged, with its row made
global, as one machine would have stopped there. Any other failure of a task (a worker that
died, a lost connection) is a :class:`ClusterError`.

``--out`` becomes a directory: a Parquet dataset whose part files (``part-000000.parquet``,
one per non-empty piece, in row order) the workers write into a hidden temporary directory
beside the target, renamed into place when every piece has been scored (:class:`PartDirectory`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xentcore.errors import InputError
from xentcore.files.chunks import Chunk
from xentcore.files.columns import Selection
from xentcore.files.errors import FileError, RowError
from xentcore.files.outputs import ItemTable, Outputs
from xentcore.files.partial import OfflineResult, Partial
from xentcore.files.scoring import (
    PER_ITEM_OPTIONS,
    score_chunks,
    score_piece,
    table_chunk_rows,
)
from xentcore.files.sources import RowSource, default_chunk_rows, open_rows
from xentcore.files.tables import Piece, TableSource

__all__ = [
    "ARRAY_PIECE_CHUNKS",
    "DASK_INSTALL",
    "ClusterError",
    "Failure",
    "PartDirectory",
    "array_pieces",
    "connect",
    "local_workers",
    "score_arrays_on",
    "score_table_on",
]

#: How to install the optional dependency (in messages).
DASK_INSTALL = "pip install 'xentcore[dask]'"
#: Chunks per piece of ``.npy`` / ``.npz`` rows: a task scores this many chunks in order.
ARRAY_PIECE_CHUNKS = 8
#: Seconds :func:`connect` waits for a scheduler.
CONNECT_TIMEOUT = 30
#: ``on_progress(rows_done)``.
Progress = Callable[[int], None]


class ClusterError(Exception):
    """Dask is missing, the scheduler cannot be reached, or a task failed for a reason of its
    own (a worker died). ``status`` is the exit status ``xent score`` gives it: 2 for what the
    command line can fix (the address, the installation), 1 for a failure while scoring."""

    def __init__(self, message: str, *, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _module(name: str) -> Any:
    """A module of Dask, imported on first use (``ClusterError`` without Dask)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ClusterError(
            f"--dask needs Dask, which is not installed: {DASK_INSTALL}", status=2
        ) from None


def local_workers(address: str) -> int | None:
    """N of ``local:N`` (``local``: one per CPU); None for the address of a scheduler.
    Raises ValueError for ``local:`` followed by anything but a positive integer."""
    head, sep, tail = address.partition(":")
    if head != "local":
        return None
    if not sep:
        return os.cpu_count() or 1
    if not tail.isdigit() or int(tail) < 1:
        raise ValueError(f"expected local:N with N a positive integer, got {address!r}")
    return int(tail)


def _worker_version() -> str:
    """xentcore's version on a worker (run there by :func:`connect`)."""
    return str(importlib.import_module("xentcore").__version__)


def _check_workers(client: Any) -> None:
    """Every connected worker imports this version of xentcore (ClusterError otherwise)."""
    here = _worker_version()
    try:
        versions = client.run(_worker_version)
    except Exception as exc:  # e.g. ModuleNotFoundError: xentcore is not installed there
        raise ClusterError(
            f"the Dask workers cannot run xentcore ({type(exc).__name__}: {exc}): install "
            f"xentcore {here} on them",
            status=2,
        ) from None
    other = sorted({str(v) for v in versions.values()} - {here})
    if other:
        raise ClusterError(
            f"the Dask workers run xentcore {', '.join(other)}, this is {here}: install the "
            "same version on them",
            status=2,
        )


#: What the forkserver of ``local:N`` imports once, for every worker it forks.
WORKER_PRELOAD = ("xentcore.files", "pyarrow.parquet", "pyarrow.dataset")
#: The Dask setting (as its environment variable) that chooses how worker processes start.
_METHOD_VARIABLE = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


@contextlib.contextmanager
def _forkserver() -> Iterator[None]:
    """Start ``local:N``'s worker processes from a forkserver that has imported xentcore and
    pyarrow once, instead of Dask's default, a fresh interpreter per worker that imports them
    again (0.6 s of a 2-worker cluster's 2.4 s start here). A forkserver is one clean
    single-threaded process, so it is as safe as spawning. Left alone where the platform has no
    forkserver or ``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD`` chooses a method."""
    import multiprocessing

    if os.environ.get(_METHOD_VARIABLE) or "forkserver" not in (
        multiprocessing.get_all_start_methods()
    ):
        yield
        return
    dask = _module("dask")
    utils = _module("distributed.utils")
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        # after Dask's own get_mp_context, which sets its preload list once: this one wins
        utils.get_mp_context().set_forkserver_preload(["distributed", *WORKER_PRELOAD])
        yield


@contextlib.contextmanager
def connect(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` of the cluster at ``address``, closed at exit.

    ``local:N`` starts a ``LocalCluster`` of N worker processes with one thread each on
    127.0.0.1 (no dashboards; forked from a preloaded forkserver, :func:`_forkserver`) and
    closes it at exit; anything else is a scheduler's address
    (``tcp://10.0.0.5:8786``). Raises :class:`ClusterError` (status 2) when Dask is not
    installed, the scheduler does not answer within :data:`CONNECT_TIMEOUT` seconds, or the
    workers do not run this version of xentcore.
    """
    n = local_workers(address)
    distributed = _module("distributed")
    with contextlib.ExitStack() as stack:
        try:
            if n is not None:
                stack.enter_context(_forkserver())
                cluster = stack.enter_context(
                    distributed.LocalCluster(
                        n_workers=n,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                        worker_dashboard_address=None,
                        silence_logs=logging.ERROR,
                    )
                )
                client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
            else:
                client = stack.enter_context(
                    distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
                )
        except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
            raise ClusterError(
                f"--dask {address}: cannot connect to a Dask scheduler: {exc}", status=2
            ) from None
        _check_workers(client)
        yield client


# -- errors as values ---------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A piece's error, as a picklable value (:class:`RowError` and :class:`InputError` do not
    unpickle: their constructors take more than their message).

    ``local``: the rows it names count from the piece's first row (its start was not known
    when it was scored), so :meth:`error` adds the rows of the pieces before it.
    """

    kind: str
    message: str
    path: str | None = None
    row: int | None = None
    column: str | tuple[str, ...] | None = None
    reason: str = ""
    location: tuple[str | int, ...] = ()
    input_kind: str = "value_error"
    local: bool = False

    @classmethod
    def of(cls, exc: Exception, *, local: bool) -> Failure:
        if isinstance(exc, RowError):
            return cls("row", str(exc), exc.path, exc.row, exc.column, exc.reason, local=local)
        if isinstance(exc, InputError):
            kind = exc.kind
            return cls("input", str(exc), reason=exc.reason, location=exc.location, input_kind=kind)
        return cls("file", str(exc))

    def error(self, offset: int) -> Exception:
        """The exception to raise (``offset``: the global index of the piece's first row)."""
        if self.kind == "row":
            assert self.path is not None and self.row is not None
            row = self.row + offset if self.local else self.row
            return RowError(self.path, row, self.column, self.reason)
        if self.kind == "input":
            return InputError(self.location, self.reason, kind=self.input_kind)
        return FileError(self.message)


@dataclass(frozen=True)
class Outcome:
    """What a task sends back: its piece's partial (None for an empty piece) or its failure."""

    index: int
    partial: Partial | None = None
    failure: Failure | None = None


# -- the part files of --out ------------------------------------------------------------


def _part_name(index: int, width: int) -> str:
    return f"part-{index:0{width}d}.parquet"


def _only_parts(path: Path) -> bool:
    """Whether a directory holds nothing but part files (an earlier ``--out`` of --dask)."""
    return all(p.is_file() and p.name.startswith("part-") for p in path.iterdir())


class PartDirectory:
    """``--out DIR`` with ``--dask``: a directory of Parquet part files, one per piece, read
    back as one dataset in row order (``pyarrow.dataset.dataset(DIR)``, Spark, DuckDB...).

    The workers write into a hidden directory beside ``out``; :meth:`commit` renames it to
    ``out`` (an existing file, or a directory of part files from an earlier run, is replaced;
    any other existing directory is refused before anything is scored); :meth:`discard`
    removes it. The workers must see this path (any local cluster does; a remote one needs a
    shared filesystem).
    """

    def __init__(self, out: Path, n_pieces: int) -> None:
        if not out.parent.is_dir():
            raise FileError(f"{out}: cannot write: its directory does not exist")
        if out.is_dir() and not _only_parts(out):
            raise FileError(
                f"{out}: is a directory of other files; --out with --dask writes a new "
                "directory of part files: name one that does not exist"
            )
        self.out = out
        self.width = max(6, len(str(max(0, n_pieces - 1))))
        self.tmp = self._create()

    def _create(self) -> Path:
        for _ in range(100):
            tmp = self.out.with_name(f".{self.out.name}.{secrets.token_hex(4)}.part")
            try:
                tmp.mkdir()  # with the umask's permissions, as the output will have
            except FileExistsError:
                continue
            except OSError as exc:
                raise FileError(f"{self.out}: cannot write: {exc.strerror or exc}") from None
            return tmp
        raise FileError(f"{self.out}: cannot create a temporary directory beside it")

    def part(self, index: int) -> str:
        """The path of piece ``index``'s part file (absolute: the workers' working directory
        may be another)."""
        return os.path.abspath(self.tmp / _part_name(index, self.width))

    def commit(self) -> None:
        """Put the written directory in place of ``out``."""
        old = None
        if self.out.exists() or self.out.is_symlink():
            old = self.out.with_name(f".{self.out.name}.{secrets.token_hex(4)}.old")
            self.out.rename(old)
        self.tmp.rename(self.out)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the temporary directory (a worker still finishing a cancelled piece may add
        a file meanwhile: tried again for a second)."""
        for _ in range(10):
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not self.tmp.exists():
                return
            time.sleep(0.1)


# -- the work of one task ---------------------------------------------------------------


@dataclass(frozen=True)
class TableJob:
    """What every task of a table needs (sent to each worker once)."""

    source: TableSource
    selection: Selection
    options: Mapping[str, Any]
    chunk_rows: int
    calibration: bool = False
    id_column: str | None = None


@dataclass(frozen=True)
class PieceTask:
    """One piece: its index (the order of merging, the part file's number), its global
    ``start`` (None when not known: CSV and JSON Lines files without a counting pass) and the
    part file to write (None without ``--out``)."""

    index: int
    piece: Piece
    start: int | None
    part: str | None = None


def _writing(part: str | None, id_column: str | None) -> tuple[ItemTable | None, Any]:
    """The part file's writer and the ``on_chunk`` callback feeding it (both None without)."""
    if part is None:
        return None, None
    table = ItemTable(Path(part), id_column)

    def on_chunk(chunk: Chunk, r: Any) -> None:
        table.add(r, chunk.start, chunk.ids)

    return table, on_chunk


def _close(table: ItemTable | None, partial: Partial | None) -> None:
    """Commit the part file of a piece that had rows; leave none for an empty piece."""
    if table is None:
        return
    if partial is None or table.writer is None:
        table.discard()
        return
    table.stage()
    table.commit()


def score_table_task(task: PieceTask, job: TableJob) -> Outcome:
    """Score one piece of a table on a worker (see :class:`Outcome`)."""
    table = None
    try:
        table, on_chunk = _writing(task.part, job.id_column)
        partial = score_piece(
            job.source,
            task.piece,
            # A copy: the job is one object for all the tasks a worker runs, and the list
            # widths a selection remembers must be the piece's own, whichever ran before.
            replace(job.selection),
            job.options,
            start=task.start or 0,
            chunk_rows=job.chunk_rows,
            calibration=job.calibration,
            on_chunk=on_chunk,
        )
        _close(table, partial)
        return Outcome(task.index, partial)
    except (FileError, InputError) as exc:
        return Outcome(task.index, failure=Failure.of(exc, local=task.start is None))
    finally:
        if table is not None:
            table.discard()


def count_table_task(piece: Piece, job: TableJob) -> int | Failure:
    """Rows of a piece whose metadata does not say (read through its predictions column), or
    the failure of that reading (rows counted from the piece's first)."""
    name = job.selection.predictions[0]
    numeric = job.selection.numeric
    try:
        batches = job.source.batches(piece, [name], 1 << 17, numeric=numeric)
        return int(sum(b.num_rows for b in batches))
    except FileError as exc:
        return Failure.of(exc, local=True)


@dataclass(frozen=True)
class ArrayJob:
    """What every task of ``.npy`` / ``.npz`` input needs: the specs of the arrays (absolute
    paths), the options and the chunk size."""

    predictions: str
    labels: str | None
    sample_weights: str | None
    options: Mapping[str, Any]
    chunk_rows: int
    calibration: bool = False


@dataclass(frozen=True)
class RowsTask:
    """Rows ``start:stop`` of the arrays (piece ``index``), and the part file to write."""

    index: int
    start: int
    stop: int
    part: str | None = None


def _range_chunks(
    sources: list[RowSource | None], start: int, stop: int, chunk_rows: int
) -> Iterator[Chunk]:
    predictions, labels, weights = sources
    assert predictions is not None
    bounds = [(a, min(stop, a + chunk_rows)) for a in range(start, stop, chunk_rows)]
    for a, b in bounds or [(start, stop)]:  # no rows: one empty chunk (the core decides)
        yield Chunk(
            a,
            predictions.read(a, b),
            None if labels is None else labels.read(a, b),
            None if weights is None else weights.read(a, b),
        )


def score_rows_task(task: RowsTask, job: ArrayJob) -> Outcome:
    """Score rows of ``.npy`` / ``.npz`` arrays on a worker (see :class:`Outcome`)."""
    table = None
    sources: list[RowSource | None] = []
    try:
        for spec, default in (
            (job.predictions, "predictions"),
            (job.labels, "labels"),
            (job.sample_weights, "sample_weights"),
        ):
            sources.append(None if spec is None else open_rows(spec, default_member=default))
        table, on_chunk = _writing(task.part, None)
        chunks = _range_chunks(sources, task.start, task.stop, job.chunk_rows)
        partial = score_chunks(chunks, job.options, calibration=job.calibration, on_chunk=on_chunk)
        _close(table, partial)
        return Outcome(task.index, partial)
    except (FileError, InputError) as exc:
        return Outcome(task.index, failure=Failure.of(exc, local=False))
    finally:
        if table is not None:
            table.discard()
        for source in sources:
            if source is not None:
                source.close()


# -- the driver -------------------------------------------------------------------------


@dataclass
class _Merge:
    """Partials merged in piece order as the tasks finish (in any order)."""

    where: Callable[[int], str]
    column: str
    total: Partial | None = None
    next: int = 0
    done_rows: int = 0
    waiting: dict[int, Outcome] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        """Take a finished task's outcome; merge every outcome now next in line. Raises the
        error of a failed piece when its turn comes."""
        if outcome.partial is not None:
            self.done_rows += outcome.partial.n_items
        self.waiting[outcome.index] = outcome
        while self.next in self.waiting:
            here = self.waiting.pop(self.next)
            offset = 0 if self.total is None else self.total.n_items
            if here.failure is not None:
                raise here.failure.error(offset)
            if here.partial is not None:
                self._append(here.partial, offset)
            self.next += 1

    def _append(self, part: Partial, offset: int) -> None:
        if self.total is None:
            self.total = part
            return
        try:
            self.total += part
        except ValueError as exc:  # another number of classes (list columns), task...
            k = self.total.summary.n_classes
            got = part.summary.n_classes
            if k is not None and got is not None and k != got:
                reason = f"{got} values, expected {k} (as in the rows before)"
                raise RowError(self.where(self.next), offset, self.column, reason) from None
            raise FileError(f"{self.where(self.next)}: {exc}") from None


def _run(
    client: Any,
    function: Callable[..., Outcome],
    job: Any,
    tasks: list[Any],
    merge: _Merge,
    progress: Progress | None,
) -> Partial | None:
    """``function(task, job=job)`` for every task, on the cluster (the job sent to each worker
    once); their outcomes merged in order as they finish. The futures are cancelled at the
    end, whatever happened: a failure stops the pieces not yet started."""
    distributed = _module("distributed")
    shared = client.scatter(job, broadcast=True, hash=False)
    futures = client.map(function, tasks, job=shared, pure=False)
    try:
        for future in distributed.as_completed(futures, loop=client.loop):
            try:
                outcome = future.result()
            except Exception as exc:  # the task itself failed: a worker died, memory...
                raise ClusterError(
                    f"a Dask task failed: {type(exc).__name__}: {exc}", status=1
                ) from None
            merge.add(outcome)
            if progress is not None:
                progress(merge.done_rows)
    finally:
        client.cancel(futures)
    return merge.total


def _call(options: Mapping[str, Any] | None) -> dict[str, Any]:
    call = dict(options or {})
    if not PER_ITEM_OPTIONS.isdisjoint(call):
        raise ValueError(f"no per-item options on a cluster ({', '.join(PER_ITEM_OPTIONS)})")
    return call


def _finish(
    total: Partial | None, name: str, parts: PartDirectory | None, outputs: Outputs
) -> OfflineResult:
    """The merged result; the flagged indices staged, then every output renamed into place."""
    if total is None:
        raise FileError(f"{name}: no rows to score")
    result = total.result()
    try:
        outputs.finish(result.flagged_indices)
        if parts is not None:
            parts.commit()
        outputs.commit()
    finally:
        outputs.discard()
    return result


def _starts(client: Any, job: TableJob, pieces: list[Piece], count: bool) -> list[int | None]:
    """Each piece's global start: from the Parquet metadata, else (``count``) from a counting
    pass on the cluster, else None."""
    sizes: list[int | None] = [p.n_rows for p in pieces]
    unknown = [i for i, n in enumerate(sizes) if n is None]
    if unknown and count:
        shared = client.scatter(job, broadcast=True, hash=False)
        futures = client.map(count_table_task, [pieces[i] for i in unknown], job=shared, pure=False)
        try:
            counted = client.gather(futures)
        except Exception as exc:  # the task itself failed: a worker died...
            raise ClusterError(f"a Dask task failed: {type(exc).__name__}: {exc}") from None
        for i, n in zip(unknown, counted, strict=True):
            if isinstance(n, Failure):  # the first in row order: those before were counted
                raise n.error(sum(s or 0 for s in sizes[:i]))
            sizes[i] = n
    out: list[int | None] = []
    at: int | None = 0
    for n in sizes:
        out.append(at)
        at = None if at is None or n is None else at + n
    return out


def score_table_on(
    client: Any,
    source: TableSource,
    selection: Selection,
    *,
    options: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    out: Path | None = None,
    flagged_out: Path | None = None,
    calibration: bool = False,
    progress: Progress | None = None,
) -> OfflineResult:
    """:func:`~xentcore.files.score_table` on the cluster of ``client``: one task per piece.

    ``out`` is a directory of part files (:class:`PartDirectory`); ``flagged_out`` as on one
    machine. Pieces whose row count the metadata does not give (CSV, JSON Lines, Arrow IPC
    files) are counted first on the cluster when ``out`` is asked without an ids column (the
    part files' ``row`` column needs each piece's first row); otherwise the rows a message
    names are made global as the pieces are merged.
    """
    call = _call(options)
    flagged = Outputs(flagged=flagged_out)  # its directory checked before anything is scored
    pieces = source.pieces()
    size = chunk_rows or table_chunk_rows(source, selection, pieces)
    parts = PartDirectory(out, len(pieces)) if out is not None else None
    try:
        job = TableJob(
            replace(source, _fragments={}),  # the workers read their own footers
            replace(selection, read_ids=out is not None),
            call,
            size,
            calibration,
            selection.ids,
        )
        starts = _starts(client, job, pieces, count=out is not None and selection.ids is None)
        tasks = [
            PieceTask(i, p, starts[i], None if parts is None else parts.part(i))
            for i, p in enumerate(pieces)
        ]
        merge = _Merge(lambda i: source.display(pieces[i].path), selection.predictions[0])
        total = _run(client, score_table_task, job, tasks, merge, progress)
        return _finish(total, source.name, parts, flagged)
    finally:
        if parts is not None:
            parts.discard()


def array_pieces(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """(start, stop) of each piece of ``n_rows`` array rows: :data:`ARRAY_PIECE_CHUNKS` chunks
    of ``chunk_rows`` rows (the last shorter); one empty piece for no rows."""
    step = chunk_rows * ARRAY_PIECE_CHUNKS
    if n_rows == 0:
        return [(0, 0)]
    return [(a, min(n_rows, a + step)) for a in range(0, n_rows, step)]


def _absolute(spec: str) -> str:
    """An array spec (``FILE.npy``, ``FILE.npz[:NAME]``) with its path made absolute."""
    head, sep, member = spec.rpartition(":")
    if sep and head.lower().endswith(".npz") and member:
        return f"{os.path.abspath(head)}:{member}"
    return os.path.abspath(spec)


def score_arrays_on(
    client: Any,
    predictions: RowSource,
    labels: RowSource | None = None,
    *,
    sample_weights: RowSource | None = None,
    specs: tuple[str, str | None, str | None],
    options: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    out: Path | None = None,
    flagged_out: Path | None = None,
    calibration: bool = False,
    progress: Progress | None = None,
) -> OfflineResult:
    """:func:`~xentcore.files.score_file` on the cluster of ``client``: runs of rows
    (:func:`array_pieces`) as tasks. The sources (opened here) give the shapes; ``specs``
    are how the workers open them (``FILE.npy``, ``FILE.npz:NAME``: paths they can see).

    Memory-mapped arrays only: a compressed ``.npz`` member (``np.savez_compressed``) is
    read in order from its start, so it cannot be split (FileError).
    """
    call = _call(options)
    n = predictions.n_rows
    for other in (labels, sample_weights):
        if other is None:
            continue
        if other.n_rows != n:
            raise FileError(f"{other.name} has {other.n_rows:,} rows, {predictions.name} has {n:,}")
    for source in (predictions, labels, sample_weights):
        if source is not None and source.array is None:
            raise FileError(
                f"{source.name}: a compressed .npz member is read in order and cannot be split "
                "among workers: use .npy or an uncompressed .npz (np.savez) with --dask"
            )
    flagged = Outputs(flagged=flagged_out)  # its directory checked before anything is scored
    size = chunk_rows or default_chunk_rows(predictions.shape)
    ranges = array_pieces(n, size)
    parts = PartDirectory(out, len(ranges)) if out is not None else None
    try:
        job = ArrayJob(
            _absolute(specs[0]),
            None if specs[1] is None else _absolute(specs[1]),
            None if specs[2] is None else _absolute(specs[2]),
            call,
            size,
            calibration,
        )
        tasks = [
            RowsTask(i, a, b, None if parts is None else parts.part(i))
            for i, (a, b) in enumerate(ranges)
        ]
        merge = _Merge(lambda i: predictions.name, "predictions")
        total = _run(client, score_rows_task, job, tasks, merge, progress)
        return _finish(total, predictions.name, parts, flagged)
    finally:
        if parts is not None:
            parts.discard()
