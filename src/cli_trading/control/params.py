"""Strategy parameters: the optimizer's proposals, stored for an operator to approve; an approved
set goes to the market analyst as a command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import desc, select

from cli_trading.contracts import OptRequest, Stream, new_id
from cli_trading.db.models import Param

if TYPE_CHECKING:
    from cli_trading.agents.orchestrator import Orchestrator

STRATEGY_NAMES = ("trend", "mean_reversion")


async def request_optimization(
    orc: Orchestrator, *, reason: str, strategy: str | None = None, symbol: str | None = None
) -> list[str]:
    rids = []
    for sym in [symbol] if symbol else orc.settings.symbol_list:
        for strat in [strategy] if strategy else STRATEGY_NAMES:
            rid = new_id()
            await orc.streams.publish(
                Stream.OPT_REQUESTS, OptRequest(requestId=rid, strategy=strat, symbol=sym, reason=reason)
            )
            rids.append(rid)
    orc.audit("optimize:requested", reason=reason, requests=len(rids))
    return rids


async def store_proposals(orc: Orchestrator, payload: dict[str, Any]) -> None:
    now = orc.clock()
    rows = [
        Param(
            ts=now,
            request_id=payload["requestId"],
            strategy=payload["strategy"],
            symbol=payload["symbol"],
            params=p.get("params", {}),
            score=p.get("score"),
            status="proposed",
        )
        for p in payload.get("proposals", [])[:5]
    ]
    async with orc.session() as s, s.begin():
        s.add_all(rows)
    what = f"{payload['strategy']} on {payload['symbol']}"
    if payload.get("error"):
        message = f"no parameter search for {what}: {payload['error']}"
    elif rows:
        message = f"{len(rows)} parameter proposal(s) for {what} await approval (better out of sample)"
    else:
        message = f"no parameter set for {what} did better out of sample than the current one: nothing to approve"
    best = (payload.get("proposals") or [{}])[0]
    await orc.notify(
        "optimizer.proposals",
        "info",
        message,
        requestId=payload["requestId"],
        outOfSample=best.get("outOfSample"),
        currentOutOfSample=best.get("currentOutOfSample"),
    )


async def list_params(orc: Orchestrator, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    q = select(Param).order_by(desc(Param.id)).limit(limit)
    if status:
        q = q.where(Param.status == status)
    async with orc.session() as s:
        rows = (await s.scalars(q)).all()
    return [
        {
            "id": r.id,
            "ts": r.ts.isoformat(),
            "strategy": r.strategy,
            "symbol": r.symbol,
            "params": r.params,
            "score": r.score,
            "status": r.status,
            "decidedBy": r.decided_by,
        }
        for r in rows
    ]


async def decide(orc: Orchestrator, *, param_id: int, approve: bool, actor: str) -> dict[str, Any] | None:
    async with orc.session() as s, s.begin():
        row = await s.get(Param, param_id)
        if row is None:
            return None
        if row.status != "proposed":
            raise ValueError(f"parameter set {param_id} is already {row.status}")
        row.status, row.decided_by, row.decided_at = ("approved" if approve else "rejected"), actor, orc.clock()
        result: dict[str, Any] = {
            "id": row.id,
            "status": row.status,
            "strategy": row.strategy,
            "symbol": row.symbol,
            "params": row.params,
        }
    if approve:
        await orc.streams.publish(
            Stream.COMMANDS,
            {
                "type": "params",
                "strategy": result["strategy"],
                "symbol": result["symbol"],
                "params": result["params"],
                "requestId": f"params-{param_id}",
            },
        )
    orc.audit(f"params:{result['status']}", actor=actor, target=str(param_id))
    return result
