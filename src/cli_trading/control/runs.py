"""Runs: one decision from analysis (or a manual order) to exactly one outcome. Kept in memory
while in flight and for a while after, and in the `runs` table.

Crash safety: a change to a run is committed before anything depending on it is acknowledged
(`RunBook.durable`, a group commit: every caller waiting at once shares one transaction). The
202 of POST /orchestrate/run is answered after its run is committed, and a batch of stream
messages is acknowledged after the runs it changed are. After a crash, `resolve` decides at
start what becomes of each run left open (from the orders table: the executor's ledger)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from cli_trading import metrics
from cli_trading.contracts import iso, order_id_for
from cli_trading.db import run_repo
from cli_trading.db.pgraw import Held

KEEP_FINISHED = 20_000
# the outcome of a run answered 503 whose acceptance commit landed all the same (run_safety.accept)
REFUSED = "refused: database unavailable at acceptance"


@dataclass(slots=True)
class Run:
    request_id: str
    symbol: str
    created_at: datetime
    manual: bool = False
    side: str | None = None
    qty: Decimal | None = None
    price: Decimal | None = None
    strategy: str | None = None
    confidence: float | None = None
    outcome: str | None = None
    reason: str | None = None
    # the id its order has or will have (ord-<requestId>), known from the start and so in the row
    # committed at acceptance: the executor can settle a fill before the run's later changes are
    # written (`flush_loop`), and the fill's order must already name its run. (A row written
    # without one gets it here, stored with the run's next change.)
    order_id: str = ""
    finished_at: datetime | None = None
    trace_id: str | None = None
    steps: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.order_id = self.order_id or order_id_for(self.request_id)

    def to_api(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "symbol": self.symbol,
            "manual": self.manual,
            "side": self.side,
            "qty": self.qty,
            "price": self.price,
            "strategy": self.strategy,
            "confidence": self.confidence,
            "outcome": self.outcome,
            "reason": self.reason,
            "orderId": self.order_id,
            "createdAt": iso(self.created_at),
            "finishedAt": iso(self.finished_at) if self.finished_at else None,
            "state": self.outcome or (self.steps[-1] if self.steps else "created"),
        }

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "created_at": self.created_at,
            "symbol": self.symbol,
            "manual": self.manual,
            "side": self.side,
            "qty": self.qty,
            "price": self.price,
            "strategy": self.strategy,
            "confidence": self.confidence,
            "outcome": self.outcome,
            "reason": self.reason,
            "order_id": self.order_id,
            "finished_at": self.finished_at,
        }


class RunRefused(Exception):
    """A run not started, or not accepted: the HTTP status and error the caller gets."""

    def __init__(self, status: int, error: str, run: Run | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.run = status, error, run


def limit_fields(strategy: str | None) -> dict[str, Any]:
    """A manual limit order's fields on exec.orders (price is then the limit price)."""
    if strategy and strategy.startswith("limit:"):
        return {"type": "limit", "timeInForce": strategy.split(":", 1)[1]}
    return {}


def from_row(r: Any) -> Run:
    return Run(
        r.request_id,
        r.symbol,
        r.created_at,
        r.manual,
        r.side,
        r.qty,
        r.price,
        r.strategy,
        r.confidence,
        r.outcome,
        r.reason,
        r.order_id,
        r.finished_at,
    )


