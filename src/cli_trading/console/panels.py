"""The dashboard's panels. Each takes the overview document (GET /admin/overview) and redraws
only when what it shows changed: a console left open all night must cost next to nothing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from cli_trading.console import render as r

Row = tuple[str, tuple[Any, ...]]


class Table(DataTable[Any]):
    """A DataTable refilled from rows with keys, keeping the selected row across refreshes.

    Cost matters (the console redraws every second for hours):
    - when the keys are the same as before only the changed cells are updated, so the table keeps
      its size and the screen needs no new layout;
    - columns have a fixed width (no measuring of every cell on every update; a width None fits
      the content, for small tables), and one column may `fill` what the others leave;
    - Textual keys its cache of rendered cells on a counter that every update of any cell bumps,
      so one changed cell re-rendered every visible cell (most of the console's CPU); here a cell
      is keyed on its own version, so only the cells that changed are rendered again."""

    def __init__(self, *columns: tuple[str, int | None], fill: int | None = None, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._columns = columns
        self._fill = fill
        self._rows: dict[str, str] = {}
        self._keys: list[str] = []
        self._versions: dict[tuple[str | None, int], int] = {}  # a cell's version (row None: the header)
        self._row_versions: dict[str | None, int] = {}  # a row's: any of its cells changed
        self._counter = itertools.count(1)
        self._known_count = -1  # the update counter after our own changes (anything else: Textual's cache)
        self._real_count: int | None = None  # the update counter while a row's version stands in for it

    def on_mount(self) -> None:
        self._column_keys = [self.add_column(label, width=width) for label, width in self._columns]
        self._stamp(None)
        self._known_count = self._update_count

    def on_resize(self) -> None:
        self._known_count = self._update_count  # Textual emptied its caches: nothing stale to fear
        if self._fill is None:
            return
        others = sum(w or 0 for n, (_, w) in enumerate(self._columns) if n != self._fill)
        width = max(8, self.size.width - others - 2 * self.cell_padding * len(self._columns) - 1)
        column = self.columns[self._column_keys[self._fill]]
        if column.width != width or column.auto_width:
            column.width, column.auto_width = width, False
            self._require_update_dimensions = True
            self.refresh()

    def _stamp(self, key: str | None, column: int | None = None) -> None:
        for n in range(len(self._columns)) if column is None else (column,):
            self._versions[(key, n)] = next(self._counter)
        self._row_versions[key] = next(self._counter)

    def show(self, rows: list[Row]) -> None:
        keys = [k for k, _ in rows]
        if keys == self._keys:
            for key, cells in rows:
                sig = repr(cells)
                if self._rows.get(key) != sig:
                    old = self._rows.get(key)
                    self._rows[key] = sig
                    for n, ((_, width), col, value) in enumerate(zip(self._columns, self._column_keys, cells,
                                                                     strict=False)):
                        if old is None or value != self.get_cell(key, col):
                            self.update_cell(key, col, value, update_width=width is None)
                            self._stamp(key, n)
            self._known_count = self._update_count
            return
        keep = self.selected_key()
        self.clear()
        self._versions = {k: v for k, v in self._versions.items() if k[0] is None}  # the header stays
        self._row_versions = {None: self._row_versions[None]}
        for key, cells in rows:
            self.add_row(*cells, key=key)
            self._stamp(key)
        self._keys, self._rows = keys, {k: repr(c) for k, c in rows}
        self._known_count = self._update_count
        if keep in keys:
            self.move_cursor(row=keys.index(keep), animate=False)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> Any:
        key = None if row_index == -1 else self._row_locations.get_key(row_index)
        version = self._versions.get((None if key is None else str(key.value), column_index))
        with self._keyed_on(None if version is None else (version, width)):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)

    def _render_line_in_row(self, row_key: RowKey, line_no: int, base_style: Style, cursor_location: Coordinate,
                            hover_location: Coordinate) -> Any:
        """A row whose cells did not change is not composed again (nor its styles looked up)."""
        version = self._row_versions.get(None if row_key is self._header_row_key else str(row_key.value))
        widths = tuple(c.content_width if c.auto_width else c.width for c in self.columns.values())
        with self._keyed_on(None if version is None else ("row", version, widths)):
            return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)

    @contextmanager
    def _keyed_on(self, version: tuple[Any, ...] | None) -> Iterator[None]:
        """Textual's render caches keyed on `version` instead of the table-wide update counter
        (unless something other than `show` changed the table since: then as Textual does)."""
        real = self._update_count if self._real_count is None else self._real_count  # a row's cells: nested
        if version is None or real != self._known_count:
            yield
            return
        count, outer = self._update_count, self._real_count
        self._update_count, self._real_count = version, real  # type: ignore[assignment]
        try:
            yield
        finally:
            self._update_count, self._real_count = count, outer

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no valid cursor yet
            return None
        return str(key) if key is not None else None


class Panel(Vertical):
    """A bordered box with a title; subclasses fill it from the overview."""

    title = ""
    sources: tuple[str, ...] = ()  # the parts of the overview it shows: unchanged, nothing to redraw
    _last: tuple[Any, ...] | None = None

    def on_mount(self) -> None:
        self.border_title = self.title

    def refresh_from(self, doc: dict[str, Any], now: datetime) -> None:
        """Redraw from a new overview, unless what this panel shows is the same as last time."""
        seen = (*(doc.get(k) for k in self.sources), self.size.width)
        if self.sources and seen == self._last:
            return
        self._last = seen
        self.update_from(doc, now)

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        raise NotImplementedError


class Banner(Static):
    shown = ""

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        trading = doc.get("trading", {})
        text = r.banner(trading, now)
        streams = doc.get("streams")
        if isinstance(streams, dict) and "error" in streams:  # said where it cannot be missed, not only in a frame
            text.append("\n")
            text.append_text(r.redis_problem(str(streams["error"])))
        if text.markup != self.shown:
            self.shown = text.markup
            self.set_class(bool(trading.get("halted")), "halted")
            self.update(text)

    def show_problem(self, text: str) -> None:
        self.shown = ""
        self.set_class(True, "halted")
        self.update(Text(f" ⚠ {text}", style="bold white on dark_orange3"))


class PnlPanel(Panel):
    title = "PnL"
    sources = ("pnl",)
    shown = ""

    def compose(self) -> ComposeResult:
        yield Static(id="pnl-summary")
        yield Table(*((c, None) for c in ("symbol", "qty", "avg", "mark", "unrealized")), id="positions")

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        p = doc.get("pnl") or {}
        if not p:
            return
        width = max(10, min(40, self.size.width - 22))
        limits = {"target": p.get("dailyTargetPct"), "loss_limit": p.get("dailyLossLimitPct")}
        t = Text()
        t.append("equity ", style="bold")
        t.append(r.money(p.get("equity")))
        t.append("  today ")
        t.append_text(r.signed(p.get("percent"), 2, "%"))
        t.append(f"  {r.limit_use(p.get('percent'), **limits)}\n")
        t.append_text(r.gauge(p.get("percent"), **limits, width=width))
        t.append("\nrealized ")
        t.append_text(r.signed(p.get("realized")))
        t.append("  unrealized ")
        t.append_text(r.signed(p.get("unrealized")))
        t.append(f"\nfees {r.money(p.get('fees'))}  start {r.money(p.get('startEquity'))}")
        t.append(f"\n{r.sparkline(p.get('equityCurve') or [], max(10, self.size.width - 4))}", style="cyan")
        if t.markup != self.shown:
            self.shown = t.markup
            self.query_one("#pnl-summary", Static).update(t, layout=False)  # fixed height: no new layout
        rows = [
            (pos["symbol"], (pos["symbol"], r.money(pos["qty"], 4), r.plain(pos["avgCost"]), r.plain(pos["mark"]),
                             r.signed(pos["unrealized"])))
            for pos in p.get("positions") or []
        ]
        self.query_one(Table).show(rows)


class AgentsPanel(Panel):
    title = "agents"
    sources = ("agents",)
    shown = ""

    def compose(self) -> ComposeResult:
        yield Table(("agent", 20), ("state", 13), ("restarts", 8), ("pending", 7), ("lag", 4), ("up", 6), id="agents")
        yield Static("", id="agent-errors")

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        rows = []
        for a in doc.get("agents") or []:
            state = a.get("state", "unknown")
            label = Text(state.upper() if state == "down" else state, style=r.AGENT_STYLE.get(state, ""))
            if a.get("failing"):
                label.append(f" ({','.join(a['failing'])})", style="yellow")
            if a.get("crashLoop"):
                label = Text("CRASH LOOP", style="bold white on red")
            elif state == "down" and "restarting" in str(a.get("supervisor") or ""):
                label.append(" ↻", style="yellow")
            restarts = a.get("restarts")
            rows.append((a["agent"], (
                a["agent"], label, "—" if restarts is None else Text(str(restarts), style="red" if restarts else ""),
                str(a.get("pending", 0)), str(a.get("lag", 0)), r.uptime(a.get("uptimeSeconds")),
            )))
        self.query_one(Table).show(rows)
        errors = sorted(((a["lastError"], a["agent"]) for a in doc.get("agents") or [] if a.get("lastError")),
                        key=lambda e: e[0].get("ts", ""), reverse=True)
        text = "\n".join(f"last error {name}: {r.short_error(err, self.size.width - 20)}" for err, name in errors[:2])
        if text != self.shown:
            self.shown = text
            self.query_one("#agent-errors", Static).update(text, layout=False)


class StreamsPanel(Panel):
    title = "streams (enter: DLQ)"
    sources = ("streams",)

    def compose(self) -> ComposeResult:
        # 46 columns in all: what the panel has inside its frame
        yield Table(("stream", 21), ("len", 5), ("pend", 4), ("lag", 3), ("dlq", 3), id="streams")

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        data = doc.get("streams")
        if isinstance(data, dict) and "error" in data:
            self.border_subtitle = f"Redis: {data['error'][:60]}"
            self.set_class(True, "trouble")
            return
        self.set_class(False, "trouble")
        if self.border_subtitle:
            self.border_subtitle = ""
        rows = []
        for s in data or []:
            pending = sum(int(g.get("pending") or 0) for g in s["groups"])
            lag = sum(int(g.get("lag") or 0) for g in s["groups"])
            dlq = Text(r.count(s["dlqLength"], 3), style="bold red" if s["dlqLength"] else "")
            rows.append((s["dlq"], (s["stream"], r.count(s["length"], 5), r.count(pending, 4), r.count(lag, 3), dlq)))
        self.query_one(Table).show(rows)


class IncidentsPanel(Panel):
    title = "incidents"

    def compose(self) -> ComposeResult:
        # the title takes what the others leave: they are narrow (the ack column also says mitigating)
        yield Table(("#", 3), ("P", 2), ("ack", 5), ("age", 4), ("cmdr", 8), ("title", None), fill=5, id="incidents")

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        inc = doc.get("incidents") or {}
        rows = []
        for i in inc.get("open") or []:
            rows.append((str(i["id"]), (
                str(i["id"]), Text(i.get("severity", ""), style=r.SEVERITY_STYLE.get(i.get("severity", ""), "")),
                _acked(i), r.short_age(i.get("openedAt"), now), i.get("commander") or "—", i.get("title", ""),
            )))
        self.query_one(Table).show(rows)
        subtitle = _checklist(doc.get("checklist")) or (inc.get("error", "")[:60] if inc else "")
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle


def _acked(incident: dict[str, Any]) -> Text:
    if not incident.get("acknowledgedAt"):
        return Text("NO", style="bold red")
    if incident.get("status") == "MITIGATING":
        return Text("mitig", style="cyan")
    return Text("yes", style="green")


def _checklist(c: Any) -> str:
    if not isinstance(c, dict) or "total" not in c:
        return ""
    bad = [i.get("key", "?") for i in c.get("items", []) if not i.get("ok")]
    text = f"recovery checklist {c['passed']}/{c['total']}"
    return text + (f" ✗ {', '.join(bad)[:50]}" if bad else " ✓")


class ActivityPanel(Panel):
    title = "activity (enter: full record)"
    sources = ("activity",)

    def compose(self) -> ComposeResult:
        # one cell a row (time, kind and what in one line): a table renders cell by cell, and this
        # list shifts by one row for every new item
        yield Table((f"{'time':<8}  {'kind':<9}  what", 90), id="activity")

    items: list[dict[str, Any]] = []

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        style = {"fill": "green", "rejection": "yellow", "halt": "bold red", "unhalt": "cyan"}
        self.items = list(doc.get("activity") or [])
        rows = [  # keyed by position: a new item updates cells instead of rebuilding the table
            (str(n), (_line(f"{(i.get('ts') or '')[11:19]:<8}  ", (f"{i['kind']:<9}", style.get(i["kind"], "")),
                            f"  {i['summary']}"),))
            for n, i in enumerate(self.items)
        ]
        self.query_one(Table).show(rows)

    def record(self, key: str | None) -> dict[str, Any] | None:
        n = int(key) if key and key.isdigit() else -1
        return self.items[n] if 0 <= n < len(self.items) else None


LEVELS = (None, "warning", "error")


class LogsPanel(Panel):
    title = "logs"
    sources = ("logs",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent: str | None = None
        self.level: str | None = None

    def compose(self) -> ComposeResult:
        yield Table((f"{'time':<8}  {'agent':<20}  {'level':<7}  event", 120), id="logs")  # one cell a row

    def cycle_agent(self, agents: list[str]) -> None:
        names = [None, *agents]
        self.agent = names[(names.index(self.agent) + 1) % len(names)] if self.agent in names else None

    def cycle_level(self) -> None:
        self.level = LEVELS[(LEVELS.index(self.level) + 1) % len(LEVELS)]

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        title = f"logs · agent {self.agent or 'all'} (g) · level {self.level or 'all'}+ (v)"
        if self.border_title != title:
            self.border_title = title
        floor = {None: 0, "warning": 2, "error": 3}[self.level]
        order = {"debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4, "exception": 4}
        entries = [
            e for e in doc.get("logs") or []
            if self.agent in (None, e["agent"]) and order.get(e["level"], 1) >= floor
        ][-100:]
        rows = [
            (f"{n}", (_line(f"{e['ts'][11:19]:<8}  {e['agent']:<20}  ",
                            (f"{e['level']:<7}", r.LEVEL_STYLE.get(e["level"], "")),
                            f"  {e['event']} {e['extra']}".rstrip()),))
            for n, e in enumerate(reversed(entries))
        ]
        self.query_one(Table).show(rows)


def _line(*parts: str | tuple[str, str]) -> Text:
    """One row of a list as one line of text, parts plain or (text, style)."""
    return Text.assemble(*parts, no_wrap=True)
