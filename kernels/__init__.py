"""gpupool's Jupyter kernels: their specs (``specs/``), their launcher (``launch``) and
their installation (``gpupool kernels install|list``)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

SPECS = Path(__file__).parent / "specs"

__all__ = ["KernelSpec", "available", "install"]


@dataclass(frozen=True)
class KernelSpec:
    name: str
    display_name: str
    needs: tuple[str, ...]  # modules the kernel is useless without
    source: Path

    @property
    def missing(self) -> list[str]:
        return [m for m in self.needs if importlib.util.find_spec(m) is None]


def available() -> list[KernelSpec]:
    out = []
    for d in sorted(SPECS.iterdir()):
        spec = json.loads((d / "kernel.json").read_text())
        needs = tuple(spec.get("metadata", {}).get("gpupool", {}).get("needs", []))
        out.append(KernelSpec(d.name, spec["display_name"], needs, d))
    return out


def install(prefix: Path, *, python: str = sys.executable) -> list[tuple[KernelSpec, str]]:
    """Write each kernel whose needs are met into ``prefix/share/jupyter/kernels``, with
    ``python`` as its interpreter; returns (kernel, what was done) for each."""
    done = []
    dest_root = prefix / "share" / "jupyter" / "kernels"
    for k in available():
        if k.missing:
            done.append((k, f"skipped: needs {', '.join(k.missing)}"))
            continue
        dest = dest_root / k.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(k.source, dest)
        spec = json.loads((dest / "kernel.json").read_text())
        spec["argv"] = [python if a == "python" else a for a in spec["argv"]]
        (dest / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        done.append((k, f"installed in {dest}"))
    return done
