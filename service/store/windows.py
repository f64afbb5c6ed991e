"""How a time window is read from rollups: a few aligned pieces, whatever the history's length.

A window [since, until) with bucket width ``w`` is cut into pieces, each read from one source:

- the coarsest rollup level ``L`` (1 day, 1 hour or 1 minute) that divides ``w`` (all three when
  there is no bucket) covers the aligned middle [ceil_L(since), floor_L(until)); its rows are
  grouped into buckets by ``start // w``;
- the two edges left over are covered the same way by the next finer levels, down to the partial
  minutes at each end, which are summed from the raw batch rows.

Because ``w`` is a multiple of every level used, no rollup row straddles a bucket boundary, so
the grouped sums are exact. A read costs one index range per piece (at most 7) and
O(window / L) rollup rows, that is O(buckets x w / L): w / L is 1 for widths of whole days,
hours or minutes of the level, at most 23 for whole hours, at most 59 for whole minutes that are
not whole hours... and O(batches in the window) for widths that are not whole minutes (``30s``,
``90s``), which are summed from raw rows only.

Raw rows are kept for ``XENT_RETENTION`` only: an edge older than that is rounded down to its
minute (the minute rollup then stands in for the raw rows), and the read says so by returning
the window it actually covered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.store.schema import LEVELS

__all__ = ["Piece", "Window", "plan", "top_level"]


@dataclass(frozen=True)
class Piece:
    """One range to sum: rollup rows of ``level`` with lo <= start < hi, or raw batch rows
    (``level`` None) with lo <= time < hi."""

    level: int | None
    lo: float
    hi: float


@dataclass(frozen=True)
class Window:
    """The window actually read (edges older than raw retention rounded down to the minute)
    and its pieces."""

    since: float
    until: float
    pieces: tuple[Piece, ...]


def top_level(width: float | None) -> int | None:
    """The coarsest rollup level that divides ``width`` (seconds), None when none does
    (the window is then summed from raw rows). Without a width, the coarsest level."""
    if width is None:
        return LEVELS[0]
    if width != int(width):
        return None
    for level in LEVELS:
        if int(width) % level == 0:
            return level
    return None


def _floor(t: float, step: int) -> float:
    return float(math.floor(t / step) * step)


def _decompose(lo: float, hi: float, levels: tuple[int, ...]) -> list[Piece]:
    """Aligned pieces covering [lo, hi): the coarsest level's whole periods, then the edges."""
    if lo >= hi:
        return []
    if not levels:
        return [Piece(None, lo, hi)]
    step, finer = levels[0], levels[1:]
    a, b = float(math.ceil(lo / step) * step), _floor(hi, step)
    if a >= b:
        return _decompose(lo, hi, finer)
    return [Piece(step, a, b), *_decompose(lo, a, finer), *_decompose(b, hi, finer)]


def plan(since: float, until: float, width: float | None, *, raw_horizon: float) -> Window:
    """The pieces that sum [since, until) into buckets of ``width`` seconds.

    ``raw_horizon``: raw rows older than this are (or may be) deleted by retention; an edge
    before it is rounded down to its minute so that the minute rollup covers it.
    """
    if since < raw_horizon:
        since = _floor(since, 60)
    if until < raw_horizon:
        until = _floor(until, 60)
    top = top_level(width)
    levels = () if top is None else tuple(level for level in LEVELS if level <= top)
    return Window(since, until, tuple(_decompose(since, until, levels)))
