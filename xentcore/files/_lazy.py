"""pyarrow, imported on first use.

``import xentcore.files`` (and so the ``xent`` command, whose ``serve`` and ``db`` never read a
table) does not load pyarrow: it costs about 80 MB of memory and 0.3 s. Each name here stands
for a pyarrow module and imports it when one of its attributes is first asked for (pyarrow has
no type information, so nothing is lost to mypy: its values are ``Any`` either way).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ds", "pa", "pa_csv", "pa_fs", "pa_json", "pc", "pq"]


class LazyModule:
    """A module imported by its first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"


pa = LazyModule("pyarrow")
pc = LazyModule("pyarrow.compute")
ds = LazyModule("pyarrow.dataset")
pa_fs = LazyModule("pyarrow.fs")
pa_csv = LazyModule("pyarrow.csv")
pa_json = LazyModule("pyarrow.json")
pq = LazyModule("pyarrow.parquet")
