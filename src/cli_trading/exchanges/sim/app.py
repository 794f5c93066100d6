"""The HTTP face of the simulator: Binance's `/api/v3/...` (and the few `/sapi/...` ccxt may
ask for), plus `/sim/...` to drive it from outside (faults, prices, balances, clock).

Routes parse, call one service method, shape the answer (`views`). Faults, the request limit and
latency sit in `Gate`, a plain ASGI wrapper in front of the app, because losing an answer after
the order is done means running the route and then not delivering what it said."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from cli_trading.exchanges.sim import public, signed
from cli_trading.exchanges.sim.auth import check_key
from cli_trading.exchanges.sim.errors import UNKNOWN_STATUS, BinanceError, error
from cli_trading.exchanges.sim.exchange import SimExchange
from cli_trading.exchanges.sim.faults import FaultPlan, Faults, RateLimiter, RequestLog, busiest

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]
log = structlog.get_logger("exchange-sim")
TICK_S = 0.25  # how often the clock moves prices and fills resting orders
CLOCK_SAVE_S = 1.0


class PriceBody(BaseModel):
    symbol: str
    price: Decimal = Field(gt=0)
    depth: Decimal | None = Field(
        default=None, gt=0, description="quote value resting orders may fill in this one move (default: --depth)"
    )


class BalanceBody(BaseModel):
    asset: str = Field(min_length=1, max_length=20)
    free: Decimal | None = Field(default=None, ge=0)
    delta: Decimal | None = None


class ClockBody(BaseModel):
    speed: float | None = Field(default=None, ge=0, le=1_000_000)
    advance_s: float = Field(default=0.0, ge=0)


@dataclass
class Runtime:
    sim: SimExchange
    faults: Faults
    limiter: RateLimiter
    requests: RequestLog = field(default_factory=RequestLog)


def create_app(rt: Runtime) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_clock(rt.sim))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            rt.sim.save_clock(time.time())

    app = FastAPI(title="cli-trading exchange-sim", lifespan=lifespan)
    app.state.rt = rt

    @app.exception_handler(BinanceError)
    async def _binance_error(request: Request, exc: BinanceError) -> JSONResponse:
        log.info("refused", method=request.method, path=request.url.path, code=exc.code, msg=exc.msg)
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

    app.include_router(public.router)
    app.include_router(signed.router)
    _admin_routes(app, rt)
    return app


async def _clock(sim: SimExchange) -> None:
    last_save = 0.0
    while True:
        now = time.time()
        sim.tick(now)
        if now - last_save >= CLOCK_SAVE_S:
            sim.save_clock(now)
            last_save = now
        await asyncio.sleep(TICK_S)


def _admin_routes(app: FastAPI, rt: Runtime) -> None:
    def guard(request: Request) -> None:
        check_key(request.headers.get("X-MBX-APIKEY"), rt.sim.config.api_key)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/sim/state")
    async def state(request: Request) -> dict[str, Any]:
        guard(request)
        now = time.time()
        sim = rt.sim
        return {
            "clock": sim.clock.describe(now),
            "prices": {s: str(sim.price(s, now)) for s in sim.markets},
            "openOrders": len(sim.open_orders(None)),
            "orders": len(sim.orders),
            "trades": len(sim.fills),
            "balances": {a: {"free": str(b.free), "locked": str(b.locked)} for a, b in sim.wallet.items()},
            "faults": rt.faults.describe(),
            "restored": sim.restored,
        }

    @app.get("/sim/faults")
    async def get_faults(request: Request) -> dict[str, object]:
        guard(request)
        return rt.faults.describe()

    @app.post("/sim/faults")
    async def set_faults(request: Request, plan: FaultPlan) -> dict[str, object]:
        guard(request)
        rt.faults.set_plan(plan, time.time())
        return rt.faults.describe()

    @app.delete("/sim/faults")
    async def clear_faults(request: Request) -> dict[str, object]:
        guard(request)
        rt.faults.set_plan(FaultPlan(), time.time())
        return rt.faults.describe()

    @app.get("/sim/requests")
    async def requests(request: Request, since: float = 0.0, until: float | None = None) -> dict[str, Any]:
        """Requests that reached the exchange API (not /sim/) from `since` (epoch seconds) to
        `until`, per API key ("" for public ones): how many, and the most in any one second."""
        guard(request)
        seen = [e for e in rt.requests.since(since) if until is None or e[0] < until]
        keys: dict[str, list[float]] = {}
        for t, key, _, _ in seen:
            keys.setdefault(key, []).append(t)
        every = [e[0] for e in seen]
        return {
            "count": len(seen),
            "maxPerSecond": busiest(every),
            "byKey": {k: {"count": len(ts), "maxPerSecond": busiest(ts)} for k, ts in keys.items()},
            "requests": [{"t": t, "key": k, "method": m, "path": p} for t, k, m, p in seen],
        }

    @app.post("/sim/price")
    async def set_price(request: Request, body: PriceBody) -> dict[str, Any]:
        guard(request)
        fills = rt.sim.set_price(body.symbol, body.price, time.time(), depth=body.depth)
        return {
            "symbol": body.symbol,
            "price": str(rt.sim.price(body.symbol, time.time())),
            "fills": len(fills),
            "trades": [{"orderId": f.order_id, "tradeId": f.trade_id, "qty": str(f.qty)} for f in fills],
        }

    @app.post("/sim/balance")
    async def set_balance(request: Request, body: BalanceBody) -> Any:
        guard(request)
        if (body.free is None) == (body.delta is None):
            return JSONResponse({"detail": "give exactly one of 'free' or 'delta'"}, 422)
        try:
            bal = rt.sim.set_balance(body.asset, free=body.free, delta=body.delta, now=time.time())
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, 409)
        return {"asset": body.asset, "free": str(bal.free), "locked": str(bal.locked)}

    @app.post("/sim/clock")
    async def set_clock(request: Request, body: ClockBody) -> dict[str, object]:
        guard(request)
        now = time.time()
        rt.sim.set_clock(now, speed=body.speed, advance_s=body.advance_s)
        fills = rt.sim.tick(now)
        return rt.sim.clock.describe(now) | {"fills": len(fills)}


class Gate:
    """Request limit, faults and latency in front of the app (never on /sim/ or /health)."""

    def __init__(self, app: Any, rt: Runtime) -> None:
        self.app, self.rt = app, rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/sim/") or path == "/health":
            await self.app(scope, receive, send)
            return
        now = time.time()
        self.rt.requests.add(now, _api_key(scope), scope.get("method", ""), path)
        refusal = self.rt.limiter.check(now) or self.rt.faults.before(path, scope.get("method"))
        delay = self.rt.faults.latency_s(path)
        if delay:
            await asyncio.sleep(delay)
        if refusal is not None:
            log.warning("fault_injected", path=path, status=refusal.status)
        if refusal is not None and refusal.status >= 500:  # from the front, as a gateway answers: no JSON
            page = f"<html><body><h1>{refusal.status} Service Unavailable</h1></body></html>"
            await HTMLResponse(page, refusal.status)(scope, receive, send)
            return
        if refusal is not None:
            await JSONResponse(refusal.body(), refusal.status, headers=refusal.headers)(scope, receive, send)
            return
        if self.rt.faults.loses_answer(scope["method"], path):
            await self._lose_answer(scope, receive, send)
            return
        used = str(self.rt.limiter.used(now)).encode()
        after = self.rt.faults.answer_delay_s(path)

        async def send_weight(msg: AsgiMessage) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = [*msg.get("headers", []), (b"x-mbx-used-weight-1m", used)]
                if after:
                    await asyncio.sleep(after)  # done and saved; the answer is late
            await send(msg)

        await self.app(scope, receive, send_weight)

    async def _lose_answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def swallow(_: AsgiMessage) -> None:
            return None

        await self.app(scope, receive, swallow)  # the order is done and on disk; its answer goes nowhere
        plan = self.rt.faults.plan
        log.warning("fault_injected", path=scope["path"], kind="lose_answer", mode=plan.lose_answer_mode)
        if plan.lose_answer_mode == "error":
            exc = error(UNKNOWN_STATUS, 503)  # Binance's "execution status unknown"
            await JSONResponse(exc.body(), exc.status)(scope, receive, send)
            return
        if plan.lose_answer_mode == "timeout":
            await asyncio.sleep(plan.lose_answer_hold_s)
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None:
            transport.close()  # the client sees the connection end without an answer
            await asyncio.sleep(0.05)  # uvicorn notices, and drops what follows without a complaint
        # a server without a reachable transport: an empty 504 is the closest thing
        await JSONResponse({}, 504)(scope, receive, send)


def _api_key(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-mbx-apikey":
            return str(value.decode("latin-1"))
    return ""
