// Lifecycle of the addon (as classic-level tests it): context-aware (loads and edits in several
// worker_threads at once), clean exit with async work pending, worker termination mid-edit, and
// GC during async work (the binding holds its inputs and outputs, and lets go afterwards).
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { loadNativeFrom, packageRoot } from '../../lib/native';
import { editTensorSync } from '../../lib/index';

const child = path.join(__dirname, '..', 'support', 'fixtures', 'lifecycle-child.cjs');
let addonPath = '';

beforeAll(() => {
  addonPath = loadNativeFrom(packageRoot()).path;
});

function runChild(args: string[]): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, GEOEDIT_ADDON: addonPath, NODE_OPTIONS: '' },
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Same generator as the worker code below (xorshift). */
function tensor(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return a;
}

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const addon = require(workerData.addonPath);
${tensor.toString().replace(/: number|: Float32Array/g, '')}
(async () => {
  const { rows, cols, seed } = workerData;
  const n = rows * cols;
  const spec = (threads) => ({
    rows, cols, base: tensor(n, seed), baseDtype: 'f32', old: tensor(n, seed + 1), oldDtype: 'f32',
    new: tensor(n, seed + 2), newDtype: 'f32', outDtype: 'f32', wantOut: true, threads,
    params: { strategy: 'geoedit', scale: 1, kappa: 1.5, keepOrthogonal: 0.5, fuseAligned: 0, forgetConflicting: 0, lambda: 1, density: 1, temperature: 1, allowNonFinite: false },
  });
  // Several async edits in flight at once in this thread, plus a sync one.
  const rs = await Promise.all([addon.edit(spec(0)), addon.edit(spec(1)), addon.edit(spec(2))]);
  const s = addon.editSync(spec(0));
  parentPort.postMessage({ outs: rs.map((r) => r.out).concat([s.out]), version: addon.info().version });
})().catch((e) => { parentPort.postMessage({ error: String(e && e.stack || e) }); });
`;

describe('lifecycle', () => {
  it('is context-aware: loads and edits in several worker_threads at once, results match the main thread', async () => {
    const rows = 96, cols = 257;
    const jobs = [0, 1, 2, 3].map((w) => new Promise<{ seed: number; outs: Float32Array[]; version: string }>((resolve, reject) => {
      const seed = 1000 + w * 10;
      const worker = new Worker(WORKER, { eval: true, workerData: { addonPath, rows, cols, seed } });
      worker.once('message', (m: { error?: string; outs: Float32Array[]; version: string }) => {
        if (m.error) reject(new Error(m.error));
        else resolve({ seed, outs: m.outs, version: m.version });
        void worker.terminate();
      });
      worker.once('error', reject);
    }));
    const results = await Promise.all(jobs);
    expect(results).toHaveLength(4);
    for (const r of results) {
      const t = (s: number) => ({ dtype: 'f32' as const, shape: [rows, cols], data: tensor(rows * cols, s) });
      const want = editTensorSync({ base: t(r.seed), old: t(r.seed + 1), new: t(r.seed + 2) }).out.data as Float32Array;
      expect(r.outs).toHaveLength(4);
      for (const out of r.outs) {
        expect(out).toBeInstanceOf(Float32Array);
        expect(Buffer.from(out.buffer, out.byteOffset, out.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true);
      }
    }
  });

  it('exits cleanly (code 0, no signal) when process.exit() is called with edits pending', () => {
    for (const mode of ['exit-pending', 'exit-in-callback']) {
      const r = runChild([child, mode]);
      expect({ mode, status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ mode, status: 0, signal: null, stderr: '' });
    }
  });

  it('an uncaught exception with edits pending ends the process normally (code 1, the error printed, no signal)', () => {
    const r = runChild([child, 'throw-pending']);
    expect(r.signal, r.stderr).toBe(null);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('boom with edits pending');
    expect(r.stderr).not.toMatch(/Aborted|Segmentation|terminate called|FATAL/);
  });

  it('survives worker.terminate() while the worker has edits in flight', () => {
    const r = runChild([child, 'worker-terminate']);
    expect(r.signal, r.stderr).toBe(null);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { terminated: number; stillWorks: boolean };
    expect(out.terminated).toBe(4);
    expect(out.stillWorks).toBe(true);
  });

  it('survives GC during async work: inputs dropped, gc() in a loop, results exact; inputs freed afterwards', () => {
    const r = runChild(['--expose-gc', child, 'gc']);
    expect(r.signal, r.stderr).toBe(null);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { jobs: number; bad: number; gcs: number; alive: number };
    expect(out.jobs).toBe(12);
    expect(out.bad).toBe(0);
    expect(out.gcs).toBeGreaterThan(0);
    expect(out.alive).toBe(0);
  });
});
