"""``xent serve`` as a real process on a free loopback port, started and stopped by a test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
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
    """The ``xent`` script of the environment running the tests (never another one first on
    PATH: that may be another checkout's), else ``python -m service.cli``."""
    script = Path(sys.executable).parent / "xent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


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
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    unset: Sequence[str] = (),
    timeout: float = 30.0,
    check_exit: bool = True,
) -> Iterator[Server]:
    """Run ``xent serve`` on a free 127.0.0.1 port with its data under ``tmp_path``.

    ``args`` are more flags for ``xent serve``; ``env`` is added to this process's environment
    and the variables named in ``unset`` are then removed from it. The server must answer
    /healthz within ``timeout`` seconds.

    The server runs in a process group of its own; it is sent SIGTERM on exit, so no worker
    outlives the test. If it has not stopped within 20 s, the group gets SIGKILL and an
    AssertionError (with the log) is raised. With ``check_exit``, a server that stopped must
    also have exited with 0 or -SIGTERM (uvicorn re-raises the signal after a graceful
    shutdown) and have no "Traceback" in its log; that is checked only if the ``with`` body
    did not raise.
    """
    port = free_port()
    full_env = {**os.environ, "XENT_DATA_DIR": str(tmp_path / "data"), **(env or {})}
    for name in unset:
        full_env.pop(name, None)
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
        except subprocess.TimeoutExpired as err:
            os.killpg(proc.pid, signal.SIGKILL)
            server.exit_code = proc.wait(timeout=10)
            raise AssertionError(f"xent serve did not stop on SIGTERM: {log.read_text()}") from err
    if check_exit:
        text = log.read_text()
        if server.exit_code not in (0, -signal.SIGTERM):
            raise AssertionError(f"xent serve exited with {server.exit_code}: {text}")
        if "Traceback" in text:
            raise AssertionError(f"a traceback in the log of xent serve: {text}")
