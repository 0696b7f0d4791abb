"""Which Python module provides NVML: pynvml, or the one a setting or GPUPOOL_NVML_MODULE
names (``gpupool.nvml.simulated`` on demo nodes, ``tests.support.fake_nvml`` in tests).

The node agent names it with ``AgentApp.nvml_module``; a lab server and its kernels take
it from the environment the spawner gave them.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

#: The environment variable that names the module (the spawner sets it for simulated GPUs).
NVML_MODULE_ENV = "GPUPOOL_NVML_MODULE"
DEFAULT_MODULE = "pynvml"


def load_nvml(name: str | None = None) -> ModuleType:
    """The module ``name``; without one, the module GPUPOOL_NVML_MODULE names, else pynvml.

    Raises ImportError when it cannot be imported; each caller says what to do about it.
    """
    if name is None:
        name = os.environ.get(NVML_MODULE_ENV) or DEFAULT_MODULE
    return importlib.import_module(name)
