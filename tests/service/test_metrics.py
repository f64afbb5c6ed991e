"""Prometheus collectors: the array histogram exposes what ``Histogram.observe`` per value would,
the per-stream series count and fold streams beyond the cap, the exposed names stay put."""

from __future__ import annotations

import re

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import xentcore as xc
from service.metrics import OTHER_STREAM, ArrayHistogram, Metrics, StreamMetrics

BUCKETS = (0.1, 0.2, 0.5, 1.0)


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    out = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name.startswith(name) and not s.name.endswith("_created"):
                out[s.name + str(sorted(s.labels.items()))] = s.value
    return out


def _text(registry: CollectorRegistry) -> str:
    """The exposition with the ``_created`` times (wall clock) blanked."""
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())


def test_array_histogram_exposes_what_observe_gives() -> None:
    rng = np.random.default_rng(0)
    batches = [
        np.concatenate([rng.random(500), [0.0, 0.1, 0.5, 1.0, np.nan, 2.0, -3.0]]),
        rng.random(300).astype(np.float32) * 1.5,  # float32: compared and summed in float64
        np.array([0.1, 0.1, np.nan]),
    ]
    ra, rb = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h", "help", ["s"], buckets=BUCKETS, registry=ra)
    b = ArrayHistogram("h", "help", ["s"], buckets=BUCKETS, registry=rb)
    a.labels("empty")  # a series that never counted anything is exposed with zeros...
    b.observe(np.array([np.nan]), "empty")  # ...as one whose every value is NaN
    for label, values in (("x", batches[0]), ("y", batches[1]), ("x", batches[2])):
        for v in values[~np.isnan(values)]:
            a.labels(label).observe(float(v))
        b.observe(values, label)
    sa_, sb_ = _samples(ra, "h"), _samples(rb, "h")
    assert sa_.keys() == sb_.keys()
    for key in sa_:
        if "_sum" in key:  # one addition per batch instead of one per value: equal to rounding
            assert np.isclose(sa_[key], sb_[key], rtol=1e-12), key
        else:  # bucket and total counts are exact
            assert sa_[key] == sb_[key], key
    sums = re.compile(r"^h_sum.*$", re.M)
    assert sums.sub("", _text(ra)) == sums.sub("", _text(rb))  # same text, line for line


def test_array_histogram_without_observations_and_bad_bounds() -> None:
    ra, rb = CollectorRegistry(), CollectorRegistry()
    Histogram("h", "help", ["s"], buckets=BUCKETS, registry=ra)
    ArrayHistogram("h", "help", ["s"], buckets=BUCKETS, registry=rb)
    assert generate_latest(ra) == generate_latest(rb)  # the family's HELP and TYPE, no sample
    with pytest.raises(ValueError, match="strictly increasing"):
        ArrayHistogram("g", "help", [], buckets=(1.0, 0.5), registry=None).observe(np.ones(2))


def test_stream_metrics_count_and_cap() -> None:
    reg = CollectorRegistry()
    m = StreamMetrics(reg, max_streams=2)
    r = xc.score([0.2, 0.9, 0.6], [0, 1, 0], flag={"min_confidence": 0.7, "misclassified": True})
    for name in ("a", "b", "c", "d"):
        m.observe(name, "binary", r)
    text = generate_latest(reg).decode()
    assert 'xent_stream_items_scored_total{stream="a",task="binary"} 3.0' in text
    assert f'xent_stream_items_scored_total{{stream="{OTHER_STREAM}",task="binary"}} 6.0' in text
    assert 'stream="c"' not in text
    assert (
        'xent_stream_items_flagged_total{reason="misclassified",stream="a",task="binary"} 1.0'
        in text
    )
    assert 'xent_stream_item_loss_count{stream="a",task="binary"} 3.0' in text


def test_stream_metrics_of_sequences() -> None:
    reg = CollectorRegistry()
    m = StreamMetrics(reg)
    seqs = xc.score_sequences(
        [[-0.1, -0.2], [-2.0, -3.0, -0.5]], min_confidence=0.5, min_token_probability=0.1
    )
    m.observe("chat", "sequences", seqs)
    s = _samples(reg, "xent_stream")
    labels = "[('stream', 'chat'), ('task', 'sequences')]"
    assert s["xent_stream_items_scored_total" + labels] == 2
    low = "[('reason', 'low_confidence'), ('stream', 'chat'), ('task', 'sequences')]"
    assert s["xent_stream_items_flagged_total" + low] == 1
    token = "[('reason', 'low_token_probability'), ('stream', 'chat'), ('task', 'sequences')]"
    assert s["xent_stream_items_flagged_total" + token] == 1
    assert s["xent_stream_item_loss_count" + labels] == 2  # one NLL per sequence
    assert s["xent_stream_item_loss_sum" + labels] == pytest.approx(float(seqs.nll.sum()))


def test_exposed_names_types_labels_and_bounds() -> None:
    """The README's metric table: names, types, labels and histogram bounds; nothing else."""
    m = Metrics()
    m.observe("/v1/score", "POST", 200, 0.01)
    m.items.labels("score", "binary").inc(3)
    r = xc.score([0.2, 0.9, 0.6], [0, 1, 0], flag={"min_confidence": 0.7})
    m.streams.observe("s", "binary", r)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    kinds = {name: f.type for name, f in families.items() if not name.endswith("_created")}
    assert kinds == {
        "xent_http_requests": "counter",
        "xent_http_request_duration_seconds": "histogram",
        "xent_scoring_in_flight": "gauge",
        "xent_items_scored": "counter",
        "xent_stream_items_scored": "counter",
        "xent_stream_items_flagged": "counter",
        "xent_stream_item_loss": "histogram",
        "xent_stream_item_confidence": "histogram",
        "xent_store_errors": "counter",
        "xent_store_expired": "counter",
        "xent_store_retention_errors": "counter",
        "xent_store_indexed_items": "counter",
        "xent_store_index_errors": "counter",
        "xent_stream_labels": "counter",
        "xent_stream_labels_correct": "counter",
    }

    def bounds(name: str) -> list[str]:
        return [s.labels["le"] for s in families[name].samples if s.name.endswith("_bucket")]

    loss = ["0.01", "0.05", "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "10.0", "20.0", "50.0"]
    assert bounds("xent_stream_item_loss") == [*loss, "+Inf"]
    unit = ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]
    assert bounds("xent_stream_item_confidence") == [*unit, "+Inf"]
    for name in ("xent_stream_item_loss", "xent_stream_item_confidence"):
        assert {tuple(sorted(s.labels)) for s in families[name].samples} == {
            ("le", "stream", "task"),
            ("stream", "task"),
        }
    assert "xent_internal" not in m.render().decode()
