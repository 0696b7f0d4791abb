/**
 * The network-graph editor: a palette of layers, an SVG canvas where layers are placed by
 * dragging and connected output-to-input, a form for the selected layer's parameters,
 * undo/redo, zoom and auto layout. Shapes show on the edges, a layer that cannot take its
 * input is marked with the reason, and the parameter count and FLOPs update as you build.
 *
 * Plain DOM, no framework: the same component runs in JupyterLab's document editor for
 * graph files (graph/document.ts) and in the notebook widget (widgets/graph_editor.ts).
 */
import {
  addNode,
  autoLayout,
  connect,
  connectProblem,
  moveNode,
  NODE_H,
  NODE_W,
  placeMissing,
  portCount,
  removeEdges,
  removeNode,
  renameNode,
  setParam
} from './edit';
import { injectStyle } from '../dom';
import { History } from './history';
import { fmtShape, LAYERS, Param } from './layers';
import { Graph, GraphEdge, GraphNode, infer, Inference, inputsOf } from './model';
import { EDITOR_CSS } from './style';

const SVG = 'http://www.w3.org/2000/svg';

export interface EditorOptions {
  readOnly?: boolean;
  /** name -> graph document, for the template menu */
  templates?: () => Promise<Record<string, Graph>>;
  /** called after every change the user makes (not after setGraph) */
  onChange?: (graph: Graph) => void;
}

type Selection = { kind: 'node'; id: string } | { kind: 'edge'; index: number } | null;

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatFlops(n: number): string {
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k']
  ];
  for (const [size, unit] of units) {
    if (n >= size) {
      return `${(n / size).toFixed(n / size >= 100 ? 0 : 1)} ${unit}FLOPs`;
    }
  }
  return `${n} FLOPs`;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text = ''
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, v);
  }
  if (text) {
    e.textContent = text;
  }
  return e;
}

function svg(tag: string, attrs: Record<string, string | number> = {}): SVGElement {
  const e = document.createElementNS(SVG, tag) as SVGElement;
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, String(v));
  }
  return e;
}

export class GraphEditor {
  readonly node: HTMLElement;
  private g: Graph;
  private inf: Inference;
  private history = new History();
  private selection: Selection = null;
  private view = { x: 0, y: 0, k: 1 };
  /** fit the graph to the canvas as it resizes, until the user zooms or pans */
  private autoFit = true;
  private resizeObserver: ResizeObserver | null = null;
  private readOnlyFlag: boolean;
  private svgEl: SVGSVGElement;
  private viewport: SVGGElement;
  private draft: SVGPathElement;
  private inspector: HTMLElement;
  private summary: HTMLElement;
  private status: HTMLElement;
  private banner: HTMLElement;
  private templateSelect: HTMLSelectElement;
  private undoButton: HTMLButtonElement;
  private redoButton: HTMLButtonElement;
  private layoutButton: HTMLButtonElement;
  private gesture:
    | { kind: 'move'; id: string; dx: number; dy: number; before: string; moved: boolean }
    | { kind: 'connect'; from: string }
    | { kind: 'pan'; x: number; y: number; vx: number; vy: number }
    | null = null;

