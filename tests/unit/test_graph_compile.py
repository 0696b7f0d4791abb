"""The graph compiled to PyTorch (CPU torch from the machine's wheel): for every template
and for random valid graphs (hypothesis), every node's real output shape equals the
inferred one and the parameter count equals the graph's; the exported code runs, takes the
module's state dict and gives the same outputs; torch is imported only when compiling."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpupool.graph import FORMAT, TEMPLATES, GraphError, load, template
from gpupool.graph.compile import attribute_names, example_inputs, to_code, to_module

# tests/run.sh installs the CPU wheel and sets GPUPOOL_TEST_TORCH, so CI fails, not skips
torch = (
    importlib.import_module("torch")
    if os.environ.get("GPUPOOL_TEST_TORCH")
    else pytest.importorskip("torch")
)


def code_module(graph: Any) -> Any:
    ns: dict[str, Any] = {}
    exec(compile(to_code(graph), f"<{graph.name}>", "exec"), ns)
    classes = [v for v in ns.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
    (cls,) = [c for c in classes if c is not torch.nn.Module]
    return cls()


def check(graph: Any) -> None:
    """Real shapes equal inferred ones at every Output; counts agree; code == module."""
    inf = graph.infer()
    assert inf.ok, inf.errors
    module = to_module(graph).eval()
    assert sum(p.numel() for p in module.parameters()) == inf.params
    xs = example_inputs(graph, batch=3)
    with torch.no_grad():
        ys = module(*xs)
    outs = [n.id for n in graph.nodes if n.type == "Output"]
    ys = ys if isinstance(ys, tuple) else (ys,)
    for nid, y in zip(outs, ys, strict=True):
        assert tuple(y.shape) == (3, *inf.shape(nid)), nid
    other = code_module(graph)
    other.load_state_dict(module.state_dict())  # same submodule names, same shapes
    other.eval()
    with torch.no_grad():
        zs = other(*xs)
    zs = zs if isinstance(zs, tuple) else (zs,)
    for y, z in zip(ys, zs, strict=True):
        torch.testing.assert_close(y, z)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_templates_compile_to_their_inferred_shapes(name: str) -> None:
    check(template(name))


def test_lenet_trains_a_step_and_counts_like_torch() -> None:
    g = template("lenet")
    module = to_module(g)
    assert sum(p.numel() for p in module.parameters()) == 61706
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    x, target = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def doc(nodes: list[tuple], edges: list[tuple], name: str = "t") -> Any:
    return load(
        {
            "format": FORMAT,
            "name": name,
            "nodes": [
                {"id": n[0], "type": n[1], "params": n[2] if len(n) > 2 else {}} for n in nodes
            ],
            "edges": [
                {"from": e[0], "to": e[1], **({"port": e[2]} if len(e) > 2 else {})} for e in edges
            ],
        }
    )


def test_two_inputs_concat_and_two_outputs() -> None:
    g = doc(
        [
            ("img", "Input", {"shape": [3, 8, 8]}),
            ("meta", "Input", {"shape": [5]}),
            ("conv", "Conv2d", {"out_channels": 4, "padding": 1}),
            ("flat", "Flatten"),
            ("cat", "Concat", {"dim": -1}),
            ("fc", "Linear", {"out_features": 2}),
            ("logits", "Output"),
            ("features", "Output"),
        ],
        [
            ("img", "conv"),
            ("conv", "flat"),
            ("flat", "cat"),
            ("meta", "cat", 1),
            ("cat", "fc"),
            ("fc", "logits"),
            ("cat", "features"),
        ],
    )
    check(g)
    assert g.infer().shape("cat") == (4 * 8 * 8 + 5,)
    with pytest.raises(TypeError, match="takes 2 input"):
        to_module(g)(torch.randn(1, 3, 8, 8))


def test_softmax_and_concat_dims_count_without_the_batch() -> None:
    g = doc(
        [
            ("x", "Input", {"shape": [4, 6]}),
            ("a", "ReLU"),
            ("cat", "Concat", {"dim": 0}),
            ("sm", "Softmax", {"dim": 0}),
            ("out", "Output"),
        ],
        [("x", "a"), ("a", "cat"), ("x", "cat", 1), ("cat", "sm"), ("sm", "out")],
    )
    check(g)
    y = to_module(g)(torch.randn(2, 4, 6))
    assert tuple(y.shape) == (2, 8, 6)
    torch.testing.assert_close(y.sum(dim=1), torch.ones(2, 6))  # softmax over the graph's dim 0


def test_a_graph_in_error_does_not_compile_and_says_where() -> None:
    g = doc(
        [
            ("x", "Input", {"shape": [1, 28, 28]}),
            ("fc", "Linear", {"out_features": 3}),
            ("o", "Output"),
        ],
        [("x", "fc"), ("fc", "o")],
    )
    for fn in (to_module, to_code):
        with pytest.raises(GraphError) as e:
            fn(g)
        assert "fc: Linear expects" in str(e.value) and "Flatten" in str(e.value)
    no_out = doc([("x", "Input", {"shape": [3]}), ("r", "ReLU")], [("x", "r")])
    with pytest.raises(GraphError, match="no Output"):
        to_module(no_out)


def test_node_ids_become_safe_unique_names() -> None:
    g = doc(
        [
            ("class", "Input", {"shape": [3]}),
            ("fc-1", "Linear", {"out_features": 3}),
            ("fc_1", "Linear", {"out_features": 3}),
            ("print", "Output"),
        ],
        [("class", "fc-1"), ("fc-1", "fc_1"), ("fc_1", "print")],
    )
    names = attribute_names(g)
    assert names["class"] == "n_class" and names["print"] == "print_2"
    assert names["fc-1"] != names["fc_1"] and all(n.isidentifier() for n in names.values())
    check(g)


def test_importing_the_graph_model_does_not_import_torch() -> None:
    code = (
        "import sys; from gpupool.graph import template; "
        "template('resnet').infer(); import gpupool.graph.compile; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- random valid graphs --------------------------------------------------------------------
class Build:
    """Grows a graph one valid layer at a time: a drawn layer that the current shape cannot
    take is dropped (its error is the editor's business, tested elsewhere)."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []

    def graph(self) -> Any:
        return load({"format": FORMAT, "name": "random", "nodes": self.nodes, "edges": self.edges})

    def add(self, typ: str, srcs: list[str], **params: Any) -> str | None:
        nid = f"n{len(self.nodes)}"
        self.nodes.append({"id": nid, "type": typ, "params": params})
        new = [{"from": s, "to": nid, **({"port": i} if i else {})} for i, s in enumerate(srcs)]
        self.edges += new
        if self.graph().infer().nodes[nid].error:
            self.nodes.pop()
            del self.edges[len(self.edges) - len(new) :]
            return None
        return nid

    def shape(self, nid: str) -> tuple[int, ...]:
        return self.graph().infer().shape(nid) or ()


small = st.integers(1, 6)


def layer_for(draw: Any, shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    rank = len(shape)
    options: list[tuple[str, Any]] = [
        ("ReLU", st.just({})),
        ("GELU", st.just({})),
        ("Tanh", st.just({})),
        ("Dropout", st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.1, 0.5])})),
        ("Softmax", st.fixed_dictionaries({"dim": st.integers(-rank, rank - 1)})),
        ("LayerNorm", st.fixed_dictionaries({"elementwise_affine": st.booleans()})),
        ("Flatten", st.just({})),
    ]
    if rank <= 2:
        options.append(
            ("Linear", st.fixed_dictionaries({"out_features": small, "bias": st.booleans()}))
        )
    if rank in (1, 2):
        options.append(("BatchNorm1d", st.fixed_dictionaries({"affine": st.booleans()})))
    if rank == 2:
        rnn = {
            "hidden_size": small,
            "num_layers": st.integers(1, 2),
            "bidirectional": st.booleans(),
        }
        options += [
            ("LSTM", st.fixed_dictionaries(rnn)),
            ("GRU", st.fixed_dictionaries(rnn)),
            ("MultiheadAttention", st.fixed_dictionaries({"num_heads": st.sampled_from([1, 2])})),
        ]
    conv = {
        "out_channels": st.sampled_from([2, 4]),
        "kernel_size": st.integers(1, 3),
        "stride": st.integers(1, 2),
        "padding": st.integers(0, 1),
        "dilation": st.integers(1, 2),
        "groups": st.sampled_from([1, 2]),
        "bias": st.booleans(),
    }
    if rank == 2:
        options.append(("Conv1d", st.fixed_dictionaries(conv)))
    if rank == 3:
        pool = {
            "kernel_size": st.integers(1, 3),
            "stride": st.integers(0, 2),
            "padding": st.integers(0, 1),
        }
        options += [
            ("Conv2d", st.fixed_dictionaries(conv)),
            ("BatchNorm2d", st.fixed_dictionaries({"affine": st.booleans()})),
            ("MaxPool2d", st.fixed_dictionaries(pool)),
            ("AvgPool2d", st.fixed_dictionaries(pool)),
            ("AdaptiveAvgPool2d", st.fixed_dictionaries({"output_size": st.integers(1, 3)})),
        ]
    typ, params = draw(st.sampled_from(options))
    return typ, draw(params)


