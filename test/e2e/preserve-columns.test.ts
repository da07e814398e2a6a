// Preservation (SPEC §3 step 0) on columns-layout tensors through editCheckpoint / analyzeCheckpoint
// (issue 12 with issue 13's layouts): a GPT-2-family checkpoint (Conv1D weights stored [in, out]; the
// neurons are columns, P has the input width) edited with statistics equals the rows-layout edit of
// the same checkpoint stored transposed, byte for byte after transposing back, for threads 1 and 2,
// with plain, edit-prompt, augmented [x; 1] (bias element k with neuron k) and basis statistics; and
// both equal the f64 reference (test/support/reference.ts referencePreservedEdit) within SPEC §5.
// The real tiny-gpt2 base and its two fine-tunes (../shared/realdata) are edited with statistics
// generated here. Also: the augmented bias task uses the bias's own importance tensors (SPEC §3
// steps 3-4 apply to every tensor).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeCheckpoint, editCheckpoint, inspectCheckpoint, type CheckpointManifest } from '../../lib/checkpoint';
import { toTensor, writeSafetensors, type TensorToWrite } from '../../lib/safetensors';
import type { EditOptions, Tensor } from '../../lib/types';
import { editAdapters } from '../../lib/lora';
import { REAL, haveReal } from '../support/paths';
import { readCheckpointTensor } from '../support/ckpt';
import { randn, rng } from '../support/prng';
import { basisP, gram, orthonormalRows, ridgeP } from '../support/preserve-reference';
import { referencePreservedEdit } from '../support/reference';
import { expectPreservedClose } from '../support/expect-reference';
import { F32_REL } from '../support/tolerances';
import { writePresModel, writeStats } from '../support/preserve-fixture';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-prescol-'));
afterAll(() => fs.rmSync(ROOT, { recursive: true, force: true }));
let seq = 0;
const outDir = (tag: string) => path.join(ROOT, `${tag}-${seq++}`);

/** [R, C] -> [C, R]. */
function transpose(x: Float32Array, R: number, C: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) y[c * R + r] = x[r * C + c]!;
  return y;
}

async function tensorOf(ckpt: string, name: string): Promise<Tensor> {
  return toTensor(await readCheckpointTensor(ckpt, name), name);
}
const bytes = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** Keys [N, d] with a mean (as activations have); `one`: the augmented [x; 1]. */
function keys(seed: number, N: number, n: number, one: boolean): Float32Array {
  const r = rng(seed), d = one ? n + 1 : n, mu = randn(r, n, 1.5), K = new Float32Array(N * d);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < n; j++) K[i * d + j] = Math.fround(r() * 2 - 1 + mu[j]!);
    if (one) K[i * d + n] = 1;
  }
  return K;
}
function covOfKeys(K: Float32Array, N: number, d: number): Float32Array {
  const C = gram(K, N, d), S = new Float32Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) S[i * d + j] = Math.fround((C[i * d + j]! + C[j * d + i]!) / 2);
  return S;
}

// A GPT-2-shaped model: [in, out] Conv1D weights (c_fc with its bias, more than one block of neurons).
const IN = 24, FC = 1000, QKV = 72;
const SPECS: Array<{ name: string; shape: number[]; conv?: true }> = [
  { name: 'h.0.attn.c_attn.weight', shape: [IN, QKV], conv: true },
  { name: 'h.0.mlp.c_fc.weight', shape: [IN, FC], conv: true },
  { name: 'h.0.mlp.c_fc.bias', shape: [FC] },
  { name: 'h.0.mlp.c_proj.weight', shape: [FC, IN], conv: true },
  { name: 'h.0.ln_1.weight', shape: [IN] },
];
const ROLES = ['base', 'old', 'new', 'impOld', 'impNew'] as const;
type Role = (typeof ROLES)[number];

