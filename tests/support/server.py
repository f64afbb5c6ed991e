"""``xent serve`` as a real process on a free loopback port, started and stopped by a test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Server", "free_port", "xent_serve"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    script = shutil.which("xent")
    return [script] if script else [sys.executable, "-m", "service.cli"]


@dataclass
class Server:
    """A running server: its base URL, process and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    exit_code: int | None = None


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"xent serve exited with {server.proc.returncode}: {server.log.read_text()}"
            )
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"xent serve did not become healthy: {server.log.read_text()}")


@contextmanager
def xent_serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30.0
) -> Iterator[Server]:
    """Run ``xent serve`` on a free 127.0.0.1 port with its data under ``tmp_path``.

    The server runs in a process group of its own; it is sent SIGTERM on exit (SIGKILL to the
    group if it has not stopped within 20 s), so no worker outlives the test.
    """
    port = free_port()
    full_env = {**os.environ, "XENT_DATA_DIR": str(tmp_path / "data"), **(env or {})}
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_healthy(server, timeout)
        yield server
    finally:
        proc.terminate()
        try:
            server.exit_code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            server.exit_code = proc.wait(timeout=10)
