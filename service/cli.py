"""The ``xent`` command. ``xent serve`` runs the service under uvicorn; ``xent score`` scores
files offline in bounded memory (``.npy`` / ``.npz``, and Parquet, Arrow, CSV and JSON Lines
through pyarrow: ``xentcore.files``, which imports pyarrow only when a table is read); ``xent
db`` upgrades the monitoring store's schema and runs retention by hand.

Flags override the ``XENT_*`` environment; they are written back to the environment before
uvicorn starts, because with ``--workers`` > 1 every worker process imports ``service.app:app``
and builds its settings from the environment afresh. For the same reason the Prometheus
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``) is prepared and exported before uvicorn
spawns the workers.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

import xentcore
from service.dbcli import add_db
from service.names import STREAM_PATTERN, LogLevel
from service.progress import ProgressBar
from xentcore import InputError
from xentcore.files import (
    ARRAY_FORMATS,
    CALIBRATION_BINS,
    FORMAT_CHOICES,
    MAX_JSON_INDICES,
    Columns,
    FileError,
    OfflineResult,
    RowSource,
    canonical_format,
    format_of,
    open_rows,
    open_table,
    score_file,
    score_table,
)
from xentcore.files.cluster import (
    ClusterError,
    connect,
    local_workers,
    score_arrays_on,
    score_table_on,
)
from xentcore.types import CONFIDENCE_METHODS, INPUT_TYPES, TASKS

__all__ = [
    "MULTIPROC_ENV",
    "build_parser",
    "main",
    "prometheus_multiprocess",
    "score_files",
]

#: prometheus_client's own variable: where each process writes its metric values.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config, plus this service's loggers at ``level``."""
    from uvicorn.config import LOGGING_CONFIG  # uvicorn is imported by `xent serve` only

    config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("service", "xent"):
        config["loggers"][name] = {
            "handlers": ["default"],
            "level": level.upper(),
            "propagate": False,
        }
    return config


