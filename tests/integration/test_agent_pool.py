"""The pool and a real ``gpupool-agent`` process, end to end: a Docker engine started by
the test, a real JupyterHub with the pool service watching the node, and the agent
reading a FAKE NVML (tests/support/fake_nvml.py: no GPU in CI) whose processes are the
real PIDs of a real container, so the agent's cgroup and label lookup are real.

- the GPUs the agent reports replace the declared ones, and the difference is an alert;
- a reservation's metrics show the memory its container's processes use on its GPU;
- temperature and Xid alerts come from the agent's samples;
- the agent's Prometheus text carries DCGM names and the owner of each process;
- an agent that stops answering takes its node down (the engine still answers), and the
  node is up again when the agent is back;
- the slice watchdog (issue 18): a container whose processes use more GPU memory than its
  slice (or any on a card it holds no share of) raises an alert and a notice, and after
  the grace its workload is stopped and the reservation freed with the reason; within
  its slice nothing happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import yaml

from tests.support.agent import SCRIPT, AgentProcess, write_world
from tests.support.docker import Engine, ensure_docker_installed
from tests.support.hub import Hub
from tests.support.images import import_sleep_image
from tests.support.servers import pool

pytestmark = [pytest.mark.docker, pytest.mark.hub]

IMAGE = "gpupool-test/sleep:latest"
DECLARED = [f"GPU-d0000000-0000-4000-8000-00000000000{i}" for i in range(2)]
REPORTED = [DECLARED[0], "GPU-e0000000-0000-4000-8000-000000000001"]
SLICE_GRACE = 4


def world_doc(processes: dict[str, list[dict[str, Any]]] | None = None, **gpu1: Any) -> dict:
    processes = processes or {}
    gpus = []
    for i, uuid in enumerate(REPORTED):
        g = {
            "uuid": uuid,
            "name": "NVIDIA A100-SXM4-80GB",
            "memory_total_mib": 81559,
            "memory_used_mib": 500,
            "utilization_gpu": 5,
            "temperature_c": 40,
            "processes": processes.get(uuid, []),
        }
        if i == 1:
            g.update(gpu1)
        gpus.append(g)
    return {"driver_version": "580.1", "cuda_version": 13000, "gpus": gpus}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    e = Engine("agent-pool").start()
    try:
        import_sleep_image(e, IMAGE)
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="module")
def agent(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run .venv/bin/pip install -e . --no-deps")
    a = AgentProcess(tmp_path_factory.mktemp("agent"), engine)
    write_world(a.world, world_doc())
    a.start()
    try:
        yield a
    finally:
        a.kill()


@pytest.fixture(scope="module")
def hub(
    engine: Engine, agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    d = tmp_path_factory.mktemp("catalog")
    (d / "agent-token").write_text(agent.token.read_text())
    node = {
        "name": "node-a",
        "engine": engine.unix_url,
        "network": "host",  # the test engine has no bridge
        "gpu_runtime": "none",
        "cpu": 8,
        "memory": "16GiB",
        "agent": {"url": f"http://127.0.0.1:{agent.port}", "token_file": "agent-token"},
        "gpus": [
            {"index": i, "uuid": u, "model": "NVIDIA A100-SXM4-80GB", "memory": "80GiB"}
            for i, u in enumerate(DECLARED)
        ],
    }
    spec = {
        "slug": "a100-20g",
        "display_name": "A100 20 GiB",
        "gpus": 1,
        "gpu_memory": "20GiB",
        "cpu": 1,
        "memory": "1GiB",
    }
    (d / "nodes.yaml").write_text(yaml.safe_dump({"nodes": [node]}))
    (d / "specs.yaml").write_text(yaml.safe_dump({"specs": [spec]}))
    (d / "pool.yaml").write_text(
        yaml.safe_dump({"alerts": {"gpu_temperature": 85}, "slices": {"grace": SLICE_GRACE}})
    )
    h = Hub(d).start()
    try:
        yield h
    finally:
        h.cleanup()


def until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def alerts(hub: Hub, kind: str) -> list[dict[str, Any]]:
    return [a for a in pool(hub, "GET", "/alerts").json()["alerts"] if a["kind"] == kind]


def test_agent_inventory_metrics_alerts_and_silence(
    hub: Hub, agent: AgentProcess, engine: Engine
) -> None:
    # the agent's GPUs replace the declared ones; the difference is shown, not hidden
    node = until(
        "inventory from the agent",
        lambda: (n := pool(hub, "GET", "/nodes/node-a").json())["gpu_source"] == "agent" and n,
        20,
    )
    assert [g["uuid"] for g in node["gpus"]] == REPORTED
    assert [g["memory_mib"] for g in node["gpus"]] == [81559, 81559]
    assert node["health"]["agent"]["ok"] and node["health"]["engine"]["ok"]
    (mismatch,) = alerts(hub, "inventory-mismatch")
    assert f"declared {DECLARED[1]} not reported" in mismatch["message"]

    # a reservation, its container, and that container's process on the reserved GPU
    hub.user_token("ops")
    made = pool(hub, "POST", "/reservations", json={"spec": "a100-20g", "owner": "ops"})
    assert made.status_code == 201, made.text
    r = made.json()
    uuid = r["gpus"][0]["uuid"]
    assert uuid in REPORTED
    labels = ["--label", f"io.gpupool.reservation={r['id']}", "--label", "io.gpupool.owner=ops"]
    cid = engine.docker("run", "-d", "--network", "none", *labels, IMAGE, "/bin/sleep", "600")
    cid_s = cid.stdout.strip()
    pid = int(engine.docker("inspect", "-f", "{{.State.Pid}}", cid_s).stdout.strip())
    write_world(
        agent.world,
        world_doc(
            {uuid: [{"pid": pid, "used_mib": 3000}]},
            temperature_c=95,
        )
        | {"xids": [{"gpu": 1, "xid": 79}]},
    )

    def my_usage() -> Any:
        samples = pool(hub, "GET", f"/reservations/{r['id']}/metrics").json()["samples"]
        return samples and samples[-1]["gpus"][0]["mem_used_mib"] == 3000 and samples[-1]

    last = until("the reservation's memory in its metrics", my_usage, 15)
    assert last["gpus"][0]["mem_limit_mib"] == 20 * 1024 and last["gpus"][0]["uuid"] == uuid
    assert alerts(hub, "over-slice") == []  # 3000 MiB of a 20 GiB slice: nothing to say

    # alerts from the samples
    (hot,) = until("temperature alert", lambda: alerts(hub, "gpu-temperature"), 10)
    assert hot["severity"] == "critical" and "95 °C" in hot["message"]
    assert hot["gpu"] == REPORTED[1]
    (xid,) = until("Xid alert", lambda: alerts(hub, "xid"), 10)
    assert xid["severity"] == "critical" and "Xid 79" in xid["message"]

    # the agent's own Prometheus text: DCGM names, and the process's owner from its labels
    text = agent.get("/metrics").text
    assert f'DCGM_FI_DEV_GPU_TEMP{{gpu="1",UUID="{REPORTED[1]}"' in text
    owner_line = [
        line
        for line in text.splitlines()
        if line.startswith("gpupool_process_fb_used{") and f'pid="{pid}"' in line
    ]
    assert len(owner_line) == 1 and 'owner="ops"' in owner_line[0]
    assert f'reservation="{r["id"]}"' in owner_line[0] and owner_line[0].endswith(" 3000")

    # the pool's gauges
    metrics = pool(hub, "GET", "/metrics").text
    assert 'gpupool_node_up{node="node-a"} 1' in metrics

    # the agent falls silent: the node goes down although its engine answers
    agent.kill()
    t0 = time.monotonic()
    until("node down", lambda: pool(hub, "GET", "/nodes/node-a").json()["state"] == "down", 10)
    print(f"agent killed -> node down in {time.monotonic() - t0:.1f} s")
    h = pool(hub, "GET", "/nodes/node-a").json()["health"]
    assert h["engine"]["ok"] and h["agent"]["ok"] is False
    assert pool(hub, "GET", f"/reservations/{r['id']}").json()["state"] == "active"
    agent.start()
    until("node up", lambda: pool(hub, "GET", "/nodes/node-a").json()["state"] == "up", 30)
    engine.docker("rm", "-f", cid_s)
    pool(hub, "DELETE", f"/reservations/{r['id']}")


@pytest.mark.parametrize("where", ["over its slice", "on a card it holds no share of"])
def test_the_slice_watchdog_stops_a_workload_over_its_slice(
    hub: Hub, agent: AgentProcess, engine: Engine, where: str
) -> None:
    """With HAMi-core bypassed (CUDA_DISABLE_CONTROL, a static binary) a process is limited
    by nothing in its container: the FAKE NVML reports what such a process would use."""
    owner = "mallory" if where == "over its slice" else "moe"
    until("no over-slice alert left", lambda: alerts(hub, "over-slice") == [], 20)
    hub.user_token(owner)
    name = f"gpupool-nb-{owner}"
    made = pool(
        hub, "POST", "/reservations", json={"spec": "a100-20g", "owner": owner, "container": name}
    )
    assert made.status_code == 201, made.text
    r = made.json()
    held = r["gpus"][0]["uuid"]
    gpu = held if where == "over its slice" else next(u for u in REPORTED if u != held)
    labels = [
        "--label",
        f"io.gpupool.reservation={r['id']}",
        "--label",
        f"io.gpupool.owner={owner}",
    ]
    run = engine.docker(
        "run", "-d", "--name", name, "--network", "none", *labels, IMAGE, "/bin/sleep", "600"
    )
    cid = run.stdout.strip()
    pid = int(engine.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())
    write_world(agent.world, world_doc({gpu: [{"pid": pid, "used_mib": 30 * 1024}]}))
    t0 = time.monotonic()
    try:
        (a,) = until("the over-slice alert", lambda: alerts(hub, "over-slice"), 20)
        print(f"{where}: alert after {time.monotonic() - t0:.1f} s")
        d = a["details"]
        assert d["owner"] == owner and d["container"] == cid[:12] and d["used_mib"] == 30 * 1024
        assert d["limit_mib"] == (20 * 1024 if where == "over its slice" else 0)
        assert a["reservation"] == r["id"] and a["gpu"] == gpu and a["severity"] == "critical"
        tok = hub.user_token(owner)
        said = requests.get(
            f"{hub.pool}/notices", headers={"Authorization": f"token {tok}"}, timeout=30
        ).json()["notices"]
        assert [n["kind"] for n in said] == ["over-slice"], said
        gone = until(
            "the workload stopped and its reservation freed",
            lambda: (
                (x := pool(hub, "GET", f"/reservations/{r['id']}").json())["state"] == "released"
                and x
            ),
            SLICE_GRACE + 20,
        )
        print(f"{where}: stopped and freed after {time.monotonic() - t0:.1f} s")
        assert gone["release_reason"].startswith("over-slice: used 30 GiB"), gone
        assert engine.docker("ps", "-aq", "--filter", f"id={cid}").stdout.strip() == ""
        until("the alert cleared", lambda: alerts(hub, "over-slice") == [], 20)
    finally:
        write_world(agent.world, world_doc())
        engine.docker("rm", "-f", cid)
        pool(hub, "DELETE", f"/reservations/{r['id']}")


def test_a_node_without_hami_core_installed_takes_no_slices(hub: Hub, agent: AgentProcess) -> None:
    """The agent checks the node's HAMi-core (--hami-core): an ld.so.preload that is the
    empty folder Docker leaves for a missing bind source, or a lock folder the containers'
    user cannot use, takes the node off sliced specs with an alert that says what is
    wrong; installed again, the node takes slices at the next probe."""
    preload = agent.vgpu / "ld.so.preload"
    hub.user_token("ines")
    ok = pool(hub, "POST", "/reservations", json={"spec": "a100-20g", "owner": "ines"})
    assert ok.status_code == 201, ok.text  # installed: offered
    pool(hub, "DELETE", f"/reservations/{ok.json()['id']}")
    preload.unlink()
    preload.mkdir()
    agent.vgpulock.chmod(0o755)
    try:
        (a,) = until("the hami-core alert", lambda: alerts(hub, "hami-core-missing"), 15)
        assert a["severity"] == "critical" and "takes no sliced specs" in a["message"]
        assert "is a folder (Docker makes one where a bind source is missing)" in a["message"]
        assert "mode 755" in a["message"] and "docs/install.md" in a["message"]
        n = pool(hub, "GET", "/nodes/node-a").json()
        assert n["takes_slices"] is False and "ld.so.preload" in n["slice_problem"]
        r = pool(hub, "POST", "/reservations", json={"spec": "a100-20g", "owner": "ines"})
        assert r.status_code == 503, r.text
        assert "takes no slices: HAMi-core is not installed" in r.json()["message"]
    finally:
        preload.rmdir()
        preload.write_text("/usr/local/vgpu/libvgpu.so\n")
        agent.vgpulock.chmod(0o1777)
    until("the alert cleared", lambda: alerts(hub, "hami-core-missing") == [], 15)
    assert pool(hub, "GET", "/nodes/node-a").json()["takes_slices"] is True
    again = pool(hub, "POST", "/reservations", json={"spec": "a100-20g", "owner": "ines"})
    assert again.status_code == 201, again.text
    pool(hub, "DELETE", f"/reservations/{again.json()['id']}")
