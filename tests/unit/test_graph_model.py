"""The network-graph model (gpupool.graph), pure Python: the document's checks with
their messages, shape inference and parameter counts for every layer (the counts are
torch.nn's, known by heart: LeNet-5 has 61,706), branching graphs, errors that point at
the node and say what to do, and the templates."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gpupool.graph import FORMAT, LAYERS, GraphError, load, template


def graph(*nodes: tuple, edges: list[tuple] | None = None) -> Any:
    """graph(("in", "Input", {"shape": [3]}), ("fc", "Linear", {...}), ...): a chain unless
    edges are given as (from, to[, port])."""
    ns = [{"id": n[0], "type": n[1], "params": n[2] if len(n) > 2 else {}} for n in nodes]
    if edges is None:
        edges = [(a[0], b[0]) for a, b in itertools.pairwise(nodes)]
    es = [{"from": e[0], "to": e[1], **({"port": e[2]} if len(e) > 2 else {})} for e in edges]
    return load({"format": FORMAT, "nodes": ns, "edges": es})


def one(layer: str, shape: list[int], **params: Any) -> Any:
    inf = graph(("in", "Input", {"shape": shape}), ("x", layer, params)).infer()
    return inf.nodes["x"]


@pytest.mark.parametrize(
    ("layer", "shape", "params", "out", "count"),
    [
        ("Linear", [784], {"out_features": 256}, (256,), 200960),
        ("Linear", [10, 32], {"out_features": 8, "bias": False}, (10, 8), 256),
        ("Conv2d", [1, 28, 28], {"out_channels": 6, "kernel_size": 5}, (6, 24, 24), 156),
        (
            "Conv2d",
            [3, 32, 32],
            {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},
            (8, 16, 16),
            224,
        ),
        (
            "Conv2d",
            [4, 9, 9],
            {"out_channels": 8, "kernel_size": 3, "groups": 2, "dilation": 2},
            (8, 5, 5),
            152,
        ),
        ("Conv1d", [4, 100], {"out_channels": 16, "kernel_size": 7}, (16, 94), 464),
        ("BatchNorm2d", [32, 8, 8], {}, (32, 8, 8), 64),
        ("BatchNorm1d", [64], {}, (64,), 128),
        ("LayerNorm", [10, 128], {}, (10, 128), 256),
        ("ReLU", [5, 5], {}, (5, 5), 0),
        ("GELU", [5], {}, (5,), 0),
        ("Sigmoid", [5], {}, (5,), 0),
        ("Tanh", [5], {}, (5,), 0),
        ("Softmax", [4, 10], {"dim": -1}, (4, 10), 0),
        ("MaxPool2d", [6, 28, 28], {"kernel_size": 2}, (6, 14, 14), 0),
        ("AvgPool2d", [6, 7, 7], {"kernel_size": 3, "stride": 2, "padding": 1}, (6, 4, 4), 0),
        ("AdaptiveAvgPool2d", [64, 7, 7], {"output_size": 1}, (64, 1, 1), 0),
        ("Flatten", [16, 5, 5], {}, (400,), 0),
        ("Dropout", [100], {"p": 0.1}, (100,), 0),
        ("Embedding", [64], {"num_embeddings": 1000, "embedding_dim": 128}, (64, 128), 128000),
        ("LSTM", [30, 10], {"hidden_size": 20}, (30, 20), 2560),
        (
            "LSTM",
            [30, 10],
            {"hidden_size": 20, "num_layers": 2, "bidirectional": True},
            (30, 40),
            15040,
        ),
        ("GRU", [30, 10], {"hidden_size": 20}, (30, 20), 1920),
        ("MultiheadAttention", [64, 128], {"num_heads": 4}, (64, 128), 66048),
    ],
)
def test_every_layer_shape_and_parameters(
    layer: str, shape: list[int], params: dict, out: tuple, count: int
) -> None:
    info = one(layer, shape, **params)
    assert info.error is None, info.error
    assert info.shape == out and info.params == count
    assert info.flops >= 0


def test_the_layer_set_is_covered() -> None:
    tested = {
        "Input", "Output", "Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
        "ReLU", "GELU", "Sigmoid", "Tanh", "Softmax", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
        "Flatten", "Dropout", "Embedding", "LSTM", "GRU", "MultiheadAttention", "Add", "Concat",
    }  # fmt: skip
    assert set(LAYERS) == tested


@pytest.mark.parametrize(
    ("layer", "shape", "params", "words"),
    [
        ("Linear", [16, 5, 5], {"out_features": 10}, "put a Flatten before it"),
        ("Conv2d", [28, 28], {"out_channels": 6}, "an image needs [channels, height, width]"),
        (
            "Conv2d",
            [1, 3, 3],
            {"out_channels": 6, "kernel_size": 5},
            "input is too small (3) for kernel 5",
        ),
        ("Conv2d", [3, 8, 8], {"out_channels": 4, "groups": 2}, "groups (2) must divide"),
        (
            "MultiheadAttention",
            [10, 30],
            {"num_heads": 4},
            "(30) must be divisible by num_heads (4)",
        ),
        ("LSTM", [30], {"hidden_size": 8}, "LSTM expects a 2-D input (sequence, features)"),
        ("Softmax", [4], {"dim": 2}, "dim 2 is out of range"),
        ("Linear", [8], {}, "out_features: required"),
        ("Linear", [8], {"out_features": 0}, "out_features: must be an integer ≥ 1, got 0"),
        ("Linear", [8], {"out_features": 4, "bias": "yes"}, "bias: must be true or false"),
        ("Dropout", [8], {"p": 1.5}, "p: must be a number from 0 to 1, got 1.5"),
        (
            "Linear",
            [8],
            {"out_features": 4, "units": 3},
            "unknown parameter 'units'; Linear takes: out_features, bias",
        ),
    ],
)
def test_a_layer_that_cannot_take_its_input_says_why(
    layer: str, shape: list[int], params: dict, words: str
) -> None:
    info = one(layer, shape, **params)
    assert info.shape is None and words in (info.error or ""), info.error


def test_residual_add_and_concat_branches() -> None:
    g = graph(
        ("in", "Input", {"shape": [8, 16, 16]}),
        ("a", "Conv2d", {"out_channels": 8, "padding": 1}),
        ("b", "Conv2d", {"out_channels": 4, "kernel_size": 1}),
        ("sum", "Add"),
        ("cat", "Concat", {"dim": 0}),
        ("out", "Output"),
        edges=[
            ("in", "a"),
            ("in", "b"),
            ("a", "sum"),
            ("in", "sum", 1),
            ("sum", "cat"),
            ("b", "cat", 1),
            ("cat", "out"),
        ],
    )
    inf = g.infer()
    assert inf.ok, inf.errors
    assert inf.shape("sum") == (8, 16, 16) and inf.shape("out") == (12, 16, 16)
    assert inf.order.index("sum") > inf.order.index("a")


def test_mismatched_branches_and_errors_downstream() -> None:
    g = graph(
        ("in", "Input", {"shape": [8, 16, 16]}),
        ("b", "Conv2d", {"out_channels": 4, "kernel_size": 1}),
        ("sum", "Add"),
        ("flat", "Flatten"),
        ("cat", "Concat", {"dim": 1}),
        edges=[
            ("in", "b"),
            ("b", "sum"),
            ("in", "sum", 1),
            ("sum", "flat"),
            ("in", "cat"),
            ("b", "cat", 1),
        ],
    )
    inf = g.infer()
    assert "Add needs inputs of one shape, got (4, 16, 16) and (8, 16, 16)" in inf.errors["sum"]
    assert "project one branch" in inf.errors["sum"]
    assert inf.errors["flat"] == "waits for sum (in error)"
    assert "Concat on dim 1 needs inputs equal in every other dimension" in inf.errors["cat"]
    assert inf.nodes["b"].error is None  # the rest is still known


def test_inputs_counted_and_cycles_found() -> None:
    g = graph(("in", "Input", {"shape": [4]}), ("sum", "Add"), edges=[("in", "sum")])
    assert g.infer().errors["sum"] == "Add takes at least 2 input(s), 1 connected"
    g = graph(("in", "Input", {"shape": [4]}), ("fc", "Linear", {"out_features": 2}), edges=[])
    assert g.infer().errors["fc"] == "Linear takes 1 input(s), 0 connected"
    g = graph(
        ("in", "Input", {"shape": [4]}),
        ("a", "ReLU"),
        ("b", "ReLU"),
        ("s", "Add"),
        edges=[("in", "s"), ("s", "a"), ("a", "b"), ("b", "s", 1)],
    )
    errors = g.infer().errors
    assert set(errors) == {"s", "a", "b"} and "cycle" in errors["a"]


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ([], "a graph is a JSON object, got list"),
        ({"format": "keras/2", "nodes": []}, "format: must be 'gpupool.graph/1', got 'keras/2'"),
        ({"format": FORMAT}, "nodes: must be a list"),
        ({"format": FORMAT, "nodes": [], "colour": 1}, "unknown key 'colour'"),
        (
            {"format": FORMAT, "nodes": [{"id": "a b", "type": "ReLU"}]},
            "nodes[0].id: must be a name",
        ),
        (
            {"format": FORMAT, "nodes": [{"id": "a", "type": "Relu"}]},
            "nodes[0] (a).type: unknown layer 'Relu'; known: Input",
        ),
        (
            {"format": FORMAT, "nodes": [{"id": "a", "type": "ReLU"}, {"id": "a", "type": "ReLU"}]},
            "'a' is used twice",
        ),
        (
            {
                "format": FORMAT,
                "nodes": [{"id": "a", "type": "ReLU"}],
                "edges": [{"from": "a", "to": "z"}],
            },
            "edges[0].to: no node 'z'",
        ),
        (
            {
                "format": FORMAT,
                "nodes": [{"id": "a", "type": "ReLU"}],
                "edges": [{"from": "a", "to": "a"}],
            },
            "cannot feed itself",
        ),
        (
            {
                "format": FORMAT,
                "nodes": [
                    {"id": "a", "type": "Input"},
                    {"id": "b", "type": "Input"},
                    {"id": "c", "type": "ReLU"},
                ],
                "edges": [{"from": "a", "to": "c"}, {"from": "b", "to": "c"}],
            },
            "input 0 of c is already connected",
        ),
        (
            {"format": FORMAT, "nodes": [{"id": "a", "type": "ReLU", "position": [1]}]},
            "position: must be [x, y]",
        ),
    ],
)
def test_document_errors_name_the_place(doc: Any, words: str) -> None:
    with pytest.raises(GraphError) as e:
        load(doc)
    assert any(words in p for p in e.value.problems), e.value.problems


def test_input_shape_is_checked() -> None:
    g = graph(("in", "Input", {"shape": [0, 3]}))
    assert "shape: must be a list of positive integers" in g.infer().errors["in"]


@pytest.mark.parametrize(
    ("name", "out", "params"),
    [
        ("mlp", (10,), 203530),
        ("lenet", (10,), 61706),
        ("resnet", (10,), 38378),
        ("transformer", (2,), 342658),
    ],
)
def test_templates_infer_cleanly_and_round_trip(name: str, out: tuple, params: int) -> None:
    g = template(name)
    inf = g.infer()
    assert inf.ok, inf.errors
    assert inf.shape("output") == out and inf.params == params and inf.flops > 0
    again = load(g.to_json())
    assert again == g and again.infer().params == params
    with pytest.raises(KeyError, match="known: mlp, lenet, resnet, transformer"):
        template("vgg")
