"""The end-to-end suites' PnL check: /pnl/status (the orchestrator's ledger, built from
exec.status) equals a recomputation from the `fills` table's rows done here with plain arithmetic
(cash, fees, realized PnL at average cost, positions)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

FILLS_SQL = "SELECT symbol, side, qty, price, fee FROM fills ORDER BY id"  # the rows, in order
# The database keeps a number to its column's scale, the ledger as the message said it
TOLERANCE = Decimal("0.000001")


def recompute(fills: Iterable[Sequence[Any]], starting_cash: Decimal) -> dict[str, Any]:
    """Cash, fees, realized PnL and positions by hand from the fills' (symbol, side, qty, price,
    fee) rows: a buy moves the average cost, a sell realizes against it, a position sold out is
    flat."""
    cash, fees, realized = starting_cash, Decimal(0), Decimal(0)
    qty: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    for symbol, side, q_, p_, f_ in fills:
        q, p, f = Decimal(str(q_)), Decimal(str(p_)), Decimal(str(f_))
        held, avg = qty.get(symbol, Decimal(0)), cost.get(symbol, Decimal(0))
        if side == "buy":
            cost[symbol] = (held * avg + q * p) / (held + q)
            qty[symbol] = held + q
            cash -= q * p
        else:
            realized += (p - avg) * q
            qty[symbol] = max(held - q, Decimal(0))
            if qty[symbol] == 0:
                cost[symbol] = Decimal(0)
            cash += q * p
        cash -= f
        fees += f
    positions = {s: q for s, q in qty.items() if q}
    return {"cash": cash, "fees": fees, "realized": realized, "positions": positions}


def mismatches(pnl: dict[str, Any], fills: Iterable[Sequence[Any]], *, starting_cash: Decimal) -> list[str]:
    """Where /pnl/status's answer `pnl` differs from the fills' recomputation (empty: it agrees)."""
    want = recompute(fills, starting_cash)
    got = {**{k: Decimal(str(pnl[k])) for k in ("cash", "fees", "realized")}}
    got["positions"] = {h["symbol"]: Decimal(str(h["qty"])) for h in pnl["positions"] if Decimal(str(h["qty"]))}
    out = [f"{k}: {got[k]} != {want[k]}" for k in ("cash", "fees", "realized") if abs(got[k] - want[k]) > TOLERANCE]
    held, expected = got["positions"], want["positions"]
    if set(held) != set(expected) or any(abs(held[s] - expected[s]) > TOLERANCE for s in held):
        out.append(f"positions: {held} != {expected}")
    return out
