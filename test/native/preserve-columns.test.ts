// SPEC §3 step 0 on columns-layout stream tasks (GPT-2 Conv1D [in, out], experts-columns [E, in, out]):
// neuron k is stored column k, so the preserved task vectors are the columns of τ times P (P of the
// input width). A columns task must give the bytes of the rows task on the transposed tensor (the
// same neurons, the same fixed GEMM blocks), for any thread count and block size, with plain and
// augmented [x; 1] statistics (bias element k with neuron k); and the preserved rows are held to
// the f64 reference (test/support/preserve-reference.ts) within SPEC §5.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative, type NativePreserve } from '../../lib/native';
import { rng, randn } from '../support/prng';
import { gram, maxRelError, ridgeP } from '../support/preserve-reference';

const addon = loadNative();
const stream = addon.stream as (s: unknown) => Promise<Array<Record<string, Float64Array | Float32Array | Uint8Array> | null>>;
const PRES_TOL = 1e-5; // SPEC §5: each preserved element within 1e-5·‖x‖₂ of the f64 x·P

/** [E, R, C] -> [E, C, R] (each stored matrix transposed). */
function transposeGroups(x: Float32Array, E: number, R: number, C: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let g = 0; g < E; g++) for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) y[g * R * C + c * R + r] = x[g * R * C + r * C + c]!;
  return y;
}

/** Keys [N, d] with a shared mean; the augmented form appends a constant 1. */
function keys(seed: number, N: number, n: number, aug: boolean): { K: Float32Array; d: number } {
  const r = rng(seed), d = aug ? n + 1 : n;
  const mu = randn(r, n, 1.5), raw = randn(r, N * n);
  const K = new Float32Array(N * d);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < n; j++) K[i * d + j] = raw[i * n + j]! + mu[j]!;
    if (aug) K[i * d + n] = 1;
  }
  return { K, d };
}

interface Case { E: number; inW: number; out: number; aug: boolean }

/** The stored tensors of a columns case ([E, in, out]) and the bias [E·out]. */
function data(c: Case, seed: number) {
  const r = rng(seed), len = c.E * c.inW * c.out, m = c.E * c.out;
  const base = randn(r, len), dOld = randn(r, len, 0.1), dNew = randn(r, len, 0.1);
  const old = base.map((v, i) => v + dOld[i]!), nw = base.map((v, i) => v + 0.5 * dOld[i]! + dNew[i]!);
  const bBase = randn(r, m), bOld = bBase.map((v) => v + 0.1 * (r() - 0.5)), bNew = bBase.map((v) => v + 0.1 * (r() - 0.5));
  return { base, old, nw, bBase, bOld, bNew, m };
}

/** Runs [weight task, bias task (augmented)] through addon.stream; returns the output file's bytes and the results. */
async function run(c: Case, parts: Float32Array[], columns: boolean, preserve: NativePreserve, threads: number, blockBytes: number, strategy = 'geoedit') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-prescol-'));
  try {
    const offs: number[] = [];
    let off = 0;
    const buf = Buffer.alloc(parts.reduce((s, p) => s + p.byteLength, 0));
    for (const p of parts) { offs.push(off); Buffer.from(p.buffer, p.byteOffset, p.byteLength).copy(buf, off); off += p.byteLength; }
    fs.writeFileSync(path.join(dir, 'in.bin'), buf);
    const fd = fs.openSync(path.join(dir, 'in.bin'), 'r'), ofd = fs.openSync(path.join(dir, 'out.bin'), 'w+');
    const src = (q: number) => ({ fd, offset: offs[q]!, dtype: 'f32', file: 'in.bin' });
    const m = c.E * c.out, wBytes = m * c.inW * 4;
    const weight: Record<string, unknown> = {
      kind: 0, name: 'h.0.mlp.c_fc.weight', rows: m, cols: c.inW, base: src(0), old: src(1), new: src(2),
      outFd: ofd, outOffset: 0, outDtype: 'f32', stats: true, preserve: 0,
      ...(columns ? { layout: 1, groups: c.E } : {}),
      ...(c.aug ? { biasBase: src(3), biasOld: src(4), biasNew: src(5) } : {}),
    };
    const tasks: Array<Record<string, unknown>> = [weight];
    if (c.aug) tasks.push({ kind: 0, name: 'h.0.mlp.c_fc.bias', rows: 1, cols: m, base: src(3), tauFrom: 0, outFd: ofd, outOffset: wBytes, outDtype: 'f32', stats: true });
    const res = await stream({ params: { strategy }, threads, blockBytes, preserves: [preserve], tasks });
    fs.closeSync(fd); fs.closeSync(ofd);
    const bytes = fs.readFileSync(path.join(dir, 'out.bin'));
    const w = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + wBytes));
    const b = c.aug ? new Float32Array(bytes.buffer.slice(bytes.byteOffset + wBytes, bytes.byteOffset + wBytes + m * 4)) : null;
    return { w, b, res };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const raw = (x: ArrayBufferView) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