/** The model stored as Conv1D ([in, out], config.json gpt2) and its transposed twin ([out, in], no config: rows). */
async function writeModels(): Promise<{ cols: Record<Role, string>; rows: Record<Role, string> }> {
  const r = rng(21);
  const dirs = (kind: string) => Object.fromEntries(ROLES.map((role) => [role, path.join(ROOT, kind, role)])) as Record<Role, string>;
  const cols = dirs('cols'), rows = dirs('rows');
  const stored: Record<Role, TensorToWrite[]> = { base: [], old: [], new: [], impOld: [], impNew: [] };
  const twin: Record<Role, TensorToWrite[]> = { base: [], old: [], new: [], impOld: [], impNew: [] };
  for (const s of SPECS) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const b = randn(r, n), d0 = randn(r, n, 0.1), d1 = randn(r, n, 0.1);
    const v: Record<Role, Float32Array> = {
      base: b, old: b.map((x, i) => x + d0[i]!), new: b.map((x, i) => x + 0.5 * d0[i]! + d1[i]!),
      impOld: Float32Array.from({ length: n }, () => r()), impNew: Float32Array.from({ length: n }, () => r()),
    };
    for (const role of ROLES) {
      stored[role].push({ name: s.name, dtype: 'F32', shape: s.shape, data: v[role] });
      twin[role].push(s.conv ? { name: s.name, dtype: 'F32', shape: [s.shape[1]!, s.shape[0]!], data: transpose(v[role], s.shape[0]!, s.shape[1]!) } : { name: s.name, dtype: 'F32', shape: s.shape, data: v[role] });
    }
  }
  for (const role of ROLES) {
    for (const [d, t] of [[cols[role], stored[role]], [rows[role], twin[role]]] as const) {
      fs.mkdirSync(d, { recursive: true });
      await writeSafetensors(path.join(d, 'model.safetensors'), t, { format: 'pt' });
    }
  }
  fs.writeFileSync(path.join(cols.base, 'config.json'), JSON.stringify({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }));
  return { cols, rows };
}

// Statistics of each weight's INPUT width (24 for c_attn/c_fc, 1000 for c_proj), valid for both storages.
const K_ATTN = keys(1, 200, IN, false), K1_ATTN = keys(2, 30, IN, false), K_FC = keys(3, 300, IN, true);
const U_PROJ = Float32Array.from(orthonormalRows(randn(rng(4), 6 * FC), 6, FC));
const STATS: TensorToWrite[] = [
  { name: 'h.0.attn.c_attn.weight:cov', dtype: 'F32', shape: [IN, IN], data: covOfKeys(K_ATTN, 200, IN) },
  { name: 'h.0.attn.c_attn.weight:edit_cov', dtype: 'F32', shape: [IN, IN], data: covOfKeys(K1_ATTN, 30, IN) },
  { name: 'h.0.mlp.c_fc.weight:keys', dtype: 'F32', shape: [300, IN + 1], data: K_FC },
  { name: 'h.0.mlp.c_proj.weight:basis', dtype: 'F32', shape: [6, FC], data: U_PROJ },
];

// Written on first use (a filtered run that skips these tests writes nothing).
let modelsP: ReturnType<typeof writeModels> | undefined, statsP: Promise<string> | undefined;
const models = () => (modelsP ??= writeModels());
const statsFile = () => (statsP ??= writeStats(path.join(ROOT, 'stats.safetensors'), STATS, null));

function io(set: Record<Role, string>, imp: boolean) {
  return { inputs: { base: set.base, old: set.old, new: set.new }, imp: imp ? { importanceOld: set.impOld, importanceNew: set.impNew } : {} };
}

/** Every tensor of a columns output against the rows twin's output: bytes, after transposing the Conv1D weights back. */
async function expectSameAsTwin(colsOut: string, rowsOut: string): Promise<void> {
  for (const s of SPECS) {
    const a = await tensorOf(colsOut, s.name), b = await tensorOf(rowsOut, s.name);
    const back = s.conv ? { ...a, data: transpose(a.data as Float32Array, s.shape[0]!, s.shape[1]!) } : a;
    expect(bytes(back).equals(bytes(b)), s.name).toBe(true);
  }
}

function sameEntries(a: CheckpointManifest, b: CheckpointManifest): void {
  for (const e of a.tensors) {
    const f = b.tensors.find((t) => t.name === e.name)!;
    expect({ rows: e.rows, cols: e.cols, counts: e.counts, energy: e.energy, preserve: e.preserve }, e.name).toEqual({ rows: f.rows, cols: f.cols, counts: f.counts, energy: f.energy, preserve: f.preserve });
  }
}

