"""HTTP routes of the orchestrator (7001): thin functions, each parses, calls the orchestrator's
public parts (runs, halts, the trading day, parameters, streams), returns. The orchestrator is
found on the app (`add_routes`), so the same function serves FastAPI and the routes served ahead
of it (web.Routes)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as ApiPath
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.routing import Route

from cli_trading.contracts import HaltMode, HaltReason
from cli_trading.control import history, streams
from cli_trading.control.params import AlreadyDecided
from cli_trading.control.runs import RunRefused
from cli_trading.exchanges.keys import RECON_KEY
from cli_trading.halt.policy import UnhaltRefused
from cli_trading.web import ApiError, client_addr, guarded, json_body

if TYPE_CHECKING:
    from cli_trading.agents.orchestrator import Orchestrator


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunBody(Body):
    symbol: str = Field(min_length=1, max_length=20)
    side: Literal["buy", "sell"] | None = None
    qty: Decimal | None = Field(default=None, gt=0)
    notional: Decimal | None = Field(default=None, gt=0)
    type: Literal["market", "limit"] = "market"
    limitPrice: Decimal | None = Field(default=None, gt=0)
    timeInForce: Literal["GTC", "IOC", "FOK"] = "GTC"

    @model_validator(mode="after")
    def _one_size(self) -> RunBody:
        if (self.type == "limit") != (self.limitPrice is not None):
            raise ValueError("a limit order (type limit) needs limitPrice, and only a limit order takes one")
        if self.type == "limit" and self.side is None:
            raise ValueError("a limit order is a manual order: give side")
        if self.qty is not None and self.notional is not None:
            raise ValueError("give qty or notional, not both")
        if self.side is not None and self.qty is None and self.notional is None:
            raise ValueError("a manual order (side) needs qty or notional")
        return self


class HaltBody(Body):
    reason: str = Field(default=HaltReason.MANUAL, min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
    note: str | None = Field(default=None, max_length=1000)
    mode: HaltMode = HaltMode.HALT


class UnhaltBody(Body):
    note: str | None = Field(default=None, max_length=1000)
    force: bool = False


class LimitsBody(Body):
    dailyTargetPct: Decimal | None = Field(default=None, gt=0, le=1000)
    dailyLossLimitPct: Decimal | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _something(self) -> LimitsBody:
        if self.dailyTargetPct is None and self.dailyLossLimitPct is None:
            raise ValueError("give dailyTargetPct and/or dailyLossLimitPct")
        return self


class RequeueBody(Body):
    dlqStream: str = Field(min_length=1)
    id: str | None = None
    all: bool = False

    @model_validator(mode="after")
    def _target(self) -> RequeueBody:
        if not self.id and not self.all:
            raise ValueError("give id or all:true")
        return self


class OptimizeBody(Body):
    strategy: str | None = None
    symbol: str | None = None


def _actor(request: Request) -> str:
    return getattr(request.state, "actor", None) or "anonymous"


def _orc(request: Request) -> Orchestrator:
    """The service behind every route (set by `add_routes`)."""
    orc: Orchestrator = request.app.state.orchestrator
    return orc


router = APIRouter()


def add_routes(app: FastAPI, orc: Orchestrator) -> None:
    app.state.orchestrator = orc
    app.include_router(router)
    # The hottest route is also served ahead of FastAPI's middleware stack (web.Routes); the
    # FastAPI route stays for the OpenAPI document. Same function, same errors.
    app.state.hot_routes = [Route("/orchestrate/run", run, methods=["POST"])]
    # Answered on the HTTP server's thread (web.SERVER_ROUTES), once the flag is set.
    app.state.server_routes = [Route("/admin/orchestrate/halt", halt, methods=["POST"])]


# -- PnL and runs ---------------------------------------------------------------------------------
@router.get("/pnl/status", tags=["pnl"])
async def pnl_status(request: Request) -> dict[str, Any]:
    orc = _orc(request)
    out = orc.pnl()
    if orc.settings.trading_mode == "live":  # the executor's reconciliation with the exchange
        raw = await orc.redis.get(RECON_KEY)
        out["reconciliation"] = orjson.loads(raw) if raw else None
    return out


@router.post("/orchestrate/run", status_code=202, tags=["runs"])
async def run(request: Request) -> JSONResponse:
    orc = _orc(request)
    body = await json_body(request, RunBody)
    # a manual order is money: the admin token, in every mode; an analysis run stays open
    # unless RUN_REQUIRES_TOKEN says otherwise (the runbook sends it without a token)
    if body.side is not None or orc.settings.run_requires_token:
        refusal = await guarded(orc, request, [(request.headers.get("x-admin-token"), orc.guard.tokens)])
        if refusal is not None:
            return refusal
    symbol = body.symbol.upper()
    if symbol not in orc.settings.symbol_list:
        raise ApiError(400, f"unknown symbol {body.symbol!r}", symbols=orc.settings.symbol_list)
    try:
        r = await orc.start_run(
            symbol=symbol,
            side=body.side,
            qty=body.qty,
            notional=body.notional,
            request_id=request.headers.get("x-request-id"),
            limit=(body.limitPrice, body.timeInForce) if body.limitPrice is not None else None,
        )
    except RunRefused as exc:
        extra = (
            {"requestId": exc.run.request_id, "outcome": exc.run.outcome, "reason": exc.run.reason} if exc.run else {}
        )
        return JSONResponse({"error": exc.error, **extra, **orc.parts.halts.state.to_api()}, status_code=exc.status)
    return JSONResponse({"requestId": r.request_id, "status": "accepted", "state": r.to_api()["state"]}, 202)


@router.get("/orchestrate/run/{request_id}", tags=["runs"])
async def run_status(request_id: str, request: Request) -> dict[str, Any]:
    r = await _orc(request).lookup_run(request_id)
    if r is None:
        raise ApiError(404, f"no run {request_id!r}")
    return r.to_api()


# -- halts --------------------------------------------------------------------------------------------
@router.post("/admin/orchestrate/halt", tags=["admin"])
async def halt(request: Request) -> JSONResponse:
    """Answered on the HTTP server's thread (web.SERVER_ROUTES), once the flag is set."""
    orc = _orc(request)
    body = await json_body(request, HaltBody)
    actor, source = _actor(request), client_addr(request)
    result = orc.parts.halts.halt(reason=body.reason, mode=body.mode, note=body.note, actor=actor, source=source)
    if body.mode == HaltMode.FLATTEN:  # closing orders are placed from the agent's loop
        result["flatten"] = await orc.on_agent_loop(orc.flatten())
    return JSONResponse(result)


