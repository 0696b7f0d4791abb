/**
 * The GpuMonitor notebook widget's front-end: live charts of this server's GPUs (in-slice
 * memory and utilization), CPU and memory, from the server extension's metrics socket
 * (gpupool/metrics/ws) with the page's own login.
 */
import { describeLive, formatMiB, ISample, linePoints, pushSample } from '../format';
import { injectStyle } from '../dom';
import { RenderProps, serverConfig } from './anywidget';
import { LineChart, lineChart } from './chart';

const W = 260;
const H = 60;

function chart(title: string, cls: string): LineChart {
  return lineChart(title, cls, 'gp-mon', W, H);
}

const CSS = `
.gp-monitor .gp-mon-chart { border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px;
  padding: 4px 6px; background: var(--jp-layout-color1, #fff); }
.gp-monitor .gp-mon-head { display: flex; justify-content: space-between; gap: 12px; margin-bottom: 2px; }
.gp-monitor .gp-mon-value { font-family: var(--jp-code-font-family, monospace); color: var(--jp-ui-font-color2, #555); }
.gp-monitor svg { display: block; background: var(--jp-layout-color0, #fafafa); }
`;

function render({ model, el }: RenderProps): () => void {
  injectStyle('gpupool-monitor-style', CSS);
  el.classList.add('gp-monitor');
  el.style.cssText =
    'display:flex;flex-wrap:wrap;gap:12px;font:12px var(--jp-ui-font-family,sans-serif);' +
    'color:var(--jp-ui-font-color1,#222);padding:6px';
  const status = document.createElement('div');
  status.className = 'gp-mon-status';
  status.style.width = '100%';
  status.textContent = 'connecting to this server\u2019s metrics…';
  el.appendChild(status);
  const charts: Record<string, ReturnType<typeof chart>> = {};
  const get = (key: string, title: string) => {
    if (!charts[key]) {
      charts[key] = chart(title, `gp-mon-${key.replace(/\W/g, '-')}`);
      el.appendChild(charts[key].box);
    }
    return charts[key];
  };
  let history: ISample[] = [];
  const keep = Number(model.get('window')) || 120;
  const draw = () => {
    const last = history[history.length - 1];
    if (!last) {
      return;
    }
    status.textContent = describeLive(last) || 'no GPU in this server';
    if (last.nvml_error) {
      status.textContent += ` (NVML: ${last.nvml_error})`;
    }
    last.gpus.forEach((g, i) => {
      const u = get(`gpu${g.index}-util`, `GPU ${g.index} utilization`);
      u.line.setAttribute('points', linePoints(history.map(s => s.gpus[i]?.utilization_gpu ?? null), 100, W, H));
      u.value.textContent = g.utilization_gpu === null ? '–' : `${g.utilization_gpu} %`;
      const m = get(`gpu${g.index}-mem`, `GPU ${g.index} memory`);
      m.line.setAttribute(
        'points',
        linePoints(history.map(s => s.gpus[i]?.memory_used_mib ?? null), g.memory_limit_mib, W, H)
      );
      m.value.textContent = `${formatMiB(g.memory_used_mib)} / ${formatMiB(g.memory_limit_mib)}`;
    });
    const c = get('cpu', 'CPU');
    const top = last.cpu.limit_cores || Math.max(1, ...history.map(s => s.cpu.used_cores ?? 0));
    c.line.setAttribute('points', linePoints(history.map(s => s.cpu.used_cores), top, W, H));
    c.value.textContent =
      last.cpu.used_cores === null ? '–' : `${last.cpu.used_cores.toFixed(2)} / ${last.cpu.limit_cores ?? '∞'} cores`;
  };
  const { wsUrl, token } = serverConfig();
  let socket: WebSocket | null = null;
  let stopped = false;
  const open = () => {
    socket = new WebSocket(`${wsUrl}gpupool/metrics/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`);
    socket.onmessage = ev => {
      const msg = JSON.parse(ev.data);
      if (msg.type === 'sample') {
        history = pushSample(history, msg.sample as ISample, keep);
        draw();
      }
    };
    socket.onclose = () => {
      if (!stopped) {
        status.textContent = 'metrics connection lost, retrying…';
        setTimeout(open, 2000);
      }
    };
  };
  open();
  return () => {
    stopped = true;
    socket?.close();
  };
}

export default { render };
