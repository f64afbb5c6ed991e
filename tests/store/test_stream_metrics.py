"""Per-stream Prometheus series: bulk observation equals one-by-one, the stream cap folds."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import xentcore as xc
from service.monitoring import OTHER_STREAM, StreamMetrics, _observe_all


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    out = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name.startswith(name) and not s.name.endswith("_created"):
                out[s.name + str(sorted(s.labels.items()))] = s.value
    return out


def test_bulk_observe_equals_observe() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(500), [0.0, 0.1, 0.5, 1.0, np.nan, 2.0]])
    buckets = (0.1, 0.2, 0.5, 1.0)
    ra, rb = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h", "h", buckets=buckets, registry=ra)
    b = Histogram("h", "h", buckets=buckets, registry=rb)
    for v in values[~np.isnan(values)]:
        a.observe(float(v))
    _observe_all(b, values)
    sa_, sb_ = _samples(ra, "h"), _samples(rb, "h")
    assert sa_.keys() == sb_.keys()
    for key in sa_:
        assert np.isclose(sa_[key], sb_[key], rtol=1e-12), key


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
