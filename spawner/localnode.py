"""The quickstart's catalog: the shipped catalog with this machine's engine as its node.

GPUs come from NVML when the machine has any (and the nvidia runtime is used); else the
shipped demo node's declared GPUs are kept and the node runs with no GPU runtime, its
containers getting every variable and mount of a sliced spec but no device (the spec
cards say "simulated").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml


def nvml_gpus() -> tuple[list[dict[str, Any]], str]:
    """(GPUs, why not) from NVML; an empty list and the reason when there are none."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as e:
        return [], f"NVML did not start: {e}"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total // (1024 * 1024)
            gpus.append(
                {
                    "index": i,
                    "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                    "model": name.decode() if isinstance(name, bytes) else name,
                    "memory": f"{mem}MiB",
                }
            )
        return gpus, "" if gpus else "NVML sees no GPU"
    finally:
        pynvml.nvmlShutdown()


def _mem_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def write_local_catalog(
    src: Path,
    out: Path,
    *,
    engine: str,
    hami_core: str,
    real_hami: bool,
    datasets_dir: Path | None = None,
    network: str = "bridge",
    agent_url: str | None = None,
    agent_token_file: str | None = None,
) -> str:
    """Copy ``src`` to ``out`` with nodes.yaml replaced by this machine; returns a summary.
    With ``datasets_dir``, the catalog's ``digits`` dataset is scikit-learn's bundled
    digits (no download), exported there, and datasets.yaml points at it. With
    ``agent_url``, the node's agent (the quickstart runs one with simulated GPUs on a
    machine without any) and the file of the token it expects."""
    out.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.yaml"):
        if f.name != "nodes.yaml":
            shutil.copy2(f, out / f.name)
    demo = (yaml.safe_load((src / "nodes.yaml").read_text()) or {}).get("nodes", [{}])[0]
    gpus, why = nvml_gpus()
    node: dict[str, Any] = {
        "name": "local",
        "engine": engine,
        "address": "127.0.0.1",
        "network": network,
        "cpu": os.cpu_count() or 1,
        "memory": f"{_mem_mib()}MiB",
        # notebooks idle most of the time: their CPU guarantees may add up to twice the
        # cores (each container's limit stays within them)
        "overcommit": {"cpu": 2},
        "hami_core": hami_core,
        "labels": {"zone": "local"},
    }
    if agent_url:
        node["agent"] = {"url": agent_url, "token_file": agent_token_file}
    if gpus and real_hami:
        node.update(gpu_runtime="nvidia", gpus=gpus)
        summary = f"node 'local' with {len(gpus)} GPU(s) from NVML, HAMi-core at {hami_core}"
    else:
        node.update(gpu_runtime="none", gpus=demo.get("gpus", []))
        reason = why or "HAMi-core's libvgpu.so is not installed"
        summary = (
            f"node 'local' with {len(node['gpus'])} simulated GPU(s) ({reason}); no GPU runtime"
        )
    (out / "nodes.yaml").write_text(
        "# Made by deploy/quickstart.sh for this machine; edit hub_config/ instead.\n"
        + yaml.safe_dump({"nodes": [node]}, sort_keys=False)
    )
    if datasets_dir is not None and (out / "datasets.yaml").exists():
        doc = yaml.safe_load((out / "datasets.yaml").read_text()) or {}
        for d in doc.get("datasets", []):
            if d.get("name") == "digits":
                target = datasets_dir / "digits"
                if not (target / "train.npz").exists():
                    export_digits(target)
                for p in [datasets_dir, target, *target.iterdir()]:
                    p.chmod(0o755 if p.is_dir() else 0o644)  # read by the containers' user
                d["path"] = str(target.resolve())
                summary += f"; dataset digits exported to {target}"
        (out / "datasets.yaml").write_text(
            "# Made by deploy/quickstart.sh; edit hub_config/ instead.\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )
    return summary


def export_digits(folder: str | Path) -> Path:
    """scikit-learn's bundled digits (no download) as ``train.npz`` + ``test.npz`` (a fixed
    80/20 split, 8x8 images of 0..16 as float32, labels 0..9)."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None]  # (N, 1, 8, 8): reshaped to any [64] or [1,8,8]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 5
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "test.npz", x=x[order[:n_test]], y=y[order[:n_test]])
    np.savez(out / "train.npz", x=x[order[n_test:]], y=y[order[n_test:]])
    (out / "README.txt").write_text(
        "scikit-learn's handwritten digits: 1,797 8x8 images (values 0..16), 10 classes.\n"
        "train.npz / test.npz hold x (N, 1, 8, 8) float32 and y (N,) int64.\n"
    )
    return out
