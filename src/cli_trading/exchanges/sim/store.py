"""The simulator's state on disk: one SQLite file in the data dir.

Every change is written in one transaction before the answer leaves (WAL, synchronous=FULL), so
an order the simulator acknowledged, or accepted and then "lost the answer" of, is there after a
restart or a kill -9. Amounts are stored as text (Decimal), orders and fills as JSON rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from cli_trading.exchanges.sim.engine import Balance, Fill, Order, Wallet

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (trade_id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS balances (asset TEXT PRIMARY KEY, free TEXT NOT NULL, locked TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Loaded:
    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    wallet: Wallet = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        return not self.meta


class Store:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "exchange-sim.sqlite"
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def load(self) -> Loaded:
        out = Loaded()
        out.orders = [
            Order.from_dict(json.loads(b)) for (b,) in self.db.execute("SELECT body FROM orders ORDER BY order_id")
        ]
        out.fills = [
            Fill.from_dict(json.loads(b)) for (b,) in self.db.execute("SELECT body FROM fills ORDER BY trade_id")
        ]
        out.wallet = {a: Balance(Decimal(f), Decimal(lk)) for a, f, lk in self.db.execute("SELECT * FROM balances")}
        out.meta = {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        return out

    def save(
        self,
        *,
        orders: Iterable[Order] = (),
        fills: Iterable[Fill] = (),
        wallet: Wallet | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Write what changed, all or nothing."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO orders VALUES (?, ?, ?)",
                [(o.order_id, o.client_id, json.dumps(o.to_dict())) for o in orders],
            )
            db.executemany(
                "INSERT OR REPLACE INTO fills VALUES (?, ?, ?)",
                [(f.trade_id, f.order_id, json.dumps(f.to_dict())) for f in fills],
            )
            if wallet is not None:
                db.executemany(
                    "INSERT OR REPLACE INTO balances VALUES (?, ?, ?)",
                    [(a, str(b.free), str(b.locked)) for a, b in wallet.items()],
                )
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in (meta or {}).items()]
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()
