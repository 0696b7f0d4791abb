/**
 * The layer set, as gpupool.graph.layers has it in Python: each layer's parameters
 * and their rules, how many inputs it takes, and what it makes of its input shapes (the
 * output shape, the parameter count, a FLOPs estimate). Shapes leave the batch out.
 *
 * This is a port, held to the Python by tests/unit/test_graph_conformance.py: the same
 * documents give the same shapes, counts and error messages, word for word. Change both.
 */

export type Shape = number[];

export class LayerError extends Error {}

/** Python's repr() for JSON values, so messages read the same as the Python ones. */
export function pyRepr(v: unknown): string {
  if (v === null || v === undefined) {
    return 'None';
  }
  if (typeof v === 'boolean') {
    return v ? 'True' : 'False';
  }
  if (typeof v === 'number') {
    return String(v);
  }
  if (typeof v === 'string') {
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    const body = v
      .replace(/\\/g, '\\\\')
      .replace(/\n/g, '\\n')
      .replace(/\t/g, '\\t')
      .replace(/\r/g, '\\r');
    return q + (q === "'" ? body.replace(/'/g, "\\'") : body) + q;
  }
  if (Array.isArray(v)) {
    return '[' + v.map(pyRepr).join(', ') + ']';
  }
  const entries = Object.entries(v as Record<string, unknown>);
  return '{' + entries.map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ') + '}';
}

/** A shape as Python prints a tuple: (16, 5, 5), (64,), (). */
export function fmtShape(s: Shape): string {
  return s.length === 1 ? `(${s[0]},)` : `(${s.join(', ')})`;
}

/** An integer, or null (an integral float counts, as JSON cannot tell 3 from 3.0). */
export function asInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}

export type ParamKind = 'int' | 'float' | 'bool' | 'choice' | 'shape';

export interface Param {
  kind: ParamKind;
  default: unknown; // null: required
  min?: number;
  max?: number;
  choices?: string[];
  doc?: string;
}

function range(p: Param, what: string): string {
  if (p.min !== undefined && p.max !== undefined) {
    return `${what} from ${p.min} to ${p.max}`;
  }
  if (p.min !== undefined) {
    return `${what} ≥ ${p.min}`;
  }
  return what;
}

export function checkParam(p: Param, name: string, value: unknown): unknown {
  const bad = (what: string) => new LayerError(`${name}: must be ${what}, got ${pyRepr(value)}`);
  if (p.kind === 'bool') {
    if (typeof value !== 'boolean') {
      throw bad('true or false');
    }
    return value;
  }
  if (p.kind === 'choice') {
    if (!(p.choices ?? []).includes(value as string)) {
      throw bad('one of ' + (p.choices ?? []).join(', '));
    }
    return value;
  }
  if (p.kind === 'shape') {
    const dims = Array.isArray(value) ? value.map(asInt) : [];
    if (!dims.length || dims.some(d => d === null || d < 1)) {
      throw bad('a list of positive integers, e.g. [1, 28, 28]');
    }
    return dims as number[];
  }
  if (p.kind === 'int' && asInt(value) === null) {
    throw bad(range(p, 'an integer'));
  }
  if (p.kind === 'float' && (typeof value !== 'number' || Number.isNaN(value))) {
    throw bad(range(p, 'a number'));
  }
  const n = value as number;
  if ((p.min !== undefined && n < p.min) || (p.max !== undefined && n > p.max)) {
    throw bad(range(p, p.kind === 'int' ? 'an integer' : 'a number'));
  }
  return n;
}

export interface Result {
  shape: Shape;
  params: number;
  flops: number;
}

export type Params = Record<string, any>;
type Infer = (shapes: Shape[], p: Params) => Result;

export interface Layer {
  name: string;
  category: string;
  params: Record<string, Param>;
  inputs: [number, number | null];
  infer: Infer;
  doc: string;
}

export function checkParams(layer: Layer, params: Params): Params {
  const unknown = Object.keys(params)
    .filter(k => !(k in layer.params))
    .sort();
  if (unknown.length) {
    const allowed = Object.keys(layer.params).join(', ') || 'none';
    throw new LayerError(
      `unknown parameter ${pyRepr(unknown[0])}; ${layer.name} takes: ${allowed}`
    );
  }
  const out: Params = {};
  for (const [name, spec] of Object.entries(layer.params)) {
    const v = params[name];
    if (v === undefined || v === null) {
      if (spec.default === null) {
        throw new LayerError(`${name}: required`);
      }
      out[name] = spec.default;
    } else {
      out[name] = checkParam(spec, name, v);
    }
  }
  return out;
}

const prod = (s: Shape) => s.reduce((a, b) => a * b, 1);
const res = (shape: Shape, params = 0, flops = 0): Result => ({ shape, params, flops });

function needDims(layer: string, s: Shape, dims: number, what: string, hint = ''): void {
  if (s.length !== dims) {
    throw new LayerError(
      `${layer} expects a ${dims}-D input (${what}), got ${fmtShape(s)}` + (hint ? `: ${hint}` : '')
    );
  }
}

