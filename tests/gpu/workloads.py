"""What runs inside a sliced container in the GPU tests: ``python3 workloads.py KIND ARGS``.

Started with the environment gpupool's container builder gives a sliced spec (HAMi-core
preloaded). Only torch and the standard library are imported. The result is the last
stdout line, ``GPUPOOL-RESULT <json>``; HAMi-core's own messages go to stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

MiB = 1 << 20
MARK = "GPUPOOL-RESULT "


def report(out: dict) -> None:
    print(MARK + json.dumps(out), flush=True)


def alloc(mib: int) -> torch.Tensor:
    t = torch.empty(mib * MiB, dtype=torch.uint8, device="cuda")
    t.fill_(1)  # touch it: the allocation is real, not only reserved
    torch.cuda.synchronize()
    return t


def try_alloc(mib: int) -> tuple[torch.Tensor | None, str]:
    """(tensor, "") or (None, "<error type>: <first line of the message>")."""
    try:
        return alloc(mib), ""
    except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
        torch.cuda.empty_cache()
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"


def smi_memory() -> dict:
    """nvidia-smi's view from inside (it inherits the preload): total and used MiB."""
    try:
        p = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=memory.total,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": repr(e)}
    lines = [ln for ln in p.stdout.splitlines() if ln.strip() and "," in ln]
    if p.returncode != 0 or not lines:
        return {"error": f"rc {p.returncode}: {p.stdout[-300:]} {p.stderr[-300:]}"}
    total, used = (int(float(x)) for x in lines[0].split(","))
    return {"total_mib": total, "used_mib": used}


def memory(limit_mib: int) -> dict:
    """Allocate below the limit, then past it; what the device reports as total."""
    free, total = torch.cuda.mem_get_info()
    out: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "total_mib": total // MiB,
        "free_mib": free // MiB,
    }
    below = limit_mib * 3 // 4
    a, out["below_error"] = try_alloc(below)
    out["below_mib"] = below
    out["smi"] = smi_memory()
    over = limit_mib - below + 512  # with `a` held, this crosses the limit by 512 MiB
    b, out["over_error"] = try_alloc(over)
    out["over_mib"] = over
    del a, b
    torch.cuda.empty_cache()
    c, out["single_over_error"] = try_alloc(limit_mib + 1024)
    out["single_over_mib"] = limit_mib + 1024
    del c
    torch.cuda.empty_cache()
    d, out["again_error"] = try_alloc(below)  # freed memory goes back to the account
    del d
    return out


# An elementwise kernel that is compute-bound: 256 dependent multiply-adds per element
BURN = """
template <typename T> T burn(T x) {
    T a = x;
    for (int i = 0; i < 256; ++i) {
        a = a * T(0.999f) + T(0.001f);
    }
    return a;
}
"""


def timed(step, flop: float, seconds: float) -> dict:
    """Run `step` for `seconds`: TFLOP/s per half-second window, and over the second half
    (HAMi-core's limiter needs a moment to settle)."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    windows = []
    end = time.perf_counter() + seconds
    while True:
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < 0.5:
            for _ in range(8):
                step()
            torch.cuda.synchronize()
            k += 8
        windows.append(k * flop / (time.perf_counter() - start) / 1e12)
        if time.perf_counter() >= end:
            break
    settled = windows[len(windows) // 2 :]
    return {
        "windows_tflops": [round(w, 1) for w in windows],
        "tflops": sum(settled) / len(settled),
    }


def burn(seconds: float) -> dict:
    """The multiply-add kernel over 2**26 floats: some 10**5 blocks a launch.

    HAMi-core's SM limiter is a bucket of blocks that every launch draws its grid size
    from and a watcher refills by the measured utilization; kernels with large grids
    feel it, which is what this one is for."""
    fn = torch.cuda.jiterator._create_jit_fn(BURN)
    x = torch.rand(1 << 26, device="cuda")
    out = timed(lambda: fn(x), 2 * 256 * x.numel(), seconds)
    out["kernel"] = "jiterator multiply-add x256, 2**26 fp32"
    return out


def matmul(seconds: float, n: int) -> dict:
    """bf16 n x n x n products. cuBLAS's GEMMs on Hopper are persistent kernels of about
    one block per SM, so they draw little from HAMi-core's bucket of blocks."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    out = timed(lambda: a @ b, 2 * n**3, seconds)
    out["kernel"] = f"bf16 matmul {n}^3"
    return out


