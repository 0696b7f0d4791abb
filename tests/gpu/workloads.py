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


def matmul(seconds: float, n: int, drain: int) -> dict:
    """bf16 n x n x n products for `seconds`: TFLOP/s per half-second window.

    First `drain` in-place adds over 2**28 elements: kernels of some 10**5 blocks each,
    as a real program's elementwise kernels are. HAMi-core's SM limiter is a bucket of
    blocks (SMs x threads per SM x 32 to start with) that every launch draws its grid
    size from; cuBLAS's persistent GEMM kernels draw only about one block per SM, so a
    loop of nothing but products would run for a minute on the initial bucket alone.
    """
    x = torch.zeros(1 << 28, device="cuda", dtype=torch.bfloat16)
    start = time.perf_counter()
    for _ in range(drain):
        x.add_(1)
    torch.cuda.synchronize()
    drained_s = time.perf_counter() - start
    del x
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    flop = 2 * n**3
    windows = []
    end = time.perf_counter() + seconds
    while True:
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < 0.5:
            for _ in range(8):
                a @ b
            torch.cuda.synchronize()
            k += 8
        windows.append(k * flop / (time.perf_counter() - start) / 1e12)
        if time.perf_counter() >= end:
            break
    settled = windows[len(windows) // 2 :]  # HAMi's limiter needs a moment to settle
    return {
        "n": n,
        "drain_launches": drain,
        "drain_s": drained_s,
        "windows_tflops": [round(w, 1) for w in windows],
        "tflops": sum(settled) / len(settled),
    }


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
        out = matmul(float(args[0]), int(args[1]), int(args[2]))
    elif kind == "train":
        out = train(int(args[0]))
    else:
        raise SystemExit(f"unknown workload {kind!r}")
    report(out)


if __name__ == "__main__":
    main(sys.argv[1:])
