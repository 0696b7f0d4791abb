"""The graph document and its checking.

A graph file (``*.gpgraph.json``)::

    {"format": "gpupool.graph/1",
     "name": "lenet",
     "nodes": [{"id": "in", "type": "Input", "params": {"shape": [1, 28, 28]},
                "position": [40, 60]}, ...],
     "edges": [{"from": "in", "to": "c1"}, {"from": "a", "to": "sum", "port": 1}, ...]}

``load`` checks the document's structure and raises :class:`GraphError` listing every
problem with its place ("nodes[3].params.out_features: must be an integer ≥ 1, got 0").
``infer`` walks the DAG in topological order and gives each node its output shape,
parameter count and FLOPs, or the reason it cannot take its input; nodes fed by a node in
error say so instead of inventing a shape. Shapes leave the batch dimension out.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .layers import LAYERS, LayerError, Result, Shape, as_int, show

FORMAT = "gpupool.graph/1"
ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
MAX_NODES = 2000


class GraphError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)  # as given, checked in infer
    position: tuple[float, float] | None = None
    label: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "params": dict(self.params)}
        if self.position is not None:
            out["position"] = list(self.position)
        if self.label is not None:
            out["label"] = self.label
        return out


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    port: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.src, "to": self.dst}
        if self.port:
            out["port"] = self.port
        return out


@dataclass(frozen=True)
class NodeInfo:
    shape: Shape | None = None
    params: int = 0
    flops: int = 0
    error: str | None = None
    resolved: dict[str, Any] = field(default_factory=dict)  # parameters with defaults


@dataclass(frozen=True)
class Inference:
    nodes: dict[str, NodeInfo]
    order: list[str]

    @property
    def ok(self) -> bool:
        return all(i.error is None for i in self.nodes.values())

    @property
    def errors(self) -> dict[str, str]:
        return {k: v.error for k, v in self.nodes.items() if v.error}

    @property
    def params(self) -> int:
        return sum(i.params for i in self.nodes.values())

    @property
    def flops(self) -> int:
        return sum(i.flops for i in self.nodes.values())

    def shape(self, node: str) -> Shape | None:
        return self.nodes[node].shape


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # the editor's view state and notes

    def node(self, nid: str) -> Node:
        return self._by_id[nid]

    def inputs_of(self, nid: str) -> list[Edge]:
        """The edges into a node, by port (document order among equal ports)."""
        return list(self._ins.get(nid, ()))

    def outputs_of(self, nid: str) -> list[Edge]:
        """The edges out of a node, in document order."""
        return list(self._outs.get(nid, ()))

    # indexes built once per graph (it is immutable): checking is linear in its size
    @cached_property
    def _by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    @cached_property
    def _ins(self) -> dict[str, list[Edge]]:
        ins: dict[str, list[Edge]] = {}
        for e in self.edges:
            ins.setdefault(e.dst, []).append(e)
        return {k: sorted(v, key=lambda e: e.port) for k, v in ins.items()}

    @cached_property
    def _outs(self) -> dict[str, list[Edge]]:
        outs: dict[str, list[Edge]] = {}
        for e in self.edges:
            outs.setdefault(e.src, []).append(e)
        return outs

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "name": self.name,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
        }
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    def infer(self) -> Inference:
        return infer(self)


def load(doc: Any) -> Graph:
    """A graph from its JSON document (already parsed); GraphError lists every problem."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise GraphError([f"a graph is a JSON object, got {type(doc).__name__}"])
    unknown = sorted(set(doc) - {"format", "name", "nodes", "edges", "meta"})
    if unknown:
        problems.append(f"unknown key {unknown[0]!r}; allowed: format, name, nodes, edges, meta")
    if doc.get("format") != FORMAT:
        problems.append(f"format: must be {FORMAT!r}, got {show(doc.get('format'))}")
    name = doc.get("name", "")
    if not isinstance(name, str):
        problems.append("name: must be a string")
        name = ""
    raw_nodes, raw_edges = doc.get("nodes"), doc.get("edges", [])
    if not isinstance(raw_nodes, list):
        raise GraphError([*problems, "nodes: must be a list"])
    if not isinstance(raw_edges, list):
        raise GraphError([*problems, "edges: must be a list"])
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        problems.append("meta: must be an object")
        meta = {}
    if len(raw_nodes) > MAX_NODES:
        raise GraphError([*problems, f"nodes: at most {MAX_NODES}, got {len(raw_nodes)}"])
    nodes: list[Node] = []
    seen: set[str] = set()
    for i, n in enumerate(raw_nodes):
        where = f"nodes[{i}]"
        if not isinstance(n, dict):
            problems.append(f"{where}: must be an object")
            continue
        extra = sorted(set(n) - {"id", "type", "params", "position", "label"})
        if extra:
            problems.append(
                f"{where}: unknown key {extra[0]!r}; allowed: id, type, params, position, label"
            )
        nid, typ, params = n.get("id"), n.get("type"), n.get("params", {})
        if not isinstance(nid, str) or not ID_RE.fullmatch(nid):
            problems.append(
                f"{where}.id: must be a name of letters, digits, _ or - (at most 64), got {show(nid)}"
            )
            continue
        where = f"nodes[{i}] ({nid})"
        if nid in seen:
            problems.append(f"{where}.id: {show(nid)} is used twice")
        seen.add(nid)
        if not isinstance(typ, str) or typ not in LAYERS:
            problems.append(f"{where}.type: unknown layer {show(typ)}; known: {', '.join(LAYERS)}")
        if not isinstance(params, dict):
            problems.append(f"{where}.params: must be an object")
            params = {}
        pos = n.get("position")
        position = None
        if pos is not None:
            if (
                isinstance(pos, list)
                and len(pos) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos)
            ):
                position = (float(pos[0]), float(pos[1]))
            else:
                problems.append(f"{where}.position: must be [x, y]")
        label = n.get("label")
        if label is not None and not isinstance(label, str):
            problems.append(f"{where}.label: must be a string")
            label = None
        nodes.append(Node(nid, str(typ), dict(params), position, label))
    edges: list[Edge] = []
    taken: set[tuple[str, int]] = set()
    for i, e in enumerate(raw_edges):
        where = f"edges[{i}]"
        if not isinstance(e, dict):
            problems.append(f"{where}: must be an object")
            continue
        extra = sorted(set(e) - {"from", "to", "port"})
        if extra:
            problems.append(f"{where}: unknown key {extra[0]!r}; allowed: from, to, port")
        src, dst, port = e.get("from"), e.get("to"), e.get("port", 0)
        if not isinstance(src, str) or src not in seen:
            problems.append(f"{where}.from: no node {show(src)}")
        if not isinstance(dst, str) or dst not in seen:
            problems.append(f"{where}.to: no node {show(dst)}")
        if as_int(port) is None or port < 0:
            problems.append(f"{where}.port: must be an integer ≥ 0, got {show(port)}")
            continue
        port = as_int(port)
        if src == dst:
            problems.append(f"{where}: a node cannot feed itself ({src})")
        if isinstance(dst, str) and (dst, port) in taken:
            problems.append(f"{where}: input {port} of {dst} is already connected")
        if isinstance(dst, str):
            taken.add((dst, port))
        if isinstance(src, str) and isinstance(dst, str) and src in seen and dst in seen:
            edges.append(Edge(src, dst, port))
    if problems:
        raise GraphError(problems)
    return Graph(tuple(nodes), tuple(edges), name, dict(meta))


