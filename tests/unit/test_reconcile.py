"""The reconciler's pure decision: every case of containers against reservations."""

from __future__ import annotations

import datetime as dt

import pytest

from gpupool.pool.ledger import Reservation
from gpupool.pool.reconcile import Container, decide

NOW = 1_800_000_000.0


def res(rid: str, age: float = 600.0, container: str | None = None) -> Reservation:
    created = dt.datetime.fromtimestamp(NOW - age, dt.timezone.utc)
    return Reservation(
        id=rid,
        owner="alice",
        spec="a100-40g",
        kind="notebook",
        server_name="",
        node="node-a",
        gpus=(),
        cpu_millicores=1000,
        memory_mib=1024,
        disk_mib=0,
        price_per_hour=0.0,
        container=container,
        port=20000,
        state="active",
        created_at=created,
        released_at=None,
        release_reason=None,
    )


def ctr(cid: str, rid: str, state: str = "running", name: str | None = None) -> Container:
    return Container(
        id=cid,
        name=name or f"c-{cid}",
        reservation=rid,
        owner="alice",
        kind="notebook",
        state=state,
        exit_code=0 if state == "exited" else None,
    )


def run(reservations, containers, seen=None, since=None, now=NOW, start=900.0, grace=300.0):  # type: ignore[no-untyped-def]
    since = {} if since is None else since
    return decide(
        reservations,
        containers,
        seen or {},
        since,
        now,
        start_grace=start,
        orphan_grace=grace,
    )


def test_running_container_is_recorded_once() -> None:
    d = run([res("r1")], [ctr("c1", "r1")])
    assert d.first_seen == {"r1": "c1"} and not d.release and not d.orphans
    d = run([res("r1")], [ctr("c1", "r1")], seen={"r1": "c1"})
    assert d.first_seen == {} and not d.release


def test_seen_container_gone_frees_at_once() -> None:
    d = run([res("r1", age=5)], [], seen={"r1": "c1"})
    assert [(r.id, why) for r, why in d.release] == [("r1", "container gone")]


def test_never_seen_waits_for_the_start_grace() -> None:
    d = run([res("r1", age=100)], [])
    assert d.release == [] and d.waiting == ["r1"]
    d = run([res("r1", age=901)], [])
    assert [r.id for r, _ in d.release] == ["r1"]
    assert "never appeared" in d.release[0][1]


@pytest.mark.parametrize(
    ("state", "released"), [("exited", True), ("dead", True), ("running", False), ("paused", False)]
)
def test_container_states(state: str, released: bool) -> None:
    d = run([res("r1")], [ctr("c1", "r1", state)], seen={"r1": "c1"})
    assert bool(d.release) is released
    if released:
        assert state in d.release[0][1]


def test_created_but_not_started_is_given_time() -> None:
    d = run([res("r1", age=30)], [ctr("c1", "r1", "created")])
    assert d.release == [] and d.waiting == ["r1"]
    d = run([res("r1", age=1000)], [ctr("c1", "r1", "created")])
    assert [r.id for r, _ in d.release] == ["r1"]


def test_orphan_reported_then_stopped_after_grace() -> None:
    since: dict[str, float] = {}
    d = run([], [ctr("c9", "r-gone")], since=since)
    assert [c.id for c in d.orphans] == ["c9"] and d.stop == [] and since == {"c9": NOW}
    d = run([], [ctr("c9", "r-gone")], since=since, now=NOW + 299)
    assert d.stop == []
    d = run([], [ctr("c9", "r-gone")], since=since, now=NOW + 300)
    assert [c.id for c in d.stop] == ["c9"]


def test_exited_orphan_needs_nothing_and_leaves_the_book() -> None:
    since = {"c9": NOW - 50}
    d = run([], [ctr("c9", "r-gone", "exited")], since=since)
    assert d.orphans == [] and d.stop == [] and since == {}


def test_claimed_container_is_not_an_orphan_and_grace_restarts() -> None:
    since = {"c1": NOW - 1000}
    d = run([res("r1")], [ctr("c1", "r1")], since=since)
    assert d.orphans == [] and since == {}


def test_second_container_for_one_reservation_is_an_orphan() -> None:
    d = run(
        [res("r1", container="jupyter-alice")],
        [ctr("c1", "r1", name="copy-of-alice"), ctr("c2", "r1", name="jupyter-alice")],
    )
    assert d.first_seen == {"r1": "c2"}
    assert [c.id for c in d.orphans] == ["c1"]


def test_exited_container_named_by_reservation_wins_over_running_copy() -> None:
    d = run(
        [res("r1", container="jupyter-alice")],
        [ctr("c1", "r1", name="jupyter-alice", state="exited"), ctr("c2", "r1", name="other")],
        seen={"r1": "c1"},
    )
    assert [r.id for r, _ in d.release] == ["r1"]
    assert [c.id for c in d.orphans] == ["c2"]


def test_container_from_engine_listing() -> None:
    c = Container.from_engine(
        {
            "Id": "abc",
            "Names": ["/jupyter-alice"],
            "State": "exited",
            "Status": "Exited (137) 3 seconds ago",
            "Labels": {"io.gpupool.reservation": "r1", "io.gpupool.owner": "alice"},
        }
    )
    assert (c.name, c.reservation, c.owner, c.exit_code, c.running) == (
        "jupyter-alice",
        "r1",
        "alice",
        137,
        False,
    )


def test_a_pending_stop_removes_its_owners_containers_then_frees() -> None:
    """The hub stopped the server while the node did not answer (issue 18): its containers
    go (running or not), another's container at its label is left alone and not taken for
    an orphan of this pass, and the reservation is freed with the reason the hub gave."""
    dataclass_replace = __import__("dataclasses").replace
    foreign = dataclass_replace(ctr("c3", "r1"), owner="mallory")
    d = decide(
        [res("r1"), res("r2")],
        [ctr("c1", "r1"), ctr("c2", "r1", state="exited"), foreign, ctr("c4", "r2")],
        {"r1": "c1", "r2": "c4"},
        {},
        NOW,
        start_grace=900.0,
        orphan_grace=0.0,
        pending={"r1": "stopped by the hub: removed when node node-a answered again"},
    )
    assert [(r.id, [c.id for c in cs], why) for r, cs, why in d.finish] == [
        ("r1", ["c1", "c2"], "stopped by the hub: removed when node node-a answered again")
    ]
    assert not d.release  # freed only after its containers are removed
    assert [c.id for c in d.orphans] == ["c3"]  # reported as any unknown container is
    # a pending stop whose container is gone already: nothing to remove, freed
    d = run([res("r1")], [])
    assert d.finish == []
    d = decide([res("r1")], [], {"r1": "c1"}, {}, NOW, start_grace=900.0, orphan_grace=300.0,
               pending={"r1": "why"})  # fmt: skip
    assert [(r.id, cs, why) for r, cs, why in d.finish] == [("r1", [], "why")]
