/**
 * Pure helpers of the gpupool lab extension: formatting and chart geometry. No DOM and no
 * JupyterLab imports, so that node's test runner checks them (src/test/).
 */

export interface IGpuSample {
  index: number;
  uuid: string;
  model?: string | null;
  utilization_gpu: number | null;
  memory_used_mib: number | null;
  memory_total_mib: number | null;
  memory_limit_mib: number;
  sm_percent: number | null;
  whole: boolean;
}

export interface ISample {
  time: number;
  gpus: IGpuSample[];
  cpu: { used_cores: number | null; limit_cores: number | null };
  memory: { used_mib: number | null; limit_mib: number | null };
  nvml_error?: string;
  /** the node has no GPU: the figures follow this server's CPU and memory (a demo pool) */
  simulated?: boolean;
}

export interface ISliceGpu {
  index: number;
  uuid: string;
  memory_mib: number;
  sm_percent: number;
  whole: boolean;
  /** as the catalog declares it (NVML's name, where there is one, wins) */
  model?: string;
}

export interface ISlice {
  reservation: string | null;
  spec: string | null;
  node: string | null;
  gpus: ISliceGpu[];
}

/** 512 -> "512 MiB", 40960 -> "40 GiB", 3277 -> "3.2 GiB"; null -> "–". */
export function formatMiB(mib: number | null | undefined): string {
  if (mib === null || mib === undefined || Number.isNaN(mib)) {
    return '–';
  }
  if (mib < 1024) {
    return `${Math.round(mib)} MiB`;
  }
  const gib = mib / 1024;
  return `${gib >= 10 || Number.isInteger(gib) ? Math.round(gib) : gib.toFixed(1)} GiB`;
}

export function formatPercent(v: number | null | undefined): string {
  return v === null || v === undefined ? '–' : `${Math.round(v)} %`;
}

/** What this server holds, in a few words: "A100 · 40 GiB · 30 % SM", "2 × H100". */
export function describeSlice(slice: ISlice, models: Record<string, string> = {}): string {
  if (!slice.gpus.length) {
    return slice.spec ? `${slice.spec} · no GPU` : 'no GPU';
  }
  const g = slice.gpus[0];
  const model = shortModel(models[g.uuid] || g.model || '');
  const count = slice.gpus.length > 1 ? `${slice.gpus.length} × ` : '';
  const parts = [`${count}${model || 'GPU'}`];
  if (!g.whole) {
    parts.push(formatMiB(g.memory_mib));
  }
  if (g.sm_percent) {
    parts.push(`${g.sm_percent} % SM`);
  }
  return parts.join(' · ');
}

/** "NVIDIA A100-SXM4-80GB" -> "A100", "NVIDIA H100 80GB HBM3" -> "H100". */
export function shortModel(model: string): string {
  const m = model.replace(/^NVIDIA\s+/i, '').split(/[\s-]/)[0];
  return m || model;
}

/** The status bar's live part: "12 % · 3.2 / 40 GiB" (memory as seen in the slice). */
export function describeLive(sample: ISample | null): string {
  if (!sample || !sample.gpus.length) {
    return '';
  }
  const util = Math.max(...sample.gpus.map(g => g.utilization_gpu ?? 0));
  const used = sample.gpus.reduce((s, g) => s + (g.memory_used_mib ?? 0), 0);
  const total = sample.gpus.reduce(
    (s, g) => s + (g.memory_total_mib ?? g.memory_limit_mib ?? 0),
    0
  );
  const sim = sample.simulated ? ' (simulated)' : '';
  return `${formatPercent(util)} · ${formatMiB(used)} / ${formatMiB(total)}${sim}`;
}

/**
 * An SVG polyline's points for values in [0, top] over a width x height box, newest on
 * the right; missing values are skipped.
 */
export function linePoints(
  values: (number | null)[],
  top: number,
  width: number,
  height: number
): string {
  const n = values.length;
  if (n < 2 || top <= 0) {
    return '';
  }
  const step = width / (n - 1);
  const out: string[] = [];
  values.forEach((v, i) => {
    if (v === null || v === undefined) {
      return;
    }
    const y = height - (Math.min(Math.max(v, 0), top) / top) * height;
    out.push(`${(i * step).toFixed(1)},${y.toFixed(1)}`);
  });
  return out.join(' ');
}

/** The last `keep` samples, oldest first, with `next` appended. */
export function pushSample(history: ISample[], next: ISample, keep = 300): ISample[] {
  const out = history.concat([next]);
  return out.length > keep ? out.slice(out.length - keep) : out;
}
