"""Walk-forward optimisation through the real backtest engine (shipped candles, small spaces)."""

from __future__ import annotations

from typing import Any

import pytest

from cli_trading.config import DEFAULTS_DIR, load_yaml
from cli_trading.market.bars import load_bars
from cli_trading.research.runs import Study, trace
from cli_trading.research.walkforward import Axis, Spec, optimize, parse_axis
from cli_trading.trading.optimize import combine, figures, windows
from cli_trading.trading.risk import RiskFile, RiskRules
from cli_trading.trading.strategy_config import StrategyFile, load_strategy_config

GRID = {"fast": Axis("fast", (5, 20)), "slow": Axis("slow", (26, 50))}


@pytest.fixture(scope="module")
def study() -> Study:
    rules = load_yaml(DEFAULTS_DIR / "risk.yaml", RiskFile).risk  # type: ignore[attr-defined]
    strategies = load_strategy_config(DEFAULTS_DIR / "strategies.yaml")
    return Study.of("BTC-USD", load_bars("BTC-USD")[:1600], strategies, rules)


def test_the_current_parameters_come_from_the_strategies_file(study: Study) -> None:
    assert study.current("trend") == {"fast": 12, "slow": 26, "min_spread_pct": 0.05, "full_confidence_spread_pct": 1.0}
    only_trend = StrategyFile.model_validate({"strategies": [{"name": "trend", "symbols": ["ETH-USD"]}]})
    other = Study.of("BTC-USD", study.bars, only_trend, RiskRules())
    with pytest.raises(ValueError, match="does not run on BTC-USD"):
        other.current("trend")


def test_a_trace_is_the_engine_run_with_those_parameters(study: Study) -> None:
    from cli_trading.backtest import run

    t = trace(study, "trend", {"fast": 5, "slow": 26})
    res = run({"BTC-USD": study.bars}, study.config("trend", {"fast": 5, "slow": 26}), study.rules, keep_fills=False)
    assert len(t.equity) == len(study.bars)
    assert t.equity[-1] == pytest.approx(res.metrics.final_equity)
    assert len(t.fills) == res.metrics.fills and len(t.trades) == res.metrics.trades
    assert trace(study, "trend", None).equity != t.equity, "other parameters, another run"


def test_grid_walk_forward_reports_every_window_and_proposes_only_better_sets(study: Study) -> None:
    seen: list[tuple[int, int]] = []
    out = optimize(study, Spec("trend", GRID, windows=3), workers=1, progress=lambda d, t: seen.append((d, t)))
    assert out.evaluated == 5 and seen[-1] == (5, 5)  # four grid points and the current set
    assert [r.window.index for r in out.results] == [1, 2, 3]
    assert [r.window for r in out.results] == windows(1600, count=3)
    cur = trace(study, "trend", None)
    for r in out.results:
        assert r.current_out_of_sample == figures(cur, *r.window.test)
        assert r.out_of_sample == figures(trace(study, "trend", r.params), *r.window.test)
    for p in out.proposals:  # checked again from fresh engine runs
        mine = [r.window for r in out.results if r.window.index in p.windows]
        again = combine([figures(trace(study, "trend", p.params), *w.test) for w in mine])
        current = combine([figures(cur, *w.test) for w in mine])
        assert again == p.out_of_sample and again.score() > current.score()
    doc = out.as_dict()
    assert doc["proposals"] == [p.as_dict() for p in out.proposals] and len(doc["windows"]) == 3
    assert set(doc["summary"]) == {"windows", "inSample", "outOfSample", "currentOutOfSample"}


def test_the_same_answer_with_one_worker_or_a_pool(study: Study) -> None:
    spec = Spec("trend", GRID, windows=3)
    one = optimize(study, spec, workers=1).as_dict()
    pool = optimize(study, spec, workers=2).as_dict()
    one.pop("seconds"), pool.pop("seconds")
    assert one == pool


def test_optuna_is_seeded_and_searches_ranges(study: Study) -> None:
    spec = Spec(
        "trend", {"fast": parse_axis("fast=3:20"), "slow": parse_axis("slow=21:60")}, "optuna", trials=6, windows=2
    )
    a, b = optimize(study, spec, workers=1).as_dict(), optimize(study, spec, workers=2).as_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    for w in a["windows"]:
        assert 3 <= w["params"]["fast"] <= 20 and w["params"]["slow"] <= 60 or w["params"] == a["current"]
    c = optimize(study, Spec(**{**vars(spec), "seed": 7}), workers=1).as_dict()
    assert c["evaluated"] >= 2


def test_the_current_parameters_may_be_given(study: Study) -> None:
    out = optimize(study, Spec("trend", GRID, windows=2), current={"fast": 20, "slow": 50}, workers=1)
    assert out.current["fast"] == 20 and all(p.params != out.current for p in out.proposals)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("fast=5,8,12", Axis("fast", (5, 8, 12))),
        ("width=1.5:3:0.5", Axis("width", (), 1.5, 3.0, 0.5, False)),
        ("fast=5:50", Axis("fast", (), 5.0, 50.0, None, True)),
    ],
)
def test_parse_axis(text: str, want: Axis) -> None:
    assert parse_axis(text) == want


def test_axes_on_a_grid() -> None:
    assert parse_axis("width=1.5:3:0.5").grid() == [1.5, 2.0, 2.5, 3.0]
    assert parse_axis("fast=5:20:5").grid() == [5, 10, 15, 20]
    with pytest.raises(ValueError, match="needs a step"):
        parse_axis("fast=5:50").grid()
    for bad in ("fast", "fast=", "fast=9:3", "fast=1:2:0", "=3"):
        with pytest.raises(ValueError, match="name="):
            parse_axis(bad)


def test_bad_specs(study: Study) -> None:
    with pytest.raises(ValueError, match="no parameter fsat"):
        optimize(study, Spec("trend", {"fsat": Axis("fsat", (1,))}), workers=1)
    with pytest.raises(ValueError, match="no valid parameter set"):
        optimize(study, Spec("trend", {"fast": Axis("fast", (60,)), "slow": Axis("slow", (30,))}), workers=1)
    with pytest.raises(ValueError, match="too few"):
        optimize(Study.of("BTC-USD", study.bars[:20], _file(study), study.rules), Spec("trend", GRID, windows=8))


def _file(study: Study) -> Any:
    return StrategyFile.model_validate(study.strategies)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_search_stops_when_asked(study: Study, workers: int) -> None:
    from cli_trading.research.runs import Stopped

    done: list[int] = []
    with pytest.raises(Stopped):
        optimize(study, Spec("trend"), workers=workers, progress=lambda d, t: done.append(d), stop=lambda: bool(done))
    assert 1 <= len(done) < 25, "stopped long before the 24 sets and the current one were all backtested"
