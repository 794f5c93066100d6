"""Market data shipped in the package, the replay feed and the ccxt feed (on recorded answers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cli_trading.market.bars import (
    Bar,
    UnknownSymbol,
    available_symbols,
    bar_interval,
    load_bars,
    read_csv,
    stream_file,
)
from cli_trading.market.ccxt_feed import CcxtFeed, from_ccxt_symbol, next_poll_in, ohlcv_to_bar, to_ccxt_symbol
from cli_trading.market.replay import ReplayFeed, build_timeline

FIXTURE = Path(__file__).parents[2] / "fixtures" / "ccxt_ohlcv_btc_usd.json"


class Recorder:
    """An injected sleep that records its delays (and can stop a stream after `stop_after` calls)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.stop_after is not None and len(self.delays) >= self.stop_after:
            raise Stop


class Stop(Exception):
    pass


async def take(feed: Any, n: int) -> list[Bar]:
    out: list[Bar] = []
    async for bar in feed.stream():
        out.append(bar)
        if len(out) == n:
            break
    return out


async def drain(feed: Any) -> list[Bar]:
    return [bar async for bar in feed.stream()]


# --- shipped data -----------------------------------------------------------------------------


def test_shipped_symbols() -> None:
    assert {"BTC-USD", "ETH-USD"} <= set(available_symbols())
    assert bar_interval("BTC-USD") == timedelta(hours=1)


@pytest.mark.parametrize("symbol", available_symbols())
def test_shipped_bars_are_sane(symbol: str) -> None:
    bars = load_bars(symbol)
    assert len(bars) >= 1000
    assert all(b.symbol == symbol and b.ts.tzinfo is not None and b.ts.utcoffset() == timedelta(0) for b in bars)
    assert all(a.ts < b.ts for a, b in zip(bars, bars[1:], strict=False)), "ascending, no duplicates"
    for b in bars:
        assert Decimal(0) < b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high, b
        assert b.volume >= 0, b  # a few real hours had no trade: volume 0, all four prices equal


def test_btc_is_a_contiguous_hourly_stretch() -> None:
    bars = load_bars("BTC-USD")
    assert {b.ts - a.ts for a, b in zip(bars, bars[1:], strict=False)} == {timedelta(hours=1)}


def test_load_bars_gives_a_fresh_list_each_time() -> None:
    first = load_bars("BTC-USD")
    first.clear()
    assert load_bars("BTC-USD")


def test_unknown_symbol() -> None:
    with pytest.raises(UnknownSymbol, match=r"'DOGE-USD'.*BTC-USD.*ETH-USD"):
        load_bars("DOGE-USD")
    assert issubclass(UnknownSymbol, ValueError)
    with pytest.raises(UnknownSymbol):
        ReplayFeed(["BTC-USD", "DOGE-USD"])


def test_csv_bars_carry_floats_parsed_from_the_text(tmp_path: Path) -> None:
    """The reader parses each number's text once as a Decimal and once as a float: the floats a
    strategy sees are those a Decimal to float conversion would give, and a bar's equality and
    hash ignore them."""
    path = tmp_path / "X-USD_1h.csv"
    path.write_text(
        "ts,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,100.1,101.25,99.5,100.7,0.3\n"
        "2024-01-01T01:00:00Z,1e2,1E+2,0.1000000000000000055511151231257827,100.000,12\n"
        "2024-01-01T02:00:00Z, 43210.123456789 ,43210.123456789,43210.123456789,43210.123456789,0\n"
    )
    for bars in (read_csv(path, "X-USD"), list(stream_file(path, "X-USD"))):
        assert len(bars) == 3
        for b in bars:
            plain = Bar(b.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume)  # floats made on demand
            assert b.floats() == plain.floats() == tuple(float(x) for x in (b.open, b.high, b.low, b.close, b.volume))
            assert b == plain and hash(b) == hash(plain)
    assert read_csv(path, "X-USD")[0].floats() == (100.1, 101.25, 99.5, 100.7, 0.3)


def test_bar_dict_round_trip() -> None:
    bar = load_bars("ETH-USD")[-1]
    d = bar.to_dict()
    assert d["ts"] == bar.ts.isoformat() and d["close"] == str(bar.close)
    assert Bar.from_dict(d) == bar
    assert Bar.from_dict({**d, "ts": bar.ts.strftime("%Y-%m-%dT%H:%M:%SZ")}) == bar


# --- replay -----------------------------------------------------------------------------------


