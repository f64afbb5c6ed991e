"""``xent score``: the command over ``xentcore.files`` (its flags, output, exit status, files).

The chunked scoring itself (chunks equal the in-memory answer, .npz members, Fortran order,
warnings, global row indices) is tested in tests/xentcore/test_files.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from service.cli import main
from service.progress import ProgressBar
from tests.support.arrays import K, N, assert_json_matches
from tests.support.arrays import labels as _labels
from tests.support.arrays import logits as _logits
from tests.support.arrays import probabilities as _probabilities
from xentcore.files import MAX_JSON_INDICES, open_rows, score_file


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["score", *argv, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_flags_reach_the_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``xent score --json`` prints ``score_file(...).as_json()`` for the options its flags
    name, and that is the in-memory answer; ``--per-item`` writes the per-item columns."""
    x, y = _logits(), _labels()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    items = tmp_path / "items.npz"
    out = run_json(
        capsys,
        str(tmp_path / "x.npy"),
        "--labels",
        str(tmp_path / "y.npy"),
        "--input-type",
        "logits",
        "--flag-min-confidence",
        "0.6",
        "--chunk-rows",
        "100",
        "--per-item",
        str(items),
    )
    options: dict[str, Any] = {"input_type": "logits", "flag": {"min_confidence": 0.6}}
    predictions, labels = open_rows(str(tmp_path / "x.npy")), open_rows(str(tmp_path / "y.npy"))
    try:
        library = score_file(predictions, labels, options=options, chunk_rows=100)
    finally:
        predictions.close()
        labels.close()
    assert out == json.loads(json.dumps(library.as_json()))
    ref = xc.score(x, y, **options)
    assert_json_matches(out, ref)
    assert ref.flagged_indices.size > 0  # the flags cross chunk boundaries
    with np.load(items) as z:
        assert sorted(z.files) == ["confidence", "flagged", "loss", "predicted"]
        np.testing.assert_array_equal(z["confidence"], ref.confidence)
        np.testing.assert_array_equal(z["predicted"], ref.predicted_index)
        np.testing.assert_array_equal(z["flagged"], ref.flagged)
        assert ref.item_loss is not None
        np.testing.assert_array_equal(z["loss"], ref.item_loss)


def test_ignored_labels_and_misclassified_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _logits(), _labels()
    y[::7] = -100
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = run_json(
        capsys,
        str(tmp_path / "x.npy"),
        "--labels",
        str(tmp_path / "y.npy"),
        "--input-type=logits",
        "--ignore-index=-100",
        "--confidence=true_class",
        "--flag-misclassified",
        "--chunk-rows=64",
    )
    ref = xc.score(
        x,
        y,
        input_type="logits",
        ignore_index=-100,
        confidence="true_class",
        flag={"min_confidence": 0.5, "misclassified": True},
    )
    assert_json_matches(out, ref)


