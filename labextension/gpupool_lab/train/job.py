"""The training job under its old name: it moved to ``gpupool.job`` (a contract the lab,
the pool service and the runner share); this name is that module itself."""

from __future__ import annotations

import sys

import gpupool.job

sys.modules[__name__] = gpupool.job
