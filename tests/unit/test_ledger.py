"""The ledger against real databases (SQLite file and PostgreSQL): invariants under random
reserve/release sequences with the ledger reopened at random points, idempotent release,
drain persistence, and two ledgers (as two processes would) writing to one database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from gpupool.catalog import load_catalog
from gpupool.pool.ledger import Ledger, LedgerError
from gpupool.pool.scheduler import Rejection
from gpupool.pool.state import GpuShare, invariant_violations


def db_holdings(url: str) -> list[tuple[str, GpuShare]]:
    """Active GPU shares read with plain SQL, independent of the ledger's own code."""
    eng = create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT g.reservation_id, g.uuid, g.gpu_index, g.memory_mib, g.sm_percent, g.whole "
                "FROM reservation_gpus g JOIN reservations r ON r.id = g.reservation_id "
                "WHERE r.state = 'active'"
            )
        ).all()
    eng.dispose()
    return [(r[0], GpuShare(r[1], r[2], r[3], r[4], bool(r[5]))) for r in rows]


def check(ledger: Ledger, url: str) -> None:
    catalog = ledger.catalog
    assert invariant_violations(catalog.nodes, db_holdings(url)) == []
    assert ledger.state.violations() == []
    # the in-memory copy agrees with the database
    assert set(ledger.state.placements) == {r.id for r in ledger.list()}


def test_reserve_release_roundtrip(db_url: str, catalog_dir: Path) -> None:
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(db_url, catalog)
    r = ledger.reserve(catalog.spec("a100-40g"), "alice", server_name="lab")
    assert not isinstance(r, Rejection)
    assert r.node == "node-a" and len(r.gpus) == 1
    assert r.gpus[0].memory_mib == 40 * 1024 and r.gpus[0].sm_percent == 50 and not r.gpus[0].whole
    got = ledger.get(r.id)
    assert (
        got is not None
        and got.owner == "alice"
        and got.server_name == "lab"
        and got.state == "active"
    )
    assert [x.id for x in ledger.list(owner="alice")] == [r.id]
    assert ledger.list(owner="bob") == []
    released = ledger.release(r.id)
    assert (
        released is not None and released.state == "released" and released.released_at is not None
    )
    again = ledger.release(r.id)  # idempotent: releasing twice is success, nothing changes
    assert again is not None and again.released_at == released.released_at
    assert ledger.release("r-does-not-exist") is None
    assert ledger.list() == [] and len(ledger.list(active_only=False)) == 1
    with pytest.raises(LedgerError, match="already used"):
        ledger.reserve(catalog.spec("cpu-1"), "alice", reservation_id=r.id)
    check(ledger, db_url)
    ledger.close()


def test_reservations_and_drains_survive_reopen(db_url: str, catalog_dir: Path) -> None:
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(db_url, catalog)
    held = [ledger.reserve(catalog.spec("a100-1x"), f"u{i}") for i in range(3)]
    assert all(not isinstance(h, Rejection) for h in held)
    ledger.set_drained("node-b", True, by="admin")
    before = ledger.state.mem_used.copy()
    ledger.close()

    reopened = Ledger(db_url, catalog)
    assert (reopened.state.mem_used == before).all()
    assert reopened.drained() == {"node-a": False, "node-b": True}
    assert {r.id for r in reopened.list()} == {h.id for h in held}  # type: ignore[union-attr]
    # node-a has one empty card left and node-b is draining: a 2-GPU request cannot fit
    spec2 = catalog.spec("a100-2x")
    rej = reopened.reserve(spec2, "x")
    assert isinstance(rej, Rejection)
    assert "node-b draining" in rej.message and "node-a" in rej.message
    with pytest.raises(LedgerError, match="unknown node 'node-z'"):
        reopened.set_drained("node-z", True)
    check(reopened, db_url)
    reopened.close()


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.sampled_from(["a100-40g", "a100-1x", "a100-2x", "cpu-1"])),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=40)),
        st.tuples(st.just("reopen"), st.just(0)),
        st.tuples(st.just("drain"), st.sampled_from(["node-a", "node-b"])),
    ),
    min_size=1,
    max_size=40,
)


def _property_run(url: str, catalog_dir: Path, ops: list[tuple[str, object]]) -> None:
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(url, catalog)
    ids: list[str] = []
    try:
        for op, arg in ops:
            if op == "reserve":
                r = ledger.reserve(catalog.spec(str(arg)), "prop")  # type: ignore[arg-type]
                if not isinstance(r, Rejection):
                    ids.append(r.id)
            elif op == "release" and ids:
                ledger.release(ids[int(arg) % len(ids)])  # type: ignore[call-overload]
            elif op == "reopen":
                ledger.close()
                ledger = Ledger(url, catalog)
            elif op == "drain":
                ledger.set_drained(str(arg), not ledger.drained()[str(arg)])
            check(ledger, url)
    finally:
        ledger.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_property_invariants_sqlite(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, object]]
) -> None:
    """Random reserve/release/reopen/drain sequences never break a GPU invariant (SQLite)."""
    d = tmp_path_factory.mktemp("prop")
    from tests.conftest import CATALOG

    _property_run(f"sqlite:///{d / 'ledger.sqlite'}", CATALOG, ops)


@pytest.mark.postgres
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_property_invariants_postgres(postgres, ops: list[tuple[str, object]]) -> None:  # type: ignore[no-untyped-def]
    """The same property on PostgreSQL, each example on a fresh database."""
    from tests.conftest import CATALOG, _db_counter

    _property_run(postgres.create_database(f"gpupool_prop_{next(_db_counter)}"), CATALOG, ops)


