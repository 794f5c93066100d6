"""exchange-sim: signature checks, the price tape and clock, klines' open times, faults, limiter."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from cli_trading.exchanges.sim.auth import sign, verify
from cli_trading.exchanges.sim.errors import BinanceError
from cli_trading.exchanges.sim.faults import FaultPlan, Faults, RateLimiter, RequestLog, busiest
from cli_trading.exchanges.sim.markets import DEFAULT_MARKETS, markets_for
from cli_trading.exchanges.sim.tape import Clock, Tape, Tapes, kline_opens
from cli_trading.market.bars import Bar

NOW = 1_700_000_000_000


def signed(query: str, secret: str = "s") -> str:
    return f"{query}&signature={sign(secret, query)}"


def check(query: str = "", body: str = "", header: str | None = "k", now: int = NOW) -> dict[str, str]:
    return verify(header=header, query=query, body=body, now_ms=now, api_key="k", secret="s")


def code_of(**kw: str | int | None) -> int:
    with pytest.raises(BinanceError) as exc:
        check(**kw)  # type: ignore[arg-type]  # keyword mix of str/int/None for the test
    return exc.value.code


def test_signature_over_query_then_body_as_sent() -> None:
    q = f"symbol=BTCUSDT&timestamp={NOW}"
    assert check(query=signed(q))["symbol"] == "BTCUSDT"
    body = "side=BUY&quantity=0.1"
    total = q + body  # Binance: the query string directly followed by the body
    assert check(query=q, body=f"{body}&signature={sign('s', total)}")["side"] == "BUY"


def test_each_failure_answers_binances_code() -> None:
    q = f"timestamp={NOW}"
    assert code_of(query=signed(q), header=None) == -2014
    assert code_of(query=signed(q), header="other") == -2015
    assert code_of(query=signed(q, secret="wrong")) == -1022
    assert code_of(query=q) == -1102  # no signature
    assert code_of(query=signed(f"timestamp={NOW - 6000}")) == -1021  # older than the default 5000 ms
    assert check(query=signed(f"timestamp={NOW - 6000}&recvWindow=10000"))
    assert code_of(query=signed(f"timestamp={NOW + 2000}")) == -1021  # ahead of the server
    assert code_of(query=signed("symbol=X")) == -1102  # no timestamp
    with pytest.raises(BinanceError) as exc:
        check(query=signed(q, secret="wrong"))
    assert exc.value.status == 401


def bar(hour: int, o: str, h: str, low: str, c: str) -> Bar:
    ts = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=hour)
    return Bar("X", ts, Decimal(o), Decimal(h), Decimal(low), Decimal(c), Decimal("10"))


def test_tape_walks_every_candle_through_its_low_and_high() -> None:
    up = bar(0, "100", "120", "90", "110")  # rising: open, low, high, close
    down = bar(1, "110", "115", "95", "100")  # falling: open, high, low, close
    tape = Tape.from_bars([up, down], 3600)
    t0 = up.ts.timestamp()
    assert tape.price_at(t0) == 100 and tape.price_at(t0 + 1200) == 90 and tape.price_at(t0 + 2400) == 120
    assert tape.price_at(t0 + 3600 + 1200) == 115 and tape.price_at(t0 + 3600 + 2400) == 95
    o, h, low, c, v = tape.segment(t0, t0 + 7200)
    assert (o, h, low, c) == (100, 120, 90, 100) and v == pytest.approx(20)
    assert tape.segment(t0, t0 + 1800)[4] == pytest.approx(5)


def test_clock_speed_frozen_history_and_advance() -> None:
    c = Clock(anchor_wall=1000.0, anchor_data=5000.0, speed=60)
    assert c.data_time(1010) == 5600 and c.data_time(990) == 4400
    frozen = Clock(1000.0, 5000.0, 0)
    assert frozen.data_time(2000) == 5000 and frozen.data_time(990) == 4990  # history at speed 1
    c.reanchor(1010, speed=0, advance_s=3600)
    assert c.data_time(5000) == 5600 + 3600


def test_kline_open_times_like_binance() -> None:
    minute = 60_000
    now = 10 * minute + 30_000
    assert kline_opens(minute, now, None, None, 3) == [8 * minute, 9 * minute, 10 * minute]
    assert kline_opens(minute, now, 2 * minute + 1, None, 2) == [3 * minute, 4 * minute]
    assert kline_opens(minute, now, None, 5 * minute, 2) == [4 * minute, 5 * minute]
    week = 7 * 86_400_000
    monday = 4 * 86_400_000
    assert kline_opens(week, monday + week + 5, None, None, 1) == [monday + week]


def test_faults_next_counts_then_rates() -> None:
    f = Faults(FaultPlan(error_next=2, throttle_next=1, retry_after_s=7))
    first = f.before("/api/v3/order")
    assert first is not None and first.status == 429 and first.headers == {"Retry-After": "7"}
    assert [getattr(f.before("/api/v3/account"), "status", None) for _ in range(3)] == [503, 503, None]
    assert f.before("/sim/state") is None
    f.plan = FaultPlan(reject_rate=1.0)
    assert f.rejects() and f.counts["reject"] == 1
    assert not Faults(FaultPlan(lose_answer_next=1)).loses_answer("GET", "/api/v3/order")


def test_limiter_429_then_418_ban() -> None:
    lim = RateLimiter(limit=3, ban_s=30)
    answers = [lim.check(100.0) for _ in range(7)]
    assert [a.status if a else 200 for a in answers] == [200, 200, 200, 429, 429, 429, 418]
    assert int(answers[3].headers["Retry-After"]) >= 1  # type: ignore[union-attr]  # a 429 has headers
    assert lim.check(200.0) is None  # the ban and the window are over


def test_markets_from_your_own_candles(tmp_path: Path) -> None:
    rows = ["ts,open,high,low,close,volume"] + [
        f"2020-01-01T{h:02d}:00:00Z,{150 + h},{152 + h},{149 + h},{151 + h},10" for h in range(24)
    ]
    (tmp_path / "SOL-USD_1h.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "BTC-USD_1h.csv").write_text("\n".join(r.replace(",1", ",9") for r in rows) + "\n")
    (tmp_path / "NOTES_x.csv").write_text("ts,open,high,low,close,volume\n")
    markets = {m.symbol: m for m in markets_for(tmp_path)}
    assert set(markets) == {"SOLUSDT", "BTCUSDT"}
    assert markets["BTCUSDT"].step_size == Decimal("0.00001")  # the preset
    sol = markets["SOLUSDT"]
    assert sol.series == "SOL-USD" and sol.tick_size == Decimal("0.0001") and sol.step_size == Decimal("0.001")
    tapes = Tapes({m.symbol: m.series for m in markets.values()}, tmp_path)
    assert tapes.span == 24 * 3600 and 149 <= tapes.price("SOLUSDT", tapes.lo + 60) < 150
    assert markets_for(None) == DEFAULT_MARKETS


def test_a_storm_throttles_every_matching_request_for_its_time_only_on_its_methods() -> None:
    f = Faults()
    f.set_plan(FaultPlan(throttle_for_s=60, paths=["/api/v3/order"], methods=["POST"]), time.time())
    assert [getattr(f.before("/api/v3/order", "POST"), "status", None) for _ in range(5)] == [429] * 5
    assert f.before("/api/v3/order", "DELETE") is None  # a cancel goes through
    assert f.before("/api/v3/account", "POST") is None
    assert f.describe()["stormLeftS"] > 50  # type: ignore[operator]  # a float
    f.set_plan(FaultPlan(throttle_for_s=60), time.time() - 61)  # a storm that is over
    assert f.before("/api/v3/order", "POST") is None


def test_busiest_counts_the_most_requests_in_any_one_second() -> None:
    assert busiest([]) == 0
    assert busiest([0.0, 0.5, 0.99, 1.0, 1.5]) == 3  # (0.5, 1.5] has 0.99, 1.0, 1.5; [0, 1) has three too
    assert busiest([t * 0.125 for t in range(80)]) == 8  # eight a second, evenly


def test_the_request_log_keeps_times_and_keys() -> None:
    log = RequestLog(size=3)
    for t in range(5):
        log.add(float(t), "k" if t % 2 else "", "GET", "/api/v3/time")
    assert [e[0] for e in log.since(0)] == [2.0, 3.0, 4.0]  # the last three
    assert [e[1] for e in log.since(3)] == ["k", ""]
