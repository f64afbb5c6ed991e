"""service.client: Client and AsyncClient, typed results, errors, binary tensors, and the inputs
people have (pandas, ``__array__`` objects, scikit-learn's ``classes_``)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import xentcore as xc
from service.client import AsyncClient, Client, XentError, encode
from service.schemas import ScoreResponse

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
Y = np.array([0, 2])


@pytest.fixture
def xent(client: Any) -> Client:
    return Client("http://testserver", http=client, binary_threshold=None)


def test_score_returns_typed_result(xent: Client) -> None:
    r = xent.score(P, Y, ids=["a", "b"])
    assert isinstance(r, ScoreResponse)
    assert r.loss is not None
    assert r.loss.mean == pytest.approx(xc.score(P, Y).loss_mean, rel=1e-15)
    assert r.items is not None and r.items.ids == ["a", "b"]


def test_every_method(xent: Client) -> None:
    assert xent.loss(P, Y).loss.n_scored == 2
    assert xent.confidence(P).confidence.mean == pytest.approx(0.75)
    assert xent.flag(P, Y, flag={"misclassified": True}).flagged.indices == [1]
    cal = xent.calibration(np.array([0.9, 0.8, 0.3, 0.6]), [1, 1, 0, 0], n_bins=5)
    assert cal.ece == pytest.approx(0.3)
    seq = xent.score_sequences([np.array([-0.1, -0.2]), {"id": "x", "token_logprobs": [-1.0]}])
    assert seq.sequences[1].id == "x" and seq.nll == pytest.approx(1.3 / 3)


def test_error_carries_detail(xent: Client) -> None:
    with pytest.raises(XentError) as caught:
        xent.score([[0.5, 0.6]], [0])
    assert caught.value.status_code == 422
    assert caught.value.detail[0]["loc"] == ["body", "predictions", 0]
    assert "predictions.0: row sums to 1.1" in str(caught.value)


def test_api_key_is_sent(make_client: Any) -> None:
    locked = make_client(api_keys="k")
    with pytest.raises(XentError) as caught:
        Client("http://testserver", http=locked).score(P)
    assert caught.value.status_code == 401
    assert Client("http://testserver", api_key="k", http=locked).score(P).n_items == 2


def test_large_arrays_go_binary(client: Any) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 10)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    content, headers = encode({"predictions": z, "labels": y}, 300)
    assert "Inference-Header-Content-Length" in headers
    assert len(content) == int(headers["Inference-Header-Content-Length"]) + z.nbytes + y.nbytes
    r = Client("http://testserver", http=client, binary_threshold=1000).score(
        z, y, input_type="logits"
    )
    assert r.loss is not None
    assert r.loss.mean == pytest.approx(xc.score(z, y, input_type="logits").loss_mean, rel=1e-12)


def test_async_client(client: Any) -> None:
    async def main() -> tuple[float | None, int]:
        transport = httpx.ASGITransport(app=client.app)
        http = httpx.AsyncClient(transport=transport, base_url="http://test")
        async with AsyncClient(http=http) as xent:
            r = await xent.score(P, Y)
            with pytest.raises(XentError) as caught:
                await xent.loss(P, None)
            assert r.loss is not None
            return r.loss.mean, caught.value.status_code

    mean, status = anyio.run(main)
    assert mean == pytest.approx(xc.score(P, Y).loss_mean) and status == 422


# --- inputs people have: pandas, __array__, scikit-learn's classes_ ---------------------------


class ArrayLike:
    """Anything with ``__array__`` (a CPU tensor, an xarray, ...), but nothing else."""

    def __init__(self, data: Any) -> None:
        self._data = np.asarray(data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray[Any, Any]:
        return self._data if dtype is None else self._data.astype(dtype)


def same_request(a: dict[str, Any], b: dict[str, Any], threshold: int | None) -> None:
    assert encode(a, threshold) == encode(b, threshold)


@pytest.mark.parametrize("threshold", [None, 1])
def test_dataframe_sends_what_to_numpy_sends(threshold: int | None) -> None:
    df = pd.DataFrame(P, columns=["cat", "dog", "eel"], index=[10, 20])
    assert not df.to_numpy().flags.c_contiguous  # a transposed block: the case to get right
    same_request(
        {"predictions": df, "labels": pd.Series(Y)},
        {"predictions": df.to_numpy(), "labels": Y},
        threshold,
    )
    same_request({"predictions": df}, {"predictions": np.ascontiguousarray(P)}, threshold)
    if threshold is not None:  # binary tensors, as for the array itself
        assert "Inference-Header-Content-Length" in encode({"predictions": df}, threshold)[1]


@pytest.mark.parametrize("threshold", [None, 1])
def test_array_likes_are_converted_with_numpy(threshold: int | None) -> None:
    w = np.array([1.0, 2.0])
    same_request(
        {
            "predictions": ArrayLike(P),
            "labels": ArrayLike(Y),
            "sample_weights": pd.Series(w),
            "class_weights": ArrayLike([1.0, 2.0, 3.0]),
            "ids": pd.Index(["a", "b"]),
            "class_names": pd.Index(["x", "y", "z"]),
        },
        {
            "predictions": P,
            "labels": Y,
            "sample_weights": w,
            "class_weights": np.array([1.0, 2.0, 3.0]),
            "ids": ["a", "b"],
            "class_names": ["x", "y", "z"],
        },
        threshold,
    )
    same_request(
        {"predictions": P[:, 0], "pos_weight": ArrayLike(2.0), "label_smoothing": np.float64(0.1)},
        {"predictions": P[:, 0], "pos_weight": 2.0, "label_smoothing": 0.1},
        threshold,
    )


@pytest.mark.parametrize("threshold", [None, 1])
def test_pandas_through_the_app(client: Any, threshold: int | None) -> None:
    xent = Client("http://testserver", http=client, binary_threshold=threshold)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 4))
    y = rng.integers(0, 4, 40)
    w = rng.random(40)
    df = pd.DataFrame(z, columns=list("abcd"), index=rng.permutation(40))  # index ignored
    ids = pd.Series([f"item-{i}" for i in range(40)])
    labels = pd.Series(y, dtype="int32")
    r = xent.score(df, labels, input_type="logits", sample_weights=pd.Series(w), ids=ids)
    ref = xc.score(z, y, input_type="logits", sample_weights=w)
    assert r.loss is not None and r.loss.mean == pytest.approx(ref.loss_mean, rel=1e-12)
    assert r.items is not None and r.items.ids == ids.tolist()
    # binary: a float32 Series of probabilities (JSON: its shortest decimals), 0/1 labels
    p = pd.Series(rng.random(40).astype(np.float32))
    b = xent.loss(p, pd.Series(y % 2))
    assert b.loss.mean == pytest.approx(xc.score(p.to_numpy(), y % 2).loss_mean, rel=1e-6)
    # big-endian and non-contiguous
    big = xent.score(z.astype(">f8")[:, ::2], y % 2, input_type="logits")
    assert big.loss is not None
    assert big.loss.mean == pytest.approx(
        xc.score(z[:, ::2], y % 2, input_type="logits").loss_mean, rel=1e-12
    )


def test_series_of_strings_as_labels_and_names(xent: Client) -> None:
    labels = pd.Series(["eel", "dog"], dtype=object)
    r = xent.score(P, labels, class_names=pd.Series(["cat", "dog", "eel"]))
    assert r.loss is not None
    assert r.loss.mean == pytest.approx(xc.score(P, [2, 1]).loss_mean, rel=1e-12)
    assert r.items is not None and r.items.predicted == ["cat", "dog"]
    r = xent.score(P, pd.Series(["eel", "dog"], dtype="string"), class_names=["cat", "dog", "eel"])
    assert r.loss is not None
    assert r.loss.mean == pytest.approx(xc.score(P, [2, 1]).loss_mean, rel=1e-12)


@pytest.mark.parametrize(
    "labels",
    [
        pd.Series(["cat", np.nan], dtype=object),
        pd.Series(["cat", None], dtype=object),
        pd.Series(["cat", pd.NA], dtype=object),
        pd.Series(["cat", None], dtype="string"),
        pd.Series([0, None], dtype="Int64"),
        pd.Series([0.0, np.nan]),
    ],
    ids=["nan", "none", "pd.NA", "string-dtype", "Int64", "float"],
)
@pytest.mark.parametrize("names", [None, ["cat", "dog", "eel"], np.array([0, 1, 2])])
def test_missing_labels_are_the_server_s_422(
    xent: Client, labels: Any, names: list[str] | None
) -> None:
    """A missing label is sent as null: the server's usual 422, at its index (no client crash,
    no silent change). Strings without class_names are the 422 that asks for them."""
    with pytest.raises(XentError) as caught:
        xent.score(P, labels, class_names=names)
    assert caught.value.status_code == 422
    loc = caught.value.detail[0]["loc"]
    assert loc in (["body", "labels", 1], ["body", "labels"]), caught.value.detail
    if names is not None or labels.dtype.kind in "if":  # otherwise: "need class_names"
        assert loc == ["body", "labels", 1]


@pytest.mark.parametrize("threshold", [None, 1])
def test_missing_predictions_are_the_server_s_422(client: Any, threshold: int | None) -> None:
    xent = Client("http://testserver", http=client, binary_threshold=threshold)
    df = pd.DataFrame(P)
    df.iloc[1, 2] = np.nan
    with pytest.raises(XentError) as caught:
        xent.score(df, Y)
    assert caught.value.status_code == 422
    assert caught.value.detail[0]["loc"] == ["body", "predictions", 1, 2]
    with pytest.raises(XentError) as caught:
        xent.score(pd.Series([0.5, pd.NA, 0.2], dtype="Float64"))
    assert caught.value.detail[0]["loc"] == ["body", "predictions", 1]


def test_sequences_from_pandas(xent: Client) -> None:
    seq = xent.score_sequences(
        [pd.Series([-0.1, -0.2]), {"id": "x", "token_logprobs": ArrayLike([-1.0])}]
    )
    assert seq.sequences[1].id == "x" and seq.nll == pytest.approx(1.3 / 3)


def test_three_d_predictions_get_the_clear_message(xent: Client) -> None:
    with pytest.raises(XentError) as caught:
        xent.score(np.zeros((2, 3, 4)))
    assert caught.value.detail == [
        {
            "loc": ["body", "predictions"],
            "msg": "expected N or N x K, got shape (2, 3, 4)",
            "type": "value_error",
        }
    ]


# --- class_names from scikit-learn's classes_ ---------------------------------------------------


def fitted(classes: list[Any]) -> tuple[Any, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A LogisticRegression fitted on tiny data whose labels are ``classes``; its X and y."""
    rng = np.random.default_rng(7)
    k = len(classes)
    y = np.array(classes)[np.arange(12 * k) % k]
    centres = rng.normal(scale=1.5, size=(k, 3))
    x = centres[np.arange(12 * k) % k] + rng.normal(size=(12 * k, 3))
    return LogisticRegression().fit(x, y), x, y


