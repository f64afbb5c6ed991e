"""Prometheus collectors of one app, in a registry of its own (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service import deps

__all__ = ["Metrics"]

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
        )
        self.items = Counter(
            "xent_items_scored",
            "Items (or sequences) scored, by endpoint and task.",
            ["endpoint", "task"],
            registry=self.registry,
        )
        #: Per-stream series of the monitoring work (items, flags, loss, confidence, store
        #: errors), registered here so that /metrics shows them; None if it is not installed.
        self.streams = deps.stream_metrics(self.registry, max_streams)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
