"""The browser's graph checks (labextension/src/graph, TypeScript, run here under node)
agree with Python's (gpupool.graph) on the same documents: the same problems for a
malformed document, and for a loaded one the same order, shapes, parameter counts, FLOPs
and error messages, word for word. The documents: the templates, every layer on inputs
of every rank with good and bad parameters, hand-written malformed documents, and a few
hundred random documents (random layers, parameters, wiring and junk), seeded.

Needs labextension/build.sh to have run (tests/run.sh does): it compiles the TypeScript
into labextension/lib-test/."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpupool.graph import FORMAT, LAYERS, TEMPLATES, GraphError, load, template

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "labextension" / "lib-test" / "tools" / "graph-check.js"


def python_verdict(doc: Any) -> dict[str, Any]:
    try:
        inf = load(doc).infer()
    except GraphError as e:
        return {"problems": e.problems}
    nodes = {
        nid: {
            "shape": list(i.shape) if i.shape is not None else None,
            "params": i.params,
            "flops": i.flops,
            "error": i.error,
        }
        for nid, i in inf.nodes.items()
    }
    return {"order": inf.order, "nodes": nodes, "params": inf.params, "flops": inf.flops}


def browser_verdicts(docs: list[Any], tmp: Path) -> list[dict[str, Any]]:
    if not CHECK.exists():
        pytest.fail(f"{CHECK} is missing: run labextension/build.sh (tests/run.sh does)")
    node = shutil.which("node")
    assert node, "node is needed (tests/run.sh installs it with the lab extension's build)"
    cases = tmp / "cases.json"
    cases.write_text(json.dumps(docs))
    out = subprocess.run([node, str(CHECK), str(cases)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def doc(nodes: list[dict[str, Any]], edges: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"format": FORMAT, "name": "case", "nodes": nodes, "edges": edges, **top}


def chain(shape: Any, typ: str, params: Any) -> dict[str, Any]:
    return doc(
        [
            {"id": "in", "type": "Input", "params": {"shape": shape}},
            {"id": "x", "type": typ, "params": params},
            {"id": "out", "type": "Output"},
        ],
        [{"from": "in", "to": "x"}, {"from": "x", "to": "out"}],
    )


SHAPES = [[7], [3, 10], [4, 9, 9], [2, 3, 8, 8]]
VALUES = [0, 1, 2, 3, -1, 5, 0.5, 1.5, 2.0, True, False, None, "3", [2], 100]


def layer_cases() -> list[dict[str, Any]]:
    docs = []
    for name, layer in LAYERS.items():
        if name in ("Input", "Output"):
            continue
        good = {k: 4 if p.default is None else p.default for k, p in layer.params.items()}
        for shape in SHAPES:
            docs.append(chain(shape, name, good))
            for key in layer.params:
                for v in VALUES:
                    docs.append(chain(shape, name, {**good, key: v}))
        docs.append(chain([4, 9, 9], name, {**good, "nope": 1}))
    return docs


def merge_cases() -> list[dict[str, Any]]:
    """Add and Concat over every pair of shapes, on every dim (and some out of range)."""
    shapes = [[3], [4], [3, 5], [3, 6], [4, 5], [2, 3, 3], [2, 4, 3], [2, 3, 4]]
    docs = []
    for a in shapes:
        for b in shapes:
            for typ, params in [("Add", {}), *[("Concat", {"dim": d}) for d in range(-4, 4)]]:
                docs.append(
                    doc(
                        [
                            {"id": "a", "type": "Input", "params": {"shape": a}},
                            {"id": "b", "type": "Input", "params": {"shape": b}},
                            {"id": "m", "type": typ, "params": params},
                        ],
                        [{"from": "a", "to": "m"}, {"from": "b", "to": "m", "port": 1}],
                    )
                )
    return docs


MALFORMED: list[Any] = [
    [],
    "graph",
    None,
    {},
    {"format": "gpupool.graph/0", "nodes": []},
    {"format": FORMAT, "nodes": {}, "edges": []},
    {"format": FORMAT, "nodes": [], "edges": {}},
    {"format": FORMAT, "nodes": [], "extra": 1, "name": 3},
    {"format": FORMAT, "nodes": [], "meta": []},
    {"format": FORMAT, "nodes": [], "edges": None},
    doc([1, {"id": "1bad", "type": "ReLU"}, {"id": "a\n", "type": "ReLU"}], []),
    doc([{"id": "a", "type": "Nope"}, {"id": "a", "type": ["ReLU"]}], []),
    doc([{"id": "a", "type": "ReLU", "params": [], "position": [1], "label": 3, "x": 0}], []),
    doc([{"id": "a", "type": "ReLU", "params": None, "position": [1, "2"]}], []),
    doc(
        [{"id": "a", "type": "Input", "params": {"shape": [3]}}, {"id": "b", "type": "ReLU"}],
        [
            {"from": "a", "to": "b"},
            {"from": "a", "to": "b"},
            {"from": "b", "to": "b", "port": 1},
            {"from": "x", "to": ["b"]},
            {"from": "a", "to": "b", "port": -1},
            {"from": "a", "to": "b", "port": 1.5},
            {"from": "a", "to": "b", "port": None, "weight": 2},
            "edge",
        ],
    ),
    # a cycle, and a node that waits for it
    doc(
        [
            {"id": "i", "type": "Input", "params": {"shape": [3]}},
            {"id": "a", "type": "Add"},
            {"id": "b", "type": "ReLU"},
            {"id": "o", "type": "Output"},
        ],
        [
            {"from": "i", "to": "a"},
            {"from": "b", "to": "a", "port": 1},
            {"from": "a", "to": "b"},
            {"from": "b", "to": "o"},
        ],
    ),
    # ports with a gap, too many and too few inputs, an Input fed by something
    doc(
        [
            {"id": "i", "type": "Input", "params": {"shape": [3]}},
            {"id": "j", "type": "Input", "params": {"shape": [3]}},
            {"id": "a", "type": "Add"},
            {"id": "c", "type": "Concat"},
            {"id": "r", "type": "ReLU"},
            {"id": "o", "type": "Output"},
        ],
        [
            {"from": "i", "to": "a"},
            {"from": "j", "to": "a", "port": 2},
            {"from": "i", "to": "c"},
            {"from": "i", "to": "r"},
            {"from": "j", "to": "r", "port": 1},
            {"from": "r", "to": "j"},
        ],
    ),
    # float dimensions that are integers, and ones that are not
    chain([3.0, 8, 8], "Conv2d", {"out_channels": 2.0}),
    chain([3.5], "ReLU", {}),
    chain([], "ReLU", {}),
    chain("3", "ReLU", {}),
]


def random_cases(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    names = list(LAYERS)
    docs = []
    for _ in range(count):
        n = rng.randint(1, 8)
        nodes = []
        for i in range(n):
            typ = rng.choice(names) if rng.random() > 0.02 else "Bogus"
            layer = LAYERS.get(typ)
            params: dict[str, Any] = {}
            if typ == "Input" or (i == 0 and rng.random() < 0.8):
                typ = "Input"
                params = {"shape": rng.choice([*SHAPES, [1], [5, 3], [16, 4, 4]])}
            elif layer:
                for key, p in layer.params.items():
                    if rng.random() < 0.6:
                        params[key] = (
                            rng.choice(VALUES)
                            if rng.random() < 0.2
                            else rng.choice([1, 2, 3, 4, 8])
                            if p.kind == "int"
                            else rng.choice([0.0, 0.25])
                            if p.kind == "float"
                            else rng.choice([True, False])
                        )
            nodes.append({"id": f"n{i}", "type": typ, "params": params})
        edges = []
        for i in range(1, n):
            lo, hi = LAYERS[nodes[i]["type"]].inputs if nodes[i]["type"] in LAYERS else (1, 1)
            wired = rng.randint(lo, hi or 3) if rng.random() < 0.85 else rng.randint(0, 3)
            for port in range(wired):
                src = rng.randrange(0, i) if rng.random() > 0.03 else i  # rarely a self-edge
                edges.append({"from": f"n{src}", "to": f"n{i}", **({"port": port} if port else {})})
        if rng.random() < 0.05 and n > 2:  # rarely a loop back
            edges.append({"from": f"n{n - 1}", "to": f"n{1}", "port": 5})
        docs.append(doc(nodes, edges))
    return docs


def compare(docs: list[Any], tmp: Path) -> None:
    theirs = browser_verdicts(docs, tmp)
    assert len(theirs) == len(docs)
    diffs = []
    for d, ours, other in zip(docs, (python_verdict(d) for d in docs), theirs, strict=True):
        if ours != other:
            diffs.append(f"document: {json.dumps(d)[:400]}\n  python: {ours}\n  browser: {other}")
    assert not diffs, f"{len(diffs)} of {len(docs)} disagree; first:\n" + "\n".join(diffs[:3])


def test_templates_agree(tmp_path: Path) -> None:
    docs = [template(name).to_json() for name in TEMPLATES]
    compare(docs, tmp_path)
    assert all("params" in v for v in browser_verdicts(docs, tmp_path))


def test_every_layer_with_good_and_bad_parameters_agrees(tmp_path: Path) -> None:
    docs = layer_cases()
    assert len(docs) > 1500
    compare(docs, tmp_path)


def test_merges_agree(tmp_path: Path) -> None:
    docs = merge_cases()
    compare(docs, tmp_path)
    errors = {python_verdict(d)["nodes"]["m"]["error"] is None for d in docs}
    assert errors == {True, False}


def test_malformed_documents_get_the_same_problems(tmp_path: Path) -> None:
    compare(MALFORMED, tmp_path)
    verdicts = [python_verdict(d) for d in MALFORMED]
    assert sum("problems" in v for v in verdicts) >= 14  # most are refused at load


def test_random_documents_agree(tmp_path: Path) -> None:
    docs = random_cases(seed=7, count=600)
    compare(docs, tmp_path)
    verdicts = [python_verdict(d) for d in docs]
    ok = sum(
        "nodes" in v and all(n["error"] is None for n in v["nodes"].values()) for v in verdicts
    )
    assert ok > 20 and len(docs) - ok > 100  # both valid and broken graphs were compared
