"""Which errors are outages (retry the batch forever) and which are the message's fault."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from cli_trading.faults import is_outage


class DriverError(Exception):
    def __init__(self, msg: str, sqlstate: str | None) -> None:
        super().__init__(msg)
        self.sqlstate = sqlstate


def wrapped(msg: str, sqlstate: str | None, cls: type[DBAPIError] = DBAPIError) -> DBAPIError:
    return cls("INSERT ...", {}, DriverError(msg, sqlstate))


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError("refused"),
        TimeoutError(),
        RedisConnectionError("down"),
        wrapped("the database system is shutting down", "57P01"),
        wrapped("the database system is starting up", "57P03"),
        wrapped("connection failure", "08006"),
        wrapped('database "trading" is not currently accepting connections', "55000"),
        wrapped("server closed the connection", None, OperationalError),
    ],
)
def test_outages(exc: BaseException) -> None:
    assert is_outage(exc)


def test_outage_found_in_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("while writing the ledger") from inner
    except RuntimeError as outer:
        assert is_outage(outer)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad payload"),
        KeyError("symbol"),
        wrapped("duplicate key", "23505", IntegrityError),
        wrapped("numeric field overflow", "22003"),
    ],
)
def test_not_outages(exc: BaseException) -> None:
    assert not is_outage(exc)
