"""The image's Python environment, built outside Docker the way the Dockerfile builds it, serves.

The builder stage's own instructions are replayed in a temporary directory: its ``ARG`` paths
point there, ``COPY`` copies what the build context (after .dockerignore) holds, and each ``RUN``
line runs verbatim under ``/bin/sh -c`` with the stage's ``ENV`` -- except the one that installs
Debian packages with apt-get (the C compiler), which is checked instead: this host must have those
packages already (the test skips, saying which, when it does not). Then ``xent`` from the
resulting venv runs with the final stage's ``ENV`` (paths moved into the temporary directory,
two workers as in docker-compose.yml), answers /healthz, the image's own HEALTHCHECK command,
a scored batch under a stream, /readyz and /metrics, and is stopped through its Popen handle.

Needs PyPI (or the machine's package mirror): marked ``network``, deselect with
``-m "not network"``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from packaging.utils import canonicalize_name

from tests.deploy.deployfiles import (
    ROOT,
    Stage,
    copy_context,
    dockerignore_patterns,
    exec_form,
)
from tests.support.server import free_port

pytestmark = pytest.mark.network

#: Variables of the developer's shell that would change what pip or Python do in the replay.
_SHELL_ONLY = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV", "CONDA_PREFIX")


def _python_shim(directory: Path) -> Path:
    """A ``python`` on PATH that is this interpreter (the image's is /usr/local/bin/python)."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    return directory


def _require_debian_packages(command: str) -> None:
    """Skip unless the Debian packages that ``apt-get install`` in ``command`` names are here."""
    install = command.partition("apt-get install")[2].partition("&&")[0].split()
    packages = [word for word in install if not word.startswith("-")]
    assert packages, f"no package named in: {command}"
    if shutil.which("dpkg-query") is None:
        pytest.skip(f"no dpkg-query: cannot tell whether {' '.join(packages)} are installed")
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        ).stdout
        if status != "install ok installed":
            pytest.skip(f"the builder stage needs Debian's {package}: apt-get install {package}")


def _replay_builder(builder: Stage, work: Path) -> dict[str, Path]:
    """Run the builder stage under ``work``; its ARG paths, resolved there, by name."""
    paths = {name: work / name.lower() for name in builder.arg_defaults()}
    env = {k: v for k, v in os.environ.items() if k not in _SHELL_ONLY}
    env |= builder.env() | {name: str(path) for name, path in paths.items()}
    env["PATH"] = f"{_python_shim(work / 'shim')}{os.pathsep}{env.get('PATH', '')}"
    rules = dockerignore_patterns((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    cwd = work / "context-root"
    for ins in builder.instructions:
        if ins.keyword == "WORKDIR":
            cwd = work / "fs" / ins.args.lstrip("/")
            cwd.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            *sources, destination = [w for w in ins.args.split() if not w.startswith("--")]
            target = cwd / destination
            for source in sources:
                path = ROOT / source
                into = (
                    target / path.name if destination.endswith("/") and path.is_file() else target
                )
                copy_context(path, into, rules)
        elif ins.keyword == "RUN" and ins.args.startswith("apt-get "):
            _require_debian_packages(ins.args)
        elif ins.keyword == "RUN":
            done = subprocess.run(
                ["/bin/sh", "-c", ins.args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
            )
            assert done.returncode == 0, (
                f"Dockerfile:{ins.line} RUN failed ({done.returncode}):\n{ins.args}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
    return paths


def _runtime_env(final: Stage, venv: Path, work: Path, port: int) -> dict[str, str]:
    """The final stage's ENV with its container paths moved under ``work``: what `docker run`
    gives the process, on a loopback port."""
    env = final.env()
    data = work / "data"
    data.mkdir()
    moved = {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "XENT_HOST": "127.0.0.1",
        "XENT_PORT": str(port),
        "XENT_DATA_DIR": str(data),
        "XENT_WORKERS": "2",  # as docker-compose.yml runs it: prometheus_client multiprocess
        "PROMETHEUS_MULTIPROC_DIR": str(work / "tmp" / "prometheus"),
    }
    assert set(moved) - {"HOME", "LANG"} <= set(env) | {"XENT_WORKERS"}
    return env | moved


@contextmanager
def _serving(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """Run ``argv`` until /healthz answers; stop it (SIGTERM, then SIGKILL to its own group)."""
    url = f"http://{env['XENT_HOST']}:{env['XENT_PORT']}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"xent serve exited: {log.read_text()}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no /healthz within 60 s: {log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of this Popen only
            code = proc.wait(timeout=10)
        assert code in (0, -signal.SIGTERM), f"exit {code}: {log.read_text()[-3000:]}"


def test_image_environment_builds_and_serves(stages: list[Stage], tmp_path: Path) -> None:
    builder, final = stages[0], stages[-1]
    paths = _replay_builder(builder, tmp_path)
    venv = paths["VENV"]

    # Only what runs: no pip in the runtime venv, and exactly the pinned distributions in it.
    assert not (venv / "bin" / "pip").exists()
    pip = [str(paths["BUILD_VENV"] / "bin" / "pip"), "--python", str(venv / "bin" / "python")]
    listed = subprocess.run(
        [*pip, "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    installed = dict(line.split("==") for line in listed)
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    for name, version in installed.items():
        if canonicalize_name(name) != "xentcore":
            assert pins.get(canonicalize_name(name)) == version, f"{name}=={version} unpinned"
    assert "xentcore" in {canonicalize_name(n) for n in installed}
    native = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-I",
            "-c",
            "import xentcore._kernels as k; print(k.NATIVE)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert native.stdout.strip() == "True", f"row kernels not compiled: {native.stderr[-2000:]}"

    port = free_port()
    env = _runtime_env(final, venv, tmp_path, port)
    (workdir,) = [ins.args for ins in final.all("WORKDIR")][-1:]
    assert workdir == final.env()["XENT_DATA_DIR"]
    cmd = exec_form(final.all("CMD")[-1].args) or []
    argv = [str(venv / "bin" / cmd[0]), *cmd[1:]]
    with _serving(argv, env, Path(env["XENT_DATA_DIR"]), tmp_path / "serve.log") as url:
        health = exec_form(final.all("HEALTHCHECK")[-1].args.partition("CMD ")[2].strip()) or []
        assert health[0] == "python"
        check = subprocess.run(
            [str(venv / "bin" / "python"), *health[1:]], env=env, capture_output=True, timeout=30
        )
        assert check.returncode == 0, check.stderr

        body = {"predictions": [0.9, 0.2, 0.6], "labels": [1, 0, 0], "stream": "image-env"}
        scored = httpx.post(f"{url}/v1/score", json=body, timeout=30)
        assert scored.status_code == 200, scored.text
        assert scored.json()["n_items"] == 3 and scored.json()["recorded"] is True
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'xent_stream_items_scored_total{stream="image-env",task="binary"} 3.0' in metrics
    assert (Path(env["XENT_DATA_DIR"]) / "xent.db").is_file(), "SQLite store in the data dir"
