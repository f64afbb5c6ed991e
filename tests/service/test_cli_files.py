"""``xent score`` on tables (Parquet, Arrow IPC, CSV, JSON Lines; files, directories, URIs):
every reader and every option flag against in-memory ``xentcore.score`` on the same arrays,
``--calibration`` against ``xentcore.calibration``, the atomic ``--out`` Parquet file, every
error path (exit status 2, the file, the global row and the column in the message, nothing
written), and the memory bound of streaming.

The library under the command (readers, column selection, pieces, merging) is tested in
tests/xentcore/test_tables.py; the .npy / .npz path in test_cli_score.py.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import xentcore as xc
from service.cli import build_parser, main
from tests.support.arrays import K, N, assert_json_matches
from tests.support.arrays import labels as _labels
from tests.support.arrays import logits as _logits
from tests.support.arrays import probabilities as _probabilities
from xentcore.files import CHUNK_ELEMENTS

NAMES = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu"]
assert len(NAMES) == K


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["score", *map(str, argv), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out: dict[str, Any] = json.loads(captured.out)
    return out


def fails(capsys: pytest.CaptureFixture[str], *argv: Any) -> str:
    """Run ``xent score``; it must exit 2 with one line on stderr and no traceback."""
    assert main(["score", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "allow_pickle" not in err
    assert err.startswith("xent score: ") and err.count("\n") == 1, err
    return err.strip()


def fixed_list(x: np.ndarray[Any, Any]) -> Any:
    """An N x K array as a fixed-size-list column."""
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


def spread(x: np.ndarray[Any, Any], prefix: str = "p_") -> dict[str, np.ndarray[Any, Any]]:
    """An N x K array as K columns p_0 ... p_{K-1}."""
    return {f"{prefix}{j}": x[:, j] for j in range(x.shape[1])}


def write(path: Path, table: Any) -> Path:
    """Write ``table`` in the format of ``path``'s extension (several row groups / batches)."""
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(table, path, row_group_size=700)
    elif name.endswith((".feather", ".arrow")):
        feather.write_feather(table, path, chunksize=600)
    elif name.endswith((".csv", ".csv.gz")):
        with (
            pa.CompressedOutputStream(path, "gzip")
            if name.endswith(".gz")
            else path.open("wb") as out
        ):
            pa_csv.write_csv(table, out)
    elif name.endswith(".jsonl"):
        with path.open("w") as out:
            for row in table.to_pylist():
                out.write(json.dumps(row) + "\n")
    else:
        raise AssertionError(name)
    return path


# -- readers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eval.parquet", "eval.feather", "eval.jsonl"])
def test_a_list_column_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    x, y = _logits().astype(np.float64), _labels()
    column = fixed_list(x) if not name.endswith(".jsonl") else pa.array(x.tolist())
    path = write(tmp_path / name, pa.table({"logits": column, "y": y}))
    argv = [path, "--predictions-col", "logits", "--labels-col", "y", "--input-type", "logits"]
    out = run_json(capsys, *argv, "--chunk-rows", "333", "--flag-misclassified")
    ref = xc.score(x, y, input_type="logits", flag={"min_confidence": 0.5, "misclassified": True})
    assert_json_matches(out, ref)
    assert ref.flagged_indices.size > 0


@pytest.mark.parametrize("name", ["eval.csv", "eval.csv.gz", "eval.parquet"])
def test_several_columns_by_glob(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """``--predictions-cols 'p_*'`` takes the matching columns in the file's order."""
    p, y = _probabilities(), _labels()
    path = write(tmp_path / name, pa.table({"id": np.arange(N), **spread(p), "label": y}))
    out = run_json(capsys, path, "--predictions-cols", "p_*", "--labels-col", "label")
    assert_json_matches(out, xc.score(p, y))


def test_a_comma_list_takes_the_columns_in_its_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p, y = _probabilities(), _labels()
    order = [3, 0, 6, 1, 5, 2, 4]  # stored shuffled; named in class order
    columns = {f"c{j}": p[:, j] for j in order}
    path = write(tmp_path / "e.parquet", pa.table({**columns, "y": y}))
    cols = ",".join(f"c{j}" for j in range(K))
    out = run_json(capsys, path, "--predictions-cols", cols, "--labels-col", "y")
    assert_json_matches(out, xc.score(p, y))
    glob = run_json(capsys, path, "--predictions-cols", "c*", "--labels-col", "y")
    assert_json_matches(glob, xc.score(p[:, order], y))  # the file's order


def test_variable_lists_and_string_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _logits(), _labels()
    names = np.array(NAMES)[y]
    table = pa.table({"z": pa.array(x.tolist(), pa.list_(pa.float32())), "animal": names.tolist()})
    path = write(tmp_path / "e.parquet", table)
    argv = [path, "--predictions-col", "z", "--labels-col", "animal", "--input-type=logits"]
    out = run_json(capsys, *argv, "--class-names", ",".join(NAMES))
    assert_json_matches(out, xc.score(x, names, input_type="logits", class_names=NAMES))
    dictionary = table.set_column(1, "animal", pa.array(names.tolist()).dictionary_encode())
    write(tmp_path / "d.parquet", dictionary)
    argv[0] = tmp_path / "d.parquet"
    out = run_json(capsys, *argv, "--class-names", ",".join(NAMES))
    assert_json_matches(out, xc.score(x, y, input_type="logits"))


@pytest.mark.parametrize("labels", ["int", "float", "bool", "names"])
def test_a_binary_task_from_one_number_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: str
) -> None:
    rng = np.random.default_rng(7)
    p, t = rng.random(1_500), rng.integers(0, 2, 1_500)
    y: Any = {
        "int": t,
        "float": t.astype(np.float64),
        "bool": t.astype(bool),
        "names": np.array(["no", "yes"])[t].tolist(),
    }[labels]
    path = write(tmp_path / "b.parquet", pa.table({"p": p, "y": y}))
    argv = [path, "--predictions-col", "p", "--labels-col", "y", "--chunk-rows", "400"]
    if labels == "names":
        argv += ["--class-names", "no,yes"]
    out = run_json(capsys, *argv)
    ref = xc.score(p, t)
    assert_json_matches(out, ref)
    assert out["task"] == "binary"


