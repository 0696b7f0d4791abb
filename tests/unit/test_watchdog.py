"""The slice watchdog (issue 18) on samples as a node agent with a FAKE NVML reports them
(no GPU here: the per-process memory figures are written by the test, in the agent's JSON
contract), against a real ledger (SQLite and PostgreSQL), real Alerts and a frozen clock.
The stop is a recorder that frees the reservation as the hub's spawner would.
tests/integration/test_agent_pool.py runs it with a real hub, pool service and agent."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from gpupool.catalog import load_catalog
from gpupool.catalog.models import SliceSettings
from gpupool.pool.alerts import Alerts
from gpupool.pool.ledger import Ledger, Reservation
from gpupool.pool.watchdog import KIND, SliceWatchdog, find_overuse
from tests.support.clock import Clock

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
GRACE = 60.0


class Stops:
    """Records stop requests and frees the reservation, as the hub's spawner does."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, r: Reservation, by: str, reason: str) -> bool:
        self.asked.append((r.id, by))
        self.ledger.release(r.id, "released by gpupool-spawner")
        return True


async def call(fn: Any, *a: Any) -> Any:
    return fn(*a)


@pytest.fixture
def world(db_url: str, catalog_dir: Path):  # type: ignore[no-untyped-def]
    catalog = load_catalog(catalog_dir)
    clock = Clock(T0)
    ledger = Ledger(db_url, catalog, clock=clock.dt)
    alerts = Alerts(clock=clock)
    stops = Stops(ledger)
    dog = SliceWatchdog(
        SliceSettings(grace=GRACE, tolerance_mib=256), ledger, call, alerts, stops, clock=clock
    )
    yield catalog, ledger, clock, alerts, stops, dog
    ledger.close()


def proc(r: Reservation | None, mib: int, cid: str = "c0ffee" * 10 + "abcd") -> dict[str, Any]:
    """A process as the agent reports it (memory from the FAKE NVML)."""
    return {
        "pid": 4242,
        "memory_mib": mib,
        "container_id": cid,
        "owner": r.owner if r else None,
        "reservation": r.id if r else None,
        "server": r.server_name if r else None,
        "kind": r.kind if r else None,
    }


def sample(node: str, gpus: dict[str, list[dict[str, Any]]], index: int = 0) -> dict[str, Any]:
    return {
        "gpus": [
            {"index": index + i, "uuid": u, "processes": ps}
            for i, (u, ps) in enumerate(gpus.items())
        ]
    }


def sliced(ledger: Ledger, catalog: Any, owner: str = "alice") -> Reservation:
    r = ledger.reserve(catalog.spec("a100-40g"), owner, server_name="lab")  # a 40 GiB slice
    assert isinstance(r, Reservation) and r.gpus and not r.gpus[0].whole
    return r


