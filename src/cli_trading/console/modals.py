"""Small screens: confirmation, a few typed fields, the help screen, a full record (the audit
trail of a run), the health check's table."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.table import Table as RichTable
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from cli_trading.console.client import ConsoleClient, ConsoleError


class Confirm(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "no", "cancel"), Binding("y", "yes", "yes"), Binding("n", "no", "no")]

    def __init__(self, question: str, *, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


class Prompt(ModalScreen[dict[str, str] | None]):
    """A title and a few text fields; answers {field: value} once the required ones are filled."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str, bool]]) -> None:
        super().__init__()
        self.heading, self.fields = title, fields  # (name, placeholder, required)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.heading)
            for name, placeholder, _ in self.fields:
                yield Input(placeholder=placeholder, id=f"f-{name}")
            yield Static("", id="problem", classes="problem")
            with Horizontal(classes="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def submit(self) -> None:
        values = {name: self.query_one(f"#f-{name}", Input).value.strip() for name, _, _ in self.fields}
        missing = [name for name, _, required in self.fields if required and not values[name]]
        if missing:
            self.query_one("#problem", Static).update(f"needed: {', '.join(missing)}")
            return
        self.dismiss(values)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = """[b]cli-trading console[/b] — the runbook at one key

[b]h[/b]  halt: choose the reason and mode, confirm (POST /admin/orchestrate/halt)
[b]u[/b]  unhalt: a refusal (loss limit still breached) is shown; force only after typing why
[b]a[/b]  acknowledge the selected incident     [b]m[/b] mark it mitigating     [b]x[/b] resolve it
[b]d[/b]  open the dead-letter queue of the selected stream (requeue one or all there)
[b]c[/b]  run the health check and show its table
[b]enter[/b]  on an activity row: its full record (a run's audit trail); on a stream: its DLQ
[b]g[/b]  logs: next agent        [b]v[/b]  logs: next level (all, warning+, error+)
[b]tab[/b] / [b]shift+tab[/b]  move between panels        [b]q[/b]  quit        [b]?[/b]  this help

Read-only mode (--read-only) shows everything and refuses every action.
Refresh: one GET /admin/overview on the orchestrator every half second."""


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(HELP)
            yield Button("Close (esc)", id="close")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)


class Record(ModalScreen[None]):
    """An activity item in full; for a run also its state from the orchestrator and every
    audit event carrying its requestId."""

    BINDINGS = [Binding("escape,q", "close", "close")]

    def __init__(self, item: dict[str, Any], client: ConsoleClient) -> None:
        super().__init__()
        self.item, self.client = item, client

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall"):
            yield Label(f"[b]{self.item['kind']}[/b] {self.item['id']}")
            with VerticalScroll():
                yield Static(_pretty(self.item.get("record") or self.item), id="record")
                yield Static("", id="trail")
            yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        if self.item["kind"] in ("run", "fill", "rejection"):
            self.load_trail()

    @work(exclusive=True)
    async def load_trail(self) -> None:
        rid = self.item["id"]
        try:
            run, audit = await asyncio.gather(self.client.run(rid), self.client.audit(limit=500))
        except ConsoleError as exc:
            self.query_one("#trail", Static).update(f"audit trail not available: {exc}")
            return
        events = [e for e in audit.get("events", []) if e.get("requestId") == rid]
        text = Text("\nrun as the orchestrator has it:\n", style="bold")
        text.append(_pretty(run))
        text.append(f"\naudit events with requestId {rid}: {len(events)}\n", style="bold")
        for e in reversed(events):
            text.append(f"{e['ts'][:19]} {e['agent']} {e['action']} {e.get('result') or ''} {e.get('detail') or ''}\n")
        self.query_one("#trail", Static).update(text)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)


def _pretty(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=str)


COLORS = {"ok": "green", "warning": "yellow", "critical": "red"}


class Health(ModalScreen[None]):
    """`cli-trading health` (the runbook's comprehensive health check), run from here."""

    BINDINGS = [Binding("escape,q", "close", "close"), Binding("r", "rerun", "run again")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall"):
            with VerticalScroll():
                yield Static("running the health check…", id="health")
            yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        self.action_rerun()

    def action_rerun(self) -> None:
        self.query_one("#health", Static).update("running the health check…")
        self.check()

    @work(exclusive=True, thread=True)
    def check(self) -> None:
        from cli_trading.ops.health import run_checks
        from cli_trading.ops.locate import locate

        try:
            doc = run_checks(locate())
        except Exception as exc:  # noqa: BLE001 - shown to the operator, not raised
            self.app.call_from_thread(self.query_one("#health", Static).update, f"health check failed: {exc}")
            return
        self.app.call_from_thread(self.query_one("#health", Static).update, health_table(doc))

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)


def health_table(doc: dict[str, Any]) -> RichTable:
    color = COLORS.get(doc["status"], "")
    t = RichTable(title=f"health: [{color}]{doc['status'].upper()}[/{color}] ({doc['checkedAt'][:19]})", expand=True)
    for col in ("check", "status", "evidence"):
        t.add_column(col)
    for c in doc["checks"]:
        t.add_row(c["name"], Text(c["status"], style=COLORS.get(c["status"], "")), c["summary"])
    return t
