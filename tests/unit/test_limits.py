"""Per-user bounds: quotas on what every spec holds (CPU-only ones too), the write rate
limiter, and the one rule for who may use a spec."""

from __future__ import annotations

from pathlib import Path

from gpupool.catalog import load_catalog
from gpupool.catalog.models import Quota
from gpupool.pool.ledger import Ledger
from gpupool.pool.limits import RateLimiter
from gpupool.pool.scheduler import Rejection


def test_cpu_only_specs_count_against_cpu_memory_and_reservation_quotas(
    catalog_dir: Path, tmp_path: Path
) -> None:
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", catalog)
    cpu = catalog.spec("cpu-1")
    assert cpu is not None and cpu.gpus == 0
    q = Quota(cpu_millicores=cpu.cpu_millicores)
    first = ledger.reserve(cpu, "ann", quota=q, quota_source="user ann")
    assert not isinstance(first, Rejection)
    again = ledger.reserve(cpu, "ann", quota=q, quota_source="user ann")
    assert isinstance(again, Rejection) and again.reason == "quota"
    assert (
        "over the quota of user ann: at most" in again.message and "CPU at a time" in again.message
    )
    assert not isinstance(ledger.reserve(cpu, "bob", quota=q), Rejection)  # only ann is held
    mem = Quota(memory_mib=cpu.memory_mib)
    assert isinstance(ledger.reserve(cpu, "ann", quota=mem), Rejection)
    count = Quota(reservations=1)
    r = ledger.reserve(cpu, "ann", quota=count)
    assert isinstance(r, Rejection) and "at most 1 servers and trainings at a time" in r.message
    ledger.release(first.id)
    assert not isinstance(ledger.reserve(cpu, "ann", quota=count), Rejection)
    assert len(ledger.list("ann")) == 1


def test_most_generous_of_two_group_quotas_covers_the_new_limits() -> None:
    a = Quota(cpu_millicores=1000, memory_mib=None, reservations=2)
    b = Quota(cpu_millicores=4000, memory_mib=2048, reservations=1)
    m = a.most_generous(b)
    assert m.cpu_millicores == 4000 and m.memory_mib is None and m.reservations == 2
    assert (
        Quota().unlimited and not Quota(reservations=0).unlimited and Quota(cpu_millicores=1).holds
    )


def test_the_write_limiter_allows_a_burst_then_the_rate_per_user() -> None:
    now = [0.0]
    lim = RateLimiter(rate=1.0, burst=3, clock=lambda: now[0])
    assert [lim.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.take("u")
    assert 0.9 < wait <= 1.0 and RateLimiter.retry_after(wait) == "1"
    assert lim.take("v") == 0.0  # another user is not held up
    now[0] += 1.0
    assert lim.take("u") == 0.0 and lim.take("u") > 0


def test_observers_see_every_spec_but_use_only_their_own(catalog_dir: Path) -> None:
    catalog = load_catalog(catalog_dir)
    restricted = [s.slug for s in catalog.specs if s.groups]
    assert restricted, "the test catalog has a group-restricted spec"
    usable = {s.slug for s in catalog.usable_specs("otto", ["gpupool-observers"])}
    assert not usable & set(restricted)
    admin = {s.slug for s in catalog.usable_specs("x", [], hub_admin=True)}
    assert set(restricted) <= admin
    group = catalog.specs[[s.slug for s in catalog.specs].index(restricted[0])].groups[0]
    assert restricted[0] in {s.slug for s in catalog.usable_specs("m", [group])}


def test_a_flood_of_servers_that_guarantee_less_than_their_limit_stops_at_the_quota(
    catalog_dir: Path, tmp_path: Path
) -> None:
    """Quotas count what a server books (its guarantee), held and asked alike: with a
    4-CPU quota and specs booking 0.5 of a 2-CPU limit, ann gets 8 servers, the 9th is
    refused with figures that add up, and bob, on the same node, is not touched."""
    import dataclasses

    catalog = load_catalog(catalog_dir)
    base = catalog.spec("cpu-1")
    assert base is not None
    nb = dataclasses.replace(
        base, cpu_millicores=2000, cpu_guarantee_millicores=500, memory_guarantee_mib=64
    )
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", catalog)
    q = Quota(cpu_millicores=4000)
    held = [ledger.reserve(nb, "ann", quota=q, quota_source="user ann") for _ in range(8)]
    assert not any(isinstance(r, Rejection) for r in held)
    assert all(r.cpu_millicores == 500 for r in held)  # booked: the guarantee
    ninth = ledger.reserve(nb, "ann", quota=q, quota_source="user ann")
    assert isinstance(ninth, Rejection) and ninth.reason == "quota"
    assert "you hold 4, " in ninth.message and "needs 0.5; 0 left" in ninth.message
    assert not isinstance(ledger.reserve(nb, "bob", quota=q), Rejection)
    mem = Quota(memory_mib=8 * 64)
    assert isinstance(ledger.reserve(nb, "ann", quota=mem), Rejection)  # 8 x 64 MiB held
