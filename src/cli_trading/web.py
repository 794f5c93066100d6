"""HTTP app factory shared by every agent: /health, /status, /metrics, the OpenAPI document,
request ids, latency metrics, JSON errors, JSON bodies whatever the Content-Type says, and the
admin guard (token, lockout, allow-list, audit) on every /admin/* route."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from cli_trading import metrics, openapi
from cli_trading.auth import TokenStore, allowed, fingerprint
from cli_trading.contracts import new_id

if TYPE_CHECKING:
    from cli_trading.agents.base import Agent

M = TypeVar("M", bound=BaseModel)


class ApiError(HTTPException):
    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(status, {"error": error, **extra})


def error_body(detail: Any) -> dict[str, Any]:
    return detail if isinstance(detail, dict) else {"error": str(detail)}


def validation_errors(exc: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    return [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]} for e in exc.errors()]


async def json_body(request: Request, model: type[M]) -> M:
    """Read the body as JSON whatever the Content-Type (the runbook's curl sends form-urlencoded);
    an empty body is {}. 400 for malformed JSON, 422 naming the fields for a wrong shape."""
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed JSON body", detail=str(exc)) from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field = validation_errors(exc)[0]["field"] if exc.errors() else ""
        raise ApiError(422, f"invalid field: {field}", fields=validation_errors(exc)) from exc


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def crashed(request: Request, exc: Exception) -> JSONResponse:
    structlog.get_logger("web").exception("unhandled error", path=request.url.path)
    return JSONResponse({"error": "internal error", "type": type(exc).__name__}, status_code=500)


def create_app(agent: Agent, *, on_loop: Callable[[Any], Any] = lambda app: app) -> Any:
    """The agent's ASGI app. `on_loop` wraps what must run on the agent's event loop (the HTTP
    server passes `server.OnLoop`; by default everything runs where it is called). Observation,
    the admin guard and the server's own routes (`SERVER_ROUTES`) run where the server runs; the
    hot routes (`HOT_ROUTES`) and FastAPI on the agent's loop."""
    app = _fastapi_app(agent)
    hot, own = getattr(app.state, HOT_ROUTES, []), getattr(app.state, SERVER_ROUTES, [])
    on_agent_loop = on_loop(Routes(hot, app, app=app) if hot else app)
    return Observe(Routes(own, on_agent_loop, app=app) if own else on_agent_loop, agent)


def _fastapi_app(agent: Agent) -> FastAPI:
    app = FastAPI(
        title=f"cli-trading {agent.name}",
        version="0.1.0",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )

    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]  # Starlette types it loosely

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = validation_errors(exc)
        return JSONResponse({"error": f"invalid field: {errs[0]['field']}", "fields": errs}, status_code=422)

    app.add_exception_handler(Exception, crashed)

    @app.get("/health", tags=["ops"])
    async def health() -> JSONResponse:
        checks = await agent.health_checks()
        ok = all(c["ok"] for c in checks.values())
        body = {"status": "ok" if ok else "unavailable", "agent": agent.name, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/status", tags=["ops"])
    async def status() -> dict[str, Any]:
        return {"agent": agent.name, **agent.base_status(), **await agent.status()}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def prometheus() -> Response:
        agent.export_host_metrics()
        agent.refresh_metrics()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    agent.add_routes(app)
    openapi.install(app)
    return app


# Routes served ahead of FastAPI, declared in FastAPI too (for the OpenAPI document): same
# function, same errors. `app.state.hot_routes`: busy routes, spared FastAPI's middleware stack
# (about 40% of a small request's CPU); `app.state.server_routes`: answered on the HTTP server's
# own thread, never waiting for the agent's event loop (agents/server.py).
HOT_ROUTES, SERVER_ROUTES = "hot_routes", "server_routes"


class Routes:
    """A few routes by method and path, with FastAPI's JSON errors; the rest goes to `fallback`.
    A route's `request.app` is `app` (the FastAPI app it is declared in), as in FastAPI."""

    def __init__(self, routes: list[Route], fallback: Any, *, app: Any) -> None:
        self.fallback = fallback
        self.routes: dict[tuple[Any, Any], _JsonErrors] = {
            (m, r.path): _JsonErrors(r, app) for r in routes for m in r.methods or ()
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = self.routes.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        await (route or self.fallback)(scope, receive, send)


class _JsonErrors:
    """What FastAPI's exception handlers do, for a route served by `Routes`."""

    def __init__(self, route: Route, app: Any) -> None:
        self.route, self.app = route, app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = self.route  # the metrics' route label
        scope["app"] = self.app
        try:
            await self.route.handle(scope, receive, send)
        except StarletteHTTPException as exc:
            await (await http_error(Request(scope), exc))(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - the same answer as the app's own handler
            await (await crashed(Request(scope), exc))(scope, receive, send)


class Observe:
    """Pure ASGI middleware (BaseHTTPMiddleware costs a task and a copy per request): request
    ids, latency and request metrics by route template, and the admin guard for /admin/*."""

    def __init__(self, app: Any, agent: Agent) -> None:
        self.app, self.agent = app, agent

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        rid = request.headers.get("x-request-id") or new_id()
        structlog.contextvars.bind_contextvars(requestId=rid, traceId=request.headers.get("x-trace-id") or rid)
        start, status = time.perf_counter(), [500]

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            if scope["path"].startswith("/admin/"):
                await _admin_guard(self.agent, request, self.app, receive, send_with_id)
                self.agent.audit_admin(
                    request.method,
                    request.url.path,
                    actor=getattr(request.state, "actor", None),
                    addr=client_addr(request),
                    status=status[0],
                    request_id=rid,
                )
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)
            metrics.HTTP_REQUESTS.labels(scope["method"], route, str(status[0])).inc()
            structlog.contextvars.unbind_contextvars("requestId", "traceId")


async def _admin_guard(agent: Agent, request: Request, app: Any, receive: Any, send: Any) -> None:
    """Token, lockout and allow-list for /admin/*; refusals answer here, the rest go on."""
    refusal = await auth_refusal(agent, request, [(request.headers.get("x-admin-token"), agent.guard.tokens)])
    if refusal is not None:
        await refusal(request.scope, receive, send)
    else:
        await app(request.scope, receive, send)


def bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (what Alertmanager sends)."""
    kind, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if kind.lower() == "bearer" else None


async def auth_refusal(
    agent: Agent,
    request: Request,
    credentials: Sequence[tuple[str | None, TokenStore]],
    *,
    allow_list: bool = True,
    disabled: str = "admin API disabled: set ADMIN_TOKEN or ADMIN_TOKEN_FILE",
) -> JSONResponse | None:
    """None when one presented credential is valid for its store; otherwise the answer (429 while
    the address is locked out, 401 for a missing or wrong credential, 403 outside the allow-list).
    Failures count towards the lockout, the metric and the security spike like the admin API's."""
    addr = client_addr(request)
    valid = next((tok for tok, store in credentials if tok and store.check(tok)), None)
    presented = next((tok for tok, _ in credentials if tok), None)
    shown = valid or presented
    request.state.actor = fingerprint(shown) if shown else None
    retry = agent.guard.lockout.retry_after(addr)
    if retry is not None:
        return JSONResponse(
            {"error": "too many failed authentications from this address", "retryAfter": retry},
            status_code=429,
            headers={"Retry-After": str(retry)},
        )
    if valid is None:
        metrics.ADMIN_AUTH_FAILURES.inc()
        agent.guard.lockout.fail(addr)
        agent.auth_failed(addr, recent=agent.guard.lockout.recent_failures())
        error = "missing X-Admin-Token header" if not presented else "invalid admin token"
        if not any(store.configured() for _, store in credentials):
            error = disabled
        return JSONResponse({"error": error}, status_code=401)
    if allow_list and not allowed(addr, agent.guard.allow):
        return JSONResponse({"error": f"address {addr} is not in the admin allow-list"}, status_code=403)
    return None


async def guarded(
    agent: Agent, request: Request, credentials: Sequence[tuple[str | None, TokenStore]], **kw: Any
) -> JSONResponse | None:
    """`auth_refusal` for a route outside /admin/ (a manual order, /notify): a refusal is audited
    like an admin call (who, where from, what, result); the caller returns it."""
    refusal = await auth_refusal(agent, request, credentials, **kw)
    if refusal is not None:
        agent.audit_admin(
            request.method,
            request.url.path,
            actor=getattr(request.state, "actor", None),
            addr=client_addr(request),
            status=refusal.status_code,
            request_id=request.headers.get("x-request-id") or "",
        )
    return refusal