class RunBook:
    def __init__(self) -> None:
        self.active: dict[str, Run] = {}
        self.finished: OrderedDict[str, Run] = OrderedDict()
        self._new: dict[str, Run] = {}
        self._changed: dict[str, Run] = {}
        # runs answered 503 because their acceptance commit failed: it may have landed all the
        # same (the connection died after the server committed), so the next transaction marks
        # them failed (REFUSED) if they are there and still open; `settled_refusals` are the ids
        # written so (the orchestrator then forgets them in Redis too)
        self.refused: dict[str, Run] = {}
        self.settled_refusals: list[str] = []
        self._writing_refusals: list[str] = []
        # new runs whose request id belongs to a finished run in the database that memory no
        # longer holds (a restart, or beyond KEEP_FINISHED): found by the commit, which leaves
        # that row alone; the acceptance answers 409 (RunSafety.accept)
        self.duplicates: set[str] = set()
        self._found_duplicates: list[Run] = []
        self.version = 0  # changes made so far
        self.committed = 0  # changes known to be in the database
        self._flushing: asyncio.Future[None] | None = None
        # PostgreSQL: the group commit's own connection (`pgraw.Held`), set by the orchestrator
        self.held: Held | None = None

    def __contains__(self, rid: str) -> bool:
        return rid in self.active or rid in self.finished

    def get(self, rid: str) -> Run | None:
        return self.active.get(rid) or self.finished.get(rid)

    def add(self, run: Run) -> None:
        self.active[run.request_id] = run
        self._new[run.request_id] = run
        self.version += 1

    def forget(self, run: Run) -> None:
        """A run whose creation could not be committed: it was never accepted."""
        self.active.pop(run.request_id, None)
        self._new.pop(run.request_id, None)
        self._changed.pop(run.request_id, None)

    def refuse(self, run: Run, *, now: datetime) -> None:
        """A run answered 503 (its acceptance commit failed): never to trade, whether or not the
        commit landed. Not in the book: a retry with the same request id may take it over."""
        self.forget(run)
        run.outcome, run.reason, run.finished_at = "failed", REFUSED, now
        self.refused[run.request_id] = run
        self.version += 1

    def retry_of_refused(self, rid: str) -> bool:
        """A new run with the request id of a refused one: the refusal is not written any more
        (the new run's row replaces it, `flush`)."""
        return self.refused.pop(rid, None) is not None

    def adopt(self, run: Run) -> None:
        """A run loaded from the database (after a restart): active again, nothing to write."""
        self.active[run.request_id] = run

    def touch(self, run: Run, step: str) -> None:
        """A step that changed the run's row (its sizing, its outcome): written at the next flush."""
        run.steps.append(step)
        self.version += 1
        if run.request_id not in self._new:
            self._changed[run.request_id] = run

    @staticmethod
    def step(run: Run, step: str) -> None:
        """A step the row does not hold (the order sent): shown while the run is active, nothing
        to write — a rewrite of an unchanged row was a third of the run book's writes."""
        run.steps.append(step)

    def finish(self, run: Run, outcome: str, *, reason: str | None, now: datetime) -> None:
        if run.outcome is not None:
            return  # exactly one outcome per run
        run.outcome, run.reason, run.finished_at = outcome, reason, now
        metrics.DECISIONS.labels(outcome).inc()
        self.touch(run, outcome)
        self.active.pop(run.request_id, None)
        self.finished[run.request_id] = run
        while len(self.finished) > KEEP_FINISHED:
            self.finished.popitem(last=False)

    def filled_after_all(self, run: Run, *, now: datetime) -> None:
        """A fill for a run finished otherwise (its first message was reported lost, yet it got
        through): the fill happened, so the run is `filled`, saying what it was recorded as."""
        run.reason = f"filled after being recorded {run.outcome} ({run.reason})"[:200]
        run.outcome, run.finished_at = "filled", now
        metrics.DECISIONS.labels("filled").inc()
        self.touch(run, "filled")

    async def lookup(self, rid: str, sessions: Callable[[], Any]) -> Run | None:
        """A run by id: from memory, else from the database (an open one is active again: it
        was left open by a restart)."""
        run = self.get(rid) or self.refused.get(rid)
        if run is None:
            async with sessions() as s:
                row = await run_repo.get_run(s, request_id=rid)
            if row is not None:
                run = from_row(row)
                if run.outcome is None:
                    self.adopt(run)
        return run

    def in_flight(self, *, symbol: str | None = None, manual: bool | None = None) -> int:
        return sum(
            1
            for r in self.active.values()
            if (symbol is None or r.symbol == symbol) and (manual is None or r.manual == manual)
        )

    async def flush(self, session: Any) -> Callable[[], None]:
        """Write new runs and changes since the last flush (the caller commits). Returns the
        undo to call if the transaction does not commit: the rows are buffered again."""
        new = list(self._new.values())
        # a run both new and changed (touched while its first write failed) is written once, as new
        changed = [r for rid, r in self._changed.items() if rid not in self._new]
        refused = list(self.refused.values())
        self._new, self._changed, self.refused = {}, {}, {}
        self._writing_refusals = [r.request_id for r in refused]

        def undo() -> None:
            for r in new:
                self._new.setdefault(r.request_id, r)
            for r in changed:
                if r.request_id not in self._new:
                    self._changed.setdefault(r.request_id, r)
            for r in refused:
                if r.request_id not in self:  # not retried meanwhile
                    self.refused.setdefault(r.request_id, r)
            self._writing_refusals, self._found_duplicates = [], []

        try:
            ours = await run_repo.write_runs(
                session,
                new=[r.row() for r in new],
                changed=[r.row() for r in changed],
                refused=self._writing_refusals,
                refused_reason=REFUSED,
                refused_at=refused[0].finished_at if refused else None,
            )
            # a new run whose id a finished run in the database has: that row is left alone
            self._found_duplicates = [r for r in new if r.request_id not in ours]
        except Exception:
            undo()
            raise
        return undo

    def _drop_duplicates(self) -> None:
        """The committed transaction left these runs' rows to the finished runs already there:
        they are not runs of ours (nothing of them may be written or sent)."""
        for r in self._found_duplicates:
            self.active.pop(r.request_id, None)
            self._changed.pop(r.request_id, None)
            self.duplicates.add(r.request_id)
        self._found_duplicates = []

    @property
    def dirty(self) -> bool:
        return bool(self._new or self._changed or self.refused)

    async def durable(self, sessions: Callable[[], Any]) -> None:
        """Return once every change made before the call is committed; raise if it cannot be
        (the caller then acknowledges nothing). Callers arriving while a transaction runs wait
        for it, then one more transaction takes all their changes at once."""
        target = self.version
        while self.committed < target:
            if self._flushing is not None:
                await asyncio.shield(self._flushing)
                continue
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flushing, upto = fut, self.version
            undo: Callable[[], None] | None = None
            try:
                if self.dirty and self.held is not None:  # PostgreSQL: one statement, no session
                    undo = await self.flush(self.held)
                elif self.dirty:
                    async with sessions() as session, session.begin():
                        undo = await self.flush(session)
                self.settled_refusals += self._writing_refusals
                self._writing_refusals = []
                self._drop_duplicates()
                self.committed = max(self.committed, upto)
                fut.set_result(None)
            except BaseException as exc:
                if undo is not None:
                    undo()  # not committed: written by the next transaction
                fut.set_exception(exc)
                fut.exception()  # retrieved here: waiters get it through their own await
                raise
            finally:
                self._flushing = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What becomes of a run found open at start: finish it, send it to risk again, or wait."""

    action: str  # finish | resend | wait
    outcome: str | None = None
    reason: str | None = None


def resolve(run: Run, order: Any | None) -> Resolution:
    """Pure: an open run after a restart, given its order's row (None when the executor never
    claimed one). The executor's ledger has the last word; a run that never reached an order is
    sent to risk again (risk, the orchestrator and the executor are idempotent on its ids, so a
    run that did get further is not repeated); an analysis that never produced a signal holds."""
    if order is not None:
        if order.status in ("filled", "rejected", "failed"):
            return Resolution("finish", order.status, order.reason)
        return Resolution("wait")  # pending at the executor: its exec.status will finish the run
    if run.side is None or run.qty is None or run.price is None:
        return Resolution("finish", "hold", "interrupted by a restart before a signal")
    return Resolution("resend")
