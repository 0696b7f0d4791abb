/**
 * The GraphEditor notebook widget's front-end: the same editor component as the lab's
 * graph files, its document synced with Python (`editor.graph` there) both ways.
 */
import { GraphEditor } from '../graph/editor';
import { Graph, GraphError, loadGraph } from '../graph/model';
import { RenderProps } from './anywidget';

function render({ model, el }: RenderProps): () => void {
  el.classList.add('gp-graph-widget');
  // keys typed on the canvas (Delete, Ctrl+Z) are the editor's, not the notebook's
  // command-mode shortcuts (D,D deletes a cell, Z undoes a cell operation)
  el.setAttribute('data-lm-suppress-shortcuts', 'true');
  el.style.height = `${model.get('height')}px`;
  el.style.border = '1px solid var(--jp-border-color2, #ddd)';
  let editor: GraphEditor;
  const problems = document.createElement('div');
  problems.className = 'gp-graph-problems';
  const initial = model.get('document');
  let graph: Graph;
  try {
    graph = loadGraph(initial);
  } catch (e) {
    problems.textContent = e instanceof GraphError ? e.problems.join('\n') : String(e);
    el.appendChild(problems);
    return () => undefined;
  }
  editor = new GraphEditor(graph, {
    readOnly: !!model.get('read_only'),
    templates: async () => model.get('templates') ?? {},
    onChange: g => {
      model.set('document', JSON.parse(JSON.stringify(g)));
      model.save_changes();
    }
  });
  el.appendChild(editor.node);
  requestAnimationFrame(() => editor.fit());
  const fromPython = () => {
    try {
      editor.setGraph(loadGraph(model.get('document')), true);
    } catch (e) {
      console.warn('gpupool: the graph from Python does not load', e);
    }
  };
  const readOnly = () => (editor.readOnly = !!model.get('read_only'));
  model.on('change:document', fromPython);
  model.on('change:read_only', readOnly);
  return () => {
    model.off('change:document', fromPython);
    model.off('change:read_only', readOnly);
    editor.dispose();
  };
}

export default { render };
