"""/v1/score, /v1/loss, /v1/confidence and /v1/flag: exact numbers, hand-computed or from
xentcore, and every answer checked against its documented response model."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from service.client import encode
from service.schemas import ConfidenceResponse, FlagResponse, LossResponse, ScoreResponse
from tests.service.test_api_binary import binary_request

P3 = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]
L3 = [0, 2]
LOSS3 = [-math.log(0.7), -math.log(0.1)]


def post(client: Any, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


def test_score_multiclass_exact(client: Any) -> None:
    out = post(client, "/v1/score", {"predictions": P3, "labels": L3, "ids": ["a", "b"]})
    ScoreResponse.model_validate(out)
    assert out == {
        "task": "multiclass",
        "n_items": 2,
        "n_classes": 3,
        "loss": {
            "mean": pytest.approx(sum(LOSS3) / 2, rel=1e-15),
            "sum": pytest.approx(sum(LOSS3), rel=1e-15),
            "n_scored": 2,
        },
        "accuracy": 0.5,
        "confidence": {"method": "max_probability", "mean": 0.75},
        "flagged": {"count": 0, "rate": 0.0, "indices": [], "ids": []},
        "items": {
            "loss": [pytest.approx(v, rel=1e-15) for v in LOSS3],
            "confidence": [0.7, 0.8],
            "predicted": [0, 1],
            "flagged": [False, False],
            "reasons": [[], []],
            "ids": ["a", "b"],
        },
        "warnings": [],
        "recorded": None,
    }
    assert list(out) == [
        "task",
        "n_items",
        "n_classes",
        "loss",
        "accuracy",
        "confidence",
        "flagged",
        "items",
        "warnings",
        "recorded",
    ]


def test_score_without_labels_uses_server_min_confidence(make_client: Any) -> None:
    client = make_client(min_confidence=0.75)
    out = post(client, "/v1/score", {"predictions": P3})
    ScoreResponse.model_validate(out)
    assert out["loss"] is None and out["accuracy"] is None
    assert out["items"]["loss"] is None
    assert out["flagged"] == {"count": 1, "rate": 0.5, "indices": [0]}
    assert out["items"]["reasons"] == [["low_confidence"], []]


def test_flag_object_replaces_the_default_rule(make_client: Any) -> None:
    client = make_client(min_confidence=0.9)
    out = post(client, "/v1/score", {"predictions": P3, "labels": L3, "flag": {"max_loss": 1.0}})
    assert out["flagged"]["indices"] == [1]
    assert out["items"]["reasons"] == [[], ["high_loss"]]
    out = post(client, "/v1/score", {"predictions": P3, "flag": {}})
    assert out["flagged"]["count"] == 0


def test_score_binary_hand_computed(client: Any) -> None:
    out = post(
        client,
        "/v1/score",
        {
            "predictions": [0.9, 0.2, 0.6],
            "labels": [1, 0, 0],
            "flag": {"misclassified": True, "min_confidence": 0.7},
        },
    )
    ScoreResponse.model_validate(out)
    losses = [-math.log(0.9), -math.log(0.8), -math.log(0.4)]
    assert out["task"] == "binary" and out["n_classes"] == 2
    assert out["loss"]["sum"] == pytest.approx(sum(losses), rel=1e-14)
    assert out["items"]["confidence"] == [0.9, 0.8, 0.6]
    assert out["items"]["predicted"] == [1, 0, 1]
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["items"]["reasons"] == [[], [], ["low_confidence", "misclassified"]]


def test_score_matches_xentcore_with_every_option(client: Any) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 5)) * 3
    labels = rng.integers(0, 5, 40)
    labels[[3, 7]] = -100
    options: dict[str, Any] = {
        "input_type": "logits",
        "class_weights": [1.0, 2.0, 0.5, 1.0, 3.0],
        "sample_weights": rng.random(40).tolist(),
        "label_smoothing": 0.1,
        "ignore_index": -100,
        "focal_gamma": 2.0,
        "focal_alpha": 0.25,
        "confidence": "margin",
        "flag": {"min_confidence": 0.3, "max_loss": 1.5, "misclassified": True},
    }
    out = post(
        client, "/v1/score", {"predictions": z.tolist(), "labels": labels.tolist(), **options}
    )
    ScoreResponse.model_validate(out)
    ref = xc.score(z, labels, **options)
    assert out["loss"]["mean"] == pytest.approx(ref.loss_mean, rel=1e-12)
    assert out["loss"]["sum"] == pytest.approx(ref.loss_sum, rel=1e-12)
    assert out["loss"]["n_scored"] == 38
    assert out["items"]["loss"][3] is None and out["items"]["loss"][7] is None
    assert np.allclose(
        [v for v in out["items"]["loss"] if v is not None],
        ref.item_loss[~np.isnan(ref.item_loss)],
        rtol=1e-12,
    )
    assert out["items"]["confidence"] == pytest.approx(ref.confidence.tolist(), rel=1e-12)
    assert out["flagged"]["indices"] == ref.flagged_indices.tolist()
    assert out["items"]["reasons"] == ref.reasons
    assert out["accuracy"] == pytest.approx(ref.accuracy)


def test_class_names_and_string_labels(client: Any) -> None:
    out = post(
        client,
        "/v1/score",
        {"predictions": P3, "labels": ["cat", "bird"], "class_names": ["cat", "dog", "bird"]},
    )
    assert out["items"]["predicted"] == ["cat", "dog"]
    assert out["loss"]["sum"] == pytest.approx(sum(LOSS3), rel=1e-15)


def test_multilabel_predicted_sets(client: Any) -> None:
    out = post(
        client,
        "/v1/score",
        {
            "predictions": [[0.9, 0.6, 0.1], [0.2, 0.3, 0.4]],
            "labels": [[1, 1, 0], [0, 0, 0]],
            "task": "multilabel",
        },
    )
    ScoreResponse.model_validate(out)
    assert out["items"]["predicted"] == [[0, 1], []]
    assert out["accuracy"] == 1.0
    first = (-math.log(0.9) - math.log(0.6) - math.log(0.9)) / 3
    assert out["items"]["loss"][0] == pytest.approx(first, rel=1e-14)
    assert out["items"]["confidence"] == [0.6, 0.6]


def test_huge_logits_stay_finite(client: Any) -> None:
    out = post(
        client,
        "/v1/score",
        {"predictions": [[1e300, 0.0], [0.0, 1e300]], "labels": [1, 1], "input_type": "logits"},
    )
    assert out["items"]["loss"] == [1e300, 0.0]


def test_clipping_warning(client: Any) -> None:
    out = post(client, "/v1/score", {"predictions": [[1.0, 0.0]], "labels": [1]})
    assert out["items"]["loss"] == [pytest.approx(-math.log(2.220446049250313e-16))]
    assert out["warnings"] and "clipped" in out["warnings"][0]


def test_all_ignored_gives_null_mean(client: Any) -> None:
    out = post(client, "/v1/score", {"predictions": P3, "labels": [-1, -1], "ignore_index": -1})
    assert out["loss"] == {"mean": None, "sum": 0.0, "n_scored": 0}
    assert out["items"]["loss"] == [None, None]
    assert out["accuracy"] is None


def test_per_item_false_omits_items(client: Any) -> None:
    for path in ("/v1/score", "/v1/loss", "/v1/confidence", "/v1/flag"):
        out = post(client, path, {"predictions": P3, "labels": L3, "per_item": False})
        assert "items" not in out, path


def test_sum_tolerance_request_and_setting(make_client: Any) -> None:
    loose = make_client(sum_tolerance=0.1)
    body = {"predictions": [[0.55, 0.5]], "labels": [0]}
    assert loose.post("/v1/score", json=body).status_code == 200
    strict = make_client()
    assert strict.post("/v1/score", json=body).status_code == 422
    assert strict.post("/v1/score", json={**body, "sum_tolerance": 0.1}).status_code == 200
    out = post(strict, "/v1/score", {**body, "renormalize": True})
    assert out["items"]["loss"][0] == pytest.approx(-math.log(0.55 / 1.05), rel=1e-14)


def test_loss_endpoint(client: Any) -> None:
    out = post(client, "/v1/loss", {"predictions": P3, "labels": L3, "ids": [5, 6]})
    LossResponse.model_validate(out)
    assert out == {
        "task": "multiclass",
        "n_items": 2,
        "n_classes": 3,
        "loss": {
            "mean": pytest.approx(sum(LOSS3) / 2, rel=1e-15),
            "sum": pytest.approx(sum(LOSS3), rel=1e-15),
            "n_scored": 2,
        },
        "items": {"loss": [pytest.approx(v, rel=1e-15) for v in LOSS3], "ids": [5, 6]},
        "warnings": [],
        "recorded": None,
    }


def test_loss_needs_labels(client: Any) -> None:
    response = client.post("/v1/loss", json={"predictions": P3})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "labels"], "msg": "Field required", "type": "missing"}
    ]


def test_confidence_endpoint(client: Any) -> None:
    out = post(client, "/v1/confidence", {"predictions": P3, "confidence": "entropy"})
    ConfidenceResponse.model_validate(out)
    ent = [1 + sum(p * math.log(p) for p in row) / math.log(3) for row in P3]
    assert out["confidence"]["method"] == "entropy"
    assert out["items"]["confidence"] == [pytest.approx(v, rel=1e-12) for v in ent]
    assert out["confidence"]["mean"] == pytest.approx(sum(ent) / 2, rel=1e-12)
    assert out["items"]["predicted"] == [0, 1]
    assert out["accuracy"] is None


def test_confidence_true_class(client: Any) -> None:
    out = post(
        client, "/v1/confidence", {"predictions": P3, "labels": L3, "confidence": "true_class"}
    )
    assert out["items"]["confidence"] == [0.7, 0.1]
    assert out["accuracy"] == 0.5


def test_flag_endpoint_returns_flagged_items_only(client: Any) -> None:
    body = {
        "predictions": [[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]],
        "labels": [0, 2, 0],
        "ids": ["a", "b", "c"],
        "flag": {"min_confidence": 0.5, "misclassified": True},
    }
    out = post(client, "/v1/flag", body)
    FlagResponse.model_validate(out)
    assert out["flagged"] == {
        "count": 2,
        "rate": pytest.approx(2 / 3),
        "indices": [1, 2],
        "ids": ["b", "c"],
    }
    assert out["items"] == [
        {
            "index": 1,
            "id": "b",
            "confidence": 0.4,
            "loss": pytest.approx(-math.log(0.25), rel=1e-15),
            "reasons": ["low_confidence", "misclassified"],
        },
        {
            "index": 2,
            "id": "c",
            "confidence": 0.8,
            "loss": pytest.approx(-math.log(0.1), rel=1e-15),
            "reasons": ["misclassified"],
        },
    ]


def test_flag_without_ids_or_labels(client: Any) -> None:
    out = post(client, "/v1/flag", {"predictions": [0.55, 0.9], "flag": {"min_confidence": 0.6}})
    assert out["items"] == [
        {"index": 0, "confidence": 0.55, "loss": None, "reasons": ["low_confidence"]}
    ]
    assert "ids" not in out["flagged"]


def test_rule_needing_labels_is_a_422(client: Any) -> None:
    response = client.post("/v1/flag", json={"predictions": P3, "flag": {"max_loss": 1.0}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "flag", "max_loss"]


def test_stream_records_and_reports(client: Any) -> None:
    out = post(client, "/v1/score", {"predictions": P3, "labels": L3, "stream": "model-a:v1"})
    assert out["recorded"] is True
    out = post(client, "/v1/score", {"predictions": P3, "labels": L3})
    assert out["recorded"] is None


def test_stream_without_store_still_scores(client: Any) -> None:
    client.app.state.store = None
    out = post(client, "/v1/score", {"predictions": P3, "labels": L3, "stream": "s"})
    assert out["recorded"] is False
    assert out["loss"]["n_scored"] == 2


def test_broken_store_never_fails_scoring(client: Any) -> None:
    class Broken:
        def record(self, **kwargs: Any) -> bool:
            raise OSError("disk full")

        def ping(self) -> bool:
            raise OSError("down")

        def close(self) -> None:
            pass

    client.app.state.store = Broken()
    out = post(client, "/v1/score", {"predictions": P3, "labels": L3, "stream": "s"})
    assert out["recorded"] is False
    assert client.get("/readyz").status_code == 503


# --- the peer-parity options of issue 18 (the numbers are the core's, checked against torch,
# Keras and scikit-learn in tests/xentcore/test_peer_parity.py)


def test_binary_class_weights_and_ignore_index(client: Any) -> None:
    body = {
        "predictions": [0.9, 0.2, 0.6, 0.4],
        "labels": [1, -100, 0, 1],
        "class_weights": [0.5, 2.0],
        "ignore_index": -100,
    }
    out = post(client, "/v1/score", body)
    ScoreResponse.model_validate(out)
    scored = [-2.0 * math.log(0.9), -0.5 * math.log(0.4), -2.0 * math.log(0.4)]
    loss = out["items"]["loss"]
    assert loss[1] is None
    assert [loss[0], loss[2], loss[3]] == pytest.approx(scored, rel=1e-14)
    # the mean divides by the scored items (3), not by their weights (torch BCELoss(weight=))
    assert out["loss"]["n_scored"] == 3
    assert out["loss"]["sum"] == pytest.approx(sum(scored), rel=1e-14)
    assert out["loss"]["mean"] == pytest.approx(sum(scored) / 3, rel=1e-14)
    assert out["accuracy"] == pytest.approx(1 / 3)


def test_multilabel_class_weights_and_per_class_alpha(client: Any) -> None:
    p = [[0.9, 0.6, 0.1], [0.2, 0.3, 0.4]]
    y = [[1, 1, 0], [0, 1, 0]]
    options: dict[str, Any] = {
        "task": "multilabel",
        "class_weights": [1.0, 0.5, 3.0],
        "focal_gamma": 2.0,
        "focal_alpha": [0.25, 0.5, 0.75],
    }
    out = post(client, "/v1/loss", {"predictions": p, "labels": y, **options})
    ref = xc.score(p, y, **options)
    assert out["loss"]["mean"] == pytest.approx(ref.loss_mean, rel=1e-14)
    assert out["items"]["loss"] == pytest.approx(ref.item_loss.tolist(), rel=1e-14)


def test_multiclass_per_class_alpha(client: Any) -> None:
    options: dict[str, Any] = {"focal_gamma": 2.0, "focal_alpha": [0.5, 2.0, 1.0]}
    out = post(client, "/v1/loss", {"predictions": P3, "labels": L3, **options})
    item = [-0.5 * 0.3**2 * math.log(0.7), -1.0 * 0.9**2 * math.log(0.1)]
    assert out["items"]["loss"] == [pytest.approx(v, rel=1e-14) for v in item]


def test_clip_eps_dtype_follows_the_sent_dtype(client: Any) -> None:
    body: dict[str, Any] = {"predictions": [0.0, 0.5], "labels": [1, 1], "clip_eps": "dtype"}
    out = post(client, "/v1/loss", body)  # JSON numbers are float64
    assert out["items"]["loss"][0] == pytest.approx(-math.log(2.220446049250313e-16))
    assert out["warnings"] == ["1 probabilities clipped to [eps, 1-eps] (eps = 2.22045e-16)"]
    p32 = np.array([0.0, 0.5], dtype=np.float32)
    content, headers = binary_request({"predictions": p32, "labels": [1, 1], "clip_eps": "dtype"})
    response = client.post("/v1/loss", content=content, headers=headers)
    assert response.status_code == 200, response.text
    eps32 = float(np.finfo(np.float32).eps)
    assert response.json()["items"]["loss"][0] == pytest.approx(-math.log(eps32), rel=1e-12)
    assert "(eps = 1.19209e-07)" in response.json()["warnings"][0]


@pytest.mark.parametrize(
    ("fields", "loc", "msg"),
    [
        ({"class_weights": [1.0, -0.5, 1.0]}, ["class_weights", 1], "is negative, expected >= 0"),
        ({"focal_alpha": [0.5, -1.0, 1.0]}, ["focal_alpha", 1], "greater than or equal to 0"),
        ({"focal_alpha": [0.5, 1.0]}, ["focal_alpha"], "expected 3 numbers (one per class)"),
        ({"focal_alpha": 1.5}, ["focal_alpha"], "less than or equal to 1"),
        ({"clip_eps": "float32"}, ["clip_eps"], "'dtype'"),
        ({"clip_eps": 0.5}, ["clip_eps"], "less than 0.5"),
        ({"labels": [[0.5, 0.4, 0.0], [0.0, 0.0, 1.0]]}, ["labels", 0], "target row sums to 0.9"),
        (
            {"labels": [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], "ignore_index": -100},
            ["ignore_index"],
            "not for target distributions",
        ),
    ],
)
def test_peer_parity_options_422(
    client: Any, fields: dict[str, Any], loc: list[Any], msg: str
) -> None:
    out = post(client, "/v1/score", {"predictions": P3, "labels": L3, **fields}, status=422)
    assert out["detail"][0]["loc"] == ["body", *loc]
    assert msg in out["detail"][0]["msg"]


def test_binary_focal_alpha_list_is_a_422(client: Any) -> None:
    body = {"predictions": [0.2, 0.9], "labels": [0, 1], "focal_alpha": [0.25, 0.75]}
    out = post(client, "/v1/score", body, status=422)
    assert out["detail"][0]["loc"] == ["body", "focal_alpha"]
    assert "expected a number for a binary task" in out["detail"][0]["msg"]


@pytest.mark.parametrize("binary_threshold", [None, 1])
@pytest.mark.parametrize(
    ("predictions", "eps"),
    [
        (np.array([0.0, 0.5], dtype=np.float32), float(np.finfo(np.float32).eps)),
        (np.array([0.0, 0.5], dtype=np.float16), float(np.finfo(np.float16).eps)),
        ([0.0, 0.5], float(np.finfo(np.float64).eps)),
    ],
)
def test_client_sends_clip_eps_dtype_as_its_number(
    client: Any, predictions: Any, eps: float, binary_threshold: int | None
) -> None:
    """JSON or tensor, the client sends the epsilon of the dtype it was given (the server would
    see a float32 array as float64 JSON numbers below the binary threshold)."""
    content, headers = encode(
        {"predictions": predictions, "labels": [1, 1], "clip_eps": "dtype"}, binary_threshold
    )
    response = client.post("/v1/loss", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["items"]["loss"][0] == pytest.approx(-math.log(eps), rel=1e-12)
