/** The status bar item: my slice and its live utilization and memory; a click opens the panel. */
import { Widget } from '@lumino/widgets';

import { describeLive, describeSlice } from './format';
import { PoolModel } from './model';

export class GpuStatus extends Widget {
  constructor(private model: PoolModel, private onClick: () => void) {
    super();
    this.addClass('gp-status');
    this.node.title = 'GPU pool: my slice (click for the panel)';
    this.node.addEventListener('click', () => this.onClick());
    this.model.changed.connect(this.render, this);
    this.render();
  }

  render(): void {
    const m = this.model;
    if (!m.slice) {
      this.node.textContent = 'GPU: …';
      return;
    }
    const live = describeLive(m.latest);
    const notice = m.notices.length ? ' ⚠' : '';
    this.node.textContent = `${describeSlice(m.slice, m.models)}${live ? ` | ${live}` : ''}${notice}`;
  }

  dispose(): void {
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }
}
