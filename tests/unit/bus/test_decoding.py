"""A batch read as its contract models (bus.decoded): a wrong-shaped message is a PoisonMessage,
dead-lettered at once, and fails alone; the analyst's commands are told apart by their type."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from cli_trading.agents import agent_class
from cli_trading.bus import Delivery, PoisonMessage, decoded, failures, valid
from cli_trading.busops import encode
from cli_trading.config import Settings
from cli_trading.contracts import (
    AGENTS,
    AnalyzeCommand,
    Command,
    NotifyEvent,
    OptRequest,
    OptResult,
    OrderMsg,
    ParamsCommand,
    RiskRequest,
    RiskResponse,
    SignalMsg,
    StatusMsg,
    Stream,
)


def batch(*payloads: dict[str, object]) -> list[Delivery]:
    return [Delivery("s", f"0-{i}", dict(p)) for i, p in enumerate(payloads)]


def test_a_wrong_shape_fails_alone() -> None:
    msgs = decoded(RiskResponse, batch({"requestId": "r1", "ok": True}, {"ok": "maybe"}, {"requestId": "r3", "ok": 0}))
    assert [m.requestId for m in valid(msgs)] == ["r1", "r3"]
    outcomes = failures(msgs)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], PoisonMessage) and "invalid RiskResponse" in str(outcomes[1])


def test_fields_arrive_typed() -> None:
    payload = {"orderId": "o", "requestId": "r", "status": "filled", "symbol": "BTC-USD", "side": "buy", "qty": "0.1"}
    (st,) = decoded(StatusMsg, batch({**payload, "price": "101.5"}))
    assert isinstance(st, StatusMsg) and st.qty == Decimal("0.1") and st.price == Decimal("101.5")
    (bad,) = decoded(StatusMsg, batch({**payload, "status": "lost"}))
    assert isinstance(bad, PoisonMessage)


def test_commands_by_type() -> None:
    commands: TypeAdapter[Command] = TypeAdapter(Command)
    analyze = commands.validate_python({"type": "analyze", "requestId": "r", "symbol": "BTC-USD"})
    params = commands.validate_python(
        {"type": "params", "requestId": "p", "strategy": "trend", "symbol": "BTC-USD", "params": {"fast": 3}}
    )
    assert isinstance(analyze, AnalyzeCommand) and isinstance(params, ParamsCommand)
    with pytest.raises(ValidationError):
        commands.validate_python({"type": "halt", "reason": "manual"})  # no such command any more


def test_what_is_published_decodes_again() -> None:
    """The bus leaves None fields out of a message: each must still decode (a signal without a
    side is a hold, not a wrong shape)."""
    hold = SignalMsg(requestId="r", symbol="BTC-USD", side=None, confidence=0, price=Decimal(0), strategy="none")
    failed = StatusMsg(orderId="o", requestId="r", status="failed", symbol="BTC-USD", side="buy", qty=Decimal(1))
    for msg in (hold, failed, RiskResponse(requestId="r", ok=True)):
        (back,) = decoded(type(msg), batch(orjson.loads(encode(msg))))
        assert back == msg


KEYED_MODELS: dict[str, tuple[type[BaseModel], ...]] = {
    Stream.SIGNALS: (SignalMsg,),
    Stream.RISK_REQUESTS: (RiskRequest,),
    Stream.RISK_RESPONSES: (RiskResponse,),
    Stream.ORDERS: (OrderMsg,),
    Stream.STATUS: (StatusMsg,),
    Stream.COMMANDS: (AnalyzeCommand, ParamsCommand),
    Stream.NOTIFY: (NotifyEvent,),
    Stream.OPT_REQUESTS: (OptRequest,),
    Stream.OPT_RESULTS: (OptResult,),
}


@pytest.mark.parametrize("agent", AGENTS)
def test_the_key_redis_reads_is_the_validated_messages_own(agent: str, tmp_path: Path) -> None:
    """The consumer reads a message's idempotency key from the raw payload, in Redis, before the
    handler validates it into its contract model (bus.py): so every subscription's key is a string
    field of that model, which validation keeps as it is (no coercion: a non-string is no key)."""
    subs = agent_class(agent)(Settings(data_dir=tmp_path)).subscriptions()
    for sub in (s for s in subs if s.key):
        for model in KEYED_MODELS[sub.stream]:
            field = model.model_fields[sub.key]
            assert field.annotation in (str, str | None), (agent, sub.stream, sub.key)
            assert TypeAdapter(field.annotation).validate_python("k-1") == "k-1"
            with pytest.raises(ValidationError):
                TypeAdapter(field.annotation).validate_python(7)  # a number is not made a key's string
