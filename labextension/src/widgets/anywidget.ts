/** The part of anywidget's front-end API the widgets use (anywidget's AFM: a module whose
 * default export has render({model, el}), returning a cleanup). */
export interface WidgetModel {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  send(content: unknown): void;
  on(event: string, cb: () => void): void;
  off(event: string, cb: () => void): void;
}

export interface RenderProps {
  model: WidgetModel;
  el: HTMLElement;
}

/** The page's Jupyter server: base URL and token, from the config JupyterLab and
 * Notebook 7 put in every page (no request needed). */
export function serverConfig(): { baseUrl: string; wsUrl: string; token: string } {
  let data: Record<string, string> = {};
  const script = document.getElementById('jupyter-config-data');
  if (script?.textContent) {
    try {
      data = JSON.parse(script.textContent);
    } catch {
      data = {};
    }
  }
  let baseUrl = data.baseUrl || '/';
  if (!baseUrl.endsWith('/')) {
    baseUrl += '/';
  }
  const wsUrl = data.wsUrl || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${baseUrl}`;
  return { baseUrl, wsUrl: wsUrl.endsWith('/') ? wsUrl : wsUrl + '/', token: data.token || '' };
}
