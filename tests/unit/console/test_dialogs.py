"""SVG snapshots of the halt and unhalt dialogs at 120×40 and 80×24 (each with its buttons on
screen: the halt dialog's Halt button was once pushed off it), and the console's behaviour when
Redis is out and back, from fixed overview documents."""

from __future__ import annotations

import time
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button

from cli_trading.console.app import ConsoleApp
from cli_trading.console.client import Refused
from tests.unit.console.sample import NOW, halted, trading
from tests.unit.console.screen import screen_text

SIZES = {"120x40": (120, 40), "80x24": (80, 24)}
LOSS_LIMIT = {
    "error": "daily loss limit breached: trading stays halted (force to override)",
    "percent": "-5.21",
    "haltReason": "daily_loss_limit",
    "haltedAt": "2026-11-30T03:07:12Z",
}


class Stub:
    """The console's client, answering from a document; a plain unhalt is refused (409)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    async def overview(self) -> dict[str, Any]:
        return self.doc

    async def unhalt(self, *, force: bool = False, note: str | None = None) -> dict[str, Any]:
        if not force:
            raise Refused(409, LOSS_LIMIT)
        return {"halted": False}


def console_app(doc: dict[str, Any]) -> ConsoleApp:
    return ConsoleApp(Stub(doc), clock=lambda: NOW, interval=60)  # type: ignore[arg-type]


async def halt_dialog(pilot: Pilot[Any]) -> None:
    await pilot.press("h")
    await pilot.pause()


async def unhalt_refused(pilot: Pilot[Any]) -> None:
    await pilot.press("u")
    await pilot.pause()
    await pilot.click("#go")
    # The refusal is drawn and the pressed button's flash (a 0.2 s timer) is over before the
    # snapshot: waiting a fixed pause instead caught the flash on a busy machine.
    go = pilot.app.screen.query_one("#go", Button)
    deadline = time.monotonic() + 10
    while (not go.disabled or go.has_class("-active")) and time.monotonic() < deadline:
        await pilot.pause(0.05)
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", SIZES)
def test_halt_dialog(snap_compare: Any, size: str) -> None:
    assert snap_compare(console_app(trading()), terminal_size=SIZES[size], run_before=halt_dialog)


@pytest.mark.parametrize("size", SIZES)
def test_unhalt_dialog_after_the_refusal(snap_compare: Any, size: str) -> None:
    assert snap_compare(console_app(halted()), terminal_size=SIZES[size], run_before=unhalt_refused)


@pytest.mark.parametrize("size", SIZES.values())
async def test_the_dialogs_buttons_are_on_screen(size: tuple[int, int]) -> None:
    app = console_app(halted())
    async with app.run_test(size=size) as pilot:
        await halt_dialog(pilot)
        assert "Halt…" in screen_text(app) and "Cancel" in screen_text(app)
        await pilot.press("escape")
        await unhalt_refused(pilot)
        text = screen_text(app)
        assert "Force unhalt" in text and "refused (409)" in text and "Cancel" in text


async def test_redis_out_shows_in_the_banner_and_goes_when_it_is_back() -> None:
    doc = trading()
    app = console_app(doc)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "REDIS" not in screen_text(app)
        out = {**doc, "streams": {"error": "ConnectionError: Error 111 connecting to 127.0.0.1:6379."}}
        app.apply(out)
        app.apply(out)  # the panels are redrawn every other refresh (once a second)
        await pilot.pause()
        text = screen_text(app)
        assert "REDIS UNREACHABLE" in text and "TRADING" in text and "Redis: ConnectionError" in text
        app.apply(doc)
        app.apply(doc)  # the panels are redrawn every other refresh (once a second)
        await pilot.pause()
        text = screen_text(app)
        assert "REDIS" not in text and "Redis:" not in text and "notify.events" in text
