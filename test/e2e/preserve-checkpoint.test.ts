// Option `preserve: { file }` on checkpoints (SPEC §3 step 0, issue 12): every form of statistics
// (cov + edit_cov, shared q/k, augmented [x; 1] with the bias, basis, keys) against the f64
// reference (SPEC §5: preserved rows within 1e-5·‖x‖₂ of x·P), the manifest's per-tensor record,
// the warning for weights without statistics, and every bad input: a coded error naming the tensor,
// before any work, nothing written.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PRESERVE_DEFAULTS } from '../../lib/preserve/option';
import { analyzeCheckpoint, editCheckpoint } from '../../lib/checkpoint';
import { toTensor, type TensorToWrite } from '../../lib/safetensors';
import { GeoEditError } from '../../lib/errors';
import { readCheckpointTensor as tensorOf, leftovers } from '../support/ckpt';
import { referencePreservedEdit } from '../support/reference';
import { basisP, gram, ridgeP } from '../support/preserve-reference';
import { F32_REL } from '../support/tolerances';
import { expectPreservedClose as expectClose } from '../support/expect-reference';
import { presStats, writePresModel, writeStats, type PresStats } from '../support/preserve-fixture';
import type { Tensor } from '../../lib/types';
import { planJobPreservation, validateStatisticValues, weightInfos } from '../../lib/preserve/plan';
import { openCheckpoint } from '../../lib/checkpoint';

let root: string;
let m: { base: string; old: string; new: string };
let st: PresStats;
let statsFile: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-pres-'));
  m = await writePresModel(path.join(root, 'in'));
  st = presStats();
  statsFile = await writeStats(path.join(root, 'stats.safetensors'), st.tensors, st.shared);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function triple(name: string): Promise<{ base: Tensor; old: Tensor; new: Tensor }> {
  const [b, o, n] = await Promise.all([tensorOf(m.base, name), tensorOf(m.old, name), tensorOf(m.new, name)]);
  return { base: toTensor(b), old: toTensor(o), new: toTensor(n) };
}