SKLEARN_CLASSES = [
    [3, 5, 7],
    ["cat", "dog", "eel"],
    [1, 2, 3],  # labels 1 and 2 are also valid indices: the silent trap
    [3, 5],
    ["no", "yes"],
    [False, True],
]


@pytest.mark.parametrize("classes", SKLEARN_CLASSES, ids=str)
@pytest.mark.parametrize("labels_as", ["numpy", "series", "list"])
def test_sklearn_classes_end_to_end(xent: Client, classes: list[Any], labels_as: str) -> None:
    model, x, y = fitted(classes)
    proba = model.predict_proba(x)
    labels = {"numpy": y, "series": pd.Series(y), "list": y.tolist()}[labels_as]
    expected = log_loss(y, proba, labels=model.classes_)
    r = xent.score(proba, labels, class_names=model.classes_)
    assert r.loss is not None and r.loss.mean == pytest.approx(expected, rel=1e-12)
    assert r.accuracy == pytest.approx(model.score(x, y), rel=1e-12)
    assert r.items is not None
    assert r.items.predicted == [str(c) for c in model.predict(x)]
    # a subset whose labels are all valid indices too still scores by value
    some = np.isin(y, model.classes_[:2])
    sub = xent.loss(proba[some], y[some], class_names=model.classes_)
    assert sub.loss.mean == pytest.approx(
        log_loss(y[some], proba[some], labels=model.classes_), rel=1e-12
    )
    if len(classes) == 2:  # binary: p of the positive class, names negative then positive
        b = xent.score(proba[:, 1], labels, class_names=model.classes_)
        assert b.task == "binary"
        assert b.loss is not None and b.loss.mean == pytest.approx(expected, rel=1e-12)


