"""What a server's container looks like, decided without I/O.

``build_container`` turns (user, server, spec, image, node, reservation, hub environment)
into the exact arguments for Docker's create-container call. Everything that limits a
user (HAMi-core preload and variables, GPUs by UUID, CPU, memory, pids, no privileges)
comes from the spec and the reservation; the hub's own environment is the only other
input, and keys that would weaken the limits are refused even there.

HAMi-core wiring, as HAMi's device plugin injects it:
- the node's libvgpu.so mounted read-only at /usr/local/vgpu/libvgpu.so, and the node's
  ld.so.preload (beside libvgpu.so, naming it) at /etc/ld.so.preload, so shells, SSH
  sessions and children with a stripped environment are limited too; plus LD_PRELOAD;
- CUDA_DEVICE_MEMORY_LIMIT_<i>=<MiB>m per visible device, CUDA_DEVICE_SM_LIMIT_<i>;
- CUDA_DEVICE_MEMORY_SHARED_CACHE in a per-reservation host folder, and /tmp/vgpulock,
  so that the processes of one container share one account;
- GPUs by UUID: a device request with device ids (nvidia), CDI names (cdi), or none.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any

from .catalog.models import Dataset, Image, Node, Spec
from .pool.state import GpuShare

VGPU_DIR = "/usr/local/vgpu"
VGPU_LIB = f"{VGPU_DIR}/libvgpu.so"
HOME = "/home/jovyan"
DATASETS_ROOT = "/datasets"  # the catalog's datasets, one folder each
LABEL = "io.gpupool"  # label prefix
PIDS_LIMIT = 4096
BRIDGE_PORT = 8888  # the server's port inside a bridge-networked container
USER_NETWORK = "gpupool-users"  # the network they join (networks.py makes and checks it)
#: the pynvml stand-in of nodes without a GPU runtime (nvml/simulated.py): figures that move
SIMULATED_NVML = "gpupool.nvml.simulated"

# Environment keys that only the spec may set. Anything else that sets them is refused.
PROTECTED_ENV = re.compile(
    r"^(LD_PRELOAD|LD_LIBRARY_PATH|LD_AUDIT|CUDA_DEVICE_MEMORY_LIMIT.*|CUDA_DEVICE_SM_LIMIT.*|"
    r"CUDA_DEVICE_MEMORY_SHARED_CACHE|CUDA_DISABLE_CONTROL|CUDA_VISIBLE_DEVICES|"
    r"NVIDIA_VISIBLE_DEVICES|NVIDIA_DRIVER_CAPABILITIES|GPU_CORE_UTILIZATION_POLICY|"
    r"CUDA_OVERSUBSCRIBE|GPUPOOL_.*)$"
)


class UnsafeEnvironment(ValueError):
    """The hub-side environment tried to set a key that only the spec may set."""


@dataclass(frozen=True)
class ContainerPlan:
    """Arguments for docker's APIClient.create_container / create_host_config."""

    name: str
    image: str
    environment: dict[str, str]
    labels: dict[str, str]
    host_config: dict[str, Any]
    command: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    working_dir: str = HOME
    user: str = "1000:100"
    #: bind-mounted folders the container's user must be able to write (Docker creates a
    #: missing bind source as root, mode 0755): launcher.py opens them up before start
    writable: tuple[str, ...] = ()

    def create_kwargs(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "name": self.name,
            "command": self.command,
            "environment": self.environment,
            "labels": self.labels,
            "ports": self.ports,
            "working_dir": self.working_dir,
            "user": self.user,
        }


