/**
 * The server extension's endpoints (gpupool/…), reached with the lab's own login: the
 * browser never holds a hub token.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ISample, ISlice } from './format';

export interface INotice {
  reservation: string;
  kind: string;
  message: string;
  act_at: string | null;
  stopping?: boolean;
}

export interface IStatus {
  slice: ISlice;
  reservation: Record<string, any> | null;
  notices: INotice[];
  error: string | null;
}

export interface IMetrics {
  slice: ISlice;
  interval: number;
  history: ISample[];
}

export interface ISpec {
  slug: string;
  display_name: string;
  gpus: number;
  gpu_memory_mib?: number | null;
  fits_now: number;
}

export interface IReservation {
  id: string;
  spec: string;
  kind: string;
  node: string;
  state: string;
  created_at: string;
  server_name: string;
}

export interface ITraining {
  id: string;
  name: string;
  state: string;
  spec: string;
  node: string | null;
  message: string;
  checkpoint_epoch: number | null;
  hyperparameters: Record<string, any> | null;
  result: Record<string, any> | null;
  submitted_at: string;
}

const settings = ServerConnection.makeSettings();

export async function get<T>(path: string, init: RequestInit = {}): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'gpupool', path);
  const resp = await ServerConnection.makeRequest(url, init, settings);
  const text = await resp.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { message: text };
  }
  if (!resp.ok) {
    throw new ServerConnection.ResponseError(resp, body?.message ?? resp.statusText);
  }
  return body as T;
}

/** One sample per interval from gpupool/metrics/ws; reconnects after a drop. */
export class MetricsStream {
  private socket: WebSocket | null = null;
  private stopped = false;
  private retry = 1000;

  constructor(private onSample: (s: ISample) => void) {}

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    this.socket?.close();
    this.socket = null;
  }

  private open(): void {
    let url = URLExt.join(settings.wsUrl, 'gpupool', 'metrics', 'ws');
    if (settings.token) {
      url += `?token=${encodeURIComponent(settings.token)}`;
    }
    const ws = new WebSocket(url);
    this.socket = ws;
    ws.onmessage = ev => {
      this.retry = 1000;
      try {
        const msg = JSON.parse(ev.data);
        if (msg.type === 'sample') {
          this.onSample(msg.sample as ISample);
        }
      } catch (e) {
        console.warn('gpupool: bad metrics message', e);
      }
    };
    ws.onclose = () => {
      if (!this.stopped) {
        setTimeout(() => this.open(), this.retry);
        this.retry = Math.min(this.retry * 2, 30000);
      }
    };
  }
}