def test_soft_targets_and_multilabel_from_list_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(8)
    q = rng.random((900, 4))
    q /= q.sum(axis=1, keepdims=True)
    p = _probabilities()[:900, :4]
    p /= p.sum(axis=1, keepdims=True)
    t = rng.integers(0, 2, (900, 4)).astype(np.float64)
    table = pa.table({"p": fixed_list(p), "q": fixed_list(q), "t": pa.array(t.tolist())})
    path = write(tmp_path / "s.parquet", table)
    soft = run_json(capsys, path, "--predictions-col", "p", "--labels-col", "q")
    assert_json_matches(soft, xc.score(p, q))
    multi = run_json(
        capsys, path, "--predictions-col", "p", "--labels-col", "t", "--task", "multilabel"
    )
    assert_json_matches(multi, xc.score(p, t, task="multilabel"))


def test_a_partitioned_directory_numbers_rows_across_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hive-partitioned directory: files in path order, rows numbered across them, the
    partition a column; hidden and ``_`` files skipped."""
    x, y = _logits(), _labels()
    cuts = [0, 800, 1500, N]
    for part, (a, b) in enumerate(itertools.pairwise(cuts)):
        folder = tmp_path / "ds" / f"part={part}"
        folder.mkdir(parents=True)
        write(folder / "data.parquet", pa.table({"z": fixed_list(x[a:b]), "y": y[a:b]}))
    (tmp_path / "ds" / "_SUCCESS").write_text("")
    (tmp_path / "ds" / ".part=0.crc").write_text("junk")
    argv = [tmp_path / "ds", "--predictions-col", "z", "--labels-col", "y"]
    out = run_json(capsys, *argv, "--input-type", "logits", "--chunk-rows", "256")
    assert_json_matches(out, xc.score(x, y, input_type="logits"))
    items = tmp_path / "items.parquet"
    argv += ["--input-type", "logits", "--ids-col", "part", "--out", items]
    assert main(["score", *map(str, argv)]) == 0
    got = pq.read_table(items)
    assert got.column("part").to_pylist() == [0] * 800 + [1] * 700 + [2] * (N - 1500)
    assert "Parquet, 3 files" in capsys.readouterr().out


def test_uris_and_format_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, y = _probabilities(), _labels()
    path = write(tmp_path / "e.parquet", pa.table({"predictions": fixed_list(p), "y": y}))
    ref = xc.score(p, y)
    assert_json_matches(run_json(capsys, path.as_uri(), "--labels-col", "y"), ref)
    odd = tmp_path / "e.data"
    odd.write_bytes(path.read_bytes())
    assert_json_matches(run_json(capsys, odd, "--format", "parquet", "--labels-col", "y"), ref)
    assert "give --format" in fails(capsys, odd, "--labels-col", "y")
    text = write(tmp_path / "t.csv", pa.table({**spread(p), "y": y}))
    renamed = text.rename(tmp_path / "t.txt")
    out = run_json(
        capsys, renamed, "--format", "csv", "--predictions-cols", "p_*", "--labels-col=y"
    )
    assert_json_matches(out, ref)


def test_fsspec_filesystems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scheme pyarrow does not know goes through fsspec (its in-memory filesystem here)."""
    fsspec = pytest.importorskip("fsspec")
    p, y = _probabilities(), _labels()
    memory = fsspec.filesystem("memory")
    with memory.open("/bucket/eval/part-0.parquet", "wb") as out:
        pq.write_table(pa.table({"predictions": fixed_list(p), "y": y}), out)
    try:
        got = run_json(capsys, "memory://bucket/eval/", "--labels-col", "y")
    finally:
        memory.rm("/bucket", recursive=True)
    assert_json_matches(got, xc.score(p, y))


