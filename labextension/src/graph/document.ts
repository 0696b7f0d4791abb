/**
 * Graph files (*.gpgraph.json) in JupyterLab: the editor as a document widget over the
 * file's text model. Edits go into the model (so Save, revert, dirty marks and autosave
 * work as for any file); a reload from disk goes into the editor. A malformed file opens
 * as a list of its problems, never a blank page; a file that cannot be written opens
 * read-only.
 */
import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import { Widget } from '@lumino/widgets';

import { GraphEditor } from './editor';
import { Graph, GraphError, loadGraph } from './model';

export const FILE_TYPE = 'gpupool-graph';
export const FACTORY = 'Network Graph Editor';
export const EXTENSION = '.gpgraph.json';

export class GraphFileContent extends Widget {
  editor: GraphEditor | null = null;
  private lastText = '';

  constructor(
    private context: DocumentRegistry.Context,
    private templates: () => Promise<Record<string, Graph>>
  ) {
    super();
    this.addClass('gp-graph-document');
    this.node.style.height = '100%';
    void context.ready.then(() => {
      this.fromModel();
      context.model.contentChanged.connect(() => this.fromModel());
      context.fileChanged.connect(() => this.updateReadOnly());
    });
  }

  private get writable(): boolean {
    return this.context.contentsModel?.writable !== false;
  }

  private updateReadOnly(): void {
    if (this.editor) {
      this.editor.readOnly = !this.writable;
    }
  }

  /** The file's text changed (opened, reverted, edited elsewhere): show it. */
  private fromModel(): void {
    const text = this.context.model.toString();
    if (text === this.lastText) {
      return;
    }
    this.lastText = text;
    let graph: Graph;
    try {
      graph = loadGraph(JSON.parse(text));
    } catch (e) {
      this.showProblems(e);
      return;
    }
    if (this.editor) {
      this.editor.setGraph(graph, true);
      this.updateReadOnly();
      return;
    }
    this.node.replaceChildren();
    this.editor = new GraphEditor(graph, {
      readOnly: !this.writable,
      templates: this.templates,
      onChange: g => this.toModel(g)
    });
    this.node.appendChild(this.editor.node);
    requestAnimationFrame(() => this.editor?.fit());
  }

  private toModel(graph: Graph): void {
    const text = JSON.stringify(graph, null, 1) + '\n';
    this.lastText = text;
    this.context.model.fromString(text);
    this.context.model.dirty = true; // a text model does not mark itself
  }

  private showProblems(e: unknown): void {
    this.editor?.dispose();
    this.editor = null;
    const box = document.createElement('div');
    box.className = 'gp-graph-problems';
    box.setAttribute('data-testid', 'graph-problems');
    const h = document.createElement('h3');
    h.textContent = `${this.context.localPath} is not a graph the editor can open`;
    box.appendChild(h);
    const list = document.createElement('ul');
    const problems =
      e instanceof GraphError ? e.problems : [`not valid JSON: ${(e as Error).message}`];
    for (const p of problems) {
      const li = document.createElement('li');
      li.textContent = p;
      list.appendChild(li);
    }
    box.appendChild(list);
    const hint = document.createElement('p');
    hint.textContent =
      'Fix the file in a text editor (right-click it in the file browser, Open With, Editor); ' +
      'this view updates when the file is valid.';
    box.appendChild(hint);
    this.node.replaceChildren(box);
  }
}

export class GraphFileFactory extends ABCWidgetFactory<DocumentWidget<GraphFileContent>> {
  constructor(
    options: DocumentRegistry.IWidgetFactoryOptions,
    private templates: () => Promise<Record<string, Graph>>
  ) {
    super(options);
  }

  protected createNewWidget(context: DocumentRegistry.Context): DocumentWidget<GraphFileContent> {
    const content = new GraphFileContent(context, this.templates);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('gp-graph-widget');
    return widget;
  }
}

/** What a new graph file holds: an input and an output, to be joined. */
export function blankGraph(name: string): Graph {
  return {
    format: 'gpupool.graph/1',
    name,
    nodes: [
      { id: 'input', type: 'Input', params: { shape: [1, 28, 28] }, position: [40, 80] },
      { id: 'output', type: 'Output', params: {}, position: [520, 80] }
    ],
    edges: []
  };
}
