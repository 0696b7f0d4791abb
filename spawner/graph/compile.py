"""A checked graph as PyTorch: ``to_module`` builds a ``torch.nn.Module`` that runs the
graph, ``to_code`` writes the same network as readable PyTorch source.

torch is imported only when one of these is called, so checking and inferring a graph
(the editor, the pool service) never needs it. The two paths are built independently
(one interprets the graph, the other writes code) and name their submodules the same way,
so a state dict moves between them; the tests hold them to the same outputs.

Shapes in the graph leave the batch dimension out; a compiled network takes a batch
first, ``(batch, *shape)`` per Input, in the order the Input nodes appear in the document,
and returns one tensor per Output (a tuple when there are several).
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .model import Graph, GraphError, Inference

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "compiling a graph needs PyTorch: pip install torch (the graph itself, its "
            "checks and shapes work without it)"
        ) from e
    return torch


def attribute_names(graph: Graph) -> dict[str, str]:
    """Node id -> a Python identifier for its submodule, unique within the graph."""
    out: dict[str, str] = {}
    # not the names of nn.Module's own attributes, Python's builtins or the generated code's
    used = {"forward", "training", "self", "torch", "nn", "inference", *dir(builtins)}
    for n in graph.nodes:
        base = re.sub(r"\W", "_", n.id)
        if keyword.iskeyword(base) or base[0].isdigit():
            base = f"n_{base}"
        name, i = base, 2
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        out[n.id] = name
    return out


def checked(graph: Graph) -> Inference:
    """The graph's shapes, or GraphError listing every problem that keeps it from training
    (a layer's error, no Input, no Output)."""
    inf = graph.infer()
    problems = [f"{nid}: {err}" for nid, err in inf.errors.items()]
    kinds = [n.type for n in graph.nodes]
    if "Input" not in kinds:
        problems.append("the graph has no Input: add one with the data's shape")
    if "Output" not in kinds:
        problems.append("the graph has no Output: connect the last layer to an Output")
    if problems:
        raise GraphError(problems)
    return inf


def _torch_dim(dim: int, rank: int) -> int:
    """A dim of a shape without the batch, as a dim of the batched tensor."""
    return dim % rank + 1


# -- one layer as a torch module -----------------------------------------------------------
# Both to_module and to_code read this table: to_module builds ``nn.<cls>(*args, **kwargs)``,
# to_code prints the same call. ``how`` says how forward uses the layer.
@dataclass(frozen=True)
class Step:
    node: str
    cls: str | None  # torch.nn class, None for Input, Output, Add, Concat
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    how: str = "call"  # call | long | first | attention | input | identity | sum | cat
    dim: int = 0  # Concat's dim in the batched tensor

    def ctor(self) -> str:
        """The constructor call as code, leaving out arguments at torch's defaults."""
        defaults = _TORCH_DEFAULTS.get(self.cls or "", {})
        shown = {k: v for k, v in self.kwargs.items() if k not in defaults or defaults[k] != v}
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in shown.items()]
        return f"nn.{self.cls}({', '.join(parts)})"


_CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}
_RNN_DEFAULTS = {"num_layers": 1, "bidirectional": False, "dropout": 0.0}
_TORCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "Linear": {"bias": True},
    "Conv1d": _CONV_DEFAULTS,
    "Conv2d": _CONV_DEFAULTS,
    "BatchNorm1d": {"affine": True},
    "BatchNorm2d": {"affine": True},
    "LayerNorm": {"elementwise_affine": True},
    "MaxPool2d": {"padding": 0},
    "AvgPool2d": {"padding": 0},
    "LSTM": _RNN_DEFAULTS,
    "GRU": _RNN_DEFAULTS,
    "MultiheadAttention": {"dropout": 0.0},
}