def test_human_summary_of_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _logits(), _labels()
    path = write(tmp_path / "e.parquet", pa.table({"z": fixed_list(x), "y": y, "id": np.arange(N)}))
    argv = [path, "--predictions-col", "z", "--labels-col", "y", "--ids-col", "id"]
    assert main(["score", *map(str, argv), "--input-type=logits", "--calibration"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"file        {path} (Parquet)"
    assert out[1] == "columns     predictions z, labels y, ids id"
    assert out[3] == f"items       {N:,}"
    assert any(line.startswith("calibration ECE ") and "(15 bins)" in line for line in out)


# -- every option ----------------------------------------------------------------------------

#: (flags, keyword arguments of xentcore.score, data): each against the in-memory answer.
OPTION_CASES: list[tuple[list[str], dict[str, Any], str]] = [
    (["--input-type", "logits"], {"input_type": "logits"}, "logits"),
    (["--input-type", "log_probabilities"], {"input_type": "log_probabilities"}, "logp"),
    (["--task", "multiclass"], {"task": "multiclass"}, "probs"),
    (
        ["--class-weights", "1,2,0.5,1,3,1,0.25"],
        {"class_weights": [1, 2, 0.5, 1, 3, 1, 0.25]},
        "probs",
    ),
    (["--label-smoothing", "0.1"], {"label_smoothing": 0.1}, "probs"),
    (["--ignore-index", "-100"], {"ignore_index": -100}, "ignored"),
    (
        ["--focal-gamma", "2", "--focal-alpha", "0.25"],
        {"focal_gamma": 2.0, "focal_alpha": 0.25},
        "probs",
    ),
    (["--confidence", "margin"], {"confidence": "margin"}, "probs"),
    (["--confidence", "entropy"], {"confidence": "entropy"}, "probs"),
    (
        ["--confidence", "true_class", "--ignore-index=-100"],
        {"confidence": "true_class", "ignore_index": -100},
        "ignored",
    ),
    (["--renormalize"], {"renormalize": True}, "unnormalized"),
    (["--sum-tolerance", "0.05"], {"sum_tolerance": 0.05}, "unnormalized"),
    (["--clip-eps", "1e-7"], {"clip_eps": 1e-7}, "zeros"),
    (["--class-names", ",".join(NAMES)], {"class_names": NAMES}, "probs"),
    (["--flag-min-confidence", "0.3"], {"flag": {"min_confidence": 0.3}}, "probs"),
    (
        ["--flag-min-confidence", "none", "--flag-max-loss", "2"],
        {"flag": {"max_loss": 2.0}},
        "probs",
    ),
    (["--flag-misclassified"], {"flag": {"min_confidence": 0.5, "misclassified": True}}, "probs"),
    (
        ["--input-type=logits", "--sample-weights-col", "w"],
        {"input_type": "logits", "weights": True},
        "logits",
    ),
    (
        ["--sample-weights-col", "w", "--class-weights", "1,2,1,2,1,2,1", "--ignore-index=-100"],
        {"class_weights": [1, 2, 1, 2, 1, 2, 1], "ignore_index": -100, "weights": True},
        "ignored",
    ),
]


def _option_data(kind: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = _probabilities(), _labels()
    if kind == "logits":
        x = _logits().astype(np.float64)
    elif kind == "logp":
        x = np.log(x)
    elif kind == "ignored":
        y = y.copy()
        y[::9] = -100
    elif kind == "unnormalized":
        x = x * np.linspace(0.97, 1.03, N)[:, None]
    elif kind == "zeros":
        x = x.copy()
        x[:50] = np.eye(K)[y[:50]]  # exact 0 and 1 probabilities: clipped
    return x, y


@pytest.mark.parametrize(("flags", "options", "data"), OPTION_CASES)
def test_every_option_flag(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    options: dict[str, Any],
    data: str,
) -> None:
    x, y = _option_data(data)
    w = np.random.default_rng(3).random(N) * 2
    table = pa.table({"x": fixed_list(x), "y": y, "w": w})
    path = write(tmp_path / "o.parquet", table)
    argv = [path, "--predictions-col", "x", "--labels-col", "y", "--chunk-rows", "500", *flags]
    out = run_json(capsys, *argv)
    kwargs = dict(options)
    if kwargs.pop("weights", False):
        kwargs["sample_weights"] = w
    ref = xc.score(x, y, **kwargs)
    assert_json_matches(out, ref)
    assert out["warnings"] == ref.warnings
    assert out["confidence"]["method"] == ref.confidence_method


@pytest.mark.parametrize(
    ("flags", "options"),
    [
        (["--pos-weight", "3"], {"pos_weight": 3.0}),
        (["--decision-threshold", "0.3", "--flag-misclassified"], {"decision_threshold": 0.3}),
        (
            ["--label-smoothing", "0.2", "--focal-gamma", "1"],
            {"label_smoothing": 0.2, "focal_gamma": 1.0},
        ),
        (
            ["--task", "multilabel", "--pos-weight", "1,2,3"],
            {"task": "multilabel", "pos_weight": [1.0, 2.0, 3.0]},
        ),
    ],
)
def test_binary_and_multilabel_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], options: dict[str, Any]
) -> None:
    rng = np.random.default_rng(11)
    multilabel = options.get("task") == "multilabel"
    p = rng.random((1_200, 3) if multilabel else 1_200)
    y = rng.integers(0, 2, p.shape)
    table = pa.table(
        {"p": fixed_list(p) if multilabel else p, "y": fixed_list(y) if multilabel else y}
    )
    path = write(tmp_path / "b.parquet", table)
    out = run_json(capsys, path, "--predictions-col", "p", "--labels-col", "y", *flags)
    if "--flag-misclassified" in flags:
        options = {**options, "flag": {"min_confidence": 0.5, "misclassified": True}}
    assert_json_matches(out, xc.score(p, y, **options))


def test_every_request_option_has_a_flag() -> None:
    """The score options of POST /v1/score (API.md section 4), named as in the HTTP API."""
    from service.schemas.requests import BatchRequest

    offline = {
        "predictions",
        "labels",
        "ids",
        "per_item",
        "stream",
        "calibrator",
        "keep_items",
        "audit_rate",
        "audit_seed",
        "sample_weights",
        "flag",
    }
    score = build_parser()._subparsers._group_actions[0].choices["score"]  # type: ignore[union-attr]
    flags = {opt for action in score._actions for opt in action.option_strings}
    for field in set(BatchRequest.model_fields) - offline:
        assert "--" + field.replace("_", "-") in flags, field
    for flag in (
        "--sample-weights-col",
        "--sample-weights",
        "--labels-col",
        "--ids-col",
        "--flag-min-confidence",
        "--flag-max-loss",
        "--flag-misclassified",
        "--calibration",
        "--out",
        "--format",
        "--predictions-cols",
    ):
        assert flag in flags


@pytest.mark.parametrize("weighted", [False, True])
def test_calibration_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weighted: bool
) -> None:
    """``--calibration``: the figures of /v1/calibration (15 uniform bins) merged from the
    chunks' bin sums, as xentcore.calibration gives them in one piece."""
    x, y = _logits().astype(np.float64), _labels()
    y[::11] = -1
    w = np.random.default_rng(5).random(N)
    path = write(tmp_path / "c.parquet", pa.table({"x": fixed_list(x), "y": y, "w": w}))
    argv = [path, "--predictions-col", "x", "--labels-col", "y", "--input-type", "logits"]
    argv += ["--ignore-index", "-1", "--calibration", "--chunk-rows", "300"]
    options: dict[str, Any] = {"input_type": "logits", "ignore_index": -1}
    if weighted:
        argv += ["--sample-weights-col", "w"]
        options["sample_weights"] = w
    got = run_json(capsys, *argv)["calibration"]
    ref = xc.calibration(x, y, n_bins=15, **options)
    assert got["n_bins"] == 15 and got["n_scored"] == ref.n_scored
    for name in ("ece", "mce", "rms_calibration_error", "brier", "nll"):
        assert got[name] == pytest.approx(getattr(ref, name), rel=1e-9), name
    assert [b["count"] for b in got["bins"]] == [b["count"] for b in ref.bins]
    for mine, theirs in zip(got["bins"], ref.bins, strict=True):
        for key in ("mean_confidence", "accuracy"):
            expected = theirs[key]
            assert mine[key] == (None if expected is None else pytest.approx(expected, rel=1e-9))


