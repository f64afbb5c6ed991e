"""``xentcore.files`` on tables: formats, readers, column selection, pieces and their merge.

Pieces scored separately (in any order, as a cluster would) and merged in row order give the
answer of one pass; the readers stream each format; conversions and their errors. The command
over them is tested in tests/service/test_cli_files.py.
"""

from __future__ import annotations

import decimal
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq
import pytest

import xentcore as xc
from tests.support.arrays import K, N, assert_json_matches
from tests.support.arrays import labels as _labels
from tests.support.arrays import logits as _logits
from tests.support.arrays import probabilities as _probabilities
from xentcore.files import (
    Columns,
    FileError,
    Partial,
    RowError,
    Selection,
    TableSource,
    format_of,
    open_table,
    score_piece,
    score_table,
    table_chunks,
)
from xentcore.files.formats import compressed, looks_like
from xentcore.files.scoring import table_chunk_rows


def fixed_list(x: np.ndarray[Any, Any]) -> Any:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


def logits_table(tmp_path: Path, name: str = "e.parquet", **kwargs: Any) -> tuple[Path, Any]:
    x, y = _logits(), _labels()
    table = pa.table({"x": fixed_list(x), "y": y})
    path = tmp_path / name
    pq.write_table(table, path, **({"row_group_size": 500} | kwargs))
    return path, table


def select(source: TableSource, **columns: Any) -> Selection:
    return Columns(**columns).select(source.schema, source.name)


def test_format_of_names() -> None:
    assert format_of("a/b/part-0.snappy.parquet") == "parquet"
    assert format_of("x.PQ") == "parquet" and format_of("x.feather") == "ipc"
    assert format_of("s3://b/log.jsonl.gz") == "json" and format_of("t.csv.zst") == "csv"
    assert format_of("x.npz") == "npz" and format_of("x.bin") is None
    assert format_of("noextension") is None and format_of(".hidden") is None
    assert compressed("a.csv.gz") and not compressed("a.csv")


@pytest.mark.parametrize(
    ("head", "tail", "seen"),
    [
        (b"PAR1abc", b"xPAR1", "Parquet (--format parquet)"),
        (b"PAR1abc", b"xxxxx", "CSV text (--format csv)"),  # not both magics: just text
        (b"ARROW1\x00\x00", b"", "Arrow IPC (--format ipc)"),
        (b"\x93NUMPY\x01\x00", b"", "a .npy array (--format npy)"),
        (b"PK\x03\x04", b"", "a zip archive such as .npz (--format npz)"),
        (b"\x1f\x8b\x08", b"", "gzip-compressed data (name it .csv.gz or .jsonl.gz)"),
        (b'\xef\xbb\xbf  {"a": 1}', b"", "JSON Lines text (--format json)"),
        (b"[1, 2]", b"", "a JSON array (xent reads JSON Lines: one object a line)"),
        ("a,b\n\u00e9".encode()[:-1], b"", "CSV text (--format csv)"),  # a cut character
        (b"\x00\x01\x02binary", b"", None),
        (b"", b"", None),
    ],
)
def test_looks_like(head: bytes, tail: bytes, seen: str | None) -> None:
    assert looks_like(head, tail) == seen


def test_row_error() -> None:
    err = RowError("e.csv", 12, "p", "null value")
    assert (err.path, err.row, err.column, err.reason) == ("e.csv", 12, "p", "null value")
    assert str(err) == "e.csv: row 12, column 'p': null value"
    assert str(RowError("e.csv", 3, None, "bad")) == "e.csv: row 3: bad"
    assert str(RowError("e.csv", 3, ("a", "b"), "bad")) == "e.csv: row 3, columns 'a', 'b': bad"
    assert isinstance(err, FileError)


def test_parquet_pieces_are_row_groups_that_pickle(tmp_path: Path) -> None:
    path, _ = logits_table(tmp_path)
    source = open_table(str(path))
    pieces = source.pieces()
    assert [p.n_rows for p in pieces] == [500] * 4 + [N - 2000]
    assert [p.row_group for p in pieces] == list(range(5))
    assert pickle.loads(pickle.dumps(pieces[2])) == pieces[2]
    assert source.count_rows() == N


