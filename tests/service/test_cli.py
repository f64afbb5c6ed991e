"""``xent serve`` as a real process on a free loopback port, and the argument parser."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from service.cli import build_parser, main
from tests.support.server import xent_serve


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
