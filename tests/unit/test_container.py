"""The container a server gets, decided by the pure builder: HAMi-core wiring, GPUs by
UUID per runtime, limits, labels, no privileges, and nothing a user can weaken."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpupool.catalog.models import Gpu, Image, Node, Spec
from gpupool.container import (
    BRIDGE_PORT,
    PROTECTED_ENV,
    UnsafeEnvironment,
    build_container,
    home_volume,
    legacy_home_volume,
    legacy_safe_name,
    safe_name,
    server_container_name,
)
from gpupool.pool.state import GpuShare

GIB = 1024
NODE = Node(
    name="node-b",
    engine="unix:///run/docker.sock",
    cpu_millicores=64000,
    memory_mib=256 * GIB,
    address="10.0.0.12",
    network="host",
    gpu_runtime="nvidia",
    hami_core="/opt/hami/libvgpu.so",
    gpus=(
        Gpu(0, "GPU-0000", "NVIDIA A100-SXM4-80GB", 80 * GIB),
        Gpu(1, "GPU-1111", "NVIDIA A100-SXM4-80GB", 80 * GIB),
    ),
)
SLICE = Spec(
    slug="a100-20g",
    display_name="A100 20 GiB",
    gpus=1,
    gpu_models=("A100",),
    gpu_memory_mib=20 * GIB,
    gpu_sm_percent=30,
    cpu_millicores=8000,
    memory_mib=32 * GIB,
)
TWO_SLICES = dataclasses.replace(SLICE, slug="a100-2x20g", gpus=2)
MEM_ONLY = dataclasses.replace(SLICE, slug="a100-20g-nosm", gpu_sm_percent=None)
WHOLE = dataclasses.replace(SLICE, slug="a100-1x", gpu_memory_mib=None, gpu_sm_percent=None)
CPU = Spec(slug="cpu", display_name="CPU", gpus=0, cpu_millicores=2000, memory_mib=4 * GIB)
IMAGE = Image(name="lab", reference="gpupool/singleuser:latest")
HUB_ENV = {
    "JUPYTERHUB_API_TOKEN": "t",
    "JUPYTERHUB_SERVICE_URL": "http://10.0.0.12:20001/user/ada/",
}


def share(
    uuid: str = "GPU-1111", index: int = 1, mem: int = 20 * GIB, sm: int = 30, whole: bool = False
) -> GpuShare:
    return GpuShare(uuid, index, mem, sm, whole)


def build(spec: Spec = SLICE, node: Node = NODE, gpus: tuple[GpuShare, ...] | None = None, **kw):  # type: ignore[no-untyped-def]
    if gpus is None:
        gpus = {0: (), 1: (share(),), 2: (share("GPU-0000", 0), share())}[spec.gpus]
    args = dict(
        user="ada",
        server="",
        spec=spec,
        image=IMAGE,
        node=node,
        reservation_id="r-1",
        gpus=gpus,
        hub_env=dict(HUB_ENV),
        port=20001,
        command=["jupyterhub-singleuser"],
    )
    args.update(kw)
    return build_container(**args)  # type: ignore[arg-type]


def test_sliced_spec_gets_everything_hami_needs() -> None:
    plan = build()
    env = plan.environment
    assert env["LD_PRELOAD"] == "/usr/local/vgpu/libvgpu.so"
    assert env["CUDA_DEVICE_MEMORY_LIMIT_0"] == "20480m"
    assert env["CUDA_DEVICE_SM_LIMIT_0"] == "30"
    assert env["CUDA_DEVICE_MEMORY_SHARED_CACHE"] == "/usr/local/vgpu/cache/vgpu.cache"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "GPU-1111"
    binds = plan.host_config["binds"]
    assert binds["/opt/hami/libvgpu.so"] == {"bind": "/usr/local/vgpu/libvgpu.so", "mode": "ro"}
    assert binds["/opt/hami/ld.so.preload"] == {"bind": "/etc/ld.so.preload", "mode": "ro"}
    assert binds["/opt/hami/containers/r-1"] == {"bind": "/usr/local/vgpu/cache", "mode": "rw"}
    assert binds["/tmp/vgpulock"] == {"bind": "/tmp/vgpulock", "mode": "rw"}
    assert binds["gpupool-home-ada"] == {"bind": "/home/jovyan", "mode": "rw"}
    assert len(binds) == 5


def test_limits_per_visible_device_not_one_global_value() -> None:
    plan = build(
        TWO_SLICES, gpus=(share("GPU-0000", 0, 20 * GIB, 30), share("GPU-1111", 1, 20 * GIB, 30))
    )
    env = plan.environment
    assert [env[f"CUDA_DEVICE_MEMORY_LIMIT_{i}"] for i in (0, 1)] == ["20480m", "20480m"]
    assert [env[f"CUDA_DEVICE_SM_LIMIT_{i}"] for i in (0, 1)] == ["30", "30"]
    assert "CUDA_DEVICE_MEMORY_LIMIT" not in env
    assert env["NVIDIA_VISIBLE_DEVICES"] == "GPU-0000,GPU-1111"
    # the slice as the server's kernels and lab extension read it, with the declared model
    assert json.loads(env["GPUPOOL_GPUS"]) == [
        {
            "uuid": u,
            "index": i,
            "memory_mib": 20480,
            "sm": 30,
            "whole": False,
            "model": "NVIDIA A100-SXM4-80GB",
        }
        for i, u in enumerate(("GPU-0000", "GPU-1111"))
    ]
    assert plan.host_config["device_requests"] == [
        {
            "Driver": "nvidia",
            "DeviceIDs": ["GPU-0000", "GPU-1111"],
            "Capabilities": [["gpu", "compute", "utility"]],
        }
    ]


def test_no_sm_limit_when_the_spec_sets_none() -> None:
    env = build(MEM_ONLY, gpus=(share(sm=0),)).environment
    assert env["CUDA_DEVICE_MEMORY_LIMIT_0"] == "20480m"
    assert not any(k.startswith("CUDA_DEVICE_SM_LIMIT") for k in env)


def test_whole_cards_get_the_device_but_no_preload() -> None:
    plan = build(WHOLE, gpus=(share(mem=80 * GIB, sm=100, whole=True),))
    env = plan.environment
    assert not any(
        PROTECTED_ENV.match(k)
        for k in env
        if k
        not in (
            "NVIDIA_VISIBLE_DEVICES",
            "GPUPOOL_GPUS",
            "GPUPOOL_NODE",
            "GPUPOOL_SPEC",
            "GPUPOOL_RESERVATION",
        )
    )
    assert env["NVIDIA_VISIBLE_DEVICES"] == "GPU-1111"
    assert set(plan.host_config["binds"]) == {"gpupool-home-ada"}
    assert plan.host_config["device_requests"][0]["DeviceIDs"] == ["GPU-1111"]


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        (
            "nvidia",
            [
                {
                    "Driver": "nvidia",
                    "DeviceIDs": ["GPU-1111"],
                    "Capabilities": [["gpu", "compute", "utility"]],
                }
            ],
        ),
        ("cdi", [{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=GPU-1111"]}]),
        ("none", []),
    ],
)
def test_gpus_by_uuid_per_runtime(runtime: str, expected: list) -> None:
    plan = build(node=dataclasses.replace(NODE, gpu_runtime=runtime))
    assert plan.host_config["device_requests"] == expected
    # with no GPU runtime the container still gets every variable and mount of the slice
    assert plan.environment["CUDA_DEVICE_MEMORY_LIMIT_0"] == "20480m"
    assert "/opt/hami/libvgpu.so" in plan.host_config["binds"]


def test_cpu_spec_sees_no_gpu() -> None:
    plan = build(CPU)
    assert plan.host_config["device_requests"] == []
    assert plan.environment["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "LD_PRELOAD" not in plan.environment
    assert json.loads(plan.environment["GPUPOOL_GPUS"]) == []


def test_limits_and_no_privileges() -> None:
    hc = build().host_config
    assert hc["nano_cpus"] == 8 * 10**9
    assert hc["mem_limit"] == hc["memswap_limit"] == "32768m"
    # no guarantee set: the whole limit is guaranteed
    assert hc["cpu_shares"] == 8 * 1024 and hc["mem_reservation"] == "32768m"
    assert hc["pids_limit"] == 4096
    assert hc["privileged"] is False
    assert hc["cap_drop"] == ["ALL"]
    assert hc["security_opt"] == ["no-new-privileges"]
    assert not any("docker.sock" in k for k in hc["binds"])


def test_guarantees_are_the_engines_cpu_weight_and_memory_reservation() -> None:
    spec = dataclasses.replace(SLICE, cpu_guarantee_millicores=500, memory_guarantee_mib=2048)
    hc = build(spec).host_config
    assert hc["nano_cpus"] == 8 * 10**9  # the limit stays the limit
    assert hc["mem_limit"] == hc["memswap_limit"] == "32768m"
    assert hc["cpu_shares"] == 512 and hc["mem_reservation"] == "2048m"


def test_host_and_bridge_networking() -> None:
    host = build()
    assert host.host_config["network_mode"] == "host"
    assert "port_bindings" not in host.host_config and host.ports == []
    bridge = build(node=dataclasses.replace(NODE, network="bridge"))
    assert (
        bridge.host_config["network_mode"] == "gpupool-users"
    )  # not docker's default bridge: ICC is on there
    assert bridge.host_config["port_bindings"] == {BRIDGE_PORT: ("10.0.0.12", 20001)}
    assert bridge.ports == [BRIDGE_PORT]


def test_labels_name_owner_server_reservation_kind() -> None:
    plan = build(server="big run")
    assert plan.labels == {
        "io.gpupool.owner": "ada",
        "io.gpupool.server": "big run",
        "io.gpupool.reservation": "r-1",
        "io.gpupool.kind": "notebook",
        "io.gpupool.spec": "a100-20g",
        "io.gpupool.node": "node-b",
    }
    assert plan.name == server_container_name("ada", "big run")
    assert plan.image == "gpupool/singleuser:latest"
    assert plan.user == "1000:100"


@pytest.mark.parametrize(
    "key",
    [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "CUDA_DEVICE_MEMORY_LIMIT_0",
        "CUDA_DEVICE_MEMORY_LIMIT",
        "CUDA_DEVICE_SM_LIMIT_0",
        "CUDA_DISABLE_CONTROL",
        "CUDA_DEVICE_MEMORY_SHARED_CACHE",
        "NVIDIA_VISIBLE_DEVICES",
        "CUDA_VISIBLE_DEVICES",
        "GPUPOOL_RESERVATION",
    ],
)
def test_environment_cannot_weaken_the_limits(key: str) -> None:
    with pytest.raises(UnsafeEnvironment, match=key):
        build(hub_env={**HUB_ENV, key: "x"})


def test_reservation_must_match_the_spec() -> None:
    with pytest.raises(ValueError, match="needs 2 GPUs, the reservation holds 1"):
        build(TWO_SLICES, gpus=(share(),))


def test_names_are_docker_safe_and_collision_safe() -> None:
    assert server_container_name("ada", "") == "gpupool-nb-ada"
    assert server_container_name("ada", "run1") == "gpupool-nb-ada---run1"
    a, b = safe_name("Ada.L"), safe_name("ada-l")
    assert a != b and b == "ada-l"
    assert safe_name("ada@example.org").startswith("ada-example-org--")
    assert home_volume("Ada Lovelace") != home_volume("ada-lovelace")
    for n in (server_container_name("Zoë/../x", "a b"), home_volume("../../etc")):
        assert all(c.isalnum() or c in "-." for c in n), n


def test_a_user_cannot_take_the_name_of_anothers_home_or_server() -> None:
    """The old rule kept a slug as it was and hashed anything else into a slug: the user
    literally named like another's hashed part got the same home and container."""
    victim = "ada.lovelace"
    squatter = legacy_safe_name(victim)  # 'ada-lovelace-d239a0a8'
    assert squatter == "ada-lovelace-d239a0a8"
    assert legacy_home_volume(squatter) == legacy_home_volume(victim)  # the old hole
    assert home_volume(squatter) != home_volume(victim)
    assert server_container_name(squatter, "") != server_container_name(victim, "")
    # the hashed form of every name is itself a name that is kept as it is nowhere
    assert safe_name(safe_name(victim)) != safe_name(victim)
    # (user, server) splits one way only, and notebooks never look like trainings
    assert server_container_name("a", "b-c") != server_container_name("a---b", "c")
    assert server_container_name("a-b", "") != server_container_name("a", "b")
    assert server_container_name("train-t-000000000001-1", "") != "gpupool-train-t-000000000001-1"
    long = "x" * 41
    assert safe_name(long) != safe_name(long[:40]) and safe_name(long[:40]) == long[:40]


