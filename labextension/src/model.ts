/**
 * What the status bar item and the panel show, kept in one place: the slice, the last
 * samples (from the WebSocket), the pool's notices, specs and my trainings (polled).
 */
import { ISignal, Signal } from '@lumino/signaling';

import {
  get,
  IMetrics,
  INotice,
  ISpec,
  IStatus,
  ITraining,
  MetricsStream
} from './api';
import { ISample, ISlice, pushSample } from './format';

export class PoolModel {
  slice: ISlice | null = null;
  history: ISample[] = [];
  notices: INotice[] = [];
  specs: ISpec[] = [];
  trainings: ITraining[] = [];
  reservationState: string | null = null;
  error: string | null = null;
  models: Record<string, string> = {};
  private stream = new MetricsStream(s => this.add(s));
  private timer: number | null = null;
  private _changed = new Signal<this, void>(this);

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get latest(): ISample | null {
    return this.history.length ? this.history[this.history.length - 1] : null;
  }

  async start(): Promise<void> {
    try {
      const m = await get<IMetrics>('metrics');
      this.slice = m.slice;
      m.history.forEach(s => this.add(s, false));
    } catch (e: any) {
      this.error = `metrics: ${e.message ?? e}`;
    }
    this._changed.emit();
    this.stream.start();
    await this.poll();
    this.timer = window.setInterval(() => void this.poll(), 30000);
  }

  dispose(): void {
    this.stream.stop();
    if (this.timer !== null) {
      window.clearInterval(this.timer);
    }
  }

  add(s: ISample, emit = true): void {
    this.history = pushSample(this.history, s);
    for (const g of s.gpus) {
      if (g.model) {
        this.models[g.uuid] = g.model;
      }
    }
    if (emit) {
      this._changed.emit();
    }
  }

  async cancelTraining(id: string): Promise<void> {
    try {
      await get(`pool/trainings/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    } catch (e: any) {
      this.error = `cancel ${id}: ${e.message ?? e}`;
    }
    await this.poll();
  }

  async poll(): Promise<void> {
    try {
      const st = await get<IStatus>('status');
      this.slice = st.slice;
      this.notices = st.notices;
      this.reservationState = st.reservation?.state ?? null;
      this.error = st.error;
      const specs = await get<{ specs: ISpec[] }>('pool/specs');
      this.specs = specs.specs;
      const mine = await get<{ trainings: ITraining[] }>('pool/trainings');
      // the live ones, then the most recent others
      const live = mine.trainings.filter(t => ['queued', 'starting', 'running'].includes(t.state));
      const ended = mine.trainings.filter(t => !live.includes(t)).slice(-5).reverse();
      this.trainings = [...live, ...ended];
    } catch (e: any) {
      this.error = `the pool did not answer: ${e.message ?? e}`;
    }
    this._changed.emit();
  }
}