def train(steps: int) -> dict:
    """A small MLP learns a fixed random teacher network (regression, Adam)."""
    torch.manual_seed(0)
    dev = "cuda"
    teacher = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.Tanh(), torch.nn.Linear(512, 16)
    ).to(dev)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 16),
    ).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    warm = 10
    for step in range(steps):
        if step == warm:
            torch.cuda.synchronize()
            start = time.perf_counter()
        x = torch.randn(1024, 256, device=dev)
        with torch.no_grad():
            y = teacher(x)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    values = torch.stack(losses).tolist()
    _, total = torch.cuda.mem_get_info()
    return {
        "steps": steps,
        "steps_per_s": (steps - warm) / elapsed,
        "first_loss": sum(values[:10]) / 10,
        "last_loss": sum(values[-10:]) / 10,
        "total_mib": total // MiB,
        "max_reserved_mib": torch.cuda.max_memory_reserved() // MiB,
    }


def graph_train(code_file: str, steps: int) -> dict:
    """The network gpupool wrote as code (to_code) for a 1x28x28 input and 10 classes,
    trained with Adam to tell apart 10 fixed random 'digits' under noise."""
    ns: dict = {}
    exec(compile(Path(code_file).read_text(), code_file, "exec"), ns)
    (cls,) = [
        v
        for v in ns.values()
        if isinstance(v, type) and issubclass(v, torch.nn.Module) and v is not torch.nn.Module
    ]
    torch.manual_seed(0)
    dev = "cuda"
    model = cls().to(dev)
    prototypes = torch.rand(10, 1, 28, 28, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, correct = [], []
    warm = 10
    for step in range(steps):
        if step == warm:
            torch.cuda.synchronize()
            start = time.perf_counter()
        labels = torch.randint(0, 10, (256,), device=dev)
        x = prototypes[labels] + 0.3 * torch.randn(256, 1, 28, 28, device=dev)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        correct.append((logits.argmax(1) == labels).float().mean().detach())
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    values = torch.stack(losses).tolist()
    acc = torch.stack(correct).tolist()
    _, total = torch.cuda.mem_get_info()
    return {
        "class": cls.__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "steps_per_s": (steps - warm) / elapsed,
        "first_loss": sum(values[:10]) / 10,
        "last_loss": sum(values[-10:]) / 10,
        "last_accuracy": sum(acc[-10:]) / 10,
        "total_mib": total // MiB,
        "max_reserved_mib": torch.cuda.max_memory_reserved() // MiB,
    }


def hold(mib: int) -> None:
    """Allocate and report, then keep the memory until stdin closes."""
    t, err = try_alloc(mib)
    report({"held_mib": mib if t is not None else 0, "error": err})
    sys.stdin.read()
    del t


def main(argv: list[str]) -> None:
    kind, args = argv[0], argv[1:]
    if kind == "hold":
        hold(int(args[0]))
        return
    if kind == "alloc":
        t, err = try_alloc(int(args[0]))
        out = {"mib": int(args[0]), "error": err}
        del t
    elif kind == "memory":
        out = memory(int(args[0]))
    elif kind == "matmul":
        out = matmul(float(args[0]), int(args[1]))
    elif kind == "burn":
        out = burn(float(args[0]))
    elif kind == "train":
        out = train(int(args[0]))
    elif kind == "graph_train":
        out = graph_train(args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown workload {kind!r}")
    report(out)


if __name__ == "__main__":
    main(sys.argv[1:])
