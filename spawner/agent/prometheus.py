"""The agent's ``/metrics``: Prometheus text exposition 0.0.4 with DCGM exporter names.

Dashboards and alerts written for NVIDIA's dcgm-exporter work unchanged: the metric
names, types, units and the labels ``gpu``, ``UUID``, ``device``, ``modelName``,
``Hostname`` and ``DCGM_FI_DRIVER_VERSION`` are dcgm-exporter's. gpupool adds the GPU
memory of each process with the container's owner and reservation, and two families
about the agent itself. A reading that is missing (not supported on this GPU) is left
out, never written as NaN.
"""

from __future__ import annotations

from gpupool.exposition import Family, render
from gpupool.nvml.readings import GpuInfo, Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name, type, help) in dcgm-exporter's default-counters.csv words
DCGM = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
    ),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
)


def gpu_labels(info: GpuInfo | None, index: int, uuid: str, sample: Sample) -> dict[str, str]:
    """dcgm-exporter's labels of one GPU, in its order."""
    return {
        "gpu": str(index),
        "UUID": uuid,
        "device": f"nvidia{index}",
        "modelName": info.model if info else "",
        "Hostname": sample.hostname,
        "DCGM_FI_DRIVER_VERSION": sample.nvml.driver_version or "",
    }


def families(sample: Sample, last_xid: dict[str, int] | None = None) -> list[Family]:
    """The metric families of one sample; ``last_xid`` maps a GPU's UUID to its last Xid."""
    fam = {name: Family(name, kind, text) for name, kind, text in DCGM}
    procs = Family(
        "gpupool_process_fb_used",
        "gauge",
        "GPU memory used by one process (in MiB), with the gpupool container it runs in.",
    )
    by_uuid = {g.uuid: g for g in sample.inventory}
    last_xid = last_xid or {}
    for g in sample.gpus:
        labels = gpu_labels(by_uuid.get(g.uuid), g.index, g.uuid, sample)
        fam["DCGM_FI_DEV_GPU_UTIL"].add(g.utilization_gpu, **labels)
        fam["DCGM_FI_DEV_MEM_COPY_UTIL"].add(g.utilization_memory, **labels)
        fam["DCGM_FI_DEV_FB_USED"].add(g.memory_used_mib, **labels)
        fam["DCGM_FI_DEV_FB_FREE"].add(g.memory_free_mib, **labels)
        fam["DCGM_FI_DEV_GPU_TEMP"].add(g.temperature_c, **labels)
        fam["DCGM_FI_DEV_POWER_USAGE"].add(g.power_w, **labels)
        fam["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].add(g.energy_mj, **labels)
        fam["DCGM_FI_DEV_XID_ERRORS"].add(last_xid.get(g.uuid, 0), **labels)
        for p in g.processes:
            procs.add(
                p.memory_mib,
                **labels,
                pid=str(p.pid),
                container=p.container_id or "",
                owner=p.owner or "",
                reservation=p.reservation or "",
                kind=p.kind or "",
            )
    up = Family("gpupool_agent_nvml_up", "gauge", "1 if the agent can read NVML, else 0.")
    up.add(1 if sample.nvml.ok else 0, Hostname=sample.hostname)
    took = Family(
        "gpupool_agent_sample_seconds", "gauge", "How long the agent's last sample took (in s)."
    )
    took.add(sample.duration, Hostname=sample.hostname)
    return [*fam.values(), procs, up, took]


def render_metrics(sample: Sample, last_xid: dict[str, int] | None = None) -> str:
    return render(families(sample, last_xid))