# -- --out ------------------------------------------------------------------------------------


def _items(path: Path) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = pq.read_table(path).to_pydict()
    return out


def test_out_writes_the_items_beside_the_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _logits(), _labels()
    y[::13] = -100
    ids = [f"item-{i}" for i in range(N)]
    path = write(tmp_path / "e.parquet", pa.table({"id": ids, "x": fixed_list(x), "y": y}))
    out = tmp_path / "items.parquet"
    argv = [path, "--predictions-col", "x", "--labels-col", "y", "--ids-col", "id"]
    argv += ["--input-type", "logits", "--ignore-index", "-100", "--class-names", ",".join(NAMES)]
    argv += ["--flag-misclassified", "--chunk-rows", "400", "--out", out]
    run_json(capsys, *argv)
    ref = xc.score(
        x,
        y,
        input_type="logits",
        ignore_index=-100,
        class_names=NAMES,
        flag={"min_confidence": 0.5, "misclassified": True},
    )
    got = _items(out)
    assert list(got) == ["id", "loss", "confidence", "predicted", "flagged", "reasons"]
    assert got["id"] == ids
    assert ref.item_loss is not None
    assert got["loss"] == [None if np.isnan(v) else v for v in ref.item_loss.tolist()]
    assert got["loss"][0] is None  # an ignored item has no loss
    np.testing.assert_allclose(got["confidence"], ref.confidence, rtol=1e-12)
    assert got["predicted"] == list(ref.predicted)
    assert got["flagged"] == ref.flagged.tolist()
    assert got["reasons"] == ref.reasons
    assert sorted(f.name for f in tmp_path.iterdir()) == ["e.parquet", "items.parquet"]