async def test_replay_merges_symbols_by_close_time() -> None:
    feed = ReplayFeed(["BTC-USD", "ETH-USD"], speed=0, loop=False)
    bars = await drain(feed)
    closes = [b.ts + bar_interval(b.symbol) for b in bars]
    assert closes == sorted(closes)
    assert {b.symbol for b in bars} == {"BTC-USD", "ETH-USD"}
    assert len(bars) == sum(len(step[1]) for step in feed.steps)
    # the daily ETH bar of a day comes out together with the last hourly BTC bar of that day
    i = next(i for i, b in enumerate(bars) if b.symbol == "ETH-USD")
    assert bars[i - 1].symbol == "BTC-USD" and bars[i - 1].ts + timedelta(hours=1) == bars[i].ts + timedelta(days=1)
    # only the span both symbols cover is replayed
    btc = [b for b in bars if b.symbol == "BTC-USD"]
    assert btc == load_bars("BTC-USD")


async def test_replay_paces_one_step_per_1_over_speed_seconds() -> None:
    sleep = Recorder()
    feed = ReplayFeed(["BTC-USD"], speed=4, sleep=sleep)
    bars = await take(feed, 5)
    assert bars == load_bars("BTC-USD")[:5]
    assert sleep.delays == [0.25] * 4  # the first step at once


async def test_replay_sleeps_between_steps_not_between_bars_of_one_step() -> None:
    sleep = Recorder()
    feed = ReplayFeed(["BTC-USD", "ETH-USD"], speed=10, sleep=sleep)
    steps = build_timeline(["BTC-USD", "ETH-USD"])
    n_steps = next(i for i, (_, bars) in enumerate(steps) if len(bars) == 2) + 1
    bars = await take(feed, n_steps + 1)
    assert [b.symbol for b in bars[-2:]] == ["BTC-USD", "ETH-USD"]
    assert sleep.delays == [0.1] * (n_steps - 1)
    state = feed.state()
    assert state["index"] == feed.position == n_steps
    assert state["time"] == steps[n_steps - 1][0].isoformat()
    assert state["lastBar"] == {"BTC-USD": bars[-2].ts.isoformat(), "ETH-USD": bars[-1].ts.isoformat()}


async def test_replay_speed_zero_only_yields_to_the_loop() -> None:
    sleep = Recorder()
    await take(ReplayFeed(["ETH-USD"], speed=0, sleep=sleep), 3)
    assert sleep.delays == [0.0, 0.0]


async def test_replay_loops_back_to_the_start() -> None:
    data = load_bars("BTC-USD")
    feed = ReplayFeed(["BTC-USD"], speed=0, start_index=len(data) - 2, sleep=Recorder())
    bars = await take(feed, 4)
    assert bars == data[-2:] + data[:2]
    assert feed.laps == 1 and feed.position == 2


async def test_replay_without_loop_ends() -> None:
    data = load_bars("ETH-USD")
    feed = ReplayFeed(["ETH-USD"], speed=0, start_index=len(data) - 3, loop=False, sleep=Recorder())
    assert await drain(feed) == data[-3:]
    assert feed.laps == 0


def test_replay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="start_index"):
        ReplayFeed(["BTC-USD"], start_index=10**6)
    with pytest.raises(ValueError, match="at least one symbol"):
        ReplayFeed([])


# --- ccxt -------------------------------------------------------------------------------------


class RecordedExchange:
    """Answers fetch_ohlcv with the recorded answers, in order, and checks each request."""

    id = "coinbase"

    def __init__(self, recording: dict[str, Any]) -> None:
        self.recording = recording
        self.polls = list(recording["polls"])
        self.now_ms = 0

    def clock(self) -> float:
        return self.now_ms / 1000

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None, limit: int | None) -> list[list[Any]]:
        assert (symbol, timeframe) == (self.recording["symbol"], self.recording["timeframe"])
        poll = self.polls.pop(0)
        assert {"since": since, "limit": limit} == poll["request"]
        self.now_ms = poll["receivedAt"]
        return poll["response"]


def test_symbol_conversion() -> None:
    assert to_ccxt_symbol("BTC-USD") == "BTC/USD"
    assert from_ccxt_symbol("ETH/USD") == "ETH-USD"


