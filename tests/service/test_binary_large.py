"""An LLM-sized batch (1,000 positions x 32,000 vocabulary, float32 logits) over HTTP as binary."""

from __future__ import annotations

import numpy as np

from service.client import Client
from tests.service.conftest import MakeClient

N, V = 1_000, 32_000


def test_llm_sized_logits_as_binary_tensors(make_client: MakeClient) -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((N, V), dtype=np.float32)
    logits *= 3.0
    labels = rng.integers(0, V, N)
    http = make_client(max_body_bytes=256 * 1024 * 1024)
    with Client(http=http) as xent:
        r = xent.score(logits, labels, input_type="logits", per_item=True)
    # float64 reference: -log softmax(x)[y] = logsumexp(x) - x_y, one row at a time
    ref = np.empty(N)
    for i in range(N):
        row = logits[i].astype(np.float64)
        m = row.max()
        ref[i] = m + np.log(np.exp(row - m).sum()) - row[labels[i]]
    assert r.n_items == N and r.n_classes == V
    assert r.loss is not None and r.items is not None and r.items.loss is not None
    np.testing.assert_allclose(np.asarray(r.items.loss, dtype=float), ref, rtol=1e-6, atol=0)
    assert abs(r.loss.sum - ref.sum()) <= 1e-6 * ref.sum()
    assert r.loss.mean is not None
    assert abs(r.loss.mean - ref.mean()) <= 1e-6 * ref.mean()
    assert r.accuracy == np.mean(logits.argmax(axis=1) == labels)
