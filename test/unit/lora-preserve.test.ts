// Preservation of LoRA task vectors (SPEC §4): A ← A·P per side, so editLora still returns an exact
// adapter of the same rank; B'A' equals the f64 reference of (s·B·A)·P then the edit (SPEC §5:
// each preserved element within 1e-5·‖x‖₂ of x·P); the tensor form of option `preserve`.
import { describe, it, expect } from 'vitest';
import { analyzeLora, editLora, type LoraFactors } from '../../lib/lora-math';
import { GeoEditError } from '../../lib/errors';
import type { Tensor } from '../../lib/types';
import { randn, rng } from '../support/prng';
import { referenceEdit } from '../support/reference';
import { basisP, gram, orthonormalRows, ridgeP, matmul } from '../support/preserve-reference';
import { F32_REL } from '../support/tolerances';

const f32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'f32', shape, data });

function factors(r: () => number, m: number, n: number, rank: number, scale: number): LoraFactors {
  return { A: f32([rank, n], randn(r, rank * n)), B: f32([m, rank], randn(r, m * rank, 0.5)), scale };
}

/** τ = s·B·A in f64, then ·P. */
function tauP(f: LoraFactors, m: number, n: number, P: Float64Array): Float64Array {
  const rank = f.A.shape[0]!;
  const tau = matmul(f.B.data as Float32Array, f.A.data as Float32Array, m, rank, n).map((v) => f.scale * v);
  return matmul(tau, P, m, n, n);
}

function covOf(r: () => number, N: number, d: number): Float32Array {
  const K = randn(r, N * d);
  for (let i = 0; i < N; i++) for (let j = 0; j < d; j++) K[i * d + j] += 0.3 * (j % 4);
  const C = gram(K, N, d);
  return Float32Array.from({ length: d * d }, (_, k) => Math.fround((C[k]! + C[(k % d) * d + Math.floor(k / d)]!) / 2));
}

describe('editLora with preservation statistics', () => {
  const m = 12, n = 9;
  for (const form of ['ridge', 'basis'] as const) {
    it(`${form}: same rank, B'A' equals the f64 reference of (sBA)·P then the edit`, async () => {
      const r = rng(form === 'ridge' ? 3 : 4);
      const old = factors(r, m, n, 3, 0.5), nw = factors(r, m, n, 2, 2);
      const C0 = covOf(r, 30, n), C1 = covOf(r, 8, n);
      const U = Float32Array.from(orthonormalRows(randn(r, 3 * n), 3, n));
      const preserve = form === 'ridge' ? { cov: f32([n, n], C0), editCov: f32([n, n], C1), rho: 0.5, mu: 4 } : { basis: f32([3, n], U) };
      const P = form === 'ridge' ? ridgeP(C0, C1, n, 0.5, 4) : basisP(U, 3, n);
      const before = { oldA: Float32Array.from(old.A.data as Float32Array), newA: Float32Array.from(nw.A.data as Float32Array) };
      // paper preset: c_old ≠ 0 on aligned/conflicting rows, so both sides' blocks are in B'.
      const opts = { preset: 'paper' as const, keepZeroBlocks: true };
      const { adapter, stats } = await editLora({ old, new: nw }, { ...opts, preserve });
      const plain = await editLora({ old, new: nw }, opts);
      expect(adapter.rank).toBe(plain.adapter.rank);
      expect(adapter.rank).toBe(5);
      expect(adapter.A.shape).toEqual([5, n]);
      // Inputs untouched.
      expect(old.A.data).toEqual(before.oldA);
      expect(nw.A.data).toEqual(before.newA);
      // Reference: preserved task vectors as weights over a zero base.
      const zeros = new Float64Array(m * n);
      const asT = (v: Float64Array): Tensor => ({ dtype: 'f64' as 'f32', shape: [m, n], data: v as unknown as Float32Array });
      const to = tauP(old, m, n, P), tn = tauP(nw, m, n, P);
      const ref = referenceEdit(asT(zeros), asT(to), asT(tn), { preset: 'paper' });
      const got = matmul(adapter.B.data as Float32Array, adapter.A.data as Float32Array, m, 5, n);
      const rowNorm = (t: Float64Array, i: number) => Math.sqrt(Array.from({ length: n }, (_, j) => t[i * n + j]! ** 2).reduce((a, b) => a + b, 0));
      // ‖x‖ of the unpreserved row bounds the preservation error (SPEC §5); x·P is no larger for these P.
      const tauO = matmul(old.B.data as Float32Array, old.A.data as Float32Array, m, 3, n).map((v) => old.scale * v);
      const tauN = matmul(nw.B.data as Float32Array, nw.A.data as Float32Array, m, 2, n).map((v) => nw.scale * v);
      let worst = 0;
      ref.rows.forEach((row, i) => {
        expect(stats.region[i]).toBe(row.region);
        expect(Math.abs(stats.cos[i]! - row.cos)).toBeLessThan(1e-5);
        const tol = 1e-5 * (Math.abs(row.cNew) * rowNorm(tauN, i) + Math.abs(row.cOld) * rowNorm(tauO, i));
        for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(got[i * n + j]! - row.out[j]!) / (tol + F32_REL * row.bound[j]! + 1e-30));
      });
      expect(worst).toBeLessThanOrEqual(1);
      // Energies: Σ‖τ·P‖² against the reference.
      const e2 = (t: Float64Array) => t.reduce((a, v) => a + v * v, 0);
      expect(stats.preserve!.energy.newAfter).toBeCloseTo(e2(tn), 3);
      expect(stats.preserve!.removed.new).toBeCloseTo(1 - e2(tn) / e2(tauN), 4);
      expect(stats.preserve!.removed.new!).toBeGreaterThan(0);
    });
  }

  it('analyzeLora takes the same option; bad statistics are coded errors', async () => {
    const r = rng(9);
    const old = factors(r, m, n, 2, 1), nw = factors(r, m, n, 2, 1);
    const st = await analyzeLora({ old, new: nw }, { preserve: { cov: f32([n, n], covOf(r, 30, n)) } });
    expect(st.preserve!.removed.old!).toBeGreaterThan(0);
    const bad = async (preserve: unknown) => analyzeLora({ old, new: nw }, { preserve } as never).catch((e: unknown) => e as GeoEditError);
    expect((await bad({ cov: f32([n - 1, n - 1], covOf(r, 30, n - 1)) })).code).toBe('ERR_SHAPE_MISMATCH');
    expect((await bad({ cov: f32([n, n], covOf(r, 30, n)), rho: 0 })).code).toBe('ERR_INVALID_OPTION');
    expect((await bad({ cov: f32([n, n], covOf(r, 30, n)), mu: -2 })).code).toBe('ERR_INVALID_OPTION');
    expect((await bad({ basis: f32([2, n], new Float32Array(2 * n).fill(1)) })).code).toBe('ERR_BAD_STATISTICS');
    expect((await bad({ cov: f32([n, n], new Float32Array(n * n).fill(NaN)) })).code).toBe('ERR_NON_FINITE');
    expect((await bad({ cov: f32([n + 1, n + 1], covOf(r, 30, n + 1)) })).code).toBe('ERR_UNSUPPORTED');
    expect((await bad({ covariance: 1 })).code).toBe('ERR_UNKNOWN_OPTION');
  });
});