function convOut(n: number, k: number, s: number, p: number, d: number, layer: string): number {
  const out = Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;
  if (out < 1) {
    throw new LayerError(
      `${layer}: the input is too small (${n}) for kernel ${k} with padding ${p} and ` +
        `dilation ${d}: lower the kernel size or add padding`
    );
  }
  return out;
}

const linear: Infer = ([s], p) => {
  if (s.length < 1) {
    throw new LayerError('Linear needs at least one dimension (features)');
  }
  if (s.length > 2) {
    throw new LayerError(
      `Linear expects (features) or (sequence, features), got ${fmtShape(s)}: put a Flatten before it`
    );
  }
  const fin = s[s.length - 1];
  const fout = p.out_features;
  const n = fin * fout + (p.bias ? fout : 0);
  return res([...s.slice(0, -1), fout], n, 2 * fin * fout * prod(s.slice(0, -1)));
};

function conv(dims: number): Infer {
  const name = `Conv${dims}d`;
  return ([s], p) => {
    const what = dims === 1 ? 'channels, length' : 'channels, height, width';
    const hint = dims === 2 ? 'an image needs [channels, height, width]' : '';
    needDims(name, s, dims + 1, what, hint);
    const [cin, cout, g] = [s[0], p.out_channels, p.groups];
    if (cin % g || cout % g) {
      throw new LayerError(
        `${name}: groups (${g}) must divide the input channels (${cin}) and out_channels (${cout})`
      );
    }
    const k = p.kernel_size;
    const spatial = s.slice(1).map(n => convOut(n, k, p.stride, p.padding, p.dilation, name));
    const weights = cout * Math.floor(cin / g) * k ** dims;
    return res([cout, ...spatial], weights + (p.bias ? cout : 0), 2 * weights * prod(spatial));
  };
}

function norm(name: string): Infer {
  return ([s], p) => {
    if (name === 'BatchNorm1d' && s.length !== 1 && s.length !== 2) {
      throw new LayerError(
        `BatchNorm1d expects (features) or (channels, length), got ${fmtShape(s)}`
      );
    }
    if (name === 'BatchNorm2d') {
      needDims(name, s, 3, 'channels, height, width');
    }
    return res(s, p.affine ? 2 * s[0] : 0, 4 * prod(s));
  };
}

const layernorm: Infer = ([s], p) => {
  if (!s.length) {
    throw new LayerError('LayerNorm needs at least one dimension');
  }
  return res(s, p.elementwise_affine ? 2 * s[s.length - 1] : 0, 5 * prod(s));
};

const elementwise =
  (cost: number): Infer =>
  ([s]) =>
    res(s, 0, cost * prod(s));

const softmax: Infer = ([s], p) => {
  const d = p.dim;
  if (!(-s.length <= d && d < s.length)) {
    throw new LayerError(
      `Softmax: dim ${d} is out of range for a ${s.length}-D input ${fmtShape(s)}`
    );
  }
  return res(s, 0, 3 * prod(s));
};

function pool(name: string): Infer {
  return ([s], p) => {
    needDims(name, s, 3, 'channels, height, width');
    const k = p.kernel_size;
    const stride = p.stride || k;
    if (p.padding * 2 > k) {
      throw new LayerError(`${name}: padding (${p.padding}) must be at most half the kernel (${k})`);
    }
    const spatial = s.slice(1).map(n => convOut(n, k, stride, p.padding, 1, name));
    return res([s[0], ...spatial], 0, k * k * s[0] * prod(spatial));
  };
}

const adaptive: Infer = ([s], p) => {
  needDims('AdaptiveAvgPool2d', s, 3, 'channels, height, width');
  return res([s[0], p.output_size, p.output_size], 0, prod(s));
};

const embedding: Infer = ([s], p) => {
  needDims('Embedding', s, 1, 'sequence of token ids');
  return res([s[0], p.embedding_dim], p.num_embeddings * p.embedding_dim);
};

function rnn(name: string, gates: number): Infer {
  return ([s], p) => {
    needDims(name, s, 2, 'sequence, features');
    const [length, fin] = s;
    const [h, layers, dirs] = [p.hidden_size, p.num_layers, p.bidirectional ? 2 : 1];
    let n = 0;
    for (let i = 0; i < layers; i++) {
      const inp = i === 0 ? fin : h * dirs;
      n += dirs * gates * (h * inp + h * h + 2 * h);
    }
    return res([length, h * dirs], n, 2 * n * length);
  };
}

const attention: Infer = ([s], p) => {
  needDims('MultiheadAttention', s, 2, 'sequence, embedding');
  const [length, e] = s;
  if (e % p.num_heads) {
    throw new LayerError(
      `MultiheadAttention: the embedding size (${e}) must be divisible by num_heads ` +
        `(${p.num_heads})`
    );
  }
  return res(s, 4 * e * e + 4 * e, 2 * 4 * e * e * length + 4 * length * length * e);
};

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((x, i) => x === b[i]);

