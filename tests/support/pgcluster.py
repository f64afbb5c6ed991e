"""A private PostgreSQL cluster for fault tests: started, frozen, thawed and stopped by the test.

Never the shared server on 5432: ``initdb`` makes a new cluster in a temporary directory, run by
an unprivileged user (``postgres`` when the tests run as root; ``initdb`` refuses root), on a
free port of 127.0.0.1. :meth:`PrivateCluster.freeze` sends SIGSTOP to the postmaster and every
backend (a database that hangs rather than crashes); :meth:`thaw` sends SIGCONT.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port

__all__ = ["PrivateCluster", "cluster_unavailable", "private_cluster"]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _runner() -> list[str]:
    """The prefix that runs a command as an unprivileged user."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def cluster_unavailable() -> str | None:
    """Why no private cluster can be made here, or None."""
    if _bindir() is None:
        return "initdb not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root without runuser"
    return None


@dataclass
class PrivateCluster:
    """A running private cluster: its URL and data directory."""

    url: str
    data: Path
    bindir: Path

    def _pids(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [postmaster, *(int(c) for c in children)]

    def freeze(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """Start a fresh cluster (trust auth, database ``postgres``); stop and delete it on exit."""
    bindir = _bindir()
    assert bindir is not None, cluster_unavailable()
    root = Path(tempfile.mkdtemp(prefix="xent-pg-"))
    data = root / "data"
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    run = _runner()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(
        [
            *run,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*run, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
         str(root / "log"), "start"],
        check=True,
        capture_output=True,
        env=env,
    )  # fmt: skip
    cluster = PrivateCluster(f"postgresql://postgres@127.0.0.1:{port}/postgres", data, bindir)
    try:
        yield cluster
    finally:
        try:
            cluster.thaw()
        except (OSError, ValueError):
            pass
        subprocess.run(
            [*run, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            env=env,
            check=False,
        )
        time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
