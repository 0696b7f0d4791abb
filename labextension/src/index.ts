/**
 * gpupool in JupyterLab: the GPU slice this server holds in the status bar, and the
 * "GPU pool" side panel. Everything comes from the server extension (gpupool/…).
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { get } from './api';
import { blankGraph, EXTENSION, FACTORY, FILE_TYPE, GraphFileFactory } from './graph/document';
import { Graph } from './graph/model';
import { PoolModel } from './model';
import { PoolPanel } from './panel';
import { GpuStatus } from './statusbar';

const GPU_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<path d="M3 7h18v10H3zM5 9v6h14V9zm2 1h4v4H7zm6 0h4v4h-4zM2 9h1v2H2zm0 4h1v2H2zM6 17h2v2H6zm4 0h2v2h-2zm4 0h2v2h-2z"/></g></svg>';

export const gpuIcon = new LabIcon({ name: 'gpupool:gpu', svgstr: GPU_SVG });

const OPEN = 'gpupool:open-panel';
const NEW_GRAPH = 'gpupool:new-graph';

const GRAPH_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<path d="M3 4h6v5H3zm12 0h6v5h-6zM9 15h6v5H9zM9 6.5h6v1H9zM6 9h1v3h5v3h-1v-2H6zm11 0h1v4h-5v2h-1v-3h5z"/></g></svg>';
export const graphIcon = new LabIcon({ name: 'gpupool:graph', svgstr: GRAPH_SVG });

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@gpupool/lab:plugin',
  description: 'My GPU slice in the status bar and the GPU pool panel',
  autoStart: true,
  // no ILabShell: the side panel goes into any shell with a right area (Notebook 7 too)
  optional: [IStatusBar, ICommandPalette, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    launcher: ILauncher | null
  ) => {
    const model = new PoolModel();
    const panel = new PoolPanel(model);
    panel.title.icon = gpuIcon;
    app.shell.add(panel, 'right', { rank: 900 });

    app.commands.addCommand(OPEN, {
      label: 'GPU Pool',
      caption: 'My GPU, my trainings and free capacity in the pool',
      icon: gpuIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: OPEN, category: 'GPU pool' });
    launcher?.add({ command: OPEN, category: 'GPU pool', rank: 0 });

    if (statusBar) {
      const item = new GpuStatus(model, () => void app.commands.execute(OPEN));
      item.id = 'gpupool-status';
      statusBar.registerStatusItem('@gpupool/lab:status', {
        item,
        align: 'left',
        rank: 5
      });
    }
    void model.start();
  }
};

/** Graph files (*.gpgraph.json) open in the network-graph editor; New Network Graph in the
 * launcher, the palette and File > New. */
const graphPlugin: JupyterFrontEndPlugin<void> = {
  id: '@gpupool/lab:graph-editor',
  description: 'The network-graph editor for *.gpgraph.json files',
  autoStart: true,
  optional: [ICommandPalette, ILauncher],
  activate: (app: JupyterFrontEnd, palette: ICommandPalette | null, launcher: ILauncher | null) => {
    app.docRegistry.addFileType({
      name: FILE_TYPE,
      displayName: 'Network graph',
      extensions: [EXTENSION],
      mimeTypes: ['application/json'],
      fileFormat: 'text',
      contentType: 'file',
      icon: graphIcon
    });
    let templates: Promise<Record<string, Graph>> | null = null;
    const loadTemplates = () => (templates ??= get<Record<string, Graph>>('graph/templates'));
    const factory = new GraphFileFactory(
      {
        name: FACTORY,
        label: 'Network Graph Editor',
        fileTypes: [FILE_TYPE],
        defaultFor: [FILE_TYPE],
        // Notebook 7 opens files with the "rendered" default (else the JSON viewer wins)
        defaultRendered: [FILE_TYPE],
        modelName: 'text'
      },
      loadTemplates
    );
    factory.widgetCreated.connect((_s, widget) => {
      widget.title.icon = graphIcon;
    });
    app.docRegistry.addWidgetFactory(factory);

    app.commands.addCommand(NEW_GRAPH, {
      label: args => (args.isLauncher ? 'Network Graph' : 'New Network Graph'),
      caption: 'A new network graph file, edited on a canvas',
      icon: graphIcon,
      execute: async args => {
        const cwd = (args.cwd as string) ?? '';
        const contents = app.serviceManager.contents;
        const model = await contents.newUntitled({ path: cwd, type: 'file', ext: EXTENSION });
        const name = model.name.replace(EXTENSION, '');
        await contents.save(model.path, {
          type: 'file',
          format: 'text',
          content: JSON.stringify(blankGraph(name), null, 1) + '\n'
        });
        return app.commands.execute('docmanager:open', { path: model.path, factory: FACTORY });
      }
    });
    palette?.addItem({ command: NEW_GRAPH, category: 'GPU pool' });
    launcher?.add({ command: NEW_GRAPH, category: 'GPU pool', rank: 1 });
  }
};

