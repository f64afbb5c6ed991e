"""Durations in the one form the API and the settings share: a positive integer and a unit.

``30s``, ``5m``, ``1h``, ``30d``, ``2w`` (seconds, minutes, hours, days, weeks): the ``bucket``
of a summary, ``XENT_RETENTION`` and every other duration setting.
"""

from __future__ import annotations

import re

__all__ = ["UNITS", "parse_duration"]

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_FORM = re.compile(r"\s*(\d{1,9})\s*([smhdw])\s*")


def parse_duration(value: str) -> int:
    """``"5m"`` -> 300 (seconds); ValueError for anything but a positive integer and a unit."""
    m = _FORM.fullmatch(value)
    if not m or int(m.group(1)) == 0:
        raise ValueError("expected a positive duration such as 30s, 5m, 1h, 30d or 2w")
    return int(m.group(1)) * UNITS[m.group(2)]
