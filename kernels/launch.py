"""The launcher of gpupool's kernels: IPython's kernel, saying which slice it runs on.

``python -m gpupool.kernels.launch -f CONNECTION_FILE`` with ``GPUPOOL_KERNEL`` set by
the kernel spec (``pytorch`` or ``cpu``). The slice is put in the kernel's banner (what
JupyterLab's console prints at start) and, once, in the output of the first cell run.
Nothing here initialises CUDA: the GPU models come from NVML, PyTorch's version from
its metadata, so the kernel holds no GPU memory until the user's code asks for some.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

from gpupool.lab.metrics import Slice


def gpu_models(uuids: list[str]) -> dict[str, str]:
    """uuid -> model, from NVML (no CUDA context); empty where NVML is not there."""
    try:
        from gpupool.nvml.binding import load_nvml

        nvml = load_nvml()
        nvml.nvmlInit()
    except Exception:  # no driver, no pynvml: the banner goes without models
        return {}
    out = {}
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            uuid, name = nvml.nvmlDeviceGetUUID(h), nvml.nvmlDeviceGetName(h)
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            if uuid in uuids:
                out[uuid] = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # a model is a nicety: say what was found
        pass
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    return out


def _gib(mib: int) -> str:
    gib = mib / 1024
    return f"{gib:.0f} GiB" if gib == int(gib) else f"{gib:.1f} GiB"


def describe(
    kind: str, env: dict[str, str] | None = None, models: dict[str, str] | None = None
) -> str:
    """What the kernel says about where it runs (one or a few lines)."""
    env = dict(os.environ if env is None else env)
    sl = Slice.from_env(env)
    where = " ".join(
        part
        for part in (
            f"spec {sl.spec}" if sl.spec else "",
            f"on node {sl.node}" if sl.node else "",
        )
        if part
    )
    head = f"gpupool · {where}" if where else "gpupool · not started by the pool (no slice)"
    if models is None:
        models = gpu_models([g.uuid for g in sl.gpus]) if sl.gpus else {}
    if kind == "cpu":
        hidden = f"{len(sl.gpus)} GPU{'s' if len(sl.gpus) != 1 else ''}" if sl.gpus else "no GPU"
        return (
            f"{head}\nCPU-only kernel: this server's GPUs ({hidden}) are hidden "
            f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '')!r}); nothing here "
            "holds GPU memory. Use the PyTorch (GPU slice) kernel for GPU work."
        )
    lines = [head]
    if not sl.gpus:
        lines.append("no GPU in this server's spec: PyTorch runs on the CPU")
    for g in sl.gpus:
        model = models.get(g.uuid) or g.model or "GPU"
        if g.whole:
            share = "the whole card"
        else:
            sm = (
                f"{g.sm_percent} % of the SMs" if g.sm_percent and g.sm_percent < 100 else "all SMs"
            )
            share = f"{_gib(g.memory_mib)} of memory, {sm}"
        lines.append(f"GPU {g.index}: {model} ({g.uuid[:12]}…): {share}")
    try:
        lines.append(f"PyTorch {importlib.metadata.version('torch')}")
    except importlib.metadata.PackageNotFoundError:
        lines.append("PyTorch is not installed in this image")
    return "\n".join(lines)


class SliceKernel(IPythonKernel):
    """IPython's kernel with the slice in its banner and in the first cell's output."""

    implementation = "gpupool"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._where = describe(os.environ.get("GPUPOOL_KERNEL", "pytorch"))
        self._said = False

    @property
    def banner(self) -> str:  # type: ignore[override]
        return f"{self.shell.banner}\n{self._where}\n"

    async def do_execute(self, code: str, silent: bool, *args: Any, **kwargs: Any) -> Any:
        if not self._said and not silent and code.strip():
            self._said = True
            sys.stdout.write(self._where + "\n\n")
            sys.stdout.flush()
        return await super().do_execute(code, silent, *args, **kwargs)


def main() -> None:
    IPKernelApp.launch_instance(kernel_class=SliceKernel)


if __name__ == "__main__":
    main()