  constructor(graph: Graph, private options: EditorOptions = {}) {
    injectStyle('gpupool-graph-style', EDITOR_CSS);
    this.g = placeMissing(graph);
    this.inf = infer(this.g);
    this.readOnlyFlag = !!options.readOnly;
    this.node = el('div', { class: 'gp-graph', tabindex: '0' });

    const bar = el('div', { class: 'gp-graph-toolbar' });
    this.templateSelect = el('select', { class: 'gp-graph-template', title: 'Start from a template' });
    this.templateSelect.appendChild(el('option', { value: '' }, 'Template…'));
    this.templateSelect.addEventListener('change', () => void this.useTemplate());
    const button = (label: string, title: string, action: () => void, cls = '') => {
      const b = el('button', { class: `gp-graph-btn ${cls}`, title, type: 'button' }, label);
      b.addEventListener('click', () => {
        action();
        this.node.focus();
      });
      bar.appendChild(b);
      return b;
    };
    bar.appendChild(this.templateSelect);
    this.undoButton = button('↶', 'Undo (Ctrl+Z)', () => this.undo(), 'gp-undo');
    this.redoButton = button('↷', 'Redo (Ctrl+Shift+Z)', () => this.redo(), 'gp-redo');
    button('−', 'Zoom out', () => this.zoomBy(1 / 1.25), 'gp-zoom-out');
    button('+', 'Zoom in', () => this.zoomBy(1.25), 'gp-zoom-in');
    button('Fit', 'Fit the graph in view', () => this.fit(), 'gp-fit');
    this.layoutButton = button('Auto layout', 'Arrange left to right', () => {
      this.apply(autoLayout(this.g));
      this.fit();
    }, 'gp-layout');
    this.summary = el('span', { class: 'gp-graph-summary', 'data-testid': 'graph-summary' });
    bar.appendChild(this.summary);
    this.banner = el('div', { class: 'gp-graph-banner' });

    const body = el('div', { class: 'gp-graph-body' });
    const palette = el('div', { class: 'gp-graph-palette' });
    const categories: Record<string, string[]> = {};
    Object.values(LAYERS).forEach(l => (categories[l.category] ??= []).push(l.name));
    for (const [cat, names] of Object.entries(categories)) {
      palette.appendChild(el('div', { class: 'gp-graph-palette-cat' }, cat));
      for (const name of names) {
        const item = el('div', {
          class: 'gp-graph-palette-item',
          draggable: 'true',
          'data-layer': name,
          title: LAYERS[name].doc || `add a ${name} (drag onto the canvas, or click)`
        }, name);
        item.addEventListener('dragstart', e => {
          e.dataTransfer?.setData('application/x-gpupool-layer', name);
          e.dataTransfer?.setData('text/plain', name);
        });
        item.addEventListener('click', () => this.addAtFreeSpot(name));
        palette.appendChild(item);
      }
    }

    const canvas = el('div', { class: 'gp-graph-canvas', 'data-testid': 'graph-canvas' });
    this.svgEl = svg('svg', { class: 'gp-graph-svg' }) as SVGSVGElement;
    const defs = svg('defs');
    const marker = svg('marker', {
      id: 'gp-arrow',
      viewBox: '0 0 10 10',
      refX: 9,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: 'auto-start-reverse'
    });
    marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'gp-arrow' }));
    defs.appendChild(marker);
    this.svgEl.appendChild(defs);
    this.viewport = svg('g', { class: 'gp-viewport' }) as SVGGElement;
    this.draft = svg('path', { class: 'gp-draft' }) as SVGPathElement;
    this.svgEl.appendChild(this.viewport);
    this.svgEl.appendChild(this.draft);
    canvas.appendChild(this.svgEl);
    if (typeof ResizeObserver !== 'undefined') {
      this.resizeObserver = new ResizeObserver(() => this.autoFit && this.fit(true));
      this.resizeObserver.observe(canvas);
    }
    canvas.addEventListener('dragover', e => {
      if (!this.readOnlyFlag) {
        e.preventDefault();
      }
    });
    canvas.addEventListener('drop', e => {
      const type = e.dataTransfer?.getData('application/x-gpupool-layer');
      if (type && type in LAYERS && !this.readOnlyFlag) {
        e.preventDefault();
        const [x, y] = this.toGraph(e.clientX, e.clientY);
        this.add(type, [x - NODE_W / 2, y - NODE_H / 2]);
      }
    });
    this.svgEl.addEventListener('pointerdown', e => this.pointerDown(e));
    this.svgEl.addEventListener('pointermove', e => this.pointerMove(e));
    this.svgEl.addEventListener('pointerup', e => this.pointerUp(e));
    this.svgEl.addEventListener(
      'wheel',
      e => {
        e.preventDefault();
        const rect = this.svgEl.getBoundingClientRect();
        this.zoomBy(Math.exp(-e.deltaY / 400), e.clientX - rect.left, e.clientY - rect.top);
      },
      { passive: false }
    );

    this.inspector = el('div', { class: 'gp-graph-inspector', 'data-testid': 'graph-inspector' });
    body.appendChild(palette);
    body.appendChild(canvas);
    body.appendChild(this.inspector);
    this.status = el('div', { class: 'gp-graph-status', role: 'status' });
    this.node.appendChild(bar);
    this.node.appendChild(this.banner);
    this.node.appendChild(body);
    this.node.appendChild(this.status);
    this.node.addEventListener('keydown', e => this.keyDown(e));
    this.readOnly = this.readOnlyFlag;
    this.render();
    void this.loadTemplates();
  }

  // -- the document ---------------------------------------------------------------------
  get graph(): Graph {
    return this.g;
  }

  get inference(): Inference {
    return this.inf;
  }

  /** Replace the document from outside (a file reloaded, Python set it): no onChange. */
  setGraph(graph: Graph, keepHistory = false): void {
    if (JSON.stringify(graph) === JSON.stringify(this.g)) {
      return;
    }
    if (!keepHistory) {
      this.history.clear();
    }
    this.g = placeMissing(graph);
    if (this.selection?.kind === 'node' && !this.g.nodes.some(n => n.id === (this.selection as any).id)) {
      this.selection = null;
    }
    this.render();
  }

  get readOnly(): boolean {
    return this.readOnlyFlag;
  }

  set readOnly(v: boolean) {
    this.readOnlyFlag = v;
    this.node.classList.toggle('gp-readonly', v);
    this.banner.textContent = v ? 'Read-only: this file cannot be written. Changes are off.' : '';
    this.banner.style.display = v ? '' : 'none';
    this.render();
  }

  /** Apply a change the user made: remember the state before it, redraw, tell the host. */
  private apply(next: Graph): void {
    if (this.readOnlyFlag) {
      return;
    }
    const before = JSON.stringify(this.g);
    if (before === JSON.stringify(next)) {
      return;
    }
    this.history.push(before);
    this.g = next;
    this.render();
    this.options.onChange?.(this.g);
  }

  private attempt(change: () => Graph): boolean {
    try {
      this.apply(change());
      return true;
    } catch (e) {
      this.say((e as Error).message, true);
      return false;
    }
  }

  add(type: string, position: [number, number]): string | null {
    if (this.readOnlyFlag) {
      return null;
    }
    const { graph, id } = addNode(this.g, type, position);
    this.apply(graph);
    this.select({ kind: 'node', id });
    return id;
  }

  private addAtFreeSpot(type: string): void {
    const rect = this.svgEl.getBoundingClientRect();
    let [x, y] = this.toGraph(rect.left + rect.width / 2, rect.top + rect.height / 3);
    while (this.g.nodes.some(n => Math.abs((n.position?.[0] ?? 0) - x) < 40 && Math.abs((n.position?.[1] ?? 0) - y) < 40)) {
      x += 24;
      y += 24;
    }
    this.add(type, [x - NODE_W / 2, y - NODE_H / 2]);
  }

  connect(from: string, to: string, port = 0): boolean {
    return this.attempt(() => connect(this.g, from, to, port));
  }

  undo(): void {
    const prev = this.history.undo(JSON.stringify(this.g));
    if (prev !== null) {
      this.g = JSON.parse(prev);
      this.render();
      this.options.onChange?.(this.g);
    }
  }

  redo(): void {
    const next = this.history.redo(JSON.stringify(this.g));
    if (next !== null) {
      this.g = JSON.parse(next);
      this.render();
      this.options.onChange?.(this.g);
    }
  }

  deleteSelection(): void {
    const sel = this.selection;
    if (!sel || this.readOnlyFlag) {
      return;
    }
    if (sel.kind === 'node') {
      this.apply(removeNode(this.g, sel.id));
    } else {
      const edge = this.g.edges[sel.index];
      const same = (e: GraphEdge) =>
        e.from === edge.from && e.to === edge.to && (e.port ?? 0) === (edge.port ?? 0);
      this.apply(removeEdges(this.g, same));
    }
    this.select(null);
  }

  select(sel: Selection): void {
    this.selection = sel;
    this.render();
  }

  // -- view -----------------------------------------------------------------------------
  zoomBy(factor: number, cx?: number, cy?: number): void {
    this.autoFit = false;
    const rect = this.svgEl.getBoundingClientRect();
    const px = cx ?? rect.width / 2;
    const py = cy ?? rect.height / 2;
    const k = Math.min(3, Math.max(0.2, this.view.k * factor));
    const f = k / this.view.k;
    this.view = { k, x: px - (px - this.view.x) * f, y: py - (py - this.view.y) * f };
    this.placeViewport();
  }

  get zoom(): number {
    return this.view.k;
  }

  /** Show the whole graph; `auto`: a resize asked, the user did not. */
  fit(auto = false): void {
    if (!auto) {
      this.autoFit = true; // the Fit button turns fitting on resize back on
    }
    const rect = this.svgEl.getBoundingClientRect();
    if (!this.g.nodes.length || !rect.width) {
      this.view = { x: 0, y: 0, k: 1 };
      this.placeViewport();
      return;
    }
    const xs = this.g.nodes.map(n => n.position?.[0] ?? 0);
    const ys = this.g.nodes.map(n => n.position?.[1] ?? 0);
    const [x0, y0] = [Math.min(...xs) - 24, Math.min(...ys) - 24];
    const [x1, y1] = [Math.max(...xs) + NODE_W + 24, Math.max(...ys) + NODE_H + 40];
    const k = Math.min(1.5, Math.max(0.2, Math.min(rect.width / (x1 - x0), rect.height / (y1 - y0))));
    this.view = { k, x: -x0 * k, y: -y0 * k };
    this.placeViewport();
  }

  private placeViewport(): void {
    this.viewport.setAttribute('transform', `translate(${this.view.x},${this.view.y}) scale(${this.view.k})`);
  }

  private toGraph(clientX: number, clientY: number): [number, number] {
    const rect = this.svgEl.getBoundingClientRect();
    return [
      (clientX - rect.left - this.view.x) / this.view.k,
      (clientY - rect.top - this.view.y) / this.view.k
    ];
  }

  // -- pointer and keys -----------------------------------------------------------------
  private pointerDown(e: PointerEvent): void {
    const target = e.target as Element;
    this.node.focus();
    const port = target.closest('.gp-port-out');
    const nodeEl = target.closest('.gp-node');
    const edgeEl = target.closest('.gp-edge-hit');
    if (port && !this.readOnlyFlag) {
      this.gesture = { kind: 'connect', from: port.getAttribute('data-node') as string };
      this.svgEl.setPointerCapture?.(e.pointerId);
      e.preventDefault();
      return;
    }
    if (nodeEl) {
      const id = nodeEl.getAttribute('data-id') as string;
      const node = this.g.nodes.find(n => n.id === id) as GraphNode;
      const [x, y] = this.toGraph(e.clientX, e.clientY);
      this.select({ kind: 'node', id });
      if (!this.readOnlyFlag) {
        const [nx, ny] = node.position ?? [0, 0];
        this.gesture = { kind: 'move', id, dx: x - nx, dy: y - ny, before: JSON.stringify(this.g), moved: false };
        this.svgEl.setPointerCapture?.(e.pointerId);
      }
      e.preventDefault();
      return;
    }
    if (edgeEl) {
      this.select({ kind: 'edge', index: Number(edgeEl.getAttribute('data-index')) });
      return;
    }
    this.select(null);
    this.gesture = { kind: 'pan', x: e.clientX, y: e.clientY, vx: this.view.x, vy: this.view.y };
    this.svgEl.setPointerCapture?.(e.pointerId);
  }

  private pointerMove(e: PointerEvent): void {
    const g = this.gesture;
    if (!g) {
      return;
    }
    if (g.kind === 'pan') {
      this.autoFit = false;
      this.view.x = g.vx + e.clientX - g.x;
      this.view.y = g.vy + e.clientY - g.y;
      this.placeViewport();
    } else if (g.kind === 'move') {
      const [x, y] = this.toGraph(e.clientX, e.clientY);
      this.g = moveNode(this.g, g.id, [x - g.dx, y - g.dy]);
      g.moved = true;
      this.renderCanvas();
    } else {
      const src = this.g.nodes.find(n => n.id === g.from);
      const [sx, sy] = src?.position ?? [0, 0];
      const [x, y] = this.toGraph(e.clientX, e.clientY);
      const k = this.view.k;
      const a = [(sx + NODE_W) * k + this.view.x, (sy + NODE_H / 2) * k + this.view.y];
      const b = [x * k + this.view.x, y * k + this.view.y];
      this.draft.setAttribute('d', curve(a[0], a[1], b[0], b[1]));
    }
  }

  private pointerUp(e: PointerEvent): void {
    const g = this.gesture;
    this.gesture = null;
    this.draft.setAttribute('d', '');
    if (!g) {
      return;
    }
    if (g.kind === 'move' && g.moved) {
      this.history.push(g.before);
      this.render();
      this.options.onChange?.(this.g);
    } else if (g.kind === 'connect') {
      const hit = document.elementFromPoint(e.clientX, e.clientY)?.closest('.gp-port-in, .gp-node');
      if (!hit) {
        return;
      }
      const to = hit.getAttribute('data-node') ?? hit.getAttribute('data-id');
      let port = Number(hit.getAttribute('data-port') ?? NaN);
      if (!to) {
        return;
      }
      if (Number.isNaN(port)) {
        // dropped on the node's body: its first free input
        const dst = this.g.nodes.find(n => n.id === to) as GraphNode;
        const taken = new Set(inputsOf(this.g, to).map(x => x.port ?? 0));
        port = 0;
        while (taken.has(port) && port < portCount(this.g, dst) - 1) {
          port++;
        }
      }
      const problem = connectProblem(this.g, g.from, to, port);
      if (problem) {
        this.say(`cannot connect ${g.from} to ${to}: ${problem}`, true);
      } else {
        this.connect(g.from, to, port);
      }
    }
  }

  private keyDown(e: KeyboardEvent): void {
    const t = e.target as HTMLElement;
    if (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA') {
      return;
    }
    const mod = e.ctrlKey || e.metaKey;
    let done = true;
    if (mod && e.key.toLowerCase() === 'z') {
      e.shiftKey ? this.redo() : this.undo();
    } else if (mod && e.key.toLowerCase() === 'y') {
      this.redo();
    } else if (e.key === 'Delete' || e.key === 'Backspace') {
      this.deleteSelection();
    } else {
      done = false;
    }
    if (done) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  private say(text: string, bad = false): void {
    this.status.textContent = text;
    this.status.classList.toggle('gp-bad', bad);
  }

  // -- templates ------------------------------------------------------------------------
  private templates: Record<string, Graph> = {};

  private async loadTemplates(): Promise<void> {
    if (!this.options.templates) {
      this.templateSelect.style.display = 'none';
      return;
    }
    try {
      this.templates = await this.options.templates();
    } catch (e) {
      this.say(`templates are not available: ${(e as Error).message}`, true);
      return;
    }
    for (const name of Object.keys(this.templates)) {
      this.templateSelect.appendChild(el('option', { value: name }, name));
    }
  }

  private async useTemplate(): Promise<void> {
    const name = this.templateSelect.value;
    this.templateSelect.value = '';
    const t = this.templates[name];
    if (!t || this.readOnlyFlag) {
      return;
    }
    this.apply(placeMissing(JSON.parse(JSON.stringify(t))));
    this.select(null);
    this.fit();
    this.say(`started from the ${name} template (undo to go back)`);
  }

  // -- drawing --------------------------------------------------------------------------
  render(): void {
    this.inf = infer(this.g);
    this.renderCanvas();
    this.renderInspector();
    const errors = Object.keys(this.inf.nodes).filter(k => this.inf.nodes[k].error);
    this.summary.textContent =
      `${formatCount(this.inf.params)} parameters · ${formatFlops(this.inf.flops)} · ` +
      (errors.length ? `${errors.length} error${errors.length > 1 ? 's' : ''}` : 'no errors');
    this.summary.classList.toggle('gp-bad', errors.length > 0);
    this.templateSelect.disabled = this.readOnlyFlag;
    this.layoutButton.disabled = this.readOnlyFlag;
    this.undoButton.disabled = !this.history.canUndo || this.readOnlyFlag;
    this.redoButton.disabled = !this.history.canRedo || this.readOnlyFlag;
  }

  /** The canvas from the current inference (a move changes no shape: no re-inference). */
  private renderCanvas(): void {
    const inf = this.inf;
    this.viewport.replaceChildren();
    this.placeViewport();
    const edges = svg('g', { class: 'gp-edges' });
    const nodes = svg('g', { class: 'gp-nodes' });
    const pos = new Map(this.g.nodes.map(n => [n.id, n.position ?? [0, 0]]));
    const ports = new Map(this.g.nodes.map(n => [n.id, portCount(this.g, n)]));
    this.g.edges.forEach((e, index) => {
      const [sx, sy] = pos.get(e.from) ?? [0, 0];
      const [dx, dy] = pos.get(e.to) ?? [0, 0];
      const y1 = dy + portY(e.port ?? 0, ports.get(e.to) ?? 1);
      const d = curve(sx + NODE_W, sy + NODE_H / 2, dx, y1);
      const selected = this.selection?.kind === 'edge' && this.selection.index === index;
      const group = svg('g', { class: 'gp-edge-group' + (selected ? ' gp-selected' : '') });
      group.appendChild(svg('path', { d, class: 'gp-edge-hit', 'data-index': index }));
      group.appendChild(svg('path', { d, class: 'gp-edge', 'marker-end': 'url(#gp-arrow)' }));
      const shape = inf.nodes[e.from]?.shape;
      if (shape) {
        const label = svg('text', {
          x: (sx + NODE_W + dx) / 2,
          y: (sy + NODE_H / 2 + y1) / 2 - 6,
          class: 'gp-edge-label',
          'data-edge': `${e.from}->${e.to}`
        });
        label.textContent = fmtShape(shape);
        group.appendChild(label);
      }
      edges.appendChild(group);
    });
    for (const n of this.g.nodes) {
      const [x, y] = n.position ?? [0, 0];
      const info = inf.nodes[n.id];
      const selected = this.selection?.kind === 'node' && this.selection.id === n.id;
      const cls = ['gp-node', `gp-cat-${LAYERS[n.type]?.category ?? 'x'}`];
      if (info?.error) {
        cls.push('gp-error');
      }
      if (selected) {
        cls.push('gp-selected');
      }
      const g = svg('g', { class: cls.join(' '), transform: `translate(${x},${y})`, 'data-id': n.id });
      const title = svg('title');
      title.textContent = info?.error ? `${n.id}: ${info.error}` : `${n.id} (${n.type})`;
      g.appendChild(title);
      g.appendChild(svg('rect', { width: NODE_W, height: NODE_H, rx: 6, class: 'gp-node-box' }));
      const t1 = svg('text', { x: 10, y: 18, class: 'gp-node-title' });
      t1.textContent = n.label || n.id;
      const t2 = svg('text', { x: NODE_W - 8, y: 18, class: 'gp-node-type', 'text-anchor': 'end' });
      t2.textContent = n.type;
      const t3 = svg('text', { x: 10, y: 40, class: info?.error ? 'gp-node-error' : 'gp-node-shape' });
      t3.textContent = info?.error ? `⚠ ${truncate(info.error, 26)}` : info?.shape ? `→ ${fmtShape(info.shape)}` : '';
      g.appendChild(t1);
      g.appendChild(t2);
      g.appendChild(t3);
      const count = ports.get(n.id) ?? 0;
      for (let p = 0; p < count; p++) {
        g.appendChild(
          svg('circle', { cx: 0, cy: portY(p, count), r: 6, class: 'gp-port-in', 'data-node': n.id, 'data-port': p })
        );
      }
      if (n.type !== 'Output') {
        g.appendChild(svg('circle', { cx: NODE_W, cy: NODE_H / 2, r: 6, class: 'gp-port-out', 'data-node': n.id }));
      }
      nodes.appendChild(g);
    }
    this.viewport.appendChild(edges);
    this.viewport.appendChild(nodes);
  }

  private renderInspector(): void {
    const box = this.inspector;
    box.replaceChildren();
    const sel = this.selection;
    if (!sel) {
      box.appendChild(el('h3', {}, this.g.name || 'network'));
      box.appendChild(
        el('p', { class: 'gp-hint' }, this.readOnlyFlag
          ? 'Select a layer to see its parameters.'
          : 'Drag layers from the palette, then drag from a layer\u2019s right dot to another\u2019s left dot to connect them. Select a layer to edit it; Delete removes it.')
      );
      const errors = Object.entries(this.inf.nodes).filter(([, i]) => i.error && !i.error.startsWith('waits for'));
      if (errors.length) {
        const list = el('ul', { class: 'gp-error-list' });
        for (const [id, i] of errors) {
          const li = el('li', {}, `${id}: ${i.error}`);
          li.addEventListener('click', () => this.select({ kind: 'node', id }));
          list.appendChild(li);
        }
        box.appendChild(list);
      }
      return;
    }
    if (sel.kind === 'edge') {
      const e = this.g.edges[sel.index];
      if (!e) {
        return;
      }
      box.appendChild(el('h3', {}, `${e.from} → ${e.to}`));
      const shape = this.inf.nodes[e.from]?.shape;
      box.appendChild(el('p', {}, `input ${e.port ?? 0} of ${e.to}${shape ? `, carries ${fmtShape(shape)}` : ''}`));
      if (!this.readOnlyFlag) {
        const del = el('button', { class: 'gp-graph-btn gp-danger', type: 'button' }, 'Remove connection');
        del.addEventListener('click', () => this.deleteSelection());
        box.appendChild(del);
      }
      return;
    }
    const node = this.g.nodes.find(n => n.id === sel.id);
    if (!node) {
      return;
    }
    const layer = LAYERS[node.type];
    const info = this.inf.nodes[node.id];
    const head = el('div', { class: 'gp-inspector-head' });
    const name = el('input', { class: 'gp-node-name', value: node.id, 'aria-label': 'name', spellcheck: 'false' });
    name.disabled = this.readOnlyFlag;
    name.addEventListener('change', () => {
      if (this.attempt(() => renameNode(this.g, node.id, name.value.trim()))) {
        this.select({ kind: 'node', id: name.value.trim() });
      } else {
        name.value = node.id;
      }
    });
    head.appendChild(name);
    head.appendChild(el('span', { class: 'gp-node-type-tag' }, node.type));
    box.appendChild(head);
    if (layer.doc) {
      box.appendChild(el('p', { class: 'gp-hint' }, layer.doc));
    }
    if (info?.error) {
      box.appendChild(el('p', { class: 'gp-node-error-text', 'data-testid': 'node-error' }, info.error));
    } else if (info?.shape) {
      box.appendChild(
        el('p', { class: 'gp-node-facts' },
          `output ${fmtShape(info.shape)} · ${formatCount(info.params)} parameters · ${formatFlops(info.flops)}`)
      );
    }
    const form = el('div', { class: 'gp-param-form' });
    for (const [key, p] of Object.entries(layer.params)) {
      form.appendChild(this.paramField(node, key, p));
    }
    if (!Object.keys(layer.params).length) {
      form.appendChild(el('p', { class: 'gp-hint' }, 'no parameters'));
    }
    box.appendChild(form);
    if (!this.readOnlyFlag) {
      const del = el('button', { class: 'gp-graph-btn gp-danger', type: 'button' }, 'Delete layer');
      del.addEventListener('click', () => this.deleteSelection());
      box.appendChild(del);
    }
  }

  private paramField(node: GraphNode, key: string, p: Param): HTMLElement {
    const row = el('label', { class: 'gp-param' });
    row.appendChild(el('span', { class: 'gp-param-name', title: p.doc ?? '' }, key));
    const current = node.params[key];
    let input: HTMLInputElement | HTMLSelectElement;
    if (p.kind === 'bool') {
      input = el('input', { type: 'checkbox', 'data-param': key });
      (input as HTMLInputElement).checked = current === undefined ? !!p.default : !!current;
      input.addEventListener('change', () => this.attempt(() => setParam(this.g, node.id, key, (input as HTMLInputElement).checked)));
    } else if (p.kind === 'choice') {
      input = el('select', { 'data-param': key });
      for (const c of p.choices ?? []) {
        input.appendChild(el('option', { value: c }, c));
      }
      input.value = String(current ?? p.default ?? '');
      input.addEventListener('change', () => this.attempt(() => setParam(this.g, node.id, key, input.value)));
    } else {
      const isShape = p.kind === 'shape';
      input = el('input', {
        type: isShape ? 'text' : 'number',
        'data-param': key,
        step: p.kind === 'float' ? 'any' : '1',
        placeholder: p.default === null ? 'required' : isShape ? '' : `${p.default}`
      });
      input.value = current === undefined || current === null ? '' : isShape && Array.isArray(current) ? current.join(', ') : String(current);
      input.addEventListener('change', () => {
        const raw = input.value.trim();
        let value: unknown;
        if (raw === '') {
          value = undefined;
        } else if (isShape) {
          value = raw.split(/[\s,×x]+/).filter(Boolean).map(Number);
        } else {
          value = Number(raw);
        }
        this.attempt(() => setParam(this.g, node.id, key, value));
      });
    }
    input.disabled = this.readOnlyFlag;
    row.appendChild(input);
    return row;
  }

  dispose(): void {
    this.resizeObserver?.disconnect();
    this.node.remove();
  }
}

function portY(port: number, count: number): number {
  return count <= 1 ? NODE_H / 2 : 12 + (port * (NODE_H - 24)) / (count - 1);
}

function curve(x0: number, y0: number, x1: number, y1: number): string {
  const dx = Math.max(40, Math.abs(x1 - x0) / 2);
  return `M ${x0} ${y0} C ${x0 + dx} ${y0}, ${x1 - dx} ${y1}, ${x1} ${y1}`;
}

function truncate(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}