@given(
    st.lists(
        st.tuples(st.text(alphabet="aZ-.0_@ ", max_size=12), st.text(alphabet="a-.1 ", max_size=6)),
        min_size=2,
        max_size=40,
        unique=True,
    )
)
def test_container_and_volume_names_are_one_to_one(pairs: list[tuple[str, str]]) -> None:
    names = [server_container_name(u, s) for u, s in pairs]
    assert len(set(names)) == len(names)
    users = {u for u, _ in pairs}
    assert len({home_volume(u) for u in users}) == len(users)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.-]*", n) for n in names)


def test_catalog_datasets_are_mounted_by_name_read_only_unless_the_catalog_says() -> None:
    from gpupool.catalog.models import Dataset

    plan = build(
        datasets=(
            Dataset("digits", "/srv/data/digits", "numpy"),
            Dataset("scratch", "/srv/data/scratch", "other", read_only=False),
        )
    )
    binds = plan.host_config["binds"]
    assert binds["/srv/data/digits"] == {"bind": "/datasets/digits", "mode": "ro"}
    assert binds["/srv/data/scratch"] == {"bind": "/datasets/scratch", "mode": "rw"}
    assert plan.environment["GPUPOOL_DATASETS"] == "/datasets"
    assert "GPUPOOL_DATASETS" not in build().environment


def test_the_specs_disk_is_a_storage_limit_only_where_the_node_enforces_it() -> None:
    sized = dataclasses.replace(SLICE, disk_mib=10 * GIB)
    assert "storage_opt" not in build(sized).host_config
    quota_node = dataclasses.replace(NODE, disk_quota=True)
    assert build(sized, node=quota_node).host_config["storage_opt"] == {"size": "10240M"}
    assert "storage_opt" not in build(SLICE, node=quota_node).host_config  # no disk: no limit
