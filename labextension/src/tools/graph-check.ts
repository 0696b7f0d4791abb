/**
 * node lib-test/tools/graph-check.js CASES.json: for each graph document in CASES (a JSON
 * list), the browser-side checks' verdict as JSON on stdout: the problems `loadGraph`
 * found, or each node's shape, counts and error from `infer`. The Python tests compare it
 * with gpupool.graph's verdict on the same documents (tests/unit/test_graph_conformance.py).
 */
import { readFileSync } from 'fs';
import { GraphError, infer, loadGraph } from '../graph/model';

const docs: unknown[] = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = docs.map(doc => {
  try {
    const inf = infer(loadGraph(doc));
    const nodes: Record<string, unknown> = {};
    for (const [id, i] of Object.entries(inf.nodes)) {
      nodes[id] = { shape: i.shape, params: i.params, flops: i.flops, error: i.error };
    }
    return { order: inf.order, nodes, params: inf.params, flops: inf.flops };
  } catch (e) {
    if (e instanceof GraphError) {
      return { problems: e.problems };
    }
    return { crash: String(e) };
  }
});
process.stdout.write(JSON.stringify(out));
