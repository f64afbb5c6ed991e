"""Every kind of invalid input: status 422, the exact ``loc``, short bodies, no echo."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

import service.convert
import xentcore as xc
from service.errors import MAX_ERRORS
from xentcore.validate import LOGITS_HINT, MULTILABEL_HINT

P3 = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]


def fill(template: str, *values: str) -> str:
    """``template`` with each ``@`` replaced by the next value (JSON braces stay readable)."""
    for value in values:
        template = template.replace("@", value, 1)
    return template


def detail(client: Any, content: bytes | str, path: str = "/v1/score") -> list[dict[str, Any]]:
    response = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert len(response.content) < 4096
    body = response.json()
    assert set(body) == {"detail"}
    for item in body["detail"]:
        assert set(item) == {"loc", "msg", "type"}  # no input, ctx or url
        assert item["loc"][0] == "body"
    return list(body["detail"])


@pytest.mark.parametrize(
    ("literal", "kind"),
    [
        ("NaN", "finite_number"),
        ("Infinity", "finite_number"),
        ("-Infinity", "finite_number"),
        ("1e400", "finite_number"),
        ('"0.2"', "float_type"),
        ("true", "float_type"),
        ("null", "float_type"),
        ("[0.2]", "float_type"),
    ],
)
def test_bad_number_in_predictions(client: Any, literal: str, kind: str) -> None:
    body = fill('{"predictions": [[0.7, 0.2, 0.1], [0.1, @, 0.1]], "labels": [0, 2]}', literal)
    assert detail(client, body) == [
        {"loc": ["body", "predictions", 1, 1], "msg": detail(client, body)[0]["msg"], "type": kind}
    ]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400", '"1"', "true"])
def test_bad_number_in_binary_predictions(client: Any, literal: str) -> None:
    body = fill('{"predictions": [0.5, @], "labels": [0, 1]}', literal)
    assert detail(client, body)[0]["loc"] == ["body", "predictions", 1]


@pytest.mark.parametrize("label", ["true", "false"])
def test_boolean_label(client: Any, label: str) -> None:
    body = fill('{"predictions": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], "labels": [0, @]}', label)
    assert detail(client, body)[0]["loc"] == ["body", "labels", 1]


def test_string_label_without_class_names(client: Any) -> None:
    body = '{"predictions": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], "labels": ["1", "2"]}'
    assert detail(client, body)[0]["loc"] == ["body", "labels"]


def test_mixed_string_and_number_labels(client: Any) -> None:
    body = (
        '{"predictions": [[0.7, 0.3], [0.2, 0.8]], "labels": ["a", 1], "class_names": ["a", "b"]}'
    )
    assert detail(client, body)[0]["loc"] == ["body", "labels", 1]


@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        ("sample_weights", "[1, true]", ["sample_weights", 1]),
        ("sample_weights", '[1, "2"]', ["sample_weights", 1]),
        ("class_weights", "[1, NaN, 1]", ["class_weights", 1]),
        ("label_smoothing", '"0.1"', ["label_smoothing"]),
        ("label_smoothing", "true", ["label_smoothing"]),
        ("label_smoothing", "1.5", ["label_smoothing"]),
        ("focal_gamma", "-1", ["focal_gamma"]),
        ("ignore_index", "1.5", ["ignore_index"]),
        ("ignore_index", "true", ["ignore_index"]),
        ("ignore_index", "100000000000000000000000", ["ignore_index"]),
        ("renormalize", "1", ["renormalize"]),
        ("per_item", '"yes"', ["per_item"]),
        ("task", '"regression"', ["task"]),
        ("input_type", '"probs"', ["input_type"]),
        ("confidence", '"max"', ["confidence"]),
        ("stream", '"has space"', ["stream"]),
        ("stream", '"' + "x" * 129 + '"', ["stream"]),
        ("ids", '["a", 2]', ["ids", 1]),
        ("ids", "[1, true]", ["ids", 1]),
        ("ids", "[1, 1e30]", ["ids", 1]),
        ("class_names", '["a", 1, "c"]', ["class_names", 1]),
        ("flag", '{"min_confidence": "0.5"}', ["flag", "min_confidence"]),
        ("flag", '{"misclassified": 1}', ["flag", "misclassified"]),
        ("flag", '{"bogus": 1}', ["flag", "bogus"]),
        ("pos_weight", "[1, 2]", ["pos_weight"]),
        ("clip_eps", "0", ["clip_eps"]),
        ("unknown_field", "1", ["unknown_field"]),
    ],
)
def test_invalid_option(client: Any, field: str, value: str, loc: list[Any]) -> None:
    body = fill(
        '{"predictions": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], "labels": [0, 2], "@": @}',
        field,
        value,
    )
    assert detail(client, body)[0]["loc"] == ["body", *loc]


@pytest.mark.parametrize(
    ("predictions", "labels", "loc", "msg"),
    [
        ("[[0.5, 0.5], [1.0]]", "[0, 1]", ["predictions", 1], "ragged"),
        ("[[0.5, 0.5], 1.0]", "[0, 1]", ["predictions", 1], "valid list"),
        ("[[0.5, 0.4], [0.5, 0.5]]", "[0, 1]", ["predictions", 0], "row sums to 0.9"),
        ("[[0.5, 0.5], [0.5, 0.5]]", "[0, 1, 1]", ["labels"], "expected 2 labels"),
        ("[[0.5, 0.5], [0.5, 0.5]]", "[0, 2]", ["labels", 1], "outside [0, 2)"),
        ("[]", "null", ["predictions"], "empty batch"),
        ("[[1.0], [1.0]]", "null", ["predictions"], "K >= 2"),
        ("[0.5, 1.5]", "null", ["predictions", 1], "outside [0, 1]"),
        ('"abc"', "null", ["predictions"], "valid list"),
        ("[[[0.5]]]", "null", ["predictions"], "expected N or N x K, got shape (1, 1, 1)"),
    ],
)
def test_invalid_batch(
    client: Any, predictions: str, labels: str, loc: list[Any], msg: str
) -> None:
    body = fill('{"predictions": @, "labels": @}', predictions, labels)
    got = detail(client, body)
    assert got[0]["loc"] == ["body", *loc]
    assert msg in got[0]["msg"]


def test_positive_log_probability(client: Any) -> None:
    body = '{"predictions": [[-0.1, 0.2]], "input_type": "log_probabilities"}'
    assert detail(client, body)[0]["loc"] == ["body", "predictions", 0, 1]


def test_ids_length_mismatch(client: Any) -> None:
    body = '{"predictions": [0.5, 0.6], "ids": ["a"]}'
    assert detail(client, body) == [
        {
            "loc": ["body", "ids"],
            "type": "value_error",
            "msg": "expected 2 ids (one per prediction), got 1",
        }
    ]


def test_missing_predictions(client: Any) -> None:
    assert detail(client, '{"labels": [1]}') == [
        {"loc": ["body", "predictions"], "msg": "Field required", "type": "missing"}
    ]


@pytest.mark.parametrize(
    "body", ["", "{", '{"predictions": [1, 2]', "[1, 2]", '"x"', "\xff", "[" * 3000 + "]" * 3000]
)
def test_not_a_json_object(client: Any, body: str) -> None:
    got = detail(client, body.encode("latin-1"))
    assert got[0]["loc"] == ["body"]
    assert got[0]["type"] in ("json_invalid", "model_type")


def test_error_bodies_never_echo_input(client: Any) -> None:
    secret = "SECRET" * 2000
    cases = [
        fill('{"predictions": [0.5], "@": 1}', secret),
        fill('{"predictions": [0.5], "stream": "@"}', secret),
        fill('{"predictions": [0.5], "ids": ["@"]}', secret),
        fill('{"predictions": [[0.5, 0.5]], "labels": ["@"], "class_names": ["a", "b"]}', secret),
        fill('{"predictions": ["@"]}', secret),
        fill('{"predictions": [0.5], "task": "@"}', secret),
    ]
    for body in cases:
        response = client.post(
            "/v1/score", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert secret[:200] not in response.text
        assert len(response.content) < 1024


def test_many_errors_are_capped(client: Any) -> None:
    extra = ", ".join(f'"x{i}": 1' for i in range(500))
    got = detail(client, fill('{"predictions": [0.5], @}', extra))
    assert len(got) == MAX_ERRORS


def test_a_million_bad_values_give_one_error(client: Any) -> None:
    body = fill('{"predictions": [@]}', ", ".join(['"a"'] * 100_000))
    assert len(detail(client, body)) == 1


def test_unexpected_error_is_a_short_500(make_client: Any, monkeypatch: Any) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail /etc/passwd")

    monkeypatch.setattr(service.convert, "score_batch", explode)
    # the stack's 500 (the fast lane hands an unexpected error to the stack: test_fast_lane.py)
    client = make_client(raise_server_exceptions=False, fast_lane=False)
    response = client.post("/v1/score", json={"predictions": P3})
    assert response.status_code == 500
    body = response.json()
    assert body == {"detail": "internal error", "request_id": response.headers["x-request-id"]}
    assert "passwd" not in response.text and "Traceback" not in response.text


def test_unknown_route_and_method(client: Any) -> None:
    assert client.get("/v1/nothing").status_code == 404
    response = client.get("/v1/score")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


# --- predictions of another rank, and hints: the same message as xentcore's -----------------


def core_message(predictions: Any, **options: Any) -> tuple[list[Any], str]:
    """xentcore's location (with "body" in front) and message for the same input."""
    with pytest.raises(xc.InputError) as info:
        xc.score(predictions, **options)
    return ["body", *info.value.location], info.value.reason