describe('editCheckpoint with preservation statistics', () => {
  it('edits every form as the f64 reference does, and records what the projection removed', async () => {
    const out = path.join(root, 'out-all');
    const man = await editCheckpoint({ ...m, out }, { preserve: { file: statsFile, rho: 0.4, mu: 5 } });
    const byName = new Map(man.tensors.map((t) => [t.name, t]));
    const P = {
      q: ridgeP(st.cq, st.c1q, 6, 0.4, 5),
      fc: ridgeP(st.cfc, null, 7, 0.4, 5),
      out: basisP(st.U, 3, 10),
      key: ridgeP(gram(st.keys, 20, 6), null, 6, 0.4, 5),
    };
    for (const [name, p, stat] of [['l0.q.weight', P.q, 'l0.q.weight'], ['l0.k.weight', P.q, 'l0.q.weight'], ['l0.out.weight', P.out, 'l0.out.weight'], ['l0.key.weight', P.key, 'l0.key.weight']] as const) {
      const t = await triple(name);
      const ref = referencePreservedEdit(t.base, t.old, t.new, p);
      const got = (await tensorOf(out, name)).data as Float32Array;
      expectClose(got, ref.weight, ref.xNorm, (i) => i);
      const e = byName.get(name)!;
      expect(e.preserve?.statistics).toBe(stat);
      expect(e.preserve?.shared).toBe(name === 'l0.k.weight');
      // The regions the core found are the reference's (no row of this data sits within 1e-6 of the threshold).
      expect(e.counts).toEqual({
        orthogonal: ref.weight.rows.filter((r) => r.region === 0).length,
        synergy: ref.weight.rows.filter((r) => r.region === 1).length,
        conflict: ref.weight.rows.filter((r) => r.region === 2).length,
      });
      // removed = 1 − Σ‖xP‖² / Σ‖x‖², from the core's preserved rows: compare with the f64 reference.
      let before = 0, after = 0;
      const B = t.base.data as Float32Array, N = t.new.data as Float32Array;
      const d = p.length ** 0.5;
      for (let i = 0; i < t.base.shape[0]!; i++) {
        const x = Array.from({ length: d }, (_, j) => Math.fround(N[i * d + j]! - B[i * d + j]!));
        before += x.reduce((s, v) => s + v * v, 0);
        for (let j = 0; j < d; j++) { let y = 0; for (let q = 0; q < d; q++) y += x[q]! * p[q * d + j]!; after += y * y; }
      }
      expect(e.preserve!.removed.new!).toBeCloseTo(1 - after / before, 4);
      expect(e.preserve!.rho).toBe(e.preserve!.form === 'basis' ? null : 0.4);
      // who computed the rows (the bytes differ between providers): OpenBLAS or an Eigen copy
      expect(e.preserve!.provider).toMatch(/^(openblas-\d+\.\d+\.\d+|eigen-(scalar|avx2|avx512))/);
    }
    // The augmented layer: weight rows and bias elements preserved together, the bias edited as its own tensor.
    const w = await triple('l0.fc.weight'), b = await triple('l0.fc.bias');
    const ref = referencePreservedEdit(w.base, w.old, w.new, P.fc, {}, b);
    expectClose((await tensorOf(out, 'l0.fc.weight')).data as Float32Array, ref.weight, ref.xNorm, (i) => i);
    // The bias is one row [1, m]: element i came from row i of the augmented system.
    const biasOut = (await tensorOf(out, 'l0.fc.bias')).data as Float32Array;
    const br = ref.bias!.rows[0]!;
    const biasPres = Array.from({ length: 10 }, (_, i) => 1e-5 * (Math.abs(br.cNew) * ref.xNorm.new[i]! + Math.abs(br.cOld) * ref.xNorm.old[i]!));
    for (let i = 0; i < 10; i++) expect(Math.abs(biasOut[i]! - br.out[i]!)).toBeLessThanOrEqual(F32_REL * br.bound[i]! + biasPres[i]! + 1e-30);
    expect(byName.get('l0.fc.weight')!.preserve).toMatchObject({ statistics: 'l0.fc.weight', bias: 'l0.fc.bias' });
    expect(byName.get('l0.fc.bias')!.preserve).toMatchObject({ statistics: 'l0.fc.weight', withWeight: 'l0.fc.weight' });
    // Without statistics: edited as before, listed.
    expect(byName.get('l0.norm.weight')!.preserve).toBeNull();
    expect(man.warnings.some((x) => x.includes('without preservation') && x.includes('l0.norm.weight'))).toBe(true);
    expect(man.parameters.preserve).toEqual({ file: statsFile, rho: 0.4, mu: 5 });
    // The written manifest says the same.
    const written = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(written.tensors.find((t: { name: string }) => t.name === 'l0.q.weight').preserve.statistics).toBe('l0.q.weight');
  });

  it('uses the default rho and mu when none are given, and analyzeCheckpoint records the same', async () => {
    const man = await analyzeCheckpoint(m, { preserve: { file: statsFile } });
    const q = man.tensors.find((t) => t.name === 'l0.q.weight')!;
    expect(q.preserve).toMatchObject({ rho: PRESERVE_DEFAULTS.rho, mu: PRESERVE_DEFAULTS.mu });
    const ed = await editCheckpoint({ ...m, out: path.join(root, 'out-def') }, { preserve: { file: statsFile, ...PRESERVE_DEFAULTS } });
    expect(ed.tensors.find((t) => t.name === 'l0.q.weight')!.preserve!.energy).toEqual(q.preserve!.energy);
  });

  it('gives the same bytes for any thread count', async () => {
    const a = path.join(root, 'out-t1'), b = path.join(root, 'out-t2');
    await editCheckpoint({ ...m, out: a }, { preserve: { file: statsFile }, threads: 1 });
    await editCheckpoint({ ...m, out: b }, { preserve: { file: statsFile }, threads: 2 });
    // (The header's geoedit.parameters names the thread count; the tensors' bytes must not depend on it.)
    for (const { name } of (await import('./../support/preserve-fixture')).PRES_SPECS) {
      const [x, y] = [await tensorOf(a, name), await tensorOf(b, name)];
      expect(Buffer.compare(Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength), Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength))).toBe(0);
    }
  });

  it('a shard per tensor (the bias in another shard than its weight): the same tensors as one file', async () => {
    const one = path.join(root, 'out-one'), many = path.join(root, 'out-many');
    await editCheckpoint({ ...m, out: one }, { preserve: { file: statsFile } });
    const man = await editCheckpoint({ ...m, out: many }, { preserve: { file: statsFile }, maxShardSize: 100 });
    expect(man.output!.files.length).toBe(7);
    expect(man.tensors.map((t) => t.name)).toEqual((await import('../support/preserve-fixture')).PRES_SPECS.map((x) => x.name));
    for (const name of ['l0.fc.weight', 'l0.fc.bias', 'l0.q.weight']) {
      const [x, y] = [await tensorOf(one, name), await tensorOf(many, name)];
      expect(Buffer.compare(Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength), Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength))).toBe(0);
    }
  });

  it('only the tensors selected: statistics of unselected tensors are reported unused', async () => {
    const man = await analyzeCheckpoint(m, { preserve: { file: statsFile }, include: ['l0.q.*', 'l0.k.*'] });
    expect(man.warnings.some((w) => w.includes('not edited are not used') && w.includes('l0.out.weight'))).toBe(true);
    expect(man.tensors.find((t) => t.name === 'l0.k.weight')!.preserve!.statistics).toBe('l0.q.weight');
    // fc's statistics are augmented: the bias must be edited with its weight.
    await expect(analyzeCheckpoint(m, { preserve: { file: statsFile }, include: ['l0.fc.weight'] })).rejects.toMatchObject({ code: 'ERR_BAD_STATISTICS', details: { tensor: 'l0.fc.weight' } });
  });
});