describe('preservation on columns-layout tensors (GPT-2 Conv1D) in the checkpoint pipeline', () => {
  for (const [label, opts, imp] of [
    ['defaults', {}, false],
    ['density 0.5 with importance tensors (the bias uses its own)', { density: 0.5, fuseAligned: 0.5 }, true],
  ] as Array<[string, EditOptions, boolean]>) {
    it(`${label}: the rows edit of the transposed checkpoint, byte for byte, for threads 1 and 2; the manifest says the same`, async () => {
      const { cols, rows } = await models();
      const file = await statsFile();
      const twinOut = outDir('twin');
      const R = io(rows, imp), C = io(cols, imp);
      const twin = await editCheckpoint({ ...R.inputs, out: twinOut }, { ...opts, ...R.imp, preserve: { file, rho: 0.3, mu: 100 } });
      expect(twin.tensors.find((t) => t.name === 'h.0.mlp.c_fc.weight')).toMatchObject({ layout: 'rows', rows: FC, cols: IN });
      for (const threads of [1, 2]) {
        const out = outDir('cols');
        const m = await editCheckpoint({ ...C.inputs, out }, { ...opts, ...C.imp, threads, blockBytes: 2048, preserve: { file, rho: 0.3, mu: 100 } });
        const fc = m.tensors.find((t) => t.name === 'h.0.mlp.c_fc.weight')!;
        expect(fc).toMatchObject({ layout: 'columns', layoutSource: 'detected', rows: FC, cols: IN });
        expect(fc.preserve).toMatchObject({ statistics: 'h.0.mlp.c_fc.weight', bias: 'h.0.mlp.c_fc.bias', form: 'ridge' });
        expect(m.tensors.find((t) => t.name === 'h.0.mlp.c_fc.bias')!.preserve).toMatchObject({ withWeight: 'h.0.mlp.c_fc.weight' });
        expect(m.tensors.find((t) => t.name === 'h.0.mlp.c_proj.weight')!.preserve).toMatchObject({ form: 'basis' });
        expect(m.warnings.some((w) => w.includes('without preservation') && w.includes('h.0.ln_1.weight'))).toBe(true);
        await expectSameAsTwin(out, twinOut);
        sameEntries(m, twin);
      }
    });
  }

  it('the columns edit equals the f64 reference on the neurons (the columns), every form, the bias with its neuron, its own importance', async () => {
    const { cols, rows } = await models();
    const file = await statsFile();
    const opts: EditOptions = { density: 0.5, fuseAligned: 0.5 };
    const out = outDir('cols-ref');
    await editCheckpoint({ base: cols.base, old: cols.old, new: cols.new, out }, { ...opts, importanceOld: cols.impOld, importanceNew: cols.impNew, preserve: { file, rho: 0.3, mu: 100 } });
    const t = async (set: Record<Role, string>, name: string) => ({
      base: await tensorOf(set.base, name), old: await tensorOf(set.old, name), new: await tensorOf(set.new, name),
      imp: { importanceOld: await tensorOf(set.impOld, name), importanceNew: await tensorOf(set.impNew, name) },
    });
    const P: Record<string, Float64Array> = {
      'h.0.attn.c_attn.weight': ridgeP(covOfKeys(K_ATTN, 200, IN), covOfKeys(K1_ATTN, 30, IN), IN, 0.3, 100),
      'h.0.mlp.c_proj.weight': basisP(U_PROJ, 6, FC),
      'h.0.mlp.c_fc.weight': ridgeP(gram(K_FC, 300, IN + 1), null, IN + 1, 0.3, 100),
    };
    for (const s of SPECS.filter((x) => x.conv)) {
      const w = await t(rows, s.name); // the neurons as rows [out, in]
      const bias = s.name === 'h.0.mlp.c_fc.weight' ? await t(rows, 'h.0.mlp.c_fc.bias') : null;
      const ref = referencePreservedEdit(w.base, w.old, w.new, P[s.name]!, { ...opts, ...w.imp }, bias ?? undefined, bias ? { ...opts, importanceOld: { ...bias.imp.importanceOld, shape: [1, FC] }, importanceNew: { ...bias.imp.importanceNew, shape: [1, FC] } } : undefined);
      const got = (await tensorOf(out, s.name)).data as Float32Array;
      expectPreservedClose(transpose(got, s.shape[0]!, s.shape[1]!), ref.weight, ref.xNorm);
      if (!bias) continue;
      const bOut = (await tensorOf(out, 'h.0.mlp.c_fc.bias')).data as Float32Array;
      const br = ref.bias!.rows[0]!;
      let worst = 0;
      for (let k = 0; k < FC; k++) {
        const tol = F32_REL * br.bound[k]! + 1e-5 * (Math.abs(br.cNew) * ref.xNorm.new[k]! + Math.abs(br.cOld) * ref.xNorm.old[k]!) + 1e-30;
        worst = Math.max(worst, Math.abs(bOut[k]! - br.out[k]!) / tol);
      }
      expect(worst).toBeLessThanOrEqual(1);
      // a check that can fail: the bias trimmed by magnitude (its importance ignored) is another output
      const mag = referencePreservedEdit(w.base, w.old, w.new, P[s.name]!, { ...opts, ...w.imp }, bias, opts).bias!.rows[0]!;
      expect(mag.out.some((v, k) => Math.abs(v - br.out[k]!) > 1e-3)).toBe(true);
    }
  });

  it('analyzeCheckpoint: the same counts and preservation records as the rows reading of the transposed tensors', async () => {
    const { cols, rows } = await models();
    const file = await statsFile();
    const a = await analyzeCheckpoint({ base: cols.base, old: cols.old, new: cols.new }, { preserve: { file } });
    const b = await analyzeCheckpoint({ base: rows.base, old: rows.old, new: rows.new }, { preserve: { file } });
    sameEntries(a, b);
    expect(a.tensors.find((t) => t.name === 'h.0.mlp.c_fc.weight')!.preserve!.removed.new).toBeGreaterThan(0); // plain ridge (no C1): a contraction
  });

  it('statistics of the stored row length (out) for a Conv1D weight are refused for their width, naming both shapes, nothing written', async () => {
    const { cols } = await models();
    const file = await writeStats(path.join(ROOT, 'wrong-width.safetensors'), [{ name: 'h.0.attn.c_attn.weight:cov', dtype: 'F32', shape: [QKV, QKV], data: covOfKeys(keys(9, 100, QKV, false), 100, QKV) }], null);
    const out = outDir('wrong');
    const err = await editCheckpoint({ base: cols.base, old: cols.old, new: cols.new, out }, { preserve: { file } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_SHAPE_MISMATCH', details: { tensor: 'h.0.attn.c_attn.weight' } });
    expect(String((err as Error).message)).toMatch(/\[72, 72\].*\[24, 72\]/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('the augmented bias task keeps its importance tensors (rows layout)', () => {
  it('l0.fc.bias with importance and density 0.5: the reference with the bias\'s own importance, not magnitude', async () => {
    const dirs = await writePresModel(path.join(ROOT, 'biasimp'));
    const r = rng(31);
    const imp: Record<string, string> = {};
    for (const role of ['impOld', 'impNew']) {
      const d = path.join(ROOT, 'biasimp', role);
      fs.mkdirSync(d, { recursive: true });
      const ts: TensorToWrite[] = [];
      for (const name of ['l0.q.weight', 'l0.k.weight', 'l0.fc.weight', 'l0.fc.bias', 'l0.out.weight', 'l0.key.weight', 'l0.norm.weight']) {
        const t = await tensorOf(dirs.base, name);
        ts.push({ name, dtype: 'F32', shape: t.shape, data: Float32Array.from({ length: t.data.length }, () => r()) });
      }
      await writeSafetensors(path.join(d, 'model.safetensors'), ts, { format: 'pt' });
      imp[role] = d;
    }
    const Kfc = keys(5, 60, 6, true);
    const file = await writeStats(path.join(ROOT, 'biasimp.safetensors'), [{ name: 'l0.fc.weight:cov', dtype: 'F32', shape: [7, 7], data: covOfKeys(Kfc, 60, 7) }], null);
    const out = outDir('biasimp');
    const opts: EditOptions = { density: 0.5, fuseAligned: 0.5 };
    await editCheckpoint({ ...dirs, out }, { ...opts, importanceOld: imp.impOld, importanceNew: imp.impNew, include: ['l0.fc.*'], preserve: { file } });
    const get = async (d: string, n: string) => tensorOf(d, n);
    const w = { base: await get(dirs.base, 'l0.fc.weight'), old: await get(dirs.old, 'l0.fc.weight'), new: await get(dirs.new, 'l0.fc.weight') };
    const b = { base: await get(dirs.base, 'l0.fc.bias'), old: await get(dirs.old, 'l0.fc.bias'), new: await get(dirs.new, 'l0.fc.bias') };
    const bi = { importanceOld: { ...(await get(imp.impOld!, 'l0.fc.bias')), shape: [1, 10] }, importanceNew: { ...(await get(imp.impNew!, 'l0.fc.bias')), shape: [1, 10] } };
    const wi = { importanceOld: await get(imp.impOld!, 'l0.fc.weight'), importanceNew: await get(imp.impNew!, 'l0.fc.weight') };
    const P = ridgeP(covOfKeys(Kfc, 60, 7), null, 7, 0.3, 100);
    const ref = referencePreservedEdit(w.base, w.old, w.new, P, { ...opts, ...wi }, b, { ...opts, ...bi });
    expectPreservedClose((await get(out, 'l0.fc.weight')).data as Float32Array, ref.weight, ref.xNorm);
    const got = (await get(out, 'l0.fc.bias')).data as Float32Array, br = ref.bias!.rows[0]!;
    for (let k = 0; k < 10; k++) expect(Math.abs(got[k]! - br.out[k]!)).toBeLessThanOrEqual(F32_REL * br.bound[k]! + 1e-5 * (Math.abs(br.cNew) * ref.xNorm.new[k]! + Math.abs(br.cOld) * ref.xNorm.old[k]!) + 1e-30);
    const mag = referencePreservedEdit(w.base, w.old, w.new, P, { ...opts, ...wi }, b, opts).bias!.rows[0]!;
    expect(mag.out.some((v, k) => Math.abs(v - br.out[k]!) > 1e-4)).toBe(true);
  });
});

// The real GPT-2 base (sshleifer/tiny-gpt2: n_embd 2, Conv1D weights [in, out]) and two full fine-tunes of it.
const BASE = path.join(REAL, 'keerth0601__leave-letter-generator/models/tiny-gpt2');
const FT_A = path.join(REAL, 'camara-mohamed23__Medical-Text-Generation-with-Tiny-GPT2/tiny_gpt2_medical');
const FT_B = path.join(REAL, 'COolAlien35__AIC/checkpoints/sft');

if (!haveReal) {
  describe('real tiny-gpt2 with preservation', () => {
    it.skip(`skipped: ${REAL} is absent (the shared real-data folder is not part of the repository; from a worktree set TEST_SHARED_DIR=/work/shared)`, () => undefined);
  });
} else {
  describe('real tiny-gpt2 with preservation (statistics generated here: random PSD second moments from keys)', () => {
    it('every Conv1D weight preserved per output unit: the f64 reference within SPEC §5; threads 1 and 2 give the same bytes', async () => {
      const ins = await inspectCheckpoint(BASE);
      const conv = ins.tensors.filter((t) => t.layout === 'columns');
      expect(conv.length).toBe(8);
      const names = new Set(ins.tensors.map((t) => t.name));
      const stats: TensorToWrite[] = [];
      const P = new Map<string, Float64Array>();
      conv.forEach((t, q) => {
        const n = t.shape[0]!; // the input width: stored rows of a Conv1D weight
        const bias = t.name.replace(/\.weight$/, '.bias');
        const aug = names.has(bias);
        const d = aug ? n + 1 : n;
        const K = keys(40 + q, 64, n, aug), K1 = keys(80 + q, 16, n, aug);
        const C0 = covOfKeys(K, 64, d), C1 = covOfKeys(K1, 16, d);
        stats.push({ name: `${t.name}:cov`, dtype: 'F32', shape: [d, d], data: C0 }, { name: `${t.name}:edit_cov`, dtype: 'F32', shape: [d, d], data: C1 });
        P.set(t.name, ridgeP(C0, C1, d, 0.3, 100));
      });
      const file = await writeStats(path.join(ROOT, 'tiny-gpt2-stats.safetensors'), stats, null);
      const a = outDir('real-t1'), b = outDir('real-t2');
      const opts: EditOptions = { kappa: 0.5 };
      const m = await editCheckpoint({ base: BASE, old: FT_A, new: FT_B, out: a }, { ...opts, threads: 1, preserve: { file } });
      await editCheckpoint({ base: BASE, old: FT_A, new: FT_B, out: b }, { ...opts, threads: 2, preserve: { file } });
      let checked = 0;
      for (const t of conv) {
        const e = m.tensors.find((x) => x.name === t.name)!;
        expect(e).toMatchObject({ layout: 'columns', rows: t.shape[1], cols: t.shape[0] });
        expect(e.preserve).toMatchObject({ statistics: t.name, form: 'ridge', rho: 0.3, mu: 100 });
        const [x, y] = [await tensorOf(a, t.name), await tensorOf(b, t.name)];
        expect(bytes(x).equals(bytes(y)), t.name).toBe(true);
        // the reference on the neurons: each stored matrix transposed to [out, in]
        const [inW, outW] = [t.shape[0]!, t.shape[1]!];
        const asRows = async (dir: string, name: string) => { const v = await tensorOf(dir, name); return { ...v, shape: [outW, inW], data: transpose(v.data as Float32Array, inW, outW) }; };
        const biasName = t.name.replace(/\.weight$/, '.bias');
        const bias = names.has(biasName) ? { base: await tensorOf(BASE, biasName), old: await tensorOf(FT_A, biasName), new: await tensorOf(FT_B, biasName) } : undefined;
        const ref = referencePreservedEdit(await asRows(BASE, t.name), await asRows(FT_A, t.name), await asRows(FT_B, t.name), P.get(t.name)!, opts, bias);
        expectPreservedClose(transpose(x.data as Float32Array, inW, outW), ref.weight, ref.xNorm);
        if (bias) expect(m.tensors.find((z) => z.name === biasName)!.preserve).toMatchObject({ withWeight: t.name });
        checked += inW * outW;
      }
      expect(checked).toBeGreaterThan(0);
      // the projection did something on the real task vectors
      expect(m.tensors.some((e) => e.preserve && (e.preserve.removed.new ?? 0) > 0.01)).toBe(true);
    });

    it('the two real LoRAs (c_attn, fan_in_fan_out) on the Conv1D base: [in, in] statistics per module; the base\'s other Conv1D weights are read per neuron too', async () => {
      const L1 = path.join(REAL, 'Ali-Hamas__Project-Three-ML/models/fine_tuned'), L2 = path.join(REAL, 'Ali-Hamas__Project-Three-ML/models/qa_fine_tuned');
      const cattn = ['transformer.h.0.attn.c_attn.weight', 'transformer.h.1.attn.c_attn.weight'];
      const own: TensorToWrite[] = cattn.map((n, q) => ({ name: `${n}:cov`, dtype: 'F32', shape: [2, 2], data: covOfKeys(keys(60 + q, 32, 2, false), 32, 2) }));
      // + statistics of a Conv1D weight no module adapts: [in 2, in 2] for c_fc [2, 8] (its rows view would be [8, 8])
      const more = [...own, { name: 'transformer.h.0.mlp.c_fc.weight:cov', dtype: 'F32', shape: [2, 2], data: covOfKeys(keys(70, 32, 2, false), 32, 2) } as TensorToWrite];
      const f1 = await writeStats(path.join(ROOT, 'lora-own.safetensors'), own, null);
      const f2 = await writeStats(path.join(ROOT, 'lora-more.safetensors'), more, null);
      const a = outDir('lora-own'), b = outDir('lora-more');
      const ma = await editAdapters({ base: BASE, old: L1, new: L2, out: a }, { kappa: 0.5, preserve: { file: f1 } });
      const mb = await editAdapters({ base: BASE, old: L1, new: L2, out: b }, { kappa: 0.5, preserve: { file: f2 } });
      const mods = mb.modules.filter((x) => x.preserve);
      expect(mods.length).toBe(2);
      expect(mb.warnings.some((w) => w.includes('not edited are not used') && w.includes('transformer.h.0.mlp.c_fc.weight'))).toBe(true);
      // the unused statistic changes nothing
      for (const f of fs.readdirSync(a).filter((n) => n.endsWith('.safetensors'))) expect(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))), f).toBe(true);
      expect(ma.modules.map((x) => x.preserve)).toEqual(mb.modules.map((x) => x.preserve));
    });
  });
}
