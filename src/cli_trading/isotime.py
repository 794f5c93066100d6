"""Times as the contracts spell them: ISO-8601 in UTC with a `Z` (`iso`), and back (`parse_iso`).
Pure: imported by the market data and backtest modules as well as by the messages."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None = None) -> str:
    return (ts or now_utc()).isoformat().replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """ISO-8601 (`Z` or an offset) as an aware UTC datetime; a value without a zone is UTC.
    ValueError when it is not one."""
    ts = datetime.fromisoformat(value)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
