"""``xentcore.files``: chunked scoring of .npy / .npz files equals scoring in memory."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from tests.support.arrays import K, N, assert_json_matches
from tests.support.arrays import labels as _labels
from tests.support.arrays import logits as _logits
from tests.support.arrays import probabilities as _probabilities
from xentcore.files import (
    MAX_JSON_INDICES,
    FileError,
    OfflineResult,
    RowSource,
    default_chunk_rows,
    open_rows,
    score_file,
    write_indices,
)


def score_paths(
    predictions: str,
    labels: str | None = None,
    options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> OfflineResult:
    """open_rows + score_file + close, as ``xent score`` does (labels default to 'labels')."""
    sources = [open_rows(predictions)]
    if labels is not None:
        sources.append(open_rows(labels, default_member="labels"))
    try:
        return score_file(*sources, options=options, **kwargs)
    finally:
        for source in sources:
            source.close()


def assert_same(result: OfflineResult, ref: xc.ScoreResult) -> None:
    """The chunked answer equals the in-memory one (sums to float rounding, the rest exactly)."""
    out = result.as_json()
    assert_json_matches(out, ref)
    assert result.input_type == ref.input_type
    assert result.confidence_method == ref.confidence_method
    np.testing.assert_array_equal(result.flagged_indices, ref.flagged_indices)
    assert out["warnings"] == ref.warnings


@pytest.mark.parametrize("input_type", ["logits", "probabilities"])
@pytest.mark.parametrize("with_labels", [True, False])
def test_many_chunks_equal_in_memory(tmp_path: Path, input_type: str, with_labels: bool) -> None:
    x = _logits() if input_type == "logits" else _probabilities()
    y = _labels()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    options: dict[str, Any] = {"input_type": input_type, "flag": {"min_confidence": 0.6}}
    items = tmp_path / "items.npz"
    done: list[int] = []
    result = score_paths(
        str(tmp_path / "x.npy"),
        str(tmp_path / "y.npy") if with_labels else None,
        options,
        chunk_rows=100,
        per_item=items,
        progress=done.append,
    )
    ref = xc.score(x, y if with_labels else None, **options)
    assert_same(result, ref)
    assert ref.flagged_indices.size > 0  # the flags cross chunk boundaries
    assert done == [*range(100, N, 100), N]  # progress after every chunk
    with np.load(items) as z:
        np.testing.assert_array_equal(z["confidence"], ref.confidence)
        np.testing.assert_array_equal(z["predicted"], ref.predicted_index)
        np.testing.assert_array_equal(z["flagged"], ref.flagged)
        if with_labels:
            assert ref.item_loss is not None
            np.testing.assert_array_equal(z["loss"], ref.item_loss)
        else:
            assert "loss" not in z.files
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_ignored_labels_and_misclassified_flag(tmp_path: Path) -> None:
    x, y = _logits(), _labels()
    y[::7] = -100
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    options: dict[str, Any] = {
        "input_type": "logits",
        "ignore_index": -100,
        "confidence": "true_class",
        "flag": {"min_confidence": 0.5, "misclassified": True},
    }
    result = score_paths(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), options, chunk_rows=64)
    assert_same(result, xc.score(x, y, **options))


def test_multilabel_chunks(tmp_path: Path) -> None:
    """Multilabel predicted columns ((N, K) bool) cross chunk boundaries; a short last chunk."""
    rng = np.random.default_rng(5)
    p, t = rng.random((301, 3)), rng.integers(0, 2, (301, 3))
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "t.npy", t)
    options: dict[str, Any] = {"task": "multilabel"}
    items = tmp_path / "items.npz"
    result = score_paths(
        str(tmp_path / "p.npy"), str(tmp_path / "t.npy"), options, chunk_rows=100, per_item=items
    )
    ref = xc.score(p, t, **options)
    assert_same(result, ref)
    assert result.task == "multilabel"
    with np.load(items) as z:
        assert z["predicted"].dtype == np.bool_
        np.testing.assert_array_equal(z["predicted"], ref.predicted_index)
        np.testing.assert_array_equal(z["loss"], ref.item_loss)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_members(tmp_path: Path, compressed: bool) -> None:
    x, y = _logits(), _labels()
    path = tmp_path / "eval.npz"
    (np.savez_compressed if compressed else np.savez)(path, logits=x, y=y)
    options: dict[str, Any] = {"input_type": "logits"}
    result = score_paths(f"{path}:logits", f"{path}:y", options, chunk_rows=99)
    assert_same(result, xc.score(x, y, **options))


def test_npz_default_member_names(tmp_path: Path) -> None:
    x, y = _probabilities(), _labels()
    path = tmp_path / "eval.npz"
    np.savez(path, predictions=x, labels=y)
    assert_same(score_paths(str(path), str(path), chunk_rows=500), xc.score(x, y))
    np.savez(tmp_path / "one.npz", anything=x)
    source = open_rows(str(tmp_path / "one.npz"), default_member="labels")  # its only array
    assert source.name.endswith("one.npz:anything") and source.shape == x.shape
    source.close()


def test_binary_and_fortran_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    p, t = rng.random(1_000), rng.integers(0, 2, 1_000)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "t.npy", t)
    assert_same(score_paths(str(tmp_path / "p.npy"), str(tmp_path / "t.npy")), xc.score(p, t))
    x, y = np.asfortranarray(_probabilities()), _labels()
    np.savez_compressed(tmp_path / "f.npz", predictions=x, labels=y)
    f = str(tmp_path / "f.npz")
    assert_same(score_paths(f, f, chunk_rows=50), xc.score(x, y))
    np.savez(tmp_path / "g.npz", predictions=x, labels=y)  # stored: mapped in Fortran order
    g = str(tmp_path / "g.npz")
    assert_same(score_paths(g, g, chunk_rows=50), xc.score(x, y))


def test_compressed_members_are_read_in_order(tmp_path: Path) -> None:
    x = _probabilities()
    np.savez_compressed(tmp_path / "c.npz", predictions=x)
    source = open_rows(str(tmp_path / "c.npz"))
    try:
        assert source.array is None and source.n_rows == N
        np.testing.assert_array_equal(source.read(0, 10), x[:10])
        with pytest.raises(FileError, match="only be read in order"):
            source.read(20, 30)
        np.testing.assert_array_equal(source.read(10, N), x[10:])
        with pytest.raises(FileError, match=f"ends before row {N + 1}"):
            source.read(N, N + 1)
    finally:
        source.close()
        source.close()  # idempotent


def test_json_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _probabilities())
    np.save(tmp_path / "y.npy", _labels())
    out = score_paths(str(tmp_path / "x.npy"), str(tmp_path / "y.npy")).as_json()
    assert list(out) == [
        "task",
        "n_items",
        "n_classes",
        "loss",
        "accuracy",
        "confidence",
        "flagged",
        "warnings",
    ]
    assert set(out["loss"]) == {"mean", "sum", "n_scored"}
    assert set(out["confidence"]) == {"method", "mean"}
    assert set(out["flagged"]) == {"count", "rate", "indices", "indices_truncated"}
    assert out["flagged"]["rate"] == out["flagged"]["count"] / N


def test_clip_warnings_add_up_across_chunks(tmp_path: Path) -> None:
    p = np.zeros((300, 3))
    p[:, 0] = 1.0
    y = np.zeros(300, dtype=np.int64)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", y)
    ref = xc.score(p, y)
    result = score_paths(str(tmp_path / "p.npy"), str(tmp_path / "y.npy"), chunk_rows=7)
    assert result.warnings == ref.warnings and ref.warnings


def test_no_weight_is_decided_on_the_whole_file(tmp_path: Path) -> None:
    """Every label ignored: no chunk carries weight, and the file says so once."""
    np.save(tmp_path / "p.npy", _probabilities()[:50])
    np.save(tmp_path / "y.npy", np.full(50, -1))
    options: dict[str, Any] = {"ignore_index": -1}
    result = score_paths(str(tmp_path / "p.npy"), str(tmp_path / "y.npy"), options, chunk_rows=7)
    ref = xc.score(_probabilities()[:50], np.full(50, -1), **options)
    assert result.loss_mean is None and result.accuracy is None
    assert result.warnings == ref.warnings and len(ref.warnings) == 1


def test_nan_at_row_1234_names_the_global_row(tmp_path: Path) -> None:
    x = _logits()
    x[1234, 3] = np.nan
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(xc.InputError) as err:
        score_paths(str(tmp_path / "bad.npy"), options={"input_type": "logits"}, chunk_rows=100)
    assert err.value.location == ("predictions", 1234, 3)
    assert str(err.value) == "predictions[1234][3]: nan is not a finite number"


def test_bad_label_row_is_global(tmp_path: Path) -> None:
    y = _labels()
    y[2000] = K
    np.save(tmp_path / "x.npy", _probabilities())
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(xc.InputError) as err:
        score_paths(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), chunk_rows=300)
    assert err.value.location[:2] == ("labels", 2000)
    assert f"labels[2000]: class {K} is outside [0, {K})" in str(err.value)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        ("text", "cannot read it as an array"),
        ("rows", "has 10 rows"),
        ("member", "no array named 'nope'"),
        ("ambiguous", "name one as"),
        ("object", "object arrays are not read"),
        ("object.npy", "object arrays are not read"),
        ("scalar", "expected an array of rows"),
    ],
)
def test_bad_files_raise_file_error(tmp_path: Path, setup: str, message: str) -> None:
    x = tmp_path / "x.npy"
    np.save(x, _probabilities())
    args = [str(x)]
    if setup == "missing":
        args = [str(tmp_path / "absent.npy")]
    elif setup == "text":
        (tmp_path / "t.npy").write_text("hello")
        args = [str(tmp_path / "t.npy")]
    elif setup == "rows":
        np.save(tmp_path / "y.npy", np.zeros(10, dtype=np.int64))
        args.append(str(tmp_path / "y.npy"))
    elif setup == "member":
        np.savez(tmp_path / "e.npz", predictions=_probabilities())
        args = [f"{tmp_path / 'e.npz'}:nope"]
    elif setup == "ambiguous":
        np.savez(tmp_path / "e.npz", a=_probabilities(), b=_labels())
        args = [str(tmp_path / "e.npz")]
    elif setup == "object":
        np.savez_compressed(tmp_path / "o.npz", predictions=np.array([[1.0], [None]], dtype=object))
        args = [str(tmp_path / "o.npz")]
    elif setup == "object.npy":
        np.save(tmp_path / "o.npy", np.array([[1.0], [None]], dtype=object), allow_pickle=True)
        args = [str(tmp_path / "o.npy")]
    else:
        np.save(tmp_path / "s.npy", np.float64(1.0))
        args = [str(tmp_path / "s.npy")]
    with pytest.raises(FileError, match=message):
        score_paths(args[0], args[1] if len(args) > 1 else None)


def test_an_empty_file_is_the_cores_empty_batch(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(xc.InputError, match="empty batch"):
        score_paths(str(tmp_path / "e.npy"))


def test_per_item_options_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _probabilities())
    with pytest.raises(ValueError, match="sample_weights"):
        score_paths(str(tmp_path / "x.npy"), options={"sample_weights": np.ones(N)})


def test_a_failed_run_leaves_no_per_item_file(tmp_path: Path) -> None:
    x = _logits()
    x[2000, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(xc.InputError):
        score_paths(
            str(tmp_path / "x.npy"),
            options={"input_type": "logits"},
            chunk_rows=100,
            per_item=tmp_path / "items.npz",
        )
    assert [f.name for f in tmp_path.iterdir()] == ["x.npy"]


def _many_flags(tmp_path: Path) -> tuple[OfflineResult, np.ndarray[Any, Any]]:
    """A file whose every row is flagged (uniform rows: confidence 1/K < 0.5)."""
    p = np.full((N, K), 1.0 / K)
    np.save(tmp_path / "p.npy", p)
    return score_paths(str(tmp_path / "p.npy"), chunk_rows=100), xc.score(p).flagged_indices


def test_json_lists_at_most_max_indices(tmp_path: Path) -> None:
    result, flagged = _many_flags(tmp_path)
    assert flagged.size == N > MAX_JSON_INDICES
    out = result.as_json()["flagged"]
    assert out["count"] == N and out["rate"] == 1.0
    assert out["indices"] == list(range(MAX_JSON_INDICES))
    assert out["indices_truncated"] is True
    few = result.as_json(max_indices=3)["flagged"]
    assert (few["indices"], few["indices_truncated"]) == ([0, 1, 2], True)
    for every in (result.as_json(max_indices=N), result.as_json(max_indices=None)):
        assert (every["flagged"]["indices"], every["flagged"]["indices_truncated"]) == (
            flagged.tolist(),
            False,
        )
    assert result.as_json(max_indices=0)["flagged"]["indices"] == []


@pytest.mark.parametrize("name", ["flagged.txt", "flagged.npy"])
def test_write_indices(tmp_path: Path, name: str) -> None:
    indices = np.flatnonzero(np.random.default_rng(4).random(5_000) < 0.3)
    write_indices(tmp_path / name, indices)
    if name.endswith(".npy"):
        written = np.load(tmp_path / name)
        assert written.dtype == np.int64
    else:
        written = np.array([int(line) for line in (tmp_path / name).read_text().splitlines()])
    np.testing.assert_array_equal(written, indices)
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_write_no_indices_and_write_failures(tmp_path: Path) -> None:
    write_indices(tmp_path / "f.txt", np.array([], dtype=np.int64))
    assert (tmp_path / "f.txt").read_text() == ""
    with pytest.raises(FileError, match="cannot write"):
        write_indices(tmp_path / "no" / "f.txt", np.arange(3))
    assert not (tmp_path / "no").exists()


def test_default_chunk_rows() -> None:
    assert default_chunk_rows((10**9, 1 << 10)) == 1 << 12
    assert default_chunk_rows((5,)) == 1 << 22
    assert default_chunk_rows((5, 1 << 23)) == 1  # at least one row


def test_stored_member_with_extra_field_is_mapped(tmp_path: Path) -> None:
    """The local header's extra field (absent from the central directory) is skipped."""
    x = _probabilities()[:20]
    path = tmp_path / "e.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("pad.npy", np.zeros(3).tobytes())  # not an array: never opened
        info = zipfile.ZipInfo("predictions.npy")
        info.extra = b"\xfe\xca\x04\x00abcd"  # an unknown extra block of 4 bytes
        with zf.open(info, "w") as member:
            np.save(member, x)
    source = open_rows(f"{path}:predictions")
    try:
        assert isinstance(source, RowSource) and source.array is not None
        np.testing.assert_array_equal(source.read(0, 20), x)
    finally:
        source.close()