def _order(g: Graph) -> list[str]:
    incoming = {n.id: 0 for n in g.nodes}
    for e in g.edges:
        incoming[e.dst] += 1
    ready = deque(n.id for n in g.nodes if incoming[n.id] == 0)
    out: list[str] = []
    while ready:
        nid = ready.popleft()
        out.append(nid)
        for e in g.outputs_of(nid):
            incoming[e.dst] -= 1
            if incoming[e.dst] == 0:
                ready.append(e.dst)
    return out


def infer(g: Graph) -> Inference:
    order = _order(g)
    info: dict[str, NodeInfo] = {}
    ordered = set(order)
    cyclic = [n.id for n in g.nodes if n.id not in ordered]
    for nid in cyclic:
        info[nid] = NodeInfo(error="part of a cycle: a network's connections must not loop back")
    for nid in order:
        node = g.node(nid)
        layer = LAYERS[node.type]
        try:
            params = layer.check_params(node.params)
        except LayerError as e:
            info[nid] = NodeInfo(error=str(e))
            continue
        ins = g.inputs_of(nid)
        lo, hi = layer.inputs
        if len(ins) < lo or (hi is not None and len(ins) > hi):
            want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            info[nid] = NodeInfo(
                error=f"{node.type} takes {want} input(s), {len(ins)} connected", resolved=params
            )
            continue
        ports = [e.port for e in ins]
        if ports != list(range(len(ins))):
            info[nid] = NodeInfo(
                error=f"inputs must use ports 0..{len(ins) - 1}, got {ports}", resolved=params
            )
            continue
        upstream = [info[e.src] for e in ins]
        if any(u.shape is None for u in upstream):
            bad = [e.src for e, u in zip(ins, upstream, strict=True) if u.shape is None]
            info[nid] = NodeInfo(error=f"waits for {', '.join(bad)} (in error)", resolved=params)
            continue
        try:
            r: Result = layer.infer([u.shape for u in upstream if u.shape is not None], params)
        except LayerError as e:
            info[nid] = NodeInfo(error=str(e), resolved=params)
            continue
        info[nid] = NodeInfo(r.shape, r.params, r.flops, None, params)
    return Inference(info, order)
