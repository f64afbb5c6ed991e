"""Prometheus collectors of one app, in a registry of its own (tests build many apps).

With several worker processes (``xent serve --workers N``, which sets prometheus_client's
``PROMETHEUS_MULTIPROC_DIR``), every worker writes its values to files of its own in that
directory, and ``/metrics`` adds up all of them into a fresh registry per scrape, whichever
worker answers. The app's own registry then only holds the metric objects (it is not exposed,
so nothing is counted twice).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from service.monitoring import StreamMetrics

__all__ = ["Metrics", "multiprocess_dir"]

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Metrics:
    """HTTP request counts and latency by route template, scoring counters, per-stream series.

    ``route`` is the path template (``/v1/score``), never the raw path, and ``unmatched`` for
    requests no route matches, so label cardinality stays bounded whatever clients send.
    """

    def __init__(self, *, max_streams: int = 1000) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: prometheus_client's multiprocess directory, or None when values live in memory.
        self.multiprocess_dir = multiprocess_dir()
        self.requests = Counter(
            "xent_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "xent_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "xent_scoring_in_flight",
            "Scoring requests being received or computed.",
            registry=self.registry,
            multiprocess_mode="livesum",  # the sum over the workers alive now
        )
        self.items = Counter(
            "xent_items_scored",
            "Items (or sequences) scored, by endpoint and task.",
            ["endpoint", "task"],
            registry=self.registry,
        )
        #: Per-stream series (items, flags, loss, confidence, store errors), in this registry.
        self.streams = StreamMetrics(registry=self.registry, max_streams=max_streams)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition: this registry, or the sum over all workers' files."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        _forget_dead_processes(self.multiprocess_dir)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


def multiprocess_dir() -> str | None:
    """The directory this process writes its metric values to, or None (single-process mode).

    prometheus_client picks in-memory or file-backed values once, when it is imported, from its
    own ``PROMETHEUS_MULTIPROC_DIR`` variable (a prometheus_client variable, not an ``XENT_``
    setting; ``xent serve`` sets it for several workers). The value class it picked is the
    reliable sign of which mode this process is in, so it is asked first.
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _forget_dead_processes(directory: str) -> None:
    """Delete the ``live*`` gauge files of workers that have died (a killed or restarted one).

    What ``prometheus_client.multiprocess.mark_process_dead`` does, for every dead pid: uvicorn
    has no hook on a worker's death, so each scrape looks. Without it a worker killed with
    requests in flight would leave ``xent_scoring_in_flight`` above zero for good. Counter and
    histogram files stay: what a dead worker counted still counts.
    """
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """True unless ``pid`` surely is no process (never guesses "dead" off POSIX)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True