_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def safe_name(text: str, limit: int = 40) -> str:
    """A Docker-safe name part, one-to-one with ``text``: 'ada' -> 'ada',
    'Ada Lovelace@x' -> 'ada-lovelace-x--<16 hex of sha256>'.

    A name kept as it is never contains '--'; every other one ends in '--' and a hash of
    the whole name, so no user can pick a name whose part equals another user's (the rule
    before 2026-12 kept 'ada-lovelace-d239a0a8' as it was, which was also the hashed
    part of 'ada.lovelace')."""
    if len(text) <= limit and _SLUG.fullmatch(text):
        return text
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower())[:limit].strip("-") or "x"
    return f"{slug}--{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def legacy_safe_name(text: str, limit: int = 40) -> str:
    """The rule before 2026-12, not one-to-one; only to find the home volumes it named."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "x"
    if slug == text:
        return slug
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def open_dir_tar(path: str, mode: int = 0o777) -> tuple[str, bytes]:
    """(parent, tar) for docker's put_archive: one folder entry that, extracted into
    ``parent`` of a created container, gives the bind-mounted folder ``path`` this mode
    (root-owned, writable by the container's user: what HAMi's device plugin does to its
    per-container cache folder)."""
    parent, name = posixpath.split(path.rstrip("/"))
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info)
    return parent or "/", buf.getvalue()


def server_container_name(user: str, server: str) -> str:
    """A notebook server's container: ``gpupool-nb-<user>[---<server>]``. Parts never
    contain '---' nor start or end with '-', so the name splits back one way only; the
    'nb-' prefix keeps it apart from trainings' ``gpupool-train-<id>-<n>``."""
    base = f"gpupool-nb-{safe_name(user)}"
    return f"{base}---{safe_name(server)}" if server else base


def home_volume(user: str) -> str:
    return f"gpupool-home-{safe_name(user)}"


def legacy_home_volume(user: str) -> str:
    """The name the rule before 2026-12 gave ``user``'s home (adopted when its owner label
    is the user; see owners.py)."""
    return f"gpupool-home-{legacy_safe_name(user)}"


def hami_environment(spec: Spec, gpus: tuple[GpuShare, ...]) -> dict[str, str]:
    """HAMi-core variables for a sliced spec (empty for whole cards and CPU specs)."""
    if not spec.slice:
        return {}
    env = {
        "LD_PRELOAD": VGPU_LIB,
        "CUDA_DEVICE_MEMORY_SHARED_CACHE": f"{VGPU_DIR}/cache/vgpu.cache",
    }
    for i, g in enumerate(gpus):
        env[f"CUDA_DEVICE_MEMORY_LIMIT_{i}"] = f"{g.memory_mib}m"
        if spec.gpu_sm_percent:
            env[f"CUDA_DEVICE_SM_LIMIT_{i}"] = str(g.sm_percent)
    return env


