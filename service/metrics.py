"""Every Prometheus collector of the service, in a registry of its own per app (tests build many).

HTTP series (:class:`Metrics`) and per-stream series (:class:`StreamMetrics`), written through
prometheus_client's public API only. The per-stream histograms observe a whole batch at once
(:class:`ArrayHistogram`): a million values cost a few milliseconds, not the second that a
``Histogram.observe`` per value takes.

With several worker processes (``xent serve --workers N``, which sets prometheus_client's
``PROMETHEUS_MULTIPROC_DIR``), every worker writes its values to files of its own in that
directory, and ``/metrics`` adds up all of them into a fresh exposition per scrape, whichever
worker answers. The app's own registry then only holds the metric objects (it is not exposed,
so nothing is counted twice).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import HistogramMetricFamily, Metric, Sample
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from service.deadworkers import forget_dead_processes
from xentcore.histogram import bucket_counts
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.types import FloatArray

__all__ = ["OTHER_STREAM", "ArrayHistogram", "Metrics", "StreamMetrics", "multiprocess_dir"]

#: The label that streams beyond ``XENT_MAX_STREAMS`` are folded into in /metrics.
OTHER_STREAM = "other"
#: Prefix of the series an :class:`ArrayHistogram` keeps its values in; never exposed.
INTERNAL_PREFIX = "xent_internal_"
_UNIT_BUCKETS = tuple(i / 10 for i in range(11))
_LOSS_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
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

LabelValues = tuple[str, ...]


class ArrayHistogram:
    """A histogram observed a whole array at a time, exposed exactly as a ``Histogram``.

    prometheus_client has no bulk observe (its maintainers point to custom collectors), and a
    custom collector alone cannot work with several worker processes, whose values must live in
    prometheus_client's files. So the values live in two plain metrics, never exposed: a
    ``Counter`` ``xent_internal_<name>_bucket`` with an extra ``le`` label (per-bucket counts,
    not cumulative; ``inc(n)`` is file-backed in multiprocess mode) and a ``Gauge``
    ``xent_internal_<name>_sum`` (``multiprocess_mode="sum"``: a sum may be negative, which a
    Counter refuses). At render time :meth:`family` folds them into one ``histogram`` family of
    ``name``: ``_bucket{le}`` = the running sum of the per-bucket counts over the bounds in
    order, ``_count`` = the ``+Inf`` bucket, ``_sum``, and (single process) ``_created``, the
    creation time of the series' ``+Inf`` counter. Single process, the object is itself the
    collector registered in ``registry``; with workers, :func:`fold_histograms` rewrites the
    merged files' families.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        #: finite upper bounds; the ``+Inf`` bucket is implicit
        self.upper_bounds = tuple(float(b) for b in buckets)
        # ``le`` values spelt by the formatter Histogram itself uses ("0.1", "1.0", "+Inf")
        les = [floatToGoString(b) for b in self.upper_bounds]  # type: ignore[no-untyped-call]
        self._les: tuple[str, ...] = (*les, "+Inf")
        self.counts_name = f"{INTERNAL_PREFIX}{name}_bucket"
        self.sums_name = f"{INTERNAL_PREFIX}{name}_sum"
        labels = [*self.labelnames, "le"]
        self._counts = Counter(self.counts_name, documentation, labels, registry=None)
        self._sums = Gauge(
            self.sums_name, documentation, self.labelnames, registry=None, multiprocess_mode="sum"
        )
        self._children: dict[LabelValues, tuple[list[Counter], Gauge]] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, values: FloatArray, *labelvalues: str) -> None:
        """Observe every value of ``values`` under ``labelvalues``; NaN values are skipped.

        Adds what ``Histogram.observe`` per value would add (``xentcore.histogram``), with one
        ``inc`` per non-empty bucket. The series exists (all zeros) even when nothing is counted.
        """
        counted = bucket_counts(values, self.upper_bounds)
        buckets, total = self._child(labelvalues)
        for child, n in zip(buckets, counted.counts, strict=True):
            if n:
                child.inc(n)
        if counted.n:
            total.inc(counted.total)

    def _child(self, labelvalues: LabelValues) -> tuple[list[Counter], Gauge]:
        found = self._children.get(labelvalues)
        if found is None:
            with self._lock:  # every bucket at once, as Histogram.labels() creates them
                found = self._children.get(labelvalues)
                if found is None:
                    found = (
                        [self._counts.labels(*labelvalues, le) for le in self._les],
                        self._sums.labels(*labelvalues),
                    )
                    self._children[labelvalues] = found
        return found

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        """The histogram family, from this process's values (single-process mode)."""
        yield from fold_histograms([*self._counts.collect(), *self._sums.collect()], [self])

    def family(self, counts: Metric, sums: Metric | None) -> HistogramMetricFamily:
        """The histogram family folded from the internal counter and gauge families."""
        per: dict[LabelValues, dict[str, float]] = {}
        created: dict[LabelValues, float] = {}
        for s in counts.samples:
            key = tuple(s.labels[n] for n in self.labelnames)
            if s.name.endswith("_total"):
                per.setdefault(key, {})[s.labels["le"]] = s.value
            elif s.name.endswith("_created") and s.labels["le"] == "+Inf":
                created[key] = s.value
        totals: dict[LabelValues, float] = {}
        for s in [] if sums is None else sums.samples:
            totals[tuple(s.labels[n] for n in self.labelnames)] = s.value
        out = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, by_le in per.items():
            acc, cumulative = 0.0, []
            for le in self._les:
                acc += by_le.get(le, 0.0)
                cumulative.append((le, acc))
            out.add_metric(key, cumulative, totals.get(key, 0.0))
            if key in created:
                labels = dict(zip(self.labelnames, key, strict=True))
                out.samples.append(Sample(f"{self.name}_created", labels, created[key]))
        return out


