"""The scripts under ``examples/`` run as a user runs them, and report what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import xent_serve

ROOT = Path(__file__).resolve().parent.parent
LOOP = ROOT / "examples" / "risk_control_loop.py"
NUMBER = r"(\d+(?:\.\d+)?)"

pytest.importorskip("sklearn", reason="the examples train scikit-learn models")


def run(*args: str) -> str:
    """Run the example from the repository root; its stdout, after checking it exited 0."""
    done = subprocess.run(
        [sys.executable, str(LOOP), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def figure(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    value = float(match.group(1))
    assert 0 <= value <= 1, f"{pattern!r}: {value} outside [0, 1]\n{text}"
    return value


def check_report(out: str, *, alpha: float, delta: float) -> None:
    assert figure(rf"guarantee: .*<= alpha = {NUMBER}", out) == pytest.approx(alpha)
    assert figure(rf"with probability >= {NUMBER}", out) == pytest.approx(1 - delta)
    figure(rf"realized error among accepted: {NUMBER}", out)
    figure(rf"AURC of the calibration set: {NUMBER}", out)
    assert figure(rf"risk_upper_bound {NUMBER}", out) <= alpha  # the first split is feasible


def test_risk_control_loop_starts_its_own_server() -> None:
    out = run("--repeats", "2", "--alpha", "0.03", "--delta", "0.2")
    check_report(out, alpha=0.03, delta=0.2)
    assert "xent serve, SQLite in a temporary directory" in out
    assert re.search(r"2 random splits: realized error > alpha in [0-2] ", out), out


def test_risk_control_loop_against_a_given_server(tmp_path: Path) -> None:
    with xent_serve(tmp_path) as server:
        out = run("--url", server.url, "--repeats", "1")
    check_report(out, alpha=0.02, delta=0.1)
    assert f"{server.url} (your server)" in out
    assert "random splits" not in out