def build_container(
    *,
    user: str,
    server: str,
    spec: Spec,
    image: Image,
    node: Node,
    reservation_id: str,
    gpus: tuple[GpuShare, ...],
    hub_env: dict[str, str],
    port: int,  # the reservation's port on the node (host network: the server listens there)
    command: list[str],
    cache_root: str | None = None,
    pool_url: str = "",  # the pool API as the server reaches it (GPUPOOL_API_URL)
    datasets: tuple[Dataset, ...] = (),  # the catalog's, mounted at /datasets/<name>
    kind: str = "notebook",  # notebook | training (the label the reconciler and pages read)
    name: str | None = None,  # default: server_container_name(user, server)
    home: str
    | None = None,  # the home volume found for the user (owners.py); default: home_volume(user)
    extra_labels: dict[str, str] | None = None,  # io.gpupool.* labels of the caller's own
    read_only_datasets: bool = False,  # mount every dataset read-only whatever the catalog says
) -> ContainerPlan:
    """The container for one server or training: pure, deterministic, and the only place
    that decides it."""
    bad = sorted(k for k in hub_env if PROTECTED_ENV.match(k))
    if bad:
        raise UnsafeEnvironment(
            f"the spawner environment sets {', '.join(bad)}; these come only from the spec"
        )
    if len(gpus) != spec.gpus:
        raise ValueError(
            f"spec {spec.slug} needs {spec.gpus} GPUs, the reservation holds {len(gpus)}"
        )
    name = name or server_container_name(user, server)
    models = {g.uuid: g.model for g in node.gpus}
    env = dict(hub_env)
    env.update(
        {
            "GPUPOOL_RESERVATION": reservation_id,
            "GPUPOOL_SPEC": spec.slug,
            "GPUPOOL_NODE": node.name,
            # with the model the catalog declares (the kernels' banners name it; NVML,
            # where the image can reach it, has the last word)
            "GPUPOOL_GPUS": json.dumps(
                [{**g.to_json(), "model": models.get(g.uuid, "")} for g in gpus]
            ),
            "HOME": HOME,
        }
    )
    if pool_url:
        env["GPUPOOL_API_URL"] = pool_url
    env.update(hami_environment(spec, gpus))

    vgpu_host = posixpath.dirname(node.hami_core)
    binds: dict[str, dict[str, str]] = {home or home_volume(user): {"bind": HOME, "mode": "rw"}}
    if spec.slice:
        cache = f"{cache_root or vgpu_host}/containers/{reservation_id}"
        binds.update(
            {
                node.hami_core: {"bind": VGPU_LIB, "mode": "ro"},
                f"{vgpu_host}/ld.so.preload": {"bind": "/etc/ld.so.preload", "mode": "ro"},
                cache: {"bind": f"{VGPU_DIR}/cache", "mode": "rw"},
                "/tmp/vgpulock": {"bind": "/tmp/vgpulock", "mode": "rw"},
            }
        )
    for d in datasets:
        # the catalog names the host path (checked: absolute, no '..'); users only pick
        # among these by name, in the container
        ro = d.read_only or read_only_datasets
        binds[d.path] = {"bind": f"{DATASETS_ROOT}/{d.name}", "mode": "ro" if ro else "rw"}
    if datasets:
        env["GPUPOOL_DATASETS"] = DATASETS_ROOT
    uuids = [g.uuid for g in gpus]
    device_requests: list[dict[str, Any]] = []
    if uuids and node.gpu_runtime == "nvidia":
        device_requests = [
            {
                "Driver": "nvidia",
                "DeviceIDs": uuids,
                "Capabilities": [["gpu", "compute", "utility"]],
            }
        ]
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(uuids)
    elif uuids and node.gpu_runtime == "cdi":
        device_requests = [{"Driver": "cdi", "DeviceIDs": [f"nvidia.com/gpu={u}" for u in uuids]}]
    elif not uuids:
        env["NVIDIA_VISIBLE_DEVICES"] = "void"  # a CUDA base image must not grab every GPU
    else:  # no GPU runtime (a demo node): its declared GPUs are simulated, and say so
        env["GPUPOOL_NVML_MODULE"] = SIMULATED_NVML

    host_config: dict[str, Any] = {
        "binds": binds,
        # the limits; the guarantees as the engine knows them: CPU weight under contention
        # (1024 a core) and the memory it reclaims down to first when the node runs short
        "nano_cpus": spec.cpu_millicores * 1_000_000,
        "cpu_shares": max(2, spec.cpu_reserved * 1024 // 1000),
        "mem_limit": f"{spec.memory_mib}m",
        "memswap_limit": f"{spec.memory_mib}m",
        "mem_reservation": f"{spec.memory_reserved}m",
        "pids_limit": PIDS_LIMIT,
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "device_requests": device_requests,
        "restart_policy": {"Name": "no"},
    }
    if spec.disk_mib and node.disk_quota:
        host_config["storage_opt"] = {"size": f"{spec.disk_mib}M"}
    ports: list[int] = []
    if node.network == "host":
        host_config["network_mode"] = "host"
    else:
        # gpupool's own bridge network, containers isolated from each other (networks.py);
        # the server listens on BRIDGE_PORT inside; the node publishes it on the reserved port
        host_config["network_mode"] = USER_NETWORK
        host_config["port_bindings"] = {BRIDGE_PORT: (node.address, port)}
        ports = [BRIDGE_PORT]

    labels = {
        f"{LABEL}.owner": user,
        f"{LABEL}.server": server,
        f"{LABEL}.reservation": reservation_id,
        f"{LABEL}.kind": kind,
        f"{LABEL}.spec": spec.slug,
        f"{LABEL}.node": node.name,
    }
    for key, value in (extra_labels or {}).items():
        if not key.startswith(f"{LABEL}.") or key in labels:
            raise ValueError(f"extra label {key!r}: must be a new {LABEL}.* label")
        labels[key] = value
    return ContainerPlan(
        name=name,
        image=image.reference,
        environment=env,
        labels=labels,
        host_config=host_config,
        command=list(command),
        ports=ports,
        writable=(f"{VGPU_DIR}/cache",) if spec.slice else (),
    )
