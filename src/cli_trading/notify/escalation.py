"""When to escalate and when to remind. Pure functions of the incident and an injected `now`.

Escalation follows the runbook's matrix: the primary contact is reached by the initial alert;
an incident still unacknowledged after one response time (P0 5 min, P1 15 min, P2 1 h, P3 4 h)
goes to the secondary contact, after two to management, as far as the chain for its severity
goes. An open incident reminds its commander to post a status update every N minutes of silence.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def levels_due(
    *,
    opened_at: datetime,
    acknowledged: bool,
    level: int,
    now: datetime,
    response_minutes: float,
    chain_length: int,
) -> list[int]:
    """The escalation levels (1 = secondary, 2 = management, …) newly reached at `now`."""
    if acknowledged or chain_length <= 1 or response_minutes <= 0:
        return []
    waited = (now - opened_at).total_seconds()
    target = min(int(waited // (response_minutes * 60)), chain_length - 1)
    return list(range(level + 1, target + 1))


def reminder_due(*, last_activity: datetime, now: datetime, interval_minutes: float) -> bool:
    return (now - last_activity).total_seconds() >= interval_minutes * 60


def next_deadline(
    *, opened_at: datetime, acknowledged: bool, level: int, response_minutes: float, chain_length: int
) -> datetime | None:
    """When the next escalation happens if nobody acknowledges (None: no further level)."""
    if acknowledged or level + 1 >= chain_length:
        return None
    return opened_at + timedelta(minutes=response_minutes * (level + 1))
