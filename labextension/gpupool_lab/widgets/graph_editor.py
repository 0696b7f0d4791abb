"""The GraphEditor widget: the lab's network-graph editor in a notebook cell, its graph
synced with Python."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from gpupool.graph import FORMAT, TEMPLATES, Graph, GraphError, load, template
from gpupool.graph.compile import to_code, to_module

STATIC = Path(__file__).parent / "static"


def _read(source: str | os.PathLike[str]) -> Graph:
    path = Path(source)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GraphError([f"{path}: not valid JSON ({e.msg} at line {e.lineno})"]) from None
    try:
        return load(doc)
    except GraphError as e:
        raise GraphError([f"{path}: {p}" for p in e.problems]) from None


class GraphEditor(anywidget.AnyWidget):
    """A canvas to build a network: drag layers from the palette, connect them, edit
    parameters; shapes, parameter count and FLOPs update as you build.

    ``GraphEditor()`` starts from an input and an output; ``GraphEditor(template="lenet")``
    from a template (``mlp``, ``lenet``, ``resnet``, ``transformer``);
    ``GraphEditor(graph=...)`` from a :class:`Graph`, a document (dict) or a graph file.
    """

    _esm = STATIC / "graph_editor.js"

    document = traitlets.Dict(help="the graph document, as in a .gpgraph.json file").tag(sync=True)
    templates = traitlets.Dict(help="name -> document, for the template menu").tag(sync=True)
    read_only = traitlets.Bool(False).tag(sync=True)
    height = traitlets.Int(520, help="pixels").tag(sync=True)

    def __init__(
        self,
        graph: Graph | dict[str, Any] | str | os.PathLike[str] | None = None,
        *,
        template: str | None = None,
        **kwargs: Any,
    ) -> None:
        if graph is not None and template is not None:
            raise ValueError("give a graph or a template, not both")
        if template is not None:
            g = _template(template)
        elif graph is None:
            g = _blank()
        elif isinstance(graph, Graph):
            g = graph
        elif isinstance(graph, dict):
            g = load(graph)
        else:
            g = _read(graph)
        templates = {name: fn().to_json() for name, fn in TEMPLATES.items()}
        super().__init__(document=g.to_json(), templates=templates, **kwargs)

    @traitlets.validate("document")
    def _valid(self, proposal: dict[str, Any]) -> dict[str, Any]:
        try:
            return load(proposal["value"]).to_json()
        except GraphError as e:
            raise traitlets.TraitError(f"not a graph: {e}") from None

    @property
    def graph(self) -> Graph:
        """The graph as it is on the canvas now."""
        return load(self.document)

    @graph.setter
    def graph(self, value: Graph | dict[str, Any]) -> None:
        self.document = (value if isinstance(value, Graph) else load(value)).to_json()

    def to_module(self) -> Any:
        """A ``torch.nn.Module`` for the graph (GraphError if a layer is in error)."""
        return to_module(self.graph)

    def to_code(self) -> str:
        """The graph as readable PyTorch code."""
        return to_code(self.graph)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph to a file (``.gpgraph.json`` is added when missing); the lab
        opens it in the same editor."""
        p = Path(path)
        if not p.name.endswith(".gpgraph.json"):
            p = p.with_name(p.name + ".gpgraph.json")
        p.write_text(json.dumps(self.document, indent=1) + "\n")
        return p

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the graph with a file's."""
        self.graph = _read(path)


def _template(name: str) -> Graph:
    try:
        return template(name)
    except KeyError:
        raise ValueError(f"no template {name!r}; known: {', '.join(TEMPLATES)}") from None


def _blank() -> Graph:
    return load(
        {
            "format": FORMAT,
            "name": "network",
            "nodes": [
                {
                    "id": "input",
                    "type": "Input",
                    "params": {"shape": [1, 28, 28]},
                    "position": [40, 80],
                },
                {"id": "output", "type": "Output", "params": {}, "position": [520, 80]},
            ],
            "edges": [],
        }
    )