def test_two_writers_never_oversubscribe(db_url: str, catalog_dir: Path) -> None:
    """Two ledgers on one database (as two service processes would be) race for 16 slots;
    the database lock and the generation check keep the total at 16."""
    catalog = load_catalog(catalog_dir)
    spec = catalog.spec("a100-40g")  # 2 per card, 8 cards -> 16 slots
    a, b = Ledger(db_url, catalog), Ledger(db_url, catalog)
    placed: list[str] = []
    lock = threading.Lock()

    def worker(ledger: Ledger, n: int) -> None:
        for _ in range(n):
            r = ledger.reserve(spec, "race")
            if not isinstance(r, Rejection):
                with lock:
                    placed.append(r.id)

    threads = [threading.Thread(target=worker, args=(led, 15)) for led in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(placed) == 16
    assert len(set(placed)) == 16
    assert invariant_violations(catalog.nodes, db_holdings(db_url)) == []
    a.refresh()
    b.refresh()
    assert a.state.violations() == [] and b.state.violations() == []
    assert int(a.state.sm_used.sum()) == int(b.state.sm_used.sum()) == 16 * 50
    a.close()
    b.close()


def test_ports_are_unique_per_node_and_reused_after_release(db_url: str, catalog_dir: Path) -> None:
    """Host-networked servers on one node need distinct ports: the ledger hands them out in
    the same transaction as the GPUs, from the node's range, and takes them back on release."""
    text_ = (
        (catalog_dir / "nodes.yaml")
        .read_text()
        .replace("    gpu_runtime: none\n", "    gpu_runtime: none\n    ports: 30000-30002\n", 1)
    )
    (catalog_dir / "nodes.yaml").write_text(text_)
    catalog = load_catalog(catalog_dir)
    assert catalog.node("node-a").ports == (30000, 30002)
    ledger = Ledger(db_url, catalog)
    cpu = catalog.spec("cpu-1")
    held = [ledger.reserve(cpu, f"u{i}", container=f"c{i}") for i in range(3)]
    assert [(h.node, h.container) for h in held] == [  # type: ignore[union-attr]
        ("node-a", "c0"),
        ("node-a", "c1"),
        ("node-a", "c2"),
    ]
    assert sorted(h.port for h in held) == [30000, 30001, 30002]  # type: ignore[union-attr]
    # node-a's ports are used up; binpack would pick node-a but there is no port: rejected
    rej = ledger.reserve(cpu, "u3")
    assert isinstance(rej, Rejection) and "no free port in 30000-30002" in rej.message
    ledger.release(held[1].id)  # type: ignore[union-attr]
    again = ledger.reserve(cpu, "u4")
    assert not isinstance(again, Rejection) and again.port == held[1].port  # type: ignore[union-attr]
    ledger.close()


def test_ports_are_drawn_not_handed_out_lowest_first(db_url: str, catalog_dir: Path) -> None:
    """The lowest free port first let a user bind the next server's port before it came."""
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(db_url, catalog)
    cpu = catalog.spec("cpu-1")
    ports = []
    for i in range(12):
        r = ledger.reserve(cpu, f"u{i}")
        assert not isinstance(r, Rejection)
        ports.append(r.port)
        ledger.release(r.id)
    assert len(set(ports)) > 3, ports  # 12 draws from 10,000 ports: repeats are all but impossible
    ledger.close()


def test_lists_page_through_every_reservation_once(db_url: str, catalog_dir: Path) -> None:
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(db_url, catalog)
    cpu = catalog.spec("cpu-1")
    made = [ledger.reserve(cpu, "pat").id for _ in range(7)]  # type: ignore[union-attr]
    seen: list[str] = []
    after = None
    while True:
        page = ledger.list("pat", after=after, limit=3)
        seen += [r.id for r in page]
        if len(page) < 3:
            break
        after = (page[-1].created_at, page[-1].id)
    assert seen == [r.id for r in ledger.list("pat")] and sorted(seen) == sorted(made)
    ledger.close()


def test_a_release_reason_is_cut_to_its_column(db_url: str, catalog_dir: Path) -> None:
    """'released by <name>' with a hub user name of 255 characters broke PostgreSQL."""
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(db_url, catalog)
    r = ledger.reserve(catalog.spec("cpu-1"), "x" * 255)
    assert not isinstance(r, Rejection)
    gone = ledger.release(r.id, "released by " + "x" * 255)
    assert gone is not None and gone.release_reason == ("released by " + "x" * 255)[:255]
    ledger.close()


def test_an_id_released_before_it_was_made_cannot_be_reserved(catalog_dir: Path) -> None:
    """A start cancelled while its reserve was still on the way: the spawner's release of
    the id it chose came first (404), and the reserve that follows is refused (issue 18),
    so nothing is held for the start grace."""
    catalog = load_catalog(catalog_dir)
    ledger = Ledger("sqlite://", catalog)
    ledger.forget("r-0123456789abcdef")
    with pytest.raises(LedgerError, match="released before it was made"):
        ledger.reserve(catalog.spec("a100-40g"), "alice", reservation_id="r-0123456789abcdef")
    assert ledger.list(owner="alice") == []
    other = ledger.reserve(catalog.spec("a100-40g"), "alice", reservation_id="r-fedcba9876543210")
    assert not isinstance(other, Rejection)
