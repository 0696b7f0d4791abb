"""How long the graph checks take per change, as the editor runs them (on every edit) and
as Python runs them (widget sync, to_module): ``load`` + ``infer`` on residual networks of
growing size, in Python and in the browser's TypeScript port (under node), each against
parsing the same JSON document in the same runtime (the baseline: what any change costs
before checking anything).

    .venv/bin/python tests/bench/bench_graph.py [--sizes 10,100,500,2000] [--repeat 20]

Needs labextension/build.sh to have run (the TypeScript under labextension/lib-test/).
Prints a table, then ``--- json ---`` and one JSON object per size and runtime.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gpupool.graph import FORMAT, load  # noqa: E402

LIB = ROOT / "labextension" / "lib-test" / "graph" / "model.js"

NODE_BENCH = r"""
const { loadGraph, infer } = require(process.argv[1]);
const docs = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const repeat = Number(process.argv[3]);
const out = [];
for (const doc of docs) {
  const text = JSON.stringify(doc);
  const time = f => { const t = []; for (let i = 0; i < repeat; i++) { const s = process.hrtime.bigint(); f(); t.push(Number(process.hrtime.bigint() - s) / 1e6); } t.sort((a, b) => a - b); return t[Math.floor(t.length / 2)]; };
  let nodes = 0;
  const check = time(() => { const g = loadGraph(JSON.parse(text)); const inf = infer(g); nodes = Object.keys(inf.nodes).length; if (!inf.ok) throw new Error('not ok'); });
  const parse = time(() => JSON.parse(text));
  out.push({ nodes, check_ms: check, parse_ms: parse });
}
process.stdout.write(JSON.stringify(out));
"""


def residual(n_nodes: int) -> dict[str, Any]:
    """Input, then residual blocks (Linear, ReLU, Linear, Add) until about n_nodes, Output."""
    nodes = [{"id": "x", "type": "Input", "params": {"shape": [64]}}]
    edges = []
    prev, i = "x", 0
    while len(nodes) + 4 < n_nodes:
        a, r, b, s = f"a{i}", f"r{i}", f"b{i}", f"s{i}"
        nodes += [
            {"id": a, "type": "Linear", "params": {"out_features": 64}},
            {"id": r, "type": "ReLU", "params": {}},
            {"id": b, "type": "Linear", "params": {"out_features": 64}},
            {"id": s, "type": "Add", "params": {}},
        ]
        edges += [
            {"from": prev, "to": a},
            {"from": a, "to": r},
            {"from": r, "to": b},
            {"from": b, "to": s},
            {"from": prev, "to": s, "port": 1},
        ]
        prev, i = s, i + 1
    nodes.append({"id": "out", "type": "Output", "params": {}})
    edges.append({"from": prev, "to": "out"})
    return {"format": FORMAT, "name": f"residual-{n_nodes}", "nodes": nodes, "edges": edges}


def median_ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def python_side(docs: list[dict[str, Any]], repeat: int) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        text = json.dumps(doc)

        def check(text: str = text) -> None:
            inf = load(json.loads(text)).infer()
            assert inf.ok

        out.append(
            {
                "nodes": len(doc["nodes"]),
                "check_ms": median_ms(check, repeat),
                "parse_ms": median_ms(lambda text=text: json.loads(text), repeat),
            }
        )
    return out


def node_side(docs: list[dict[str, Any]], repeat: int) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if not node or not LIB.exists():
        raise SystemExit(f"needs node and {LIB} (run labextension/build.sh)")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(docs, f)
        f.flush()
        out = subprocess.run(
            [node, "-e", NODE_BENCH, str(LIB), f.name, str(repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,500,2000")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    docs = [residual(n) for n in sizes]
    rows = [("python", r) for r in python_side(docs, args.repeat)]
    rows += [("typescript", r) for r in node_side(docs, args.repeat)]
    print(f"{'runtime':<11} {'nodes':>6} {'check ms':>9} {'parse ms':>9} {'ratio':>7}")
    results = []
    for runtime, r in rows:
        ratio = r["check_ms"] / r["parse_ms"] if r["parse_ms"] else float("inf")
        print(
            f"{runtime:<11} {r['nodes']:>6} {r['check_ms']:>9.3f} {r['parse_ms']:>9.3f} "
            f"{ratio:>6.1f}x"
        )
        results.append({"runtime": runtime, **r, "ratio_to_parse": round(ratio, 2)})
    print("--- json ---")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
