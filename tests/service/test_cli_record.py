"""``xent score ... --url URL --stream NAME``: an offline result recorded in a running
``xent serve`` (a real process), so that it counts in the stream's figures and dashboard.

The service is asked before scoring (a wrong address or key: exit 2, nothing scored or
recorded); the result's Summary is posted after (``recorded`` in the output; exit 1 when it
could not be); an Idempotency-Key records a re-run once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import xentcore as xc
from service.cli import main
from service.client import Client
from tests.support.arrays import labels, logits
from tests.support.server import Server, free_port, xent_serve

KEY = "offline-key-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with xent_serve(tmp_path_factory.mktemp("serve"), env={"XENT_API_KEYS": KEY}) as running:
        yield running


@pytest.fixture
def data(tmp_path: Path) -> Path:
    x = logits(11)
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])})
    path = tmp_path / "eval.parquet"
    pq.write_table(table.append_column("y", pa.array(labels(12))), path, row_group_size=500)
    return path


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main(["score", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ARGS = ["--predictions-col", "x", "--labels-col", "y", "--input-type", "logits"]


def stream_total(server: Server, stream: str) -> dict[str, Any] | None:
    r = httpx.get(
        f"{server.url}/v1/streams/{stream}/summary", headers={"X-API-Key": KEY}, timeout=10
    )
    if r.status_code == 404:
        return None
    r.raise_for_status()
    total: dict[str, Any] = r.json()["total"]
    return total


def test_the_result_is_recorded_in_the_stream(
    capsys: pytest.CaptureFixture[str], server: Server, data: Path, key_file: Path
) -> None:
    argv = [data, *ARGS, "--url", server.url, "--stream", "nightly-a", "--api-key-file", key_file]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["recorded"] is True
    ref = xc.score(logits(11), labels(12), input_type="logits")
    total = stream_total(server, "nightly-a")
    assert total is not None
    assert total["n_items"] == ref.n_items
    assert total["loss_mean"] == pytest.approx(ref.loss_mean, rel=1e-12)
    assert total["loss_mean"] == pytest.approx(answer["loss"]["mean"], rel=1e-15)
    assert total["accuracy"] == ref.accuracy
    assert total["flagged"] == answer["flagged"]["count"]
    # the human report says where it went
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.splitlines()[-1] == (
        f"recorded    stream nightly-a at {server.url} (2,345 items, one batch)"
    )


def test_an_idempotency_key_records_a_rerun_once(
    capsys: pytest.CaptureFixture[str], server: Server, data: Path
) -> None:
    argv = [data, *ARGS, "--url", server.url, "--stream", "nightly-b", "--api-key", KEY]
    for _ in range(2):
        assert run(capsys, *argv, "--idempotency-key", "job-42")[0] == 0
    with Client(server.url, api_key=KEY) as xent:
        (stream,) = [s for s in xent.streams().streams if s["stream"] == "nightly-b"]
    assert stream["n_batches"] == 1


def test_a_wrong_key_or_address_stops_before_scoring(
    capsys: pytest.CaptureFixture[str], server: Server, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "items.parquet"
    argv = [data, *ARGS, "--stream", "nightly-c", "--out", out]
    code, stdout, err = run(capsys, *argv, "--url", server.url, "--api-key", "wrong")
    assert (code, stdout) == (2, "")
    assert err == (
        f"xent score: --url {server.url}: HTTP 401: the service wants a valid API key "
        "(--api-key-file FILE); nothing was scored\n"
    )
    nowhere = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, *argv, "--url", nowhere, "--api-key", KEY)
    assert code == 2 and err.startswith(f"xent score: --url {nowhere}: cannot reach it")
    assert not out.exists() and stream_total(server, "nightly-c") is None


def test_a_failed_recording_is_reported_after_the_result(
    capsys: pytest.CaptureFixture[str],
    server: Server,
    data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service went away after the check: the result is printed (``recorded: false``),
    the reason goes to stderr, the exit status is 1."""

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(Client, "record_summary", gone)
    monkeypatch.setattr("service.cli._RECORD_WAITS", (0.0,))
    argv = [data, *ARGS, "--url", server.url, "--stream", "nightly-d", "--api-key", KEY]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 1
    assert json.loads(out)["recorded"] is False
    assert err == (
        "xent score: not recorded in stream 'nightly-d': cannot reach it: connection refused\n"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--url", "http://x"], "--url and --stream go together"),
        (["--stream", "s"], "--url and --stream go together"),
        (["--api-key", "k"], "--api-key is for recording the result: give --url and --stream"),
        (["--url", "http://x", "--stream", "a b"], "--stream 'a b': a stream name is 1 to 128"),
        (["--url", "localhost:8000", "--stream", "s"], "--url 'localhost:8000': expected http://"),
    ],
)
def test_flags_that_do_not_fit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], message: str
) -> None:
    np.save(tmp_path / "p.npy", np.full((4, 2), 0.5))
    code, _, err = run(capsys, tmp_path / "p.npy", *flags)
    assert code == 2 and err.startswith(f"xent score: {message}"), err


def test_an_api_key_file_must_hold_a_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    argv = [data, *ARGS, "--url", "http://127.0.0.1:9", "--stream", "s"]
    code, _, err = run(capsys, *argv, "--api-key-file", empty)
    assert code == 2 and "holds no key on its first line" in err
    code, _, err = run(capsys, *argv, "--api-key-file", tmp_path / "missing")
    assert code == 2 and "cannot read it" in err