def fold_histograms(
    families: Iterable[Metric], histograms: Sequence[ArrayHistogram]
) -> Iterator[Metric]:
    """``families`` with each histogram's internal families replaced by its histogram family.

    The histogram takes the place of its internal counter family; the internal gauge family is
    dropped; every other family passes unchanged, in order.
    """
    found = list(families)
    by_name = {f.name: f for f in found}
    by_counts = {h.counts_name: h for h in histograms}
    sums = {h.sums_name for h in histograms}
    for f in found:
        h = by_counts.get(f.name)
        if h is not None:
            yield h.family(f, by_name.get(h.sums_name))
        elif f.name not in sums:
            yield f


class _Folded:
    """A collector: the families of ``source`` passed through :func:`fold_histograms`."""

    def __init__(self, source: MultiProcessCollector, histograms: Sequence[ArrayHistogram]):
        self._source = source
        self._histograms = histograms

    def collect(self) -> Iterator[Metric]:
        return fold_histograms(self._source.collect(), self._histograms)  # type: ignore[no-untyped-call]


def _label_counters(reg: CollectorRegistry) -> tuple[Counter, Counter]:
    """Late labels applied, and those that agreed with the prediction, by stream."""
    received = "Late labels applied to kept items, by stream (API.md section 9)"
    correct = (
        "Late labels that agreed with the item's prediction: realized accuracy = "
        "rate(xent_stream_labels_correct_total) / rate(xent_stream_labels_total)"
    )
    return (
        Counter("xent_stream_labels_total", received, ["stream"], registry=reg),
        Counter("xent_stream_labels_correct_total", correct, ["stream"], registry=reg),
    )


