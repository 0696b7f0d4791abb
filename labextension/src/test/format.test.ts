import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  describeLive,
  describeSlice,
  formatMiB,
  linePoints,
  pushSample,
  shortModel,
  ISample
} from '../format';

const gpu = (util: number | null, used: number | null, total: number | null) => ({
  index: 0,
  uuid: 'GPU-1',
  model: 'NVIDIA A100-SXM4-80GB',
  utilization_gpu: util,
  memory_used_mib: used,
  memory_total_mib: total,
  memory_limit_mib: 40960,
  sm_percent: 30,
  whole: false
});

const sample = (t: number, util: number | null): ISample => ({
  time: t,
  gpus: [gpu(util, 3277, 40960)],
  cpu: { used_cores: 0.5, limit_cores: 2 },
  memory: { used_mib: 512, limit_mib: 4096 }
});

test('sizes read as people write them', () => {
  assert.equal(formatMiB(512), '512 MiB');
  assert.equal(formatMiB(40960), '40 GiB');
  assert.equal(formatMiB(3277), '3.2 GiB');
  assert.equal(formatMiB(1024), '1 GiB');
  assert.equal(formatMiB(null), '–');
});

test('the slice in a few words', () => {
  const slice = {
    reservation: 'r-1',
    spec: 'a100-40g',
    node: 'node-a',
    gpus: [{ index: 0, uuid: 'GPU-1', memory_mib: 40960, sm_percent: 30, whole: false }]
  };
  assert.equal(describeSlice(slice, { 'GPU-1': 'NVIDIA A100-SXM4-80GB' }), 'A100 · 40 GiB · 30 % SM');
  const two = {
    ...slice,
    gpus: [
      { index: 0, uuid: 'a', memory_mib: 81920, sm_percent: 0, whole: true },
      { index: 1, uuid: 'b', memory_mib: 81920, sm_percent: 0, whole: true }
    ]
  };
  assert.equal(describeSlice(two, { a: 'NVIDIA H100 80GB HBM3' }), '2 × H100');
  assert.equal(describeSlice({ ...slice, gpus: [] }), 'a100-40g · no GPU');
  // no NVML in the container: the model the catalog declares, else just "GPU"
  const declared = { ...slice, gpus: [{ ...slice.gpus[0], model: 'NVIDIA L40S' }] };
  assert.equal(describeSlice(declared), 'L40S · 40 GiB · 30 % SM');
  assert.equal(describeSlice(declared, { 'GPU-1': 'NVIDIA A100-SXM4-80GB' }), 'A100 · 40 GiB · 30 % SM');
  assert.equal(describeSlice(slice), 'GPU · 40 GiB · 30 % SM');
  assert.equal(shortModel('Tesla T4'), 'Tesla');
});

test('the live part of the status bar', () => {
  assert.equal(describeLive(sample(1, 12)), '12 % · 3.2 GiB / 40 GiB');
  assert.equal(describeLive(null), '');
  assert.equal(describeLive({ ...sample(1, 12), simulated: true }), '12 % · 3.2 GiB / 40 GiB (simulated)');
  assert.equal(describeLive({ ...sample(1, 0), gpus: [] }), '');
});

test('chart points: scaled, clamped, gaps skipped', () => {
  assert.equal(linePoints([0, 50, 100], 100, 100, 20), '0.0,20.0 50.0,10.0 100.0,0.0');
  assert.equal(linePoints([0, null, 200], 100, 100, 20), '0.0,20.0 100.0,0.0');
  assert.equal(linePoints([5], 100, 100, 20), '');
});

test('history keeps the newest', () => {
  let h: ISample[] = [];
  for (let i = 0; i < 5; i++) {
    h = pushSample(h, sample(i, i), 3);
  }
  assert.deepEqual(
    h.map(s => s.time),
    [2, 3, 4]
  );
});
