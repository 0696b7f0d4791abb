"""The runner's training throughput against a hand-written PyTorch loop, in the same run:
the same network (an MLP, 784-256-10, the runner's from a graph, the loop's from
``nn.Sequential``), the same data on the same device, the same batches, optimizer and
seed. Samples per second of the training epochs (evaluation left out), runner and loop
taking turns so that both see the same machine.

    .venv/bin/python tests/bench/bench_training.py [--device cpu|cuda] [--samples 20000]
        [--epochs 3] [--batch-size 256] [--rounds 3]

Prints a table, then ``--- json ---`` and one JSON object. The runner's overhead is what
it does beyond the loop: a metric line every twentieth of an epoch (a device sync, JSON to
stdout and to metrics.jsonl), and a checkpoint at every epoch's end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from gpupool.graph.templates import mlp  # noqa: E402
from gpupool.job import hyperparameters, job_document  # noqa: E402
from tests.support.data import teacher_task  # noqa: E402


def run_runner(data: Path, out: Path, hyper: dict[str, Any]) -> list[float]:
    from gpupool.lab.train.runner import train

    job = job_document(
        training_id="t-000000000bench",
        name="bench",
        graph=mlp(inputs=784, hidden=256, classes=10).to_json(),
        command=None,
        dataset={"name": "bench", "path": str(data), "format": "numpy"},
        hyper=hyperparameters(hyper),
        processes=1,
        attempt=1,
    )
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        train(job, out)
    epochs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [e["samples_per_s"] for e in epochs if e["kind"] == "epoch"]


def run_loop(data: Path, hyper: dict[str, Any], device: str) -> list[float]:
    """The loop a person writes by hand for the same job."""
    import torch
    from torch import nn

    torch.manual_seed(hyper["seed"])
    with np.load(data / "train.npz") as z:
        x, y = z["x"], z["y"]
    mean, std = float(x.mean()), float(x.std())
    xt = torch.from_numpy((x - mean) / std).to(device)
    yt = torch.from_numpy(y).to(device)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10))
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=hyper["learning_rate"])
    loss_fn = nn.CrossEntropyLoss()
    batch, n = hyper["batch_size"], len(xt)
    steps = n // batch
    rates = []
    for epoch in range(1, hyper["epochs"] + 1):
        model.train()
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(hyper["seed"] * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for s in range(steps):
            idx = perm[s * batch : (s + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.detach()
        float(total)  # the epoch's loss, read once (a sync, as the runner's last read)
        rates.append(steps * batch / (time.perf_counter() - t0))
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if there is one)")
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the runner picks the GPU when it sees one
    hyper = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 1e-3, "seed": 0}
    runner: list[float] = []
    loop: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gpupool-bench-train-") as tmp:
        data = teacher_task(Path(tmp), args.samples)
        for r in range(args.rounds):
            out = Path(tmp) / f"out{r}"
            out.mkdir()
            # the first epoch warms caches and allocators: the later ones are compared
            runner += run_runner(data, out, hyper)[1:]
            loop += run_loop(data, hyper, device)[1:]
    rm, lm = statistics.median(runner), statistics.median(loop)
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {name}; MLP 784-256-10, {args.samples} samples, batch {args.batch_size}")
    print(f"{'':<22}{'samples/s (median)':>20}{'epochs':>8}")
    print(f"{'hand-written loop':<22}{lm:>20,.0f}{len(loop):>8}")
    print(f"{'gpupool-train runner':<22}{rm:>20,.0f}{len(runner):>8}")
    print(f"runner / loop: {rm / lm:.3f}")
    print("--- json ---")
    print(
        json.dumps(
            {
                "device": name,
                "samples": args.samples,
                "batch_size": args.batch_size,
                "runner_samples_per_s": round(rm, 1),
                "loop_samples_per_s": round(lm, 1),
                "ratio": round(rm / lm, 4),
                "runner_epochs": [round(v, 1) for v in runner],
                "loop_epochs": [round(v, 1) for v in loop],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
