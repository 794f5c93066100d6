"""The contracts' time format and its inverse (isotime.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_trading.isotime import iso, parse_iso

AT = datetime(2026, 3, 14, 12, 30, 5, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["2026-03-14T12:30:05.250Z", "2026-03-14T12:30:05.250+00:00", "2026-03-14T14:30:05.250+02:00",
     "2026-03-14T12:30:05.250"],  # no zone: UTC
)  # fmt: skip
def test_every_spelling_of_one_instant_is_that_instant_in_utc(text: str) -> None:
    got = parse_iso(text)
    assert got == AT and got.tzinfo == UTC


def test_iso_writes_z_and_reads_back() -> None:
    assert iso(AT) == "2026-03-14T12:30:05.250000Z"
    assert parse_iso(iso(AT)) == AT


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "12:30"])
def test_what_is_not_a_time_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso(text)


@given(st.datetimes(timezones=st.just(timezone(timedelta(hours=-5)))))
def test_round_trip_through_any_offset(at: datetime) -> None:
    assert parse_iso(at.isoformat()) == at and parse_iso(iso(at.astimezone(UTC))) == at
