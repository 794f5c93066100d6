"""The paper fill model and position sizing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_trading.trading.fills import PaperFill, affordable, paper_fill, qty_for_notional, size_order

D = Decimal


def test_slippage_moves_against_the_taker() -> None:
    buy = paper_fill("buy", D("1"), D("20000"), slippage_bps=D("5"), fee_bps=D("0"))
    sell = paper_fill("sell", D("1"), D("20000"), slippage_bps=D("5"), fee_bps=D("0"))
    assert buy.price == D("20010")  # 5 bps of 20000 = 10
    assert sell.price == D("19990")
    assert buy.fee == 0 and sell.fee == 0


def test_no_slippage_fills_at_market() -> None:
    f = paper_fill("buy", D("2"), D("123.45"), slippage_bps=D("0"), fee_bps=D("0"))
    assert f == PaperFill(D("123.45"), D("0"))


def test_fee_is_notional_times_bps() -> None:
    f = paper_fill("buy", D("0.5"), D("20000"), slippage_bps=D("0"), fee_bps=D("10"))
    assert f.fee == D("10")  # 10000 notional × 10 bps
    g = paper_fill("sell", D("0.5"), D("20000"), slippage_bps=D("5"), fee_bps=D("10"))
    assert g.price == D("19990")
    assert g.fee == D("0.5") * D("19990") * D("0.001")


@settings(max_examples=100, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    qty=st.decimals(min_value=D("0.0001"), max_value=D("100"), places=4),
    market=st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2),
    slip=st.decimals(min_value=D("0"), max_value=D("100"), places=1),
    fee=st.decimals(min_value=D("0"), max_value=D("100"), places=1),
)
def test_fill_never_favours_the_taker(side: str, qty: Decimal, market: Decimal, slip: Decimal, fee: Decimal) -> None:
    f = paper_fill(side, qty, market, slippage_bps=slip, fee_bps=fee)
    if side == "buy":
        assert f.price >= market
    else:
        assert f.price <= market
    assert f.fee >= 0
    assert abs(f.fee - qty * f.price * fee / 10000) <= D("0.00000001")


def test_affordable() -> None:
    f = PaperFill(D("100"), D("1"))
    assert affordable("buy", D("2"), f, cash=D("201"), held=D("0")) is None
    assert affordable("buy", D("2"), f, cash=D("200.99"), held=D("0")) == "insufficient_cash"
    assert affordable("sell", D("2"), f, cash=D("0"), held=D("2")) is None
    assert affordable("sell", D("2.1"), f, cash=D("1000000"), held=D("2")) == "insufficient_position"


def size(side: str = "buy", equity: str = "10000", price: str = "100", confidence: float = 1.0,
         risk: str = "0.02", held: str = "0") -> Decimal:
    return size_order(side=side, equity=D(equity), price=D(price), confidence=confidence,
                      risk_fraction=D(risk), held=D(held))


def test_size_order_basic() -> None:
    assert size() == D("2")  # 10000 × 0.02 / 100


def test_size_scales_with_equity_risk_and_confidence() -> None:
    assert size(equity="20000") == 2 * size()
    assert size(risk="0.04") == 2 * size()
    assert size(confidence=0.5) == size() / 2
    assert size(confidence=0.0) == 0
    assert size(confidence=0.8) < size(confidence=0.9) < size(confidence=1.0)


def test_sell_capped_at_holding() -> None:
    assert size("sell", held="0.5") == D("0.5")
    assert size("sell", held="10") == D("2")
    assert size("sell", held="0") == 0


@pytest.mark.parametrize(("equity", "price"), [("10000", "0"), ("10000", "-1"), ("0", "100"), ("-5", "100")])
def test_nothing_to_trade(equity: str, price: str) -> None:
    assert size(equity=equity, price=price) == 0


def test_size_rounds_down_to_the_qty_step() -> None:
    q = size(equity="10000", price="3", risk="0.01")  # 33.333…
    assert q == D("33.33333333")
    assert q * D("3") <= D("100")


def test_qty_for_notional() -> None:
    assert qty_for_notional(D("1000"), D("20000")) == D("0.05")
    assert qty_for_notional(D("100"), D("3")) == D("33.33333333")
    assert qty_for_notional(D("100"), D("0")) == 0
    assert qty_for_notional(D("100"), D("-1")) == 0
