"""The node agent's reading of NVML (against the fake NVML), its cgroup parser, the container
labels, the Prometheus rendering and the Xid watcher; no GPU, no HTTP."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from gpupool.agent.prometheus import render_metrics
from gpupool.nvml.cgroups import (
    ContainerLabels,
    LabelCache,
    container_id_from_cgroup,
    container_of_pid,
)
from gpupool.nvml.reader import NvmlReader, cuda_version_text
from gpupool.nvml.readings import Sample
from gpupool.nvml.sampler import NodeSampler
from gpupool.nvml.xid import XidLog, XidWatcher
from tests.support import fake_nvml
from tests.support.fake_nvml import Proc

CID = "3f4e5c0b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
CID2 = "a" * 64


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[fake_nvml.World]:
    monkeypatch.delenv(fake_nvml.ENV, raising=False)
    yield fake_nvml.world.reset(gpus=2)
    fake_nvml.world.reset(gpus=2)


def started(clock: Clock | None = None) -> NvmlReader:
    r = NvmlReader(fake_nvml, clock=clock or Clock())
    assert r.ensure(), r.status
    return r


# -- inventory ----------------------------------------------------------------------------
def test_inventory_of_two_gpus(world: fake_nvml.World) -> None:
    r = started()
    assert r.status.to_json() == {
        "ok": True,
        "error": None,
        "driver_version": "550.54.15",
        "cuda_version": "12.4",
    }
    assert [g.to_json() for g in r.inventory] == [
        {
            "index": i,
            "uuid": f"GPU-fa4e0000-0000-4000-8000-{i:012d}",
            "model": "NVIDIA A100-SXM4-80GB",
            "memory_mib": 81920,
            "mig_mode": "disabled",
            "pci_bus_id": f"00000000:0{7 + i}:00.0",
        }
        for i in range(2)
    ]


def test_inventory_of_eight_gpus_with_mig_and_bytes_strings(world: fake_nvml.World) -> None:
    specs: list[dict] = [
        {"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559} for _ in range(8)
    ]
    specs[2]["mig"] = "enabled"
    specs[5]["mig"] = "unsupported"
    specs[7]["pci_bus_id"] = None
    world.reset(gpus=specs, bytes_strings=True, cuda_version=12080, driver_version="570.86.10")
    r = started()
    inv = r.inventory
    assert len(inv) == 8
    assert all(isinstance(g.model, str) and isinstance(g.uuid, str) for g in inv)
    assert {g.model for g in inv} == {"NVIDIA H100 80GB HBM3"}
    assert [g.memory_mib for g in inv] == [81559] * 8
    assert [g.mig_mode for g in inv] == ["disabled"] * 2 + ["enabled"] + ["disabled"] * 2 + [
        "unsupported"
    ] + ["disabled"] * 2
    assert inv[7].pci_bus_id is None and inv[6].pci_bus_id == "00000000:0D:00.0"
    assert r.status.driver_version == "570.86.10" and r.status.cuda_version == "12.8"
    assert len({g.uuid for g in inv}) == 8


def test_cuda_version_text() -> None:
    assert cuda_version_text(12040) == "12.4"
    assert cuda_version_text(11080) == "11.8"
    assert cuda_version_text(12000) == "12.0"


def test_a_gpu_that_cannot_be_read_is_left_out_and_said(world: fake_nvml.World) -> None:
    world.fail("nvmlDeviceGetUUID", "GPU_IS_LOST", gpu=1)
    r = started()
    assert [g.index for g in r.inventory] == [0]
    assert r.status.ok and "GPU 1 left out: GPU is lost" in (r.status.error or "")


# -- samples ------------------------------------------------------------------------------
def test_sample_readings_and_units(world: fake_nvml.World) -> None:
    g = world.gpus[1]
    g.utilization_gpu, g.utilization_memory = 87, 41
    g.memory_used_mib, g.temperature_c = 4096, 71
    g.power_mw, g.energy_mj = 123456, 987654321
    g.processes = [
        Proc(pid=300, used_mib=1000),
        Proc(pid=200, used_mib=3000),
        Proc(pid=300, used_mib=1200, graphics=True),  # in both lists: once, the larger
        Proc(pid=400, used_mib=None, graphics=True),  # the driver cannot tell
        Proc(pid=500, used_mib=None),
        Proc(pid=500, used_mib=700, graphics=True),
    ]
    r = started()
    got = r.read()
    assert [x.index for x in got] == [0, 1]
    j = got[1].to_json()
    assert j == {
        "index": 1,
        "uuid": "GPU-fa4e0000-0000-4000-8000-000000000001",
        "utilization_gpu": 87,
        "utilization_memory": 41,
        "memory_used_mib": 4096,
        "memory_total_mib": 81920,
        "temperature_c": 71,
        "power_w": 123.456,
        "energy_mj": 987654321,
        "processes": [
            {"pid": p, "memory_mib": m, "container_id": None, "owner": None}
            | {"reservation": None, "server": None, "kind": None}
            for p, m in ((200, 3000), (300, 1200), (400, None), (500, 700))
        ],
    }
    assert got[1].memory_free_mib == 81920 - 4096
    assert got[0].processes == [] and got[0].utilization_gpu == 0


def test_fields_not_supported_become_null(world: fake_nvml.World) -> None:
    optional = (
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
        "nvmlDeviceGetMigMode",
        "nvmlDeviceGetPciInfo",
    )
    for fn in optional:
        world.fail(fn, "NOT_SUPPORTED", gpu=1)
    world.gpus[1].processes = [Proc(pid=5, used_mib=10)]
    world.gpus[0].processes = [Proc(pid=6, used_mib=20)]
    r = started()
    assert r.inventory[1].mig_mode == "unsupported" and r.inventory[1].pci_bus_id is None
    g0, g1 = r.read()
    assert g1.to_json() | {"processes": None} == {
        "index": 1,
        "uuid": r.inventory[1].uuid,
        "utilization_gpu": None,
        "utilization_memory": None,
        "memory_used_mib": 0,
        "memory_total_mib": 81920,
        "temperature_c": None,
        "power_w": None,
        "energy_mj": None,
        "processes": None,
    }
    assert g1.processes == []
    assert g0.power_w == 60.0 and [p.pid for p in g0.processes] == [6]
    # memory info failing at sample time (not at inventory) is null too, not a broken sample
    world.fail("nvmlDeviceGetMemoryInfo", "NO_PERMISSION", gpu=0)
    g0, _ = r.read()
    assert (g0.memory_used_mib, g0.memory_total_mib, g0.utilization_gpu) == (None, None, 0)


def test_memory_used_leaves_the_drivers_reservation_out_as_nvidia_smi_does(
    world: fake_nvml.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle H100 shows 0 MiB used in nvidia-smi while NVML v1 says 480 (the driver's
    reservation): found on the device; the agent asks for v2 and falls back to v1."""
    world.gpus[0].memory_reserved_mib = 480
    world.gpus[0].memory_used_mib = 1000
    r = started()
    g0 = r.read()[0]
    assert (g0.memory_used_mib, g0.memory_free_mib, g0.memory_total_mib) == (1000, 80440, 81920)
    monkeypatch.delattr(fake_nvml, "nvmlMemory_v2")  # bindings older than the v2 call
    g0 = r.read()[0]
    assert (g0.memory_used_mib, g0.memory_free_mib) == (1480, 80440)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("DRIVER_NOT_LOADED", ("Driver Not Loaded", "lsmod")),
        ("LIBRARY_NOT_FOUND", ("NVML Shared Library Not Found", "libnvidia-ml.so.1")),
        ("NO_PERMISSION", ("Insufficient Permissions", "/dev/nvidia")),
    ],
)
def test_init_failure_gives_an_empty_inventory_with_the_reason(
    world: fake_nvml.World, code: str, words: tuple[str, ...]
) -> None:
    world.init_error = fake_nvml._code(code)
    agent = NodeSampler(fake_nvml, node="n1", hostname="h1", proc_root="/nonexistent")
    s = agent.take_sample()
    assert s.nvml.ok is False and s.gpus == [] and s.inventory == ()
    assert s.nvml.driver_version is None and s.nvml.cuda_version is None
    for w in (*words, "nvmlInit failed", "retrying every 30 s"):
        assert w in (s.nvml.error or ""), s.nvml.error
    out = render_metrics(s)
    assert 'gpupool_agent_nvml_up{Hostname="h1"} 0' in out
    assert "DCGM_FI_DEV_GPU_UTIL{" not in out