describe('bad statistics: a coded error naming the tensor, before any work, nothing written', () => {
  const sym = (d: number, f: (i: number, j: number) => number) => Float32Array.from({ length: d * d }, (_, k) => f(Math.floor(k / d), k % d));
  const eye = (d: number) => sym(d, (i, j) => (i === j ? 1 : 0));
  const cases: Array<{ what: string; drop?: string[]; tensors?: () => TensorToWrite[]; shared?: Record<string, string> | string | null; opts?: Record<string, unknown>; code: string; tensor?: string; message?: RegExp }> = [
    { what: 'wrong shape for its weight (naming both)', tensors: () => [{ name: 'l0.key.weight:keys', dtype: 'F32', shape: [20, 5], data: new Float32Array(100).fill(1) }], code: 'ERR_SHAPE_MISMATCH', tensor: 'l0.key.weight', message: /\[20, 5\].*\[5, 6\]/ },
    { what: 'a covariance of the wrong width for its weight', tensors: () => [{ name: 'l0.out.weight:basis', dtype: 'F32', shape: [3, 9], data: new Float32Array(27) }], code: 'ERR_SHAPE_MISMATCH', tensor: 'l0.out.weight', message: /\[3, 9\].*\[6, 10\]/ },
    { what: 'augmented width without a bias', tensors: () => [{ name: 'l0.q.weight:cov', dtype: 'F32', shape: [7, 7], data: eye(7) }], code: 'ERR_SHAPE_MISMATCH', tensor: 'l0.q.weight' },
    { what: 'not symmetric', tensors: () => [{ name: 'l0.q.weight:cov', dtype: 'F32', shape: [6, 6], data: sym(6, (i, j) => (i === j ? 2 : i < j ? 0.5 : -0.5)) }], code: 'ERR_BAD_STATISTICS', tensor: 'l0.q.weight' },
    { what: 'not positive semi-definite', tensors: () => [{ name: 'l0.q.weight:cov', dtype: 'F32', shape: [6, 6], data: sym(6, (i, j) => (i === j ? (i === 2 ? -1 : 1) : 0)) }], code: 'ERR_BAD_STATISTICS', tensor: 'l0.q.weight' },
    { what: 'non-finite', tensors: () => [{ name: 'l0.q.weight:cov', dtype: 'F32', shape: [6, 6], data: sym(6, (i, j) => (i === 1 && j === 1 ? NaN : i === j ? 1 : 0)) }], code: 'ERR_NON_FINITE', tensor: 'l0.q.weight' },
    { what: 'basis rows not orthonormal', tensors: () => [{ name: 'l0.out.weight:basis', dtype: 'F32', shape: [2, 10], data: Float32Array.from({ length: 20 }, (_, k) => (k === 0 || k === 10 ? 1 : k === 11 ? 1 : 0)) }], code: 'ERR_BAD_STATISTICS', tensor: 'l0.out.weight' },
    { what: 'rho <= 0', opts: { rho: 0 }, code: 'ERR_INVALID_OPTION' },
    { what: 'mu < 0', opts: { mu: -1 }, code: 'ERR_INVALID_OPTION' },
    { what: 'a shared entry pointing at a missing name', shared: { 'l0.k.weight': 'l0.nope.weight' }, code: 'ERR_BAD_STATISTICS', tensor: 'l0.k.weight' },
    { what: 'a shared entry pointing at a weight of another width', drop: ['l0.out.weight:basis'], shared: { 'l0.out.weight': 'l0.q.weight' }, code: 'ERR_SHAPE_MISMATCH', tensor: 'l0.out.weight' },
    { what: 'statistics for a tensor not in the model', tensors: () => [{ name: 'l9.q.weight:cov', dtype: 'F32', shape: [6, 6], data: eye(6) }], code: 'ERR_MISSING_TENSOR', tensor: 'l9.q.weight' },
    { what: 'a weight with statistics of its own and a shared entry', shared: { 'l0.out.weight': 'l0.q.weight' }, code: 'ERR_BAD_STATISTICS', tensor: 'l0.out.weight' },
    { what: 'a shared entry for a tensor not in the model', shared: { 'l9.k.weight': 'l0.q.weight' }, code: 'ERR_MISSING_TENSOR', tensor: 'l9.k.weight' },
    { what: 'malformed shared metadata JSON', shared: '{"l0.k.weight": ', code: 'ERR_BAD_STATISTICS' },
    { what: 'shared metadata that is not an object of names', shared: '["l0.k.weight"]', code: 'ERR_BAD_STATISTICS' },
    { what: 'a tensor name that is not a statistic', tensors: () => [{ name: 'l0.q.weight:covariance', dtype: 'F32', shape: [6, 6], data: eye(6) }], code: 'ERR_BAD_STATISTICS', tensor: 'l0.q.weight:covariance' },
    { what: 'two forms for one weight', tensors: () => [{ name: 'l0.out.weight:cov', dtype: 'F32', shape: [10, 10], data: eye(10) }], code: 'ERR_BAD_STATISTICS', tensor: 'l0.out.weight' },
    { what: 'edit_cov of another width', tensors: () => [{ name: 'l0.key.weight:edit_cov', dtype: 'F32', shape: [5, 5], data: eye(5) }], code: 'ERR_SHAPE_MISMATCH', tensor: 'l0.key.weight' },
  ];
  for (const c of cases) {
    it(c.what, async () => {
      // The good statistics with one thing changed (a replaced or added tensor, or the metadata).
      const extra = c.tensors?.() ?? [];
      const tensors = [...st.tensors.filter((t) => !extra.some((x) => x.name === t.name) && !c.drop?.includes(t.name)), ...extra];
      const file = await writeStats(path.join(root, `bad-${c.what.replace(/\W+/g, '-')}.safetensors`), tensors, c.shared !== undefined ? c.shared : st.shared);
      const before = fs.readFileSync(file);
      const out = path.join(root, `out-bad-${c.what.replace(/\W+/g, '-')}`);
      let progress = 0;
      const err = await editCheckpoint({ ...m, out }, { preserve: { file, ...c.opts }, onProgress: () => { progress++; } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GeoEditError);
      expect((err as GeoEditError).code).toBe(c.code);
      if (c.tensor) expect((err as GeoEditError).details).toMatchObject({ tensor: c.tensor });
      if (c.message) expect((err as Error).message).toMatch(c.message);
      expect(fs.existsSync(out)).toBe(false);
      expect(leftovers(root)).toEqual([]);
      expect(progress).toBe(0);
      expect(Buffer.compare(fs.readFileSync(file), before)).toBe(0);
    });
  }

  it('the values are checked by the core before the job starts (validateOnly: no operator formed)', async () => {
    const model = weightInfos(openCheckpoint(m.base).tensors);
    const edited = new Set(model.keys());
    const params = { strategy: 'geoedit' } as never;
    await expect(validateStatisticValues(planJobPreservation({ file: statsFile, rho: 0.3, mu: 10 }, model, edited, []), model, params, 0, undefined as never)).resolves.toBeUndefined();
    const npsd = Float32Array.from({ length: 36 }, (_, k) => (k % 7 === 0 ? (k === 21 ? -1 : 1) : 0));
    const f = await writeStats(path.join(root, 'v-npsd.safetensors'), [{ name: 'l0.key.weight:cov', dtype: 'F32', shape: [6, 6], data: npsd }], null);
    await expect(validateStatisticValues(planJobPreservation({ file: f, rho: 0.3, mu: 10 }, model, edited, []), model, params, 0, undefined as never))
      .rejects.toMatchObject({ code: 'ERR_BAD_STATISTICS', details: { tensor: 'l0.key.weight', file: f } });
  });
});
