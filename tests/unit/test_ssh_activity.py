"""What counts as work on an SSH session (gpupool.lab.ssh_activity) and what the pool
keeps of the reports (gpupool.pool.ssh_sessions): keepalives are not work, typing and
copying are; reports are placed on the pool's clock, bounded, and forgotten when stale."""

from __future__ import annotations

import pytest

from gpupool.lab.ssh_activity import ActivityMeter
from gpupool.pool.ssh_sessions import SshSessions


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("every", [10.0, 15.0, 30.0, 60.0])
def test_keepalives_both_ways_are_not_work(every: float) -> None:
    """sshd's probe every 30 s and a client's every ``every`` s, each answered (four
    messages of ~64 bytes at worst when the two fall together), for an hour."""
    clock = Clock()
    meter = ActivityMeter(clock)
    for i in range(int(3600 / every)):
        clock.t = 1000 + i * every
        worked = [meter.record(64) for _ in range(2)]
        if (i * every) % 30 < every:  # sshd's own probe falls in this interval too
            worked += [meter.record(52) for _ in range(2)]
        assert not any(worked)
    assert meter.idle_for() is None


def test_typing_a_command_and_reading_its_output_is_work() -> None:
    clock = Clock()
    meter = ActivityMeter(clock)
    worked = False
    for _key in "ls -l\n":  # a keystroke, its echo
        clock.t += 0.2
        worked = meter.record(36) or worked
        worked = meter.record(36) or worked
    assert worked and meter.idle_for() == 0
    clock.t += 42
    assert meter.idle_for() == 42


def test_a_copy_is_work_at_once() -> None:
    meter = ActivityMeter(Clock())
    assert meter.record(32 * 1024)


def test_reports_are_placed_on_the_pools_clock_and_go_stale() -> None:
    clock = Clock()
    pool = SshSessions(stale_after=120, clock=clock)
    r = pool.report(
        "r-1",
        "alice",
        [
            {"id": "ab12", "from": "10.0.0.7", "open_s": 600, "idle_s": 30},
            # idle longer than open: a confused client; the opening counts
            {"id": "cd34", "open_s": 60, "idle_s": 900},
            {"id": "ef56", "open_s": 5, "idle_s": None},
        ],
    )
    assert [s.opened for s in r.sessions] == [400.0, 940.0, 995.0]
    assert pool.last_activity("r-1") == 970.0 and pool.last_activity("r-2") is None
    assert pool.get("r-1").to_json()["sessions"][0]["from"] == "10.0.0.7"  # type: ignore[union-attr]
    clock.t += 121
    assert pool.get("r-1") is None and pool.last_activity("r-1") is None
    # an empty report forgets at once
    pool.report("r-1", "alice", [{"id": "ab12", "open_s": 1, "idle_s": 0}])
    assert pool.get("r-1") is not None
    pool.report("r-1", "alice", [])
    assert pool.get("r-1") is None


def session(last_work: float | None) -> dict:
    meter = ActivityMeter()
    meter.last_work = last_work
    return {"from": "127.0.0.1", "opened": 0.0, "meter": meter}


async def until(condition, seconds: float = 3) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time")


def test_a_report_names_at_most_32_sessions_those_that_worked_last() -> None:
    from gpupool.lab.ssh_activity import SessionReporter

    sessions = {f"{i:04x}": session(float(i) if i % 2 else None) for i in range(40)}
    body = SessionReporter(sessions, send=lambda b: None).report()
    assert len(body) == 32
    assert [s["id"] for s in body[:20]] == [f"{i:04x}" for i in range(39, 0, -2)]


async def test_a_session_opened_while_the_last_close_is_told_is_reported() -> None:
    """The pool is slow to take the empty report after the last session closed; a session
    that opens meanwhile is reported (it was lost before: the reporter stopped)."""
    import asyncio
    import threading

    from gpupool.lab.ssh_activity import SessionReporter

    sessions: dict = {"aaaa": session(None)}
    sent: list[list[str]] = []
    slow = threading.Event()

    def send(body: list[dict]) -> None:
        sent.append([s["id"] for s in body])
        if not body:
            slow.wait(5)  # the pool takes its time with the empty report

    reporter = SessionReporter(sessions, send, every=60, gap=0.05)
    reporter.poke()
    await until(lambda: len(sent) == 1)
    del sessions["aaaa"]
    reporter.poke()
    await until(lambda: len(sent) == 2)
    assert sent == [["aaaa"], []]
    sessions["bbbb"] = session(None)  # opens while the empty report is under way
    reporter.poke()
    slow.set()
    await until(lambda: sent[-1] == ["bbbb"])
    del sessions["bbbb"]
    reporter.poke()
    await asyncio.wait_for(reporter.task, 5)  # type: ignore[arg-type]
    assert sent[-1] == []