def test_init_is_retried_every_30_seconds_and_recovers(world: fake_nvml.World) -> None:
    world.init_error = fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED
    clock = Clock()
    r = NvmlReader(fake_nvml, clock=clock)
    assert not r.ensure()
    world.init_error = None  # the driver is loaded now
    clock.t += 10
    assert not r.ensure() and world.calls["nvmlInit"] == 1  # not before 30 s
    clock.t += 20
    assert r.ensure() and world.calls["nvmlInit"] == 2
    assert r.status.ok and r.status.error is None and len(r.inventory) == 2
    assert r.generation == 1 and len(r.read()) == 2


def test_nvml_lost_after_start_is_reported_and_restarted(world: fake_nvml.World) -> None:
    clock = Clock()
    r = started(clock)
    world.fail("nvmlDeviceGetCount", "DRIVER_NOT_LOADED")
    clock.t += 61  # the inventory is re-read once a minute
    assert not r.ensure()
    assert "nvmlDeviceGetCount failed: Driver Not Loaded" in (r.status.error or "")
    assert r.inventory == () and r.read() == [] and world.initialized == 0
    world.fail("nvmlDeviceGetCount", None)
    clock.t += 30
    assert r.ensure() and r.generation == 2 and world.initialized == 1


# -- cgroups --------------------------------------------------------------------------------
V1_DOCKER = f"""12:pids:/docker/{CID}
11:memory:/docker/{CID}
4:cpu,cpuacct:/docker/{CID}
1:name=systemd:/docker/{CID}
"""
V2_SYSTEMD = f"0::/system.slice/docker-{CID}.scope\n"
V1_SYSTEMD = f"""10:devices:/system.slice/docker-{CID}.scope
1:name=systemd:/system.slice/docker-{CID}.scope
0::/system.slice/docker-{CID}.scope
"""
CONTAINERD = (
    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/"
    f"cri-containerd-{CID}.scope\n"
)
SESSION = "0::/user.slice/user-1000.slice/session-3.scope\n"
NESTED = f"0::/docker/{CID}/docker/{CID2}\n"
FROM_ANOTHER_CGROUP_NS = f"0::/../../system.slice/docker-{CID}.scope/init.scope\n"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (V1_DOCKER, CID),
        (V2_SYSTEMD, CID),
        (V1_SYSTEMD, CID),
        (CONTAINERD, CID),
        (NESTED, CID),  # the outer container: the node's engine knows that one
        (FROM_ANOTHER_CGROUP_NS, CID),
        (SESSION, None),
        ("0::/\n", None),
        ("", None),
        ("garbage without colons\n", None),
        (f"0::/system.slice/docker-{CID[:12]}.scope\n", None),  # not a full id
        (f"0::/system.slice/mydocker-{CID}.scope\n", None),
        (f"0::/system.slice/docker-{CID}.scopes\n", None),
    ],
)
def test_container_id_from_cgroup(text: str, want: str | None) -> None:
    assert container_id_from_cgroup(text) == want