def _step(nid: str, typ: str, p: dict[str, Any], shapes: list[tuple[int, ...]]) -> Step:
    s = shapes[0] if shapes else ()
    if typ == "Input":
        return Step(nid, None, how="input")
    if typ == "Output":
        return Step(nid, None, how="identity")
    if typ == "Add":
        return Step(nid, None, how="sum")
    if typ == "Concat":
        return Step(nid, None, how="cat", dim=_torch_dim(p["dim"], len(s)))
    if typ == "Linear":
        return Step(nid, "Linear", (s[-1], p["out_features"]), {"bias": p["bias"]})
    if typ in ("Conv1d", "Conv2d"):
        keys = ("kernel_size", "stride", "padding", "dilation", "groups", "bias")
        return Step(nid, typ, (s[0], p["out_channels"]), {k: p[k] for k in keys})
    if typ in ("BatchNorm1d", "BatchNorm2d"):
        return Step(nid, typ, (s[0],), {"affine": p["affine"]})
    if typ == "LayerNorm":
        return Step(nid, typ, (s[-1],), {"elementwise_affine": p["elementwise_affine"]})
    if typ in ("ReLU", "GELU", "Sigmoid", "Tanh", "Flatten"):
        return Step(nid, typ)
    if typ == "Softmax":
        return Step(nid, typ, kwargs={"dim": _torch_dim(p["dim"], len(s))})
    if typ in ("MaxPool2d", "AvgPool2d"):
        stride = p["stride"] or p["kernel_size"]
        return Step(nid, typ, (p["kernel_size"],), {"stride": stride, "padding": p["padding"]})
    if typ == "AdaptiveAvgPool2d":
        return Step(nid, typ, (p["output_size"],))
    if typ == "Dropout":
        return Step(nid, typ, (p["p"],))
    if typ == "Embedding":
        return Step(nid, typ, (p["num_embeddings"], p["embedding_dim"]), how="long")
    if typ in ("LSTM", "GRU"):
        keys = ("num_layers", "bidirectional", "dropout")
        kwargs = {k: p[k] for k in keys} | {"batch_first": True}
        return Step(nid, typ, (s[-1], p["hidden_size"]), kwargs, how="first")
    if typ == "MultiheadAttention":
        kwargs = {"dropout": p["dropout"], "batch_first": True}
        return Step(nid, typ, (s[-1], p["num_heads"]), kwargs, how="attention")
    raise GraphError([f"no PyTorch form for layer {typ!r}"])  # pragma: no cover - table gap


def _plan(graph: Graph) -> tuple[Inference, dict[str, str], list[Step]]:
    inf = checked(graph)
    steps = []
    for nid in inf.order:
        node = graph.node(nid)
        shapes = [inf.nodes[e.src].shape or () for e in graph.inputs_of(nid)]
        steps.append(_step(nid, node.type, inf.nodes[nid].resolved, shapes))
    return inf, attribute_names(graph), steps


def to_module(graph: Graph) -> torch.nn.Module:
    """The graph as a ``torch.nn.Module`` (in training mode, freshly initialised).
    ``module.inference`` holds the graph's shapes, parameter count and FLOPs."""
    torch = _torch()
    nn = torch.nn
    inf, names, steps = _plan(graph)
    inputs = [n.id for n in graph.nodes if n.type == "Input"]
    outputs = [n.id for n in graph.nodes if n.type == "Output"]
    feeds = {n.id: [e.src for e in graph.inputs_of(n.id)] for n in graph.nodes}

    class GraphModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for st in steps:
                if st.cls is not None:
                    self.add_module(names[st.node], getattr(nn, st.cls)(*st.args, **st.kwargs))

        def forward(self, *xs: torch.Tensor) -> Any:
            if len(xs) != len(inputs):
                raise TypeError(
                    f"{graph.name or 'the network'} takes {len(inputs)} input(s) "
                    f"({', '.join(inputs)}), got {len(xs)}"
                )
            values: dict[str, Any] = dict(zip(inputs, xs, strict=True))
            for st in steps:
                if st.how == "input":
                    continue
                args = [values[src] for src in feeds[st.node]]
                m = getattr(self, names[st.node]) if st.cls else None
                if st.how == "sum":
                    out = args[0]
                    for a in args[1:]:
                        out = out + a
                elif st.how == "cat":
                    out = torch.cat(args, dim=st.dim)
                elif st.how == "identity":
                    out = args[0]
                elif st.how == "long":
                    out = m(args[0].long())
                elif st.how == "first":
                    out = m(args[0])[0]
                elif st.how == "attention":
                    x = args[0]
                    out = m(x, x, x, need_weights=False)[0]
                else:
                    out = m(args[0])
                values[st.node] = out
            result = tuple(values[o] for o in outputs)
            return result[0] if len(result) == 1 else result

    GraphModule.__name__ = GraphModule.__qualname__ = class_name(graph.name)
    module = GraphModule()
    module.inference = inf
    return module


