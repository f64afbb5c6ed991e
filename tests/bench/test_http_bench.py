"""bench/httpfloor.py: its parsing of wrk's output and its verdicts, and a tiny real run.

The real run needs wrk (Debian package ``wrk``); without it the test is skipped: tests never
install packages, and the bench is not part of CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.httpfloor import Row, Run, describe_failures, parse_wrk, verdict

ROOT = Path(__file__).resolve().parents[2]

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:40000/v1/score
  1 threads and 16 connections
Requests/sec:  21000.00
XENT-WRK {"requests": 21000, "duration_us": 1000000, "p50_us": 700.0, "p90_us": 900.0, \
"p99_us": 1500.0, "max_us": 9000.0, "non2xx": {"503": 2, "413": 1}, "connect": 0, "read": 1, \
"write": 0, "timeout": 2}
"""


def run(rps: float, p99_ms: float = 1.0, shed: int = 0) -> Run:
    return Run(int(rps) + shed, 1.0, 0.5, p99_ms, {503: shed} if shed else {}, {})


def test_parse_wrk_reads_the_done_line() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed == Run(21000, 1.0, 0.7, 1.5, {413: 1, 503: 2}, {"read": 1, "timeout": 2})
    assert parsed.rps == 20997  # 2xx responses only
    assert parsed.failures == 6
    assert (
        describe_failures([parsed, parsed]) == "2 x 413, 4 x 503, 2 read errors, 4 timeout errors"
    )


def test_parse_wrk_without_the_line_says_so() -> None:
    with pytest.raises(RuntimeError, match="no XENT-WRK line"):
        parse_wrk("Requests/sec: 1.00\n")


def test_verdict_against_the_targets() -> None:
    def row(batch: str, workers: int, service: Run) -> Row:
        return Row(batch, 100, workers, [run(10_000)], [service])

    assert verdict(row("32x10", 1, run(4_000, p99_ms=9.9)), connections=16) == "PASS"
    assert verdict(row("1-item", 1, run(3_999)), connections=16).startswith("FAIL (ratio")
    assert "p99 10.0 ms" in verdict(row("32x10", 1, run(5_000, p99_ms=10.0)), connections=16)
    assert verdict(row("32x10", 2, run(1_000)), connections=16) == "no target"
    assert verdict(row("1000x10", 1, run(1_000)), connections=16) == "no target"
    assert verdict(row("32x10", 1, run(1_000)), connections=8) == "no target"
    failed = verdict(row("1000x10", 1, run(1_000, shed=2)), connections=16)
    assert failed == "FAIL: service 2 x 503"


@pytest.mark.skipif(
    shutil.which("wrk") is None,
    reason="wrk is not installed (Debian: apt-get install -y wrk); the HTTP bench needs it",
)
def test_a_tiny_run_prints_the_table() -> None:
    command = [sys.executable, "-m", "bench.httpfloor", "--duration", "1", "--rounds", "1"]
    done = subprocess.run(
        [*command, "--only", "1-item"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CPU: " in done.stdout and "wrk " in done.stdout
    rows = re.findall(r"^\| 1 item \(1x10\), [^|]+\| (\d) \|(.*)\|$", done.stdout, re.M)
    assert [workers for workers, _ in rows] == ["1", "2"], done.stdout
    for _, cells in rows:
        *figures, target = (cell.strip() for cell in cells.split("|"))
        assert all(re.search(r"\d", figure) for figure in figures), cells
        assert target == "PASS" or target.startswith("FAIL (") or target == "no target", cells


def test_without_wrk_and_root_it_stops_with_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.httpfloor

    monkeypatch.setattr(bench.httpfloor.shutil, "which", lambda name: None)
    monkeypatch.setattr(bench.httpfloor.os, "geteuid", lambda: 1000)  # not root: installs nothing
    with pytest.raises(SystemExit, match=r"apt-get install -y wrk"):
        bench.httpfloor.ensure_wrk()
