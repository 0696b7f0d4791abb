import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  addNode,
  autoLayout,
  connect,
  connectProblem,
  portCount,
  removeEdges,
  removeNode,
  renameNode,
  setParam
} from '../graph/edit';
import { History } from '../graph/history';
import { FORMAT, Graph, infer, inputsOf, loadGraph } from '../graph/model';

const chain = (): Graph =>
  loadGraph({
    format: FORMAT,
    name: 't',
    nodes: [
      { id: 'in', type: 'Input', params: { shape: [3, 8, 8] } },
      { id: 'c', type: 'Conv2d', params: { out_channels: 4, padding: 1 } },
      { id: 'out', type: 'Output', params: {} }
    ],
    edges: [
      { from: 'in', to: 'c' },
      { from: 'c', to: 'out' }
    ]
  });

test('a new layer gets a fresh id and starter parameters that work on the usual input', () => {
  const g = chain();
  const { graph, id } = addNode(g, 'Conv2d', [10.4, 20.6]);
  assert.equal(id, 'conv2d1');
  const node = graph.nodes.find(n => n.id === id)!;
  assert.deepEqual(node.position, [10, 21]);
  assert.deepEqual(node.params, { out_channels: 16, padding: 1 });
  assert.equal(g.nodes.length, 3, 'the old graph is untouched');
  assert.equal(addNode(graph, 'Conv2d', [0, 0]).id, 'conv2d2');
  assert.throws(() => addNode(g, 'Nope', [0, 0]), /unknown layer Nope/);
});

test('connecting replaces what was on the port and refuses loops and self-feeding', () => {
  let g = addNode(chain(), 'ReLU', [0, 0]).graph;
  g = connect(g, 'in', 'relu1');
  g = connect(g, 'c', 'relu1'); // port 0 again: replaces in -> relu1
  assert.deepEqual(inputsOf(g, 'relu1'), [{ from: 'c', to: 'relu1' }]);
  assert.equal(connectProblem(g, 'relu1', 'c', 0), 'this connection would make a loop');
  assert.equal(connectProblem(g, 'c', 'c', 0), 'a node cannot feed itself');
  assert.equal(connectProblem(g, 'c', 'in', 0), 'Input takes no inputs');
  assert.throws(() => connect(g, 'relu1', 'in'), /Input takes no inputs/);
});

test('merges grow a free port and close gaps when an input goes', () => {
  let g = addNode(chain(), 'Add', [0, 0]).graph;
  const add = () => g.nodes.find(n => n.id === 'add1')!;
  assert.equal(portCount(g, add()), 2);
  g = connect(g, 'c', 'add1', 0);
  g = connect(g, 'c', 'add1', 1);
  assert.equal(portCount(g, add()), 3);
  g = connect(g, 'c', 'add1', 2);
  g = removeEdges(g, e => e.to === 'add1' && (e.port ?? 0) === 0);
  assert.deepEqual(
    inputsOf(g, 'add1').map(e => e.port ?? 0),
    [0, 1]
  );
  assert.equal(infer(g).nodes['add1'].error, null);
});

test('removing a node removes its edges; renaming follows them', () => {
  let g = removeNode(chain(), 'c');
  assert.deepEqual(g.edges, []);
  assert.match(infer(g).nodes['out'].error!, /Output takes 1 input\(s\), 0 connected/);
  g = renameNode(chain(), 'c', 'conv');
  assert.deepEqual(g.edges, [
    { from: 'in', to: 'conv' },
    { from: 'conv', to: 'out' }
  ]);
  assert.throws(() => renameNode(g, 'conv', 'in'), /in is taken/);
  assert.throws(() => renameNode(g, 'conv', '1x'), /letters, digits/);
});

test('a parameter edit is checked by inference, not by the edit', () => {
  let g = setParam(chain(), 'c', 'out_channels', 0);
  assert.equal(infer(g).nodes['c'].error, 'out_channels: must be an integer ≥ 1, got 0');
  g = setParam(g, 'c', 'out_channels', undefined);
  assert.equal(infer(g).nodes['c'].error, 'out_channels: required');
  g = setParam(g, 'c', 'out_channels', 8);
  assert.deepEqual(infer(g).nodes['c'].shape, [8, 8, 8]);
});

test('auto layout goes by depth and wraps long chains into bands', () => {
  let g = chain();
  for (let i = 0; i < 8; i++) {
    const r = addNode(g, 'ReLU', [0, 0]);
    g = connect(r.graph, i === 0 ? 'c' : `relu${i}`, r.id);
  }
  const laid = autoLayout(g, 4);
  const pos = (id: string) => laid.nodes.find(n => n.id === id)!.position!;
  assert.ok(pos('c')[0] > pos('in')[0]);
  assert.equal(pos('relu2')[1], pos('in')[1]); // depth 3: still the first band
  assert.ok(pos('relu3')[1] > pos('in')[1]); // depth 4: the next band, back on the left
  assert.equal(pos('relu3')[0], pos('in')[0]);
});

test('a 2,000-node chain written backwards is ordered from its input', () => {
  const nodes: any[] = [{ id: 'n0', type: 'Input', params: { shape: [16] } }];
  const edges: any[] = [];
  for (let i = 1; i < 2000; i++) {
    nodes.push({ id: `n${i}`, type: 'ReLU', params: {} });
    edges.push({ from: `n${i - 1}`, to: `n${i}` });
  }
  const g = loadGraph({ format: FORMAT, name: 'long', nodes: nodes.reverse(), edges });
  const inf = infer(g);
  assert.ok(inf.ok);
  assert.deepEqual(inf.order.slice(0, 2), ['n0', 'n1']);
  assert.equal(inf.order[1999], 'n1999');
});

test('history: undo and redo walk the snapshots, a new change clears redo', () => {
  const h = new History(3);
  assert.equal(h.undo('a'), null);
  h.push('a');
  h.push('b');
  assert.equal(h.undo('c'), 'b');
  assert.equal(h.undo('b'), 'a');
  assert.equal(h.redo('a'), 'b');
  h.push('b');
  assert.equal(h.canRedo, false);
  ['x', 'y', 'z', 'w'].forEach(s => h.push(s));
  let n = 0;
  while (h.undo('now') !== null) {
    n++;
  }
  assert.equal(n, 3, 'bounded');
});
