"""The restart policy of `cli-trading up`: capped exponential backoff, reset after a stable run,
never abandoned; a crash loop is named and ends."""

from __future__ import annotations

from cli_trading.supervision import Backoff, health_entry


def crash_now(b: Backoff, now: float) -> float:
    b.started(now)
    return b.exited(1, now + 0.1)


def test_waits_double_up_to_the_cap_and_never_give_up() -> None:
    b = Backoff(base_s=0.5, cap_s=30, stable_s=60)
    waits = []
    now = 0.0
    for _ in range(12):
        b.started(now)
        waits.append(b.exited(1, now + 0.1))
        assert b.next_start is not None  # always a next start: never abandoned
        now = b.next_start
    assert waits[:7] == [0.5, 1, 2, 4, 8, 16, 30]
    assert waits[-1] == 30
    assert b.crash_loop


def test_a_stable_run_resets_the_backoff() -> None:
    b = Backoff(base_s=0.5, cap_s=30, stable_s=60)
    for i in range(4):
        crash_now(b, i * 10.0)
    assert b.crash_loop
    b.started(100.0)
    assert not b.stable(130.0)
    assert b.stable(161.0)  # once: the crash loop is over
    assert not b.crash_loop
    assert b.exited(1, 200.0) == 0.5


def test_an_exit_after_a_long_run_starts_from_the_shortest_wait() -> None:
    b = Backoff(base_s=0.5, cap_s=30, stable_s=60)
    crash_now(b, 0.0)
    crash_now(b, 5.0)
    b.started(10.0)
    assert b.exited(1, 100.0) == 0.5


def test_due_and_state() -> None:
    b = Backoff()
    b.started(0.0)
    assert b.state(1.0) == "running" and not b.due(1.0)
    b.exited(3, 2.0)
    assert not b.due(2.1) and b.due(2.5)
    assert b.state(2.0).startswith("exited, restarting in 0.5s")
    assert b.report(2.0)["lastExit"] == 3


def test_health_entry_names_crash_loops_and_stays_ok() -> None:
    assert health_entry(None) == {"ok": True, "supervisor": None}
    doc = {
        "supervisorPid": 7,
        "crashLooping": ["market-analyst"],
        "processes": {"market-analyst": {"state": "crash loop", "restarts": 9, "crashLoop": True, "lastExit": 1}},
    }
    entry = health_entry(doc)
    assert entry["ok"] is True and entry["crashLooping"] == ["market-analyst"]
    assert entry["processes"]["market-analyst"]["restarts"] == 9
