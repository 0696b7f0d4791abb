/**
 * Edits to a graph document, pure: each takes a graph and returns a new one (the editor
 * keeps the old one for undo). Nothing here touches the DOM, so the rules are unit-tested
 * under node (src/test/graph.test.ts).
 */
import { LAYERS } from './layers';
import { FORMAT, Graph, GraphEdge, GraphNode, infer } from './model';

/** Parameters a new layer starts with, so that it is valid on the usual input. */
export const STARTER: Record<string, Record<string, unknown>> = {
  Input: { shape: [1, 28, 28] },
  Linear: { out_features: 64 },
  Conv1d: { out_channels: 16 },
  Conv2d: { out_channels: 16, padding: 1 },
  Embedding: { num_embeddings: 1000, embedding_dim: 64 },
  LSTM: { hidden_size: 64 },
  GRU: { hidden_size: 64 },
  MultiheadAttention: { num_heads: 4 }
};

export const NODE_W = 168;
export const NODE_H = 58;

export function emptyGraph(name = 'network'): Graph {
  return { format: FORMAT, name, nodes: [], edges: [] };
}

function clone(g: Graph): Graph {
  return JSON.parse(JSON.stringify(g));
}

export function freshId(g: Graph, type: string): string {
  const base = type.toLowerCase().replace(/[^a-z0-9_]/g, '');
  const used = new Set(g.nodes.map(n => n.id));
  for (let i = 1; ; i++) {
    const id = `${base}${i}`;
    if (!used.has(id)) {
      return id;
    }
  }
}

export function addNode(
  g: Graph,
  type: string,
  position: [number, number]
): { graph: Graph; id: string } {
  if (!(type in LAYERS)) {
    throw new Error(`unknown layer ${type}`);
  }
  const out = clone(g);
  const id = freshId(g, type);
  const node: GraphNode = {
    id,
    type,
    params: JSON.parse(JSON.stringify(STARTER[type] ?? {})),
    position: [Math.round(position[0]), Math.round(position[1])]
  };
  out.nodes.push(node);
  return { graph: out, id };
}

/** How many input ports to draw: the layer's maximum, or one free port past the last
 * connected one for layers that take any number (Add, Concat). */
export function portCount(g: Graph, node: GraphNode): number {
  const [lo, hi] = LAYERS[node.type]?.inputs ?? [1, 1];
  if (hi !== null) {
    return hi;
  }
  const used = g.edges.filter(e => e.to === node.id).map(e => e.port ?? 0);
  return Math.max(lo, used.length ? Math.max(...used) + 2 : 0);
}

/** Why `from` cannot feed input `port` of `to`, or null when it can. */
export function connectProblem(g: Graph, from: string, to: string, port: number): string | null {
  if (from === to) {
    return 'a node cannot feed itself';
  }
  const dst = g.nodes.find(n => n.id === to);
  if (!dst) {
    return `no node ${to}`;
  }
  if (LAYERS[dst.type]?.inputs[1] === 0) {
    return `${dst.type} takes no inputs`;
  }
  // would it close a loop? (is `to` upstream of `from`)
  const stack = [to];
  const seen = new Set<string>();
  while (stack.length) {
    const cur = stack.pop() as string;
    if (cur === from) {
      return 'this connection would make a loop';
    }
    if (!seen.has(cur)) {
      seen.add(cur);
      g.edges.filter(e => e.from === cur).forEach(e => stack.push(e.to));
    }
  }
  return null;
}

/** Connect `from` to input `port` of `to`; what was on that port is replaced. */
export function connect(g: Graph, from: string, to: string, port = 0): Graph {
  const problem = connectProblem(g, from, to, port);
  if (problem) {
    throw new Error(problem);
  }
  const out = clone(g);
  out.edges = out.edges.filter(e => !(e.to === to && (e.port ?? 0) === port));
  out.edges.push(port ? { from, to, port } : { from, to });
  return out;
}