def fake_proc(root: Path, pid: int, cgroup: str) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "cgroup").write_text(cgroup)


def test_container_of_pid_reads_under_a_proc_root(tmp_path: Path) -> None:
    fake_proc(tmp_path, 10, V2_SYSTEMD)
    fake_proc(tmp_path, 11, SESSION)
    (tmp_path / "12" / "cgroup").mkdir(parents=True)  # unreadable as a file
    assert container_of_pid(10, tmp_path) == CID
    assert container_of_pid(11, tmp_path) is None
    assert container_of_pid(12, tmp_path) is None
    assert container_of_pid(13, tmp_path) is None  # gone, or in another PID namespace


# -- labels through a stub of the Docker engine -----------------------------------------------
class StubDockerLabels:
    """A stub of the Docker engine's label lookup: answers from a dict, counts calls, and can
    be made to fail like an engine that does not answer."""

    def __init__(self, containers: dict[str, dict[str, str]]) -> None:
        self.containers = containers
        self.calls: list[str] = []
        self.down = False

    def __call__(self, container_id: str) -> Mapping[str, str] | None:
        self.calls.append(container_id)
        if self.down:
            raise ConnectionError("engine down")
        return self.containers.get(container_id)


GPUPOOL_LABELS = {
    "io.gpupool.owner": "alice",
    "io.gpupool.reservation": "r-0001",
    "io.gpupool.server": "alice/",
    "io.gpupool.kind": "notebook",
    "other": "x",
}