@router.post("/admin/orchestrate/unhalt", tags=["admin"])
async def unhalt(request: Request) -> dict[str, Any]:
    orc = _orc(request)
    body = await json_body(request, UnhaltBody)
    if not orc.parts.halts.state.halted:
        return {**orc.parts.halts.state.to_api(), "message": "not halted"}
    try:
        return await orc.unhalt(actor=_actor(request), source=client_addr(request), note=body.note, force=body.force)
    except UnhaltRefused as exc:
        raise ApiError(409, str(exc), **orc.parts.halts.state.to_api(), percent=str(orc.parts.days.percent())) from exc


@router.get("/admin/halts", tags=["admin"])
async def halts(request: Request, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    orc = _orc(request)
    await orc.parts.recorder.written()
    return {"current": orc.parts.halts.state.to_api(), "events": await history.halt_events(orc.session, limit=limit)}


@router.get("/admin/overview", tags=["admin"])
async def overview(
    request: Request, logs: int = Query(100, ge=0, le=1000), agent: str | None = None, level: str | None = None
) -> dict[str, Any]:
    board = _orc(request).parts.overview
    return await board.build(actor=_actor(request), logs=logs, log_agent=agent, log_level=level)


# -- the trading day ----------------------------------------------------------------------------------
@router.post("/admin/pnl/limits", tags=["admin"])
async def limits(request: Request) -> dict[str, Any]:
    orc = _orc(request)
    body = await json_body(request, LimitsBody)
    if orc.parts.days.day is None:
        raise ApiError(503, "the trading day has not started yet")
    await orc.parts.days.set_limits(target_pct=body.dailyTargetPct, loss_limit_pct=body.dailyLossLimitPct)
    orc.audit(
        "pnl:limits",
        actor=_actor(request),
        source=client_addr(request),
        target=str(body.dailyTargetPct),
        result=str(body.dailyLossLimitPct),
    )
    return orc.pnl()


@router.post("/admin/pnl/reset", tags=["admin"])
async def reset(request: Request) -> dict[str, Any]:
    orc = _orc(request)
    if orc.parts.days.day is None:
        raise ApiError(503, "the trading day has not started yet")
    before = await orc.parts.days.reset()
    orc.audit(
        "pnl:reset",
        actor=_actor(request),
        source=client_addr(request),
        previous=str(before),
        start_equity=str(orc.parts.days.current().start_equity),
    )
    return orc.pnl()


# -- streams ------------------------------------------------------------------------------------------
@router.get("/admin/streams", tags=["admin"])
async def all_streams(request: Request) -> dict[str, Any]:
    return {"streams": await streams.overview(_orc(request).redis)}


@router.get("/admin/streams/pending", tags=["admin"])
async def pending(
    request: Request, stream: str = Query(min_length=1), group: str = Query(min_length=1)
) -> dict[str, Any]:
    try:
        return await streams.pending(_orc(request).redis, stream=stream, group=group)
    except streams.NotFound as exc:
        raise ApiError(404, str(exc)) from exc


@router.get("/admin/streams/dlq", tags=["admin"])
async def dlq(
    request: Request,
    stream: str = Query(min_length=1),
    count: int = Query(50, ge=1, le=1000),
    start: str = Query("-", pattern=r"^(-|\(?\d+(-\d+)?)$"),
) -> dict[str, Any]:
    try:
        return await streams.dlq_entries(_orc(request).redis, stream=stream, count=count, start=start)
    except streams.NotFound as exc:
        raise ApiError(404, str(exc)) from exc


@router.post("/admin/streams/dlq/requeue", tags=["admin"])
async def requeue(request: Request) -> dict[str, Any]:
    orc = _orc(request)
    body = await json_body(request, RequeueBody)
    try:
        done = await streams.requeue_entries(orc.redis, dlq_stream=body.dlqStream, entry_id=body.id, all_=body.all)
    except streams.NotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    orc.audit(
        "streams:requeue",
        actor=_actor(request),
        source=client_addr(request),
        target=body.dlqStream,
        ids=[d["id"] for d in done],
    )
    return {"requeued": done, "count": len(done)}


# -- audit and parameters -----------------------------------------------------------------------------
@router.get("/admin/audit", tags=["admin"])
async def audit(request: Request, limit: int = Query(50, ge=1, le=1000), action: str | None = None) -> dict[str, Any]:
    orc = _orc(request)
    await orc.flush_audit()
    return {"events": await history.audit_events(orc.session, limit=limit, action=action)}


@router.get("/admin/params", tags=["admin"])
async def list_params(request: Request, status: str | None = None) -> dict[str, Any]:
    return {"params": await _orc(request).parts.params.list_params(status=status)}


@router.post("/admin/params/{param_id}/{decision}", tags=["admin"])
async def decide(
    decision: Literal["approve", "reject"],
    request: Request,
    param_id: int = ApiPath(ge=1, le=2**31 - 1),  # the column is a 32-bit integer
) -> dict[str, Any]:
    try:
        params = _orc(request).parts.params
        res = await params.decide(param_id=param_id, approve=decision == "approve", actor=_actor(request))
    except AlreadyDecided as exc:
        raise ApiError(409, str(exc)) from exc
    if res is None:
        raise ApiError(404, f"no parameter set {param_id}")
    return res


@router.post("/admin/optimize", status_code=202, tags=["admin"])
async def optimize(request: Request) -> dict[str, Any]:
    body = await json_body(request, OptimizeBody)
    params = _orc(request).parts.params
    return {
        "requests": await params.request_optimization(reason="operator", strategy=body.strategy, symbol=body.symbol)
    }
