"""Names the command line checks before anything heavy is imported: log levels and the one
stream-name pattern (``service.schemas.fields`` and ``service.settings`` take them from here,
so that ``xent score`` need not import the request models or the settings to check a flag)."""

from __future__ import annotations

from typing import Literal

__all__ = ["STREAM_PATTERN", "LogLevel"]

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

#: A monitoring stream name: 1 to 128 of ``A-Z a-z 0-9 _ . : -``.
STREAM_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
