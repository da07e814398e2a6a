// SPEC §3 step 0 (preservation statistics) through the addon, against the f64 reference of
// test/support/preserve-reference.ts (its own Gauss-Jordan P, not the core's Eigen path).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative, type NativePreserve, type NativeSpec } from '../../lib/native';
import { rng, randn } from '../support/prng';
import { basisP, gram, maxRelError, orthonormalRows, ridgeP } from '../support/preserve-reference';

const addon = loadNative();
const PRES_TOL = 1e-5; // SPEC §5: each element within 1e-5·‖x‖₂ of the f64 x·P
const COS_TOL = 1e-6;  // cos within 1e-6 of the reference on the backend's own preserved rows

/** Keys [N, d] with a strong shared mean (as activations have). */
function keys(seed: number, N: number, d: number, mean: number): Float32Array {
  const r = rng(seed);
  const mu = randn(r, d, mean), K = randn(r, N * d);
  for (let i = 0; i < N; i++) for (let j = 0; j < d; j++) K[i * d + j] += mu[j]!;
  return K;
}

const m = 230, n = 29;
const r0 = rng(5);
const base = randn(r0, m * n), tauOld = randn(r0, m * n, 0.1), tauNew = randn(r0, m * n, 0.1);
const old = base.map((x, i) => x + tauOld[i]!), nw = base.map((x, i) => x + tauNew[i]!);
// the task vectors as the core forms them (f32 subtraction)
const ta = Float64Array.from(old, (x, i) => Math.fround(x - base[i]!));
const tb = Float64Array.from(nw, (x, i) => Math.fround(x - base[i]!));
const K0 = keys(1, 200, n, 2), K1 = keys(2, 30, n, 0.5);
const C0 = Float32Array.from(gram(K0, 200, n)), C1 = Float32Array.from(gram(K1, 30, n));

function spec(extra: Partial<NativeSpec>, b = base, o = old, w = nw): NativeSpec {
  return {
    rows: m, cols: n, base: b, baseDtype: 'f32', old: o, oldDtype: 'f32', new: w, newDtype: 'f32', outDtype: 'f32', wantOut: true,
    threads: 2, params: { strategy: 'task-arithmetic' }, tensorName: 'layers.3.mlp.up.weight', ...extra,
  };
}
const zero = new Float32Array(m * n);

/** The preserved rows of each side: task arithmetic at scale 1 on a zero base gives 0 + 1·(τ·P), exact in f32. */
function preservedRows(pre: NativePreserve, tau: Float64Array): Float32Array {
  const r = addon.editSync(spec({ preserve: pre }, zero, zero, Float32Array.from(tau)));
  return r.out as Float32Array;
}

