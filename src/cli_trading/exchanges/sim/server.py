"""Assemble and run the simulator: store, service, faults, app and the uvicorn server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import uvicorn

from cli_trading import logs
from cli_trading.exchanges.sim.app import Gate, Runtime, create_app
from cli_trading.exchanges.sim.exchange import SimConfig, SimExchange
from cli_trading.exchanges.sim.faults import FaultPlan, Faults, RateLimiter
from cli_trading.exchanges.sim.store import Store


def build(
    config: SimConfig, data_dir: Path, plan: FaultPlan | None = None, seed: int | None = None
) -> tuple[Runtime, Any]:
    """The runtime and the ASGI app to serve (the fault gate in front of the routes)."""
    store = Store(data_dir)
    faults = Faults(plan, seed)
    rt = Runtime(SimExchange(config, store, faults, time.time()), faults, RateLimiter(config.request_limit))
    return rt, Gate(create_app(rt), rt)


def serve(app: Any, host: str, port: int, data_dir: Path) -> None:
    """Run until SIGINT/SIGTERM; an answer held back by a fault does not delay the stop for long.
    JSON logs (orders, fills, cancels, refusals, faults, admin changes) on stderr and in
    `<data dir>/logs/exchange-sim.log`."""
    logs.configure("exchange-sim", data_dir / "logs")
    config = uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=1, lifespan="on")
    uvicorn.Server(config).run()
