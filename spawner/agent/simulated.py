"""Simulated GPUs under their old name: they moved to ``gpupool.nvml.simulated`` (the lab
reads them too), and an agent started with ``--nvml-module gpupool.agent.simulated`` or a
notebook calling ``gpupool.agent.simulated.load()`` still finds them; this name is that
module itself, so its state is one."""

from __future__ import annotations

import sys

import gpupool.nvml.simulated

sys.modules[__name__] = gpupool.nvml.simulated