def test_out_without_ids_writes_the_row_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Also from .npy input; multilabel predictions are lists of classes."""
    rng = np.random.default_rng(4)
    p = rng.random((500, 3))
    np.save(tmp_path / "p.npy", p)
    out = tmp_path / "items.parquet"
    run_json(capsys, tmp_path / "p.npy", "--task", "multilabel", "--out", out, "--chunk-rows=64")
    got = _items(out)
    ref = xc.score(p, task="multilabel")
    assert list(got) == ["row", "confidence", "predicted", "flagged", "reasons"]
    assert got["row"] == list(range(500))
    assert got["predicted"] == ref.predicted
    assert got["reasons"] == ref.reasons


def test_a_failed_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad value in the last chunk: exit 2, and neither --out, --per-item nor --flagged-out
    exists afterwards (an --out file from before is left as it was)."""
    x = _logits().astype(np.float64)
    x[N - 3, 2] = np.inf
    path = write(tmp_path / "e.parquet", pa.table({"x": fixed_list(x), "y": _labels()}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "items.parquet").write_text("the old one")
    argv = [path, "--predictions-col", "x", "--labels-col", "y", "--input-type", "logits"]
    argv += ["--out", out / "items.parquet", "--per-item", out / "items.npz"]
    argv += ["--flagged-out", out / "flagged.txt", "--chunk-rows", "200"]
    err = fails(capsys, *argv)
    assert err == f"xent score: {path}: row {N - 3}, column 'x[2]': inf is not a finite number"
    assert [f.name for f in out.iterdir()] == ["items.parquet"]
    assert (out / "items.parquet").read_text() == "the old one"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["e.parquet", "out"]


def test_the_other_outputs_and_the_progress_bar_of_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--per-item (.npz), --flagged-out and --progress work on tables as on arrays (a CSV file
    is counted first: the .npz and the bar need its row count)."""
    p, y = _probabilities(), _labels()
    path = write(tmp_path / "e.csv", pa.table({**spread(p), "y": y}))
    argv = [path, "--predictions-cols", "p_*", "--labels-col", "y", "--chunk-rows", "500"]
    argv += ["--per-item", tmp_path / "items.npz", "--flagged-out", tmp_path / "flagged.npy"]
    assert main(["score", *map(str, argv), "--progress"]) == 0
    assert f"{N:,}/{N:,} rows" in capsys.readouterr().err
    ref = xc.score(p, y)
    with np.load(tmp_path / "items.npz") as z:
        np.testing.assert_array_equal(z["confidence"], ref.confidence)
        assert ref.item_loss is not None
        np.testing.assert_allclose(z["loss"], ref.item_loss, rtol=1e-12)
        np.testing.assert_array_equal(z["flagged"], ref.flagged)
    np.testing.assert_array_equal(np.load(tmp_path / "flagged.npy"), ref.flagged_indices)


def test_calibration_of_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _logits(), _labels()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    argv = [tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--input-type", "logits"]
    got = run_json(capsys, *argv, "--calibration", "--chunk-rows", "100")["calibration"]
    ref = xc.calibration(x, y, input_type="logits")
    assert got["ece"] == pytest.approx(ref.ece, rel=1e-9)
    assert got["brier"] == pytest.approx(ref.brier, rel=1e-9)


def test_out_must_be_parquet_in_a_directory_that_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "p.npy", _probabilities())
    assert "name it FILE.parquet" in fails(capsys, tmp_path / "p.npy", "--out", tmp_path / "o.csv")
    missing = tmp_path / "no" / "o.parquet"
    assert "directory does not exist" in fails(capsys, tmp_path / "p.npy", "--out", missing)


# -- errors -----------------------------------------------------------------------------------


def _table_with(tmp_path: Path, name: str, **columns: Any) -> Path:
    return write(tmp_path / name, pa.table(columns))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("nan-list", "e.parquet: row 1234, column 'x[3]': nan is not a finite number"),
        ("nan-column", "e.parquet: row 1234, column 'p_3': nan is not a finite number"),
        ("range", "e.parquet: row 17, column 'p_1': probability 1.5 is outside [0, 1]"),
        ("row-sum", "e.parquet: row 2000, columns 'p_0'..'p_6': row sums to"),
        ("null-prediction", "e.parquet: row 1500, column 'x': null value"),
        ("null-value", "e.parquet: row 999, column 'x[6]': null value"),
        ("null-label", "e.parquet: row 2222, column 'y': null value"),
        ("null-weight", "e.parquet: row 5, column 'w': null value"),
        ("label-range", f"e.parquet: row 77, column 'y': class {K} is outside [0, {K})"),
        ("label-name", "e.parquet: row 1001, column 'y': 'zebra' is not one of class_names"),
        ("label-strings", "e.parquet: column 'y' holds strings: give the class names"),
        ("ragged", "e.parquet: row 321, column 'x': 6 values, expected 7 (as in the rows before)"),
        ("negative-weight", "e.parquet: row 8, column 'w': "),
        ("string-number", "e.parquet: column 'p_2' holds string, expected numbers"),
        ("wrong-type", "e.parquet: column 'x' holds timestamp[ms], expected numbers"),
        ("unknown", "e.parquet: no column 'lbl' (--labels-col); its columns: x, y, w"),
        ("glob", "e.parquet: --predictions-cols 'q_*' matches no column; its columns: x, y, w"),
        ("default", "e.parquet: no column 'predictions': name the predictions with"),
    ],
)
def test_bad_values_name_the_file_the_row_and_the_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    p, y = _probabilities(), _labels()
    w = np.ones(N)
    x: Any = fixed_list(p)
    argv: list[Any] = ["--predictions-col", "x", "--labels-col", "y"]
    labels: Any = y
    weights: Any = w
    if case == "nan-list":
        p[1234, 3] = np.nan
        x = fixed_list(p)
    elif case in ("nan-column", "range", "row-sum", "string-number"):
        if case == "nan-column":
            p[1234, 3] = np.nan
        elif case == "range":
            p[17, 1] = 1.5
        elif case == "row-sum":
            p[2000] *= 0.5
        columns: dict[str, Any] = spread(p)
        if case == "string-number":
            columns["p_2"] = [str(v) if i != 1900 else "n/a" for i, v in enumerate(p[:, 2])]
        path = _table_with(tmp_path, "e.parquet", **columns, y=y)
        err = fails(capsys, path, "--predictions-cols", "p_*", "--labels-col", "y")
        assert f"xent score: {tmp_path / message}" in err, err
        return
    elif case == "null-prediction":
        x = pa.array([None if i == 1500 else row for i, row in enumerate(p.tolist())])
    elif case == "null-value":
        rows = p.tolist()
        rows[999][6] = None
        x = pa.array(rows)
    elif case == "null-label":
        labels = pa.array([None if i == 2222 else v for i, v in enumerate(y.tolist())])
    elif case == "null-weight":
        weights = pa.array([None if i == 5 else 1.0 for i in range(N)])
        argv += ["--sample-weights-col", "w"]
    elif case == "label-range":
        labels = y.copy()
        labels[77] = K
    elif case in ("label-name", "label-strings"):
        names = np.array(NAMES)[y].tolist()
        names[1001] = "zebra"
        labels = names
        if case == "label-name":
            argv += ["--class-names", ",".join(NAMES)]
    elif case == "ragged":
        rows = p.tolist()
        rows[321] = rows[321][:6]
        x = pa.array(rows)
    elif case == "negative-weight":
        weights = w.copy()
        weights[8] = -1.0
        argv += ["--sample-weights-col", "w"]
    elif case == "wrong-type":
        x = pa.array(np.zeros(N, dtype="datetime64[s]"))
    elif case == "unknown":
        argv = ["--predictions-col", "x", "--labels-col", "lbl"]
    elif case == "glob":
        argv = ["--predictions-cols", "q_*"]
    elif case == "default":
        argv = []
    path = _table_with(tmp_path, "e.parquet", x=x, y=labels, w=weights)
    err = fails(capsys, path, *argv, "--chunk-rows", "256")
    assert f"xent score: {tmp_path / message}" in err, err


def test_csv_values_that_are_not_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Far down a CSV file (its column's type read from the first rows) and in its first rows
    (the column then read as text), with the CSV line beside the row."""
    p = np.full((60_000, 2), 0.5)
    y = np.zeros(60_000, dtype=np.int64)
    for row in (59_000, 3):
        values = [f"{v}" for v in p[:, 1]]
        values[row] = "oops"
        path = write(tmp_path / "e.csv", pa.table({"a": p[:, 0], "b": values, "y": y}))
        err = fails(capsys, path, "--predictions-cols", "a,b", "--labels-col", "y")
        expected = f"row {row}, column 'b': 'oops' is not a number (CSV line {row + 2})"
        assert err == f"xent score: {path}: {expected}"
    lines = path.read_text().splitlines()
    lines[40_002] += ",1"  # one field too many
    path.write_text("\n".join(lines) + "\n")
    err = fails(capsys, path, "--predictions-cols", "a,b", "--labels-col", "y")
    assert err.startswith(f"xent score: {path}: row 40001: Expected 3 columns, got 4")


def test_json_lines_values_of_the_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"p": [0.25, 0.75], "y": 1} for _ in range(40_000)]
    rows[30_000]["p"] = [0.25, "x"]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = fails(capsys, path, "--predictions-col", "p", "--labels-col", "y")
    assert err == f"xent score: {path}: row 30000, column 'p': \"x\" is a string, expected a number"
    rows[30_000]["p"] = [0.25, 0.75]
    rows[25]["y"] = "one"  # in the first block: the type the file starts with
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = fails(capsys, path, "--predictions-col", "p", "--labels-col", "y")
    assert (
        err
        == f"xent score: {path}: row 25, column 'y': a string where the rows before hold a number"
    )
    path.write_text(path.read_text().replace('{"p": [0.25, 0.75], "y": 1}', "{oops", 1))
    err = fails(capsys, path, "--predictions-col", "p")
    assert err == f"xent score: {path}: row 0: invalid JSON (Missing a name for object member)"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.parquet", "a,b\n1,2\n", "not a Parquet file; it looks like CSV text (--format csv)"),
        ("e.feather", "PAR1xxxxPAR1", "not a Arrow IPC (Feather) file; it looks like Parquet"),
        ("e.jsonl", '[{"p": 1}]', "not a JSON Lines file; it looks like a JSON array"),
        ("e.csv", '{"p": 0.5}\n', "not a CSV file; it looks like JSON Lines text"),
        (
            "e.npy",
            "p,y\n0.5,1\n",
            "cannot read it as an array: not a .npy or .npz file; it looks like CSV text",
        ),
        (
            "e.npz",
            "PAR1xxxxPAR1",
            "cannot read it as an array: not a .npy or .npz file; it looks like Parquet",
        ),
        ("e.parquet", b"\x93NUMPY\x01\x00", "not a Parquet file; it looks like a .npy array"),
        ("e.parquet", b"\x00\x01\x02garbage", "cannot read it as Parquet"),
    ],
)
def test_a_file_that_is_not_what_its_name_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: Any, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    err = fails(capsys, path)
    assert err.startswith(f"xent score: {path}: {message}"), err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--labels", "y.npy"],
            "--labels FILE is for .npy / .npz input; for a table use --labels-col",
        ),
        (["--predictions-col", "x", "--calibration"], "--calibration needs labels"),
        (
            ["--predictions-col", "x", "--labels-col", "y", "--class-weights", "1,2"],
            "--class-weights: ",
        ),
        (
            ["--predictions-col", "x", "--flag-max-loss", "1"],
            "--flag-max-loss: this rule needs labels",
        ),
        (
            [
                "--predictions-col",
                "x",
                "--labels-col",
                "y",
                "--calibration",
                "--decision-threshold",
                "0.3",
            ],
            "--calibration: calibration judges the top-label prediction",
        ),
        (
            ["--predictions-col", "x", "--labels-col", "y", "--label-smoothing", "2"],
            "--label-smoothing: ",
        ),
        (
            [
                "--predictions-col",
                "x",
                "--labels-col",
                "y",
                "--ids-col",
                "loss",
                "--out",
                "o.parquet",
            ],
            "--ids-col 'loss' is also the name of an output column",
        ),
    ],
)
def test_flags_that_do_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    path = _table_with(
        tmp_path, "e.parquet", x=fixed_list(_probabilities()), y=_labels(), loss=np.ones(N)
    )
    argv = [str(tmp_path / a) if a.endswith((".npy", ".parquet")) else a for a in argv]
    err = fails(capsys, path, *argv)
    assert message in err, err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["e.parquet"]


