/**
 * The TrainingLauncher notebook widget's front-end: the form (spec, dataset,
 * hyperparameters), then the training's progress (where it waits and why, node, loss
 * curve by step, test accuracy by epoch, throughput, the log tail, Cancel) and, when
 * done, the final metrics and the snippet that loads the model. The kernel talks to the
 * pool (with the server's token) and follows the training; this view draws its traits and
 * sends "submit" and "cancel".
 */
import { el, injectStyle } from '../dom';
import { linePoints } from '../format';
import { RenderProps, WidgetModel } from './anywidget';
import { LineChart, lineChart } from './chart';

const W = 320;
const H = 90;
const ENDED = ['succeeded', 'failed', 'cancelled'];
const LIVE = ['queued', 'starting', 'running'];

const CSS = `
.gp-train { font: 12px var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; padding: 8px 10px; max-width: 760px;
  background: var(--jp-layout-color1, #fff); }
.gp-train h4 { margin: 0 0 6px; font-size: 13px; display: flex; gap: 8px; align-items: center; }
.gp-train-badge { font-size: 11px; padding: 1px 6px; border-radius: 8px; background: var(--jp-layout-color3, #ddd); }
.gp-train-badge.gp-running, .gp-train-badge.gp-starting { background: #bbdefb; }
.gp-train-badge.gp-succeeded { background: #c8e6c9; }
.gp-train-badge.gp-failed { background: #ffcdd2; }
.gp-train-badge.gp-cancelled { background: #eeeeee; }
.gp-train-form { display: grid; grid-template-columns: repeat(4, auto); gap: 4px 10px; align-items: center; }
.gp-train-form label { color: var(--jp-ui-font-color2, #555); text-align: right; }
.gp-train-form input, .gp-train-form select { font: inherit; padding: 1px 4px; min-width: 90px;
  border: 1px solid var(--jp-border-color1, #bbb); background: var(--jp-layout-color0, #fff); color: inherit; }
.gp-train-actions { margin-top: 8px; display: flex; gap: 8px; align-items: center; }
.gp-train button { font: inherit; padding: 2px 12px; cursor: pointer; }
.gp-train-msg { margin: 6px 0; }
.gp-train-error { color: var(--jp-error-color1, #c62828); white-space: pre-wrap; }
.gp-train-charts { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0; }
.gp-train-chart { border: 1px solid var(--jp-border-color2, #ddd); border-radius: 3px; padding: 3px 5px; }
.gp-train-head { display: flex; justify-content: space-between; gap: 10px; }
.gp-train-chart svg { display: block; background: var(--jp-layout-color0, #fafafa); }
.gp-train-log, .gp-train-snippet { font-family: var(--jp-code-font-family, monospace); font-size: 11px;
  background: var(--jp-layout-color2, #f5f5f5); padding: 4px 6px; max-height: 140px; overflow: auto;
  white-space: pre-wrap; margin: 4px 0; }
.gp-train-final { font-weight: 600; }
`;

function chart(title: string, cls: string): LineChart {
  return lineChart(title, cls, 'gp-train', W, H);
}

function field(form: HTMLElement, label: string, input: HTMLElement): void {
  const l = el('label', '', label);
  form.append(l, input);
}

function numberInput(model: WidgetModel, key: string, step: string): HTMLInputElement {
  const input = el('input', `gp-train-${key.replace(/_/g, '-')}`);
  input.type = 'number';
  input.step = step;
  input.value = String(model.get('hyperparameters')?.[key] ?? '');
  input.onchange = () => {
    const h = { ...(model.get('hyperparameters') || {}) };
    h[key] = Number(input.value);
    model.set('hyperparameters', h);
    model.save_changes();
  };
  return input;
}

function select(model: WidgetModel, key: string, options: [string, string][], cls: string): HTMLSelectElement {
  const s = el('select', cls);
  for (const [value, text] of options) {
    const o = el('option', '', text);
    o.value = value;
    s.appendChild(o);
  }
  s.value = String(model.get(key) || (options[0] ? options[0][0] : ''));
  if (!model.get(key) && options[0]) {
    model.set(key, options[0][0]);
    model.save_changes();
  }
  s.onchange = () => {
    model.set(key, s.value);
    model.save_changes();
  };
  return s;
}

