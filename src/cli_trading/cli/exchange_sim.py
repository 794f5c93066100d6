"""`cli-trading exchange-sim`: a local exchange speaking Binance's spot REST API, to rehearse live
mode on (see docs/live-trading.md, "Rehearse on the simulator")."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

from cli_trading.cli.client import console

REHEARSAL_KEY = "sim-key"
REHEARSAL_SECRET = "sim-secret"  # noqa: S105 - the local simulator's public test credential


def register(app: typer.Typer) -> None:
    app.command("exchange-sim")(exchange_sim)


def _balances(items: list[str]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for item in items:
        asset, _, amount = item.partition("=")
        try:
            value = Decimal(amount)
        except InvalidOperation:
            value = Decimal(-1)
        if not asset.strip() or not value.is_finite() or value < 0:
            raise typer.BadParameter(f"{item!r}: write ASSET=AMOUNT, e.g. USDT=10000", param_hint="--balance")
        out[asset.strip().upper()] = value
    return out


def exchange_sim(
    port: Annotated[int, typer.Option(help="port to listen on")] = 7100,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option("--data-dir", help="where its state lives (kept across restarts)")] = Path(
        "exchange-sim-data"
    ),
    api_key: Annotated[str, typer.Option(envvar="EXCHANGE_SIM_API_KEY", help="the API key it accepts")] = REHEARSAL_KEY,
    api_secret: Annotated[
        str, typer.Option(envvar="EXCHANGE_SIM_API_SECRET", help="the API secret it accepts (a rehearsal secret)")
    ] = REHEARSAL_SECRET,
    balance: Annotated[
        list[str] | None, typer.Option(help="starting balance ASSET=AMOUNT, repeatable (a new data dir only)")
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            help="seconds of candle data per wall second, 0 freezes prices (default: as saved in the data dir, else 60)"
        ),
    ] = None,
    depth: Annotated[str, typer.Option(help="book depth: quote value per level and per price move")] = "5000",
    fee_rate: Annotated[str, typer.Option(help="commission rate, maker and taker")] = "0.001",
    candles: Annotated[Path | None, typer.Option(help="folder of your own candle files (default: shipped)")] = None,
    request_limit: Annotated[int, typer.Option(help="requests per minute before 429 (0: no limit)")] = 6000,
    latency_ms: Annotated[int, typer.Option(help="fault: delay before every API answer")] = 0,
    error_rate: Annotated[float, typer.Option(help="fault: share of API requests answered 503")] = 0.0,
    throttle_rate: Annotated[float, typer.Option(help="fault: share answered 429 with Retry-After")] = 0.0,
    lose_answer_rate: Annotated[float, typer.Option(help="fault: share of orders done but unanswered")] = 0.0,
    reject_rate: Annotated[float, typer.Option(help="fault: share of orders rejected (-2010)")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="random seed of the fault rates")] = None,
) -> None:
    """Run a local exchange that ccxt's `binance` class trades on, pointed at http://HOST:PORT."""
    from pydantic import ValidationError

    from cli_trading.exchanges.sim.engine import Book
    from cli_trading.exchanges.sim.exchange import DEFAULT_BALANCES, SimConfig
    from cli_trading.exchanges.sim.faults import FaultPlan
    from cli_trading.exchanges.sim.markets import markets_for
    from cli_trading.exchanges.sim.server import build, serve
    from cli_trading.market.bars import UnknownSymbol

    try:
        book = Book(depth=Decimal(depth), fee_rate=Decimal(fee_rate))
        plan = FaultPlan(
            latency_ms=latency_ms,
            error_rate=error_rate,
            throttle_rate=throttle_rate,
            lose_answer_rate=lose_answer_rate,
            reject_rate=reject_rate,
        )
    except (InvalidOperation, ValidationError) as exc:
        typer.secho(f"exchange-sim: bad option: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if (speed is not None and speed < 0) or book.depth <= 0 or not 0 <= book.fee_rate < 1:
        typer.secho("exchange-sim: --speed must be >= 0, --depth > 0, --fee-rate in [0, 1)", fg="red", err=True)
        raise typer.Exit(2)
    try:
        markets = markets_for(candles)
    except (UnknownSymbol, ValueError, OSError) as exc:
        typer.secho(f"exchange-sim: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    config = SimConfig(
        api_key=api_key,
        api_secret=api_secret,
        book=book,
        speed=speed,
        balances=_balances(balance) if balance else dict(DEFAULT_BALANCES),
        request_limit=request_limit,
        candles=candles,
        markets=markets,
    )
    try:
        rt, app = build(config, data_dir, plan, seed)
    except (UnknownSymbol, ValueError, OSError) as exc:
        typer.secho(f"exchange-sim: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    state = "state restored" if rt.sim.restored else "new state"
    if rt.sim.restored and balance:
        state += " (--balance ignored: the data dir already holds balances)"
    console.print(
        f"exchange-sim (Binance spot API v3) on http://{host}:{port}, data {data_dir} ({state}), "
        f"API key {api_key!r}, markets {', '.join(rt.sim.markets)}"
    )
    serve(app, host, port, data_dir)
