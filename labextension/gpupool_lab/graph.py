"""The graph document under its old name: it moved to ``gpupool.graph`` (a contract the lab,
the pool service and the runner share), and notebooks written before still say
``from gpupool.lab.graph.templates import mlp``. Each old module name is the new module
itself, so there is one copy of every class."""

from __future__ import annotations

import sys

import gpupool.graph
from gpupool.graph import compile, layers, model, schema, templates

for _module in (compile, layers, model, schema, templates):
    sys.modules[f"{__name__}.{_module.__name__.rpartition('.')[2]}"] = _module
sys.modules[__name__] = gpupool.graph