def class_name(name: str) -> str:
    """The Python class name of a graph's network, from the graph's name."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    out = "".join(w[:1].upper() + w[1:] for w in words) or "Network"
    return out if out[0].isalpha() else f"Net{out}"


_FORWARD = {
    "call": "{m}({x})",
    "long": "{m}({x}.long())",
    "first": "{m}({x})[0]",
    "attention": "{m}({x}, {x}, {x}, need_weights=False)[0]",
}


def to_code(graph: Graph) -> str:
    """Readable PyTorch source for the graph: one ``nn.Module`` class, its layers in
    ``__init__`` and the data flow in ``forward``, each line with its output shape."""
    inf, names, steps = _plan(graph)
    cls = class_name(graph.name)
    inputs = [names[n.id] for n in graph.nodes if n.type == "Input"]
    outputs = [names[n.id] for n in graph.nodes if n.type == "Output"]
    title = re.sub(r"[^\w .,:()+-]", "", graph.name) or "network"
    lines = [
        f'"""{title}: PyTorch code generated by gpupool from a graph."""',
        "",
        "import torch",
        "from torch import nn",
        "",
        "",
        f"class {cls}(nn.Module):",
        f'    """{inf.params:,} parameters, about {inf.flops:,} FLOPs per sample."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
    ]
    lines += [f"        self.{names[st.node]} = {st.ctor()}" for st in steps if st.cls]
    lines += ["", f"    def forward(self, {', '.join(inputs)}):"]
    for st in steps:
        v = names[st.node]
        if st.how == "input":
            lines.append(f"        # {v}: (batch, {_dims(inf, st.node)})")
            continue
        srcs = [names[e.src] for e in graph.inputs_of(st.node)]
        if st.how == "sum":
            expr = " + ".join(srcs)
        elif st.how == "cat":
            expr = f"torch.cat([{', '.join(srcs)}], dim={st.dim})"
        elif st.how == "identity":
            expr = srcs[0]
        else:
            expr = _FORWARD[st.how].format(m=f"self.{v}", x=srcs[0])
        lines.append(f"        {v} = {expr}  # (batch, {_dims(inf, st.node)})")
    lines.append(f"        return {', '.join(outputs)}")
    return "\n".join(lines) + "\n"


def _dims(inf: Inference, nid: str) -> str:
    return ", ".join(str(d) for d in inf.nodes[nid].shape or ())


def example_inputs(graph: Graph, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shape for a forward pass, one per Input: token ids for an
    Input that feeds an Embedding (within its vocabulary), floats otherwise."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    inf = checked(graph)
    out = []
    for n in graph.nodes:
        if n.type != "Input":
            continue
        shape = (batch, *(inf.nodes[n.id].shape or ()))
        vocab = [
            inf.nodes[e.dst].resolved["num_embeddings"]
            for e in graph.edges
            if e.src == n.id and graph.node(e.dst).type == "Embedding"
        ]
        if vocab:
            out.append(torch.randint(0, min(vocab), shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen))
    return tuple(out)
