"""The training runner (gpupool-train) on a real GPU: it picks CUDA, trains an MLP to well
above chance, checkpoints, and runs inside a HAMi-core memory slice (4 GiB, no SM limit)
about as fast as on the bare card. The process gets exactly the environment the
dispatcher's container would (tests/gpu/sliced.py), plus PYTHONPATH for gpupool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpupool.graph.templates import mlp
from gpupool.job import hyperparameters, job_document
from tests.support.data import teacher_task

from .sliced import sliced_container

pytestmark = pytest.mark.gpu
GIB = 1024


def run_runner(box: Any, data: Path, out: Path, hami: bool) -> list[dict[str, Any]]:
    job = job_document(
        training_id="t-0000000000cd",
        name="cuda",
        graph=mlp(inputs=784, hidden=512, classes=10).to_json(),
        command=None,
        dataset={"name": "synthetic", "path": str(data), "format": "numpy"},
        hyper=hyperparameters({"epochs": 4, "batch_size": 256, "learning_rate": 1e-3}),
        processes=1,
        attempt=1,
    )
    out.mkdir(parents=True)
    (out / "job.json").write_text(json.dumps(job))
    env = box.process_env(hami, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpupool.lab.train.runner",
            "--job",
            str(out / "job.json"),
            "--output",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=box.root,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_runner_trains_on_cuda_inside_a_memory_slice(
    tmp_path: Path, gpus: list[dict[str, Any]], libvgpu: Path, figures: dict
) -> None:
    box = sliced_container(tmp_path / "c", gpus, libvgpu, memory_mib=4 * GIB, sm_percent=None)
    data = teacher_task(tmp_path / "data")
    sliced = run_runner(box, data, tmp_path / "sliced", hami=True)
    bare = run_runner(box, data, tmp_path / "bare", hami=False)
    start = next(r for r in sliced if r["kind"] == "start")
    assert start["device"] == "cuda"
    ep_s = [r for r in sliced if r["kind"] == "epoch"]
    ep_b = [r for r in bare if r["kind"] == "epoch"]
    assert ep_s[-1]["test_accuracy"] > 0.5  # chance is 0.1
    assert (tmp_path / "sliced" / "checkpoints" / "epoch-0004.pt").is_file()
    rate_s = float(np.median([e["samples_per_s"] for e in ep_s[1:]]))
    rate_b = float(np.median([e["samples_per_s"] for e in ep_b[1:]]))
    figures["training_runner_cuda"] = {
        "sliced_samples_per_s": round(rate_s),
        "bare_samples_per_s": round(rate_b),
        "ratio": round(rate_s / rate_b, 3),
        "test_accuracy": ep_s[-1]["test_accuracy"],
    }
    print(
        f"\nrunner on CUDA, MLP 784-512-10, batch 256: {rate_s:,.0f} samples/s in a 4 GiB "
        f"slice, {rate_b:,.0f} bare ({rate_s / rate_b:.3f}); test accuracy "
        f"{ep_s[-1]['test_accuracy']:.3f}"
    )
    assert rate_s > 0.8 * rate_b
