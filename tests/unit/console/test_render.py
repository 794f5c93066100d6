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


def test_short_ages_and_counts_fit_their_narrow_columns() -> None:
    assert r.short_age((NOW - timedelta(seconds=42)).isoformat(), NOW) == "42s"
    assert r.short_age((NOW - timedelta(minutes=14, seconds=30)).isoformat(), NOW) == "14m"
    assert r.short_age((NOW - timedelta(hours=7, minutes=6)).isoformat(), NOW) == "7h"
    assert r.short_age((NOW - timedelta(days=3, hours=1)).isoformat(), NOW) == "3d"
    assert r.short_age(None, NOW) == "—"
    assert [r.count(n, 3) for n in (0, 999, 1000, 99_999, 12_345_678)] == ["0", "999", "1k", "99k", "12M"]
    assert [r.count(n, 5) for n in (12_345, 123_456, 9_999_999_999)] == ["12345", "123k", "9999M"]
    assert r.count(10**12, 3) == "∞"


def test_redis_out_is_named_with_what_it_means() -> None:
    text = r.redis_problem("ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused.").plain
    assert "REDIS UNREACHABLE" in text and "not current" in text
    assert "REDIS ERROR" in r.redis_problem("ResponseError: NOGROUP").plain
