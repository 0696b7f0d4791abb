/**
 * gpupool in JupyterLab: the GPU slice this server holds in the status bar, and the
 * "GPU pool" side panel. Everything comes from the server extension (gpupool/…).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { PoolModel } from './model';
import { PoolPanel } from './panel';
import { GpuStatus } from './statusbar';

const GPU_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<path d="M3 7h18v10H3zM5 9v6h14V9zm2 1h4v4H7zm6 0h4v4h-4zM2 9h1v2H2zm0 4h1v2H2zM6 17h2v2H6zm4 0h2v2h-2zm4 0h2v2h-2z"/></g></svg>';

export const gpuIcon = new LabIcon({ name: 'gpupool:gpu', svgstr: GPU_SVG });

const OPEN = 'gpupool:open-panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@gpupool/lab:plugin',
  description: 'My GPU slice in the status bar and the GPU pool panel',
  autoStart: true,
  requires: [ILabShell],
  optional: [IStatusBar, ICommandPalette, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    launcher: ILauncher | null
  ) => {
    const model = new PoolModel();
    const panel = new PoolPanel(model);
    panel.title.icon = gpuIcon;
    shell.add(panel, 'right', { rank: 900 });

    app.commands.addCommand(OPEN, {
      label: 'GPU Pool',
      caption: 'My GPU, my trainings and free capacity in the pool',
      icon: gpuIcon,
      execute: () => shell.activateById(panel.id)
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

export default plugin;