@contextmanager
def prometheus_multiprocess(workers: int) -> Iterator[str | None]:
    """Prepare prometheus_client's multiprocess directory for the workers; yield its path.

    Each worker writes its metrics to files of its own there, and ``/metrics`` adds them up
    (``service.metrics``). A ``PROMETHEUS_MULTIPROC_DIR`` already set is used (created if
    missing, kept afterwards) and emptied of the ``*.db`` files a previous run left, which would
    otherwise be counted again. Without it, several workers get a fresh private temporary
    directory, exported before uvicorn spawns them and removed at exit. One worker and no
    variable: None, and metrics stay in memory.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield given
        return
    os.environ.pop(MULTIPROC_ENV, None)  # set but empty: prometheus_client would use the cwd
    if workers <= 1:
        yield None
        return
    private = tempfile.mkdtemp(prefix="xent-metrics-")
    os.environ[MULTIPROC_ENV] = private
    try:
        yield private
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(private, ignore_errors=True)


def serve(args: argparse.Namespace) -> int:
    """Run uvicorn on ``service.app:app`` with the settings of the environment and flags."""
    from service.settings import Settings, get_settings, report_invalid  # not for `xent score`

    flags = {name: getattr(args, name) for name in ("host", "port", "workers", "log_level")}
    overrides = {name: value for name, value in flags.items() if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        report_invalid("xent serve", exc)
        return 2
    for name, value in overrides.items():  # for the app (and every worker) to read
        os.environ[f"XENT_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    import uvicorn  # only here: `xent score` and `xent db` start a tenth of a second sooner

    with prometheus_multiprocess(settings.workers):
        uvicorn.run(
            "service.app:app",
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=_log_config(settings.log_level),
            timeout_keep_alive=settings.keep_alive_timeout,
            limit_concurrency=settings.max_connections,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
            server_header=False,
            http=_http_protocol(),
        )
    return 0


def _http_protocol() -> Any:
    """The bounded httptools protocol (service.middleware.protocol), or uvicorn's choice without
    httptools."""
    try:
        from service.middleware.protocol import GuardedHttpToolsProtocol
    except ImportError:  # httptools missing (it is a dependency; a stripped install may lack it)
        return "auto"
    return GuardedHttpToolsProtocol


def _summary(result: OfflineResult, described: list[str]) -> str:
    """The human-readable report of ``xent score`` (``described``: its first lines, the input)."""
    lines = [
        *described,
        f"task        {result.task}, {result.input_type}, {result.n_classes} classes",
        f"items       {result.n_items:,}",
    ]
    if result.loss_sum is not None:
        mean = "null" if result.loss_mean is None else f"{result.loss_mean:.6g}"
        lines.append(
            f"loss        mean {mean}  sum {result.loss_sum:.10g}  scored {result.n_scored:,}"
        )
    if result.accuracy is not None:
        lines.append(f"accuracy    {result.accuracy:.4%}")
    mean_conf = "null" if result.confidence_mean is None else f"{result.confidence_mean:.6g}"
    lines.append(f"confidence  {result.confidence_method}, mean {mean_conf}")
    idx = result.flagged_indices
    rate = idx.size / result.n_items if result.n_items else 0.0
    shown = ", ".join(str(i) for i in idx[:10].tolist()) + (", ..." if idx.size > 10 else "")
    lines.append(f"flagged     {idx.size:,} ({rate:.2%})" + (f": {shown}" if idx.size else ""))
    if result.calibration is not None:
        lines.append(_calibration_line(result.calibration))
    lines += [f"warning     {w}" for w in result.warnings]
    return "\n".join(lines)


def _calibration_line(c: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "null" if value is None else f"{value:.6g}"

    figures = "  ".join(f"{name} {fmt(c[key])}" for name, key in _CALIBRATION_FIGURES)
    return f"calibration {figures}  ({c['n_bins']} bins)"


_CALIBRATION_FIGURES = (("ECE", "ece"), ("MCE", "mce"), ("Brier", "brier"), ("NLL", "nll"))

#: ``xent score``'s flag of each option of ``xentcore.score`` (for messages about an option).
_OPTION_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in (
        "task",
        "input_type",
        "class_names",
        "class_weights",
        "pos_weight",
        "label_smoothing",
        "ignore_index",
        "focal_gamma",
        "focal_alpha",
        "confidence",
        "decision_threshold",
        "renormalize",
        "sum_tolerance",
        "clip_eps",
        "calibration",
    )
}
#: Options given as they are when their flag is given (the core's defaults otherwise).
_PLAIN_OPTIONS = (
    "task",
    "class_names",
    "class_weights",
    "pos_weight",
    "label_smoothing",
    "ignore_index",
    "focal_gamma",
    "focal_alpha",
    "decision_threshold",
    "sum_tolerance",
    "clip_eps",
)


def _score_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``xentcore.score`` options of ``xent score``'s flags (those not given: the core's
    defaults)."""
    flag: dict[str, Any] = {"min_confidence": args.flag_min_confidence}
    if args.flag_max_loss is not None:
        flag["max_loss"] = args.flag_max_loss
    if args.flag_misclassified:
        flag["misclassified"] = True
    options: dict[str, Any] = {
        "input_type": args.input_type,
        "confidence": args.confidence,
        "flag": flag,
    }
    for name in _PLAIN_OPTIONS:
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.renormalize:
        options["renormalize"] = True
    return options


def _option_message(exc: InputError) -> str | None:
    """``--flag: message`` for an error about an option, else None."""
    loc = exc.location
    head = str(loc[0]) if loc else ""
    if head == "flag" and len(loc) > 1:
        return f"--flag-{str(loc[1]).replace('_', '-')}: {exc.reason}"
    flag = _OPTION_FLAGS.get(head)
    if flag is None:
        return None
    return f"{flag}: {exc.reason}" if len(loc) == 1 else f"{flag}: {exc}"


#: Flags that name columns of a table (not for .npy / .npz input).
_COLUMN_FLAGS = (
    "predictions_col",
    "predictions_cols",
    "labels_col",
    "ids_col",
    "sample_weights_col",
)


