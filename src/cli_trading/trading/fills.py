"""The paper fill model and position sizing: pure functions."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import NamedTuple

BPS = Decimal("0.0001")
QTY_STEP = Decimal("0.00000001")
PRICE_STEP = Decimal("0.00000001")
ZERO = Decimal(0)


class PaperFill(NamedTuple):
    """Immutable (a named tuple: a backtest makes one per fill, so it must be cheap)."""

    price: Decimal
    fee: Decimal


def paper_fill(side: str, qty: Decimal, market: Decimal, *, slippage_bps: Decimal, fee_bps: Decimal) -> PaperFill:
    """Fill at the market price moved against the taker by the slippage; fee on the notional."""
    move = market * slippage_bps * BPS
    price = (market + move if side == "buy" else market - move).quantize(PRICE_STEP)
    fee = (qty * price * fee_bps * BPS).quantize(PRICE_STEP)
    return PaperFill(price, fee)


def affordable(side: str, qty: Decimal, fill: PaperFill, *, cash: Decimal, held: Decimal) -> str | None:
    """Why the paper account cannot take this fill, or None."""
    if side == "buy" and qty * fill.price + fill.fee > cash:
        return "insufficient_cash"
    if side == "sell" and qty > held:
        return "insufficient_position"
    return None


def size_order(
    *, side: str, equity: Decimal, price: Decimal, confidence: float, risk_fraction: Decimal, held: Decimal
) -> Decimal:
    """Quantity from equity and the risk fraction, scaled by confidence; sells never exceed the
    holding. Zero means there is nothing sensible to trade."""
    if price <= ZERO or equity <= ZERO:  # Decimal against Decimal: no int converted per call
        return ZERO
    # the confidence to 4 decimals: f"{x:.4f}" has the digits of round(x, 4) (both correctly
    # rounded) at a fraction of the cost of Decimal(str(round(x, 4)))
    qty = (equity * risk_fraction * Decimal(f"{confidence:.4f}") / price).quantize(QTY_STEP, ROUND_DOWN)
    if side == "sell" and held < qty:
        qty = held
    return qty if qty >= ZERO else ZERO


def qty_for_notional(notional: Decimal, price: Decimal) -> Decimal:
    return (notional / price).quantize(QTY_STEP, ROUND_DOWN) if price > 0 else Decimal(0)