def tensor_detail(client: Any, header: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
    text = orjson.dumps(header)
    response = client.post(
        "/v1/score",
        content=text + data,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(text)),
        },
    )
    assert response.status_code == 422, response.text
    return list(response.json()["detail"])


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 1, 1), (2, 1, 2, 2)])
def test_predictions_of_rank_3_or_more(client: Any, shape: tuple[int, ...]) -> None:
    x = np.full(shape, 0.5)
    clear = {
        "loc": ["body", "predictions"],
        "msg": f"expected N or N x K, got shape {shape}",
        "type": "value_error",
    }
    assert core_message(x) == (clear["loc"], clear["msg"])
    # JSON: pydantic's "valid number" deep inside becomes the clear message
    assert detail(client, orjson.dumps({"predictions": x.tolist()})) == [clear]
    # a binary tensor of that shape (the schema allows 1 or 2 dimensions): at its shape
    ref = {"datatype": "FP64", "shape": list(shape), "binary_data_size": x.nbytes}
    at_shape = {**clear, "loc": ["body", "predictions", "shape"]}
    assert tensor_detail(client, {"predictions": ref}, x.tobytes()) == [at_shape]


def test_predictions_of_rank_0(client: Any) -> None:
    clear = {
        "loc": ["body", "predictions"],
        "msg": "expected N or N x K, got shape ()",
        "type": "value_error",
    }
    assert core_message(0.5) == (clear["loc"], clear["msg"])
    assert detail(client, '{"predictions": 0.5}') == [clear]
    ref = {"datatype": "FP64", "shape": [], "binary_data_size": 8}
    at_shape = {**clear, "loc": ["body", "predictions", "shape"]}
    assert tensor_detail(client, {"predictions": ref}, bytes(8)) == [at_shape]


