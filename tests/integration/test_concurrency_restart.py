"""Reserve under load through the real hub and proxy, and across restarts of the pool
service and of the hub, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from gpupool.catalog import load_catalog
from gpupool.pool.state import invariant_violations
from tests.conftest import CATALOG
from tests.support.hub import Hub
from tests.unit.test_ledger import db_holdings

pytestmark = pytest.mark.hub

IN_FLIGHT = 60
SLOTS = 16  # a100-40g: 2 per card, 2 nodes x 4 cards


@pytest.fixture(params=["sqlite", "postgresql"])
def any_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    db_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    h = Hub(CATALOG, db_url=db_url, watch_nodes=False).start()
    h.ledger_url = db_url or f"sqlite:///{h.state_dir / 'gpupool.sqlite'}"  # type: ignore[attr-defined]
    try:
        yield h
    finally:
        h.cleanup()


def _post(hub: Hub, owner: str, n: int) -> requests.Response:
    """A reservation for ``owner`` as the hub's spawner makes one (users cannot make bare
    ones); the automation service is not rate-limited."""
    return requests.post(
        f"{hub.pool}/reservations",
        headers={"Authorization": f"token {hub.automation_token}"},
        json={"spec": "a100-40g", "server_name": f"s{n}", "owner": owner},
        timeout=60,
    )


def test_concurrent_reserve_never_oversubscribes(any_hub: Hub) -> None:
    owners = [f"user{i}" for i in range(10)]
    for o in owners:
        any_hub.user_token(o)  # the users exist in the hub
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        results = list(
            pool.map(lambda n: _post(any_hub, owners[n % len(owners)], n), range(IN_FLIGHT))
        )
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == SLOTS, codes
    assert codes.count(503) == IN_FLIGHT - SLOTS, codes
    assert all(r.json()["reason"] == "capacity" for r in results if r.status_code == 503)
    catalog = load_catalog(CATALOG)
    holdings = db_holdings(any_hub.ledger_url)  # type: ignore[attr-defined]
    assert len({rid for rid, _ in holdings}) == SLOTS
    assert invariant_violations(catalog.nodes, holdings) == []
    # every GPU holds exactly two halves: 80 GiB and 100 % SM, no more
    per_gpu: dict[str, int] = {}
    for _, share in holdings:
        per_gpu[share.uuid] = per_gpu.get(share.uuid, 0) + share.memory_mib
    assert sorted(per_gpu.values()) == [80 * 1024] * 8


def _service_pid(hub: Hub) -> int:
    """The pool service of this hub: the process whose environment names its state folder."""
    marker = f"GPUPOOL_STATE_DIR={hub.state_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"gpupool.pool.service" in cmd and marker in (proc / "environ").read_bytes().split(
                b"\0"
            ):
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError("pool service process not found")


def _wait_api(hub: Hub, token: str, timeout: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = requests.get(
                f"{hub.pool}/reservations", headers={"Authorization": f"token {token}"}, timeout=5
            )
            if r.status_code == 200:
                return r
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"pool API did not come back:\n{hub.log()}")


def test_reservations_survive_service_and_hub_restart(any_hub: Hub) -> None:
    token = any_hub.user_token("dora")
    made = [_post(any_hub, "dora", n).json() for n in range(3)]
    ids = sorted(m["id"] for m in made)

    # the pool service dies: the hub restarts it, and the ledger still has everything
    old = _service_pid(any_hub)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _service_pid(any_hub) != old:
                break
        except AssertionError:
            pass
        time.sleep(0.5)
    r = _wait_api(any_hub, token)
    assert sorted(x["id"] for x in r.json()["reservations"]) == ids

    # the whole hub restarts on the same state folder and database
    any_hub.stop()
    any_hub.start()
    r = _wait_api(any_hub, token)
    assert sorted(x["id"] for x in r.json()["reservations"]) == ids
    assert [x["gpus"] for x in sorted(r.json()["reservations"], key=lambda x: x["id"])] == [
        m["gpus"] for m in sorted(made, key=lambda x: x["id"])
    ]
    # and capacity accounting carried over: 16 - 3 slots left
    spec = requests.get(
        f"{any_hub.pool}/specs/a100-40g", headers={"Authorization": f"token {token}"}, timeout=10
    )
    assert spec.json()["fits_now"] == SLOTS - 3