def test_sklearn_classes_through_the_async_client(client: Any) -> None:
    model, x, y = fitted([3, 5, 7])
    proba = pd.DataFrame(model.predict_proba(x), columns=model.classes_)

    async def main() -> float | None:
        transport = httpx.ASGITransport(app=client.app)
        http = httpx.AsyncClient(transport=transport, base_url="http://test")
        async with AsyncClient(http=http, binary_threshold=1) as xent:
            r = await xent.loss(proba, pd.Series(y), class_names=model.classes_)
            return r.loss.mean

    assert anyio.run(main) == pytest.approx(log_loss(y, proba, labels=model.classes_), rel=1e-12)


def test_what_is_sent_for_non_string_class_names() -> None:
    """Names as ``str(c)``; integer, boolean and whole-float labels as the names of the classes
    they equal (one equal to none: ``str(v)``, the server's 422); strings, soft targets, 2-D
    targets and missing values unchanged (missing: null)."""

    def sent(labels: Any, names: Any) -> tuple[Any, Any]:
        body = orjson.loads(encode({"labels": labels, "class_names": names}, None)[0])
        return body.get("labels"), body["class_names"]

    ints = np.array([3, 5, 7])
    assert sent(np.array([7, 3, 3]), ints) == (["7", "3", "3"], ["3", "5", "7"])
    assert sent(np.array([7.0, 5.0]), ints) == (["7", "5"], ["3", "5", "7"])
    assert sent(pd.Series([7, 4], dtype="int8"), ints)[0] == ["7", "4"]
    assert sent([5, "7", None], ints)[0] == ["5", "7", None]
    assert sent([5, "7"], ints)[0] == ["5", "7"]
    assert sent(("7", "3"), ints)[0] == ["7", "3"]
    assert sent(np.array([True, False]), np.array([False, True]))[0] == ["True", "False"]
    assert sent(np.array([1, 0]), np.array([False, True]))[0] == ["True", "False"]
    assert sent(np.array([0.2, 1.0]), np.array([0, 1]))[0] == [0.2, 1.0]  # soft targets
    assert sent(np.array([1.0, np.nan]), ints)[0] == [1.0, None]  # NaN: null
    assert sent(np.eye(3)[:2], ints)[0] == np.eye(3)[:2].tolist()  # 2-D targets
    assert sent(["cat", "eel"], np.array(["cat", "dog", "eel"])) == (
        ["cat", "eel"],
        ["cat", "dog", "eel"],
    )
    # string class names: integer labels stay indices (API.md section 1)
    assert sent(np.array([2, 0]), ["cat", "dog", "eel"])[0] == [2, 0]
    assert sent(None, np.array([0.5, 1.5])) == (None, ["0.5", "1.5"])


def test_unknown_label_value_is_the_server_s_422(xent: Client) -> None:
    model, x, y = fitted([3, 5, 7])
    y = y.copy()
    y[4] = 4
    with pytest.raises(XentError) as caught:
        xent.score(model.predict_proba(x), y, class_names=model.classes_)
    assert caught.value.detail[0]["loc"] == ["body", "labels", 4]
    assert caught.value.detail[0]["msg"] == "'4' is not one of class_names"
