/**
 * The graph document and its checking, as gpupool.graph.model has it in Python:
 * `loadGraph` checks a parsed document and throws GraphError listing every problem with
 * its place; `infer` walks the DAG in topological order and gives each node its shape,
 * parameter count and FLOPs, or the reason it cannot take its input.
 */
import { asInt, checkParams, LayerError, LAYERS, Params, pyRepr, Shape } from './layers';

export const FORMAT = 'gpupool.graph/1';
const ID_RE = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;
const MAX_NODES = 2000;

export class GraphError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
  }
}

export interface GraphNode {
  id: string;
  type: string;
  params: Params;
  position?: [number, number];
  label?: string;
}

export interface GraphEdge {
  from: string;
  to: string;
  port?: number;
}

export interface Graph {
  format: string;
  name: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
  meta?: Record<string, unknown>;
}

export interface NodeInfo {
  shape: Shape | null;
  params: number;
  flops: number;
  error: string | null;
  resolved: Params;
}

export interface Inference {
  nodes: Record<string, NodeInfo>;
  order: string[];
  ok: boolean;
  params: number;
  flops: number;
}

function pyType(v: unknown): string {
  if (v === null) {
    return 'NoneType';
  }
  if (Array.isArray(v)) {
    return 'list';
  }
  switch (typeof v) {
    case 'string':
      return 'str';
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(v) ? 'int' : 'float';
    default:
      return 'dict';
  }
}

const get = (obj: Record<string, any>, key: string, dflt: unknown): any =>
  key in obj ? obj[key] : dflt;

const isObject = (v: unknown): v is Record<string, any> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function unknownKey(obj: Record<string, unknown>, allowed: string[]): string | null {
  const extra = Object.keys(obj)
    .filter(k => !allowed.includes(k))
    .sort();
  return extra.length ? extra[0] : null;
}

/** A graph from its parsed JSON document; GraphError lists every problem. */
export function loadGraph(doc: unknown): Graph {
  const problems: string[] = [];
  if (!isObject(doc)) {
    throw new GraphError([`a graph is a JSON object, got ${pyType(doc)}`]);
  }
  const top = unknownKey(doc, ['format', 'name', 'nodes', 'edges', 'meta']);
  if (top !== null) {
    problems.push(`unknown key ${pyRepr(top)}; allowed: format, name, nodes, edges, meta`);
  }
  if (doc.format !== FORMAT) {
    problems.push(`format: must be ${pyRepr(FORMAT)}, got ${pyRepr(doc.format)}`);
  }
  let name = get(doc, 'name', '');
  if (typeof name !== 'string') {
    problems.push('name: must be a string');
    name = '';
  }
  const rawNodes = doc.nodes;
  const rawEdges = get(doc, 'edges', []);
  if (!Array.isArray(rawNodes)) {
    throw new GraphError([...problems, 'nodes: must be a list']);
  }
  if (!Array.isArray(rawEdges)) {
    throw new GraphError([...problems, 'edges: must be a list']);
  }
  const meta = get(doc, 'meta', {});
  if (!isObject(meta)) {
    problems.push('meta: must be an object');
  }
  if (rawNodes.length > MAX_NODES) {
    throw new GraphError([...problems, `nodes: at most ${MAX_NODES}, got ${rawNodes.length}`]);
  }
  const nodes: GraphNode[] = [];
  const seen = new Set<string>();
  rawNodes.forEach((n: unknown, i: number) => {
    let where = `nodes[${i}]`;
    if (!isObject(n)) {
      problems.push(`${where}: must be an object`);
      return;
    }
    const extra = unknownKey(n, ['id', 'type', 'params', 'position', 'label']);
    if (extra !== null) {
      problems.push(
        `${where}: unknown key ${pyRepr(extra)}; allowed: id, type, params, position, label`
      );
    }
    const nid = n.id;
    const typ = n.type;
    let params = get(n, 'params', {});
    if (typeof nid !== 'string' || !ID_RE.test(nid)) {
      problems.push(
        `${where}.id: must be a name of letters, digits, _ or - (at most 64), got ${pyRepr(nid)}`
      );
      return;
    }
    where = `nodes[${i}] (${nid})`;
    if (seen.has(nid)) {
      problems.push(`${where}.id: ${pyRepr(nid)} is used twice`);
    }
    seen.add(nid);
    if (typeof typ !== 'string' || !(typ in LAYERS)) {
      problems.push(
        `${where}.type: unknown layer ${pyRepr(typ)}; known: ${Object.keys(LAYERS).join(', ')}`
      );
    }
    if (!isObject(params)) {
      problems.push(`${where}.params: must be an object`);
      params = {};
    }
    const pos = n.position;
    let position: [number, number] | undefined;
    if (pos !== undefined && pos !== null) {
      if (Array.isArray(pos) && pos.length === 2 && pos.every(v => typeof v === 'number')) {
        position = [pos[0], pos[1]];
      } else {
        problems.push(`${where}.position: must be [x, y]`);
      }
    }
    const node: GraphNode = { id: nid, type: String(typ), params: { ...params } };
    if (position) {
      node.position = position;
    }
    const label = get(n, 'label', null);
    if (label !== null && typeof label !== 'string') {
      problems.push(`${where}.label: must be a string`);
    } else if (label !== null) {
      node.label = label;
    }
    nodes.push(node);
  });
  const edges: GraphEdge[] = [];
  const taken = new Set<string>();
  rawEdges.forEach((e: unknown, i: number) => {
    const where = `edges[${i}]`;
    if (!isObject(e)) {
      problems.push(`${where}: must be an object`);
      return;
    }
    const extra = unknownKey(e, ['from', 'to', 'port']);
    if (extra !== null) {
      problems.push(`${where}: unknown key ${pyRepr(extra)}; allowed: from, to, port`);
    }
    const src = e.from;
    const dst = e.to;
    const rawPort = get(e, 'port', 0);
    const srcOk = typeof src === 'string' && seen.has(src);
    const dstOk = typeof dst === 'string' && seen.has(dst);
    if (!srcOk) {
      problems.push(`${where}.from: no node ${pyRepr(src)}`);
    }
    if (!dstOk) {
      problems.push(`${where}.to: no node ${pyRepr(dst)}`);
    }
    const port = asInt(rawPort);
    if (port === null || port < 0) {
      problems.push(`${where}.port: must be an integer ≥ 0, got ${pyRepr(rawPort)}`);
      return;
    }
    if (src === dst) {
      problems.push(`${where}: a node cannot feed itself (${src})`);
    }
    if (typeof dst === 'string') {
      if (taken.has(`${dst}\u0000${port}`)) {
        problems.push(`${where}: input ${port} of ${dst} is already connected`);
      }
      taken.add(`${dst}\u0000${port}`);
    }
    if (srcOk && dstOk) {
      edges.push(port ? { from: src, to: dst, port } : { from: src, to: dst });
    }
  });
  if (problems.length) {
    throw new GraphError(problems);
  }
  const graph: Graph = { format: FORMAT, name, nodes, edges };
  if (isObject(doc.meta)) {
    graph.meta = doc.meta;
  }
  return graph;
}

