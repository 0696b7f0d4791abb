"""gpupool-train: the runner inside a trainer container.

``gpupool-train --job ~/trainings/<id>/job.json`` builds the model from the graph, loads
the dataset, trains with PyTorch, evaluates and checkpoints every epoch, and leaves the
trained model in the training's folder (``~/trainings/<id>/``): ``model.pt`` (the
weights), ``model.py`` (the network as code), ``graph.gpgraph.json``, ``load_model.py``
(the snippet that loads it), ``checkpoints/epoch-NNNN.pt`` and ``metrics.jsonl``.

Started under ``torchrun`` (several processes: the pool does this for a spec with more
than one GPU) it trains data-parallel with DistributedDataParallel: NCCL on GPUs, gloo on
CPUs; every process takes its share of each global batch, so the result matches one
process up to floating-point order. Process 0 alone writes files and metrics.

Metrics go to ``metrics.jsonl`` and, one JSON object per line after ``GPUPOOL-METRIC``,
to standard output, where the pool reads them from the engine's logs. A folder holding a
checkpoint is resumed from it (the pool puts the last one back after a node died).
A command training (``kind: command``) runs the user's command in the home folder
instead; it may print ``GPUPOOL-METRIC {...}`` lines itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpupool.job import ERROR_MARK, METRIC_MARK, TrainingError, check_graph, check_job

CHECKPOINTS = "checkpoints"


class Reporter:
    """Writes metrics (process 0 only): a line on stdout for the pool, one in metrics.jsonl."""

    def __init__(self, folder: Path, active: bool):
        self.active = active
        self.path = folder / "metrics.jsonl"

    def __call__(self, kind: str, **fields: Any) -> None:
        if not self.active:
            return
        rec = {"kind": kind, "time": round(time.time(), 3), **fields}
        line = json.dumps(rec, separators=(",", ":"))
        with self.path.open("a") as f:
            f.write(line + "\n")
        print(METRIC_MARK + line, flush=True)

    def say(self, text: str) -> None:
        if self.active:
            print(text, flush=True)


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted((folder / CHECKPOINTS).glob("epoch-*.pt"))
    return found[-1] if found else None


def _optimizer(torch: Any, params: Any, h: dict[str, Any]) -> Any:
    lr, wd = h["learning_rate"], h["weight_decay"]
    if h["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=h["momentum"], weight_decay=wd)
    if h["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def load_snippet(folder: str, cls: str, mean: float, std: float) -> str:
    return (
        "import sys, torch\n"
        f'sys.path.insert(0, "{folder}")\n'
        f"from model import {cls}\n\n"
        f"model = {cls}()\n"
        f'model.load_state_dict(torch.load("{folder}/model.pt", map_location="cpu"))\n'
        "model.eval()\n"
        f"# inputs as in training: (x - {mean:.6g}) / {std:.6g}, shaped like the graph's Input\n"
    )


def train(job: dict[str, Any], out: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    import torch.distributed as dist

    from gpupool.graph.compile import class_name, to_code, to_module

    from . import data

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    elif world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    report = Reporter(out, rank == 0)
    h = job["hyperparameters"]
    seed = h["seed"]
    torch.manual_seed(seed)

    graph = check_graph(job["graph"])
    ds = job["dataset"]
    split = data.load(ds["path"], ds["format"], test_fraction=h["test_fraction"], seed=seed)
    model = to_module(graph)
    inf = model.inference
    in_id = next(n.id for n in graph.nodes if n.type == "Input")
    out_id = next(n.id for n in graph.nodes if n.type == "Output")
    in_shape = tuple(inf.nodes[in_id].shape or ())
    out_shape = tuple(inf.nodes[out_id].shape or ())
    sample = tuple(split.x_train.shape[1:])
    if int(np.prod(sample)) != int(np.prod(in_shape)):
        raise data.DataError(
            f"the graph's Input takes samples of shape {list(in_shape)} "
            f"({int(np.prod(in_shape))} values); the dataset's have shape {list(sample)} "
            f"({int(np.prod(sample))} values): set the Input's shape to {list(sample)}"
        )
    if split.classification:
        classes = int(max(split.y_train.max(), split.y_test.max())) + 1
        if len(out_shape) != 1 or out_shape[0] < classes:
            raise data.DataError(
                f"the dataset has {classes} classes; the graph's Output has shape "
                f"{list(out_shape)}: make the last layer give {classes} values"
            )
        loss_fn: Any = torch.nn.CrossEntropyLoss()
    else:
        loss_fn = torch.nn.MSELoss()
    mean = float(split.x_train.mean())
    std = float(split.x_train.std()) or 1.0

    def tensor(x: Any) -> Any:
        t = torch.from_numpy(((x.astype(np.float32) - mean) / std).reshape(len(x), *in_shape))
        return t.to(device)

    x_train, x_test = tensor(split.x_train), tensor(split.x_test)
    y_train = torch.from_numpy(split.y_train).to(device)
    y_test = torch.from_numpy(split.y_test).to(device)
    model.to(device)
    net: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[local] if cuda else None)
    opt = _optimizer(torch, net.parameters(), h)

    epochs, batch = h["epochs"], h["batch_size"]
    start = 1
    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"]) + 1
        report("resume", epoch=int(state["epoch"]), checkpoint=f"{CHECKPOINTS}/{ckpt.name}")
        report.say(f"resumed from {ckpt.name}: epochs {start}..{epochs} to go")
    n = len(x_train)
    steps = max(1, n // batch) if n >= batch else 1
    every = max(1, steps // 20)
    report(
        "start",
        epochs=epochs,
        start_epoch=start,
        steps_per_epoch=steps,
        processes=world,
        device=str(device.type),
        parameters=int(inf.params),
        dataset=split.describe(),
    )
    report.say(
        f"training {graph.name or 'network'} ({inf.params:,} parameters) on {split.describe()}, "
        f"{world} process(es) on {device.type}"
    )
    (out / CHECKPOINTS).mkdir(exist_ok=True) if rank == 0 else None
    result: dict[str, Any] = {}
    for epoch in range(start, epochs + 1):
        net.train()
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen).to(device)
        # losses add up on the device and are read (a sync) only where a step is
        # reported: a read per step would stall the GPU's queue every step
        total = torch.zeros((), device=device)
        window = torch.zeros((), device=device)  # the sum of the steps' mean losses
        count = window_steps = 0
        tick = time.perf_counter()
        for s in range(steps):
            idx = perm[s * batch : (s + 1) * batch]
            mine = idx[rank::world] if world > 1 else idx
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x_train[mine]), y_train[mine])
            loss.backward()
            opt.step()
            window += loss.detach()
            window_steps += 1
            if (s + 1) % every == 0 or s + 1 == steps:
                if world > 1:  # every process's mean: the global batch's mean loss
                    dist.all_reduce(window)
                    window /= world
                now = time.perf_counter()
                samples = window_steps * len(idx)
                report(
                    "step",
                    epoch=epoch,
                    step=(epoch - 1) * steps + s + 1,
                    loss=round(float(window) / window_steps, 6),
                    samples_per_s=round(samples / max(now - tick, 1e-9), 1),
                )
                total += window * len(idx)
                count += samples
                window = torch.zeros((), device=device)
                window_steps = 0
                tick = now
        total = float(total)
        seconds = time.perf_counter() - t0
        if rank == 0:
            net.eval()
            with torch.no_grad():
                logits = torch.cat(
                    [model(x_test[i : i + 4096]) for i in range(0, len(x_test), 4096)]
                )
                test_loss = float(loss_fn(logits, y_test))
                acc = (
                    float((logits.argmax(dim=1) == y_test).float().mean())
                    if split.classification
                    else None
                )
            result = {
                "epoch": epoch,
                "train_loss": round(total / max(count, 1), 6),
                "test_loss": round(test_loss, 6),
                "test_accuracy": None if acc is None else round(acc, 4),
                "seconds": round(seconds, 3),
                "samples_per_s": round(count / max(seconds, 1e-9), 1),
            }
            report("epoch", **result)
            report.say(
                f"epoch {epoch}/{epochs}: train loss {result['train_loss']:.4f}, test loss "
                f"{test_loss:.4f}"
                + (f", test accuracy {acc:.3f}" if acc is not None else "")
                + f" ({seconds:.1f} s, {result['samples_per_s']:.0f} samples/s)"
            )
            path = out / CHECKPOINTS / f"epoch-{epoch:04d}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "normalize": [mean, std],
                },
                tmp,
            )
            tmp.replace(path)
            report(
                "checkpoint",
                epoch=epoch,
                file=f"{CHECKPOINTS}/{path.name}",
                bytes=path.stat().st_size,
            )
        if world > 1:
            dist.barrier()
    if rank == 0:
        if not result:  # resumed after the last epoch: nothing left to train
            result = {"epoch": epochs}
        cls = class_name(graph.name)
        torch.save(model.state_dict(), out / "model.pt")
        (out / "model.py").write_text(to_code(graph))
        (out / "graph.gpgraph.json").write_text(json.dumps(job["graph"], indent=1))
        snippet = load_snippet(str(out), cls, mean, std)
        (out / "load_model.py").write_text(snippet)
        report(
            "done",
            **{k: v for k, v in result.items() if k != "epoch"},
            epochs=epochs,
            files=["model.pt", "model.py", "graph.gpgraph.json", "load_model.py"],
            snippet=snippet,
        )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def run_command(job: dict[str, Any], out: Path) -> int:
    report = Reporter(out, True)
    report("start", command=job["command"], processes=job.get("processes", 1))
    env = {
        **os.environ,
        "GPUPOOL_TRAINING": job["id"],
        "GPUPOOL_TRAINING_OUTPUT": str(out),
        "GPUPOOL_PROCESSES": str(job.get("processes", 1)),
    }
    if job.get("dataset"):
        env["GPUPOOL_DATASET"] = job["dataset"]["path"]
    try:
        code = subprocess.call(job["command"], cwd=os.path.expanduser("~"), env=env)
    except OSError as e:
        raise TrainingError(f"command {job['command'][0]!r} could not start: {e}") from None
    if code == 0:
        report("done", exit_code=0)
    else:  # its own failure, not the node's: said, so that the pool does not retry it
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        print(ERROR_MARK + json.dumps({"message": f"{job['command'][0]} {how}"}), flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpupool-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--job", required=True, help="the job document (job.json)")
    p.add_argument("--output", help="the training's folder (default: the job's output)")
    args = p.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        job = check_job(json.loads(Path(args.job).read_text()))
        out = Path(args.output or job["output"])
        out.mkdir(parents=True, exist_ok=True)
        if job["kind"] == "command":
            return run_command(job, out)
        train(job, out)
        return 0
    except Exception as e:  # the pool shows this line as the reason the training failed
        from .data import DataError

        known = isinstance(e, TrainingError | DataError | OSError | ValueError)
        msg = str(e) if known else f"{type(e).__name__}: {e}"
        if rank == 0:
            print(ERROR_MARK + json.dumps({"message": msg[:2000]}), flush=True)
        if not known:
            raise
        return 2


if __name__ == "__main__":
    sys.exit(main())
