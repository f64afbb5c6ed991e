"""``xent serve`` as a real process on a free loopback port, and the argument parser."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.cli import build_parser, main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    script = shutil.which("xent")
    return [script] if script else [sys.executable, "-m", "service.cli"]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"xent serve exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"xent serve did not become healthy: {log.read_text()}")


def test_xent_serve_real_process(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "XENT_DATA_DIR": str(tmp_path / "data"), "XENT_API_KEYS": "secret"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
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
    finally:
        proc.terminate()
        code = proc.wait(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Traceback" not in log.read_text()
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
