"""The ledger's accounting identities, checked over arbitrary fill sequences (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_trading.trading.ledger import ZERO, FillRecord, Ledger, pnl_percent, replay

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
# Money in the identities below may differ from exact only through the rounding of the average
# cost (a division at 28 significant digits); everything else is exact Decimal arithmetic.
TOL = Decimal("1e-12")

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)
qtys = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("50"), places=4)
fees = st.decimals(min_value=Decimal("0"), max_value=Decimal("25"), places=4)
fractions = st.integers(min_value=1, max_value=100)  # percent of the holding to sell

op = st.one_of(
    st.tuples(st.just("buy"), st.sampled_from(SYMBOLS), qtys, prices, fees),
    st.tuples(st.just("sell"), st.sampled_from(SYMBOLS), fractions, prices, fees),
    st.tuples(st.just("mark"), st.sampled_from(SYMBOLS), prices),
)
ops = st.lists(op, max_size=40)
starting = st.decimals(min_value=Decimal("0"), max_value=Decimal("10000000"), places=2)


def run_ops(start: Decimal, steps: list[tuple]) -> tuple[Ledger, list[FillRecord]]:
    """Apply the steps as valid fills: buys, and sells never larger than the holding."""
    ledger = Ledger(start)
    fills: list[FillRecord] = []
    for i, step in enumerate(steps):
        kind, sym = step[0], step[1]
        if kind == "mark":
            ledger.mark(sym, step[2])
            continue
        if kind == "buy":
            qty = step[2]
        else:
            held = ledger.qty_of(sym)
            qty = held * step[2] / 100
            if qty <= 0:
                continue
            assert qty <= held
        f = FillRecord(f"ord-{i}", sym, kind, qty, step[3], step[4])
        assert ledger.apply(f) is True
        fills.append(f)
    return ledger, fills


def close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= TOL


@settings(max_examples=60, deadline=None)
@given(start=starting, steps=ops)
def test_equity_is_cash_plus_marked_positions(start: Decimal, steps: list[tuple]) -> None:
    ledger, _ = run_ops(start, steps)
    snap = ledger.snapshot()
    marked = sum((ledger.qty_of(s) * ledger.marks[s] for s in SYMBOLS if ledger.qty_of(s)), ZERO)
    assert snap.equity == snap.cash + marked
    assert snap.exposure == marked
    assert ledger.exposure() == snap.exposure  # the risk rule's and the backtest's shortcut
    assert snap.cash == ledger.cash
    for s in SYMBOLS:
        assert ledger.qty_of(s) >= 0


@settings(max_examples=60, deadline=None)
@given(start=starting, steps=ops)
def test_equity_is_start_plus_realized_plus_unrealized_minus_fees(start: Decimal, steps: list[tuple]) -> None:
    ledger, fills = run_ops(start, steps)
    snap = ledger.snapshot()
    assert close(snap.equity, start + snap.realized + snap.unrealized - snap.fees)
    assert snap.fees == sum((f.fee for f in fills), ZERO)
    # Cash is exact: what was paid and received, minus fees.
    flows = sum(((f.qty * f.price) * (1 if f.side == "sell" else -1) for f in fills), ZERO)
    assert ledger.cash == start + flows - snap.fees


@settings(max_examples=60, deadline=None)
@given(start=starting, before=ops, q=qtys, p1=prices, p2=prices, f1=fees, f2=fees)
def test_round_trip_realizes_price_difference(
    start: Decimal, before: list[tuple], q: Decimal, p1: Decimal, p2: Decimal, f1: Decimal, f2: Decimal
) -> None:
    ledger, _ = run_ops(start, before)
    sym = "RT-USD"  # a symbol of its own: the round trip does not mix with earlier holdings
    snap0 = ledger.snapshot()
    assert ledger.apply(FillRecord("rt-buy", sym, "buy", q, p1, f1))
    assert ledger.apply(FillRecord("rt-sell", sym, "sell", q, p2, f2))
    snap1 = ledger.snapshot()
    # within TOL: realized PnL from earlier trades carries an average cost with 28 significant
    # digits (Decimal's context), so the difference of two snapshots can be off in the last digit
    assert close(snap1.realized - snap0.realized, (p2 - p1) * q)
    assert close(snap1.equity - snap0.equity, (p2 - p1) * q - f1 - f2)
    assert snap1.fees - snap0.fees == f1 + f2
    assert ledger.qty_of(sym) == 0
    assert ledger.positions[sym].avg_cost == 0


def test_round_trip_from_fresh_ledger_exact() -> None:
    ledger = Ledger(Decimal("10000"))
    ledger.apply(FillRecord("a", "BTC-USD", "buy", Decimal("0.5"), Decimal("20000"), Decimal("10")))
    ledger.apply(FillRecord("b", "BTC-USD", "sell", Decimal("0.5"), Decimal("21000"), Decimal("10.5")))
    snap = ledger.snapshot()
    assert snap.realized == Decimal("500")
    assert snap.fees == Decimal("20.5")
    assert snap.equity == Decimal("10479.5")
    assert snap.unrealized == 0 and snap.exposure == 0


@settings(max_examples=75, deadline=None)
@given(start=starting, steps=ops.filter(lambda s: any(x[0] == "buy" for x in s)), data=st.data())
def test_same_order_id_twice_changes_nothing(start: Decimal, steps: list[tuple], data: st.DataObject) -> None:
    ledger, fills = run_ops(start, steps)
    before = ledger.snapshot()
    positions = {s: (p.qty, p.avg_cost) for s, p in ledger.positions.items()}
    again = data.draw(st.sampled_from(fills))
    assert ledger.apply(again) is False
    # Even a different fill under an order id already applied is a repeat.
    other = FillRecord(again.order_id, again.symbol, "buy", Decimal("1"), Decimal("1"), Decimal("1"))
    assert ledger.apply(other) is False
    assert ledger.snapshot() == before
    assert {s: (p.qty, p.avg_cost) for s, p in ledger.positions.items()} == positions


@settings(max_examples=60, deadline=None)
@given(start=starting, steps=ops)
def test_replay_matches_live_ledger(start: Decimal, steps: list[tuple]) -> None:
    ledger, fills = run_ops(start, steps)
    # Redelivered fills in the replay input are ignored as well.
    again = replay(start, fills + fills, dict(ledger.marks))
    assert again.snapshot() == ledger.snapshot()
    assert again.holdings() == ledger.holdings()


def test_average_cost_and_partial_sell() -> None:
    ledger = Ledger(Decimal("100000"))
    ledger.apply(FillRecord("1", "ETH-USD", "buy", Decimal("2"), Decimal("1000"), ZERO))
    ledger.apply(FillRecord("2", "ETH-USD", "buy", Decimal("2"), Decimal("2000"), ZERO))
    assert ledger.positions["ETH-USD"].avg_cost == Decimal("1500")
    ledger.apply(FillRecord("3", "ETH-USD", "sell", Decimal("1"), Decimal("1800"), ZERO))
    assert ledger.realized == Decimal("300")
    assert ledger.qty_of("ETH-USD") == Decimal("3")
    ledger.mark("ETH-USD", Decimal("1600"))
    snap = ledger.snapshot()
    assert snap.unrealized == Decimal("300")
    assert snap.equity == snap.cash + Decimal("4800")
    [h] = ledger.holdings()
    assert h["symbol"] == "ETH-USD" and h["value"] == Decimal("4800") and h["mark"] == Decimal("1600")


def test_ledger_starts_with_starting_cash_and_no_position() -> None:
    ledger = Ledger(Decimal("5000"))
    assert ledger.cash == Decimal("5000")
    assert ledger.qty_of("BTC-USD") == 0
    assert ledger.price_of("BTC-USD") is None
    assert ledger.snapshot().equity == Decimal("5000")
    assert ledger.holdings() == []


def test_pnl_percent() -> None:
    assert pnl_percent(Decimal("10500"), Decimal("10000")) == Decimal("5")
    assert pnl_percent(Decimal("9700"), Decimal("10000")) == Decimal("-3")
    assert pnl_percent(Decimal("10000"), Decimal("10000")) == 0
    assert pnl_percent(Decimal("123"), Decimal("0")) == 0
    assert pnl_percent(Decimal("123"), Decimal("-5")) == 0


def test_a_filled_status_is_the_ledgers_fill() -> None:
    """Every agent's ledger applies an exec.status "filled" as validated into the contract."""
    from cli_trading.contracts import StatusMsg

    payload = {"orderId": "o1", "requestId": "r1", "status": "filled", "symbol": "BTC-USD", "side": "buy"}
    status = StatusMsg.model_validate({**payload, "qty": "0.5", "price": "100.5", "fee": "0.05"})
    assert status.fill() == FillRecord("o1", "BTC-USD", "buy", Decimal("0.5"), Decimal("100.5"), Decimal("0.05"))
    assert StatusMsg.model_validate({**payload, "qty": "1", "price": "2"}).fill().fee == Decimal(0)
    with pytest.raises(ValueError, match="without a price"):
        StatusMsg.model_validate({**payload, "qty": "1"}).fill()
