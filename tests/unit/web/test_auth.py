"""Admin authentication: token file reload, rotation grace, lockout, allow-list."""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli_trading import auth
from cli_trading.auth import Lockout, TokenStore, allowed, fingerprint, parse_allow_list, previous_path

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """auth.now_utc() returns now[0]; tests move it."""
    now = [NOW]
    monkeypatch.setattr(auth, "now_utc", lambda: now[0])
    return now


def write(path: Path, text: str, *, bump_ns: int) -> None:
    """Write and set a distinct mtime, so that coarse file-system clocks can't hide the change."""
    path.write_text(text)
    os.utime(path, ns=(bump_ns, bump_ns))


def write_previous(token_file: Path, token: str, valid_until: datetime, *, bump_ns: int = 10**18) -> None:
    body = {"token": token, "validUntil": valid_until.isoformat().replace("+00:00", "Z")}
    write(previous_path(token_file), json.dumps(body), bump_ns=bump_ns)


# -- TokenStore ------------------------------------------------------------------------------
def test_token_from_env_value() -> None:
    store = TokenStore(token="abc")
    assert store.configured()
    assert store.check("abc")
    assert not store.check("abd")
    assert not store.check("")
    assert not store.check(None)


def test_unconfigured_refuses_everything() -> None:
    store = TokenStore()
    assert not store.configured()
    assert not store.check("")
    assert not store.check("anything")


def test_token_from_file(tmp_path: Path) -> None:
    f = tmp_path / "admin_token"
    write(f, "file-token-1\n", bump_ns=10**18)
    store = TokenStore(token_file=str(f))
    assert store.configured()
    assert store.check("file-token-1")
    assert not store.check("file-token-1\n")


def test_changed_file_picked_up_without_restart(tmp_path: Path) -> None:
    f = tmp_path / "admin_token"
    write(f, "first", bump_ns=10**18)
    store = TokenStore(token_file=str(f))
    assert store.check("first")
    write(f, "second", bump_ns=10**18 + 1)
    assert store.check("second")
    assert not store.check("first")  # no grace file: the old token is gone at once


def test_empty_token_file_is_not_configured(tmp_path: Path) -> None:
    f = tmp_path / "admin_token"
    write(f, "\n", bump_ns=10**18)
    store = TokenStore(token_file=str(f))
    assert not store.configured()
    assert not store.check("")


def test_previous_token_honoured_until_valid_until(tmp_path: Path, frozen_now: list[datetime]) -> None:
    f = tmp_path / "admin_token"
    write(f, "new-token", bump_ns=10**18)
    write_previous(f, "old-token", NOW + timedelta(minutes=5))
    store = TokenStore(token_file=str(f))
    assert store.check("new-token")
    assert store.check("old-token")
    assert not store.check("other")
    frozen_now[0] = NOW + timedelta(minutes=4, seconds=59)
    assert store.check("old-token")
    frozen_now[0] = NOW + timedelta(minutes=5)
    assert not store.check("old-token")
    assert store.check("new-token")


def test_expired_previous_token_ignored(tmp_path: Path, frozen_now: list[datetime]) -> None:
    f = tmp_path / "admin_token"
    write(f, "new-token", bump_ns=10**18)
    write_previous(f, "old-token", NOW - timedelta(seconds=1))
    store = TokenStore(token_file=str(f))
    assert not store.check("old-token")
    assert store.check("new-token")


def test_rotation_while_running(tmp_path: Path, frozen_now: list[datetime]) -> None:
    """Graceful rotation: old token moves to .previous, the new one to the file; a forced rotation
    deletes .previous and the old token stops working at once."""
    f = tmp_path / "admin_token"
    write(f, "t1", bump_ns=10**18)
    store = TokenStore(token_file=str(f))
    assert store.check("t1")
    write_previous(f, "t1", NOW + timedelta(minutes=5), bump_ns=10**18 + 5)
    write(f, "t2", bump_ns=10**18 + 5)
    assert store.check("t2") and store.check("t1")
    previous_path(f).unlink()
    write(f, "t3", bump_ns=10**18 + 9)
    assert store.check("t3")
    assert not store.check("t1") and not store.check("t2")


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "{}",
        "[1, 2]",
        '{"token": "x"}',
        '{"validUntil": "2099-01-01T00:00:00Z"}',
        '{"token": "x", "validUntil": 4102444800}',
        '{"token": 5, "validUntil": "2099-01-01T00:00:00Z"}',
        '{"token": "x", "validUntil": "next tuesday"}',
    ],
)
def test_malformed_previous_file_ignored(tmp_path: Path, body: str, frozen_now: list[datetime]) -> None:
    f = tmp_path / "admin_token"
    write(f, "current", bump_ns=10**18)
    write(previous_path(f), body, bump_ns=10**18)
    store = TokenStore(token_file=str(f))
    assert store.check("current")
    assert not store.check("x")


