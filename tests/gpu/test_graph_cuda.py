"""Graphs compiled by gpupool on a real GPU: every template, moved to CUDA, gives the CPU's
outputs and the inferred shapes; LeNet exported as code (to_code) trains under a HAMi-core
slice (2 GiB, 30 % of the SMs) and on the bare card, and learns in both."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from gpupool.graph import TEMPLATES, template
from gpupool.graph.compile import example_inputs, to_code, to_module

from .sliced import sliced_container

GIB = 1024
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def torch() -> Any:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    return torch


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_templates_on_cuda_match_the_cpu(torch: Any, name: str, figures: dict) -> None:
    g = template(name)
    inf = g.infer()
    module = to_module(g).eval()
    xs = example_inputs(g, batch=8)
    with torch.no_grad():
        cpu = module(*xs)
        gpu = module.to("cuda")(*(x.to("cuda") for x in xs))
    out = next(n.id for n in g.nodes if n.type == "Output")
    assert tuple(gpu.shape) == (8, *inf.shape(out))
    err = (gpu.float().cpu() - cpu).abs().max().item()
    figures.setdefault("graph_cuda_max_abs_diff", {})[name] = err
    assert err < 1e-3 * max(1.0, cpu.abs().max().item()), err


def test_lenet_from_code_trains_under_a_slice(
    tmp_path: Path, gpus: list[dict[str, Any]], libvgpu: Path, figures: dict
) -> None:
    code = tmp_path / "lenet.py"
    code.write_text(to_code(template("lenet")))
    box = sliced_container(tmp_path / "c", gpus, libvgpu, memory_mib=2 * GIB, sm_percent=30)
    steps = 300
    sliced = box.run("graph_train", str(code), steps)
    sliced.pop("_stderr")
    bare = box.run("graph_train", str(code), steps, hami=False)
    bare.pop("_stderr")
    figures["graph_training"] = {"sliced": sliced, "bare": bare}
    print(
        f"\nLeNet from to_code, {steps} steps of 256: {sliced['steps_per_s']:.0f} steps/s under "
        f"2 GiB / 30 % ({bare['steps_per_s']:.0f} bare); loss {sliced['first_loss']:.3f} -> "
        f"{sliced['last_loss']:.3f}, accuracy {sliced['last_accuracy']:.2f}; device total "
        f"{sliced['total_mib']} MiB, peak reserved {sliced['max_reserved_mib']} MiB"
    )
    assert sliced["params"] == 61706 and sliced["class"] == "Lenet"
    assert sliced["total_mib"] == 2 * GIB
    assert sliced["last_loss"] < 0.5 * sliced["first_loss"]
    assert sliced["last_accuracy"] > 0.9