def test_pieces_scored_apart_merge_into_one_pass(tmp_path: Path) -> None:
    """As a cluster would: each piece scored on its own (its own Selection, any order), the
    partials merged in row order; the figures equal score_table's and the in-memory answer,
    and the merge is associative."""
    path, _ = logits_table(tmp_path)
    x, y = _logits(), _labels()
    options: dict[str, Any] = {"input_type": "logits", "flag": {"min_confidence": 0.6}}
    source = open_table(str(path))
    pieces = source.pieces()
    starts = np.cumsum([0] + [p.n_rows or 0 for p in pieces])
    parts: dict[int, Partial] = {}
    for i in reversed(range(len(pieces))):
        mine = open_table(str(path))  # another worker
        part = score_piece(
            mine,
            pieces[i],
            select(mine, predictions="x", labels="y"),
            options,
            start=int(starts[i]),
            chunk_rows=128,
            calibration=True,
        )
        assert part is not None
        parts[i] = pickle.loads(pickle.dumps(part))  # shipped back
    merged = parts[0] + parts[1] + parts[2] + parts[3] + parts[4]
    grouped = parts[0] + ((parts[1] + parts[2]) + (parts[3] + parts[4]))
    ref = xc.score(x, y, **options)
    for result in (merged.result(), grouped.result()):
        assert_json_matches(result.as_json(), ref)
        np.testing.assert_array_equal(result.flagged_indices, ref.flagged_indices)
    whole = score_table(source, select(source, predictions="x", labels="y"), options=options)
    assert whole.as_json() == {
        k: v for k, v in merged.result().as_json().items() if k != "calibration"
    }
    one, two = merged.result().calibration, grouped.result().calibration
    assert one is not None and two is not None
    for key in ("ece", "mce", "rms_calibration_error", "brier", "nll"):
        assert one[key] == pytest.approx(two[key], rel=1e-12)
    assert parts[0].n_items == 500  # a + b left a alone
    with pytest.raises(ValueError, match="cannot merge"):
        other = xc.score(x, y, input_type="logits", confidence="margin")
        merged += Partial.of(other, clip_eps=1e-7)


def test_the_result_carries_the_summary(tmp_path: Path) -> None:
    path, _ = logits_table(tmp_path)
    source = open_table(str(path))
    result = score_table(
        source, select(source, predictions="x", labels="y"), options={"input_type": "logits"}
    )
    assert result.summary is not None
    ref = xc.Summary.from_result(xc.score(_logits(), _labels(), input_type="logits"))
    mine, theirs = result.summary.figures(), ref.figures()
    for key in ("loss_mean", "confidence_mean", "accuracy", "ece"):
        assert mine[key] == pytest.approx(theirs[key], rel=1e-12)


def test_chunks_fill_across_batches_and_stop_at_pieces(tmp_path: Path) -> None:
    """Chunks of chunk_rows rows, made of read batches of an eighth of that; the last chunk of
    a piece is short; the arrays are the file's."""
    path, _ = logits_table(tmp_path, row_group_size=1000)
    source = open_table(str(path))
    sel = select(source, predictions="x", labels="y")
    piece = source.pieces()[1]
    got = []
    for chunk in table_chunks(source, piece, sel, start=1000, chunk_rows=300):
        got.append((chunk.start, chunk.n_rows))
        np.testing.assert_array_equal(
            chunk.predictions, _logits()[chunk.start : chunk.start + chunk.n_rows]
        )
        np.testing.assert_array_equal(
            chunk.labels, _labels()[chunk.start : chunk.start + chunk.n_rows]
        )
    assert got == [(1000, 300), (1300, 300), (1600, 300), (1900, 100)]


def test_default_chunk_rows_follow_the_row_width(tmp_path: Path) -> None:
    path, _ = logits_table(tmp_path)
    source = open_table(str(path))
    assert table_chunk_rows(source, select(source, predictions="x"), source.pieces()) == (
        (1 << 22) // K
    )
    lists = tmp_path / "v.parquet"
    pq.write_table(pa.table({"v": pa.array(_logits()[:10, :5].tolist())}), lists)
    source = open_table(str(lists))
    assert table_chunk_rows(source, select(source, predictions="v"), source.pieces()) == (
        (1 << 22) // 5
    )
    spread = tmp_path / "s.parquet"
    pq.write_table(pa.table({f"p{j}": np.ones(3) for j in range(4)}), spread)
    source = open_table(str(spread))
    sel = select(source, predictions_cols="p*")
    assert table_chunk_rows(source, sel, source.pieces()) == (1 << 22) // 4


@pytest.mark.parametrize("fmt", ["parquet", "feather", "csv", "jsonl"])
def test_every_format_counts_and_reads(tmp_path: Path, fmt: str) -> None:
    p, y = _probabilities(), _labels()
    table = pa.table({**{f"p{j}": p[:, j] for j in range(K)}, "y": y})
    path = tmp_path / f"e.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=1000)
    elif fmt == "feather":
        feather.write_feather(table, path, chunksize=1000)
    elif fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    source = open_table(str(path))
    assert source.count_rows() == N
    result = score_table(source, select(source, predictions_cols="p*", labels="y"), chunk_rows=700)
    assert_json_matches(result.as_json(), xc.score(p, y))