def test_rank_message_keeps_the_other_errors(client: Any) -> None:
    got = detail(client, '{"predictions": [[[0.5, 0.5]]], "task": "regression", "x": 1}')
    assert [item["loc"] for item in got] == [
        ["body", "predictions"],
        ["body", "task"],
        ["body", "x"],
    ]
    assert got[0]["msg"] == "expected N or N x K, got shape (1, 1, 2)"


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ('{"predictions": "abc"}', ["predictions"], "Input should be a valid list"),
        (
            '{"predictions": [[0.5, [0.5]]]}',
            ["predictions", 0, 1],
            "Input should be a valid number",
        ),
        (
            '{"predictions": {"datatype": "FP64", "shape": [2, "x"], "binary_data_size": 32}}',
            ["predictions", "shape", 1],
            "Input should be a valid integer",
        ),
    ],
)
def test_other_structure_errors_stay_as_they_were(
    client: Any, body: str, loc: list[Any], msg: str
) -> None:
    got = detail(client, body)
    assert got[0]["loc"] == ["body", *loc]
    assert got[0]["msg"] == msg


def test_wrong_rank_through_every_route(client: Any) -> None:
    body = '{"predictions": [[[0.5, 0.5]]], "labels": [0]}'
    for path in ("/v1/score", "/v1/loss", "/v1/confidence", "/v1/flag", "/v1/calibration"):
        got = detail(client, body, path)
        assert got[0]["msg"] == "expected N or N x K, got shape (1, 1, 2)", path


LOGITS = [[2.1, -0.7, 0.3], [-1.2, 0.4, 3.3], [0.5, 1.9, -2.4]]


@pytest.mark.parametrize(
    ("fields", "hint"),
    [
        ({"predictions": LOGITS}, LOGITS_HINT),
        ({"predictions": [row[0] for row in LOGITS] + [-0.3]}, LOGITS_HINT),
        ({"predictions": LOGITS, "input_type": "log_probabilities"}, LOGITS_HINT),
        ({"predictions": [[0.9, 0.8, 0.1], [0.3, 0.2, 0.9]]}, MULTILABEL_HINT),
    ],
)
def test_hints_over_http(client: Any, fields: dict[str, Any], hint: str) -> None:
    got = detail(client, orjson.dumps(fields))
    loc, msg = core_message(**fields)
    assert got == [{"loc": loc, "msg": msg, "type": "value_error"}]
    assert msg.endswith(hint)
    # the same through binary tensors
    x = np.asarray(fields["predictions"], dtype=np.float64)
    ref = {"datatype": "FP64", "shape": list(x.shape), "binary_data_size": x.nbytes}
    assert tensor_detail(client, {**fields, "predictions": ref}, x.tobytes()) == got


def test_no_hint_over_http_for_rounding(client: Any) -> None:
    got = detail(client, '{"predictions": [0.2, 1.0000001, -1e-9]}')
    assert got == [
        {
            "loc": ["body", "predictions", 1],
            "msg": "probability 1.0000001 is outside [0, 1]",
            "type": "value_error",
        }
    ]
    got = detail(client, '{"predictions": [[0.5, 0.5], [0.47, 0.4]], "task": "multiclass"}')
    assert got[0]["msg"] == "row sums to 0.87, expected 1 ± 0.0001"
