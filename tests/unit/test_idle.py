"""GPU-idle culling over a frozen clock and a real ledger (SQLite and PostgreSQL): warned
ahead, notice withdrawn when the GPU works again, stopped at the timeout with the reason
recorded as the release reason; unsure readings decide nothing. The hub is a recorder
here; tests/integration/test_agent_pool.py runs it with a real hub and agent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from gpupool.catalog import load_catalog
from gpupool.catalog.models import CullingSettings
from gpupool.pool.idle import IdleCuller
from gpupool.pool.ledger import Ledger, Reservation
from tests.support.clock import Clock

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 10, 10, 0, tzinfo=UTC)


class Hub:
    """Records stop requests; a stop releases the reservation as the spawner would."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.stops: list[tuple[str, str]] = []
        self.fail: Exception | None = None
        self.has_server = True

    async def stop(self, user: str, server: str) -> bool:
        if self.fail:
            raise self.fail
        self.stops.append((user, server))
        if not self.has_server:
            return False
        for r in self.ledger.list(user):
            if r.server_name == server:
                self.ledger.release(r.id, "stopped by the spawner")
        return True


async def call(fn: Any, *a: Any) -> Any:
    return fn(*a)


@pytest.fixture
def world(db_url: str, catalog_dir: Path):  # type: ignore[no-untyped-def]
    catalog = load_catalog(catalog_dir)
    clock = Clock(T0)
    ledger = Ledger(db_url, catalog, clock=clock.dt)
    hub = Hub(ledger)
    settings = CullingSettings(gpu_idle_timeout=3600, warn_before=600, busy_percent=1)
    culler = IdleCuller(settings, ledger, call, hub.stop, stale_after=30, clock=clock)
    yield catalog, ledger, clock, hub, culler
    ledger.close()


def sample(r: Reservation, util: int | None, others: int | None = None) -> dict[str, Any]:
    gpus = [{"uuid": g.uuid, "utilization_gpu": util} for g in r.gpus]
    if others is not None:
        gpus.append({"uuid": "GPU-other", "utilization_gpu": others})
    return {"gpus": gpus}


async def run_for(
    culler: IdleCuller, clock: Clock, seconds: float, util: Any, step: float = 10
) -> None:
    """Advance the clock, with an agent sample (``util(r)`` gives one) before every tick."""
    end = clock.t + seconds
    while clock.t < end:
        clock.t += step
        for s in util():
            culler.observe(s)
        await culler.tick()