def test_processes_get_their_container_and_gpupool_labels(
    world: fake_nvml.World, tmp_path: Path
) -> None:
    fake_proc(tmp_path, 100, V2_SYSTEMD)  # a gpupool container
    fake_proc(tmp_path, 101, f"0::/docker/{CID2}\n")  # someone else's container
    fake_proc(tmp_path, 102, SESSION)  # not in a container
    world.gpus[0].processes = [Proc(100, 1000), Proc(101, 2000), Proc(102, 3000), Proc(103, 5)]
    stub = StubDockerLabels({CID: GPUPOOL_LABELS, CID2: {"com.example": "y"}})
    clock = Clock()
    agent = NodeSampler(
        fake_nvml, node="n", proc_root=str(tmp_path), labels=LabelCache(stub, clock=clock)
    )
    procs = {p.pid: p.to_json() for p in agent.take_sample().gpus[0].processes}
    assert procs[100] == {
        "pid": 100,
        "memory_mib": 1000,
        "container_id": CID,
        "owner": "alice",
        "reservation": "r-0001",
        "server": "alice/",
        "kind": "notebook",
    }
    assert procs[101]["container_id"] == CID2 and procs[101]["owner"] is None
    assert procs[102]["container_id"] is None and procs[103]["container_id"] is None
    assert sorted(stub.calls) == [CID, CID2]
    # answers are kept: a second sample asks the engine nothing
    agent.take_sample()
    assert len(stub.calls) == 2


def test_engine_errors_give_null_labels_and_are_retried_after_10_s(
    world: fake_nvml.World, tmp_path: Path
) -> None:
    fake_proc(tmp_path, 100, V2_SYSTEMD)
    world.gpus[1].processes = [Proc(100, 1000)]
    stub = StubDockerLabels({CID: GPUPOOL_LABELS})
    stub.down = True
    clock = Clock()
    agent = NodeSampler(
        fake_nvml, node="n", proc_root=str(tmp_path), labels=LabelCache(stub, clock=clock)
    )
    p = agent.take_sample().gpus[1].processes[0]
    assert (p.container_id, p.owner, p.reservation) == (CID, None, None)
    stub.down = False
    clock.t += 5
    assert agent.take_sample().gpus[1].processes[0].owner is None
    assert len(stub.calls) == 1  # not asked again within 10 s
    clock.t += 5
    assert agent.take_sample().gpus[1].processes[0].owner == "alice"
    assert len(stub.calls) == 2


def test_label_cache_unknown_container_and_forgetting() -> None:
    stub = StubDockerLabels({CID: GPUPOOL_LABELS})
    clock = Clock()
    cache = LabelCache(stub, clock=clock, forget=600)
    assert cache.get(CID2) is None and cache.get(CID2) is None
    assert stub.calls == [CID2]
    assert cache.get(CID) == ContainerLabels("alice", "r-0001", "alice/", "notebook")
    clock.t += 601
    cache.prune()
    assert cache.get(CID) is not None and stub.calls == [CID2, CID, CID]


