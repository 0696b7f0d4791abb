"""Accounting over a frozen clock (exact GPU-hours and cost), and quotas in the ledger:
each kind refuses at its limit with its message and allows again after release."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gpupool.catalog import load_catalog
from gpupool.catalog.models import Quota, Quotas
from gpupool.pool import accounting
from gpupool.pool.ledger import Ledger
from gpupool.pool.scheduler import Rejection

UTC = dt.timezone.utc


class Clock:
    def __init__(self, t: dt.datetime):
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += dt.timedelta(**kw)


@pytest.fixture
def setup(db_url: str, catalog_dir: Path):  # type: ignore[no-untyped-def]
    catalog = load_catalog(catalog_dir)
    clock = Clock(dt.datetime(2026, 11, 10, 10, 0, tzinfo=UTC))
    ledger = Ledger(db_url, catalog, clock=clock)
    yield catalog, ledger, clock
    ledger.close()


def month_rows(ledger: Ledger, clock: Clock, month: str) -> dict:
    start, end = accounting.parse_month(month)
    rows = accounting.per_owner_and_spec(
        ledger.between(start, end), start, end, clock(), ledger.card_memory()
    )
    return {k: accounting.rounded(v) for k, v in rows.items()}


def test_exact_gpu_hours_and_cost(setup) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock = setup
    # bob: 2 whole cards at 5.0/h from Oct 31 23:00, still running on Nov 1 02:00
    clock.t = dt.datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    ledger.reserve(catalog.spec("a100-2x"), "bob")
    # alice: a 40 GiB half of an 80 GiB card at 1.0/h, Nov 1 00:30 to 02:00 (1.5 h)
    clock.t = dt.datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
    r = ledger.reserve(catalog.spec("a100-40g"), "alice")
    clock.t = dt.datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    ledger.release(r.id)
    assert month_rows(ledger, clock, "2026-10") == {
        ("bob", "a100-2x"): {"hours": 1.0, "gpu_hours": 2.0, "cost": 5.0}
    }
    assert month_rows(ledger, clock, "2026-11") == {
        ("alice", "a100-40g"): {"hours": 1.5, "gpu_hours": 0.75, "cost": 1.5},
        ("bob", "a100-2x"): {"hours": 2.0, "gpu_hours": 4.0, "cost": 10.0},
    }
    assert month_rows(ledger, clock, "2026-12") == {}
    # time passes: the running one grows, the released one does not
    clock.advance(hours=10)
    nov = month_rows(ledger, clock, "2026-11")
    assert nov[("bob", "a100-2x")] == {"hours": 12.0, "gpu_hours": 24.0, "cost": 60.0}
    assert nov[("alice", "a100-40g")]["hours"] == 1.5


def test_month_windows() -> None:
    assert accounting.parse_month("2026-12") == (
        dt.datetime(2026, 12, 1, tzinfo=UTC),
        dt.datetime(2027, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="YYYY-MM"):
        accounting.parse_month("november")


def test_gpu_quota_refuses_then_allows_after_release(setup) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, _ = setup
    q = Quota(gpus=1)
    first = ledger.reserve(catalog.spec("a100-1x"), "alice", quota=q, quota_source="group x")
    assert not isinstance(first, Rejection)
    no = ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q, quota_source="group x")
    assert isinstance(no, Rejection) and no.reason == "quota"
    assert no.message == (
        "over the quota of group x: at most 1 GPU(s) at a time; you hold 1, "
        "A100 · 40 GiB half needs 1; 0 left"
    )
    # CPU-only work is not held to GPU quotas; other users are not affected
    assert not isinstance(ledger.reserve(catalog.spec("cpu-1"), "alice", quota=q), Rejection)
    assert not isinstance(ledger.reserve(catalog.spec("a100-1x"), "bob", quota=q), Rejection)
    ledger.release(first.id)
    assert not isinstance(ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q), Rejection)


def test_gpu_memory_quota_counts_whole_cards_fully(setup) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, _ = setup
    q = Quota(gpu_memory_mib=60 * 1024)
    a = ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q, quota_source="user alice")
    assert not isinstance(a, Rejection)
    no = ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q, quota_source="user alice")
    assert isinstance(no, Rejection) and no.reason == "quota"
    assert no.message == (
        "over the quota of user alice: at most 60 GiB of GPU memory at a time; you hold 40 GiB, "
        "A100 · 40 GiB half needs 40 GiB; 20 GiB left"
    )
    ledger.release(a.id)
    whole = ledger.reserve(catalog.spec("a100-1x"), "alice", quota=q)
    assert isinstance(whole, Rejection) and "needs 80 GiB; 60 GiB left" in whole.message
    assert set(ledger.state.placements) == set()  # nothing was written


def test_gpu_hours_quota_per_month(setup) -> None:  # type: ignore[no-untyped-def]
    catalog, ledger, clock = setup
    q = Quota(gpu_hours_per_month=1.0)
    r = ledger.reserve(catalog.spec("a100-1x"), "alice", quota=q, quota_source="default")
    assert not isinstance(r, Rejection)
    clock.advance(minutes=30)
    half = ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q)  # 0.5 used: allowed
    assert not isinstance(half, Rejection)
    clock.advance(minutes=40)  # 70 min x 1 + 40 min x 0.5 = 1.5 GPU-hours
    no = ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q, quota_source="default")
    assert isinstance(no, Rejection) and no.reason == "quota"
    assert no.message == (
        "over the quota of default: 1 GPU-hours per month; you used 1.50 in 2026-11; "
        "0 left until 2026-12-01"
    )
    ledger.release(r.id)
    ledger.release(half.id)
    still = ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q)
    assert isinstance(still, Rejection)  # released, but the hours were used
    clock.t = dt.datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    assert not isinstance(ledger.reserve(catalog.spec("a100-40g"), "alice", quota=q), Rejection)


def test_which_quota_applies() -> None:
    qs = Quotas(
        default=Quota(gpus=1),
        groups={"students": Quota(gpus=2, gpu_hours_per_month=10), "staff": Quota(gpus=4)},
        users={"ada": Quota(gpus=8)},
    )
    assert qs.for_user("ada", {"students"}) == (Quota(gpus=8), "user ada")
    q, src = qs.for_user("sam", {"students", "staff"})
    assert src == "group staff, students"
    assert q == Quota(gpus=4, gpu_hours_per_month=None)  # most generous; no limit wins
    assert qs.for_user("sue", {"students"}) == (
        Quota(gpus=2, gpu_hours_per_month=10),
        "group students",
    )
    assert qs.for_user("joe", set()) == (Quota(gpus=1), "default")
    assert Quotas().for_user("joe", set())[1] == "none"
