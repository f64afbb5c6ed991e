"""``calibrate`` on a batch already scored gives exactly what ``calibration`` gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xentcore as xc
from xentcore.calibration import calibrate
from xentcore.score import score_batch
from xentcore.types import FlagRules, ScoreOptions
from xentcore.validate import check_batch

RNG = np.random.default_rng(11)
Z = RNG.normal(size=(80, 4)) * 3
Y = RNG.integers(0, 4, 80)
ZB = RNG.normal(size=80) * 2
YB = (RNG.random(80) < 0.5).astype(np.int64)

CASES: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "binary probabilities": (1 / (1 + np.exp(-ZB)), YB, {}),
    "binary logits weighted": (ZB, YB, {"input_type": "logits", "sample_weights": RNG.random(80)}),
    "multiclass logits": (Z, Y, {"input_type": "logits"}),
    "multiclass ignored": (
        Z,
        np.where(Y == 3, -1, Y),
        {"input_type": "logits", "ignore_index": -1},
    ),
    "multiclass smoothing": (Z, Y, {"input_type": "logits", "label_smoothing": 0.1}),
}


@pytest.mark.parametrize("fit", [False, True])
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("name", list(CASES))
def test_calibrate_equals_calibration(name: str, strategy: str, fit: bool) -> None:
    x, y, options = CASES[name]
    want = xc.calibration(x, y, n_bins=7, strategy=strategy, fit_temperature=fit, **options)
    b = check_batch(x, y, ScoreOptions(**options))
    rules = FlagRules(min_confidence=0.9, max_loss=0.5, misclassified=True)  # flags: no effect
    got = calibrate(b, score_batch(b, rules), n_bins=7, strategy=strategy, fit_temperature=fit)
    assert got == want
    assert (got.temperature is not None) == fit


def _batch(x: Any, y: Any, **options: Any) -> Any:
    b = check_batch(x, y, ScoreOptions(**options))
    return b, score_batch(b, FlagRules())


@pytest.mark.parametrize(
    ("batch", "kwargs", "location"),
    [
        (_batch([0.5, 0.6], None), {}, ("labels",)),
        (_batch([[0.5, 0.6]], [[1, 0]], task="multilabel"), {}, ("task",)),
        (_batch([0.5, 0.6], [1, 0], decision_threshold=0.4), {}, ("decision_threshold",)),
        (_batch([0.5, 0.6], [1, 0]), {"n_bins": 0}, ("n_bins",)),
        (_batch([0.5, 0.6], [1, 0]), {"strategy": "kmeans"}, ("strategy",)),
    ],
    ids=["no labels", "multilabel", "threshold", "n_bins", "strategy"],
)
def test_calibrate_refuses(batch: Any, kwargs: dict[str, Any], location: tuple[str, ...]) -> None:
    with pytest.raises(xc.InputError) as err:
        calibrate(*batch, **kwargs)
    assert err.value.location == location
