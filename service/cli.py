"""The ``xent`` command. ``xent serve`` runs the service under uvicorn.

Flags override the ``XENT_*`` environment; they are written back to the environment before
uvicorn starts, because with ``--workers`` > 1 every worker process imports ``service.app:app``
and builds its settings from the environment afresh. For the same reason the Prometheus
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``) is prepared and exported before uvicorn
spawns the workers.
"""

from __future__ import annotations

import argparse
import copy
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

from service.settings import LogLevel, Settings, get_settings

__all__ = ["MULTIPROC_ENV", "build_parser", "main", "prometheus_multiprocess"]

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
        for err in exc.errors(include_url=False, include_input=False):
            name = "XENT_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
            print(f"xent serve: invalid {name}: {err['msg']}", file=sys.stderr)
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
            server_header=False,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """``xent`` and its subcommands (``serve``; room for ``score`` and others)."""
    parser = argparse.ArgumentParser(
        prog="xent", description="xentcore: loss scoring for model outputs."
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xent`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
