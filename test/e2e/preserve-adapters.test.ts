// Option `preserve: { file }` on editAdapters / analyzeAdapters (SPEC §4, issue 12): A ← A·P per
// side, so the output adapter keeps its rank and B'A' equals the f64 reference of (s·B·A)·P then the
// edit; merged output equals the base plus that adapter; statistics by base-model name (shared
// entries too); modules without statistics are edited without preservation (warning); bad input.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { analyzeAdapters, editAdapters, loadModuleFactors, readPeftAdapter } from '../../lib/lora';
import { writeSafetensors } from '../../lib/safetensors';
import { GeoEditError } from '../../lib/errors';
import { linearModule, tauOf, tmpDir, writeAdapter, type SynthModule } from '../support/lora';
import { readCheckpointTensor } from '../support/ckpt';
import { referenceEdit } from '../support/reference';
import { gram, matmul, ridgeP } from '../support/preserve-reference';
import { PRESERVE_DEFAULTS } from '../../lib/preserve/option';
import { randn, rng } from '../support/prng';
import { F32_REL } from '../support/tolerances';
import { writeStats } from '../support/preserve-fixture';
import type { Tensor } from '../../lib/types';

const Q = 'model.layers.0.self_attn.q_proj', V = 'model.layers.0.self_attn.v_proj', UP = 'model.layers.0.mlp.up_proj';
let dir: string;
let oldM: SynthModule[], newM: SynthModule[];
let C0: Float32Array, C1: Float32Array, stats: string;
const SCALE = 16 / 2; // lora_alpha 16, r 2

function cov(r: () => number, N: number, d: number): Float32Array {
  const K = randn(r, N * d);
  for (let i = 0; i < N; i++) for (let j = 0; j < d; j++) K[i * d + j] += 0.4 * (j % 3);
  const C = gram(K, N, d);
  return Float32Array.from({ length: d * d }, (_, k) => Math.fround((C[k]! + C[(k % d) * d + Math.floor(k / d)]!) / 2));
}