def test_flag_max_loss_and_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _probabilities(), _labels()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    argv = [str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--chunk-rows=300"]
    out = run_json(capsys, *argv, "--task=multiclass", "--flag-max-loss=2.5")
    ref = xc.score(x, y, task="multiclass", flag={"min_confidence": 0.5, "max_loss": 2.5})
    assert_json_matches(out, ref)
    assert ref.flagged_indices.size != xc.score(x, y).flagged_indices.size  # max_loss counts


def test_npz_default_member_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _probabilities(), _labels()
    path = tmp_path / "eval.npz"
    np.savez(path, predictions=x, labels=y)
    out = run_json(capsys, str(path), "--labels", str(path), "--chunk-rows=500")
    assert_json_matches(out, xc.score(x, y))


def test_human_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", _logits())
    np.save(tmp_path / "y.npy", _labels())
    argv = ["score", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    assert main([*argv, "--input-type=logits", "--chunk-rows=1000", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "loss        mean" in captured.out and "accuracy" in captured.out
    assert "2,345/2,345 rows" in captured.err  # the progress bar, asked for


def test_nan_at_row_1234_names_file_and_global_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = _logits()
    x[1234, 3] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, x)
    assert main(["score", str(path), "--input-type=logits", "--chunk-rows=100"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"xent score: {path}: predictions[1234][3]: nan is not a finite number"
    assert "Traceback" not in err


def test_bad_label_row_is_global(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = _labels()
    y[2000] = K
    np.save(tmp_path / "x.npy", _probabilities())
    np.save(tmp_path / "y.npy", y)
    argv = ["score", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    assert main([*argv, "--chunk-rows=300"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'y.npy'}: labels[2000]: class {K} is outside [0, {K})" in err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        ("text", "cannot read it as an array"),
        ("rows", "has 10 rows"),
        ("member", "no array named 'nope'"),
        ("empty", "empty batch"),
    ],
)
def test_bad_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    x = tmp_path / "x.npy"
    np.save(x, _probabilities())
    argv = ["score", str(x)]
    if setup == "missing":
        argv = ["score", str(tmp_path / "absent.npy")]
    elif setup == "text":
        (tmp_path / "t.npy").write_text("hello")
        argv = ["score", str(tmp_path / "t.npy")]
    elif setup == "rows":
        np.save(tmp_path / "y.npy", np.zeros(10, dtype=np.int64))
        argv += ["--labels", str(tmp_path / "y.npy")]
    elif setup == "member":
        np.savez(tmp_path / "e.npz", predictions=_probabilities())
        argv = ["score", f"{tmp_path / 'e.npz'}:nope"]
    else:
        np.save(tmp_path / "e.npy", np.zeros((0, 3)))
        argv = ["score", str(tmp_path / "e.npy")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "allow_pickle" not in err  # numpy's hint at an unsafe workaround: never shown


def test_subprocess(tmp_path: Path) -> None:
    x, y = _logits(), _labels()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    argv = [sys.executable, "-m", "service.cli", "score", str(tmp_path / "x.npy")]
    argv += ["--labels", str(tmp_path / "y.npy"), "--input-type=logits", "--chunk-rows=128"]
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no bar when stderr is not a terminal
    assert_json_matches(json.loads(done.stdout), xc.score(x, y, input_type="logits"))
    x[5, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    bad = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "predictions[5][0]: inf is not a finite number" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((20_000, 3))
    np.save(tmp_path / "x.npy", x)
    argv = [sys.executable, "-m", "service.cli", "score", str(tmp_path / "x.npy")]
    proc = subprocess.Popen(
        [*argv, "--input-type=logits", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    with proc.stderr:
        proc.stdout.read(10)
        proc.stdout.close()  # the reader leaves early, as `| head` does
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 1)
    assert "Traceback" not in err


def _many_flags(tmp_path: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    """A file whose every row is flagged (uniform rows: confidence 1/K < 0.5)."""
    p = np.full((N, K), 1.0 / K)
    np.save(tmp_path / "p.npy", p)
    return tmp_path / "p.npy", xc.score(p).flagged_indices


def test_json_lists_at_most_the_first_thousand_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, flagged = _many_flags(tmp_path)
    assert flagged.size == N > MAX_JSON_INDICES
    out = run_json(capsys, str(path), "--chunk-rows", "100")
    assert out["flagged"]["count"] == N and out["flagged"]["rate"] == 1.0
    assert out["flagged"]["indices"] == list(range(MAX_JSON_INDICES))
    assert out["flagged"]["indices_truncated"] is True
    few = run_json(capsys, str(path), "--max-flagged", "3")["flagged"]
    assert (few["indices"], few["indices_truncated"]) == ([0, 1, 2], True)
    every = run_json(capsys, str(path), "--max-flagged", str(N))["flagged"]
    assert (every["indices"], every["indices_truncated"]) == (flagged.tolist(), False)
    assert run_json(capsys, str(path), "--max-flagged", "0")["flagged"]["indices"] == []


@pytest.mark.parametrize("name", ["flagged.txt", "flagged.npy"])
def test_flagged_out_writes_every_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    p = _probabilities()
    np.save(tmp_path / "p.npy", p)
    ref = xc.score(p, flag={"min_confidence": 0.3})
    out_file = tmp_path / name
    argv = [str(tmp_path / "p.npy"), "--flag-min-confidence", "0.3", "--chunk-rows", "97"]
    out = run_json(capsys, *argv, "--flagged-out", str(out_file), "--max-flagged", "5")
    assert out["flagged"]["count"] == ref.flagged_indices.size > 5
    if name.endswith(".npy"):
        written = np.load(out_file)
        assert written.dtype == np.int64
    else:
        written = np.array([int(line) for line in out_file.read_text().splitlines()])
    np.testing.assert_array_equal(written, ref.flagged_indices)
    assert main(["score", *argv, "--flagged-out", str(out_file)]) == 0  # the human summary too
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_flagged_out_into_a_missing_directory_fails_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _many_flags(tmp_path)
    assert main(["score", str(path), "--flagged-out", str(tmp_path / "no" / "f.txt")]) == 2
    err = capsys.readouterr().err
    assert "f.txt" in err and "directory does not exist" in err


def test_no_flags_write_an_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "p.npy", np.array([[0.99, 0.01]]))
    out = run_json(capsys, str(tmp_path / "p.npy"), "--flagged-out", str(tmp_path / "f.txt"))
    assert out["flagged"] == {"count": 0, "rate": 0.0, "indices": [], "indices_truncated": False}
    assert (tmp_path / "f.txt").read_text() == ""


def test_progress_bar() -> None:
    stream = io.StringIO()
    bar = ProgressBar(2_000, stream=stream, width=10)
    bar.update(500)  # the first update draws
    bar.update(1_000)  # drawn only if 0.1 s passed since
    bar.close(2_000)
    lines = stream.getvalue().split("\r")[1:]
    assert lines[0].startswith("[##--------]  25.0% 500/2,000 rows ")
    assert lines[-1].startswith("[##########] 100.0% 2,000/2,000 rows ")
    assert len(lines) in (2, 3) and lines[-1].endswith("s\n")
    empty = io.StringIO()
    ProgressBar(0, stream=empty).close(0)
    assert "100.0% 0/0 rows" in empty.getvalue()


def test_clip_eps_dtype_and_per_class_focal_alpha_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import numpy as np

    from service.cli import main as cli_main

    p = np.array([[1.0, 0.0], [0.3, 0.7]], dtype=np.float32)
    y = np.array([1, 1])
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", y)
    base = [str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--json"]
    assert cli_main(["score", *base, "--clip-eps", "dtype"]) == 0
    dtype = json.loads(capsys.readouterr().out)
    assert dtype["loss"]["sum"] == pytest.approx(
        xc.score(p, y, clip_eps="dtype").loss_sum, rel=1e-12
    )
    assert dtype["loss"]["sum"] == pytest.approx(-np.log(np.finfo(np.float32).eps) - np.log(0.7))
    assert cli_main(["score", *base, "--focal-gamma", "2", "--focal-alpha", "0.25,0.75"]) == 0
    focal = json.loads(capsys.readouterr().out)
    ref = xc.score(p, y, focal_gamma=2.0, focal_alpha=[0.25, 0.75])
    assert focal["loss"]["sum"] == pytest.approx(ref.loss_sum, rel=1e-12)
