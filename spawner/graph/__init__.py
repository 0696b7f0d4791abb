"""The network-graph model: a versioned JSON document of layers and connections, checked
and shape-inferred in pure Python (no torch import), with parameter counts and a FLOPs
estimate per layer. Compilation to ``torch.nn.Module`` and export to code come on top of
it and import torch lazily.
"""

from .layers import LAYERS, LayerError
from .model import FORMAT, Edge, Graph, GraphError, Node, infer, load
from .templates import TEMPLATES, template

__all__ = [
    "FORMAT",
    "LAYERS",
    "TEMPLATES",
    "Edge",
    "Graph",
    "GraphError",
    "LayerError",
    "Node",
    "infer",
    "load",
    "template",
]