def _is_array_input(spec: str, fmt: str | None) -> bool:
    """Whether ``spec`` is read as .npy / .npz arrays (else as a table): by ``--format``, by
    its extension (``FILE.npz:NAME`` too), and for a local file of no known extension by its
    first bytes (as ``xent score`` always read .npy / .npz files of any name)."""
    if fmt is not None:
        return fmt in ARRAY_FORMATS
    head, sep, _ = spec.rpartition(":")
    if sep and head.lower().endswith(".npz"):
        return True
    known = format_of(spec)
    if known is not None:
        return known in ARRAY_FORMATS
    path = Path(spec)
    if "://" in spec or not path.is_file():
        return False
    with path.open("rb") as fp:
        magic = fp.read(6)
    return magic.startswith((b"\x93NUMPY", b"PK\x03\x04"))


def _check_flags(args: argparse.Namespace, arrays: bool) -> None:
    """Flags that do not fit the input, or each other (raises FileError)."""
    if arrays:
        given = [f"--{n.replace('_', '-')}" for n in _COLUMN_FLAGS if getattr(args, n)]
        if given:
            raise FileError(
                f"{given[0]} names a column of a table (Parquet, Arrow, CSV, JSON Lines); "
                "for .npy / .npz input use --labels FILE and --sample-weights FILE"
            )
    else:
        for name in ("labels", "sample_weights"):
            if getattr(args, name) is not None:
                flag = "--" + name.replace("_", "-")
                raise FileError(
                    f"{flag} FILE is for .npy / .npz input; for a table use {flag}-col NAME"
                )
    if args.calibration and args.labels is None and args.labels_col is None:
        raise FileError("--calibration needs labels (--labels FILE or --labels-col NAME)")
    if args.dask is not None:
        if args.per_item is not None:
            raise FileError(
                "--per-item writes one .npz on this machine and is not available with --dask: "
                "use --out DIR (Parquet part files written by the workers) and --flagged-out"
            )
    elif args.out is not None and format_of(str(args.out)) != "parquet":
        raise FileError(f"{args.out}: --out writes Parquet: name it FILE.parquet")
    _check_record_flags(args)


def _check_record_flags(args: argparse.Namespace) -> None:
    """``--url``, ``--stream`` and the flags that go with them (raises FileError)."""
    if (args.url is None) != (args.stream is None):
        raise FileError("--url and --stream go together: the service, and the stream to record in")
    if args.url is not None:
        parts = urllib.parse.urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise FileError(f"--url {args.url!r}: expected http://HOST:PORT or https://HOST")
    if args.stream is not None and not re.fullmatch(STREAM_PATTERN, args.stream):
        raise FileError(
            f"--stream {args.stream!r}: a stream name is 1 to 128 of A-Z a-z 0-9 _ . : -"
        )
    if args.url is None:
        given = [
            flag
            for flag, value in (
                ("--api-key", args.api_key),
                ("--api-key-file", args.api_key_file),
                ("--idempotency-key", args.idempotency_key),
            )
            if value is not None
        ]
        if given:
            raise FileError(f"{given[0]} is for recording the result: give --url and --stream")


@contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """The Dask client of ``--dask`` (closed, and a local cluster stopped, at exit), or None."""
    if args.dask is None:
        yield None
        return
    with connect(args.dask) as client:
        yield client


def _cluster_line(args: argparse.Namespace, client: Any) -> list[str]:
    """The report's line about the cluster (none without one)."""
    if client is None:
        return []
    workers = len(client.nthreads())
    return [f"cluster     Dask {args.dask} ({workers} worker{'s' * (workers != 1)})"]


def _score_arrays(
    args: argparse.Namespace, options: dict[str, Any], show: bool
) -> tuple[OfflineResult, list[str]]:
    """Score .npy / .npz input; the result and the report's first line."""
    opened: list[RowSource] = []
    try:
        predictions = open_rows(args.predictions, default_member="predictions")
        opened.append(predictions)
        extra: dict[str, RowSource | None] = {"labels": None, "sample_weights": None}
        for name in extra:
            spec = getattr(args, name)
            if spec is not None:
                opened.append(source := open_rows(spec, default_member=name))
                extra[name] = source
        with _cluster(args) as client:
            bar = ProgressBar(predictions.n_rows) if show else None
            common: dict[str, Any] = {
                "sample_weights": extra["sample_weights"],
                "options": options,
                "chunk_rows": args.chunk_rows,
                "out": args.out,
                "flagged_out": args.flagged_out,
                "calibration": args.calibration,
                "progress": bar.update if bar is not None else None,
            }
            if client is None:
                result = score_file(predictions, extra["labels"], per_item=args.per_item, **common)
            else:
                specs = (args.predictions, args.labels, args.sample_weights)
                result = score_arrays_on(
                    client, predictions, extra["labels"], specs=specs, **common
                )
            if bar is not None:
                bar.close(predictions.n_rows)
            cluster = _cluster_line(args, client)
    finally:
        for source in opened:
            source.close()
    shape = " x ".join(f"{d:,}" for d in predictions.shape)
    return result, [f"file        {predictions.name} ({shape} {predictions.dtype})", *cluster]


