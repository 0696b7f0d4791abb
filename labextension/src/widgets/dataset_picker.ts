/**
 * The DatasetPicker notebook widget's front-end: the list (catalog and home, with a
 * filter), and the chosen dataset's details and preview (sample images, a table's head,
 * array shapes). Choosing sends the key to Python, which checks it and sends the preview.
 */
import { el, injectStyle } from '../dom';
import { RenderProps } from './anywidget';

interface Entry {
  key: string;
  source: string;
  name: string;
  format: string;
  description: string;
  size: number | null;
  files: number | null;
  read_only: boolean;
  available: boolean;
}

const CSS = `
.gp-picker { display: flex; gap: 10px; font: 12px var(--jp-ui-font-family, sans-serif);
  color: var(--jp-ui-font-color1, #222); min-height: 240px; max-height: 480px; }
.gp-picker-list { width: 280px; display: flex; flex-direction: column; border: 1px solid var(--jp-border-color2, #ddd); }
.gp-picker-list input { margin: 4px; font: inherit; padding: 2px 4px; border: 1px solid var(--jp-border-color1, #bbb);
  background: var(--jp-layout-color1, #fff); color: inherit; }
.gp-picker-items { overflow-y: auto; flex: 1; }
.gp-picker-group { padding: 6px 6px 2px; font-size: 10px; text-transform: uppercase; color: var(--jp-ui-font-color2, #666); }
.gp-picker-item { padding: 4px 8px; cursor: pointer; display: flex; justify-content: space-between; gap: 6px; }
.gp-picker-item:hover { background: var(--jp-layout-color2, #f0f0f0); }
.gp-picker-item.gp-chosen { background: var(--jp-brand-color3, #bbdefb); }
.gp-picker-item.gp-unavailable { opacity: .55; }
.gp-picker-fmt { color: var(--jp-ui-font-color2, #666); font-size: 11px; }
.gp-picker-detail { flex: 1; overflow: auto; padding: 4px; }
.gp-picker-detail h4 { margin: 0 0 4px; font-size: 13px; }
.gp-picker-grid { display: grid; grid-template-columns: repeat(8, 40px); gap: 3px; margin: 6px 0; }
.gp-picker-grid img { width: 40px; height: 40px; image-rendering: pixelated; object-fit: cover;
  border: 1px solid var(--jp-border-color2, #ddd); }
.gp-picker-table { border-collapse: collapse; font-family: var(--jp-code-font-family, monospace); }
.gp-picker-table td { border: 1px solid var(--jp-border-color2, #ddd); padding: 1px 6px; }
.gp-picker-error { color: var(--jp-error-color1, #c62828); }
`;

function size(n: number | null): string {
  if (n === null || n === undefined) {
    return '';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function render({ model, el: root }: RenderProps): () => void {
  injectStyle('gpupool-picker-style', CSS);
  const box = el('div', 'gp-picker');
  const list = el('div', 'gp-picker-list');
  const filter = document.createElement('input');
  filter.placeholder = 'Filter datasets';
  filter.setAttribute('aria-label', 'filter datasets');
  const items = el('div', 'gp-picker-items');
  list.append(filter, items);
  const detail = el('div', 'gp-picker-detail');
  box.append(list, detail);
  root.appendChild(box);

  const drawList = () => {
    const q = filter.value.toLowerCase();
    const entries: Entry[] = model.get('datasets') ?? [];
    items.replaceChildren();
    for (const [source, title] of [
      ['catalog', 'Pool datasets'],
      ['home', 'In my home']
    ]) {
      const mine = entries.filter(
        e => e.source === source && (e.name + ' ' + e.description).toLowerCase().includes(q)
      );
      items.appendChild(el('div', 'gp-picker-group', `${title} (${mine.length})`));
      for (const e of mine) {
        const row = el('div', 'gp-picker-item' + (e.key === model.get('selected') ? ' gp-chosen' : ''));
        row.setAttribute('data-key', e.key);
        if (!e.available) {
          row.classList.add('gp-unavailable');
          row.title = 'not on this node (its folder is missing or empty)';
        }
        row.append(el('span', '', e.name), el('span', 'gp-picker-fmt', `${e.format} ${size(e.size)}`));
        row.addEventListener('click', () => {
          model.set('selected', e.key);
          model.save_changes();
        });
        items.appendChild(row);
      }
    }
  };

  const drawDetail = () => {
    detail.replaceChildren();
    const error = model.get('error');
    if (error) {
      detail.appendChild(el('p', 'gp-picker-error', error));
    }
    const key = model.get('selected');
    const entry = (model.get('datasets') as Entry[]).find(e => e.key === key);
    if (!entry) {
      detail.appendChild(el('p', '', 'Pick a dataset to see it here; picker.value is the one picked.'));
      return;
    }
    detail.appendChild(el('h4', '', entry.name));
    const facts = [entry.format, size(entry.size), entry.files ? `${entry.files} files` : '', entry.read_only ? 'read-only' : '']
      .filter(Boolean)
      .join(' · ');
    detail.appendChild(el('div', 'gp-picker-fmt', facts));
    if (entry.description) {
      detail.appendChild(el('p', '', entry.description));
    }
    const p = model.get('preview') ?? {};
    if (p.classes?.length) {
      detail.appendChild(el('p', '', `classes: ${p.classes.join(', ')}`));
    }
    const images: string[] = [...(p.images ?? [])];
    for (const [name, a] of Object.entries<any>(p.arrays ?? {})) {
      detail.appendChild(el('div', 'gp-picker-array', `${name}: shape (${a.shape.join(', ')}), ${a.dtype}`));
      images.push(...(a.images ?? []));
    }
    if (images.length) {
      const grid = el('div', 'gp-picker-grid');
      grid.setAttribute('data-testid', 'preview-images');
      for (const src of images.slice(0, 16)) {
        const img = document.createElement('img');
        img.src = src;
        img.alt = 'sample';
        grid.appendChild(img);
      }
      detail.appendChild(grid);
    }
    if (p.table?.length) {
      const table = el('table', 'gp-picker-table');
      for (const row of p.table as string[][]) {
        const tr = document.createElement('tr');
        row.forEach(c => tr.appendChild(el('td', '', c)));
        table.appendChild(tr);
      }
      detail.appendChild(table);
    }
    for (const line of (p.text ?? []) as string[]) {
      detail.appendChild(el('div', 'gp-picker-fmt', line));
    }
    if (p.note) {
      detail.appendChild(el('p', 'gp-picker-fmt', p.note));
    }
  };

  const redraw = () => {
    drawList();
    drawDetail();
  };
  filter.addEventListener('input', drawList);
  model.on('change:datasets', redraw);
  model.on('change:selected', redraw);
  model.on('change:preview', drawDetail);
  model.on('change:error', drawDetail);
  redraw();
  return () => {
    model.off('change:datasets', redraw);
    model.off('change:selected', redraw);
    model.off('change:preview', drawDetail);
    model.off('change:error', drawDetail);
  };
}

export default { render };
