"""The console's Table renders again only the cells that changed (what keeps a console left open
all night cheap), and what it shows is still right after updates, a new set of rows and a resize."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from cli_trading.console.panels import Table
from tests.unit.console.screen import screen_text


class One(App[None]):
    def compose(self) -> ComposeResult:
        yield Table(("name", 10), ("state", 8), ("count", None), id="t")


def rows(**changed: str) -> list[tuple[str, tuple[Any, ...]]]:
    return [(f"k{i}", (f"agent-{i}", changed.get(f"k{i}", "healthy"), str(i))) for i in range(5)]


async def test_only_the_changed_cell_is_rendered_again() -> None:
    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        table.show(rows())
        await pilot.pause()
        rendered: list[Any] = []
        render_lines = app.console.render_lines

        def counted(*args: Any, **kwargs: Any) -> Any:
            if isinstance(args[0], Text):  # a cell's content (inside its padding and style)
                rendered.append(args[0].plain)
            return render_lines(*args, **kwargs)

        app.console.render_lines = counted  # type: ignore[method-assign]
        table.show(rows(k3="DOWN"))
        await pilot.pause()
        assert rendered == ["DOWN"]  # one cell of fifteen (and the header) drawn again
        lines = screen_text(app).splitlines()
        assert any("agent-3" in line and "DOWN" in line for line in lines)
        assert sum("healthy" in line for line in lines) == 4
        table.show(rows(k3="DOWN"))  # the same again: nothing to draw
        await pilot.pause()
        assert rendered == ["DOWN"]


async def test_new_rows_and_a_resize_are_drawn_whole() -> None:
    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        table.show(rows())
        await pilot.pause()
        table.show([("x", ("other", "down", "12345")), *rows()[:2]])
        await pilot.pause()
        text = screen_text(app)
        assert "other" in text and "12345" in text and "agent-1" in text and "agent-3" not in text
        await pilot.resize_terminal(60, 12)
        await pilot.pause()
        table.show([("x", ("other", "up", "12345")), *rows()[:2]])
        await pilot.pause()
        text = screen_text(app)
        assert "up" in text and "other" in text and "agent-0" in text and "down" not in text
