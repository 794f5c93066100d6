"""The console's pure formatting: gauges, sparklines, ages, the halt banner."""

from __future__ import annotations

from datetime import timedelta

from cli_trading.console import render as r
from tests.unit.console.sample import NOW


def test_gauge_fills_towards_the_limit_it_is_heading_for() -> None:
    up = r.gauge("1.5", target="3", loss_limit="5", width=16)
    down = r.gauge("-2.5", target="3", loss_limit="5", width=16)
    assert up.plain.startswith("-5% ") and up.plain.endswith(" +3%")
    # zero sits at 5/8 of the bar; +1.5 of 3 fills half of the green side, −2.5 of 5 half of the red
    bar_up, bar_down = up.plain[4:-4], down.plain[4:-4]
    assert bar_up.index("█") == 10 and bar_up.count("█") == 3
    assert bar_down.count("█") == 5 and bar_down.rindex("█") == 9
    assert r.gauge("50", target="3", loss_limit="5", width=16).plain.count("█") == 6  # clamped at the target


def test_limit_use_in_words() -> None:
    assert r.limit_use("1.5", target="3", loss_limit="5") == "50% of target"
    assert r.limit_use("-4", target="3", loss_limit="5") == "80% of loss limit"
    assert r.limit_use(None, target="3", loss_limit="5") == ""


def test_sparkline_scales_and_thins() -> None:
    assert r.sparkline(["1", "2", "3"], 10) == "▁▄█"
    assert r.sparkline(["5", "5"], 10) == "▄▄"
    line = r.sparkline([str(i) for i in range(100)], 20)
    assert len(line) == 20 and line[0] == "▁" and line[-1] == "█"
    assert r.sparkline([], 10) == ""


def test_ages_and_uptimes() -> None:
    assert r.age((NOW - timedelta(seconds=42)).isoformat(), NOW) == "42s"
    assert r.age((NOW - timedelta(minutes=5, seconds=3)).isoformat(), NOW) == "5m03s"
    assert r.age((NOW - timedelta(hours=2, minutes=7)).isoformat().replace("+00:00", "Z"), NOW) == "2h07m"
    assert r.age(None, NOW) == "—"
    assert r.uptime(7300) == "2h01m" and r.uptime(None) == "—"


def test_banner_when_halted_names_reason_mode_who_since_and_note() -> None:
    text = r.banner({"halted": True, "haltReason": "security_incident", "haltMode": "flatten",
                     "haltedBy": "tok:abc", "haltedAt": "2026-11-30T03:07:12Z", "haltNote": "keys leaked"}, NOW).plain
    for part in ("HALTED", "security_incident", "flatten", "tok:abc", "2026-11-30T03:07:12", "5m28s", "keys leaked"):
        assert part in text
    calm = r.banner({"halted": False, "mode": "live", "symbols": ["BTC-USD"]}, NOW).plain
    assert "TRADING" in calm and "LIVE" in calm and "BTC-USD" in calm and "HALTED" not in calm


def test_money_and_signs() -> None:
    assert r.money("10184.5234") == "10,184.52"
    assert r.signed("-3.1").plain == "-3.10" and r.signed("-3.1").style == "red"
    assert r.money("not a number") == "—"
