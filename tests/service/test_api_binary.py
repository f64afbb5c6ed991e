"""Binary tensors (API.md section 8): JSON header + raw little-endian arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

import xentcore as xc

DT = {
    np.dtype("<f2"): "FP16",
    np.dtype("<f4"): "FP32",
    np.dtype("<f8"): "FP64",
    np.dtype("<i4"): "INT32",
    np.dtype("<i8"): "INT64",
}


def binary_request(fields: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    header: dict[str, Any] = {}
    chunks = []
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            data = value.tobytes()
            header[name] = {
                "datatype": DT[value.dtype],
                "shape": list(value.shape),
                "binary_data_size": len(data),
            }
            chunks.append(data)
        else:
            header[name] = value
    text = orjson.dumps(header)
    return text + b"".join(chunks), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(text)),
    }


def post(
    client: Any, fields: dict[str, Any], path: str = "/v1/score", status: int = 200
) -> dict[str, Any]:
    content, headers = binary_request(fields)
    response = client.post(path, content=content, headers=headers)
    assert response.status_code == status, response.text
    return dict(response.json())


def test_float32_logits_and_int_labels(client: Any) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 7)).astype(np.float32)
    y = rng.integers(0, 7, 50).astype(np.int64)
    w = rng.random(50)
    out = post(client, {"labels": y, "predictions": z, "input_type": "logits", "sample_weights": w})
    ref = xc.score(z, y, input_type="logits", sample_weights=w)
    assert out["loss"]["mean"] == pytest.approx(ref.loss_mean, rel=1e-12)
    assert out["items"]["predicted"] == ref.predicted.tolist()


@pytest.mark.parametrize(
    ("task", "input_type", "dtype"),
    [
        ("binary", "logits", "<f8"),
        ("binary", "probabilities", "<f2"),
        ("multiclass", "probabilities", "<f8"),
        ("multiclass", "log_probabilities", "<f4"),
        ("multilabel", "logits", "<f4"),
    ],
)
def test_read_only_buffers_for_every_task(
    client: Any, task: str, input_type: str, dtype: str
) -> None:
    """Tensors are zero-copy views of the body: scoring must never write into them."""
    rng = np.random.default_rng(1)
    if task == "binary":
        x = rng.random(20) if input_type == "probabilities" else rng.normal(size=20)
        labels = rng.integers(0, 2, 20).astype(np.int32)
    else:
        x = rng.normal(size=(20, 4))
        if input_type != "logits":
            x = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
            x = np.log(x) if input_type == "log_probabilities" else x
        labels = (
            rng.integers(0, 4, 20)
            if task == "multiclass"
            else rng.integers(0, 2, (20, 4)).astype(np.float32)
        )
    x = x.astype(dtype)
    fields = {
        "predictions": x,
        "labels": labels,
        "task": task,
        "input_type": input_type,
        "renormalize": task == "multiclass",
        "sum_tolerance": 1e-2,
    }
    out = post(client, fields)
    ref = xc.score(
        x,
        labels,
        task=task,
        input_type=input_type,
        renormalize=task == "multiclass",
        sum_tolerance=1e-2,
    )
    assert out["loss"]["sum"] == pytest.approx(ref.loss_sum, rel=1e-12)
    cal = post(client, fields, path="/v1/calibration", status=422 if task == "multilabel" else 200)
    assert "detail" in cal or cal["nll"] == pytest.approx(ref.loss_mean, rel=1e-12)


def test_unaligned_tensor(client: Any) -> None:
    """A JSON header of odd length leaves the array unaligned: it is realigned, not misread."""
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    for pad in range(3):
        out = post(client, {"predictions": p, "labels": [1, 0], "ids": ["a", "x" * pad]})
        assert out["loss"]["sum"] == pytest.approx(-np.log(0.75) - np.log(0.5), rel=1e-15)


def test_sequences_tensor(client: Any) -> None:
    values = np.array([-0.1, -0.2, -2.0])
    data = values.tobytes()
    header = orjson.dumps(
        {
            "sequences": [
                {
                    "id": "t",
                    "token_logprobs": {
                        "datatype": "FP64",
                        "shape": [3],
                        "binary_data_size": len(data),
                    },
                },
                {"token_logprobs": [-0.05]},
            ]
        }
    )
    response = client.post(
        "/v1/sequences/score",
        content=header + data,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["sequences"][0]["min_token_index"] == 2
    assert response.json()["nll"] == pytest.approx(2.35 / 4)


def _raw(client: Any, header: dict[str, Any], data: bytes, length: int | None = None) -> Any:
    text = orjson.dumps(header)
    return client.post(
        "/v1/score",
        content=text + data,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(text) if length is None else length),
        },
    )


def test_declared_size_must_match_shape(client: Any) -> None:
    ref = {"datatype": "FP64", "shape": [2], "binary_data_size": 12}
    response = _raw(client, {"predictions": ref}, b"\0" * 12)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "predictions", "binary_data_size"]


def test_body_must_hold_the_declared_bytes(client: Any) -> None:
    ref = {"datatype": "FP64", "shape": [2], "binary_data_size": 16}
    response = _raw(client, {"predictions": ref}, b"\0" * 15)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_header_length_outside_body(client: Any) -> None:
    assert _raw(client, {"predictions": [0.5]}, b"", length=10_000).status_code == 422
    response = client.post(
        "/v1/score", content=b"{}", headers={"Inference-Header-Content-Length": "x"}
    )
    assert response.status_code == 422


def test_tensor_without_header(client: Any) -> None:
    ref = {"datatype": "FP64", "shape": [2], "binary_data_size": 16}
    response = client.post("/v1/score", json={"predictions": ref})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "predictions"]


@pytest.mark.parametrize(
    ("ref", "loc"),
    [
        ({"datatype": "BOOL", "shape": [2], "binary_data_size": 2}, ["predictions", "datatype"]),
        (
            {"datatype": "FP64", "shape": [2, 2, 2], "binary_data_size": 64},
            ["predictions", "shape"],
        ),
        ({"datatype": "FP64", "shape": [-1], "binary_data_size": 8}, ["predictions", "shape", 0]),
        ({"datatype": "FP64", "shape": [1]}, ["predictions", "binary_data_size"]),
    ],
)
def test_invalid_tensor_ref(client: Any, ref: dict[str, Any], loc: list[Any]) -> None:
    response = _raw(client, {"predictions": ref}, b"\0" * 8)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", *loc]


def test_limits_checked_from_the_declared_shape(make_client: Any) -> None:
    client = make_client(max_items=10, max_elements=100)
    huge = {"datatype": "FP32", "shape": [11], "binary_data_size": 44}
    assert _raw(client, {"predictions": huge}, b"\0" * 44).status_code == 413
    wide = {"datatype": "FP32", "shape": [2, 60], "binary_data_size": 480}
    assert _raw(client, {"predictions": wide}, b"\0" * 480).status_code == 413