export function inputsOf(g: Graph, nid: string): GraphEdge[] {
  return g.edges.filter(e => e.to === nid).sort((a, b) => (a.port ?? 0) - (b.port ?? 0));
}

/** Each node's incoming edges (by port, then document order) and outgoing edges
 * (document order), built once: inference is linear in the size of the graph. */
function adjacency(g: Graph): { ins: Map<string, GraphEdge[]>; outs: Map<string, GraphEdge[]> } {
  const ins = new Map<string, GraphEdge[]>(g.nodes.map(n => [n.id, []]));
  const outs = new Map<string, GraphEdge[]>(g.nodes.map(n => [n.id, []]));
  for (const e of g.edges) {
    ins.get(e.to)?.push(e);
    outs.get(e.from)?.push(e);
  }
  ins.forEach(list => list.sort((a, b) => (a.port ?? 0) - (b.port ?? 0)));
  return { ins, outs };
}

/** Kahn's algorithm; the ready queue in document order, as the Python does it. */
function topoOrder(g: Graph, outs: Map<string, GraphEdge[]>): string[] {
  const incoming = new Map<string, number>(g.nodes.map(n => [n.id, 0]));
  g.edges.forEach(e => incoming.set(e.to, (incoming.get(e.to) ?? 0) + 1));
  const ready = g.nodes.filter(n => incoming.get(n.id) === 0).map(n => n.id);
  const out: string[] = [];
  for (let head = 0; head < ready.length; head++) {
    const nid = ready[head];
    out.push(nid);
    for (const e of outs.get(nid) ?? []) {
      const left = (incoming.get(e.to) ?? 0) - 1;
      incoming.set(e.to, left);
      if (left === 0) {
        ready.push(e.to);
      }
    }
  }
  return out;
}

const info = (error: string, resolved: Params = {}): NodeInfo => ({
  shape: null,
  params: 0,
  flops: 0,
  error,
  resolved
});

export function infer(g: Graph): Inference {
  const { ins: incoming, outs } = adjacency(g);
  const order = topoOrder(g, outs);
  const nodes: Record<string, NodeInfo> = {};
  const inOrder = new Set(order);
  for (const n of g.nodes) {
    if (!inOrder.has(n.id)) {
      nodes[n.id] = info("part of a cycle: a network's connections must not loop back");
    }
  }
  const byId = new Map(g.nodes.map(n => [n.id, n]));
  for (const nid of order) {
    const node = byId.get(nid) as GraphNode;
    const layer = LAYERS[node.type];
    let params: Params;
    try {
      params = checkParams(layer, node.params);
    } catch (e) {
      nodes[nid] = info(errorText(e));
      continue;
    }
    const ins = incoming.get(nid) ?? [];
    const [lo, hi] = layer.inputs;
    if (ins.length < lo || (hi !== null && ins.length > hi)) {
      const want = lo === hi ? `${lo}` : hi === null ? `at least ${lo}` : `${lo} to ${hi}`;
      nodes[nid] = info(`${node.type} takes ${want} input(s), ${ins.length} connected`, params);
      continue;
    }
    const ports = ins.map(e => e.port ?? 0);
    if (ports.some((p, i) => p !== i)) {
      nodes[nid] = info(
        `inputs must use ports 0..${ins.length - 1}, got ${pyRepr(ports)}`,
        params
      );
      continue;
    }
    const upstream = ins.map(e => nodes[e.from]);
    if (upstream.some(u => u.shape === null)) {
      const bad = ins.filter((_e, i) => upstream[i].shape === null).map(e => e.from);
      nodes[nid] = info(`waits for ${bad.join(', ')} (in error)`, params);
      continue;
    }
    try {
      const r = layer.infer(
        upstream.map(u => u.shape as Shape),
        params
      );
      nodes[nid] = { shape: r.shape, params: r.params, flops: r.flops, error: null, resolved: params };
    } catch (e) {
      nodes[nid] = info(errorText(e), params);
    }
  }
  const all = Object.values(nodes);
  return {
    nodes,
    order,
    ok: all.every(i => i.error === null),
    params: all.reduce((a, i) => a + i.params, 0),
    flops: all.reduce((a, i) => a + i.flops, 0)
  };
}

function errorText(e: unknown): string {
  if (e instanceof LayerError) {
    return e.message;
  }
  throw e;
}
