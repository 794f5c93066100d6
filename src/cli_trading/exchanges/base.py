"""What the trade executor talks to: an exchange adapter. The paper engine and the ccxt adapter
implement the same protocol, and both keep a record of every order that reached them (the
record the halt guarantee is checked against)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from cli_trading.exchanges.orders import Tracked
    from cli_trading.trading.ledger import Ledger


@dataclass(frozen=True, slots=True)
class OrderRequest:
    order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: Decimal
    price: Decimal  # the reference (mark) price at decision time
    type: Literal["market", "limit"] = "market"
    limit_price: Decimal | None = None
    time_in_force: Literal["GTC", "IOC", "FOK"] = "GTC"


@dataclass(frozen=True, slots=True)
class ExecResult:
    # pending: at the exchange and not final yet (a resting limit order, or not resolved yet)
    status: Literal["filled", "rejected", "failed", "pending"]
    price: Decimal | None = None
    fee: Decimal = Decimal("0")
    reason: str | None = None
    tracked: Tracked | None = None  # live: the order as the exchange has it (fills, fees as charged)


@dataclass(frozen=True, slots=True)
class Received:
    order_id: str
    at: float  # time.time() when the order reached the adapter
    symbol: str
    side: str


RECEIVED_KEEP = 20_000  # the adapter's record of recent orders (the halt checks read it); all are in `orders`


def received_log() -> deque[Received]:
    """The adapter's record of the last orders that reached it: bounded (it used to grow by one
    entry per order forever)."""
    return deque(maxlen=RECEIVED_KEEP)


class ExchangeAdapter(Protocol):
    """What every adapter does: take an order, keep the record of what reached it, close."""

    name: str
    received: deque[Received]

    async def submit(self, order: OrderRequest) -> ExecResult: ...

    async def close(self) -> None: ...


class OwnAccount(ExchangeAdapter, Protocol):
    """The optional capability: an adapter whose account is our own ledger (the paper engine,
    its fills are the fills table). An order can then be claimed, filled and settled in one
    transaction, because a rollback undoes the fill as well; after a rollback the executor
    rebuilds the account from the database and hands it over (`ledger`). A real exchange acts
    outside our transaction: it has no such account, and its claim must commit before it is
    called. Which adapter has it is said where the executor is wired, never probed.

    Its record of the orders that reached it follows that transaction too: `submit` notes an
    order as `tentative`, `commit_record` records them once the transaction commits, and
    `take_tentative` hands them back when it does not (the fill was undone with it)."""

    ledger: Ledger
    tentative: list[Received]

    def commit_record(self) -> None: ...

    def take_tentative(self) -> list[Received]: ...