def test_previous_without_zone_is_utc(tmp_path: Path, frozen_now: list[datetime]) -> None:
    """A hand-written validUntil without a zone must not break the check of the current token."""
    f = tmp_path / "admin_token"
    write(f, "current", bump_ns=10**18)
    write(previous_path(f), json.dumps({"token": "old", "validUntil": "2026-03-14T12:05:00"}), bump_ns=10**18)
    store = TokenStore(token_file=str(f))
    assert store.check("current")
    assert store.check("old")
    frozen_now[0] = NOW + timedelta(minutes=6)
    assert not store.check("old")


def test_previous_path() -> None:
    assert previous_path("/run/secrets/admin_token") == Path("/run/secrets/admin_token.previous")


def test_fingerprint_does_not_reveal_token() -> None:
    fp = fingerprint("super-secret-token")
    assert fp.startswith("tok:") and len(fp) == 16
    assert "super" not in fp
    assert fp == fingerprint("super-secret-token") != fingerprint("super-secret-tokeN")


# -- Lockout ---------------------------------------------------------------------------------
def test_ten_failures_lock_out() -> None:
    clock = Clock()
    lock = Lockout(limit=10, window_s=60, lockout_s=300, clock=clock)
    for _ in range(9):
        assert lock.fail("10.0.0.1") is False
        clock.t += 1
    assert lock.retry_after("10.0.0.1") is None
    assert lock.fail("10.0.0.1") is True
    assert lock.retry_after("10.0.0.1") == 300
    assert lock.retry_after("10.0.0.2") is None  # per address
    clock.t += 100.5
    assert lock.retry_after("10.0.0.1") == 200  # rounded up
    clock.t += 199.5
    assert lock.retry_after("10.0.0.1") is None  # expired
    # Expiry clears the failures too: one more failure does not lock again.
    assert lock.fail("10.0.0.1") is False
    assert lock.retry_after("10.0.0.1") is None


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    lock = Lockout(limit=10, window_s=60, lockout_s=300, clock=clock)
    for _ in range(30):
        assert lock.fail("10.0.0.1") is False
        clock.t += 7  # 9 failures fit in 60 s, never 10
    assert lock.retry_after("10.0.0.1") is None


def test_recent_failures_counts_all_addresses_in_window() -> None:
    clock = Clock()
    lock = Lockout(limit=100, window_s=60, clock=clock)
    for i in range(5):
        lock.fail(f"10.0.0.{i}")
    assert lock.recent_failures() == 5
    clock.t += 61
    lock.fail("10.0.0.9")
    assert lock.recent_failures() == 1


# -- allow-list ------------------------------------------------------------------------------
def test_allow_list_parsing() -> None:
    nets = parse_allow_list(" 10.0.0.0/8, 192.168.1.5 ,::1,, 172.16.0.1/12")
    assert nets == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.5/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("172.16.0.0/12"),  # host bits tolerated
    ]
    assert parse_allow_list("") == []
    assert parse_allow_list(" , ") == []
    with pytest.raises(ValueError):
        parse_allow_list("10.0.0.0/8,not-an-address")


def test_allowed() -> None:
    nets = parse_allow_list("10.0.0.0/8,192.168.1.5,::1")
    assert allowed("10.20.30.40", nets)
    assert allowed("192.168.1.5", nets)
    assert not allowed("192.168.1.6", nets)
    assert allowed("::1", nets)
    assert not allowed("2001:db8::1", nets)
    assert not allowed("testclient", nets)  # not an address at all
    assert allowed("203.0.113.9", [])  # no list: everyone
