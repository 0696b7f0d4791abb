"""The node agent's process -> container -> labels path against a real Docker engine: the
cgroup file of a real container's process names that container, and the engine's labels
reach the sample (NVML is the fake: no GPU here, so the fake lists the real PIDs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpupool.nvml.cgroups import LabelCache, container_of_pid, docker_label_lookup
from gpupool.nvml.sampler import NodeSampler
from tests.support import fake_nvml
from tests.support.docker import Engine
from tests.support.images import import_sleep_image

pytestmark = pytest.mark.docker

IMAGE = "gpupool-test/sleep:latest"
LABELS = {
    "io.gpupool.owner": "alice",
    "io.gpupool.reservation": "r-agent-1",
    "io.gpupool.server": "alice/",
    "io.gpupool.kind": "notebook",
}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    e = Engine("agent-labels").start()
    try:
        import_sleep_image(e, IMAGE)
        yield e
    finally:
        ids = e.docker("ps", "-aq", check=False).stdout.split() if e.run_dir else []
        if ids:
            e.docker("rm", "-f", *ids, check=False)
        e.stop()


def run_sleeper(engine: Engine, labels: dict[str, str]) -> tuple[str, int]:
    args = ["run", "-d", "--network", "none"]
    for k, v in labels.items():
        args += ["--label", f"{k}={v}"]
    cid = engine.docker(*args, IMAGE, "/bin/sleep", "600").stdout.strip()
    pid = int(engine.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())
    assert pid > 0
    return cid, pid


def test_real_container_process_to_labels(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    labelled, pid1 = run_sleeper(engine, LABELS)
    other, pid2 = run_sleeper(engine, {"com.example.app": "x"})
    gone, _ = run_sleeper(engine, LABELS)
    engine.docker("rm", "-f", gone)

    # the cgroup file of a real container's process names the container
    print(f"\n/proc/{pid1}/cgroup:\n{Path(f'/proc/{pid1}/cgroup').read_text()}")
    assert container_of_pid(pid1) == labelled
    assert container_of_pid(pid2) == other
    assert container_of_pid(os.getpid()) is None

    lookup = docker_label_lookup(engine.unix_url)
    assert {k: v for k, v in (lookup(labelled) or {}).items() if k in LABELS} == LABELS
    assert lookup(gone) is None  # the engine does not know it: not an error

    # end to end through the agent's sample, with the fake NVML listing the real PIDs
    monkeypatch.delenv(fake_nvml.ENV, raising=False)
    world = fake_nvml.world.reset(gpus=1)
    try:
        world.gpus[0].processes = [fake_nvml.Proc(pid1, 1000), fake_nvml.Proc(pid2, 2000)]
        agent = NodeSampler(fake_nvml, node="n", labels=LabelCache(lookup))
        procs = {p.pid: p for p in agent.take_sample().gpus[0].processes}
    finally:
        fake_nvml.world.reset(gpus=2)
    p1, p2 = procs[pid1], procs[pid2]
    assert (p1.container_id, p1.owner, p1.reservation, p1.server, p1.kind) == (
        labelled,
        "alice",
        "r-agent-1",
        "alice/",
        "notebook",
    )
    assert p2.container_id == other and p2.owner is None and p2.reservation is None
