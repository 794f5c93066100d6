"""Pure formatting for the console: the halt banner, PnL gauges, the equity sparkline, ages.
No I/O and no clock of its own (`now` is passed in), so snapshots and unit tests are exact."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.text import Text

from cli_trading.isotime import parse_iso

BLOCKS = "▁▂▃▄▅▆▇█"


def dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def money(value: Any, places: int = 2) -> str:
    d = dec(value)
    return "—" if d is None else f"{d:,.{places}f}"


def plain(value: Any, places: int = 2) -> str:
    """A price without thousands separators: narrower in a table."""
    d = dec(value)
    return "—" if d is None else f"{d:.{places}f}"


def signed(value: Any, places: int = 2, suffix: str = "") -> Text:
    d = dec(value)
    if d is None:
        return Text("—")
    style = "green" if d > 0 else "red" if d < 0 else ""
    return Text(f"{d:+,.{places}f}{suffix}", style=style)


def parse_ts(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return parse_iso(ts)
    except ValueError:
        return None


def age(ts: str | None, now: datetime) -> str:
    t = parse_ts(ts)
    if t is None:
        return "—"
    s = max(0, int((now - t).total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def short_age(ts: str | None, now: datetime) -> str:
    """An age in one unit (45s, 14m, 7h, 3d): narrow, and it changes at most once a minute after the first."""
    t = parse_ts(ts)
    if t is None:
        return "—"
    s = max(0, int((now - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def count(value: Any, width: int) -> str:
    """A count in at most `width` characters: 999, then 12k, then 3M (a narrow column)."""
    n = int(value or 0)
    for size, unit in ((1, ""), (1000, "k"), (1_000_000, "M")):
        text = f"{n // size}{unit}"
        if len(text) <= width:
            return text
    return "∞"


def uptime(seconds: Any) -> str:
    d = dec(seconds)
    if d is None:
        return "—"
    s = int(d)
    return f"{s}s" if s < 60 else f"{s // 60}m" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def gauge(percent: Any, *, target: Any, loss_limit: Any, width: int = 30) -> Text:
    """Today's PnL % on a bar from −loss limit to +target: red fill left of zero, green right."""
    pct, tgt, loss = dec(percent), dec(target), dec(loss_limit)
    if pct is None or not tgt or not loss:
        return Text("—")
    span = tgt + loss
    zero = round(width * loss / span)
    pos = round(width * (min(max(pct, -loss), tgt) + loss) / span)
    cells = []
    for i in range(width):
        if zero <= i < pos:
            cells.append(("█", "green"))
        elif pos <= i < zero:
            cells.append(("█", "red"))
        else:
            cells.append(("─" if i != zero else "│", "grey50"))
    bar = Text(f"-{loss}% ", style="red")
    for ch, style in cells:
        bar.append(ch, style)
    bar.append(f" +{tgt}%", style="green")
    return bar


def limit_use(percent: Any, *, target: Any, loss_limit: Any) -> str:
    """How far today is towards the limit it is heading for, in words."""
    pct, tgt, loss = dec(percent), dec(target), dec(loss_limit)
    if pct is None or not tgt or not loss:
        return ""
    if pct >= 0:
        return f"{min(pct / tgt * 100, Decimal(999)):.0f}% of target"
    return f"{min(-pct / loss * 100, Decimal(999)):.0f}% of loss limit"


def sparkline(values: list[Any], width: int) -> str:
    nums = [d for v in values if (d := dec(v)) is not None]
    if not nums or width <= 0:
        return ""
    if len(nums) > width:  # keep the latest, evenly thinned
        step = len(nums) / width
        nums = [nums[int(i * step)] for i in range(width - 1)] + [nums[-1]]
    lo, hi = min(nums), max(nums)
    if hi == lo:
        return BLOCKS[3] * len(nums)
    return "".join(BLOCKS[int((n - lo) / (hi - lo) * (len(BLOCKS) - 1))] for n in nums)


def banner(trading: dict[str, Any], now: datetime) -> Text:
    """The line that cannot be missed: HALTED with reason, mode, who, since and note."""
    if trading.get("halted"):
        t = Text(" ⛔ TRADING HALTED ", style="bold white on red")
        t.append(f"  reason {trading.get('haltReason')}", style="bold")
        t.append(f"  mode {trading.get('haltMode')}")
        t.append(f"  by {trading.get('haltedBy') or '?'}")
        t.append(f"  since {(trading.get('haltedAt') or '?')[:19]} ({age(trading.get('haltedAt'), now)} ago)")
        if trading.get("haltNote"):
            t.append(f"\n note: {trading['haltNote']}", style="italic")
        return t
    t = Text(" ● TRADING ", style="bold black on green")
    mode = str(trading.get("mode", "paper")).upper()
    t.append(f"  {mode}", style="bold yellow" if mode == "LIVE" else "bold")
    t.append(f"  symbols {', '.join(trading.get('symbols') or [])}")
    return t


def redis_problem(error: str) -> Text:
    """Redis out: the streams, lags and dead letters shown are not current until it is back."""
    what = "UNREACHABLE" if any(w in error for w in ("Connection", "Timeout", "OSError", "refused")) else "ERROR"
    return Text(
        f" ⚠ REDIS {what}: {error[:70]} — streams, lags and DLQs not current; retrying every second",
        style="bold white on dark_orange3",
    )


AGENT_STYLE = {"healthy": "green", "unhealthy": "yellow", "down": "bold red", "unknown": "grey50"}
SEVERITY_STYLE = {"P0": "bold white on red", "P1": "bold red", "P2": "yellow", "P3": ""}
LEVEL_STYLE = {"error": "red", "critical": "bold red", "warning": "yellow", "debug": "grey50"}


def short_error(err: dict[str, Any] | None, width: int = 40) -> str:
    if not err:
        return ""
    text = f"{err.get('ts', '')[11:19]} {err.get('event', '')}"
    return text if len(text) <= width else text[: width - 1] + "…"