def test_column_flags_are_for_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "p.npy", _probabilities())
    err = fails(capsys, tmp_path / "p.npy", "--labels-col", "y")
    assert "--labels-col names a column of a table" in err


def test_sample_weights_file_for_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _logits(), _labels()
    w = np.random.default_rng(9).random(N)
    for name, value in (("x", x), ("y", y), ("w", w)):
        np.save(tmp_path / f"{name}.npy", value)
    argv = [tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--input-type", "logits"]
    out = run_json(capsys, *argv, "--sample-weights", tmp_path / "w.npy", "--chunk-rows=100")
    assert_json_matches(out, xc.score(x, y, input_type="logits", sample_weights=w))
    w[7] = -2.0
    np.save(tmp_path / "w.npy", w)
    err = fails(capsys, *argv, "--sample-weights", tmp_path / "w.npy")
    assert err.startswith(f"xent score: {tmp_path / 'w.npy'}: sample_weights[7]")


def test_unknown_filesystems(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, "nosuchscheme://bucket/eval.parquet")
    assert "nosuchscheme://bucket/eval.parquet: " in err
    assert "no filesystem for nosuchscheme://" in err or "fsspec is not installed" in err


# -- memory and imports -------------------------------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import dataclasses, json, sys, tracemalloc
    import numpy as np
    # pyarrow's modules imported and xentcore's kernels warmed before measuring
    import pyarrow as pa, pyarrow.compute, pyarrow.dataset, pyarrow.fs, pyarrow.parquet
    import xentcore as xc
    from xentcore.files import Columns, open_table, score_table
    xc.score(np.zeros((4, 10), np.float32), np.zeros(4, np.int64), input_type="logits")
    xc.score(np.full(4, 0.5), np.zeros(4, np.int64))
    path, chunk, column = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    options = {"input_type": "logits"} if column in ("logits", "p_*") else {}
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()
    tracemalloc.start()
    source = open_table(path)
    columns = Columns(predictions_cols=column) if "*" in column else Columns(predictions=column)
    columns = dataclasses.replace(columns, labels="label")
    selection = columns.select(source.schema, path)
    result = score_table(source, selection, options=options, chunk_rows=chunk)
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    arrow_peak = pool.max_memory() - before
    data = source.dataset.to_table(columns=selection.columns).nbytes  # the data in memory
    print(json.dumps({"numpy": numpy_peak, "arrow": arrow_peak, "data": data,
                      "rows": result.n_items}))
    """
)


@pytest.mark.parametrize("shape", ["logits", "binary", "wide"])
def test_extra_peak_memory_is_under_a_third_of_the_data(tmp_path: Path, shape: str) -> None:
    """A Parquet file of ten chunks, 50-75 MB in memory, one row group as pyarrow writes it by
    default, is scored with extra peak memory under a third of its size: numpy's and Python's
    allocations (tracemalloc) plus Arrow's (its memory pool's high-water mark), measured in a
    fresh process. ``logits``: 1,500,000 rows of 10 float32 logits (a list column) and an
    int64 label (measured: 0.21); ``binary``: 3,000,000 rows of one float64 probability and an
    int64 label (0.22), whose per-item results would outweigh the chunk but for
    :meth:`~xentcore.files.Chunk.slices`; ``wide``: ten default chunks of 10 float32 columns
    ``p_0`` ... ``p_9`` and a label, 207 MB (0.28)."""
    rng = np.random.default_rng(0)
    chunk = 0  # the default
    if shape in ("logits", "wide"):
        k = 10
        # wide: one float32 column per class, at the default chunk (419,430 rows): Parquet's
        # page buffers, about 3 MB per column read, are a fixed cost (0.5 of a ten-chunk file
        # at chunks of 150,000 rows, 0.28 here)
        n = 1_500_000 if shape == "logits" else 10 * (CHUNK_ELEMENTS // k)
        y = rng.integers(0, k, n)
        x: Any = rng.standard_normal(size=(n, k), dtype=np.float32)
        x[np.arange(n), y] += 6.0  # a good model: few rows flagged
        if shape == "logits":
            table = pa.table({"logits": fixed_list(x), "label": y})
            chunk = n // 10
        else:
            table = pa.table({**{f"p_{j}": x[:, j] for j in range(k)}, "label": y})
        del x
    else:
        n = 3_000_000
        y = rng.integers(0, 2, n)
        table = pa.table({shape: np.clip(0.7 * y + 0.3 * rng.random(n), 0.0, 1.0), "label": y})
        chunk = n // 10
    path = tmp_path / "big.parquet"
    pq.write_table(table, path)
    del table, y
    column = "p_*" if shape == "wide" else shape
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(chunk), column],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)
    assert m["rows"] == n
    extra = m["numpy"] + m["arrow"]
    mb = {key: round(m[key] / 1e6, 1) for key in ("numpy", "arrow", "data")}
    print(f"{shape}: extra peak {extra / 1e6:.1f} MB {mb} ({extra / m['data']:.3f})")
    assert extra < m["data"] / 3


def test_the_command_does_not_import_pyarrow_until_a_table_is_read() -> None:
    code = "import sys, service.cli, xentcore.files; print('pyarrow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
