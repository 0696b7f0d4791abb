"""The layer set: each layer's parameters (with their rules), how many inputs it takes,
and what it makes of its input shapes: the output shape, the parameter count, a FLOPs
estimate (multiply-adds counted as two). Shapes leave the batch dimension out.

A layer that cannot take its input raises :class:`LayerError` with the reason, in words a
person building the graph can act on ("Linear expects a 1-D input (features), got
(16, 5, 5): put a Flatten before it").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]


class LayerError(ValueError):
    """A layer cannot take its input (or a parameter is out of its range)."""


def show(value: Any) -> str:
    """A JSON value as the messages print it: Python's repr, with integral floats written
    as integers, as a browser (and the editor's checks) would."""
    if isinstance(value, float) and value.is_integer():
        return repr(int(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def as_int(value: Any) -> int | None:
    """An integer, or None. JSON does not tell 3 from 3.0 (a browser writes 3.0 as 3), so
    an integral float counts as an integer, as it does for the editor's checks."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


@dataclass(frozen=True)
class Param:
    kind: str  # int | float | bool | choice | shape
    default: Any = None  # None: required
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""

    def check(self, name: str, value: Any) -> Any:
        def bad(what: str) -> LayerError:
            return LayerError(f"{name}: must be {what}, got {show(value)}")

        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad("true or false")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise bad("one of " + ", ".join(self.choices))
            return value
        if self.kind == "shape":
            dims = [as_int(v) for v in value] if isinstance(value, list | tuple) else []
            if not dims or any(d is None or d < 1 for d in dims):
                raise bad("a list of positive integers, e.g. [1, 28, 28]")
            return tuple(dims)
        if self.kind == "int":
            if as_int(value) is None:
                raise bad(self._range("an integer"))
            value = as_int(value)
        elif self.kind == "float":
            if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
                raise bad(self._range("a number"))
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise bad(self._range("an integer" if self.kind == "int" else "a number"))
        return value

    def _range(self, what: str) -> str:
        if self.min is not None and self.max is not None:
            return f"{what} from {self.min:g} to {self.max:g}"
        if self.min is not None:
            return f"{what} ≥ {self.min:g}"
        return what


@dataclass(frozen=True)
class Result:
    shape: Shape
    params: int = 0
    flops: int = 0


@dataclass(frozen=True)
class Layer:
    name: str
    category: str
    params: dict[str, Param] = field(default_factory=dict)
    inputs: tuple[int, int | None] = (1, 1)  # min, max (None: any)
    infer: Callable[[list[Shape], dict[str, Any]], Result] = lambda s, p: Result(s[0])
    doc: str = ""

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            allowed = ", ".join(self.params) or "none"
            raise LayerError(f"unknown parameter {unknown[0]!r}; {self.name} takes: {allowed}")
        out = {}
        for name, spec in self.params.items():
            if name not in params or params[name] is None:
                if spec.default is None:
                    raise LayerError(f"{name}: required")
                out[name] = spec.default
            else:
                out[name] = spec.check(name, params[name])
        return out


def _prod(shape: Shape) -> int:
    return math.prod(shape) if shape else 1


def _need_dims(layer: str, shape: Shape, dims: int, what: str, hint: str = "") -> None:
    if len(shape) != dims:
        raise LayerError(
            f"{layer} expects a {dims}-D input ({what}), got {shape}"
            + (f": {hint}" if hint else "")
        )


def _conv_out(n: int, k: int, s: int, p: int, d: int, layer: str) -> int:
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    if out < 1:
        raise LayerError(
            f"{layer}: the input is too small ({n}) for kernel {k} with padding {p} and "
            f"dilation {d}: lower the kernel size or add padding"
        )
    return out


# -- inference functions --------------------------------------------------------------------
def _input(shapes: list[Shape], p: dict[str, Any]) -> Result:
    return Result(tuple(p["shape"]))


def _linear(shapes: list[Shape], p: dict[str, Any]) -> Result:
    (s,) = shapes
    if len(s) < 1:
        raise LayerError("Linear needs at least one dimension (features)")
    if len(s) > 2:
        raise LayerError(
            f"Linear expects (features) or (sequence, features), got {s}: put a Flatten before it"
        )
    fin, fout = s[-1], p["out_features"]
    n = fin * fout + (fout if p["bias"] else 0)
    return Result((*s[:-1], fout), n, 2 * fin * fout * _prod(s[:-1]))


def _conv(dims: int) -> Callable[[list[Shape], dict[str, Any]], Result]:
    name = f"Conv{dims}d"

    def infer(shapes: list[Shape], p: dict[str, Any]) -> Result:
        (s,) = shapes
        what = "channels, length" if dims == 1 else "channels, height, width"
        hint = "an image needs [channels, height, width]" if dims == 2 else ""
        _need_dims(name, s, dims + 1, what, hint)
        cin, cout, g = s[0], p["out_channels"], p["groups"]
        if cin % g or cout % g:
            raise LayerError(
                f"{name}: groups ({g}) must divide the input channels ({cin}) and out_channels ({cout})"
            )
        k = p["kernel_size"]
        spatial = tuple(
            _conv_out(n, k, p["stride"], p["padding"], p["dilation"], name) for n in s[1:]
        )
        weights = cout * (cin // g) * k**dims
        n = weights + (cout if p["bias"] else 0)
        return Result((cout, *spatial), n, 2 * weights * _prod(spatial))

    return infer


def _norm(dims: int, name: str) -> Callable[[list[Shape], dict[str, Any]], Result]:
    def infer(shapes: list[Shape], p: dict[str, Any]) -> Result:
        (s,) = shapes
        if name == "BatchNorm1d" and len(s) not in (1, 2):
            raise LayerError(f"BatchNorm1d expects (features) or (channels, length), got {s}")
        if name == "BatchNorm2d":
            _need_dims(name, s, 3, "channels, height, width")
        c = s[0]
        return Result(s, 2 * c if p["affine"] else 0, 4 * _prod(s))

    return infer


def _layernorm(shapes: list[Shape], p: dict[str, Any]) -> Result:
    (s,) = shapes
    if not s:
        raise LayerError("LayerNorm needs at least one dimension")
    return Result(s, 2 * s[-1] if p["elementwise_affine"] else 0, 5 * _prod(s))


def _elementwise(cost: int) -> Callable[[list[Shape], dict[str, Any]], Result]:
    def infer(shapes: list[Shape], p: dict[str, Any]) -> Result:
        return Result(shapes[0], 0, cost * _prod(shapes[0]))

    return infer


def _softmax(shapes: list[Shape], p: dict[str, Any]) -> Result:
    (s,) = shapes
    d = p["dim"]
    if not -len(s) <= d < len(s):
        raise LayerError(f"Softmax: dim {d} is out of range for a {len(s)}-D input {s}")
    return Result(s, 0, 3 * _prod(s))


def _pool(name: str) -> Callable[[list[Shape], dict[str, Any]], Result]:
    def infer(shapes: list[Shape], p: dict[str, Any]) -> Result:
        (s,) = shapes
        _need_dims(name, s, 3, "channels, height, width")
        k = p["kernel_size"]
        stride = p["stride"] or k
        if p["padding"] * 2 > k:
            raise LayerError(
                f"{name}: padding ({p['padding']}) must be at most half the kernel ({k})"
            )
        spatial = tuple(_conv_out(n, k, stride, p["padding"], 1, name) for n in s[1:])
        return Result((s[0], *spatial), 0, k * k * s[0] * _prod(spatial))

    return infer


def _adaptive(shapes: list[Shape], p: dict[str, Any]) -> Result:
    (s,) = shapes
    _need_dims("AdaptiveAvgPool2d", s, 3, "channels, height, width")
    o = p["output_size"]
    return Result((s[0], o, o), 0, _prod(s))


def _flatten(shapes: list[Shape], p: dict[str, Any]) -> Result:
    return Result((_prod(shapes[0]),))


def _embedding(shapes: list[Shape], p: dict[str, Any]) -> Result:
    (s,) = shapes
    _need_dims("Embedding", s, 1, "sequence of token ids")
    return Result((s[0], p["embedding_dim"]), p["num_embeddings"] * p["embedding_dim"])


def _rnn(name: str, gates: int) -> Callable[[list[Shape], dict[str, Any]], Result]:
    def infer(shapes: list[Shape], p: dict[str, Any]) -> Result:
        (s,) = shapes
        _need_dims(name, s, 2, "sequence, features")
        length, fin = s
        h, layers, dirs = p["hidden_size"], p["num_layers"], 2 if p["bidirectional"] else 1
        n = 0
        for i in range(layers):
            inp = fin if i == 0 else h * dirs
            n += dirs * gates * (h * inp + h * h + 2 * h)
        return Result((length, h * dirs), n, 2 * n * length)

    return infer


def _attention(shapes: list[Shape], p: dict[str, Any]) -> Result:
    (s,) = shapes
    _need_dims("MultiheadAttention", s, 2, "sequence, embedding")
    length, e = s
    if e % p["num_heads"]:
        raise LayerError(
            f"MultiheadAttention: the embedding size ({e}) must be divisible by num_heads "
            f"({p['num_heads']})"
        )
    n = 4 * e * e + 4 * e
    return Result(s, n, 2 * 4 * e * e * length + 4 * length * length * e)


def _add(shapes: list[Shape], p: dict[str, Any]) -> Result:
    first = shapes[0]
    for i, s in enumerate(shapes[1:], 1):
        if s != first:
            raise LayerError(
                f"Add needs inputs of one shape, got {first} and {s} (input {i + 1}): "
                "project one branch (a Linear or a 1x1 Conv2d) to match"
            )
    return Result(first, 0, (len(shapes) - 1) * _prod(first))


def _concat(shapes: list[Shape], p: dict[str, Any]) -> Result:
    first = shapes[0]
    d = p["dim"]
    if not -len(first) <= d < len(first):
        raise LayerError(f"Concat: dim {d} is out of range for {len(first)}-D inputs")
    d %= len(first)
    for i, s in enumerate(shapes[1:], 1):
        if len(s) != len(first) or any(
            a != b for j, (a, b) in enumerate(zip(s, first, strict=True)) if j != d
        ):
            raise LayerError(
                f"Concat on dim {d} needs inputs equal in every other dimension, got {first} "
                f"and {s} (input {i + 1})"
            )
    out = list(first)
    out[d] = sum(s[d] for s in shapes)
    return Result(tuple(out))


# -- the set --------------------------------------------------------------------------------
POS = {"min": 1}


def _p(kind: str, default: Any = None, **kw: Any) -> Param:
    return Param(kind, default, **kw)


_CONV = {
    "out_channels": _p("int", **POS),
    "kernel_size": _p("int", 3, **POS),
    "stride": _p("int", 1, **POS),
    "padding": _p("int", 0, min=0),
    "dilation": _p("int", 1, **POS),
    "groups": _p("int", 1, **POS),
    "bias": _p("bool", True),
}
_POOL = {
    "kernel_size": _p("int", 2, **POS),
    "stride": _p("int", 0, min=0, doc="0: the kernel size"),
    "padding": _p("int", 0, min=0),
}
_RNN = {
    "hidden_size": _p("int", **POS),
    "num_layers": _p("int", 1, min=1, max=16),
    "bidirectional": _p("bool", False),
    "dropout": _p("float", 0.0, min=0, max=1),
}

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in [
        Layer(
            "Input",
            "io",
            {"shape": _p("shape")},
            (0, 0),
            _input,
            "the data, without the batch dimension",
        ),
        Layer("Output", "io", {}, (1, 1), doc="the network's output"),
        Layer(
            "Linear",
            "dense",
            {"out_features": _p("int", **POS), "bias": _p("bool", True)},
            infer=_linear,
        ),
        Layer("Conv1d", "convolution", dict(_CONV), infer=_conv(1)),
        Layer("Conv2d", "convolution", dict(_CONV), infer=_conv(2)),
        Layer(
            "BatchNorm1d",
            "normalization",
            {"affine": _p("bool", True)},
            infer=_norm(1, "BatchNorm1d"),
        ),
        Layer(
            "BatchNorm2d",
            "normalization",
            {"affine": _p("bool", True)},
            infer=_norm(2, "BatchNorm2d"),
        ),
        Layer(
            "LayerNorm", "normalization", {"elementwise_affine": _p("bool", True)}, infer=_layernorm
        ),
        Layer("ReLU", "activation", infer=_elementwise(1)),
        Layer("GELU", "activation", infer=_elementwise(8)),
        Layer("Sigmoid", "activation", infer=_elementwise(4)),
        Layer("Tanh", "activation", infer=_elementwise(4)),
        Layer("Softmax", "activation", {"dim": _p("int", -1)}, infer=_softmax),
        Layer("MaxPool2d", "pooling", dict(_POOL), infer=_pool("MaxPool2d")),
        Layer("AvgPool2d", "pooling", dict(_POOL), infer=_pool("AvgPool2d")),
        Layer(
            "AdaptiveAvgPool2d", "pooling", {"output_size": _p("int", 1, **POS)}, infer=_adaptive
        ),
        Layer("Flatten", "reshape", infer=_flatten),
        Layer("Dropout", "regularization", {"p": _p("float", 0.5, min=0, max=1)}),
        Layer(
            "Embedding",
            "sequence",
            {"num_embeddings": _p("int", **POS), "embedding_dim": _p("int", **POS)},
            infer=_embedding,
        ),
        Layer("LSTM", "sequence", dict(_RNN), infer=_rnn("LSTM", 4)),
        Layer("GRU", "sequence", dict(_RNN), infer=_rnn("GRU", 3)),
        Layer(
            "MultiheadAttention",
            "sequence",
            {"num_heads": _p("int", 1, **POS), "dropout": _p("float", 0.0, min=0, max=1)},
            infer=_attention,
            doc="self-attention over the sequence",
        ),
        Layer("Add", "merge", {}, (2, None), _add, "element-wise sum (residual connections)"),
        Layer("Concat", "merge", {"dim": _p("int", 0)}, (2, None), _concat),
    ]
}
