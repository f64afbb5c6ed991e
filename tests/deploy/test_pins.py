"""The test environment is pinned: the README's test command installs ``constraints-test.txt``,
whose pins cover every dependency, agree with the runtime pins of ``constraints.txt``, and are
the versions actually installed in the environment running these tests.

The last test is the proof that the command installs the pins: it fails in an environment made
any other way (a plain ``pip install -e ".[test]"`` takes the newest releases), and says which
distribution differs and how to get the pinned one.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "constraints.txt"
TEST_PINS = ROOT / "constraints-test.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
TEST_COMMAND = 'pip install -c constraints-test.txt -e ".[test]" && python -m pytest'


def pins(path: Path) -> dict[str, str]:
    """{canonical name: version} of a constraints file; every line must be an exact pin."""
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[\w.+!-]+", version), (
            f"{path.name}:{number}: {line!r} is not an exact pin"
        )
        out[canonicalize_name(name)] = version
    return out


def _fenced_commands(text: str) -> list[str]:
    """The single-line bodies of the README's ```sh blocks, in order."""
    return [m.group(1).strip() for m in re.finditer(r"```sh\n([^\n]*)\n```", text)]


def test_readme_opens_with_the_pinned_test_command() -> None:
    commands = _fenced_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert commands[:2] == ["pip install . && xent serve", TEST_COMMAND]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert TEST_COMMAND in lines
    after = lines[lines.index(TEST_COMMAND) + 1 :]
    assert "ruff check ." in after and "mypy" in after


def test_every_dependency_and_test_dependency_is_pinned() -> None:
    pinned = pins(TEST_PINS)
    requirements = [
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"]["test"],
    ]
    for req in map(Requirement, requirements):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"constraints-test.txt has no pin for {req.name}"
        assert Version(pinned[name]) in req.specifier, f"{name}=={pinned[name]} breaks {req}"
    assert "xentcore" not in pinned, "the project itself is installed from the work tree"


def test_runtime_pins_are_the_same_in_both_files() -> None:
    runtime, test = pins(RUNTIME), pins(TEST_PINS)
    differ = {n: (v, test[n]) for n, v in runtime.items() if n in test and test[n] != v}
    assert not differ, f"constraints.txt vs constraints-test.txt: {differ}"
    missing = sorted(set(runtime) - set(test) - {"pip", "setuptools", "wheel"})
    assert not missing, f"runtime pins missing from constraints-test.txt: {missing}"


def test_pin_files_say_how_to_regenerate_and_upgrade() -> None:
    header = TEST_PINS.read_text(encoding="utf-8").split("\n\n", 1)[0]
    assert "bash deploy/constraints.sh --upgrade" in header
    script = (ROOT / "deploy" / "constraints.sh").read_text(encoding="utf-8")
    assert "--upgrade" in script and "constraints-test.txt" in script
    assert "python -m pytest" in script, "upgrading runs the suite on the new pins"


@pytest.mark.parametrize("name", sorted(pins(TEST_PINS)))
def test_installed_version_is_the_pinned_one(name: str) -> None:
    wanted = pins(TEST_PINS)[name]
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is pinned ({wanted}) but not installed: run `{TEST_COMMAND}`")
    assert installed == wanted, (
        f"{name} {installed} is installed, constraints-test.txt pins {wanted}: "
        f"run `{TEST_COMMAND}` (or `bash deploy/constraints.sh --upgrade` to move the pins)"
    )
