"""The slice watchdog on a real card (issue 18): HAMi-core switched off inside a sliced
container (``CUDA_DISABLE_CONTROL=true``, as a user may set it in their own shell) lets a
process allocate past its slice; the agent's real NVML reading shows it, and the
watchdog's judgement of that sample names it. No Docker on the GPU machine: the
process's container labels are given by the test (the agent maps PIDs to containers
through /proc and the engine in production; tests/integration/test_agent_pool.py)."""

from __future__ import annotations

import select
import time
from pathlib import Path
from typing import Any

import pytest

from gpupool.pool.watchdog import find_overuse

from .sliced import MARK, release, sliced_container

pytestmark = pytest.mark.gpu
pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (carry it in .whl/)")
GIB = 1024


def test_a_process_that_switched_hami_core_off_is_caught(
    tmp_path: Path, gpus: list[dict[str, Any]], libvgpu: Path, figures: dict
) -> None:
    from gpupool.nvml.sampler import NodeSampler

    box = sliced_container(tmp_path / "c", gpus, libvgpu, memory_mib=4 * GIB, sm_percent=None)
    rid = box.plan.labels["io.gpupool.reservation"]
    holder = box.start("hold", 6 * GIB, CUDA_DISABLE_CONTROL="true")
    agent = NodeSampler(pynvml, node="gpu-test", proc_root="/proc", labels=None)
    try:
        assert holder.stdout is not None and holder.stderr is not None
        ready, _, _ = select.select([holder.stdout], [], [], 150)
        assert ready, "the holding process did not report within 150 s"
        line = holder.stdout.readline()
        assert line.startswith(MARK) and '"error": ""' in line, (line, holder.stderr.read()[-3000:])
        t0 = time.monotonic()
        sample = agent.take_sample().to_json()
        taken = time.monotonic() - t0
        # the labels the agent would find on the container of that PID
        for g in sample["gpus"]:
            for p in g.get("processes") or ():
                if p["pid"] == holder.pid:
                    p.update(container_id="c" * 64, owner="gpu-test", reservation=rid)
        placement = box.placement
        found = find_overuse(sample, placement.node, {rid: placement}, 256)
    finally:
        release(holder)
        agent.reader.shutdown()
    figures["watchdog"] = {
        "sample_s": taken,
        "found": [(o.gpu, o.used_mib, o.limit_mib) for o in found],
    }
    print(f"\nwatchdog: one sample in {taken * 1000:.0f} ms; found {figures['watchdog']['found']}")
    (o,) = found
    assert o.gpu == placement.gpus[0].uuid, o
    assert o.limit_mib == 4 * GIB and o.used_mib >= 6 * GIB, o
