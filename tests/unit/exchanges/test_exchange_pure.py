"""The pure parts of live execution: market rules (precision, minimums), the order state machine,
fees converted to the quote currency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_trading.exchanges.markets import MarketRules, ccxt_symbol, client_order_id, our_symbol
from cli_trading.exchanges.orders import Fill, Tracked, fee_in_quote, fills_of, outcome, status_of
from cli_trading.exchanges.reconcile import (
    Report,
    adopted_order,
    baseline_without,
    detail,
    drifts,
    expected_balances,
    unknown_order_action,
)
from cli_trading.halt import policy
from cli_trading.halt.state import HaltState

BTC = {
    "symbol": "BTC/USDT",
    "base": "BTC",
    "quote": "USDT",
    "precision": {"amount": 0.00001, "price": 0.01},
    "limits": {"amount": {"min": 0.00001}, "cost": {"min": 10}},
}


def test_rules_from_ccxt_in_both_precision_modes() -> None:
    r = MarketRules.from_ccxt(BTC)
    assert (r.symbol, r.amount_step, r.price_step, r.min_notional) == ("BTC-USDT", D("0.00001"), D("0.01"), D("10"))
    places = MarketRules.from_ccxt({**BTC, "precision": {"amount": 3, "price": 2}}, tick_size=False)
    assert (places.amount_step, places.price_step) == (D("0.001"), D("0.01"))
    assert MarketRules.from_json(r.to_json()) == r
    assert ccxt_symbol("BTC-USDT") == "BTC/USDT" and our_symbol("BTC/USDT") == "BTC-USDT"


def test_amounts_round_down_and_prices_to_the_tick() -> None:
    r = MarketRules.from_ccxt(BTC)
    assert r.amount(D("0.123456789")) == D("0.12345")
    assert r.price(D("43123.456")) == D("43123.46")


def test_minimum_amount_and_notional_name_the_reason() -> None:
    r = MarketRules.from_ccxt(BTC)
    assert r.refusal(D("0.000001"), D("40000")) == "min_amount"  # rounds to zero
    assert r.refusal(D("0.0002"), D("40000")) == "min_notional"  # 8 USDT < 10
    assert r.refusal(D("0.0003"), D("40000")) is None


@given(st.decimals(min_value=D("0"), max_value=D("1000"), places=9))
def test_rounded_amount_never_exceeds_the_request(q: D) -> None:
    r = MarketRules.from_ccxt(BTC)
    assert D(0) <= r.amount(q) <= q and q - r.amount(q) < D("0.00001")


def test_status_of_ccxt_orders() -> None:
    assert status_of({"status": "open", "filled": 0}) == "new"
    assert status_of({"status": "open", "filled": "0.5"}) == "partially_filled"
    assert status_of({"status": "closed", "filled": 1}) == "filled"
    assert status_of({"status": "canceled"}) == "cancelled"
    assert status_of({"status": "expired"}) == "expired"
    assert status_of({"status": "rejected"}) == "rejected"


def test_fees_in_the_quote_currency() -> None:
    kw = {"base": "BTC", "quote": "USDT", "price": D("40000"), "rates": {"BNB": D("300")}}
    assert fee_in_quote(D("0.4"), "USDT", **kw) == D("0.4")
    assert fee_in_quote(D("0.00001"), "BTC", **kw) == D("0.40000")
    assert fee_in_quote(D("0.001"), "BNB", **kw) == D("0.300")
    assert fee_in_quote(D("1"), "XYZ", **kw) is None


def trade(tid: str, qty: str, price: str, fee: str, cur: str) -> dict[str, object]:
    return {"id": tid, "amount": qty, "price": price, "fee": {"cost": fee, "currency": cur}}


def test_partial_fills_are_fills_of_their_own_once_each() -> None:
    trades = [trade("1", "0.3", "100", "0.0003", "BTC"), trade("2", "0.7", "110", "0.077", "USDT")]
    fills = fills_of([*trades, trades[0]], base="BTC", quote="USDT", rates={})
    assert [f.trade_id for f in fills] == ["1", "2"]
    assert fills[0].fee_charged == D("0.0003") and fills[0].fee_currency == "BTC" and fills[0].fee_quote == D("0.03")
    t = Tracked("ord-1").update({"id": "9", "status": "open", "filled": "0.3"}, fills[:1])
    assert t.status == "partially_filled" and not t.final and outcome(t)[0] == "pending"
    t = t.update({"id": "9", "status": "closed", "filled": "1"}, fills)
    assert t.status == "filled" and t.fill_qty == D("1") and t.settled()
    assert t.average == (D("0.3") * 100 + D("0.7") * 110) / 1 and t.fee_quote == D("0.107")
    assert outcome(t) == ("filled", None)


def test_status_never_goes_backwards() -> None:
    t = Tracked("ord-1").update({"status": "closed", "filled": "1"})
    assert t.update({"status": "open", "filled": "0.2"}).status == "filled"
    assert t.update({"status": "open", "filled": "0.2"}).filled == D("1")
    c = Tracked("ord-2").update({"status": "canceled", "filled": "0"})
    assert c.update({"status": "closed"}).status == "cancelled"


def test_outcome_of_a_cancelled_order_after_a_partial_fill() -> None:
    f = Fill("1", D("0.4"), D("100"), D("0"), None, D("0"))
    t = Tracked("ord-3").update({"status": "canceled", "filled": "0.4"}, [f])
    assert outcome(t) == ("filled", "cancelled after a partial fill of 0.4")
    assert outcome(Tracked("ord-4").update({"status": "canceled"}))[0] == "rejected"
    assert outcome(Tracked("ord-5").update({"status": "expired"})) == ("rejected", "expired at the exchange")


def test_client_order_ids_fit_the_exchange_and_are_stable() -> None:
    assert client_order_id("ord-0123456789abcdef0123456789abcdef") == "ord-0123456789abcdef0123456789abcdef"
    long = "ord-flatten-0123456789abcdef0123456789abcdef"
    cid = client_order_id(long)
    assert len(cid) <= 36 and cid == client_order_id(long) and cid != client_order_id(long + "x")
    assert client_order_id("ord-a b") != "ord-a b"  # a space is not allowed


class Trade:
    def __init__(self, symbol: str, side: str, qty: str, price: str, fee: str, cur: str | None) -> None:
        self.symbol, self.side, self.qty, self.price = symbol, side, D(qty), D(price)
        self.fee_charged, self.fee_currency = D(fee), cur


def test_expected_balances_and_drift_valued_in_the_quote() -> None:
    baseline = {"USDT": D("1000"), "BTC": D("0.1")}
    trades = [
        Trade("BTC-USDT", "buy", "0.01", "40000", "0.00001", "BTC"),
        Trade("BTC-USDT", "sell", "0.005", "41000", "0.205", "USDT"),
    ]
    want = expected_balances(baseline, trades)
    assert want["USDT"] == D("1000") - 400 + D("205") - D("0.205")  # paid, received, the fee in USDT
    assert want["BTC"] == D("0.1") + D("0.01") - D("0.00001") - D("0.005")  # bought, the fee in BTC, sold
    assert drifts(want, want, prices={"BTC": D("40000")}, quote="USDT") == []
    have = {**want, "BTC": want["BTC"] - D("0.001")}  # 0.001 BTC gone behind our back
    report = Report(drifts(have, want, prices={"BTC": D("40000")}, quote="USDT"), [], [])
    assert report.value == D("40.000") and report.assets[0].asset == "BTC"
    assert "BTC" in detail(report)
    limits = policy.DriftLimits(D("10"))
    drift = policy.Drift(report.value, 0, detail(report))
    assert policy.reconciliation_drift(HaltState(), drift=drift, limits=limits, checks_over=1) is None
    decision = policy.reconciliation_drift(HaltState(), drift=drift, limits=limits, checks_over=2)
    assert decision is not None and decision.reason == "reconciliation_drift" and "BTC" in decision.note


HAND = {  # a ccxt order placed by hand on the account
    "id": "123",
    "clientOrderId": "web_4f2a",
    "symbol": "BTC/USDT",
    "side": "buy",
    "type": "limit",
    "amount": 0.02,
    "price": 39000.5,
    "timeInForce": "GTC",
    "status": "open",
}


def test_unknown_orders_by_policy() -> None:
    assert unknown_order_action(HAND, "cancel") == "cancel"
    assert unknown_order_action(HAND, "adopt") == "adopt"
    assert unknown_order_action(HAND, "ignore") == "drift"
    # what cannot be followed by its client order id, or is no market/limit order, stays drift
    for other in ({"clientOrderId": None}, {"clientOrderId": "has space"}, {"type": "stop_loss_limit"}):
        assert unknown_order_action({**HAND, **other}, "adopt") == "drift"
        assert unknown_order_action({**HAND, **other}, "cancel") == "cancel"


def test_an_adopted_order_is_ours_under_its_client_order_id() -> None:
    m = adopted_order(HAND)
    assert m is not None
    assert (m.orderId, m.requestId, m.symbol, m.side, m.qty) == (
        "web_4f2a",
        "adopted-web_4f2a",
        "BTC-USDT",
        "buy",
        D("0.02"),
    )
    assert (m.type, m.price, m.timeInForce) == ("limit", D("39000.5"), "GTC")
    assert client_order_id(m.orderId) == "web_4f2a"  # looked up by the id the exchange has
    market = adopted_order({**HAND, "type": "market", "price": None, "timeInForce": "PO"})
    assert market is not None and (market.price, market.timeInForce) == (None, "GTC")
    assert adopted_order({**HAND, "amount": 0}) is None


def vars_of(f: Fill) -> dict[str, object]:
    return {"qty": f.qty, "price": f.price, "fee_charged": f.fee_charged, "fee_currency": f.fee_currency}


def test_a_trade_keeps_the_time_the_exchange_made_it() -> None:
    [f] = fills_of(
        [{**trade("1", "0.3", "100", "0", "USDT"), "timestamp": 1_764_496_800_000}], base="BTC", quote="USDT", rates={}
    )
    assert f.at == datetime(2025, 11, 30, 10, 0, tzinfo=UTC)


def test_trades_older_than_the_baseline_are_taken_out_of_it() -> None:
    taken = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    m = adopted_order(HAND)
    assert m is not None
    old = Fill("1", D("0.01"), D("39000"), D("0.00001"), "BTC", D("0.39"), at=taken - timedelta(seconds=5))
    new = Fill("2", D("0.01"), D("38990"), D("0.00001"), "BTC", D("0.39"), at=taken + timedelta(seconds=5))
    baseline = {"USDT": D("9610"), "BTC": D("0.00999")}  # the old trade is in it
    moved = baseline_without(baseline, order=m, fills=[old, new], taken_at=taken)
    assert moved == {"USDT": D("10000"), "BTC": D("0")}
    # both trades recorded as ours: expected = the balances at the baseline plus the new trade only
    rows = [SimpleNamespace(symbol="BTC-USDT", side="buy", **vars_of(f)) for f in (old, new)]
    assert expected_balances(moved, rows) == {"USDT": D("9610") - D("389.9"), "BTC": D("0.00999") + D("0.00999")}
    assert baseline_without(baseline, order=m, fills=[new], taken_at=taken) is None
    assert baseline_without(baseline, order=m, fills=[old], taken_at=None) is None
    untimed = Fill("3", D("0.01"), D("39000"), D("0"), None, D("0"))
    assert baseline_without(baseline, order=m, fills=[untimed], taken_at=taken) is None  # counts as new


def test_the_executor_and_the_candle_feed_share_one_ceiling() -> None:
    """Two processes, two limiters, one ceiling counted by the exchange: live, what their pacers
    let through in any one second adds up to EXCHANGE_MAX_RPS at most, fractional or not (2.5
    split 80/20 as 2.0 + 0.5 let 2 + 1 through, 1.5 as 1.2 + 0.3 let 1 + 1), each gets at least
    one; on paper the feed is the only one asking."""
    from cli_trading.exchanges.ccxt_adapter import Pacer, rps_shares

    assert rps_shares(10, live=True) == (8.0, 2.0)
    for tenths in [*range(20, 200), 1000, 10000]:
        ceiling = tenths / 10
        executor, feed = rps_shares(ceiling, live=True)
        per_second = Pacer(executor).burst + Pacer(feed).burst
        assert executor >= 1 and feed >= 1 and per_second <= ceiling, (ceiling, executor, feed)
        assert per_second == int(ceiling)  # and nothing of the whole part is wasted
    assert rps_shares(10, live=False) == (0.0, 10)
    assert rps_shares(0.5, live=False) == (0.0, 0.5)
    with pytest.raises(ValueError, match="EXCHANGE_MAX_RPS=1.9"):
        rps_shares(1.9, live=True)


def test_live_settings_refuse_a_ceiling_too_low_to_share() -> None:
    from pydantic import ValidationError

    from cli_trading.config import Settings

    keys = {"exchange_api_key": "k", "exchange_api_secret": "s", "trading_mode": "live"}
    with pytest.raises(ValidationError, match=r"EXCHANGE_MAX_RPS=1.5: live mode needs 2 or more"):
        Settings(exchange_max_rps=1.5, **keys)
    assert Settings(exchange_max_rps=2.5, **keys).exchange_max_rps == 2.5
    assert Settings(exchange_max_rps=1.5).exchange_max_rps == 1.5  # paper: the feed alone, any rate


def test_an_orders_time_in_force_reaches_the_exchange_and_the_ledger() -> None:
    """The contract's time in force (GTC unless the run said otherwise) is what the exchange is
    asked for and what the ledger's exchange row records."""
    from cli_trading.contracts import OrderMsg
    from cli_trading.exchanges.desk import order_row
    from cli_trading.exchanges.live import request

    ioc = OrderMsg(
        orderId="o1",
        requestId="r1",
        symbol="BTC-USDT",
        side="buy",
        qty=D("1"),
        type="limit",
        price=D("99"),
        timeInForce="IOC",
    )
    market = OrderMsg(orderId="o2", requestId="r2", symbol="BTC-USDT", side="sell", qty=D("1"), price=D("100"))
    req = request(ioc)
    assert (req.type, req.limit_price, req.time_in_force) == ("limit", D("99"), "IOC")
    assert order_row(ioc)["time_in_force"] == "IOC" and order_row(ioc)["limit_price"] == D("99")
    req = request(market)
    assert (req.type, req.limit_price, req.time_in_force, req.price) == ("market", None, "GTC", D("100"))
    assert order_row(market)["time_in_force"] == "GTC" and order_row(market)["limit_price"] is None
