/**
 * The "GPU pool" side panel: my GPU's utilization and memory over the last minutes, my
 * CPU and memory against their limits, the idle notice, my trainings, and the pool's free
 * capacity per spec. Plain DOM and SVG, themed with JupyterLab's CSS variables.
 */
import { Widget } from '@lumino/widgets';

import {
  describeSlice,
  formatMiB,
  formatPercent,
  ISample,
  linePoints
} from './format';
import { PoolModel } from './model';
import { el } from './dom';
import { get } from './api';

const W = 260;
const H = 48;

function chart(title: string, values: (number | null)[], top: number, now: string): HTMLElement {
  const box = el('div', 'gp-chart');
  const head = el('div', 'gp-chart-head');
  head.append(el('span', '', title), el('span', 'gp-chart-now', now));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${title}: ${now}`);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', linePoints(values, top, W, H));
  svg.appendChild(line);
  box.append(head, svg);
  return box;
}

function bar(title: string, used: number | null, limit: number | null, fmt: (v: number | null) => string): HTMLElement {
  const box = el('div', 'gp-bar');
  const head = el('div', 'gp-chart-head');
  head.append(
    el('span', '', title),
    el('span', 'gp-chart-now', `${fmt(used)} of ${limit ? fmt(limit) : 'no limit'}`)
  );
  const track = el('div', 'gp-track');
  const fill = el('i');
  const share = used !== null && limit ? Math.min(1, used / limit) : 0;
  fill.style.width = `${(100 * share).toFixed(0)}%`;
  if (share > 0.9) {
    fill.classList.add('gp-full');
  }
  track.appendChild(fill);
  box.append(head, track);
  return box;
}

export class PoolPanel extends Widget {
  constructor(private model: PoolModel) {
    super();
    this.id = 'gpupool-panel';
    this.addClass('gp-panel');
    this.title.caption = 'GPU pool';
    this.model.changed.connect(() => this.render(), this);
    this.render();
  }

  render(): void {
    const m = this.model;
    const root = this.node;
    root.replaceChildren();
    root.appendChild(el('h2', '', 'GPU pool'));
    if (m.error) {
      root.appendChild(el('div', 'gp-error', m.error));
    }
    for (const n of m.notices) {
      const box = el('div', 'gp-notice', n.message);
      box.setAttribute('role', 'alert');
      root.appendChild(box);
    }
    const slice = m.slice;
    const sec = el('section', 'gp-section gp-mygpu');
    sec.appendChild(el('h3', '', m.latest?.simulated ? 'My GPU (simulated)' : 'My GPU'));
    if (!slice || !slice.gpus.length) {
      sec.appendChild(el('p', 'gp-muted', slice?.spec ? `${slice.spec}: no GPU in this server` : 'This server holds no GPU.'));
    } else {
      sec.appendChild(
        el(
          'p',
          'gp-slice',
          `${describeSlice(slice, m.models)} on ${slice.node} · ${slice.spec}` +
            (m.reservationState ? ` · ${m.reservationState}` : '')
        )
      );
      const hist: ISample[] = m.history;
      const last = m.latest;
      slice.gpus.forEach((g, i) => {
        const util = hist.map(s => s.gpus[i]?.utilization_gpu ?? null);
        const mem = hist.map(s => s.gpus[i]?.memory_used_mib ?? null);
        const cur = last?.gpus[i];
        const total = cur?.memory_total_mib ?? g.memory_mib;
        if (slice.gpus.length > 1) {
          sec.appendChild(el('div', 'gp-gpu-title', `GPU ${g.index}`));
        }
        sec.appendChild(chart('Utilization (whole card)', util, 100, formatPercent(cur?.utilization_gpu)));
        sec.appendChild(
          chart(
            g.whole ? 'Memory' : 'Memory (in my slice)',
            mem,
            total || 1,
            `${formatMiB(cur?.memory_used_mib)} / ${formatMiB(total)}`
          )
        );
      });
      sec.appendChild(
        el(
          'p',
          'gp-muted gp-explain',
          'Memory is counted inside your slice (HAMi-core limits it there). Utilization is ' +
            "the card's: NVML has no per-slice figure, so work of others sharing the card shows too."
        )
      );
      if (last?.simulated) {
        sec.appendChild(
          el(
            'p',
            'gp-muted gp-simulated',
            'Simulated: this node has no GPU. The figures follow this server\'s own CPU ' +
              '(utilization) and memory, so that the charts move as they would on a GPU.'
          )
        );
      }
      if (last?.nvml_error) {
        sec.appendChild(el('div', 'gp-error', `NVML: ${last.nvml_error}`));
      }
    }
    root.appendChild(sec);

    const res = el('section', 'gp-section gp-resources');
    res.appendChild(el('h3', '', 'CPU and memory'));
    const last = m.latest;
    res.appendChild(
      bar('CPU', last?.cpu.used_cores ?? null, last?.cpu.limit_cores ?? null, v =>
        v === null ? '–' : `${v.toFixed(2)} cores`
      )
    );
    res.appendChild(bar('Memory', last?.memory.used_mib ?? null, last?.memory.limit_mib ?? null, formatMiB));
    root.appendChild(res);

    const tr = el('section', 'gp-section gp-trainings');
    tr.appendChild(el('h3', '', 'My trainings'));
    if (!m.trainings.length) {
      tr.appendChild(el('p', 'gp-muted', 'None yet: Training in the launcher, or gpupool train submit.'));
    } else {
      const t = el('table');
      for (const r of m.trainings) {
        const row = el('tr');
        row.dataset.training = r.id;
        row.title = r.message;
        const acc = r.result?.test_accuracy;
        const progress =
          r.state === 'succeeded' && typeof acc === 'number'
            ? `acc ${acc.toFixed(3)}`
            : r.checkpoint_epoch
              ? `epoch ${r.checkpoint_epoch}/${r.hyperparameters?.epochs ?? '?'}`
              : '';
        row.append(el('td', '', r.name), el('td', `gp-state gp-${r.state}`, r.state), el('td', 'gp-muted', progress));
        const cell = el('td');
        if (['queued', 'starting', 'running'].includes(r.state)) {
          const b = el('button', 'gp-cancel', 'Cancel');
          b.title = `cancel ${r.id}`;
          b.onclick = () => void m.cancelTraining(r.id);
          cell.appendChild(b);
        }
        row.appendChild(cell);
        t.appendChild(row);
      }
      tr.appendChild(t);
    }
    root.appendChild(tr);

    const cap = el('section', 'gp-section gp-capacity');
    cap.appendChild(el('h3', '', 'Free in the pool'));
    const t = el('table');
    for (const s of m.specs) {
      const row = el('tr');
      const fits = el('td', 'gp-num', String(s.fits_now));
      if (!s.fits_now) {
        row.classList.add('gp-none');
      }
      row.append(el('td', '', s.display_name || s.slug), fits);
      t.appendChild(row);
    }
    cap.appendChild(t);
    cap.appendChild(el('p', 'gp-muted', 'How many more servers of each spec fit right now.'));
    root.appendChild(cap);
    root.appendChild(this.sshSection());
  }

  /** "Connect with SSH": the ~/.ssh/config block for this server, with a copy button. */
  private sshSection(): HTMLElement {
    const sec = el('section', 'gp-section gp-ssh');
    sec.appendChild(el('h3', '', 'Connect with SSH'));
    const show = el('button', 'gp-ssh-show', 'Show my ~/.ssh/config block');
    const out = el('div', 'gp-ssh-out');
    if (this.sshConfig) {
      out.appendChild(this.sshBlock(this.sshConfig));
    }
    show.onclick = async () => {
      out.replaceChildren(el('p', 'gp-muted', 'asking the server…'));
      try {
        const got = await get<{ config: string }>(
          `ssh-config?hub=${encodeURIComponent(window.location.origin)}`
        );
        this.sshConfig = got.config;
        out.replaceChildren(this.sshBlock(got.config));
      } catch (e: any) {
        out.replaceChildren(el('div', 'gp-error', e?.message ?? String(e)));
      }
    };
    sec.append(
      el('p', 'gp-muted', 'ssh, scp, rsync and VS Code Remote-SSH reach this server through the hub.'),
      show,
      out
    );
    return sec;
  }

  private sshBlock(text: string): HTMLElement {
    const box = el('div');
    const pre = el('pre', 'gp-ssh-config', text);
    const copy = el('button', 'gp-ssh-copy', 'Copy');
    copy.onclick = () => void navigator.clipboard?.writeText(text).then(() => (copy.textContent = 'Copied'));
    box.append(pre, copy);
    return box;
  }

  private sshConfig: string | null = null;

  dispose(): void {
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }
}
