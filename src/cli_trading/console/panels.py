"""The dashboard's panels. Each takes the overview document (GET /admin/overview) and redraws
only when what it shows changed: a console left open all night must cost next to nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from cli_trading.console import render as r

Row = tuple[str, tuple[Any, ...]]


class Table(DataTable[Any]):
    """A DataTable refilled from rows with keys, keeping the selected row across refreshes.

    Cost matters (the console redraws twice a second for hours): the long lists have columns of
    fixed width (no measuring of every cell, a width None fits the content), and when the keys
    are the same as before only the changed cells are updated, so the table keeps its size and
    the screen needs no new layout."""

    def __init__(self, *columns: tuple[str, int | None], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._columns = columns
        self._rows: dict[str, str] = {}
        self._keys: list[str] = []

    def on_mount(self) -> None:
        self._column_keys = [self.add_column(label, width=width) for label, width in self._columns]

    def show(self, rows: list[Row]) -> None:
        keys = [k for k, _ in rows]
        if keys == self._keys:
            for key, cells in rows:
                sig = repr(cells)
                if self._rows.get(key) != sig:
                    self._rows[key] = sig
                    for (_, width), col, value in zip(self._columns, self._column_keys, cells, strict=False):
                        self.update_cell(key, col, value, update_width=width is None)
            return
        keep = self.selected_key()
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._keys, self._rows = keys, {k: repr(c) for k, c in rows}
        if keep in keys:
            self.move_cursor(row=keys.index(keep), animate=False)

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
    slow = False  # redrawn at most once a second (long lists)

    def on_mount(self) -> None:
        self.border_title = self.title

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        raise NotImplementedError


class Banner(Static):
    shown = ""

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        trading = doc.get("trading", {})
        text = r.banner(trading, now)
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
        self.query_one("#pnl-summary", Static).update(t, layout=False)  # fixed height: no new layout
        rows = [
            (pos["symbol"], (pos["symbol"], r.money(pos["qty"], 4), r.plain(pos["avgCost"]), r.plain(pos["mark"]),
                             r.signed(pos["unrealized"])))
            for pos in p.get("positions") or []
        ]
        self.query_one(Table).show(rows)


class AgentsPanel(Panel):
    title = "agents"

    def compose(self) -> ComposeResult:
        yield Table(*((c, None) for c in ("agent", "state", "restarts", "pending", "lag", "up")), id="agents")
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
        self.query_one("#agent-errors", Static).update(text, layout=False)


class StreamsPanel(Panel):
    title = "streams (enter: DLQ)"
    slow = True

    def compose(self) -> ComposeResult:
        yield Table(*((c, None) for c in ("stream", "len", "pend", "lag", "dlq")), id="streams")

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
            dlq = Text(str(s["dlqLength"]), style="bold red" if s["dlqLength"] else "")
            rows.append((s["dlq"], (s["stream"], str(s["length"]), str(pending), str(lag), dlq)))
        self.query_one(Table).show(rows)


class IncidentsPanel(Panel):
    title = "incidents"
    slow = True

    def compose(self) -> ComposeResult:
        yield Table(*((c, None) for c in ("#", "P", "ack", "status", "age", "commander", "title")), id="incidents")

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        inc = doc.get("incidents") or {}
        rows = []
        for i in inc.get("open") or []:
            acked = Text("yes", style="green") if i.get("acknowledgedAt") else Text("NO", style="bold red")
            rows.append((str(i["id"]), (
                str(i["id"]), Text(i.get("severity", ""), style=r.SEVERITY_STYLE.get(i.get("severity", ""), "")),
                acked, i.get("status", ""), r.age(i.get("openedAt"), now), i.get("commander") or "—",
                i.get("title", ""),
            )))
        self.query_one(Table).show(rows)
        subtitle = _checklist(doc.get("checklist")) or (inc.get("error", "")[:60] if inc else "")
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle


def _checklist(c: Any) -> str:
    if not isinstance(c, dict) or "total" not in c:
        return ""
    bad = [i.get("key", "?") for i in c.get("items", []) if not i.get("ok")]
    text = f"recovery checklist {c['passed']}/{c['total']}"
    return text + (f" ✗ {', '.join(bad)[:50]}" if bad else " ✓")


class ActivityPanel(Panel):
    title = "activity (enter: full record)"
    slow = True

    def compose(self) -> ComposeResult:
        yield Table(("time", 8), ("kind", 9), ("what", 60), id="activity")

    items: list[dict[str, Any]] = []

    def update_from(self, doc: dict[str, Any], now: datetime) -> None:
        style = {"fill": "green", "rejection": "yellow", "halt": "bold red", "unhalt": "cyan"}
        self.items = list(doc.get("activity") or [])
        rows = [  # keyed by position: a new item updates cells instead of rebuilding the table
            (str(n), ((i.get("ts") or "")[11:19], Text(i["kind"], style=style.get(i["kind"], "")), i["summary"]))
            for n, i in enumerate(self.items)
        ]
        self.query_one(Table).show(rows)

    def record(self, key: str | None) -> dict[str, Any] | None:
        n = int(key) if key and key.isdigit() else -1
        return self.items[n] if 0 <= n < len(self.items) else None


LEVELS = (None, "warning", "error")


class LogsPanel(Panel):
    title = "logs"
    slow = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent: str | None = None
        self.level: str | None = None

    def compose(self) -> ComposeResult:
        yield Table(("time", 8), ("agent", 20), ("level", 7), ("event", 80), id="logs")

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
            (f"{n}", (e["ts"][11:19], e["agent"], Text(e["level"], style=r.LEVEL_STYLE.get(e["level"], "")),
                      f"{e['event']} {e['extra']}".strip()))
            for n, e in enumerate(reversed(entries))
        ]
        self.query_one(Table).show(rows)
