"""Halt and unhalt, as the runbook does them: the same POST /admin/orchestrate/halt and
/unhalt, with the reason chosen from the runbook's list (or typed) and a forced unhalt offered
only after the plain one was refused and the operator typed why."""

from __future__ import annotations

import re
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from cli_trading.console.client import ConsoleClient, ConsoleError, Refused
from cli_trading.contracts import HaltMode, HaltReason

REASONS = [
    HaltReason.MANUAL,
    HaltReason.EMERGENCY,
    HaltReason.SECURITY,
    HaltReason.SYSTEM_ERROR,
    HaltReason.DAILY_LOSS,
    HaltReason.DAILY_TARGET,
]
MODES = [HaltMode.HALT, HaltMode.REDUCE_ONLY, HaltMode.FLATTEN]
REASON_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")  # what the API accepts


class HaltScreen(ModalScreen[dict[str, Any] | None]):
    """Choose reason and mode; a second step confirms. Answers the halt body or None."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("[b]Halt trading[/b] — no new order reaches the exchange once this answers")
            with Horizontal(classes="choices"):
                with Vertical():
                    yield Label("reason")
                    with RadioSet(id="reason"):
                        for i, reason in enumerate(REASONS):
                            yield RadioButton(str(reason), value=i == 0)
                with Vertical():
                    yield Label("mode")
                    with RadioSet(id="mode"):
                        for i, mode in enumerate(MODES):
                            yield RadioButton(str(mode), value=i == 0)
            with Horizontal(classes="fields"):  # side by side: the dialog fits 80x24 whole, its buttons too
                yield Input(placeholder="or type a reason", id="custom")
                yield Input(placeholder="note (optional)", id="note")
            yield Static("", id="problem", classes="problem")
            with Horizontal(classes="buttons"):
                yield Button("Halt…", variant="error", id="go")
                yield Button("Cancel", id="cancel")

    def body(self) -> dict[str, Any] | None:
        custom = self.query_one("#custom", Input).value.strip()
        reason_set, mode_set = self.query_one("#reason", RadioSet), self.query_one("#mode", RadioSet)
        reason = custom or str(REASONS[max(0, reason_set.pressed_index)])
        if not REASON_PATTERN.match(reason):
            self.query_one("#problem", Static).update("a reason is letters, digits and _ . : - (80 at most)")
            return None
        note = self.query_one("#note", Input).value.strip() or None
        return {"reason": reason, "mode": str(MODES[max(0, mode_set.pressed_index)]), "note": note}

    @on(Button.Pressed, "#go")
    @on(Input.Submitted)
    def confirm(self) -> None:
        body = self.body()
        if body is None:
            return
        question = f"Halt trading now?\nreason [b]{body['reason']}[/b], mode [b]{body['mode']}[/b]"

        def decided(yes: bool | None) -> None:
            if yes:
                self.dismiss(body)

        from cli_trading.console.modals import Confirm

        self.app.push_screen(Confirm(question, yes="Halt"), decided)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class UnhaltScreen(ModalScreen[dict[str, Any] | None]):
    """A plain unhalt first; when refused (409: the loss limit is still breached) the refusal is
    shown and a forced unhalt becomes possible once a reason is typed."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, client: ConsoleClient) -> None:
        super().__init__()
        self.client = client

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("[b]Resume trading?[/b]")
            yield Input(placeholder="note for the halt ledger (optional)", id="note")
            yield Static("", id="refusal", classes="problem")
            yield Input(placeholder="type why you force it (needed to force)", id="force-reason", classes="hidden")
            with Horizontal(classes="buttons"):
                yield Button("Unhalt", variant="success", id="go")
                yield Button("Force unhalt", variant="error", id="force", classes="hidden", disabled=True)
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#go")
    async def plain(self) -> None:
        note = self.query_one("#note", Input).value.strip() or None
        await self._send(force=False, note=note)

    @on(Input.Changed, "#force-reason")
    def reason_typed(self, event: Input.Changed) -> None:
        self.query_one("#force", Button).disabled = len(event.value.strip()) < 3

    @on(Button.Pressed, "#force")
    async def forced(self) -> None:
        reason = self.query_one("#force-reason", Input).value.strip()
        if len(reason) >= 3:
            await self._send(force=True, note=f"forced from the console: {reason}")

    async def _send(self, *, force: bool, note: str | None) -> None:
        refusal = self.query_one("#refusal", Static)
        try:
            self.dismiss(await self.client.unhalt(force=force, note=note))
        except Refused as exc:
            refusal.update(_explain(exc))
            if exc.status == 409 and not force:
                for w in ("#force-reason", "#force"):
                    self.query_one(w).remove_class("hidden")
                self.query_one("#go", Button).disabled = True
                self.query_one("#force-reason", Input).focus()
        except ConsoleError as exc:
            refusal.update(f"not sent: {exc}")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def _explain(exc: Refused) -> str:
    b = exc.body
    extra = ""
    if "percent" in b:
        extra = f"\ntoday {b['percent']}% · halted for {b.get('haltReason')} since {str(b.get('haltedAt'))[:19]}"
    return f"refused ({exc.status}): {b.get('error', b)}{extra}"