class StreamMetrics:
    """Per-stream Prometheus series, with the number of distinct stream labels capped."""

    def __init__(self, registry: CollectorRegistry | None = None, max_streams: int = 1000) -> None:
        reg = REGISTRY if registry is None else registry
        self.max_streams = max_streams
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.items = Counter(
            "xent_stream_items_scored_total",
            "Items scored under a stream",
            ["stream", "task"],
            registry=reg,
        )
        self.flagged = Counter(
            "xent_stream_items_flagged_total",
            "Items flagged under a stream, by reason",
            ["stream", "task", "reason"],
            registry=reg,
        )
        self.loss = ArrayHistogram(
            "xent_stream_item_loss",
            "Per-item loss of scored items",
            ["stream", "task"],
            buckets=_LOSS_BUCKETS,
            registry=reg,
        )
        self.confidence = ArrayHistogram(
            "xent_stream_item_confidence",
            "Per-item confidence",
            ["stream", "task"],
            buckets=_UNIT_BUCKETS,
            registry=reg,
        )
        self.store_errors = Counter(
            "xent_store_errors_total",
            "Batches that could not be recorded in the store",
            registry=reg,
        )
        self.expired = Counter(
            "xent_store_expired_total",
            "Rows deleted by retention: raw batches (with their flagged items), rollups and "
            "kept items",
            ["what"],
            registry=reg,
        )
        self.labels_received, self.labels_correct = _label_counters(reg)
        self.retention_errors = Counter(
            "xent_store_retention_errors_total",
            "Retention passes that failed (retried at the next interval)",
            registry=reg,
        )
        self.indexed = Counter(
            "xent_store_indexed_items_total",
            "Lookup keys of kept items written by the indexer (off the request path)",
            registry=reg,
        )
        self.index_errors = Counter(
            "xent_store_index_errors_total",
            "Indexer passes that failed (retried)",
            registry=reg,
        )

    @property
    def histograms(self) -> tuple[ArrayHistogram, ...]:
        """The array histograms, to fold into the exposition in multiprocess mode."""
        return (self.loss, self.confidence)

    def label(self, stream: str) -> str:
        """The stream's label, or ``other`` once ``max_streams`` distinct labels exist."""
        with self._lock:
            if stream in self._seen:
                return stream
            if len(self._seen) < self.max_streams:
                self._seen.add(stream)
                return stream
        return OTHER_STREAM

    def observe_labels(self, stream: str, matched: int, correct: int) -> None:
        """Count a labels request's applied labels and those that agreed with the prediction."""
        name = self.label(stream)
        self.labels_received.labels(name).inc(matched)
        self.labels_correct.labels(name).inc(correct)

    def observe(self, stream: str, task: str, result: ScoreResult | SequenceResult) -> None:
        """Count the batch's items and flags; observe its losses and confidences.

        For sequences the task label is ``sequences`` and the loss is each sequence's NLL.
        NaN losses (items without a label) and NaN confidences are not observed.
        """
        name = self.label(stream)
        loss: FloatArray | None
        if isinstance(result, SequenceResult):
            n, loss, counts = int(result.n_tokens.size), result.nll, result.counts()
        else:
            n, loss, counts = result.n_items, result.item_loss, result.masks.counts()
        self.items.labels(name, task).inc(n)
        for reason, count in counts.items():
            if count:
                self.flagged.labels(name, task, reason).inc(count)
        self.confidence.observe(result.confidence, name, task)
        if loss is not None:
            self.loss.observe(loss, name, task)


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
        forget_dead_processes(self.multiprocess_dir)
        merged = MultiProcessCollector(None, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(_Folded(merged, self.streams.histograms))


def multiprocess_dir() -> str | None:
    """The directory this process writes its metric values to, or None (single-process mode).

    prometheus_client picks in-memory or file-backed values once, when it is imported, from its
    own ``PROMETHEUS_MULTIPROC_DIR`` variable (a prometheus_client variable, not an ``XENT_``
    setting; ``xent serve`` sets it for several workers). The value class it picked (in-memory:
    ``values.MutexValue``) is the reliable sign of which mode this process is in, so it is
    asked first.
    """
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
