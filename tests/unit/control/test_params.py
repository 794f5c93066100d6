"""Strategy parameters (control/params.py): proposals stored, listed, decided once, an approved set
sent to the analyst. No service: a SQLite file, fakes for the bus, the audit and notifications."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cli_trading.contracts import OptRequest, OptResult, ParamsCommand, Stream
from cli_trading.control.params import STRATEGY_NAMES, AlreadyDecided, Params
from cli_trading.db import engine as dbengine
from cli_trading.db.models import Base

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


class Calls:
    def __init__(self) -> None:
        self.published: list[tuple[str, BaseModel]] = []
        self.audited: list[tuple[str, dict[str, Any]]] = []
        self.notified: list[tuple[str, str, str, dict[str, Any]]] = []

    async def publish(self, stream: str, msg: BaseModel) -> str:
        self.published.append((stream, msg))
        return "0-1"

    def audit(self, action: str, **fields: Any) -> None:
        self.audited.append((action, fields))

    async def notify(self, type_: str, severity: str, message: str, **context: Any) -> None:
        self.notified.append((type_, severity, message, context))


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Params, Calls]]:
    engine = dbengine.make_engine(f"sqlite+aiosqlite:///{tmp_path / 'unit.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    calls = Calls()
    params = Params(
        sessions=dbengine.sessionmaker(engine),
        publish=calls.publish,
        audit=calls.audit,
        notify=calls.notify,
        clock=lambda: NOW,
        symbols=["BTC-USD", "ETH-USD"],
    )
    yield params, calls
    await engine.dispose()


def figures(i: int) -> dict[str, Any]:
    return {
        "inSample": {"totalReturn": 0.3 - i / 100, "trades": 12},
        "outOfSample": {"totalReturn": 0.1 - i / 100, "trades": 4},
        "currentOutOfSample": {"totalReturn": -0.02, "trades": 5},
    }


def result(n: int, **kw: Any) -> OptResult:
    proposals = [{"params": {"fast": i}, "score": 1.0 - i / 10, **figures(i)} for i in range(n)]
    return OptResult(requestId="opt-1", strategy="trend", symbol="BTC-USD", proposals=proposals, **kw)


async def test_an_optimization_per_symbol_and_strategy(parts: tuple[Params, Calls]) -> None:
    params, calls = parts
    rids = await params.request_optimization(reason="operator")
    sent = [m for _, m in calls.published]
    assert len(rids) == 2 * len(STRATEGY_NAMES) and all(isinstance(m, OptRequest) for m in sent)
    assert {(m.symbol, m.strategy) for m in sent if isinstance(m, OptRequest)} == {
        (sym, strat) for sym in ("BTC-USD", "ETH-USD") for strat in STRATEGY_NAMES
    }
    assert calls.audited == [("optimize:requested", {"reason": "operator", "requests": 4})]
    assert len(await params.request_optimization(reason="operator", strategy="trend", symbol="ETH-USD")) == 1


async def test_the_best_proposals_are_stored_and_announced(parts: tuple[Params, Calls]) -> None:
    params, calls = parts
    await params.store_proposals(result(7))
    listed = await params.list_params()
    assert len(listed) == 5  # the best five of a search
    assert [p["params"] for p in reversed(listed)] == [{"fast": i} for i in range(5)]
    assert {p["status"] for p in listed} == {"proposed"}
    # each listed with its out-of-sample figures and the current set's, for the operator to weigh
    assert [{k: p[k] for k in ("inSample", "outOfSample", "currentOutOfSample")} for p in reversed(listed)] == [
        figures(i) for i in range(5)
    ]
    (kind, severity, message, context), *_ = calls.notified
    assert (kind, severity) == ("optimizer.proposals", "info")
    assert message.startswith("5 parameter proposal(s) for trend on BTC-USD") and context["requestId"] == "opt-1"


@pytest.mark.parametrize(
    ("res", "says"),
    [
        (result(0), "did better out of sample than the current one"),
        (result(0, error="too little history"), "no parameter search for trend on BTC-USD: too little history"),
    ],
)
async def test_nothing_to_approve_is_said(parts: tuple[Params, Calls], res: OptResult, says: str) -> None:
    params, calls = parts
    await params.store_proposals(res)
    assert await params.list_params() == []
    assert says in calls.notified[0][2]


async def test_an_approved_set_goes_to_the_analyst_once(parts: tuple[Params, Calls]) -> None:
    params, calls = parts
    await params.store_proposals(result(2))
    first = (await params.list_params())[-1]
    decided = await params.decide(param_id=first["id"], approve=True, actor="tok:ab12")
    assert decided == {
        "id": first["id"],
        "status": "approved",
        "strategy": "trend",
        "symbol": "BTC-USD",
        "params": {"fast": 0},
    }
    stream, command = calls.published[-1]
    assert stream == Stream.COMMANDS and isinstance(command, ParamsCommand)
    assert (command.type, command.requestId, command.params) == ("params", f"params-{first['id']}", {"fast": 0})
    assert calls.audited[-1] == ("params:approved", {"actor": "tok:ab12", "target": str(first["id"])})
    assert [(p["status"], p["decidedBy"]) for p in await params.list_params(status="approved")] == [
        ("approved", "tok:ab12")
    ]
    with pytest.raises(AlreadyDecided, match="already approved"):
        await params.decide(param_id=first["id"], approve=False, actor="tok:ab12")
    assert len(calls.published) == 1


async def test_a_rejected_set_sends_nothing(parts: tuple[Params, Calls]) -> None:
    params, calls = parts
    await params.store_proposals(result(1))
    (row,) = await params.list_params()
    decided = await params.decide(param_id=row["id"], approve=False, actor="op")
    assert decided is not None and decided["status"] == "rejected"
    assert calls.published == []
    assert await params.decide(param_id=row["id"] + 1, approve=True, actor="op") is None  # no such set
