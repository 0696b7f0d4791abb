"""A sliced spec's container, decided by gpupool itself and run as a host process.

The GPU machine has no Docker, so the container is played by a process: the spec goes
through the real scheduler (``place``) and the real builder (``build_container``), the
plan's binds become folders under a tmp root (a bind source is created as Docker creates
it), and every environment value that names a path inside the container is mapped
through those binds to the host. Nothing else is added but PATH (and the loader path the
GPU driver may need), so a variable the builder forgets or formats wrongly shows up here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpupool.catalog.models import Gpu, Image, Node, Spec
from gpupool.catalog.units import parse_size_mib
from gpupool.container import VGPU_LIB, ContainerPlan, build_container, open_dir_tar
from gpupool.pool.scheduler import place
from gpupool.pool.state import ClusterState, Placement, Request

WORKLOADS = Path(__file__).with_name("workloads.py")
MARK = "GPUPOOL-RESULT "
# the only variables taken from the test's own environment (a container's image and the
# NVIDIA runtime provide their equivalents)
PASS_THROUGH = ("PATH", "LD_LIBRARY_PATH", "LANG")
HAMI_KEYS = ("LD_PRELOAD", "CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_LIMIT")


def local_node(gpus: list[dict[str, Any]], hami_core: str) -> Node:
    """This machine as a gpupool node, its GPUs as NVML reports them."""
    return Node(
        name="gpu-test",
        engine="unix:///var/run/docker.sock",
        cpu_millicores=(os.cpu_count() or 1) * 1000,
        memory_mib=64 * 1024,
        gpu_runtime="nvidia",
        hami_core=hami_core,
        gpus=tuple(
            Gpu(g["index"], g["uuid"], g["model"], parse_size_mib(g["memory"])) for g in gpus
        ),
    )


def slice_spec(memory_mib: int, sm_percent: int | None) -> Spec:
    return Spec(
        slug=f"gpu-test-{memory_mib}m-{sm_percent or 'all'}",
        display_name="GPU test slice",
        gpus=1,
        gpu_memory_mib=memory_mib,
        gpu_sm_percent=sm_percent,
        cpu_millicores=1000,
        memory_mib=4096,
    )


@dataclass
class Container:
    root: Path
    spec: Spec
    plan: ContainerPlan
    env: dict[str, str]  # the plan's environment, container paths mapped to host paths
    mounts: list[tuple[str, Path]]  # (path in the container, host path)
    workloads: Path  # workloads.py, copied in
    placement: Placement  # the slice the scheduler gave it

    def process_env(self, hami: bool = True, **extra: str) -> dict[str, str]:
        """The environment of a process in this container; hami=False drops the preload
        and the limits (the same process on the bare card, for a control)."""
        base = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        env = {
            k: v for k, v in self.env.items() if hami or not any(k.startswith(p) for p in HAMI_KEYS)
        }
        return {**base, **env, **extra}

    def run(
        self,
        *args: str | int | float,
        hami: bool = True,
        as_user: bool = False,
        timeout: float = 150,
        **extra: str,
    ) -> dict[str, Any]:
        """Run a workload to its end; its result, with its stderr kept beside it."""
        cmd = [sys.executable, str(self.workloads), *map(str, args)]
        ids = {}
        if as_user:  # the plan's "uid:gid", as Docker runs the container's processes
            uid, gid = (int(x) for x in self.plan.user.split(":"))
            ids = {"user": uid, "group": gid, "extra_groups": []}
        p = subprocess.run(
            cmd,
            env=self.process_env(hami, **extra),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            **ids,  # type: ignore[call-overload]
        )
        log = self.root / f"{args[0]}-{'hami' if hami else 'bare'}.stderr"
        log.write_text(p.stderr)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
        if p.returncode != 0 or not lines:
            raise AssertionError(
                f"workload {' '.join(map(str, args))} (hami={hami}, as_user={as_user}) "
                f"exited {p.returncode}:\n"
                f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-4000:]}"
            )
        out: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
        out["_stderr"] = p.stderr
        return out

    def start(self, *args: str | int, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(self.workloads), *map(str, args)],
            env=self.process_env(**extra),
            cwd=self.root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def to_host(value: str, mounts: list[tuple[str, Path]]) -> str:
    for inside, host in mounts:
        if value == inside or value.startswith(inside + "/"):
            return str(host) + value[len(inside) :]
    return value


def sliced_container(
    root: Path,
    gpus: list[dict[str, Any]],
    libvgpu: Path,
    *,
    memory_mib: int,
    sm_percent: int | None,
    reservation_id: str = "r-gpu-test",
) -> Container:
    """Place a one-GPU slice on this machine and lay out its container under ``root``."""
    vgpu = root / "node" / "vgpu"  # the node's HAMi-core folder
    vgpu.mkdir(parents=True)
    workloads = root / "workloads.py"
    shutil.copyfile(WORKLOADS, workloads)
    (vgpu / "libvgpu.so").symlink_to(libvgpu)
    (vgpu / "ld.so.preload").write_text(VGPU_LIB + "\n")
    node = local_node(gpus, str(vgpu / "libvgpu.so"))
    spec = slice_spec(memory_mib, sm_percent)
    placement = place(ClusterState([node]), Request.from_spec(spec))
    assert isinstance(placement, Placement), placement
    plan = build_container(
        user="gpu-test",
        server="",
        spec=spec,
        image=Image(name="lab", reference="gpupool/singleuser:latest"),
        node=node,
        reservation_id=reservation_id,
        gpus=placement.gpus,
        hub_env={},
        port=node.ports[0],
        command=["python3"],
    )
    mounts: list[tuple[str, Path]] = []
    for source, bind in plan.host_config["binds"].items():
        # a named volume (the home) becomes a folder; a missing bind source is created,
        # owned by root with mode 0755, as Docker creates it
        host = Path(source) if source.startswith("/") else root / "volumes" / source
        if not host.exists():
            host.mkdir(parents=True)
            host.chmod(0o755)
        mounts.append((bind["bind"], host))
    mounts.sort(key=lambda m: len(m[0]), reverse=True)
    # what GpuPoolSpawner does between create and start: docker put_archive of
    # open_dir_tar(path) into each plan.writable folder, which sets that folder's mode
    for path in plan.writable:
        _, tar = open_dir_tar(path)
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            (member,) = t.getmembers()
        host = next(h for c, h in mounts if c == path)
        host.chmod(member.mode)
    env = {k: to_host(v, mounts) for k, v in plan.environment.items()}
    return Container(
        root=root,
        spec=spec,
        plan=plan,
        env=env,
        mounts=mounts,
        workloads=workloads,
        placement=placement,
    )


def release(holder: subprocess.Popen[str]) -> None:
    """End a ``hold`` workload: close its stdin, and kill it if it does not end."""
    try:
        holder.communicate(input="", timeout=60)
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.communicate()
