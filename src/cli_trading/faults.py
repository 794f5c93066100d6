"""Which errors mean "a dependency is unavailable right now" rather than "this message is bad".

The difference decides what the bus does: a bad message is counted and, after `maxFailures`,
dead-lettered; an outage (database or Redis unreachable, shutting down, starting up) is not the
message's fault, so the batch is kept and retried with backoff until the dependency returns,
however long that takes. Dead-lettering orders or halt notifications because PostgreSQL restarted
would lose exactly what the operator needs."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57 operator intervention
# (admin shutdown, cannot connect now), 58 system error
_OUTAGE_SQLSTATE_CLASSES = ("08", "53", "57", "58")


def is_outage(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # the driver's error may be a cause of the wrapper
        seen.add(id(e))
        if _outage(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _outage(e: BaseException) -> bool:
    if isinstance(e, OSError | TimeoutError | RedisConnectionError | RedisTimeoutError):
        return True
    if isinstance(e, DBAPIError):
        if e.connection_invalidated or isinstance(e, OperationalError | InterfaceError):
            return True
        e = e.orig or e
    state = getattr(e, "sqlstate", None) or ""
    return state[:2] in _OUTAGE_SQLSTATE_CLASSES or "not currently accepting connections" in str(e)