def _score_table(
    args: argparse.Namespace, options: dict[str, Any], fmt: str | None, show: bool
) -> tuple[OfflineResult, list[str]]:
    """Score a table; the result and the report's first lines."""
    source = open_table(args.predictions, format=fmt)
    columns = Columns(
        predictions=args.predictions_col,
        predictions_cols=args.predictions_cols,
        labels=args.labels_col,
        ids=args.ids_col,
        sample_weights=args.sample_weights_col,
    )
    names = tuple(args.class_names) if args.class_names is not None else None
    selection = columns.select(source.schema, source.name, class_names=names)
    total = source.count_rows() if show else 0
    with _cluster(args) as client:
        bar = ProgressBar(total) if show else None
        common: dict[str, Any] = {
            "options": options,
            "chunk_rows": args.chunk_rows,
            "out": args.out,
            "flagged_out": args.flagged_out,
            "calibration": args.calibration,
            "progress": bar.update if bar is not None else None,
        }
        if client is None:
            result = score_table(source, selection, per_item=args.per_item, **common)
        else:
            result = score_table_on(client, source, selection, **common)
        if bar is not None:
            bar.close(total)
        cluster = _cluster_line(args, client)
    used = [("predictions", ", ".join(selection.predictions))]
    used += [
        (role, name)
        for role, name in (
            ("labels", selection.labels),
            ("sample weights", selection.sample_weights),
            ("ids", selection.ids),
        )
        if name is not None
    ]
    return result, [
        f"file        {source.name} ({source.describe()})",
        "columns     " + ", ".join(f"{role} {name}" for role, name in used),
        *cluster,
    ]


def score_files(args: argparse.Namespace) -> int:
    """``xent score``: score a file in chunks; print the summary or the JSON; 2 on bad input.

    With ``--url`` and ``--stream``, the service is asked first (a wrong address or key stops
    the command before anything is scored: 2) and the result's Summary is recorded after
    (``recorded`` in the output; 1 when it could not be).
    """
    fmt = canonical_format(args.format) if args.format else None
    arrays = False
    with contextlib.ExitStack() as stack:
        try:
            arrays = _is_array_input(args.predictions, fmt)
            _check_flags(args, arrays)
            service = stack.enter_context(_service(args)) if args.url is not None else None
            options = _score_options(args)
            show = args.progress or (args.progress is None and sys.stderr.isatty())
            if arrays:
                result, described = _score_arrays(args, options, show)
            else:
                result, described = _score_table(args, options, fmt, show)
        except FileError as exc:
            print(f"xent score: {exc}", file=sys.stderr)
            return 2
        except InputError as exc:
            print(f"xent score: {_input_message(exc, args, arrays)}", file=sys.stderr)
            return 2
        except ClusterError as exc:
            print(f"xent score: {exc}", file=sys.stderr)
            return exc.status
        problem = None if service is None else _record(service, args, result)
    recorded = None if service is None else problem is None
    if args.json:
        out = result.as_json(max_indices=args.max_flagged)
        if recorded is not None:
            out["recorded"] = recorded
        print(json.dumps(out))
    else:
        print(_summary(result, described))
        if recorded is not None:
            print(_recorded_line(args, result, problem))
    if problem is not None:
        print(f"xent score: not recorded in stream {args.stream!r}: {problem}", file=sys.stderr)
        return 1
    return 0


# -- recording the result in a running service (--url, --stream) -------------------------

#: Attempts to record a result, and the seconds waited before each retry.
_RECORD_WAITS = (1.0, 2.0)
#: Statuses retried (with the same Idempotency-Key): the service or its store is busy.
_RETRIED = frozenset({502, 503, 504})


