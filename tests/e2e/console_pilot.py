"""Driving the operator's console with Textual's pilot in the end-to-end tests: waiting for the
screen or a condition, and the steps of acknowledging an incident (shared by the console test
against `cli-trading up` and the one through the nginx edge)."""

# ruff: noqa: ASYNC109 - the waits take their own timeout, like the pilot's

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from cli_trading.console.app import ConsoleApp
from cli_trading.console.panels import Table
from tests.unit.console.screen import screen_text


async def shows(app: ConsoleApp, *texts: str, timeout: float = 20.0, absent: str | None = None) -> float:
    """Wait until the screen shows every text (and not `absent`); returns the seconds it took."""
    start = time.monotonic()
    while (seen_at := time.monotonic()) - start < timeout:
        screen = screen_text(app)  # the screen as it was at `seen_at` (taking the picture takes a while)
        if all(t in screen for t in texts) and (absent is None or absent not in screen):
            return seen_at - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{texts} not on screen after {timeout}s:\n{screen_text(app)}")


async def until(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await asyncio.to_thread(fn):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


def incidents_table(app: ConsoleApp) -> Table:
    return app.query_one("#incidents", Table)


async def incident_listed(app: ConsoleApp, key: str, timeout: float = 20.0) -> Table:
    """Wait until the incidents panel lists incident `key`; the panel."""
    table = incidents_table(app)
    await until(lambda: key in [str(k.value) for k in table.rows], timeout=timeout)
    return table


async def acknowledge(app: ConsoleApp, pilot: Any, *, key: str, notifier_url: str, commander: str) -> dict[str, Any]:
    """The operator's steps: select the incident's row, press `a`, name the commander, OK. Then
    the notification manager has it acknowledged by that commander, and the row says so."""
    table = await incident_listed(app, key)
    table.focus()
    table.move_cursor(row=[str(k.value) for k in table.rows].index(key))
    await pilot.press("a")
    await shows(app, f"Acknowledge incident #{key}")
    app.screen.query_one("#f-commander").value = commander
    await pilot.click("#ok")
    url = f"{notifier_url}/incidents/{key}"
    inc: dict[str, Any] = await until(lambda: (i := httpx.get(url, timeout=10).json())["acknowledgedAt"] and i)
    assert inc["commander"] == commander
    # columns: #, P, ack, age, commander, title
    await until(lambda: (str(table.get_row(key)[2]), str(table.get_row(key)[4])) == ("yes", commander))
    return inc
