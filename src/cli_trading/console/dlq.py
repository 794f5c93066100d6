"""A stream's dead-letter queue: its entries, the selected entry's error and payload, requeue
one or all (each confirmed) through POST /admin/streams/dlq/requeue."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from cli_trading.console.client import ConsoleClient, ConsoleError
from cli_trading.console.modals import Confirm
from cli_trading.console.panels import Table


class DlqScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "close"),
        Binding("r", "requeue_one", "requeue entry"),
        Binding("R", "requeue_all", "requeue all"),
    ]

    def __init__(self, dlq_stream: str, client: ConsoleClient, *, read_only: bool) -> None:
        super().__init__()
        self.stream, self.client, self.read_only = dlq_stream, client, read_only
        self.entries: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall"):
            yield Label(f"[b]{self.stream}[/b]", id="dlq-title")
            yield Table(("id", 16), ("from", 26), ("failures", 8), ("error", 60), id="dlq-entries")
            with VerticalScroll(id="dlq-detail"):
                yield Static("", id="entry")
            yield Static("", id="dlq-status", classes="problem")
            keys = "esc close" if self.read_only else "r requeue entry · R requeue all · esc close"
            yield Label(keys)

    def on_mount(self) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action.startswith("requeue"))

    @work(exclusive=True)
    async def load(self) -> None:
        try:
            doc = await self.client.dlq(self.stream)
        except ConsoleError as exc:
            self.query_one("#dlq-status", Static).update(str(exc))
            return
        self.entries = {e["id"]: e for e in doc["entries"]}
        self.query_one("#dlq-title", Label).update(f"[b]{self.stream}[/b] — {doc['length']} entries")
        self.query_one(Table).show([
            (e["id"], (e["id"], f"{e.get('originalStream')}/{e.get('group')}", str(e.get("failures")),
                       str(e.get("error"))[:60]))
            for e in doc["entries"]
        ])
        self.show_entry(self.query_one(Table).selected_key())

    @on(DataTable.RowHighlighted)
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_entry(str(event.row_key.value) if event.row_key.value is not None else None)

    def show_entry(self, key: str | None) -> None:
        e = self.entries.get(key or "")
        if e is None:
            self.query_one("#entry", Static).update("(the queue is empty)" if not self.entries else "")
            return
        payload = e.get("payload")
        if isinstance(payload, str):
            with contextlib.suppress(ValueError):
                payload = json.loads(payload)
        self.query_one("#entry", Static).update(
            f"[b]error[/b] {e.get('error')}\n[b]failures[/b] {e.get('failures')}  [b]at[/b] {e.get('ts')}\n"
            f"[b]payload[/b]\n{json.dumps(payload, indent=2, default=str)}"
        )

    def action_requeue_one(self) -> None:
        key = self.query_one(Table).selected_key()
        if key:
            self.app.push_screen(Confirm(f"Requeue {key} to its stream?", yes="Requeue"), self._then(key))

    def action_requeue_all(self) -> None:
        if self.entries:
            question = f"Requeue all {len(self.entries)} entries of {self.stream}?"
            self.app.push_screen(Confirm(question, yes="Requeue all"), self._then(None))

    def _then(self, entry_id: str | None) -> Callable[[bool | None], None]:
        def decided(yes: bool | None) -> None:
            if yes:
                self.requeue(entry_id)

        return decided

    @work(exclusive=False)
    async def requeue(self, entry_id: str | None) -> None:
        status = self.query_one("#dlq-status", Static)
        try:
            res = await self.client.requeue(self.stream, entry_id=entry_id, all_=entry_id is None)
        except ConsoleError as exc:
            status.update(f"requeue refused: {exc}")
            return
        status.update(f"requeued {res['count']} message(s)")
        self.load()

    def action_close(self) -> None:
        self.dismiss(None)
