"""The console application: the panels, a refresh every half second through GET /admin/overview,
and the runbook's actions at one key each (refused in read-only mode)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from cli_trading.console.client import ConsoleClient, ConsoleError, Unauthorized, Unreachable
from cli_trading.console.dlq import DlqScreen
from cli_trading.console.halt_screens import HaltScreen, UnhaltScreen
from cli_trading.console.modals import Health, Help, Prompt, Record
from cli_trading.console.panels import (
    ActivityPanel,
    AgentsPanel,
    Banner,
    IncidentsPanel,
    LogsPanel,
    Panel,
    PnlPanel,
    StreamsPanel,
    Table,
)

ACTIONS = {"halt", "unhalt", "ack", "mitigate", "resolve"}  # what read-only mode refuses
NARROW = 110  # below this width the panels stack in one scrolling column


class ConsoleApp(App[None]):
    CSS_PATH = Path(__file__).with_name("console.tcss")
    TITLE = "cli-trading console"
    BINDINGS = [
        Binding("h", "halt", "halt"),
        Binding("u", "unhalt", "unhalt"),
        Binding("a", "ack", "ack incident"),
        Binding("m", "mitigate", "mitigating", show=False),
        Binding("x", "resolve", "resolve", show=False),
        Binding("d", "dlq", "DLQ"),
        Binding("c", "health", "health check"),
        Binding("g", "log_agent", "log agent", show=False),
        Binding("v", "log_level", "log level", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        client: ConsoleClient | None,
        *,
        read_only: bool = False,
        interval: float = 0.5,
        clock: Callable[[], datetime] | None = None,
        initial: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.client, self.read_only, self.interval = client, read_only, interval
        self.clock = clock or (lambda: datetime.now(UTC))
        self.doc: dict[str, Any] = initial or {}
        self.fetching = False
        self.ticks = 0
        self.last_ok: datetime | None = None
        self.failure: str | None = None
        if read_only:
            self.sub_title = "read-only"

    def compose(self) -> ComposeResult:
        yield Banner(id="banner")
        with VerticalScroll(id="main"):
            with Horizontal(classes="row", id="row-top"):
                yield PnlPanel(id="pnl")
                yield AgentsPanel(id="agents-panel")
            with Horizontal(classes="row", id="row-mid"):
                yield StreamsPanel(id="streams-panel")
                yield IncidentsPanel(id="incidents-panel")
            with Horizontal(classes="row", id="row-bottom"):
                yield ActivityPanel(id="activity-panel")
                yield LogsPanel(id="logs-panel")
        yield Footer()

    @property
    def dash(self) -> Screen[Any]:
        """The dashboard's own screen, whatever dialog is open above it."""
        return self.screen_stack[0]

    def on_mount(self) -> None:
        self.screen.set_class(self.size.width < NARROW, "narrow")
        if self.doc:
            self.call_after_refresh(self.apply, self.doc)
        if self.client is not None:
            self.poll()
            self.set_interval(self.interval, self.poll)

    def on_resize(self) -> None:
        self.dash.set_class(self.size.width < NARROW, "narrow")

    # -- refresh ----------------------------------------------------------------------------
    def poll(self) -> None:
        if not self.fetching:  # one request in flight at most: a slow system is not piled on
            self.fetching = True
            self.fetch()

    @work(group="poll", exit_on_error=False)  # a refresh that fails must not end the console
    async def fetch(self) -> None:
        if self.client is None:
            return
        try:
            doc = await self.client.overview()
        except Unauthorized as exc:
            self.exit(return_code=1, message=f"cli-trading console: the admin token was refused ({exc}); "
                                              "set ADMIN_TOKEN or ADMIN_TOKEN_FILE")
            return
        except ConsoleError as exc:
            self.show_failure(exc)
            return
        finally:
            self.fetching = False
        self.failure, self.last_ok = None, self.clock()
        self.apply(doc)

    def show_failure(self, exc: ConsoleError) -> None:
        self.failure = str(exc)
        stale = ""
        if self.last_ok:
            stale = f" — showing data {int((self.clock() - self.last_ok).total_seconds())}s old"
        what = "ORCHESTRATOR UNREACHABLE" if isinstance(exc, Unreachable) else "OVERVIEW FAILED"
        self.dash.query_one(Banner).show_problem(f"{what}: {exc}; retrying every {self.interval}s{stale}")
        for panel in self.dash.query(Panel):
            panel.add_class("stale")

    def apply(self, doc: dict[str, Any]) -> None:
        if not self.screen_stack or not self.is_running:
            return  # exiting
        self.doc = doc
        now = self.clock()
        self.ticks += 1
        self.dash.query_one(Banner).update_from(doc, now)
        # the banner every refresh (a halt shows within the half second); the panels once a second,
        # all in the same frame, and only those whose part of the overview changed
        if self.ticks % 2 or self.interval > 0.5:
            for panel in self.dash.query(Panel):
                panel.set_class(False, "stale")
                panel.refresh_from(doc, now)

    def refresh_soon(self) -> None:
        """After an action: show its effect now rather than at the next tick."""
        self.fetching = False
        self.poll()

    # -- actions ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action in ACTIONS)  # False: hidden from the footer, the key does nothing

    def _client(self) -> ConsoleClient | None:
        if self.client is None or self.read_only:
            self.notify("read-only: actions are refused", severity="warning")
            return None
        return self.client

    def action_halt(self) -> None:
        if self._client():
            self.push_screen(HaltScreen(), self._halt_chosen)

    def _halt_chosen(self, body: dict[str, Any] | None) -> None:
        if body:
            self.send("halt", lambda c: c.halt(**body))

    def action_unhalt(self) -> None:
        if client := self._client():
            self.push_screen(UnhaltScreen(client), lambda res: self._done("unhalt", res))

    def _incident(self) -> int | None:
        key = self.dash.query_one("#incidents", Table).selected_key()
        if key is None:
            self.notify("no open incident selected", severity="warning")
        return int(key) if key else None

    def action_ack(self) -> None:
        if self._client() and (iid := self._incident()) is not None:
            fields = [("commander", "incident commander (optional)", False)]
            self.push_screen(Prompt(f"Acknowledge incident #{iid}", fields),
                             lambda v: self._incident_action(iid, "ack", {k: x for k, x in (v or {}).items() if x}, v))

    def action_mitigate(self) -> None:
        if self._client() and (iid := self._incident()) is not None:
            self.push_screen(Prompt(f"Incident #{iid}: mitigating", [("progress", "what was done", True)]),
                             lambda v: self._incident_action(iid, "update", {**(v or {}), "status": "MITIGATING"}, v))

    def action_resolve(self) -> None:
        if self._client() and (iid := self._incident()) is not None:
            fields = [("rootCause", "root cause", True), ("resolution", "resolution", True)]
            self.push_screen(Prompt(f"Resolve incident #{iid}", fields),
                             lambda v: self._incident_action(iid, "resolve", v or {}, v))

    def _incident_action(self, iid: int, action: str, body: dict[str, Any], answered: Any) -> None:
        if answered is not None:
            self.send(f"incident #{iid} {action}", lambda c: c.incident(iid, action, body))

    @work(group="actions")
    async def send(self, what: str, call: Callable[[ConsoleClient], Any]) -> None:
        if self.client is None:
            return
        try:
            res = await call(self.client)
        except ConsoleError as exc:
            self.notify(f"{what} refused: {exc}", severity="error", timeout=10)
            return
        self._done(what, res)

    def _done(self, what: str, res: Any) -> None:
        if res is not None:
            self.notify(f"{what}: done", timeout=4)
            self.refresh_soon()

    def action_dlq(self) -> None:
        key = self.dash.query_one("#streams", Table).selected_key()
        if key and self.client:
            self.push_screen(DlqScreen(key, self.client, read_only=self.read_only), lambda _: self.refresh_soon())

    def action_health(self) -> None:
        self.push_screen(Health())

    def action_help(self) -> None:
        self.push_screen(Help())

    def action_log_agent(self) -> None:
        logs = self.dash.query_one(LogsPanel)
        logs.cycle_agent([a["agent"] for a in self.doc.get("agents") or []])
        logs.update_from(self.doc, self.clock())

    def action_log_level(self) -> None:
        logs = self.dash.query_one(LogsPanel)
        logs.cycle_level()
        logs.update_from(self.doc, self.clock())

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        table_id = event.data_table.id
        if table_id == "streams":
            self.action_dlq()
        elif table_id == "activity" and self.client:
            item = self.dash.query_one(ActivityPanel).record(str(event.row_key.value))
            if item:
                self.push_screen(Record(item, self.client))
