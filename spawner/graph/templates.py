"""Starting points for the editor: an MLP, LeNet-5, a small ResNet, a small transformer
encoder. Each is an ordinary graph document laid out left to right."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .model import FORMAT, Graph, load

PER_ROW = 6


class _Builder:
    def __init__(self, name: str):
        self.name = name
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []

    def add(self, nid: str, typ: str, after: str | list[str] | None = None, **params: Any) -> str:
        # left to right, PER_ROW layers a row, rows downwards (the editor's auto layout
        # arranges by depth instead; this keeps long chains readable at a glance)
        i = len(self.nodes)
        x, y = 40 + 252 * (i % PER_ROW), 40 + 130 * (i // PER_ROW)
        self.nodes.append({"id": nid, "type": typ, "params": params, "position": [x, y]})
        for port, src in enumerate([after] if isinstance(after, str) else after or []):
            edge: dict[str, Any] = {"from": src, "to": nid}
            if port:
                edge["port"] = port
            self.edges.append(edge)
        return nid

    def graph(self) -> Graph:
        return load({"format": FORMAT, "name": self.name, "nodes": self.nodes, "edges": self.edges})


def mlp(inputs: int = 784, hidden: int = 256, classes: int = 10) -> Graph:
    b = _Builder("mlp")
    x = b.add("input", "Input", shape=[inputs])
    x = b.add("fc1", "Linear", x, out_features=hidden)
    x = b.add("act1", "ReLU", x)
    x = b.add("drop", "Dropout", x, p=0.2)
    x = b.add("fc2", "Linear", x, out_features=classes)
    b.add("output", "Output", x)
    return b.graph()


def lenet() -> Graph:
    b = _Builder("lenet")
    x = b.add("input", "Input", shape=[1, 28, 28])
    x = b.add("conv1", "Conv2d", x, out_channels=6, kernel_size=5, padding=2)
    x = b.add("act1", "ReLU", x)
    x = b.add("pool1", "MaxPool2d", x, kernel_size=2)
    x = b.add("conv2", "Conv2d", x, out_channels=16, kernel_size=5)
    x = b.add("act2", "ReLU", x)
    x = b.add("pool2", "MaxPool2d", x, kernel_size=2)
    x = b.add("flat", "Flatten", x)
    x = b.add("fc1", "Linear", x, out_features=120)
    x = b.add("act3", "ReLU", x)
    x = b.add("fc2", "Linear", x, out_features=84)
    x = b.add("act4", "ReLU", x)
    x = b.add("fc3", "Linear", x, out_features=10)
    b.add("output", "Output", x)
    return b.graph()


def resnet(blocks: int = 2, channels: int = 32, classes: int = 10) -> Graph:
    b = _Builder("small-resnet")
    x = b.add("input", "Input", shape=[3, 32, 32])
    x = b.add("stem", "Conv2d", x, out_channels=channels, kernel_size=3, padding=1, bias=False)
    x = b.add("stem_bn", "BatchNorm2d", x)
    x = b.add("stem_act", "ReLU", x)
    for i in range(blocks):
        skip = x
        y = b.add(
            f"b{i}_conv1", "Conv2d", x, out_channels=channels, kernel_size=3, padding=1, bias=False
        )
        y = b.add(f"b{i}_bn1", "BatchNorm2d", y)
        y = b.add(f"b{i}_act1", "ReLU", y)
        y = b.add(
            f"b{i}_conv2", "Conv2d", y, out_channels=channels, kernel_size=3, padding=1, bias=False
        )
        y = b.add(f"b{i}_bn2", "BatchNorm2d", y)
        y = b.add(f"b{i}_add", "Add", [y, skip])
        x = b.add(f"b{i}_act2", "ReLU", y)
    x = b.add("pool", "AdaptiveAvgPool2d", x, output_size=1)
    x = b.add("flat", "Flatten", x)
    x = b.add("fc", "Linear", x, out_features=classes)
    b.add("output", "Output", x)
    return b.graph()


def transformer(
    vocab: int = 1000, length: int = 64, dim: int = 128, heads: int = 4, classes: int = 2
) -> Graph:
    b = _Builder("transformer-encoder")
    x = b.add("tokens", "Input", shape=[length])
    x = b.add("embed", "Embedding", x, num_embeddings=vocab, embedding_dim=dim)
    a = b.add("attn", "MultiheadAttention", x, num_heads=heads)
    x = b.add("res1", "Add", [a, x])
    x = b.add("norm1", "LayerNorm", x)
    f = b.add("ff1", "Linear", x, out_features=4 * dim)
    f = b.add("ff_act", "GELU", f)
    f = b.add("ff2", "Linear", f, out_features=dim)
    x = b.add("res2", "Add", [f, x])
    x = b.add("norm2", "LayerNorm", x)
    x = b.add("flat", "Flatten", x)
    x = b.add("head", "Linear", x, out_features=classes)
    b.add("output", "Output", x)
    return b.graph()


TEMPLATES: dict[str, Callable[[], Graph]] = {
    "mlp": mlp,
    "lenet": lenet,
    "resnet": resnet,
    "transformer": transformer,
}


def template(name: str) -> Graph:
    if name not in TEMPLATES:
        raise KeyError(f"no template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]()