@st.composite
def random_graphs(draw: Any) -> Any:
    b = Build()
    kind = draw(st.sampled_from(["vector", "sequence", "tokens", "image"]))
    if kind == "vector":
        x = b.add("Input", [], shape=[draw(st.integers(1, 8))])
    elif kind == "sequence":
        x = b.add("Input", [], shape=[draw(st.integers(1, 5)), draw(st.sampled_from([2, 4, 6]))])
    elif kind == "tokens":
        x = b.add("Input", [], shape=[draw(st.integers(1, 6))])
        x = b.add("Embedding", [x], num_embeddings=draw(st.integers(2, 20)), embedding_dim=4)
    else:
        c, h = draw(st.sampled_from([2, 4])), draw(st.integers(4, 9))
        x = b.add("Input", [], shape=[c, h, draw(st.integers(4, 9))])
    assert x is not None
    outputs = []
    for _ in range(draw(st.integers(1, 7))):
        move = draw(st.sampled_from(["layer", "layer", "residual", "concat", "tap"]))
        if move == "layer":
            typ, params = layer_for(draw, b.shape(x))
            x = b.add(typ, [x], **params) or x
        elif move == "residual":  # x + f(x) with a shape-keeping f
            typ, params = layer_for(draw, b.shape(x))
            y = b.add(typ, [x], **params)
            if y is not None:
                x = b.add("Add", [x, y]) or y
        elif move == "concat":
            typ, params = layer_for(draw, b.shape(x))
            y = b.add(typ, [x], **params)
            if y is not None:
                rank = len(b.shape(x))
                x = b.add("Concat", [x, y], dim=draw(st.integers(-rank, rank - 1))) or y
        else:  # an extra Output on an inner node, so its shape is checked too
            outputs.append(b.add("Output", [x]))
    b.add("Output", [x])
    return b.graph()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_random_valid_graphs_compile_to_their_inferred_shapes(graph: Any) -> None:
    check(graph)
