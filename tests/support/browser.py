"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by ``playwright``.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright`` package (a test
extra; its own browser download is never used). :func:`playwright` skips with a message where
either is missing, except under CI, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = os.environ.get("XENT_TEST_CHROMIUM") or shutil.which("chromium") or ""
#: No sandbox (root in CI), and none of Chromium's own calls home (the network is closed).
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def playwright() -> Any:
    """``playwright.sync_api.sync_playwright``, or skip (fail under CI) with what is missing."""
    missing = []
    if not CHROMIUM:
        missing.append("chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (pip install -c constraints-test.txt -e '.[test]')")
        sync_playwright = None
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright
