/** A small line chart for the notebook widgets: a titled box with a value and an SVG
 * polyline (points from format.linePoints). */

export interface LineChart {
  box: HTMLElement;
  line: SVGPolylineElement;
  value: HTMLElement;
}

/** ``prefix``: the widget's class prefix; the parts are ``{prefix}-chart``,
 * ``{prefix}-head`` and ``{prefix}-value``, plus ``cls`` on the box. */
export function lineChart(title: string, cls: string, prefix: string, width: number, height: number): LineChart {
  const box = document.createElement('div');
  box.className = `${prefix}-chart ${cls}`;
  const head = document.createElement('div');
  head.className = `${prefix}-head`;
  const name = document.createElement('span');
  name.textContent = title;
  const value = document.createElement('span');
  value.className = `${prefix}-value`;
  head.append(name, value);
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', 'var(--jp-brand-color1, #1976d2)');
  line.setAttribute('stroke-width', '1.5');
  svg.appendChild(line);
  box.append(head, svg);
  return { box, line, value };
}
