"""Strategy parameters: the optimizer's proposals, stored for an operator to approve; an approved
set goes to the market analyst as a command. Takes the parts it uses (sessions, a publisher, the
audit and notifications), not the orchestrator; its queries are in `db/repo.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from cli_trading.contracts import OptRequest, OptResult, ParamsCommand, Stream, new_id
from cli_trading.db import repo
from cli_trading.db.models import Param

STRATEGY_NAMES = ("trend", "mean_reversion")
KEPT_PROPOSALS = 5  # of one search, best first
FIGURES = ("inSample", "outOfSample", "currentOutOfSample")  # kept with a proposal, listed with it


class AlreadyDecided(ValueError):
    """The parameter set was approved or rejected before."""


class Params:
    def __init__(
        self,
        *,
        sessions: Callable[[], Any],
        publish: Callable[[str, BaseModel], Awaitable[Any]],
        audit: Callable[..., None],
        notify: Callable[..., Awaitable[None]],
        clock: Callable[[], datetime],
        symbols: Sequence[str],
    ) -> None:
        self.sessions, self.publish, self.audit, self.notify = sessions, publish, audit, notify
        self.clock, self.symbols = clock, symbols

    async def request_optimization(
        self, *, reason: str, strategy: str | None = None, symbol: str | None = None
    ) -> list[str]:
        """One search per symbol and strategy (or the one given); returns their request ids."""
        rids = []
        for sym in [symbol] if symbol else self.symbols:
            for strat in [strategy] if strategy else STRATEGY_NAMES:
                rid = new_id()
                await self.publish(
                    Stream.OPT_REQUESTS, OptRequest(requestId=rid, strategy=strat, symbol=sym, reason=reason)
                )
                rids.append(rid)
        self.audit("optimize:requested", reason=reason, requests=len(rids))
        return rids

    async def store_proposals(self, result: OptResult) -> None:
        """A search's proposals (the best few) await an operator; the notification says so."""
        now, proposals = self.clock(), result.proposals[:KEPT_PROPOSALS]
        rows = [
            {
                "ts": now,
                "request_id": result.requestId,
                "strategy": result.strategy,
                "symbol": result.symbol,
                "params": p.get("params", {}),
                "score": p.get("score"),
                "figures": {k: p.get(k) for k in FIGURES},
                "status": "proposed",
            }
            for p in proposals
        ]
        async with self.sessions() as s, s.begin():
            await repo.add_params(s, rows=rows)
        what = f"{result.strategy} on {result.symbol}"
        if result.error:
            message = f"no parameter search for {what}: {result.error}"
        elif rows:
            message = f"{len(rows)} parameter proposal(s) for {what} await approval (better out of sample)"
        else:
            message = f"no parameter set for {what} did better out of sample than the current one: nothing to approve"
        best = proposals[0] if proposals else {}
        await self.notify(
            "optimizer.proposals",
            "info",
            message,
            requestId=result.requestId,
            outOfSample=best.get("outOfSample"),
            currentOutOfSample=best.get("currentOutOfSample"),
        )

    async def list_params(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        async with self.sessions() as s:
            rows = await repo.list_params(s, status=status, limit=limit)
        return [
            {
                "id": r.id,
                "ts": r.ts.isoformat(),
                "strategy": r.strategy,
                "symbol": r.symbol,
                "params": r.params,
                "score": r.score,
                **{k: (r.figures or {}).get(k) for k in FIGURES},
                "status": r.status,
                "decidedBy": r.decided_by,
            }
            for r in rows
        ]

    async def decide(self, *, param_id: int, approve: bool, actor: str) -> dict[str, Any] | None:
        """Approve or reject a proposed set (None: no such set); an approved one goes to the
        analyst. Raises `AlreadyDecided` for a set decided before."""
        async with self.sessions() as s, s.begin():
            row = await repo.get_param(s, param_id=param_id)
            if row is None:
                return None
            if row.status != "proposed":
                raise AlreadyDecided(f"parameter set {param_id} is already {row.status}")
            status = "approved" if approve else "rejected"
            await repo.decide_param(s, row=row, status=status, actor=actor, at=self.clock())
            result = _decided(row)
        if approve:
            await self.publish(
                Stream.COMMANDS,
                ParamsCommand(
                    requestId=f"params-{param_id}",
                    strategy=row.strategy,
                    symbol=row.symbol,
                    params=row.params,
                ),
            )
        self.audit(f"params:{result['status']}", actor=actor, target=str(param_id))
        return result


def _decided(row: Param) -> dict[str, Any]:
    return {"id": row.id, "status": row.status, "strategy": row.strategy, "symbol": row.symbol, "params": row.params}