const NEW_TRAINING = 'gpupool:new-training';

/** The notebook the "Training" launcher item opens: a TrainingLauncher on the graph file
 * in front (or an MLP template when none is), run at once. */
export function trainingNotebook(graphPath: string | null): Record<string, unknown> {
  const graph = graphPath ? JSON.stringify(graphPath) : 'mlp(inputs=64, hidden=64, classes=10)';
  const code = [
    'from gpupool.lab.widgets import TrainingLauncher',
    ...(graphPath ? [] : ['from gpupool.graph.templates import mlp', '', '# a template; or the path of a *.gpgraph.json']),
    `launcher = TrainingLauncher(graph=${graph}, epochs=3, learning_rate=0.01)`,
    'launcher'
  ].join('\n');
  let n = 0;
  const cell = (cell_type: string, source: string) => ({
    id: `gpupool-training-${n++}`,
    cell_type,
    metadata: {},
    source,
    ...(cell_type === 'code' ? { outputs: [], execution_count: null } : {})
  });
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: [
      cell(
        'markdown',
        '# A training on the pool\n\nPick the spec, the dataset and the hyperparameters, then **Submit**. ' +
          'The curves fill in as it trains; the model and its checkpoints land in `~/trainings/<id>/`. ' +
          '`gpupool train list` in a terminal shows them all.'
      ),
      cell('code', code)
    ]
  };
}

const trainingPlugin: JupyterFrontEndPlugin<void> = {
  id: '@gpupool/lab:training',
  description: 'New Training: a notebook with a TrainingLauncher',
  autoStart: true,
  optional: [ICommandPalette, ILauncher],
  activate: (app: JupyterFrontEnd, palette: ICommandPalette | null, launcher: ILauncher | null) => {
    app.commands.addCommand(NEW_TRAINING, {
      label: args => (args.isLauncher ? 'Training' : 'New Training'),
      caption: 'Train a network on the pool: a notebook with the training launcher',
      icon: graphIcon,
      execute: async args => {
        const cwd = (args.cwd as string) ?? '';
        const current = app.shell.currentWidget as any;
        const path: string | undefined = current?.context?.path;
        const graphPath = path && path.endsWith(EXTENSION) ? path : null;
        const contents = app.serviceManager.contents;
        const model = await contents.newUntitled({ path: cwd, type: 'notebook' });
        const target = model.path.replace(/Untitled(\d*)\.ipynb$/, 'Training$1.ipynb');
        let final = model;
        if (target !== model.path) {
          final = await contents.rename(model.path, target).catch(() => model); // taken: keep Untitled
        }
        await contents.save(final.path, { type: 'notebook', format: 'json', content: trainingNotebook(graphPath) });
        const widget: any = await app.commands.execute('docmanager:open', { path: final.path });
        try {
          await widget?.context?.sessionContext?.ready;
          await app.commands.execute('notebook:run-all-cells');
        } catch {
          // the cell stays, ready to run
        }
        return widget;
      }
    });
    palette?.addItem({ command: NEW_TRAINING, category: 'GPU pool' });
    launcher?.add({ command: NEW_TRAINING, category: 'GPU pool', rank: 2 });
  }
};

export default [plugin, graphPlugin, trainingPlugin];
