"""The paper executor's batch on PostgreSQL, straight to asyncpg: claim the orders, then settle
them and insert their fills, in one transaction the caller opens (`pgraw.Held.transaction`, whose
asyncpg connection these functions take). The same effects as `repo.claim_orders` and
`repo.settle_orders`, without SQLAlchemy's per-statement work (its session, compile, parameter
processing, greenlet hops): two statements, each prepared once by asyncpg, instead of three and
an executemany.

Every write finds its row by a unique index (an INSERT … ON CONFLICT): an UPDATE joined to
`unnest` may be planned as a scan of the whole table (see db/run_repo.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cli_trading.db import pgraw

ORDER_COLUMNS = (
    ("order_id", "varchar"),
    ("request_id", "varchar"),
    ("created_at", "timestamptz"),
    ("symbol", "varchar"),
    ("side", "varchar"),
    ("qty", "numeric"),
    ("type", "varchar"),
    ("status", "varchar"),
    ("price", "numeric"),
    ("fee", "numeric"),
    ("reason", "varchar"),
    ("updated_at", "timestamptz"),
)
_CLAIM_COLUMNS = tuple(c for c in ORDER_COLUMNS if c[0] not in ("price", "fee", "reason"))
FILL_COLUMNS = (
    ("order_id", "varchar"),
    ("trade_id", "varchar"),
    ("ts", "timestamptz"),
    ("day", "varchar"),
    ("symbol", "varchar"),
    ("side", "varchar"),
    ("qty", "numeric"),
    ("price", "numeric"),
    ("fee", "numeric"),
)
_SETTLED = ("status", "price", "fee", "reason", "updated_at")  # what settling an order writes
_N = len(ORDER_COLUMNS)

# made of the column constants above, no value in them (S608)
_CLAIM = (
    f"INSERT INTO orders ({pgraw.names(_CLAIM_COLUMNS)}) SELECT * FROM {pgraw.unnest(_CLAIM_COLUMNS, 1)} "  # noqa: S608
    "ON CONFLICT (order_id) DO NOTHING RETURNING order_id"
)
# the fills (each once, by its unique (order id, trade id)) and the orders' final state; the
# orders were claimed in this transaction, so each row of the insert meets its own and updates it
_SETTLE = (
    f"WITH f AS (INSERT INTO fills ({pgraw.names(FILL_COLUMNS)}) SELECT * FROM {pgraw.unnest(FILL_COLUMNS, _N + 1)} "  # noqa: S608
    "ON CONFLICT (order_id, trade_id) DO NOTHING) "
    f"INSERT INTO orders AS o ({pgraw.names(ORDER_COLUMNS)}) SELECT * FROM {pgraw.unnest(ORDER_COLUMNS, 1)} "
    "ON CONFLICT (order_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _SETTLED)
)


async def claim_orders(conn: Any, *, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Orders inserted as pending (rows as `desk.ledger_row`); the ids returned are new."""
    if not rows:
        return set()
    args = [[r[c] for r in rows] for c, _ in _CLAIM_COLUMNS]
    return {r[0] for r in await conn.fetch(_CLAIM, *args)}


async def settle_orders(
    conn: Any,
    *,
    claimed: Sequence[dict[str, Any]],
    orders: Sequence[dict[str, Any]],
    fills: Sequence[dict[str, Any]],
) -> None:
    """`orders` (order id and the settled columns) over the rows `claimed` in this transaction
    (their claim rows), and the `fills`."""
    if not orders and not fills:
        return
    by_id = {r["order_id"]: r for r in claimed}
    rows = [{**by_id[o["order_id"]], **o} for o in orders]
    args: list[Any] = [[r.get(c) for r in rows] for c, _ in ORDER_COLUMNS]
    args += [[f[c] for f in fills] for c, _ in FILL_COLUMNS]
    await conn.execute(_SETTLE, *args)
