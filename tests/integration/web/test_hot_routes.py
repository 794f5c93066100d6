"""Routes served ahead of FastAPI (web.Routes, observed by web.Observe) over a real socket: the
same JSON errors, request ids and metrics; everything else still reaches FastAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from starlette.routing import Route

from cli_trading.web import ApiError, Observe, Routes, json_body
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


async def hot(request: Request) -> JSONResponse:
    body = await request.body()
    if body == b"boom":
        raise RuntimeError("something broke")
    if body == b"bad":
        raise ApiError(422, "invalid field: qty", fields=[{"field": "qty", "message": "too small"}])
    return JSONResponse({"ok": True}, status_code=202)


async def validated(request: Request) -> JSONResponse:
    from pydantic import BaseModel

    class Body(BaseModel):
        qty: int

    b = await json_body(request, Body)
    return JSONResponse({"qty": b.qty})


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = FastAPI()

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {"served": "fastapi"}

    routes = [Route("/hot", hot, methods=["POST"]), Route("/valid", validated, methods=["POST"])]
    asgi = Observe(Routes(routes, app, app=app), agent=None)  # type: ignore[arg-type]  # no /admin route here
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # up to 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_hot_route_answers_and_keeps_the_request_id(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as c:
        r = await c.post("/hot", content=b"x", headers={"X-Request-Id": "rid-1"})
    assert r.status_code == 202 and r.json() == {"ok": True}
    assert r.headers["x-request-id"] == "rid-1"
    assert 'http_requests_total{method="POST",route="/hot",status="202"}' in generate_latest().decode()


async def test_hot_route_errors_are_json(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as c:
        crashed = await c.post("/hot", content=b"boom")
        refused = await c.post("/hot", content=b"bad")
        malformed = await c.post("/valid", content=b"{nope")
        wrong = await c.post("/valid", json={"qty": "many"})
    assert crashed.status_code == 500 and crashed.json() == {"error": "internal error", "type": "RuntimeError"}
    assert "something broke" not in crashed.text  # no internals in the answer
    assert refused.status_code == 422 and refused.json()["fields"][0]["field"] == "qty"
    assert malformed.status_code == 400 and malformed.json()["error"] == "malformed JSON body"
    assert wrong.status_code == 422 and wrong.json()["error"] == "invalid field: qty"


async def test_other_routes_still_reach_fastapi(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as c:
        plain = await c.get("/plain")
        wrong_method = await c.get("/hot")
    assert plain.json() == {"served": "fastapi"}
    assert wrong_method.status_code in (404, 405)  # not a hot route for GET: FastAPI answers