const add: Infer = shapes => {
  const first = shapes[0];
  shapes.slice(1).forEach((s, j) => {
    if (!sameShape(s, first)) {
      throw new LayerError(
        `Add needs inputs of one shape, got ${fmtShape(first)} and ${fmtShape(s)} (input ${j + 2}): ` +
          'project one branch (a Linear or a 1x1 Conv2d) to match'
      );
    }
  });
  return res(first, 0, (shapes.length - 1) * prod(first));
};

const concat: Infer = (shapes, p) => {
  const first = shapes[0];
  let d = p.dim;
  if (!(-first.length <= d && d < first.length)) {
    throw new LayerError(`Concat: dim ${d} is out of range for ${first.length}-D inputs`);
  }
  d = ((d % first.length) + first.length) % first.length;
  shapes.slice(1).forEach((s, j) => {
    if (s.length !== first.length || s.some((a, i) => i !== d && a !== first[i])) {
      throw new LayerError(
        `Concat on dim ${d} needs inputs equal in every other dimension, got ${fmtShape(first)} ` +
          `and ${fmtShape(s)} (input ${j + 2})`
      );
    }
  });
  const out = [...first];
  out[d] = shapes.reduce((a, s) => a + s[d], 0);
  return res(out);
};

const P = (kind: ParamKind, dflt: unknown = null, extra: Partial<Param> = {}): Param => ({
  kind,
  default: dflt,
  ...extra
});
const POS = { min: 1 };
const CONV = () => ({
  out_channels: P('int', null, POS),
  kernel_size: P('int', 3, POS),
  stride: P('int', 1, POS),
  padding: P('int', 0, { min: 0 }),
  dilation: P('int', 1, POS),
  groups: P('int', 1, POS),
  bias: P('bool', true)
});
const POOL = () => ({
  kernel_size: P('int', 2, POS),
  stride: P('int', 0, { min: 0, doc: '0: the kernel size' }),
  padding: P('int', 0, { min: 0 })
});
const RNN = () => ({
  hidden_size: P('int', null, POS),
  num_layers: P('int', 1, { min: 1, max: 16 }),
  bidirectional: P('bool', false),
  dropout: P('float', 0.0, { min: 0, max: 1 })
});

function L(
  name: string,
  category: string,
  params: Record<string, Param> = {},
  infer: Infer = ([s]) => res(s),
  inputs: [number, number | null] = [1, 1],
  doc = ''
): Layer {
  return { name, category, params, infer, inputs, doc };
}

/** In the order of the Python table (error messages list them in this order). */
export const LAYERS: Record<string, Layer> = Object.fromEntries(
  [
    L('Input', 'io', { shape: P('shape') }, (_s, p) => res([...p.shape]), [0, 0], 'the data, without the batch dimension'),
    L('Output', 'io', {}, undefined, [1, 1], "the network's output"),
    L('Linear', 'dense', { out_features: P('int', null, POS), bias: P('bool', true) }, linear),
    L('Conv1d', 'convolution', CONV(), conv(1)),
    L('Conv2d', 'convolution', CONV(), conv(2)),
    L('BatchNorm1d', 'normalization', { affine: P('bool', true) }, norm('BatchNorm1d')),
    L('BatchNorm2d', 'normalization', { affine: P('bool', true) }, norm('BatchNorm2d')),
    L('LayerNorm', 'normalization', { elementwise_affine: P('bool', true) }, layernorm),
    L('ReLU', 'activation', {}, elementwise(1)),
    L('GELU', 'activation', {}, elementwise(8)),
    L('Sigmoid', 'activation', {}, elementwise(4)),
    L('Tanh', 'activation', {}, elementwise(4)),
    L('Softmax', 'activation', { dim: P('int', -1) }, softmax),
    L('MaxPool2d', 'pooling', POOL(), pool('MaxPool2d')),
    L('AvgPool2d', 'pooling', POOL(), pool('AvgPool2d')),
    L('AdaptiveAvgPool2d', 'pooling', { output_size: P('int', 1, POS) }, adaptive),
    L('Flatten', 'reshape', {}, ([s]) => res([prod(s)])),
    L('Dropout', 'regularization', { p: P('float', 0.5, { min: 0, max: 1 }) }),
    L(
      'Embedding',
      'sequence',
      { num_embeddings: P('int', null, POS), embedding_dim: P('int', null, POS) },
      embedding
    ),
    L('LSTM', 'sequence', RNN(), rnn('LSTM', 4)),
    L('GRU', 'sequence', RNN(), rnn('GRU', 3)),
    L(
      'MultiheadAttention',
      'sequence',
      { num_heads: P('int', 1, POS), dropout: P('float', 0.0, { min: 0, max: 1 }) },
      attention,
      [1, 1],
      'self-attention over the sequence'
    ),
    L('Add', 'merge', {}, add, [2, null], 'element-wise sum (residual connections)'),
    L('Concat', 'merge', { dim: P('int', 0) }, concat, [2, null])
  ].map(l => [l.name, l])
);
