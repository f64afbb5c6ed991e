"""``xent score --dask``: the pieces of an input scored as tasks of a real ``dask.distributed``
cluster (worker processes) and merged in row order, against the single-machine run.

One ``LocalCluster`` (2 worker processes, 1 thread each) serves the module: the command is
pointed at its scheduler's address, as at a remote cluster. One test runs ``--dask local:2``
in a subprocess (a cluster of its own, started and stopped by the command). Equality: figures
within 1e-12 relative (the same chunk partials merged in another grouping), flagged indices,
per-item outputs and error messages identical.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from service.cli import main
from tests.support.arrays import K, N
from tests.support.arrays import labels as _labels
from tests.support.arrays import logits as _logits
from tests.support.server import free_port
from xentcore.files import Columns, open_table, score_table
from xentcore.files import cluster as cluster_module
from xentcore.files.cluster import ARRAY_PIECE_CHUNKS, score_table_on

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a local cluster of 2 worker processes (1 thread each)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a cluster's own start-up chatter is not under test
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        )
    try:
        yield str(cluster.scheduler_address)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster.close()


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main(["score", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def both(capsys: pytest.CaptureFixture[str], scheduler: str, *argv: Any) -> list[dict[str, Any]]:
    """The ``--json`` answers of one machine and of the cluster, for the same arguments."""
    answers = []
    for extra in ([], ["--dask", scheduler]):
        code, out, err = run(capsys, *argv, "--json", "--max-flagged", "100000", *extra)
        assert code == 0, err
        answers.append(json.loads(out))
    return answers


def assert_same(one: Any, many: Any, path: str = "") -> None:
    """Equal, floats within 1e-12 relative (lists and dicts compared entry by entry)."""
    if isinstance(one, dict):
        assert set(one) == set(many), path
        for key in one:
            assert_same(one[key], many[key], f"{path}.{key}")
    elif isinstance(one, list):
        assert len(one) == len(many), path
        for i, (a, b) in enumerate(zip(one, many, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(one, float) and not isinstance(many, bool):
        assert many == pytest.approx(one, rel=1e-12, abs=0.0), path
    else:
        assert one == many, path


def fixed_list(x: np.ndarray[Any, Any]) -> Any:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


def eval_table(seed: int = 0) -> Any:
    """N rows: ids, logits (a fixed-size list), labels, sample weights."""
    x, y = _logits(seed), _labels(seed + 2)
    w = np.random.default_rng(seed + 3).random(N) * 2
    return pa.table({"id": [f"r{i}" for i in range(N)], "x": fixed_list(x), "y": y, "w": w})


ARGS = ["--predictions-col", "x", "--labels-col", "y", "--input-type", "logits"]


# -- the same figures -------------------------------------------------------------------------


def test_row_groups_of_a_parquet_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    """Seven row groups (pieces) of one file, weighted, flagged two ways, with calibration."""
    path = tmp_path / "eval.parquet"
    pq.write_table(eval_table(), path, row_group_size=350)
    argv = [path, *ARGS, "--sample-weights-col", "w", "--calibration", "--chunk-rows", "100"]
    one, many = both(capsys, scheduler, *argv, "--flag-misclassified", "--flag-max-loss", "3")
    assert_same(one, many)
    assert one["flagged"]["count"] > 100 and one["calibration"]["ece"] > 0
    assert many["flagged"]["indices"] == one["flagged"]["indices"]
    assert not one["flagged"]["indices_truncated"]


def test_a_directory_of_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    """Hive partitions (a column), three Parquet files of several row groups each."""
    table = eval_table(1)
    for day, (a, b) in enumerate([(0, 900), (900, 1500), (1500, N)]):
        folder = tmp_path / "evals" / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(table.slice(a, b - a), folder / "part.parquet", row_group_size=400)
    one, many = both(capsys, scheduler, tmp_path / "evals", *ARGS, "--flag-max-loss", "4")
    assert_same(one, many)


def test_csv_files_and_the_rows_counted_for_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    """CSV files (no row counts in their metadata): the same figures; with ``--out`` and no
    ids, the files are counted first on the cluster, so that ``row`` is the global index."""
    x, y = _logits(5).astype(np.float64), _labels(6)
    folder = tmp_path / "csv"
    folder.mkdir()
    for i, (a, b) in enumerate([(0, 700), (700, 1800), (1800, N)]):
        columns = {f"p_{j}": x[a:b, j] for j in range(K)} | {"y": y[a:b]}
        pa_csv.write_csv(pa.table(columns), folder / f"part-{i}.csv")
    argv = [folder, "--predictions-cols", "p_*", "--labels-col", "y", "--input-type", "logits"]
    one, many = both(capsys, scheduler, *argv)
    assert_same(one, many)
    out = tmp_path / "items"
    code, _, err = run(capsys, *argv, "--dask", scheduler, "--out", out)
    assert code == 0, err
    assert pq.read_table(out).column("row").to_pylist() == list(range(N))


def test_npy_arrays_in_runs_of_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    x, y = _logits(7), _labels(8)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "y.npz", labels=y)  # uncompressed: memory-mapped on the workers
    chunk = 90  # N rows: ceil(N / (90 * 8)) = 4 pieces
    assert N > 3 * chunk * ARRAY_PIECE_CHUNKS
    argv = [tmp_path / "x.npy", "--labels", tmp_path / "y.npz", "--input-type", "logits"]
    one, many = both(capsys, scheduler, *argv, "--chunk-rows", chunk, "--calibration")
    assert_same(one, many)


def test_the_library_call(tmp_path: Path, scheduler: str) -> None:
    """``score_table_on`` against ``score_table``: the same Summary within 1e-12, the same
    flagged indices and warnings."""
    path = tmp_path / "eval.parquet"
    pq.write_table(eval_table(2), path, row_group_size=300)
    source = open_table(str(path))
    selection = Columns(predictions="x", labels="y").select(source.schema, source.name)
    options = {"input_type": "logits", "flag": {"min_confidence": 0.4}}
    one = score_table(source, selection, options=options, chunk_rows=128)
    with distributed.Client(scheduler, set_as_default=False) as client:
        many = score_table_on(client, source, selection, options=options, chunk_rows=128)
    assert one.summary is not None and many.summary is not None
    a, b = one.summary.figures(), many.summary.figures()
    for key in ("loss_mean", "confidence_mean", "accuracy", "ece"):
        assert b[key] == pytest.approx(a[key], rel=1e-12)
    assert np.array_equal(one.flagged_indices, many.flagged_indices)
    assert one.warnings == many.warnings


# -- outputs -----------------------------------------------------------------------------------


def test_out_is_a_directory_of_part_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    """``--out`` with --dask: one part file per row group, written by the workers, read back
    in row order as the single-machine file; ``--flagged-out`` as on one machine."""
    path = tmp_path / "eval.parquet"
    pq.write_table(eval_table(3), path, row_group_size=500)
    argv = [path, *ARGS, "--ids-col", "id", "--flag-misclassified", "--chunk-rows", "128"]
    single, many = tmp_path / "single.parquet", tmp_path / "many.parquet"
    assert run(capsys, *argv, "--out", single, "--flagged-out", tmp_path / "one.npy")[0] == 0
    code, _, err = run(
        capsys, *argv, "--out", many, "--flagged-out", tmp_path / "two.npy", "--dask", scheduler
    )
    assert code == 0, err
    assert many.is_dir()
    assert sorted(p.name for p in many.iterdir()) == [f"part-{i:06d}.parquet" for i in range(5)]
    assert pq.read_table(many).equals(pq.read_table(single))
    assert np.array_equal(np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy"))
    # a second run replaces the directory of part files
    assert run(capsys, *argv, "--out", many, "--dask", scheduler)[0] == 0
    assert pq.read_table(many).num_rows == N
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_out_refuses_a_directory_of_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    path = tmp_path / "eval.parquet"
    pq.write_table(eval_table(), path, row_group_size=500)
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    code, _, err = run(capsys, path, *ARGS, "--out", home, "--dask", scheduler)
    assert code == 2 and "is a directory of other files" in err
    assert [p.name for p in home.iterdir()] == ["notes.txt"]


# -- errors --------------------------------------------------------------------------------


def test_a_bad_value_in_a_later_piece(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    """The message of one machine (file, global row, column); nothing written."""
    x = _logits().astype(np.float64)
    x[1703, 4] = np.nan
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": fixed_list(x), "y": _labels()}), path, row_group_size=400)
    argv = [path, *ARGS, "--flagged-out", tmp_path / "f.txt"]
    errors = []
    for extra in ([], ["--dask", scheduler, "--out", tmp_path / "items"]):
        code, _, err = run(capsys, *argv, *extra)
        assert code == 2
        errors.append(err)
    assert (
        errors[0]
        == errors[1]
        == (f"xent score: {path}: row 1703, column 'x[4]': nan is not a finite number\n")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


def test_a_bad_csv_value_names_its_global_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    """CSV files are scored without knowing where they start: the row is made global as the
    pieces are merged; the column is named as on one machine."""
    folder = tmp_path / "csv"
    folder.mkdir()
    for i in range(3):
        values = [str(v) for v in np.linspace(0.1, 0.9, 500)]
        if i == 2:
            values[123] = "0.5.1"
        pa_csv.write_csv(pa.table({"p": values, "y": [0, 1] * 250}), folder / f"f{i}.csv")
    argv = [folder, "--predictions-col", "p", "--labels-col", "y"]
    errors = [run(capsys, *argv, *extra)[2] for extra in ([], ["--dask", scheduler])]
    expected = f"xent score: {folder}/f2.csv: row 1123, column 'p': '0.5.1' is not a number"
    assert errors[0] == errors[1] == expected + " (CSV line 125)\n"


def test_flags_that_do_not_fit_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
) -> None:
    np.save(tmp_path / "x.npy", _logits())
    np.savez_compressed(tmp_path / "c.npz", x=_logits())
    code, _, err = run(
        capsys, tmp_path / "x.npy", "--per-item", tmp_path / "o.npz", "--dask", "local:2"
    )
    assert code == 2 and "--per-item" in err and "not available with --dask" in err
    code, _, err = run(capsys, tmp_path / "c.npz", "--dask", scheduler)
    assert code == 2 and "compressed .npz member" in err and "np.savez" in err
    nowhere = tmp_path / "missing" / "flagged.txt"
    code, _, err = run(capsys, tmp_path / "x.npy", "--flagged-out", nowhere, "--dask", scheduler)
    assert (code, err) == (
        2,
        f"xent score: {nowhere}: cannot write: its directory does not exist\n",
    )
    with pytest.raises(SystemExit) as exit_:
        main(["score", str(tmp_path / "x.npy"), "--dask", "local:0"])
    assert exit_.value.code == 2
    assert "expected local:N with N a positive integer" in capsys.readouterr().err


def test_without_dask_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    np.save(tmp_path / "x.npy", _logits())
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    code, _, err = run(capsys, tmp_path / "x.npy", "--dask", "local:2")
    assert (code, err) == (
        2,
        "xent score: --dask needs Dask, which is not installed: pip install 'xentcore[dask]'\n",
    )


def test_a_scheduler_that_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    np.save(tmp_path / "x.npy", _logits())
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", 1)
    address = f"tcp://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, tmp_path / "x.npy", "--dask", address)
    assert code == 2 and err.startswith(f"xent score: --dask {address}: cannot connect"), err


# -- the command, with a cluster of its own ------------------------------------------------------


def test_dask_local_in_a_subprocess(tmp_path: Path) -> None:
    """``xent score --dask local:2``: starts a local cluster, scores, stops it; the human
    report names it; the figures are those of one machine."""
    path = tmp_path / "eval.parquet"
    pq.write_table(eval_table(4), path, row_group_size=600)
    command = [sys.executable, "-m", "service.cli", "score", str(path), *ARGS]
    alone = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    done = subprocess.run(
        [*command, "--dask", "local:2"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2] == "cluster     Dask local:2 (2 workers)"
    assert lines[:2] + lines[3:] == alone.stdout.splitlines()
    assert "Traceback" not in done.stderr


def test_local_workers_start_from_a_preloaded_forkserver(monkeypatch: Any) -> None:
    """``local:N`` forks its workers from a forkserver that imported xentcore and pyarrow once;
    a method chosen in the environment is left alone."""
    import dask

    from xentcore.files import cluster

    monkeypatch.delenv("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", raising=False)
    with cluster._forkserver():
        assert dask.config.get("distributed.worker.multiprocessing-method") == "forkserver"
    assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "spawn")
    with cluster._forkserver():
        assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"