def _api_key(args: argparse.Namespace) -> str | None:
    """``--api-key``, or the first line of ``--api-key-file``."""
    if args.api_key_file is None:
        return str(args.api_key) if args.api_key is not None else None
    try:
        lines = Path(args.api_key_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(f"--api-key-file {args.api_key_file}: cannot read it: {exc}") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise FileError(f"--api-key-file {args.api_key_file}: holds no key on its first line")
    return key


def _problem(exc: Exception) -> str:
    """What went wrong talking to the service, in one line."""
    status = getattr(exc, "status_code", None)
    if status == 401:
        return "HTTP 401: the service wants a valid API key (--api-key-file FILE)"
    if status is not None:
        return str(exc)
    return f"cannot reach it: {exc or type(exc).__name__}"


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[Any]:
    """A client of the service at ``--url``, checked before anything is scored: it answers
    ``GET /v1/streams`` with this key (FileError, naming the address, otherwise)."""
    import httpx  # the client's modules: only when a result is to be recorded

    from service.client import Client, XentError

    client = Client(args.url, api_key=_api_key(args), timeout=60.0)
    try:
        try:
            client.streams()
        except (httpx.HTTPError, XentError) as exc:
            raise FileError(f"--url {args.url}: {_problem(exc)}; nothing was scored") from None
        yield client
    finally:
        client.close()


def _record(client: Any, args: argparse.Namespace, result: OfflineResult) -> str | None:
    """Record the result's Summary in ``--stream`` (``POST /v1/streams/{stream}/summaries``),
    retried on a busy service with the same ``Idempotency-Key``; None when recorded, else
    what went wrong."""
    import httpx

    from service.client import XentError

    assert result.summary is not None
    key = args.idempotency_key or f"xent-score-{uuid.uuid4().hex}"
    problem = ""
    for wait in (*_RECORD_WAITS, None):
        try:
            client.record_summary(args.stream, result.summary, idempotency_key=key)
            return None
        except (httpx.HTTPError, XentError) as exc:
            problem = _problem(exc)
            retry = getattr(exc, "status_code", None) in _RETRIED or isinstance(
                exc, httpx.TransportError
            )
            if not retry or wait is None:
                break
            time.sleep(wait)
    return problem


def _recorded_line(args: argparse.Namespace, result: OfflineResult, problem: str | None) -> str:
    if problem is not None:
        return f"recorded    no: {problem}"
    return f"recorded    stream {args.stream} at {args.url} ({result.n_items:,} items, one batch)"


def _input_message(exc: InputError, args: argparse.Namespace, arrays: bool) -> str:
    """The message of the core's error: about an option (named by its flag), or about the
    values of an array file (named by the file)."""
    option = _option_message(exc)
    if option is not None:
        return option
    head = str(exc.location[0]) if exc.location else ""
    files = {"predictions": args.predictions, "labels": args.labels}
    files["sample_weights"] = args.sample_weights
    where = files.get(head) if arrays else None
    return f"{where}: {exc}" if where else str(exc)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _names(text: str) -> list[str]:
    """``a,b,c`` -> the names (spaces around each one dropped)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _numbers(text: str) -> list[float]:
    """``1,2.5,0.5`` -> the numbers."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _eps(text: str) -> float | str:
    """``--clip-eps``: a number, or ``dtype``."""
    if text.strip() == "dtype":
        return "dtype"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'dtype', got {text!r}") from None


def _number_or_numbers(text: str) -> float | list[float]:
    """One number, or a comma-separated list of them (``--pos-weight`` of multilabel)."""
    numbers = _numbers(text)
    return numbers[0] if "," not in text else numbers


def _rule(text: str) -> float | None:
    """A threshold, or ``none`` / ``off`` for the rule off."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _add_score_input(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "predictions",
        metavar="INPUT",
        help="FILE.npy, FILE.npz[:NAME]; a Parquet, Arrow/Feather, CSV or JSON Lines file or "
        "directory (a dataset, hive partitions read as columns); a local path or a URI "
        "(s3://..., gs://..., file://...)",
    )
    group = run.add_argument_group("input")
    group.add_argument(
        "--format",
        choices=FORMAT_CHOICES,
        help="the input's format (default: from its extension; .csv.gz and the like too)",
    )
    group.add_argument(
        "--labels", metavar="FILE", help=".npy / .npz input: FILE.npy, FILE.npz[:NAME]"
    )
    group.add_argument(
        "--sample-weights",
        metavar="FILE",
        help=".npy / .npz input: N weights s_i of the reduction, FILE.npy, FILE.npz[:NAME]",
    )
    cols = group.add_mutually_exclusive_group()
    cols.add_argument(
        "--predictions-col",
        metavar="NAME",
        help="the column of predictions: numbers (binary) or lists of K numbers (default: "
        "'predictions')",
    )
    cols.add_argument(
        "--predictions-cols",
        metavar="SPEC",
        help="several number columns, one per class: a glob ('p_*', matched in the file's "
        "column order) or a comma-separated list (in its order)",
    )
    group.add_argument("--labels-col", metavar="NAME", help="the column of labels")
    group.add_argument("--ids-col", metavar="NAME", help="the column of item ids (for --out)")
    group.add_argument("--sample-weights-col", metavar="NAME", help="the column of sample weights")


def _add_score_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("options (the request fields of POST /v1/score)")
    group.add_argument("--task", choices=TASKS, help="default: inferred from the shape")
    group.add_argument("--input-type", choices=INPUT_TYPES, default="probabilities")
    group.add_argument(
        "--class-names",
        type=_names,
        metavar="A,B,C",
        help="K class names (binary: negative,positive): string labels, named predictions",
    )
    group.add_argument(
        "--class-weights",
        type=_numbers,
        metavar="W1,W2,...",
        help="class weights: K (binary: 2, negative then positive)",
    )
    group.add_argument(
        "--pos-weight",
        type=_number_or_numbers,
        metavar="W[,W...]",
        help="binary: a number; multilabel: a number or K numbers",
    )
    group.add_argument("--label-smoothing", type=float, metavar="E", help="in [0, 1]")
    group.add_argument(
        "--ignore-index",
        type=int,
        metavar="N",
        help="label value that marks unscored items (multilabel: entries)",
    )
    group.add_argument("--focal-gamma", type=float, metavar="G", help="focal loss gamma >= 0")
    group.add_argument(
        "--focal-alpha",
        type=_number_or_numbers,
        metavar="A[,A...]",
        help="focal loss alpha: a number, or one per class (multiclass, multilabel)",
    )
    group.add_argument("--confidence", choices=CONFIDENCE_METHODS, default="max_probability")
    group.add_argument(
        "--decision-threshold", type=float, metavar="T", help="binary/multilabel (default 0.5)"
    )
    group.add_argument(
        "--renormalize", action="store_true", help="divide probability rows by their sums"
    )
    group.add_argument("--sum-tolerance", type=float, metavar="TOL", help="default 1e-4")
    group.add_argument(
        "--clip-eps",
        type=_eps,
        metavar="EPS|dtype",
        help="probability clip (default 2.2e-16; 'dtype': the machine epsilon of the "
        "predictions' dtype, as scikit-learn's log_loss)",
    )
    group.add_argument(
        "--flag-min-confidence",
        type=_rule,
        default=0.5,
        metavar="C",
        help="flag below this (default 0.5; 'none': off)",
    )
    group.add_argument(
        "--flag-max-loss", type=float, metavar="L", help="flag items whose loss exceeds this"
    )
    group.add_argument("--flag-misclassified", action="store_true", help="flag wrong predictions")
    group.add_argument(
        "--calibration",
        action="store_true",
        help=f"add ECE, MCE, RMS, Brier, NLL and the {CALIBRATION_BINS} reliability bins "
        "(binary and multiclass, with labels)",
    )


def _add_score_output(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("output")
    group.add_argument("--json", action="store_true", help="print the /v1/score JSON (no items)")
    group.add_argument(
        "--max-flagged",
        type=_count,
        default=MAX_JSON_INDICES,
        metavar="N",
        help=f"flagged indices listed by --json (default {MAX_JSON_INDICES:,}; the count and "
        "rate always cover all)",
    )
    group.add_argument(
        "--flagged-out",
        type=Path,
        metavar="FILE",
        help="write every flagged row index to FILE: one per line, or an int64 array if FILE "
        "ends in .npy",
    )
    group.add_argument(
        "--out",
        type=Path,
        metavar="FILE.parquet",
        help="write the per-item columns (loss, confidence, predicted, flagged, reasons) "
        "beside the ids (--ids-col, else the row index) to this Parquet file",
    )
    group.add_argument(
        "--per-item",
        type=Path,
        metavar="OUT.npz",
        help="write loss, confidence, predicted and flagged per item to this .npz",
    )
    group.add_argument(
        "--chunk-rows",
        type=_positive,
        metavar="N",
        help="rows per chunk (default: about 4 M numbers)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def _dask_address(text: str) -> str:
    """``--dask``: ``local:N`` (N checked here) or a scheduler's address."""
    try:
        local_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_score_cluster(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("cluster (pip install 'xentcore[dask]')")
    group.add_argument(
        "--dask",
        type=_dask_address,
        metavar="ADDRESS",
        help="score the input's pieces (Parquet row groups, files, runs of array rows) as "
        "tasks of a Dask cluster and merge them: a scheduler's address (tcp://10.0.0.5:8786), "
        "or local:N for a local cluster of N worker processes started and stopped here. The "
        "workers read the input themselves (they must see its path or URI); --out is then a "
        "directory of Parquet part files; --per-item is not available",
    )


def _add_score_record(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("record the result in a running service")
    group.add_argument(
        "--url",
        metavar="URL",
        help="the service (http://host:8000): the result's Summary is recorded there as one "
        "batch of --stream (POST /v1/streams/{stream}/summaries), so that it counts in the "
        "stream's figures and dashboard; the service is asked before scoring starts",
    )
    group.add_argument("--stream", metavar="NAME", help="the stream to record the result in")
    keys = group.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key-file",
        type=Path,
        metavar="FILE",
        help="a file whose first line is the API key (one of the service's XENT_API_KEYS)",
    )
    keys.add_argument(
        "--api-key", metavar="KEY", help="the API key (visible to other users in ps: prefer a file)"
    )
    group.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="record the result at most once under this key (e.g. the job's run id; default: "
        "a new key per run, kept across its retries)",
    )


def _add_score(commands: Any) -> None:
    run = commands.add_parser(
        "score",
        help="score a file offline (.npy, .npz, Parquet, Arrow, CSV, JSON Lines)",
        description="Score predictions stored in files, in chunks of rows, in bounded memory "
        "(files larger than memory work). The figures are those of POST /v1/score. Tables "
        "(Parquet, Arrow IPC / Feather, CSV, JSON Lines; files, directories, partitioned "
        "datasets, local or on s3:// and other filesystems) are read through pyarrow, their "
        "columns named by the --*-col flags. An .npz array is chosen as FILE.npz:NAME; "
        "without :NAME, the file's only array, else the one named 'predictions' (or "
        "'labels' for --labels). Outputs are written only when the whole input has been "
        "scored. Exit status: 0, or 2 for unreadable files and invalid input (the message "
        "names the file, the 0-based row and the column).",
    )
    _add_score_input(run)
    _add_score_options(run)
    _add_score_output(run)
    _add_score_cluster(run)
    _add_score_record(run)
    run.set_defaults(handler=score_files)


def build_parser() -> argparse.ArgumentParser:
    """``xent`` and its subcommands: ``serve``, ``score`` and ``db``."""
    parser = argparse.ArgumentParser(
        prog="xent", description="xentcore: loss scoring for model outputs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {xentcore.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service (settings: XENT_* environment variables; flags "
        "override them).",
    )
    run.add_argument("--host", help="interface to bind (XENT_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="TCP port (XENT_PORT, default 8000)")
    run.add_argument("--workers", type=int, help="worker processes (XENT_WORKERS, default 1)")
    run.add_argument(
        "--log-level", choices=get_args(LogLevel), help="log level (XENT_LOG_LEVEL, default info)"
    )
    run.set_defaults(handler=serve)
    _add_score(commands)
    add_db(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xent`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `xent score ... | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
        return 1


if __name__ == "__main__":
    sys.exit(main())
