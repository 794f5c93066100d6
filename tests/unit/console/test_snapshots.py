"""SVG snapshots of the console's main screen at 120×40 and 80×24, trading and halted, from a
fixed overview document and a fixed clock (update after a deliberate change of the layout with
`pytest tests/unit/console --snapshot-update`; docs/console-*.svg come from the same app)."""

from __future__ import annotations

from typing import Any

import pytest

from cli_trading.console.app import ConsoleApp
from tests.unit.console.sample import NOW, halted, trading
from tests.unit.console.screen import screen_text

SIZES = {"120x40": (120, 40), "80x24": (80, 24)}
STATES = {"trading": trading, "halted": halted}


def console_app(doc: dict[str, Any], *, read_only: bool = False) -> ConsoleApp:
    return ConsoleApp(None, read_only=read_only, clock=lambda: NOW, initial=doc)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("state", STATES)
def test_main_screen(snap_compare: Any, state: str, size: str) -> None:
    assert snap_compare(console_app(STATES[state]()), terminal_size=SIZES[size])


def test_read_only_hides_the_actions(snap_compare: Any) -> None:
    assert snap_compare(console_app(trading(), read_only=True), terminal_size=(120, 40))


async def test_panels_show_the_document() -> None:
    app = console_app(halted())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        for seen in ("TRADING HALTED", "security_incident", "API key possibly leaked", "trade-executor", "DOWN",
                     "↻", "exchange adapter crashed", "notify.events", "Exchange latency", "NO",
                     "recovery checklist 9/10", "10,184.52", "BTC-USD", "halt security_incident"):
            assert seen in text, seen