async def test_over_its_slice_alert_notice_then_stop_after_the_grace(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, alerts, stops, dog = world
    r = sliced(ledger, catalog)
    uuid = r.gpus[0].uuid
    over = lambda: sample(r.node, {uuid: [proc(r, 50 * 1024)]})  # noqa: E731  50 GiB > 40
    found = await dog.observe(r.node, over())
    assert [(o.reservation, o.used_mib, o.limit_mib) for o in found] == [
        (r.id, 50 * 1024, 40 * 1024)
    ]
    (a,) = [a for a in alerts.active.values() if a.kind == KIND]
    assert a.severity == "critical" and "alice's reservation" in a.message
    assert "50 GiB" in a.message and "its slice of 40 GiB" in a.message
    assert a.details["owner"] == "alice" and a.details["container"] == ("c0ffee" * 2)
    (n,) = ledger.notices("alice")
    assert n["kind"] == KIND and "The pool stops this workload at" in n["message"]
    # the idle culler's warning neither replaces nor withdraws it
    from gpupool.pool import idle

    assert not ledger.set_notice(r.id, idle.KIND, "idle", None)
    ledger.clear_notice(r.id, idle.KIND)
    assert [x["kind"] for x in ledger.notices("alice")] == [KIND]
    clock.t += GRACE - 1
    await dog.observe(r.node, over())
    await dog.settle()
    assert stops.asked == []  # not before the grace
    clock.t += 1
    await dog.observe(r.node, over())
    await dog.settle()  # the stop runs beside the probes, not in them
    assert stops.asked == [(r.id, "the pool (slice watchdog)")]
    freed = ledger.get(r.id)
    assert freed is not None and freed.state == "released"
    assert freed.release_reason.startswith("over-slice: used 50 GiB of GPU memory")  # type: ignore[union-attr]
    clock.t += 10
    await dog.observe(r.node, over())  # its processes may linger a sample: asked once
    await dog.settle()
    assert len(stops.asked) == 1


async def test_within_its_slice_nothing_happens(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, alerts, stops, dog = world
    r = sliced(ledger, catalog)
    uuid = r.gpus[0].uuid
    # two processes of its container together at the slice plus the tolerance
    at_limit = sample(r.node, {uuid: [proc(r, 30 * 1024), proc(r, 10 * 1024 + 256)]})
    for _ in range(5):
        assert await dog.observe(r.node, at_limit) == []
        clock.t += GRACE
    assert not alerts.active and ledger.notices() == [] and stops.asked == []


async def test_back_under_before_the_grace_withdraws_alert_and_notice(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, alerts, stops, dog = world
    r = sliced(ledger, catalog)
    uuid = r.gpus[0].uuid
    await dog.observe(r.node, sample(r.node, {uuid: [proc(r, 45 * 1024)]}))
    assert alerts.active and ledger.notices()
    clock.t += GRACE / 2
    await dog.observe(r.node, sample(r.node, {uuid: [proc(r, 20 * 1024)]}))
    assert not alerts.active and ledger.notices() == []
    clock.t += GRACE
    await dog.observe(r.node, sample(r.node, {uuid: [proc(r, 45 * 1024)]}))
    await dog.settle()
    assert stops.asked == []  # the clock starts over


async def test_a_process_on_a_card_its_reservation_does_not_hold_is_caught(world) -> None:  # type: ignore[no-untyped-def]
    """Whole-card use by a container with no share of that card (the devices it was
    given bypassed): held to a share of 0, and stopped after the grace."""
    catalog, ledger, clock, alerts, stops, dog = world
    r = sliced(ledger, catalog)
    node = catalog.node(r.node)
    other = next(g.uuid for g in node.gpus if g.uuid != r.gpus[0].uuid)
    s = sample(r.node, {r.gpus[0].uuid: [proc(r, 1024)], other: [proc(r, 70 * 1024)]})
    (o,) = await dog.observe(r.node, s)
    assert (o.gpu, o.limit_mib, o.used_mib) == (other, 0, 70 * 1024)
    assert "no share of that GPU" in next(iter(alerts.active.values())).message
    clock.t += GRACE
    await dog.observe(r.node, s)
    await dog.settle()
    assert [rid for rid, _ in stops.asked] == [r.id]


async def test_one_users_overuse_touches_no_other_reservation(world) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock, _alerts, stops, dog = world
    a = sliced(ledger, catalog, "alice")
    b = sliced(ledger, catalog, "bob")
    assert a.gpus[0].uuid == b.gpus[0].uuid  # binpack: the same card
    uuid = a.gpus[0].uuid
    s = sample(a.node, {uuid: [proc(a, 60 * 1024, "a" * 64), proc(b, 10 * 1024, "b" * 64)]})
    await dog.observe(a.node, s)
    clock.t += GRACE
    await dog.observe(a.node, s)
    await dog.settle()
    assert [rid for rid, _ in stops.asked] == [a.id]
    assert ledger.get(b.id).state == "active"  # type: ignore[union-attr]
    assert [n["owner"] for n in ledger.notices()] == []  # alice's went with her reservation


def test_what_is_not_judged() -> None:
    """Whole cards, processes in no container (the node's own), readings without a memory
    figure, a malformed sample, processes without a reservation label (not gpupool's, or
    labels the agent could not read: never a false alarm about someone's workload), and a
    reservation not placed now (released, or its GPU gone from the inventory)."""
    from gpupool.pool.state import GpuShare, Placement

    whole = Placement("n1", (GpuShare("GPU-1", 0, 81920, 100, True),), 1000, 1024, 0)
    sliced = Placement("n1", (GpuShare("GPU-6", 5, 10240, 0, False),), 1000, 1024, 0)
    s = {
        "gpus": [
            {
                "uuid": "GPU-1",
                "processes": [
                    {"memory_mib": 80000, "container_id": "x" * 64, "reservation": "r-whole"}
                ],
            },
            {"uuid": "GPU-2", "processes": [{"memory_mib": 9000, "container_id": None}]},
            {"uuid": "GPU-3", "processes": [{"memory_mib": None, "container_id": "y" * 64}]},
            {"uuid": "GPU-4", "processes": [{"memory_mib": "9000", "container_id": "y" * 64}]},
            {"uuid": None, "processes": "junk"},
            {"uuid": "GPU-5", "processes": [{"memory_mib": 2048, "container_id": "z" * 64}]},
            {
                "uuid": "GPU-6",
                "processes": [
                    {"memory_mib": 60000, "container_id": "w" * 64, "reservation": "r-gone"},
                    {"memory_mib": 60000, "container_id": "v" * 64, "reservation": "r-other"},
                ],
            },
        ]
    }
    placements = {"r-whole": whole, "r-other": dataclasses.replace(sliced, node="n2")}
    assert find_overuse(s, "n1", placements, 256) == []
    assert find_overuse({}, "n1", {}, 256) == []
    # the same sample with r-gone placed here: judged
    (o,) = find_overuse(s, "n1", {**placements, "r-gone": sliced}, 256)
    assert (o.reservation, o.container, o.used_mib, o.limit_mib) == (
        "r-gone",
        "w" * 12,
        60000,
        10240,
    )
