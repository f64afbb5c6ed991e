"""The ``xent`` command. ``xent serve`` runs the service under uvicorn; ``xent score`` scores
``.npy`` / ``.npz`` files offline, in row chunks (``xentcore.files``); ``xent db`` upgrades the
monitoring store's schema and runs retention by hand.

Flags override the ``XENT_*`` environment; they are written back to the environment before
uvicorn starts, because with ``--workers`` > 1 every worker process imports ``service.app:app``
and builds its settings from the environment afresh. For the same reason the Prometheus
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``) is prepared and exported before uvicorn
spawns the workers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG

import xentcore
from service.dbcli import add_db
from service.progress import ProgressBar
from service.settings import LogLevel, Settings, get_settings, report_invalid
from xentcore import InputError
from xentcore.files import (
    MAX_JSON_INDICES,
    FileError,
    OfflineResult,
    RowSource,
    open_rows,
    score_file,
    write_indices,
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


def _summary(result: OfflineResult, source: RowSource) -> str:
    """The human-readable report of ``xent score``."""
    shape = " x ".join(f"{d:,}" for d in source.shape)
    lines = [
        f"file        {source.name} ({shape} {source.dtype})",
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
    lines += [f"warning     {w}" for w in result.warnings]
    return "\n".join(lines)


def _score_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``xentcore.score`` options of ``xent score``'s flags."""
    flag: dict[str, Any] = {"min_confidence": args.flag_min_confidence}
    if args.flag_max_loss is not None:
        flag["max_loss"] = args.flag_max_loss
    if args.flag_misclassified:
        flag["misclassified"] = True
    return {
        "task": args.task,
        "input_type": args.input_type,
        "confidence": args.confidence,
        "ignore_index": args.ignore_index,
        "flag": flag,
    }


def score_files(args: argparse.Namespace) -> int:
    """``xent score``: score a file in chunks; print the summary or the JSON; 2 on bad input."""
    opened: list[RowSource] = []
    try:
        if args.flagged_out is not None and not args.flagged_out.parent.is_dir():
            raise FileError(f"{args.flagged_out}: cannot write: its directory does not exist")
        predictions = open_rows(args.predictions, default_member="predictions")
        opened.append(predictions)
        labels = None
        if args.labels is not None:
            labels = open_rows(args.labels, default_member="labels")
            opened.append(labels)
        show = args.progress or (args.progress is None and sys.stderr.isatty())
        bar = ProgressBar(predictions.n_rows) if show else None
        result = score_file(
            predictions,
            labels,
            options=_score_options(args),
            chunk_rows=args.chunk_rows,
            per_item=args.per_item,
            progress=bar.update if bar is not None else None,
        )
        if bar is not None:
            bar.close(predictions.n_rows)
        if args.flagged_out is not None:
            write_indices(args.flagged_out, result.flagged_indices)
    except FileError as exc:
        print(f"xent score: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        where = {"predictions": args.predictions, "labels": args.labels}.get(
            str(exc.location[0]) if exc.location else ""
        )
        prefix = f"{where}: " if where else ""
        print(f"xent score: {prefix}{exc}", file=sys.stderr)
        return 2
    finally:
        for source in opened:
            source.close()
    if args.json:
        print(json.dumps(result.as_json(max_indices=args.max_flagged)))
    else:
        print(_summary(result, predictions))
    return 0


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


def _add_score(commands: Any) -> None:
    run = commands.add_parser(
        "score",
        help="score a .npy / .npz file offline",
        description="Score predictions stored in a .npy or .npz file, in chunks of rows "
        "(memory-mapped, so files larger than memory work). The figures are those of "
        "POST /v1/score. An .npz array is chosen as FILE.npz:NAME; without :NAME, the "
        "file's only array, else the one named 'predictions' (or 'labels' for --labels). "
        "Exit status: 0, or 2 for unreadable files and invalid input.",
    )
    run.add_argument("predictions", metavar="PREDICTIONS", help="FILE.npy, FILE.npz[:NAME]")
    run.add_argument("--labels", metavar="LABELS", help="FILE.npy, FILE.npz[:NAME]")
    run.add_argument("--task", choices=TASKS, help="default: inferred from the shape")
    run.add_argument("--input-type", choices=INPUT_TYPES, default="probabilities")
    run.add_argument("--confidence", choices=CONFIDENCE_METHODS, default="max_probability")
    run.add_argument("--ignore-index", type=int, help="label value that marks unscored items")
    run.add_argument(
        "--flag-min-confidence", type=float, default=0.5, help="flag below this (default 0.5)"
    )
    run.add_argument("--flag-max-loss", type=float, help="flag items whose loss exceeds this")
    run.add_argument("--flag-misclassified", action="store_true", help="flag wrong predictions")
    run.add_argument("--json", action="store_true", help="print the /v1/score JSON (no items)")
    run.add_argument(
        "--max-flagged",
        type=_count,
        default=MAX_JSON_INDICES,
        metavar="N",
        help=f"flagged indices listed by --json (default {MAX_JSON_INDICES:,}; the count and "
        "rate always cover all)",
    )
    run.add_argument(
        "--flagged-out",
        type=Path,
        metavar="FILE",
        help="write every flagged row index to FILE: one per line, or an int64 array if FILE "
        "ends in .npy",
    )
    run.add_argument(
        "--per-item",
        type=Path,
        metavar="OUT.npz",
        help="write loss, confidence, predicted and flagged per item to this .npz",
    )
    run.add_argument(
        "--chunk-rows", type=_positive, help="rows per chunk (default: about 4 M numbers)"
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
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