function render({ model, el: root }: RenderProps): () => void {
  injectStyle('gpupool-train-style', CSS);
  root.classList.add('gp-train');
  const title = el('h4');
  const name = el('span', '', 'Training');
  const badge = el('span', 'gp-train-badge');
  title.append(name, badge);
  const form = el('div', 'gp-train-form');
  const actions = el('div', 'gp-train-actions');
  const submit = el('button', 'gp-train-submit', 'Submit');
  const cancel = el('button', 'gp-train-cancel', 'Cancel');
  actions.append(submit, cancel);
  const error = el('div', 'gp-train-error');
  const msg = el('div', 'gp-train-msg');
  const charts = el('div', 'gp-train-charts');
  const loss = chart('loss by step', 'gp-train-loss');
  const acc = chart('test accuracy by epoch', 'gp-train-acc');
  charts.append(loss.box, acc.box);
  const log = el('pre', 'gp-train-log');
  const final = el('div', 'gp-train-final');
  const snippet = el('pre', 'gp-train-snippet');
  root.append(title, form, actions, error, msg, charts, final, snippet, log);

  const buildForm = () => {
    form.replaceChildren();
    const specs = (model.get('specs') || []) as { slug: string; display_name: string; fits_now: number | null }[];
    const specOptions: [string, string][] = specs.map(s => [
      s.slug,
      `${s.display_name}${s.fits_now !== null && s.fits_now !== undefined ? ` (${s.fits_now} free)` : ''}`
    ]);
    if (model.get('spec') && !specs.some(s => s.slug === model.get('spec'))) {
      specOptions.unshift([model.get('spec'), model.get('spec')]);
    }
    field(form, 'spec', select(model, 'spec', specOptions, 'gp-train-spec'));
    const datasets = (model.get('datasets') || []) as { name: string; format: string }[];
    const dsOptions: [string, string][] = datasets.map(d => [d.name, `${d.name} (${d.format})`]);
    if (model.get('dataset') && !datasets.some(d => d.name === model.get('dataset'))) {
      dsOptions.unshift([model.get('dataset'), model.get('dataset')]);
    }
    field(form, 'dataset', select(model, 'dataset', dsOptions, 'gp-train-dataset'));
    field(form, 'epochs', numberInput(model, 'epochs', '1'));
    field(form, 'batch size', numberInput(model, 'batch_size', '1'));
    field(form, 'learning rate', numberInput(model, 'learning_rate', 'any'));
    const opts = (model.get('hyper_help')?.optimizer?.choices || ['adam', 'adamw', 'sgd']) as string[];
    const opt = el('select', 'gp-train-optimizer');
    for (const o of opts) {
      const option = el('option', '', o);
      option.value = o;
      opt.appendChild(option);
    }
    opt.value = model.get('hyperparameters')?.optimizer || 'adam';
    opt.onchange = () => {
      model.set('hyperparameters', { ...(model.get('hyperparameters') || {}), optimizer: opt.value });
      model.save_changes();
    };
    field(form, 'optimizer', opt);
    field(form, 'seed', numberInput(model, 'seed', '1'));
  };

  const draw = () => {
    const state = String(model.get('state') || '');
    const graph = model.get('graph');
    const command = model.get('command') || [];
    name.textContent = `Training${model.get('name') ? ` ${model.get('name')}` : graph?.name ? ` ${graph.name}` : ''}${
      model.get('training_id') ? ` · ${model.get('training_id')}` : ''
    }`;
    badge.textContent = state || 'not submitted';
    badge.className = `gp-train-badge gp-${state || 'new'}`;
    const editing = !state || ENDED.includes(state);
    form.style.display = editing ? '' : 'none';
    submit.style.display = editing ? '' : 'none';
    submit.textContent = state ? 'Submit again' : 'Submit';
    submit.disabled = !graph && !command.length;
    cancel.style.display = LIVE.includes(state) ? '' : 'none';
    error.textContent = model.get('error') || (!graph && !command.length ? 'no graph: pass graph=… in Python' : '');
    msg.textContent = state ? String(model.get('message') || '') : '';
    const steps = (model.get('steps') || []) as [number, number | null, number | null][];
    const epochs = (model.get('epochs') || []) as { epoch: number; test_accuracy: number | null; samples_per_s: number }[];
    charts.style.display = steps.length || epochs.length ? '' : 'none';
    const losses = steps.map(s => s[1]);
    const top = Math.max(1e-9, ...losses.map(v => v ?? 0));
    loss.line.setAttribute('points', linePoints(losses, top * 1.05, W, H));
    const last = steps[steps.length - 1];
    loss.value.textContent = last
      ? `${last[1] !== null ? last[1].toFixed(4) : '–'} · ${last[2] !== null ? Math.round(last[2]) : '–'} samples/s`
      : '';
    const accs = epochs.map(e => e.test_accuracy);
    acc.line.setAttribute('points', linePoints(accs.length === 1 ? [accs[0], accs[0]] : accs, 1, W, H));
    const lastEpoch = epochs[epochs.length - 1];
    acc.value.textContent = lastEpoch
      ? `epoch ${lastEpoch.epoch}: ${lastEpoch.test_accuracy !== null ? lastEpoch.test_accuracy.toFixed(3) : '–'}`
      : '';
    const result = model.get('result');
    if (state === 'succeeded' && result) {
      const a = result.test_accuracy;
      final.textContent = `done: test loss ${Number(result.test_loss).toFixed(4)}${
        a !== null && a !== undefined ? `, test accuracy ${Number(a).toFixed(3)}` : ''
      } · files in ~/trainings/${model.get('training_id')}/`;
      snippet.textContent = result.snippet || '';
      snippet.style.display = result.snippet ? '' : 'none';
    } else {
      final.textContent = '';
      snippet.style.display = 'none';
    }
    log.textContent = model.get('log_tail') || '';
    log.style.display = log.textContent ? '' : 'none';
    log.scrollTop = log.scrollHeight;
  };

  submit.onclick = () => {
    model.set('error', '');
    model.save_changes();
    model.send({ action: 'submit' });
  };
  cancel.onclick = () => model.send({ action: 'cancel' });
  const keys = ['state', 'message', 'node', 'steps', 'epochs', 'log_tail', 'result', 'error', 'training_id', 'graph'];
  for (const k of keys) {
    model.on(`change:${k}`, draw);
  }
  const rebuild = () => {
    buildForm();
    draw();
  };
  model.on('change:specs', rebuild);
  model.on('change:datasets', rebuild);
  rebuild();
  return () => {
    for (const k of keys) {
      model.off(`change:${k}`, draw);
    }
    model.off('change:specs', rebuild);
    model.off('change:datasets', rebuild);
  };
}

export default { render };
