"""The pure part of walk-forward optimisation: windows, figures over slices, selection, proposals."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_trading.trading.optimize import (
    Figures,
    Trace,
    Window,
    WindowResult,
    candidates,
    combine,
    default_grid,
    figures,
    key_of,
    proposals,
    select,
    windows,
)

HOUR = 3600


def trace(equity: list[float], *, start: float = 100.0, trades: list[tuple[int, float]] | None = None) -> Trace:
    return Trace(start, [i * HOUR for i in range(len(equity))], equity, trades or [], [i for i, _ in trades or []])


# -- windows ---------------------------------------------------------------------------------------


def test_rolling_windows_test_back_to_back_up_to_the_last_bar() -> None:
    ws = windows(700, count=4, train_ratio=3.0)
    assert [w.test for w in ws] == [(300, 400), (400, 500), (500, 600), (600, 700)]
    assert [w.train for w in ws] == [(0, 300), (100, 400), (200, 500), (300, 600)]
    assert [w.index for w in ws] == [1, 2, 3, 4]


def test_anchored_windows_keep_the_start() -> None:
    assert {w.train[0] for w in windows(1000, count=3, anchored=True)} == {0}


@settings(max_examples=80, deadline=None)
@given(st.integers(20, 20_000), st.integers(1, 8), st.floats(0.5, 6))
def test_windows_never_test_on_their_train_bars(n: int, count: int, ratio: float) -> None:
    try:
        ws = windows(n, count=count, train_ratio=ratio)
    except ValueError:
        return
    assert len(ws) == count and ws[-1].test[1] <= n
    for a, b in zip(ws, ws[1:], strict=False):
        assert a.test[1] == b.test[0]
    for w in ws:
        assert 0 <= w.train[0] < w.train[1] == w.test[0] < w.test[1]


def test_too_few_bars_for_the_windows() -> None:
    with pytest.raises(ValueError, match="too few"):
        windows(10, count=8)
    with pytest.raises(ValueError, match="at least one window"):
        windows(100, count=0)


# -- figures ---------------------------------------------------------------------------------------


def test_figures_rebase_at_the_slice_start() -> None:
    t = trace([100, 110, 99, 120, 60, 90], trades=[(1, 10.0), (3, -5.0), (5, 2.0)])
    whole = figures(t, 0, 6)
    assert whole.return_pct == pytest.approx(-10.0)
    assert whole.max_drawdown_pct == pytest.approx(50.0)  # 120 -> 60
    assert (whole.trades, whole.win_rate_pct, whole.fills, whole.bars) == (3, pytest.approx(200 / 3), 3, 6)
    tail = figures(t, 3, 6)  # from 99, the equity after bar 2
    assert tail.return_pct == pytest.approx((90 / 99 - 1) * 100)
    assert tail.max_drawdown_pct == pytest.approx(50.0) and tail.trades == 2
    head = figures(t, 0, 2)
    assert head.return_pct == pytest.approx(10.0) and head.max_drawdown_pct == 0.0


def test_sharpe_uses_daily_returns() -> None:
    days = 30
    eq, ts = [], []
    value = 100.0
    for d in range(days):
        value *= 1.01 if d % 2 else 0.995
        for h in range(24):
            eq.append(value)
            ts.append(d * 86400 + h * HOUR)
    t = Trace(100.0, ts, eq)
    f = figures(t, 0, len(eq))
    rets = [eq[0] / 100 - 1] + [eq[(d + 1) * 24 - 1] / eq[d * 24 - 1] - 1 for d in range(1, days)]
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
    assert f.sharpe == pytest.approx(mean / sd * math.sqrt(365))


def test_combine_compounds_returns() -> None:
    a = Figures(10, 10.0, 5.0, 1.0, 2, 50.0, 4)
    b = Figures(30, -10.0, 12.0, -1.0, 1, 100.0, 2)
    c = combine([a, b])
    assert c.return_pct == pytest.approx(-1.0) and c.max_drawdown_pct == 12.0
    assert (c.trades, c.fills, c.bars) == (3, 6, 40) and c.win_rate_pct == pytest.approx(200 / 3)
    assert c.sharpe == pytest.approx((10 - 30) / 40)
    assert combine([]).return_pct == 0.0


# -- selection and proposals -------------------------------------------------------------------------

W = Window(1, (0, 4), (4, 8))
CUR: dict[str, Any] = {"p": 0}


def test_select_takes_the_best_in_sample_and_measures_both_out_of_sample() -> None:
    cur = trace([100, 101, 102, 103, 104, 105, 106, 107])
    good_is = trace([100, 110, 120, 130, 120, 110, 100, 90])  # wins in sample, loses after
    r = select(W, [({"p": 1}, good_is)], (CUR, cur))
    assert r.params == {"p": 1} and r.in_sample.return_pct == pytest.approx(30.0)
    assert r.out_of_sample.return_pct == pytest.approx((90 / 130 - 1) * 100)
    assert r.current_out_of_sample.return_pct == pytest.approx((107 / 103 - 1) * 100)
    assert proposals([r], CUR) == [], "worse out of sample than the current set: never proposed"


def test_on_a_tie_the_current_set_stays() -> None:
    same = trace([100, 101, 102, 103, 104, 105, 106, 107])
    r = select(W, [({"p": 1}, same)], (CUR, same))
    assert r.params == CUR and proposals([r], CUR) == []


def test_a_set_that_beats_the_current_one_out_of_sample_is_proposed_with_its_figures() -> None:
    cur = trace([100, 99, 98, 97, 96, 95, 94, 93])
    better = trace([100, 101, 102, 103, 104, 105, 106, 107])
    r = select(W, [({"p": 2}, better)], (CUR, cur))
    (p,) = proposals([r], CUR)
    assert p.params == {"p": 2} and p.windows == (1,)
    assert p.out_of_sample == r.out_of_sample and p.current_out_of_sample == r.current_out_of_sample
    doc = p.as_dict()
    assert doc["score"] == pytest.approx(p.out_of_sample.score()) and doc["outOfSample"]["bars"] == 4


def _fig(ret: float, dd: float = 0.0) -> Figures:
    return Figures(10, ret, dd, 0.0, 1, 100.0, 2)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.floats(-50, 50), st.floats(0, 40), st.floats(-50, 50), st.floats(0, 40)),
        min_size=1,
        max_size=8,
    )
)
def test_no_proposal_is_worse_out_of_sample_than_the_current_set(
    rows: list[tuple[int, float, float, float, float]],
) -> None:
    results = [
        WindowResult(Window(i + 1, (0, 1), (1, 2)), {"p": p}, _fig(0), _fig(r, d), _fig(0), _fig(cr, cd), 4)
        for i, (p, r, d, cr, cd) in enumerate(rows)
    ]
    for prop in proposals(results, {"p": 0}):
        mine = [r for r in results if r.window.index in prop.windows]
        assert prop.params != {"p": 0}
        assert all(key_of(r.params) == key_of(prop.params) for r in mine)
        assert (
            combine([r.out_of_sample for r in mine]).score() > combine([r.current_out_of_sample for r in mine]).score()
        )


def test_proposals_most_recent_first_and_limited() -> None:
    results = [
        WindowResult(Window(i, (0, 1), (1, 2)), {"p": i}, _fig(0), _fig(10), _fig(0), _fig(0), 3) for i in range(1, 9)
    ]
    got = proposals(results, {"p": 0}, limit=3)
    assert [p.params["p"] for p in got] == [8, 7, 6]


# -- the search space ---------------------------------------------------------------------------------


def test_candidates_are_complete_distinct_and_valid() -> None:
    sets = candidates("trend", {"min_spread_pct": 0.1}, {"fast": [5, 12, 30, 5], "slow": [20, 26]})
    assert len(sets) == 4  # fast=30 is never shorter than slow; 5 twice is one set
    assert all(set(s) == {"fast", "slow", "min_spread_pct", "full_confidence_spread_pct"} for s in sets)


@pytest.mark.parametrize(
    ("base", "grid", "match"),
    [({}, {"fsat": [5]}, "no parameter fsat"), ({"slwo": 3}, {}, "no parameter slwo"), ({}, {"fast": []}, "no values")],
)
def test_bad_grids(base: dict[str, Any], grid: dict[str, list[Any]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        candidates("trend", base, grid)


def test_default_grids() -> None:
    assert len(candidates("trend", {}, default_grid("trend"))) == 24
    assert len(candidates("mean_reversion", {}, default_grid("mean_reversion"))) == 36
    g = default_grid("trend")
    g["fast"].append(99)
    assert 99 not in default_grid("trend")["fast"]
    with pytest.raises(ValueError, match="no default grid"):
        default_grid("momentum")
