"""The graph document's JSON Schema (draft 2020-12), made from the layer table, for tools
outside gpupool (editors, CI checks of graph files, other languages).

The schema checks the document's form and every layer's parameters. What needs the whole
graph (edges naming existing nodes, one edge per input, no loops, shapes) is
:func:`gpupool.graph.load` and ``infer``'s business: a document the schema refuses
is refused by them too (tested), not the other way round.
"""

from __future__ import annotations

from typing import Any

from .layers import LAYERS, Param
from .model import FORMAT, MAX_NODES

SCHEMA_ID = "urn:gpupool:graph:1"


def _param(p: Param) -> dict[str, Any]:
    out: dict[str, Any]
    if p.kind == "bool":
        out = {"type": "boolean"}
    elif p.kind == "choice":
        out = {"enum": list(p.choices)}
    elif p.kind == "shape":
        out = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}
    else:
        out = {"type": "integer" if p.kind == "int" else "number"}
        if p.min is not None:
            out["minimum"] = p.min
        if p.max is not None:
            out["maximum"] = p.max
    if p.default is not None:  # null, like leaving it out, means the default
        out = {"anyOf": [out, {"type": "null"}]}
        out["default"] = list(p.default) if isinstance(p.default, tuple) else p.default
    if p.doc:
        out["description"] = p.doc
    return out


def json_schema() -> dict[str, Any]:
    per_layer = []
    for name, layer in LAYERS.items():
        params: dict[str, Any] = {
            "type": "object",
            "properties": {k: _param(p) for k, p in layer.params.items()},
            "additionalProperties": False,
        }
        required = [k for k, p in layer.params.items() if p.default is None]
        if required:
            params["required"] = required
        per_layer.append(
            {
                "if": {"properties": {"type": {"const": name}}},
                "then": {
                    "properties": {"params": params},
                    **({"required": ["params"]} if required else {}),
                },
            }
        )
    node = {
        "type": "object",
        "required": ["id", "type"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]{0,63}$"},
            "type": {"enum": list(LAYERS)},
            "params": {"type": "object"},
            "position": {
                "anyOf": [
                    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                    {"type": "null"},
                ]
            },
            "label": {"type": ["string", "null"]},
        },
        "allOf": per_layer,
    }
    edge = {
        "type": "object",
        "required": ["from", "to"],
        "additionalProperties": False,
        "properties": {
            "from": {"type": "string"},
            "to": {"type": "string"},
            "port": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "gpupool network graph",
        "description": f"A network graph document, format {FORMAT} (*.gpgraph.json)",
        "type": "object",
        "required": ["format", "nodes"],
        "additionalProperties": False,
        "properties": {
            "format": {"const": FORMAT},
            "name": {"type": "string"},
            "nodes": {"type": "array", "maxItems": MAX_NODES, "items": node},
            "edges": {"type": "array", "items": edge},
            "meta": {"type": "object"},
        },
    }