def test_filesystems(tmp_path: Path) -> None:
    """A pyarrow FileSystem object (local, or a sub-tree of one) and file:// URIs."""
    path, _ = logits_table(tmp_path)
    ref = xc.score(_logits(), _labels(), input_type="logits")
    local = open_table(str(path), filesystem=pa_fs.LocalFileSystem())
    tree = open_table(
        "e.parquet", filesystem=pa_fs.SubTreeFileSystem(str(tmp_path), pa_fs.LocalFileSystem())
    )
    uri = open_table(path.as_uri())
    for source in (local, tree, uri):
        sel = select(source, predictions="x", labels="y")
        got = score_table(source, sel, options={"input_type": "logits"})
        assert_json_matches(got.as_json(), ref)
    assert uri.display(uri.files[0]) == path.as_uri()


def test_directories(tmp_path: Path) -> None:
    """Files in path order; another format's files and hidden files left out; a directory of
    several formats needs --format; messages name each file under the directory as given."""
    x, y = _logits(), _labels()
    root = tmp_path / "d"
    (root / "b").mkdir(parents=True)
    pq.write_table(pa.table({"x": fixed_list(x[:1000]), "y": y[:1000]}), root / "a.parquet")
    pq.write_table(pa.table({"x": fixed_list(x[1000:]), "y": y[1000:]}), root / "b" / "c.parquet")
    (root / "notes.csv").write_text("a\n1\n")
    (root / ".hidden.parquet").write_text("junk")
    with pytest.raises(FileError, match="several formats"):
        open_table(str(root))
    source = open_table(str(root), format="parquet")
    assert [Path(f).name for f in source.files] == ["a.parquet", "c.parquet"]
    assert source.display(source.files[1]) == f"{root}/b/c.parquet"
    sel = select(source, predictions="x", labels="y")
    result = score_table(source, sel, chunk_rows=300, options={"input_type": "logits"})
    assert_json_matches(result.as_json(), xc.score(x, y, input_type="logits"))
    (root / "notes.csv").unlink()
    assert open_table(str(root)).format == "parquet"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("nothing")
    with pytest.raises(FileError, match="no Parquet, Arrow, CSV or JSON Lines files"):
        open_table(str(empty))


def test_conversions(tmp_path: Path) -> None:
    """Decimals and integers as numbers; large lists; dictionary-encoded names; a column of
    numbers guessed as integers from a CSV file's first rows meeting 0.5 further down."""
    p = _probabilities()[:300]
    y = _labels()[:300]
    names = [f"c{k}" for k in range(K)]
    table = pa.table(
        {
            "d": pa.array([decimal.Decimal(str(round(v, 6))) for v in p[:, 0]]),
            "big": pa.array(p.tolist(), pa.large_list(pa.float64())),
            "n": pa.array(np.array(names)[y].tolist()).dictionary_encode(),
        }
    )
    sel = Columns(predictions="big", labels="n").select(table.schema, "t", class_names=tuple(names))
    part = sel.convert(table.to_batches()[0], "t", 0)
    np.testing.assert_array_equal(part.predictions, p)
    np.testing.assert_array_equal(part.labels, y)
    binary = (
        Columns(predictions="d").select(table.schema, "t").convert(table.to_batches()[0], "t", 0)
    )
    np.testing.assert_allclose(binary.predictions, np.round(p[:, 0], 6))
    lines = ["p,w"] + [f"0.5,{1 if i < 50_000 else 0.5}" for i in range(60_000)]
    (tmp_path / "w.csv").write_text("\n".join(lines) + "\n")
    source = open_table(str(tmp_path / "w.csv"))
    assert str(source.schema.field("w").type) == "int64"  # the guess from the first rows
    result = score_table(source, select(source, predictions="p", sample_weights="w"))
    assert result.n_items == 60_000


def test_json_columns_not_used_cannot_fail_the_read(tmp_path: Path) -> None:
    rows = [{"p": 0.25, "y": 0, "note": 1} for _ in range(30_000)]
    rows[25_000]["note"] = "a string, where numbers were"
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = open_table(str(path))
    result = score_table(source, select(source, predictions="p", labels="y"))
    assert result.n_items == 30_000


def test_an_empty_table(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), tmp_path / "e.parquet")
    source = open_table(str(tmp_path / "e.parquet"))
    with pytest.raises(FileError, match="no rows to score"):
        score_table(source, select(source, predictions="x"))


def test_selection_rules() -> None:
    schema = pa.schema(
        [("a", pa.float64()), ("b", pa.float64()), ("s", pa.struct([("f", pa.int8())]))]
    )
    with pytest.raises(FileError, match="not both"):
        Columns(predictions="a", predictions_cols="b").select(schema, "t")
    with pytest.raises(FileError, match="takes 'a' twice"):
        Columns(predictions_cols="a,a*").select(schema, "t")
    with pytest.raises(FileError, match="names no column"):
        Columns(predictions_cols=" , ").select(schema, "t")
    with pytest.raises(FileError, match="column 's' holds struct"):
        Columns(predictions="a", labels="s").select(schema, "t")
    sel = Columns(predictions_cols="b, a", labels="a", ids="a").select(schema, "t")
    assert sel.predictions == ("b", "a") and sel.columns == ["b", "a"]