describe('preservation statistics (SPEC §3 step 0) through the addon', () => {
  const P = ridgeP(C0, C1, n, 0.3, 10);

  it('ridge with C1: preserved rows within 1e-5·‖x‖ of the f64 reference, on every SIMD level', () => {
    const levels = addon.info().simdSupported;
    expect(levels.length).toBeGreaterThan(0);
    for (let lv = 0; lv < 3; lv++) {
      if (!levels.includes(['scalar', 'avx2', 'avx512'][lv]!)) continue;
      const r = addon.editSync(spec({ preserve: { cov: C0, editCov: C1, rho: 0.3, mu: 10 }, simd: lv }, zero, zero, Float32Array.from(tb)));
      const err = maxRelError(r.out as Float32Array, tb, P, m, n);
      expect(err, `simd ${lv}`).toBeLessThanOrEqual(PRES_TOL);
      // a different rho is a different operator: the check can fail
      expect(maxRelError(r.out as Float32Array, tb, ridgeP(C0, C1, n, 0.33, 10), m, n)).toBeGreaterThan(PRES_TOL);
    }
  });

  it('geoedit on the preserved rows: cos and regions from the backend\'s own preserved rows, energy removed reported', async () => {
    const pre: NativePreserve = { cov: C0, editCov: C1, rho: 0.3, mu: 10 };
    const r = await addon.edit(spec({ preserve: pre, params: { strategy: 'geoedit' } }));
    const pa = preservedRows(pre, ta), pb = preservedRows(pre, tb);
    const t = 2 / Math.sqrt(n);
    let eaB = 0, eaA = 0, ebB = 0, ebA = 0;
    for (let i = 0; i < m; i++) {
      let dot = 0, na = 0, nb = 0;
      for (let j = 0; j < n; j++) {
        const a = pa[i * n + j]!, b = pb[i * n + j]!;
        dot += a * b; na += a * a; nb += b * b;
        eaB += ta[i * n + j]! ** 2; ebB += tb[i * n + j]! ** 2;
      }
      eaA += na; ebA += nb;
      const cos = na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
      expect(Math.abs(r.cos[i]! - cos)).toBeLessThanOrEqual(COS_TOL);
      if (Math.abs(Math.abs(cos) - t) > 1e-6) expect(r.region[i]).toBe(Math.abs(cos) <= t ? 0 : cos > 0 ? 1 : 2);
      expect(r.na[i]).toBeCloseTo(na, 10);
    }
    const e = (r as unknown as { preserveEnergy: Float64Array }).preserveEnergy;
    expect(e.length).toBe(10);
    expect(e[9]).toBe(0); // projected on the CPU
    expect(e[0]! / eaB).toBeCloseTo(1, 9);
    expect(e[1]! / eaA).toBeCloseTo(1, 6);
    expect(e[2]! / ebB).toBeCloseTo(1, 9);
    expect(e[3]! / ebA).toBeCloseTo(1, 6);
    expect(e[3]!).toBeLessThan(e[2]!); // the projection removed energy
    expect(e[8]).toBe(m);
    // The base is untouched: output = base + c_new·b' + c_old·a' on the preserved rows.
    const out = r.out as Float32Array;
    for (let i = 0; i < m; i += 17)
      for (let j = 0; j < n; j++) {
        const want = Math.fround(Math.fround(base[i * n + j]! + Math.fround(r.coefNew[i]! * pb[i * n + j]!)) + Math.fround(r.coefOld[i]! * pa[i * n + j]!));
        expect(out[i * n + j]).toBe(want);
      }
  });

  it('keys (C formed in the core) give the cov result; same bytes for 1 and 2 threads', () => {
    const a = addon.editSync(spec({ preserve: { keys: K0, keysShape: [200, n], editKeys: K1, editKeysShape: [30, n] }, threads: 1, params: { strategy: 'geoedit' } }));
    const b = addon.editSync(spec({ preserve: { keys: K0, keysShape: [200, n], editKeys: K1, editKeysShape: [30, n] }, threads: 2, params: { strategy: 'geoedit' } }));
    expect(Buffer.from((a.out as Float32Array).buffer)).toEqual(Buffer.from((b.out as Float32Array).buffer));
    const pk = preservedRows({ keys: K0, keysShape: [200, n], editKeys: K1, editKeysShape: [30, n] }, tb);
    // no rho/mu given: the core's defaults (core/preserve.h; test/unit/defaults.test.ts holds them equal to lib's)
    const def = addon.defaults().preserve;
    expect(maxRelError(pk, tb, ridgeP(gram(K0, 200, n), gram(K1, 30, n), n, def.rho, def.mu), m, n)).toBeLessThanOrEqual(PRES_TOL);
  });

  it('basis form: x − (x·Uᵀ)·U', () => {
    const k = 5;
    const U = Float32Array.from(orthonormalRows(randn(rng(9), k * n), k, n));
    const got = preservedRows({ basis: U, basisShape: [k, n] }, tb);
    expect(maxRelError(got, tb, basisP(U, k, n), m, n)).toBeLessThanOrEqual(PRES_TOL);
  });

  it('augmented [x; 1] with the bias: the weight row and its bias element preserved together', () => {
    const d = n + 1;
    const Ka = new Float32Array(200 * d);
    for (let i = 0; i < 200; i++) { for (let j = 0; j < n; j++) Ka[i * d + j] = K0[i * n + j]!; Ka[i * d + n] = 1; }
    const Ca = Float32Array.from(gram(Ka, 200, d));
    const rb = rng(11);
    const bBase = randn(rb, m), bOld = bBase.map((x) => x + 0.1 * (rb() - 0.5)), bNew = bBase.map((x) => x + 0.1 * (rb() - 0.5));
    const r = addon.editSync(spec({ preserve: { cov: Ca, rho: 0.3 }, biasBase: bBase, biasOld: bOld, biasNew: bNew }, zero, zero, Float32Array.from(tb))) as unknown as {
      out: Float32Array; biasTauNew: Float32Array; biasTauOld: Float32Array; preserveEnergy: Float64Array;
    };
    const x = new Float64Array(m * d), got = new Float64Array(m * d);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) { x[i * d + j] = tb[i * n + j]!; got[i * d + j] = r.out[i * n + j]!; }
      x[i * d + n] = Math.fround(bNew[i]! - bBase[i]!);
      got[i * d + n] = r.biasTauNew[i]!;
    }
    expect(maxRelError(got, x, ridgeP(Ca, null, d, 0.3, 0), m, d)).toBeLessThanOrEqual(PRES_TOL);
    expect(r.preserveEnergy[6]).toBeGreaterThan(0);
    // Without the bias the augmented statistics do not fit the weight.
    expect(() => addon.editSync(spec({ preserve: { cov: Ca } }))).toThrow(expect.objectContaining({ code: 'ERR_SHAPE_MISMATCH' }));
  });

  it('bad statistics: coded errors naming the tensor, before any output', async () => {
    const T = 'layers.3.mlp.up.weight';
    const asym = Float32Array.from(C0);
    asym[2 * n + 7] += 1 + Math.abs(asym[2 * n + 2]!);
    const cases: Array<[NativePreserve, string, RegExp]> = [
      [{ cov: asym }, 'ERR_BAD_STATISTICS', /not symmetric/],
      [{ cov: C0.subarray(0, (n - 1) * (n - 1)) }, 'ERR_SHAPE_MISMATCH', /\[28, 28\].*29 columns/],
      [{ cov: Float32Array.from(C0, (v, i) => (i === 3 ? NaN : v)) }, 'ERR_NON_FINITE', /cov/],
      [{ cov: Float32Array.from(C0, (v, i) => (i % (n + 1) === 0 ? -v : v)) }, 'ERR_BAD_STATISTICS', /positive semi-definite/],
      [{ basis: Float32Array.from({ length: 2 * n }, (_, i) => (i === 0 || i === n ? 1 : 0)), basisShape: [2, n] }, 'ERR_BAD_STATISTICS', /orthonormal/],
      [{ cov: C0, rho: 0 }, 'ERR_INVALID_OPTION', /'rho'/],
      [{ cov: C0, mu: -1 }, 'ERR_INVALID_OPTION', /'mu'/],
    ];
    for (const [pre, code, msg] of cases) {
      const outData = new Float32Array(m * n).fill(7);
      const err = await addon.edit(spec({ preserve: { ...pre, source: 'stats.safetensors' }, outData })).then(() => null, (e: unknown) => e);
      expect(err, code).toMatchObject({ code });
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).toContain(T);
      expect((err as { details?: { tensor?: string } }).details?.tensor).toBe(T);
      expect(outData.every((v) => v === 7)).toBe(true); // nothing written
    }
  });

  it('the stream: a shared operator for two tasks, an augmented weight then its bias from the preserved bias task vectors', async () => {
    const d = n + 1;
    const Ka = new Float32Array(200 * d);
    for (let i = 0; i < 200; i++) { for (let j = 0; j < n; j++) Ka[i * d + j] = K0[i * n + j]!; Ka[i * d + n] = 1; }
    const rb = rng(12);
    const bBase = randn(rb, m), bOld = randn(rb, m), bNew = randn(rb, m);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-pres-'));
    try {
      const parts = [base, old, nw, bBase, bOld, bNew];
      const offs: number[] = [];
      let off = 0;
      const buf = Buffer.alloc(parts.reduce((s, p) => s + p.byteLength, 0));
      for (const p of parts) { offs.push(off); Buffer.from(p.buffer, p.byteOffset, p.byteLength).copy(buf, off); off += p.byteLength; }
      fs.writeFileSync(path.join(dir, 'in.bin'), buf);
      const fd = fs.openSync(path.join(dir, 'in.bin'), 'r');
      const ofd = fs.openSync(path.join(dir, 'out.bin'), 'w+');
      const src = (q: number) => ({ fd, offset: offs[q]!, dtype: 'f32', file: 'in.bin' });
      const weight = (name: string, outOffset: number, extra: Record<string, unknown> = {}) => ({
        kind: 0, name, rows: m, cols: n, base: src(0), old: src(1), new: src(2), outFd: ofd, outOffset, outDtype: 'f32', stats: true, ...extra,
      });
      const res = await (addon.stream as (s: unknown) => Promise<Array<Record<string, Float64Array> | null>>)({
        params: { strategy: 'geoedit' }, threads: 2, blockBytes: 4096,
        preserves: [{ cov: C0, editCov: C1 }, { keys: Ka, keysShape: [200, d] }],
        tasks: [
          weight('q', 0, { preserve: 0 }),
          weight('k', m * n * 4, { preserve: 0 }),
          weight('up', 2 * m * n * 4, { preserve: 1, biasBase: src(3), biasOld: src(4), biasNew: src(5) }),
          { kind: 0, name: 'up.bias', rows: 1, cols: m, base: src(3), tauFrom: 2, outFd: ofd, outOffset: 3 * m * n * 4, outDtype: 'f32' },
        ],
      });
      const out = new Float32Array(fs.readFileSync(path.join(dir, 'out.bin')).buffer.slice(0));
      fs.closeSync(fd); fs.closeSync(ofd);
      // in memory, the same edits
      const q = addon.editSync(spec({ preserve: { cov: C0, editCov: C1 }, params: { strategy: 'geoedit' } }));
      expect(Buffer.from(out.buffer, 0, m * n * 4)).toEqual(Buffer.from((q.out as Float32Array).buffer));
      expect(Buffer.from(out.buffer, m * n * 4, m * n * 4)).toEqual(Buffer.from((q.out as Float32Array).buffer));
      expect(res[0]!.preserveEnergy).toEqual((q as unknown as { preserveEnergy: Float64Array }).preserveEnergy);
      const up = addon.editSync(spec({ preserve: { keys: Ka, keysShape: [200, d] }, params: { strategy: 'geoedit' }, biasBase: bBase, biasOld: bOld, biasNew: bNew })) as unknown as {
        out: Float32Array; biasTauOld: Float32Array; biasTauNew: Float32Array;
      };
      expect(Buffer.from(out.buffer, 2 * m * n * 4, m * n * 4)).toEqual(Buffer.from(up.out.buffer));
      const bias = addon.editSync({
        rows: 1, cols: m, base: bBase, baseDtype: 'f32', old: up.biasTauOld, oldDtype: 'f32', new: up.biasTauNew, newDtype: 'f32',
        outDtype: 'f32', wantOut: true, threads: 1, tauGiven: true, params: { strategy: 'geoedit' },
      });
      expect(Buffer.from(out.buffer, 3 * m * n * 4, m * 4)).toEqual(Buffer.from((bias.out as Float32Array).buffer));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('_preserveBench reports finite timings and the ISA peak', () => {
    const r = addon._preserveBench({ n: 96, rows: 96, reps: 1, peakSeconds: 0.01, threads: 1 });
    for (const k of ['buildMs', 'applyMs', 'applyGflops', 'peakGflops', 'peakGflops1'] as const) expect(r[k]).toBeGreaterThan(0);
    expect(r.statBytes).toBe(96 * 96 * 4);
  });
});