# -- Prometheus ---------------------------------------------------------------------------------
def parse(text: str) -> dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]]:
    """name -> (type, help, samples), with prometheus_client's parser when installed."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:  # pragma: no cover - a tiny parser for the HELP/TYPE structure
        pytest.skip("prometheus_client is not installed")
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = (
            fam.type,
            fam.documentation,
            [(dict(s.labels), s.value) for s in fam.samples],
        )
    return out


def sample_with_readings(world: fake_nvml.World, tmp_path: Path) -> Sample:
    world.reset(
        gpus=[
            {"name": 'Weird "GPU"\\ model\nline two', "utilization_gpu": 55},
            {"memory_used_mib": 1024, "power_mw": 250500, "energy_mj": 5_000_000_000},
        ]
    )
    world.fail("nvmlDeviceGetPowerUsage", "NOT_SUPPORTED", gpu=0)
    fake_proc(tmp_path, 100, V2_SYSTEMD)
    world.gpus[1].processes = [Proc(100, 1000), Proc(101, None)]
    agent = NodeSampler(
        fake_nvml,
        node="n",
        hostname="gpu-node-1",
        proc_root=str(tmp_path),
        labels=LabelCache(StubDockerLabels({CID: GPUPOOL_LABELS})),
    )
    return agent.take_sample()


def test_metrics_names_types_help_and_labels(world: fake_nvml.World, tmp_path: Path) -> None:
    s = sample_with_readings(world, tmp_path)
    text = render_metrics(s, {s.gpus[1].uuid: 79})
    m = parse(text)
    assert text.endswith("\n") and "NaN" not in text
    expected_types = {
        "DCGM_FI_DEV_GPU_UTIL": "gauge",
        "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge",
        "DCGM_FI_DEV_FB_USED": "gauge",
        "DCGM_FI_DEV_FB_FREE": "gauge",
        "DCGM_FI_DEV_GPU_TEMP": "gauge",
        "DCGM_FI_DEV_POWER_USAGE": "gauge",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter",
        "DCGM_FI_DEV_XID_ERRORS": "gauge",
        "gpupool_process_fb_used": "gauge",
        "gpupool_agent_nvml_up": "gauge",
        "gpupool_agent_sample_seconds": "gauge",
    }
    # the client's parser names a counter family without its _total suffix
    assert {k: v[0] for k, v in m.items()} == expected_types
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter" in text
    assert m["DCGM_FI_DEV_FB_USED"][1] == "Framebuffer memory used (in MiB)."
    assert m["DCGM_FI_DEV_POWER_USAGE"][1] == "Power draw (in W)."
    util = m["DCGM_FI_DEV_GPU_UTIL"][2]
    assert util[0] == (
        {
            "gpu": "0",
            "UUID": s.gpus[0].uuid,
            "device": "nvidia0",
            "modelName": 'Weird "GPU"\\ model\nline two',  # escaped and parsed back
            "Hostname": "gpu-node-1",
            "DCGM_FI_DRIVER_VERSION": "550.54.15",
        },
        55.0,
    )
    assert '\\"GPU\\"\\\\ model\\nline two' in text
    # GPU 0's power is not supported: left out, not NaN
    assert [lab["gpu"] for lab, _ in m["DCGM_FI_DEV_POWER_USAGE"][2]] == ["1"]
    assert m["DCGM_FI_DEV_POWER_USAGE"][2][0][1] == 250.5
    assert m["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][2][1][1] == 5_000_000_000
    assert [(lab["gpu"], v) for lab, v in m["DCGM_FI_DEV_FB_USED"][2]] == [("0", 0), ("1", 1024)]
    assert [(lab["gpu"], v) for lab, v in m["DCGM_FI_DEV_FB_FREE"][2]] == [
        ("0", 81920),
        ("1", 81920 - 1024),
    ]
    assert [(lab["gpu"], v) for lab, v in m["DCGM_FI_DEV_XID_ERRORS"][2]] == [("0", 0), ("1", 79)]
    procs = m["gpupool_process_fb_used"][2]
    assert len(procs) == 1  # pid 101's memory is unknown: left out
    labels, value = procs[0]
    assert value == 1000
    assert {k: labels[k] for k in ("gpu", "pid", "container", "owner", "reservation", "kind")} == {
        "gpu": "1",
        "pid": "100",
        "container": CID,
        "owner": "alice",
        "reservation": "r-0001",
        "kind": "notebook",
    }
    assert m["gpupool_agent_nvml_up"][2] == [({"Hostname": "gpu-node-1"}, 1.0)]
    assert m["gpupool_agent_sample_seconds"][2][0][1] == pytest.approx(s.duration)


# -- Xid events -------------------------------------------------------------------------------
def test_xid_log_keeps_the_last_100_with_growing_seq() -> None:
    xl = XidLog()
    for i in range(150):
        xl.add("GPU-x", 0, i, float(i))
    ev = xl.events()
    assert len(ev) == 100 and [e.seq for e in ev] == list(range(51, 151))
    assert xl.last_by_uuid() == {"GPU-x": 149}


def wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_xid_events_are_recorded_and_unsupported_gpus_skipped(
    world: fake_nvml.World, caplog: pytest.LogCaptureFixture
) -> None:
    world.reset(gpus=[{}, {}, {"xid_supported": False}])
    caplog.set_level(logging.INFO, logger="gpupool.agent")
    r = started()
    xids = XidLog()
    watcher = XidWatcher(r, xids, wait_ms=50)
    stop = threading.Event()
    t = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: len(watcher.watched) == 2)
        world.emit_xid(1, 79)
        world.emit_xid(0, 48)
        wait_for(lambda: len(xids.events()) == 2)
        ev = [e.to_json() for e in xids.events()]
        assert [(e["seq"], e["index"], e["uuid"], e["xid"]) for e in ev] == [
            (1, 1, r.inventory[1].uuid, 79),
            (2, 0, r.inventory[0].uuid, 48),
        ]
        assert all(abs(e["time"] - time.time()) < 10 for e in ev)
        # NVML restarted: registered again; the skipped GPU is not logged a second time
        r.generation += 1
        wait_for(lambda: world.calls.get("nvmlEventSetCreate", 0) == 2)
        world.emit_xid(1, 31)
        wait_for(lambda: len(xids.events()) == 3)
        assert xids.events()[-1].seq == 3 and xids.last_by_uuid()[r.inventory[1].uuid] == 31
    finally:
        stop.set()
        t.join(2)
    assert not t.is_alive()
    skipped = [m for m in caplog.messages if "skipped" in m]
    assert len(skipped) == 1 and "GPU 2" in skipped[0], caplog.messages
    assert world.event_sets == []  # freed on stop


def test_xid_events_reach_the_sample(world: fake_nvml.World) -> None:
    agent = NodeSampler(fake_nvml, node="n", proc_root="/nonexistent")
    agent.watcher.wait_ms = 50
    agent.interval = 0.05
    agent.start()
    try:
        wait_for(lambda: agent.watcher.watched)
        world.emit_xid(0, 94)
        wait_for(lambda: agent.latest is not None and agent.latest.xid_events)
        assert agent.latest is not None
        assert [(x.index, x.xid, x.seq) for x in agent.latest.xid_events] == [(0, 94, 1)]
    finally:
        agent.stop()


# -- the fake against the real binding ---------------------------------------------------------
def test_the_fake_has_pynvmls_names_and_numbers() -> None:
    pynvml = pytest.importorskip("pynvml")
    names = [n for n in vars(fake_nvml) if n.startswith(("nvml", "NVML_"))]
    assert len(names) > 30
    for n in names:
        assert hasattr(pynvml, n), f"the fake has {n}, pynvml does not"
        if n.startswith("NVML_") or n.startswith("nvmlEventType"):
            assert getattr(fake_nvml, n) == getattr(pynvml, n), n