async def test_warned_then_stopped_and_the_reason_recorded(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, hub, culler = world
    r = ledger.reserve(catalog.spec("a100-40g"), "alice", server_name="lab")
    assert isinstance(r, Reservation)
    idle = lambda: [sample(r, 0)]  # noqa: E731
    await run_for(culler, clock, 2990, idle)  # 50 min: not yet the 60 - 10 min mark
    assert ledger.notices() == [] and hub.stops == []
    await run_for(culler, clock, 20, idle)
    (n,) = ledger.notices("alice")
    assert n["kind"] == "gpu-idle" and n["reservation"] == r.id and not n["stopping"]
    assert "idle for 50 min" in n["message"] and "11:00 UTC" in n["message"]
    assert n["act_at"] == "2026-11-10T11:00:10+00:00"  # the first tick started the clock
    assert ledger.notices("bob") == []
    await run_for(culler, clock, 590, idle)
    assert hub.stops == []  # 59 min 50 s
    await run_for(culler, clock, 10, idle)
    assert hub.stops == [("alice", "lab")]
    done = ledger.get(r.id)
    assert done is not None and done.state == "released"
    assert (
        done.release_reason
        == "gpu-idle: no GPU utilization for 1 h 00 min (limit 1 h 00 min); stopped by the pool"
    )
    assert ledger.notices() == []  # gone with the reservation
    await run_for(culler, clock, 600, idle)
    assert hub.stops == [("alice", "lab")]  # once


async def test_work_withdraws_the_notice_and_restarts_the_clock(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, hub, culler = world
    r = ledger.reserve(catalog.spec("a100-40g"), "alice", server_name="")
    await run_for(culler, clock, 3100, lambda: [sample(r, 0)])
    assert len(ledger.notices()) == 1
    await run_for(culler, clock, 10, lambda: [sample(r, 30)])
    assert ledger.notices() == []
    await run_for(culler, clock, 2990, lambda: [sample(r, 1)])  # 1 % is not busy
    assert ledger.notices() == [] and hub.stops == []
    await run_for(culler, clock, 620, lambda: [sample(r, 0)])
    assert hub.stops == [("alice", "")]


async def test_unsure_readings_decide_nothing(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, hub, culler = world
    r = ledger.reserve(catalog.spec("a100-2x"), "bob", server_name="")
    cpu = ledger.reserve(catalog.spec("cpu-1"), "carol")  # no GPU: never GPU-idle
    assert isinstance(cpu, Reservation)
    # one of its two GPUs is never reported: unsure the whole time
    half = lambda: [{"gpus": [{"uuid": r.gpus[0].uuid, "utilization_gpu": 0}]}]  # noqa: E731
    await run_for(culler, clock, 7200, half)
    # utilization not supported (null): unsure too
    await run_for(culler, clock, 7200, lambda: [sample(r, None)])
    assert ledger.notices() == [] and hub.stops == []
    # the agent silent for two hours after idle readings: the gap counts as busy
    await run_for(culler, clock, 1800, lambda: [sample(r, 0)])
    await run_for(culler, clock, 7200, lambda: [])
    await run_for(culler, clock, 2900, lambda: [sample(r, 0)])
    assert ledger.notices() == []
    await run_for(culler, clock, 710, lambda: [sample(r, 0)])
    assert hub.stops == [("bob", "")]
    assert ledger.get(cpu.id).state == "active"  # type: ignore[union-attr]


async def test_a_busy_neighbour_on_the_card_keeps_a_slice_alive(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, hub, culler = world
    r = ledger.reserve(catalog.spec("a100-40g"), "alice")
    # card-wide utilization is all NVML gives: the card is busy, so the slice is kept
    await run_for(culler, clock, 7200, lambda: [sample(r, 80)])
    assert hub.stops == []


async def test_hub_away_is_retried_and_a_server_the_hub_lacks_is_released(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, hub, culler = world
    r = ledger.reserve(catalog.spec("a100-40g"), "alice", server_name="gone")
    hub.fail = ConnectionError("hub down")
    await run_for(culler, clock, 3620, lambda: [sample(r, 0)])
    assert ledger.get(r.id).state == "active"  # type: ignore[union-attr]
    (n,) = ledger.notices()
    assert n["stopping"] and "being stopped" in n["message"]
    hub.fail, hub.has_server = None, False
    await run_for(culler, clock, 60, lambda: [sample(r, 0)])
    assert hub.stops == [("alice", "gone")]
    done = ledger.get(r.id)
    assert done is not None and done.state == "released"
    assert done.release_reason is not None and done.release_reason.startswith("gpu-idle:")


async def test_trainings_are_not_culled_and_off_means_off(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, hub, culler = world
    t = ledger.reserve(catalog.spec("a100-40g"), "alice", kind="training")
    await run_for(culler, clock, 7200, lambda: [sample(t, 0)])
    assert hub.stops == [] and ledger.notices() == []
    r = ledger.reserve(catalog.spec("a100-40g"), "bob")
    culler.settings = CullingSettings()  # gpu_idle_timeout 0
    await run_for(culler, clock, 7200, lambda: [sample(r, 0)])
    assert hub.stops == []


async def test_a_pending_stop_is_never_replaced_or_withdrawn(world) -> None:  # type: ignore[no-untyped-def]
    """A stop the hub left to the pool (its node did not answer; issue 18) outlives idle
    warnings: they neither replace nor withdraw it, and the ledger lists it for the
    reconciler with its reason until the reservation is freed."""
    from gpupool.pool.ledger import STOP_PENDING

    catalog, ledger, clock, hub, culler = world
    r = ledger.reserve(catalog.spec("a100-40g"), "alice", server_name="lab")
    assert isinstance(r, Reservation)
    assert ledger.set_notice(r.id, STOP_PENDING, "node away", None, "stopped by the hub")
    assert ledger.stops_pending() == {r.id: "stopped by the hub"}
    await run_for(culler, clock, 3700, lambda: [sample(r, 0)])  # idle past the timeout
    assert [n["kind"] for n in ledger.notices()] == [STOP_PENDING]
    assert hub.stops == []  # already being stopped
    ledger.clear_notice(r.id)
    assert [n["kind"] for n in ledger.notices()] == [STOP_PENDING]
    assert ledger.stops_pending() == {r.id: "stopped by the hub"}
    ledger.release(r.id, "stopped by the hub")
    assert ledger.stops_pending() == {} and ledger.notices() == []


async def test_ssh_work_counts_as_gpu_use_and_a_stale_report_does_not(world) -> None:  # type: ignore[no-untyped-def]
    """An SSH session that carried work (as the server reported it) withdraws the notice
    and restarts the clock; a report the server stopped refreshing counts for nothing."""
    from gpupool.pool.ssh_sessions import SshSessions

    catalog, ledger, clock, hub, _ = world
    sessions = SshSessions(stale_after=120, clock=clock)
    settings = CullingSettings(gpu_idle_timeout=3600, warn_before=600, busy_percent=1)
    culler = IdleCuller(
        settings, ledger, call, hub.stop, stale_after=30, clock=clock,
        ssh_activity=sessions.last_activity,
    )  # fmt: skip
    r = ledger.reserve(catalog.spec("a100-40g"), "alice", server_name="lab")
    other = ledger.reserve(catalog.spec("a100-40g"), "bob", server_name="")
    idle = lambda: [sample(r, 0), sample(other, 0)]  # noqa: E731
    await run_for(culler, clock, 3100, idle)
    assert {n["reservation"] for n in ledger.notices()} == {r.id, other.id}
    # alice types in an SSH session opened 20 min ago, 5 s before the report
    sessions.report(r.id, "alice", [{"id": "ab12", "open_s": 1200, "idle_s": 5}])
    await run_for(culler, clock, 10, idle)
    assert [n["reservation"] for n in ledger.notices()] == [other.id]  # bob's stays
    # no more reports (the server stopped sending them): the clock runs from the work, at
    # t = 3095 s, and bob's from the start
    await run_for(culler, clock, 2970, idle)  # t = 6080 s
    assert hub.stops == [("bob", "")] and ledger.notices("alice") == []
    await run_for(culler, clock, 20, idle)
    assert [n["reservation"] for n in ledger.notices("alice")] == [r.id]
    await run_for(culler, clock, 600, idle)
    assert hub.stops == [("bob", ""), ("alice", "lab")]


async def test_ssh_does_not_count_when_the_pool_says_so(world) -> None:  # type: ignore[no-untyped-def]
    from gpupool.pool.ssh_sessions import SshSessions

    catalog, ledger, clock, hub, _ = world
    sessions = SshSessions(stale_after=120, clock=clock)
    settings = CullingSettings(gpu_idle_timeout=3600, warn_before=600, count_ssh=False)
    culler = IdleCuller(
        settings, ledger, call, hub.stop, stale_after=30, clock=clock,
        ssh_activity=sessions.last_activity,
    )  # fmt: skip
    r = ledger.reserve(catalog.spec("a100-40g"), "alice", server_name="")

    def idle_but_typing() -> list[dict[str, Any]]:
        sessions.report(r.id, "alice", [{"id": "ab12", "open_s": 9999, "idle_s": 1}])
        return [sample(r, 0)]

    await run_for(culler, clock, 3610, idle_but_typing)
    assert hub.stops == [("alice", "")]