const CASES: Array<[string, Case]> = [
  ['Conv1D [in 29, out 1000] (more than one GEMM block of neurons)', { E: 1, inW: 29, out: 1000, aug: false }],
  ['Conv1D [in 29, out 1000] with its bias, augmented [x; 1]', { E: 1, inW: 29, out: 1000, aug: true }],
  ['experts-columns [E 2, in 16, out 250] (groups not a multiple of 192 neurons), augmented', { E: 2, inW: 16, out: 250, aug: true }],
  ['experts-columns [E 3, in 8, out 900] (several blocks per expert)', { E: 3, inW: 8, out: 900, aug: false }],
];

describe('preservation on columns-layout stream tasks (SPEC §2 layouts + §3 step 0)', () => {
  for (const [label, c] of CASES) {
    it(`${label}: the bytes of the rows task on the transposed tensor, for threads 1 and 2 and any block size`, async () => {
      const d0 = data(c, 3 + c.out);
      const { K, d } = keys(7, 300, c.inW, c.aug);
      const K1 = keys(8, 40, c.inW, c.aug).K;
      const preserve: NativePreserve = { keys: K, keysShape: [300, d], editKeys: K1, editKeysShape: [40, d], rho: 0.3, mu: 100 };
      const stored = [d0.base, d0.old, d0.nw];
      const rowsParts = [...stored.map((x) => transposeGroups(x, c.E, c.inW, c.out)), d0.bBase, d0.bOld, d0.bNew];
      const colsParts = [...stored, d0.bBase, d0.bOld, d0.bNew];
      const ref = await run(c, rowsParts, false, preserve, 2, 1 << 22);
      // the reference run is itself a preserved edit: it moved the weights, and differently from no preservation
      expect(ref.res[0]!.preserveEnergy![3]).toBeLessThan(ref.res[0]!.preserveEnergy![2]!);
      for (const threads of [1, 2]) {
        for (const blockBytes of [4096, 1 << 22]) {
          const got = await run(c, colsParts, true, preserve, threads, blockBytes);
          const tag = `threads ${threads}, blockBytes ${blockBytes}`;
          // stored [E, in, out] back to the neurons' [E, out, in]
          expect(raw(transposeGroups(got.w, c.E, c.inW, c.out)).equals(raw(ref.w)), tag).toBe(true);
          if (c.aug) expect(raw(got.b!).equals(raw(ref.b!)), `bias, ${tag}`).toBe(true);
          for (const k of ['cos', 'region', 'coefNew', 'coefOld', 'na', 'nb'] as const) expect(raw(got.res[0]![k]!).equals(raw(ref.res[0]![k]!)), `${k}, ${tag}`).toBe(true);
          expect(Array.from(got.res[0]!.preserveEnergy!)).toEqual(Array.from(ref.res[0]!.preserveEnergy!));
          if (c.aug) expect(raw(got.res[1]!.cos!).equals(raw(ref.res[1]!.cos!))).toBe(true);
        }
      }
    });
  }

  it('the preserved columns are x·P of the f64 reference within SPEC §5 (task arithmetic on a zero base), bias element k with neuron k', async () => {
    const c: Case = { E: 1, inW: 29, out: 1000, aug: true };
    const d0 = data(c, 11);
    const { K, d } = keys(5, 300, c.inW, true);
    const P = ridgeP(gram(K, 300, d), null, d, 0.3, 0);
    const zero = new Float32Array(d0.base.length), zb = new Float32Array(d0.m);
    // zero base and old, new = τ: the output is exactly 0 + 1·(τ·P) per neuron (a stored column)
    const got = await run(c, [zero, zero, d0.nw, zb, zb, d0.bNew], true, { keys: K, keysShape: [300, d], rho: 0.3 }, 2, 4096, 'task-arithmetic');
    const m = d0.m, n = c.inW;
    const x = new Float64Array(m * d), y = new Float64Array(m * d);
    for (let k = 0; k < m; k++) {
      for (let j = 0; j < n; j++) { x[k * d + j] = d0.nw[j * m + k]!; y[k * d + j] = got.w[j * m + k]!; }
      x[k * d + n] = d0.bNew[k]!;
      y[k * d + n] = got.b![k]!;
    }
    expect(maxRelError(y, x, P, m, d)).toBeLessThanOrEqual(PRES_TOL);
    // a check that can fail: reading the stored rows as neurons is not this operator's result
    expect(maxRelError(y, x, ridgeP(gram(K, 300, d), null, d, 0.5, 0), m, d)).toBeGreaterThan(PRES_TOL);
  });

  it('a preserve operator of the stored row length (out) does not fit a columns task: ERR_SHAPE_MISMATCH naming the tensor', async () => {
    const c: Case = { E: 1, inW: 6, out: 10, aug: false };
    const d0 = data(c, 2);
    const { K } = keys(1, 50, 10, false);
    const err = await run(c, [d0.base, d0.old, d0.nw], true, { keys: K, keysShape: [50, 10], tensor: 'h.0.mlp.c_fc.weight' }, 1, 4096).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_SHAPE_MISMATCH', details: { tensor: 'h.0.mlp.c_fc.weight' } });
    expect(String((err as Error).message)).toMatch(/\b10\b.*\b6\b|\b6\b.*\b10\b/);
  });
});
