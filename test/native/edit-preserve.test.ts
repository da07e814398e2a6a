// editTensor / editTensorSync / analyzeTensor with option `preserve` (SPEC §3 step 0): the tensor
// form checked once in TS (lib/preserve/option.ts), the values by the core; results against the
// f64 reference of test/support/preserve-reference.ts; the stats report the energy removed.
import { describe, expect, it } from 'vitest';
import { analyzeTensor, editTensor, editTensorSync } from '../../lib/edit';
import { PRESERVE_DEFAULTS } from '../../lib/preserve/option';
import { rng, randn } from '../support/prng';
import { basisP, gram, maxRelError, orthonormalRows, ridgeP } from '../support/preserve-reference';
import type { Tensor } from '../../lib/types';

const m = 40, n = 24;
const r0 = rng(11);
const base = randn(r0, m * n), tauOld = randn(r0, m * n, 0.1), tauNew = randn(r0, m * n, 0.1);
const t = (data: Float32Array, shape = [m, n]): Tensor => ({ dtype: 'f32', shape, data });
const inputs = { base: t(base), old: t(base.map((x, i) => x + tauOld[i]!)), new: t(base.map((x, i) => x + tauNew[i]!)) };
const tb = Float64Array.from(inputs.new.data as Float32Array, (x, i) => Math.fround(x - base[i]!));
const K0 = randn(rng(3), 100 * n), K1 = randn(rng(4), 10 * n);
for (let i = 0; i < K0.length; i++) K0[i] += (i % n) / n; // a shared mean, as activations have
const C0 = Float32Array.from(gram(K0, 100, n)), C1 = Float32Array.from(gram(K1, 10, n));
const sq = (x: ArrayLike<number>): number => { let s = 0; for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!; return s; };

/** out − base for task arithmetic at scale 1: the preserved τnew. */
function delta(out: Tensor): Float64Array {
  const o = out.data as Float32Array;
  return Float64Array.from(o, (x, i) => x - base[i]!);
}

describe('editTensor with preserve', () => {
  it('ridge form (C0 + C1, given rho/mu and the defaults) = τnew·P, sync and async alike; stats report the energy removed', async () => {
    const opts = { strategy: 'task-arithmetic' as const, preserve: { cov: t(C0, [n, n]), editCov: t(C1, [n, n]), rho: 0.5, mu: 3 } };
    const a = editTensorSync(inputs, opts), b = await editTensor(inputs, opts);
    expect(b.out.data).toEqual(a.out.data);
    const P = ridgeP(C0, C1, n, 0.5, 3);
    expect(maxRelError(delta(a.out), tb, P, m, n)).toBeLessThan(1e-4);
    const p = a.stats.preserve!;
    expect(p.energy.newBefore).toBeCloseTo(sq(tb), 3);
    expect(p.energy.newAfter).toBeLessThan(p.energy.newBefore);
    expect(p.removed.new!).toBeCloseTo(1 - p.energy.newAfter / p.energy.newBefore, 12);
    expect(p.removed.new!).toBeGreaterThan(0.05);
    // rho / mu default to the option table's values
    const d = editTensorSync(inputs, { strategy: 'task-arithmetic', preserve: { cov: t(C0, [n, n]), editCov: t(C1, [n, n]) } });
    expect(maxRelError(delta(d.out), tb, ridgeP(C0, C1, n, PRESERVE_DEFAULTS.rho, PRESERVE_DEFAULTS.mu), m, n)).toBeLessThan(1e-4);
    // analyzeTensor sees the preserved rows' geometry and energy too
    const s = await analyzeTensor(inputs, opts);
    expect(s.preserve!.energy.newAfter).toBeCloseTo(p.energy.newAfter, 6);
    expect(Array.from(s.cos)).toEqual(Array.from(a.stats.cos));
  });

  it('basis form removes the span of U; without preserve the stats have no preserve entry', () => {
    const U = Float32Array.from(orthonormalRows(randn(rng(9), 5 * n), 5, n));
    const a = editTensorSync(inputs, { strategy: 'task-arithmetic', preserve: { basis: t(U, [5, n]) } });
    expect(maxRelError(delta(a.out), tb, basisP(U, 5, n), m, n)).toBeLessThan(1e-4);
    expect(a.stats.preserve!.removed.new!).toBeGreaterThan(0);
    expect(editTensorSync(inputs, { strategy: 'task-arithmetic' }).stats.preserve).toBeUndefined();
  });

  it('bad preserve options: coded errors naming the option, inputs untouched', async () => {
    const before = (inputs.new.data as Float32Array).slice();
    expect(() => editTensorSync(inputs, { preserve: { cov: t(C0, [n, n]), rho: 0 } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', details: expect.objectContaining({ option: 'preserve.rho' }) }));
    expect(() => editTensorSync(inputs, { preserve: { cov: t(C0, [n, n]), frob: 1 } as never })).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_OPTION' }));
    expect(() => editTensorSync(inputs, { preserve: { cov: t(C0, [n, n + 1]) } })).toThrow(expect.objectContaining({ code: 'ERR_DATA_LENGTH' }));
    const wrong = Float32Array.from(gram(randn(rng(1), 50 * (n + 3)), 50, n + 3));
    await expect(editTensor(inputs, { preserve: { cov: t(wrong, [n + 3, n + 3]) } })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_/) });
    await expect(analyzeTensor(inputs, { preserve: 'nope' as never })).rejects.toBeInstanceOf(TypeError);
    expect(inputs.new.data).toEqual(before);
  });
});
