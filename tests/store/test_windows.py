"""The window planner: pieces that partition any window into aligned rollup ranges and raw edges."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from service.store.schema import LEVELS
from service.store.windows import Piece, plan, top_level

T0 = 1_790_000_000.0
WIDTHS = [None, 1.0, 30.0, 90.0, 60.0, 300.0, 5400.0, 3600.0, 7200.0, 86400.0, 604800.0]


def test_top_level_is_the_coarsest_level_dividing_the_width() -> None:
    assert top_level(None) == 86400
    assert top_level(604800.0) == 86400
    assert top_level(7200.0) == 3600
    assert top_level(5400.0) == 60  # 90 minutes: whole minutes, not whole hours
    assert top_level(90.0) is None and top_level(30.0) is None


@given(
    st.floats(0, 40 * 86400, allow_nan=False),
    st.floats(0.001, 40 * 86400, allow_nan=False),
    st.sampled_from(WIDTHS),
)
def test_pieces_partition_the_window_without_straddling_a_bucket(
    offset: float, length: float, width: float | None
) -> None:
    since = T0 + offset
    until = since + length
    window = plan(since, until, width, raw_horizon=0.0)
    assert (window.since, window.until) == (since, until)
    pieces = sorted(window.pieces, key=lambda p: p.lo)
    assert pieces[0].lo == since and pieces[-1].hi == until
    for a, b in itertools.pairwise(pieces):
        assert a.hi == b.lo  # contiguous, no overlap
    top = top_level(width)
    assert len(pieces) <= 2 * len(LEVELS) + 1
    for p in pieces:
        assert p.lo < p.hi
        if p.level is None:
            # raw rows only for the partial minutes at the edges (or every row below a minute)
            assert top is None or p.hi - p.lo < 60 + 1e-6
        else:
            assert top is not None and p.level <= top
            assert p.lo % p.level == 0 and p.hi % p.level == 0
            if width is not None:
                assert width % p.level == 0  # a period never straddles a bucket boundary


def test_edges_older_than_raw_retention_round_down_to_the_minute() -> None:
    since, until = T0 + 17.5, T0 + 7200 + 42.0
    window = plan(since, until, 3600.0, raw_horizon=T0 + 3600)
    assert window.since == math.floor(since / 60) * 60 and window.until == until
    assert all(p.level is not None or p.lo >= T0 + 3600 for p in window.pieces)
    both = plan(since, until, None, raw_horizon=until + 1)
    assert both.until == math.floor(until / 60) * 60
    assert all(p.level is not None for p in both.pieces)
    assert Piece(None, 1.0, 2.0).level is None