/** Remove edges; the inputs after a removed port of a merge move down to close the gap. */
export function removeEdges(g: Graph, drop: (e: GraphEdge) => boolean): Graph {
  const out = clone(g);
  const removed = out.edges.filter(drop);
  out.edges = out.edges.filter(e => !drop(e));
  for (const r of removed) {
    const dst = out.nodes.find(n => n.id === r.to);
    if (dst && LAYERS[dst.type]?.inputs[1] === null) {
      out.edges = out.edges.map(e => {
        const p = e.port ?? 0;
        if (e.to === r.to && p > (r.port ?? 0)) {
          return p - 1 ? { ...e, port: p - 1 } : { from: e.from, to: e.to };
        }
        return e;
      });
    }
  }
  return out;
}

export function removeNode(g: Graph, id: string): Graph {
  const out = removeEdges(g, e => e.from === id || e.to === id);
  out.nodes = out.nodes.filter(n => n.id !== id);
  return out;
}

/** Set one parameter; undefined removes it (the layer's default applies). */
export function setParam(g: Graph, id: string, key: string, value: unknown): Graph {
  const out = clone(g);
  const node = out.nodes.find(n => n.id === id);
  if (!node) {
    throw new Error(`no node ${id}`);
  }
  if (value === undefined) {
    delete node.params[key];
  } else {
    node.params[key] = value;
  }
  return out;
}

export function renameNode(g: Graph, id: string, next: string): Graph {
  if (!/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(next)) {
    throw new Error('a name is letters, digits, _ or - (at most 64), not starting with a digit');
  }
  if (next !== id && g.nodes.some(n => n.id === next)) {
    throw new Error(`${next} is taken`);
  }
  const out = clone(g);
  out.nodes.forEach(n => n.id === id && (n.id = next));
  out.edges.forEach(e => {
    e.from = e.from === id ? next : e.from;
    e.to = e.to === id ? next : e.to;
  });
  return out;
}

export function moveNode(g: Graph, id: string, position: [number, number]): Graph {
  const out = clone(g);
  const node = out.nodes.find(n => n.id === id);
  if (node) {
    node.position = [Math.round(position[0]), Math.round(position[1])];
  }
  return out;
}

/** Left to right by depth (the longest path from an input), top to bottom within a column
 * in the order the nodes had; nodes in a loop go in a last column. Past `perRow` columns
 * the layout continues in a band below. */
export function autoLayout(g: Graph, perRow = 6): Graph {
  const out = clone(g);
  const order = infer(g).order;
  const depth: Record<string, number> = {};
  for (const id of order) {
    const ins = g.edges.filter(e => e.to === id);
    depth[id] = ins.length ? Math.max(...ins.map(e => (depth[e.from] ?? 0) + 1)) : 0;
  }
  const last = Math.max(0, ...Object.values(depth)) + 1;
  const columns: Record<number, GraphNode[]> = {};
  for (const n of out.nodes) {
    const d = depth[n.id] ?? last;
    (columns[d] ??= []).push(n);
  }
  // a long network wraps: `perRow` columns a band, bands downwards
  const tallest = Math.max(1, ...Object.values(columns).map(c => c.length));
  const band = tallest * (NODE_H + 36) + 40;
  for (const [d, nodes] of Object.entries(columns)) {
    const col = Number(d);
    const [x, y0] = [40 + (col % perRow) * (NODE_W + 84), 40 + Math.floor(col / perRow) * band];
    nodes
      .sort((a, b) => (a.position?.[1] ?? 0) - (b.position?.[1] ?? 0))
      .forEach((n, i) => (n.position = [x, y0 + i * (NODE_H + 36)]));
  }
  return out;
}

/** Positions for nodes that have none (a document written by hand or by a program). */
export function placeMissing(g: Graph): Graph {
  return g.nodes.some(n => !n.position) ? autoLayout(g) : g;
}