beforeAll(async () => {
  dir = tmpDir('pres-lora');
  const r = rng(21);
  oldM = [linearModule(r, Q, 8, 6, 2), linearModule(r, V, 8, 6, 2), linearModule(r, UP, 10, 6, 2)];
  newM = [linearModule(r, Q, 8, 6, 2), linearModule(r, V, 8, 6, 2), linearModule(r, UP, 10, 6, 2)];
  const cfg = { r: 2, lora_alpha: 16, target_modules: ['q_proj', 'v_proj', 'up_proj'] };
  await writeAdapter(path.join(dir, 'old'), cfg, oldM);
  await writeAdapter(path.join(dir, 'new'), cfg, newM);
  C0 = cov(r, 40, 6);
  C1 = cov(r, 10, 6);
  stats = await writeStats(path.join(dir, 'stats.safetensors'), [
    { name: `${Q}.weight:cov`, dtype: 'F32', shape: [6, 6], data: C0 },
    { name: `${Q}.weight:edit_cov`, dtype: 'F32', shape: [6, 6], data: C1 },
    { name: 'model.layers.0.mlp.down_proj.weight:cov', dtype: 'F32', shape: [10, 10], data: cov(r, 30, 10) },
  ], { [`${V}.weight`]: `${Q}.weight` });
  // A base for the merged output (rows layout, f32).
  const base = [Q, V, UP].map((n, k) => ({ name: `${n}.weight`, dtype: 'F32' as const, shape: [k === 2 ? 10 : 8, 6], data: randn(r, (k === 2 ? 10 : 8) * 6) }));
  base.push({ name: 'model.layers.0.mlp.down_proj.weight', dtype: 'F32', shape: [6, 10], data: randn(r, 60) });
  fs.mkdirSync(path.join(dir, 'base'));
  await writeSafetensors(path.join(dir, 'base', 'model.safetensors'), base, { format: 'pt' });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The reference of the default edit on the preserved task vectors (θ0 = 0): rows with their bound. */
function reference(mi: number): ReturnType<typeof referenceEdit> & { P: Float64Array } {
  const P = ridgeP(C0, C1, 6, PRESERVE_DEFAULTS.rho, PRESERVE_DEFAULTS.mu);
  const rows = oldM[mi]!.rows;
  const t = (v: Float64Array): Tensor => ({ dtype: 'f64' as 'f32', shape: [rows, 6], data: v as unknown as Float32Array });
  const to = matmul(tauOf(oldM[mi]!, SCALE), P, rows, 6, 6), tn = matmul(tauOf(newM[mi]!, SCALE), P, rows, 6, 6);
  return { ...referenceEdit(t(new Float64Array(rows * 6)), t(to), t(tn)), P };
}

describe('editAdapters with preservation statistics', () => {
  it('adapter output: same rank, B\'A\' equals the f64 reference; shared entries; warnings; manifest', async () => {
    const out = path.join(dir, 'out-adapter'), plainOut = path.join(dir, 'out-plain');
    const man = await editAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new'), out }, { preserve: { file: stats }, keepZeroBlocks: true });
    const plain = await editAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new'), out: plainOut }, { keepZeroBlocks: true });
    const ad = readPeftAdapter(out);
    for (const [mi, name] of [[0, Q], [1, V]] as const) {
      const mod = man.modules.find((x) => x.name === name)!;
      expect(mod.rOut).toBe(plain.modules.find((x) => x.name === name)!.rOut);
      expect(mod.rOut).toBe(4);
      expect(mod.preserve).toMatchObject({ statistics: `${Q}.weight`, shared: mi === 1, rho: PRESERVE_DEFAULTS.rho, mu: PRESERVE_DEFAULTS.mu });
      expect(mod.preserve!.removed.new!).toBeGreaterThan(0);
      expect(mod.preserve!.provider).toMatch(/^(openblas-\d+\.\d+\.\d+|eigen-(scalar|avx2|avx512))/);
      const f = await loadModuleFactors(ad, name);
      const got = matmul(f.B.data as Float32Array, f.A.data as Float32Array, 8, 4, 6).map((v) => v * f.scale);
      const ref = reference(mi);
      const tauO = tauOf(oldM[mi]!, SCALE), tauN = tauOf(newM[mi]!, SCALE);
      const norm = (t: Float64Array, i: number) => Math.hypot(...Array.from({ length: 6 }, (_, j) => t[i * 6 + j]!));
      ref.rows.forEach((row, i) => {
        expect(mod.counts).toBeDefined();
        const tol = 1e-5 * (Math.abs(row.cNew) * norm(tauN, i) + Math.abs(row.cOld) * norm(tauO, i));
        for (let j = 0; j < 6; j++) expect(Math.abs(got[i * 6 + j]! - row.out[j]!)).toBeLessThanOrEqual(tol + 2 * F32_REL * row.bound[j]! + 1e-30);
      });
    }
    expect(man.modules.find((x) => x.name === UP)!.preserve).toBeNull();
    expect(man.warnings.some((w) => w.includes('without preservation') && w.includes(UP))).toBe(true);
    expect(man.warnings.some((w) => w.includes('down_proj') && w.includes('not used'))).toBe(true);
    expect(man.parameters.preserve).toEqual({ file: stats, rho: PRESERVE_DEFAULTS.rho, mu: PRESERVE_DEFAULTS.mu });
  });

  it('merged output equals the base plus the preserved adapter; analyzeAdapters records the same statistics', async () => {
    const out = path.join(dir, 'out-full'), ad = path.join(dir, 'out-ad2');
    await editAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new'), out, base: path.join(dir, 'base') }, { preserve: { file: stats } });
    await editAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new'), out: ad }, { preserve: { file: stats } });
    const a = readPeftAdapter(ad);
    for (const name of [Q, V]) {
      const f = await loadModuleFactors(a, name);
      const r = f.A.shape[0]!;
      const delta = matmul(f.B.data as Float32Array, f.A.data as Float32Array, 8, r, 6).map((v) => v * f.scale);
      const b = (await readCheckpointTensor(path.join(dir, 'base'), `${name}.weight`)).data as Float32Array;
      const merged = (await readCheckpointTensor(out, `${name}.weight`)).data as Float32Array;
      for (let k = 0; k < 48; k++) expect(Math.abs(merged[k]! - (b[k]! + delta[k]!))).toBeLessThanOrEqual(1e-5 * (Math.abs(b[k]!) + Math.abs(delta[k]!)) + 1e-7);
    }
    const report = path.join(dir, 'adapters.html');
    const rep = await analyzeAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new') }, { preserve: { file: stats, rho: 0.3, mu: 10 }, report });
    expect(rep.modules.find((x) => x.name === V)!.preserve).toMatchObject({ statistics: `${Q}.weight`, shared: true });
    const html = fs.readFileSync(report, 'utf8');
    expect(html).toContain('<h2>Preservation</h2>');
    expect(html).toMatch(/<tr><td>0<\/td><td>2 of 3<\/td>/);
  });

  it('bad input: coded errors before any work, nothing written', async () => {
    const out = path.join(dir, 'out-bad');
    const io = { old: path.join(dir, 'old'), new: path.join(dir, 'new'), out };
    const aug = await writeStats(path.join(dir, 'aug.safetensors'), [{ name: `${Q}.weight:cov`, dtype: 'F32', shape: [7, 7], data: cov(rng(3), 30, 7) }], null);
    await expect(editAdapters(io, { preserve: { file: aug } })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED', details: { tensor: `${Q}.weight` } });
    const wrong = await writeStats(path.join(dir, 'wrong.safetensors'), [{ name: `${Q}.weight:cov`, dtype: 'F32', shape: [5, 5], data: cov(rng(3), 30, 5) }], null);
    await expect(editAdapters(io, { preserve: { file: wrong } })).rejects.toMatchObject({ code: 'ERR_SHAPE_MISMATCH', details: { tensor: `${Q}.weight` } });
    const npsd = Float32Array.from({ length: 36 }, (_, k) => (k % 7 === 0 ? (k === 14 ? -1 : 1) : 0));
    const notPsd = await writeStats(path.join(dir, 'npsd.safetensors'), [{ name: `${Q}.weight:cov`, dtype: 'F32', shape: [6, 6], data: npsd }], null);
    await expect(editAdapters(io, { preserve: { file: notPsd } })).rejects.toMatchObject({ code: 'ERR_BAD_STATISTICS' });
    // With a base: statistics for a tensor not in the model.
    const extra = await writeStats(path.join(dir, 'extra.safetensors'), [{ name: 'model.layers.9.mlp.up_proj.weight:cov', dtype: 'F32', shape: [6, 6], data: C0 }], null);
    await expect(editAdapters({ ...io, base: path.join(dir, 'base') }, { preserve: { file: extra } })).rejects.toMatchObject({ code: 'ERR_MISSING_TENSOR', details: { tensor: 'model.layers.9.mlp.up_proj.weight' } });
    await expect(editAdapters(io, { preserve: { file: stats, rho: -1 } })).rejects.toBeInstanceOf(GeoEditError);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('a GPT-2 Conv1D base (fan_in_fan_out): statistics over the input width; merged = base + (the preserved adapter)ᵀ', async () => {
    const r = rng(33);
    const name = 'transformer.h.0.attn.c_attn';
    const o = [linearModule(r, name, 8, 6, 2)], n = [linearModule(r, name, 8, 6, 2)];
    const cfg = { r: 2, lora_alpha: 16, fan_in_fan_out: true, target_modules: ['c_attn'] };
    await writeAdapter(path.join(dir, 'c-old'), cfg, o);
    await writeAdapter(path.join(dir, 'c-new'), cfg, n);
    fs.mkdirSync(path.join(dir, 'c-base'));
    const b = randn(r, 48);
    await writeSafetensors(path.join(dir, 'c-base', 'model.safetensors'), [{ name: `${name}.weight`, dtype: 'F32', shape: [6, 8], data: b }], { format: 'pt' });
    const f = await writeStats(path.join(dir, 'c-stats.safetensors'), [{ name: `${name}.weight:cov`, dtype: 'F32', shape: [6, 6], data: C0 }], null);
    const io = { old: path.join(dir, 'c-old'), new: path.join(dir, 'c-new') };
    const full = await editAdapters({ ...io, out: path.join(dir, 'c-full'), base: path.join(dir, 'c-base') }, { preserve: { file: f } });
    expect(full.modules[0]!.preserve).toMatchObject({ statistics: `${name}.weight` });
    await editAdapters({ ...io, out: path.join(dir, 'c-ad') }, { preserve: { file: f } });
    const fac = await loadModuleFactors(readPeftAdapter(path.join(dir, 'c-ad')), name);
    const delta = matmul(fac.B.data as Float32Array, fac.A.data as Float32Array, 8, fac.A.shape[0]!, 6).map((v) => v * fac.scale);
    const merged = (await readCheckpointTensor(path.join(dir, 'c-full'), `${name}.weight`)).data as Float32Array;
    for (let i = 0; i < 6; i++) for (let j = 0; j < 8; j++) {
      const want = b[i * 8 + j]! + delta[j * 6 + i]!;
      expect(Math.abs(merged[i * 8 + j]! - want)).toBeLessThanOrEqual(1e-5 * (Math.abs(b[i * 8 + j]!) + Math.abs(delta[j * 6 + i]!)) + 1e-7);
    }
  });
});