async def test_ccxt_feed_yields_each_closed_bar_once() -> None:
    recording = json.loads(FIXTURE.read_text())
    exchange = RecordedExchange(recording)
    sleep = Recorder(stop_after=len(recording["polls"]))
    feed = CcxtFeed(exchange, ["BTC-USD"], timeframe="1h", poll_seconds=60, sleep=sleep, clock=exchange.clock)
    bars: list[Bar] = []
    with pytest.raises(Stop):
        async for bar in feed.stream():
            bars.append(bar)
    assert not exchange.polls, "every recorded answer was asked for"
    assert bars == [ohlcv_to_bar("BTC-USD", row) for row in recording["closedBars"]]
    # each wait ends just after the candle then forming closes (never more than poll_seconds)
    assert len(sleep.delays) == 3 and all(0 < d <= 60 for d in sleep.delays)
    assert feed.state()["lastBar"] == {"BTC-USD": bars[-1].ts.isoformat()}
    # the recording is the shipped data: the feed converts it to the same Bars
    shipped = {b.ts: b for b in load_bars("BTC-USD")}
    assert all(shipped[b.ts] == b for b in bars)
    assert bars[0].ts == datetime(2019, 10, 17, 2, tzinfo=UTC)


def test_the_feed_polls_just_after_each_close_whatever_the_timeframe() -> None:
    hour = 3_600_000
    close = 1_700_002_800  # a whole hour, in seconds
    assert next_poll_in(close - 10, hour, cap_s=300, lag_s=1) == 11  # 10 s to the close, 1 s of lag
    assert next_poll_in(close + 5, hour, cap_s=300, lag_s=1) == 300  # just polled: wait, at most the cap
    assert next_poll_in(close - 0.5, 60_000, cap_s=300, lag_s=1) == 1.5  # 1m candles: every minute
    assert next_poll_in(close, 86_400_000, cap_s=30, lag_s=1) == 30  # a daily candle: the cap


async def test_ccxt_feed_retries_transient_errors_and_raises_others() -> None:
    class NetworkError(Exception):  # stands for ccxt.NetworkError
        pass

    class RequestTimeout(NetworkError):
        pass

    class Flaky:
        def __init__(self, exc: Exception) -> None:
            self.exc, self.calls = exc, 0

        async def fetch_ohlcv(self, *args: Any) -> list[list[Any]]:
            self.calls += 1
            if self.calls == 1:
                raise self.exc
            return [[0, 1.0, 2.0, 0.5, 1.5, 10.0]]

    feed = CcxtFeed(Flaky(RequestTimeout("slow")), ["BTC-USD"], sleep=Recorder(), clock=lambda: 10**6)
    bars = await take(feed, 1)
    assert bars[0].close == Decimal("1.5") and bars[0].ts == datetime(1970, 1, 1, tzinfo=UTC)
    assert feed.errors == 1 and feed.state()["lastError"] == "RequestTimeout: slow"

    feed = CcxtFeed(Flaky(KeyError("BadSymbol")), ["BTC-USD"], sleep=Recorder(), clock=lambda: 10**6)
    with pytest.raises(KeyError):
        await take(feed, 1)


def test_own_data_folder(tmp_path: Path) -> None:
    rows = "ts,open,high,low,close,volume\n"
    rows += "2024-01-01T00:00:00Z,1,2,1,2,5\n2024-01-01T00:15:00Z,2,3,1,2.5,7\n"
    (tmp_path / "SOL-USD_mine.csv").write_text(rows)
    assert available_symbols(tmp_path) == ["SOL-USD"]
    bars = load_bars("SOL-USD", tmp_path)
    assert [b.ts.minute for b in bars] == [0, 15]
    assert bar_interval("SOL-USD", tmp_path) == timedelta(minutes=15)  # label is no timeframe: from the data
    with pytest.raises(UnknownSymbol, match="SOL-USD"):
        load_bars("BTC-USD", tmp_path)
    assert [s for _, s in build_timeline(["SOL-USD"], tmp_path)] == [(bars[0],), (bars[1],)]
    assert ReplayFeed(["SOL-USD"], folder=str(tmp_path)).steps[0][1] == (bars[0],)


def test_own_data_folder_refuses_duplicates_and_disorder(tmp_path: Path) -> None:
    rows = "ts,open,high,low,close,volume\n"
    rows += "2024-01-01T00:15:00Z,2,3,1,2.5,7\n2024-01-01T00:00:00Z,1,2,1,2,5\n2024-01-01T00:00:00Z,1,2,1,2,5\n"
    (tmp_path / "SOL-USD_15m.csv").write_text(rows)
    with pytest.raises(ValueError, match=r"line 2 and 3: .* comes after") as info:
        load_bars("SOL-USD", tmp_path)
    assert "line 3 and 4: timestamp 2024-01-01T00:00:00+00:00 twice" in str(info.value)
