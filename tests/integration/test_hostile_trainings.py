"""A training's output is its user's: one that prints what breaks the metric contract
stalls nobody (issue 17). Real parts as in test_trainings.py: a Docker engine started by
the test as a pool node, the trainer image, a real JupyterHub with configurable-http-proxy
and the pool service dispatching.

Mallory's command training prints ``GPUPOOL-METRIC {"kind": "step", "time": "now"}``, an
epoch too large for the database and one good record, then sleeps. Bob's short training,
submitted after it, is scheduled and succeeds; Mallory's shows a warning and keeps its
good record; her cancel stops her container and frees its reservation. (Before: every
dispatcher pass failed on her output, nothing was scheduled for anyone, and her cancel
never stopped her container.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from gpupool.lab.client import PoolApi
from tests.support.catalogs import write_engine_catalog
from tests.support.docker import Engine, ensure_docker_installed, start_engines, stop_engines
from tests.support.hub import Hub
from tests.support.images import ensure_image
from tests.support.reservations import reservation_state

pytestmark = [pytest.mark.docker, pytest.mark.hub]
TRAINER = "gpupool/trainer:latest"
NODE = "hostile"
SPEC = {
    "slug": "a100-40g",
    "display_name": "A100 half",
    "gpus": 1,
    "gpu_model": "A100",
    "gpu_memory": "40GiB",
    "gpu_sm_percent": 50,
    "cpu": 1,
    "memory": "2GiB",
}
HOSTILE = [
    {"kind": "step", "time": "now"},  # the line of the issue
    {"kind": "step", "step": 1, "time": "now"},
    {"kind": "epoch", "epoch": 10**30},
    {"kind": "epoch", "epoch": 1, "test_accuracy": 0.25},  # a good one among them
]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    engs = start_engines([NODE])
    try:
        ensure_image(engs.values(), TRAINER, image="trainer")
        yield engs[NODE]
    finally:
        stop_engines(engs)


@pytest.fixture(scope="module")
def hub(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    d = write_engine_catalog(tmp_path_factory.mktemp("catalog"), {NODE: engine}, specs=[SPEC])
    (d / "images.yaml").write_text(
        yaml.safe_dump({"images": [{"name": "trainer", "reference": TRAINER, "training": True}]})
    )
    pool = {"trainings": {"poll_interval": 0.5, "per_user_running": 3}}
    (d / "pool.yaml").write_text(yaml.safe_dump(pool))
    h = Hub(d).start()
    try:
        yield h
    finally:
        h.cleanup()


def wait(
    api: PoolApi, tid: str, done: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    t: dict[str, Any] = {}
    while time.monotonic() < deadline:
        t = api.training(tid)
        if done(t):
            return t
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s; last: {t}\n{api.training_logs(tid)}")


def command(*records: dict[str, Any], then: str = "") -> list[str]:
    """python -c: print each record as a GPUPOOL-METRIC line, then run ``then``."""
    lines = "\n".join(f"GPUPOOL-METRIC {json.dumps(r)}" for r in records)
    return ["python", "-c", f"import time\nprint({lines!r}, flush=True)\n{then}"]


def dropped(api: PoolApi, tid: str) -> tuple[int, str]:
    """Lines dropped by the pool (its warnings may come from one pass or several)."""
    warnings = api.training_metrics(tid, kinds="warning")["records"]
    said = [w["message"] for w in warnings if "malformed metric line" in w["message"]]
    return sum(int(m.split()[0]) for m in said), " ".join(said)


def printed(engine: Engine, tid: str, text: str, timeout: float = 60) -> None:
    """Wait until the container of training ``tid`` has printed ``text``."""
    client = engine.client()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = client.containers.list(filters={"label": f"io.gpupool.training={tid}"})
            if found and text in found[0].logs().decode(errors="replace"):
                return
            time.sleep(0.5)
    finally:
        client.close()
    raise AssertionError(f"training {tid} did not print {text!r} within {timeout} s")


def test_hostile_output_stalls_nobody_and_its_cancel_stops_it(hub: Hub, engine: Engine) -> None:
    mallory = PoolApi(hub.pool, hub.user_token("mallory"), timeout=30)
    bob = PoolApi(hub.pool, hub.user_token("bob"), timeout=30)
    a = mallory.submit_training(
        {"spec": "a100-40g", "command": command(*HOSTILE, then="time.sleep(600)")}
    )
    a = wait(mallory, a["id"], lambda t: t["state"] == "running", 120, "mallory's running")
    printed(engine, a["id"], str(10**30))

    # bob's, submitted once mallory's lines are there: every pass used to fail on them
    b = bob.submit_training(
        {
            "spec": "a100-40g",
            "command": command({"kind": "epoch", "epoch": 1, "test_accuracy": 0.75}),
        }
    )
    b = wait(bob, b["id"], lambda t: t["state"] in ("succeeded", "failed"), 120, "bob's ended")
    assert b["state"] == "succeeded", bob.training_logs(b["id"])
    epochs = bob.training_metrics(b["id"], kinds="epoch")["records"]
    assert [(e["epoch"], e["test_accuracy"]) for e in epochs] == [(1, 0.75)]

    # mallory's: the warning says what was dropped; the good record is kept
    wait(mallory, a["id"], lambda t: dropped(mallory, t["id"])[0] >= 3, 30, "a warning")
    count, said = dropped(mallory, a["id"])
    assert count == 3 and "step.time" in said and "epoch.epoch" in said, said
    epochs = mallory.training_metrics(a["id"], kinds="epoch")["records"]
    assert [(e["epoch"], e["test_accuracy"]) for e in epochs] == [(1, 0.25)]
    assert "malformed metric line" in mallory.training_logs(a["id"])
    assert mallory.training(a["id"])["state"] == "running"

    # her cancel stops her container and frees its reservation
    assert mallory.cancel_training(a["id"])["cancel_requested"] is True
    a = wait(mallory, a["id"], lambda t: t["state"] == "cancelled", 60, "mallory's cancelled")
    assert a["message"] == "cancelled by mallory"
    assert reservation_state(mallory, a["reservation"]) == "released"
    client = engine.client()
    try:
        left = client.containers.list(all=True, filters={"label": f"io.gpupool.training={a['id']}"})
    finally:
        client.close()
    assert not left, [c.name for c in left]
