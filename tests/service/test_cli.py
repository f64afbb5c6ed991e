"""``xent serve`` as a real process on a free loopback port, the argument parser, ``--version``,
and settings that fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import xentcore
from service.cli import build_parser, main
from service.recording import kept_batch
from service.store.migrate import head_revision
from service.store.sql import SqlStore
from tests.support.server import xent_serve
from xentcore.summary import BatchSummary, summarize
from xentcore.types import ScoreOptions
from xentcore.validate import check_batch


def test_xent_serve_real_process(tmp_path: Path) -> None:
    # On leaving, xent_serve checks the exit status (0, or -SIGTERM: uvicorn shuts down
    # gracefully, then re-raises the signal so the exit status reports it) and that the log
    # has no traceback.
    env = {"XENT_API_KEYS": "secret"}
    with xent_serve(tmp_path, "--log-level", "warning", env=env) as server:
        url = server.url
        body = {
            "predictions": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
            "labels": [0, 2],
            "stream": "cli-test",
        }
        assert httpx.post(f"{url}/v1/score", json=body).status_code == 401
        response = httpx.post(
            f"{url}/v1/score", json=body, headers={"Authorization": "Bearer secret"}
        )
        assert response.status_code == 200
        out = response.json()
        assert out["loss"]["n_scored"] == 2 and out["recorded"] is True
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
        assert "server" not in response.headers
    assert (tmp_path / "data").is_dir()


def test_parser() -> None:
    args = build_parser().parse_args(
        ["serve", "--port", "9", "--workers", "2", "--log-level", "debug"]
    )
    assert (args.command, args.port, args.workers, args.log_level, args.host) == (
        "serve",
        9,
        2,
        "debug",
        None,
    )
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([])
    assert caught.value.code == 2


def test_invalid_setting_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XENT_MAX_ITEMS", "0")
    assert main(["serve", "--port", "1"]) == 2
    assert "XENT_PORT" not in os.environ
    assert "XENT_MAX_ITEMS" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"xent {xentcore.__version__}"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://user:hunter2@db.example/xent", "'mysql'"),
        ("postgresql+psycopg2://user:hunter2@db.example/xent", "'postgresql+psycopg2'"),
        ("hunter2@db.example/xent", "no scheme"),
    ],
)
def test_unsupported_database_url_stops_serve_with_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, named: str
) -> None:
    monkeypatch.setenv("XENT_DATABASE_URL", url)
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "XENT_DATABASE_URL" in err and named in err
    assert "hunter2" not in err, "the message never shows the URL (it may hold a password)"
    assert "Value error" not in err


def test_unsupported_database_url_real_process_exits_at_once(tmp_path: Path) -> None:
    env = {**os.environ, "XENT_DATABASE_URL": "mysql://root@127.0.0.1/test"}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unsupported scheme 'mysql'" in done.stderr


def test_serve_warns_about_unknown_variables(tmp_path: Path) -> None:
    env = {"XENT_API_KEY": "typo", "XENT_MAX_ITEM": "5"}
    with xent_serve(tmp_path, env=env) as server:
        log = server.log.read_text()
        # the typo leaves the server open: it says so, and names the setting that was meant
        assert httpx.post(f"{server.url}/v1/score", json={"predictions": [0.9]}).status_code == 200
    assert "XENT_API_KEY is not a setting (did you mean XENT_API_KEYS?)" in log
    assert "XENT_MAX_ITEM is not a setting (did you mean XENT_MAX_ITEMS?)" in log
    assert "no XENT_API_KEYS: every route is open" in log


def test_db_commands_upgrade_report_and_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XENT_DATA_DIR", str(tmp_path))
    assert main(["db", "current"]) == 0
    assert "none (not under Alembic yet)" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"store at revision {head_revision()}"
    assert main(["db", "upgrade"]) == 0
    assert "(already)" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert f"store revision {head_revision()}" in capsys.readouterr().out
    store = SqlStore.from_url(f"sqlite:///{tmp_path}/xent.db")
    old = time.time() - 40 * 86400
    assert store.record(stream="s", task="binary", summary=BatchSummary(n_items=1), at=old)
    assert main(["db", "expire"]) == 0
    assert store.batches_in("s") == []  # past the default 30 days of raw rows
    assert [i.n_batches for i in store.streams().infos] == [1]  # rollups kept 400 days
    store.close()


def test_db_index_writes_the_queued_lookup_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XENT_DATA_DIR", str(tmp_path))
    store = SqlStore.from_url(f"sqlite:///{tmp_path}/xent.db")
    p = np.array([[0.9, 0.1], [0.3, 0.7]])
    batch = check_batch(p, None, ScoreOptions())
    result = xentcore.score(p)
    kept = kept_batch(batch, result, ["a", "b"], audit=None, audit_rate=None, max_classes=8)
    for _ in range(3):
        store.record(stream="s", task=result.task, summary=summarize(result), kept=kept)
    assert main(["db", "index"]) == 0
    assert capsys.readouterr().out.strip() == "lookup keys written for 6 kept items"
    assert store.index_items() == 0
    assert main(["db", "index"]) == 0
    assert capsys.readouterr().out.strip() == "lookup keys written for 0 kept items"
    store.close()


def test_db_commands_fail_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XENT_RETENTION", "30 days")
    assert main(["db", "upgrade"]) == 2
    assert "invalid XENT_RETENTION" in capsys.readouterr().err
    monkeypatch.delenv("XENT_RETENTION")
    monkeypatch.setenv("XENT_DATABASE_URL", "postgresql://user:hunter2@127.0.0.1:1/none")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xent db: OperationalError") and "hunter2" not in err
