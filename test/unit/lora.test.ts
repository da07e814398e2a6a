// PEFT adapter directories: reading (scales, patterns, embeddings, fan_in_fan_out), the edited
// adapter and the merged full weights against editTensor on full weights, refusals.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { editTensor } from '../../lib/index';
import { readPeftAdapter, editAdapters, analyzeAdapters, loadModuleFactors } from '../../lib/lora';
import { readSafetensorsHeaderSync, readTensor, writeSafetensors } from '../../lib/safetensors';
import { loadNative } from '../../lib/native';
import { tmpDir, writeAdapter, linearModule, tauOf, type SynthModule } from '../support/lora';
import { rng, randn } from '../support/prng';

const dirs: string[] = [];
function tmp(tag: string): string {
  const d = tmpDir(tag);
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A synthetic pair: q_proj/v_proj in 2 layers, an embedding, a module only in old, one only in new. */
async function makePair(opts: { fanInFanOut?: boolean } = {}) {
  const r = rng(opts.fanInFanOut ? 5 : 4);
  const root = tmp('pair');
  const H = 24, F = 40;
  const mods = (side: 'old' | 'new'): SynthModule[] => {
    const list: SynthModule[] = [];
    for (let l = 0; l < 2; l++) {
      list.push(linearModule(r, `model.layers.${l}.self_attn.q_proj`, H, H, side === 'old' ? 4 : 8));
      list.push(linearModule(r, `model.layers.${l}.mlp.up_proj`, F, H, 4));
    }
    const V = 30;
    list.push({ name: 'model.embed_tokens', A: randn(r, 4 * V, 0.1), B: randn(r, H * 4, 0.1), r: 4, rows: V, cols: H, embedding: true });
    if (side === 'old') list.push(linearModule(r, 'model.layers.1.self_attn.o_proj', H, H, 4));
    else list.push(linearModule(r, 'model.layers.0.self_attn.o_proj', H, H, 4));
    // Correlate new with old on half of the q_proj rows so every region occurs.
    return list;
  };
  const oldM = mods('old'), newM = mods('new');
  // New's up_proj shares old's A and partly its B (aligned / opposed rows).
  for (let l = 0; l < 2; l++) {
    const o = oldM[2 * l + 1]!, n = newM[2 * l + 1]!;
    n.A.set(o.A);
    for (let i = 0; i < n.rows; i++) {
      const s = i % 3 === 0 ? 1 : i % 3 === 1 ? -1 : 0;
      for (let k = 0; k < 4; k++) n.B[i * 4 + k] = s * o.B[i * 4 + k]! + 0.3 * n.B[i * 4 + k]!;
    }
  }
  const headOld = { name: 'base_model.model.lm_head.weight', dtype: 'F32' as const, shape: [3, H], data: randn(r, 3 * H) };
  const headNew = { name: 'base_model.model.lm_head.weight', dtype: 'F32' as const, shape: [3, H], data: randn(r, 3 * H) };
  const common = { fan_in_fan_out: !!opts.fanInFanOut, target_modules: ['q_proj', 'up_proj', 'o_proj', 'embed_tokens'], modules_to_save: ['lm_head'] };
  // old: r 4 default, q_proj rank 4 (default), alpha 8, rsLoRA.
  const oldCfg = { ...common, r: 4, lora_alpha: 8, use_rslora: true };
  // new: r 4 default, q_proj rank 8 via rank_pattern with its own alpha.
  const newCfg = { ...common, r: 4, lora_alpha: 16, rank_pattern: { q_proj: 8 }, alpha_pattern: { 'layers.1.self_attn.q_proj': 4 } };
  await writeAdapter(path.join(root, 'old'), oldCfg, oldM, [headOld]);
  await writeAdapter(path.join(root, 'new'), newCfg, newM, [headNew]);
  // Base checkpoint: the weight of every module (Conv1D layout [in, out] for Linear when fan_in_fan_out).
  const base: Array<{ name: string; dtype: 'BF16' | 'F32'; shape: number[]; data: Float32Array | Uint16Array }> = [];
  const seen = new Set<string>();
  for (const m of [...oldM, ...newM]) {
    if (seen.has(m.name)) continue;
    seen.add(m.name);
    const shape = opts.fanInFanOut && !m.embedding ? [m.cols, m.rows] : [m.rows, m.cols];
    base.push({ name: `${m.name}.weight`, dtype: 'F32', shape, data: randn(r, m.rows * m.cols, 0.5) });
  }
  base.push({ name: 'model.norm.weight', dtype: 'F32', shape: [H], data: randn(r, H) });
  base.push({ name: 'lm_head.weight', dtype: 'F32', shape: [3, H], data: randn(r, 3 * H) });
  await writeSafetensors(path.join(root, 'base.safetensors'), base, { format: 'pt' });
  return { root, oldM, newM, base, old: path.join(root, 'old'), new: path.join(root, 'new'), basePath: path.join(root, 'base.safetensors') };
}

const scaleOld = (m: SynthModule) => 8 / Math.sqrt(m.r); // rsLoRA
const scaleNew = (m: SynthModule) => (m.name === 'model.layers.1.self_attn.q_proj' ? 4 : 16) / m.r;

describe('reading PEFT directories', () => {
  it('scales honour lora_alpha, use_rslora, rank_pattern and alpha_pattern; embeddings are recognised', async () => {
    const p = await makePair();
    const o = readPeftAdapter(p.old), n = readPeftAdapter(p.new);
    expect(o.modules.size).toBe(6);
    for (const m of p.oldM) expect(o.modules.get(m.name)!.scale).toBeCloseTo(scaleOld(m), 15);
    for (const m of p.newM) expect(n.modules.get(m.name)!.scale).toBeCloseTo(scaleNew(m), 15);
    expect(n.modules.get('model.layers.0.self_attn.q_proj')!.r).toBe(8);
    expect(n.modules.get('model.embed_tokens')!.embedding).toBe(true);
    expect(n.modules.get('model.embed_tokens')!.rows).toBe(30);
    expect(n.extras.map((t) => t.name)).toEqual(['base_model.model.lm_head.weight']);
  });
});

async function checkAgainstEditTensor(p: Awaited<ReturnType<typeof makePair>>, opts: Record<string, unknown>, fanInFanOut: boolean) {
  const outA = path.join(p.root, `out-adapter-${Math.random().toString(36).slice(2)}`);
  const outDir = path.join(p.root, `out-full-${Math.random().toString(36).slice(2)}`);
  const outF = path.join(outDir, 'model.safetensors');
  const manA = await editAdapters({ old: p.old, new: p.new, out: outA }, { ...opts, perRow: true });
  const manF = await editAdapters({ old: p.old, new: p.new, out: outDir, base: p.basePath }, { ...opts, outFormat: 'full', perRow: true });
  expect(manA.outFormat).toBe('adapter');
  expect(manF.outFormat).toBe('full');
  expect(fs.existsSync(path.join(outDir, 'geoedit-manifest.json'))).toBe(true);
  expect(fs.existsSync(path.join(outA, 'geoedit-manifest.json'))).toBe(true);
  const ed = readPeftAdapter(outA);
  const fh = readSafetensorsHeaderSync(outF);
  const names = new Set([...p.oldM, ...p.newM].map((m) => m.name));
  for (const name of names) {
    const mo = p.oldM.find((m) => m.name === name), mn = p.newM.find((m) => m.name === name);
    const ref = (mo ?? mn)!;
    const rows = ref.rows, cols = ref.cols;
    const tO = mo ? tauOf(mo, scaleOld(mo)) : new Float64Array(rows * cols);
    const tN = mn ? tauOf(mn, scaleNew(mn)) : new Float64Array(rows * cols);
    const baseT = p.base.find((b) => b.name === `${name}.weight`)!;
    const transposed = fanInFanOut && !ref.embedding;
    const baseN = new Float32Array(rows * cols); // neuron layout
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) baseN[i * cols + j] = (baseT.data as Float32Array)[transposed ? j * rows + i : i * cols + j]!;
    // editTensor on full weights: old = base + tau_old, new = base + tau_new (f32).
    const oldW = new Float32Array(rows * cols), newW = new Float32Array(rows * cols);
    for (let q = 0; q < rows * cols; q++) { oldW[q] = baseN[q]! + tO[q]!; newW[q] = baseN[q]! + tN[q]!; }
    const full = await editTensor({
      base: { dtype: 'f32', shape: [rows, cols], data: baseN }, old: { dtype: 'f32', shape: [rows, cols], data: oldW }, new: { dtype: 'f32', shape: [rows, cols], data: newW },
    }, opts);
    const stA = manA.perRow![name]!, stF = manF.perRow![name]!;
    // The adapter's module: scale 1 and rank r_new + r_old, less a side whose coefficients are all 0.
    const rank = (mn && stA.coefNew.some((c) => c !== 0) ? mn.r : 0) + (mo && stA.coefOld.some((c) => c !== 0) ? mo.r : 0);
    const em = ed.modules.get(name);
    let tE: Float64Array;
    if (rank === 0) {
      expect(em).toBeUndefined(); // the edit leaves the module unchanged: left out of the adapter
      expect(manA.warnings.some((w) => w.includes(`'${name}': every coefficient is 0`))).toBe(true);
      tE = new Float64Array(rows * cols);
    } else {
      expect(em!.scale).toBe(1);
      expect(em!.r).toBe(rank);
      const f = await loadModuleFactors(ed, name);
      tE = tauOf({ name, A: f.A.data as Float32Array, B: f.B.data as Float32Array, r: em!.r, rows, cols, embedding: ref.embedding }, 1);
    }
    const merged = (await readTensor(outF, `${name}.weight`, fh)).data as Float32Array;
    let rowsChecked = 0;
    for (let i = 0; i < rows; i++) {
      expect(stA.region[i]).toBe(stF.region[i]);
      if (full.stats.region[i] !== stA.region[i]) continue; // a row at the threshold (f32 materialisation)
      rowsChecked++;
      for (let j = 0; j < cols; j++) {
        const q = i * cols + j;
        const tol = 1e-6 * (Math.abs(baseN[q]!) + Math.abs(stA.coefNew[i]! * tN[q]!) + Math.abs(stA.coefOld[i]! * tO[q]!)) + 2 ** -23 * Math.abs(baseN[q]!);
        const adapterOut = Math.fround(baseN[q]! + tE[q]!);
        expect(Math.abs(adapterOut - full.out.data[q]!)).toBeLessThanOrEqual(tol + 1e-7 * (Math.abs(tN[q]!) + Math.abs(tO[q]!)));
        const mq = transposed ? j * rows + i : q;
        expect(Math.abs(merged[mq]! - full.out.data[q]!)).toBeLessThanOrEqual(tol);
      }
    }
    expect(rowsChecked).toBeGreaterThanOrEqual(rows - 2);
  }
  // Non-module tensors are copied byte for byte; the new adapter's head replaces the base head.
  const norm = await readTensor(outF, 'model.norm.weight', fh);
  expect(Array.from(norm.data as Float32Array)).toEqual(Array.from(p.base.find((b) => b.name === 'model.norm.weight')!.data as Float32Array));
  const head = await readTensor(outF, 'lm_head.weight', fh);
  const newHead = await readTensor(path.join(p.new, 'adapter_model.safetensors'), 'base_model.model.lm_head.weight');
  expect(Array.from(head.data as Float32Array)).toEqual(Array.from(newHead.data as Float32Array));
  expect(manF.extras).toEqual([{ tensor: 'base_model.model.lm_head.weight', from: 'new', action: 'replaced-in-base' }]);
  // The adapter output keeps the new head under its PEFT key.
  expect(ed.extras.map((t) => t.name)).toEqual(['base_model.model.lm_head.weight']);
  return { manA, manF, ed };
}

describe('editAdapters: the adapter output and the merged output equal editTensor on full weights', () => {
  it('Linear + Embedding, rank/alpha patterns, rsLoRA, one-sided modules (default GeoEdit options)', async () => {
    const p = await makePair();
    const { manA, ed } = await checkAgainstEditTensor(p, {}, false);
    const counts = manA.totals.counts;
    expect(counts.synergy).toBeGreaterThan(0);
    expect(counts.conflict).toBeGreaterThan(0);
    expect(counts.orthogonal).toBeGreaterThan(0);
    // Output config: scale 1 for every module through r / lora_alpha and the patterns.
    const cfg = ed.config as { r: number; lora_alpha: number; rank_pattern: Record<string, number>; alpha_pattern: Record<string, number>; use_rslora: boolean };
    expect(cfg.use_rslora).toBe(false);
    expect(cfg.lora_alpha).toBe(cfg.r);
    for (const [k, v] of Object.entries(cfg.rank_pattern)) expect(cfg.alpha_pattern[k]).toBe(v);
    // One-sided modules: zero task vector on the other side, every row orthogonal.
    const onlyOld = manA.modules.find((m) => m.name === 'model.layers.1.self_attn.o_proj')!;
    expect(onlyOld.rNew).toBe(0);
    expect(onlyOld.counts.orthogonal).toBe(onlyOld.rows);
    expect(onlyOld.energy.applied).toBe(0);
    expect(onlyOld.zeroRows).toBe(onlyOld.rows);
    for (const m of manA.modules) expect(m.angleHistogram.reduce((a, b) => a + b, 0)).toBe(m.rows);
    expect(manA.warnings).toContain("module 'model.layers.1.self_attn.o_proj' is only in the old adapter: a zero new task vector, every row orthogonal");
    expect(manA.parameters.kappa).toBe(2); // the calibrated default (docs/quality.md)
    expect(manA.versions.geoedit).toMatch(/^\d+\.\d+\.\d+/);
    const onDisk = JSON.parse(fs.readFileSync(path.join(path.dirname(ed.modelPath), 'geoedit-manifest.json'), 'utf8'));
    expect(onDisk.totals).toEqual(JSON.parse(JSON.stringify(manA.totals)));
    expect(onDisk.inputs.map((i: { role: string }) => i.role)).toEqual(['old', 'new']);
    expect(onDisk.perRow).toBeUndefined();
    const onlyNew = manA.modules.find((m) => m.name === 'model.layers.0.self_attn.o_proj')!;
    expect(onlyNew.counts.orthogonal).toBe(onlyNew.rows);
    expect(onlyNew.energy.applied).toBeCloseTo(0.5625 * onlyNew.energy.new, 10); // keepOrthogonal 0.75 (the calibrated default), squared
  });

  it('paper preset and forget-then-learn, with fan_in_fan_out (GPT-2 Conv1D base layout)', async () => {
    const p = await makePair({ fanInFanOut: true });
    await checkAgainstEditTensor(p, { preset: 'paper' }, true);
    const { manA } = await checkAgainstEditTensor(p, { strategy: 'forget-then-learn', lambda: 0.5 }, true);
    const onlyOld = manA.modules.find((m) => m.name === 'model.layers.1.self_attn.o_proj')!;
    expect(onlyOld.energy.applied).toBeCloseTo(0.25 * onlyOld.energy.old, 10); // c_old = -lambda on every row
  });

  it('density < 1: refused for adapter output (with the reason), merged through materialised rows for full output', async () => {
    const p = await makePair({ fanInFanOut: true });
    await expect(editAdapters({ old: p.old, new: p.new, out: path.join(p.root, 'x') }, { density: 0.5, outFormat: 'adapter' }))
      .rejects.toMatchObject({ code: 'ERR_UNSUPPORTED', message: expect.stringContaining('rank') });
    const out = path.join(p.root, 'trim');
    const man = await editAdapters({ old: p.old, new: p.new, out, base: p.basePath }, { density: 0.5 });
    expect(man.outFormat).toBe('full');
    // Compare one transposed module with editTensor on task vectors given as weights over a zero base.
    const m = p.newM[1]!, mo = p.oldM[1]!;
    const tN = tauOf(m, scaleNew(m)), tO = tauOf(mo, scaleOld(mo));
    const baseT = p.base.find((b) => b.name === `${m.name}.weight`)!;
    const rows = m.rows, cols = m.cols;
    const baseN = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) baseN[i * cols + j] = (baseT.data as Float32Array)[j * rows + i]!;
    const oldW = new Float32Array(rows * cols), newW = new Float32Array(rows * cols);
    for (let q = 0; q < rows * cols; q++) { oldW[q] = baseN[q]! + tO[q]!; newW[q] = baseN[q]! + tN[q]!; }
    const full = await editTensor({ base: { dtype: 'f32', shape: [rows, cols], data: baseN }, old: { dtype: 'f32', shape: [rows, cols], data: oldW }, new: { dtype: 'f32', shape: [rows, cols], data: newW } }, { density: 0.5 });
    const merged = (await readTensor(path.join(out, 'model.safetensors'), `${m.name}.weight`)).data as Float32Array;
    let maxd = 0, maxv = 0;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
      maxd = Math.max(maxd, Math.abs(merged[j * rows + i]! - full.out.data[i * cols + j]!));
      maxv = Math.max(maxv, Math.abs(full.out.data[i * cols + j]!));
    }
    expect(maxd).toBeLessThan(1e-5 * maxv);
  });

  it('bf16 base: merged rows round once to bf16; outputs are written whole or not at all', async () => {
    const p = await makePair();
    // bf16 copy of the base.
    const bf = p.base.map((t) => ({ ...t, dtype: 'BF16' as const, data: loadNative().convert('f32', t.data as Float32Array, 'bf16') }));
    const bpath = path.join(p.root, 'base-bf16.safetensors');
    await writeSafetensors(bpath, bf);
    const out = path.join(p.root, 'bf');
    await editAdapters({ old: p.old, new: p.new, out, base: bpath }, {});
    const h = readSafetensorsHeaderSync(path.join(out, 'model.safetensors'));
    expect(h.tensors.find((t) => t.name === 'model.layers.0.mlp.up_proj.weight')!.dtype).toBe('BF16');
    await expect(editAdapters({ old: p.old, new: p.new, out, base: bpath }, {})).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS' });
    // A base without the module's tensor: error naming the module; nothing is left behind.
    const partial = path.join(p.root, 'partial.safetensors');
    await writeSafetensors(partial, [bf[0]!]);
    const out2 = path.join(p.root, 'never');
    await expect(editAdapters({ old: p.old, new: p.new, out: out2, base: partial }, {})).rejects.toMatchObject({ code: 'ERR_MISSING_TENSOR' });
    expect(fs.existsSync(out2)).toBe(false);
    expect(fs.readdirSync(p.root).filter((f) => f.includes('geoedit-tmp'))).toEqual([]);
  });

  it('keepZeroBlocks: rank r_new + r_old everywhere, the same product', async () => {
    const p = await makePair();
    const a = path.join(p.root, 'compact'), b = path.join(p.root, 'full-rank');
    const ma = await editAdapters({ old: p.old, new: p.new, out: a }, {});
    const mb = await editAdapters({ old: p.old, new: p.new, out: b }, { keepZeroBlocks: true });
    const name = 'model.layers.0.mlp.up_proj';
    expect(ma.modules.find((m) => m.name === name)!.rOut).toBe(4); // default options: c_old = 0 on every row
    expect(mb.modules.find((m) => m.name === name)!.rOut).toBe(8);
    const ea = readPeftAdapter(a), eb = readPeftAdapter(b);
    expect(eb.modules.get('model.layers.1.self_attn.o_proj')!.r).toBe(4); // old-only module kept (zeros)
    expect(ea.modules.has('model.layers.1.self_attn.o_proj')).toBe(false);
    const fa = await loadModuleFactors(ea, name), fb = await loadModuleFactors(eb, name);
    const ta = tauOf({ name, A: fa.A.data as Float32Array, B: fa.B.data as Float32Array, r: 4, rows: 40, cols: 24 }, 1);
    const tb = tauOf({ name, A: fb.A.data as Float32Array, B: fb.B.data as Float32Array, r: 8, rows: 40, cols: 24 }, 1);
    expect(Array.from(ta)).toEqual(Array.from(tb));
  });

  it('a base directory (index + shards): tensors found across shards, config files copied, one model.safetensors out', async () => {
    const p = await makePair();
    const bdir = path.join(p.root, 'base-dir');
    fs.mkdirSync(bdir);
    const half = Math.ceil(p.base.length / 2);
    const shards = [p.base.slice(0, half), p.base.slice(half)];
    const weight_map: Record<string, string> = {};
    for (let k = 0; k < 2; k++) {
      const f = `model-0000${k + 1}-of-00002.safetensors`;
      await writeSafetensors(path.join(bdir, f), shards[k]!);
      for (const t of shards[k]!) weight_map[t.name] = f;
    }
    fs.writeFileSync(path.join(bdir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map }));
    fs.writeFileSync(path.join(bdir, 'config.json'), '{"model_type":"synthetic"}');
    const out = path.join(p.root, 'from-shards');
    await editAdapters({ old: p.old, new: p.new, out, base: bdir }, {});
    expect(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).toBe('{"model_type":"synthetic"}');
    // Same tensors as from the single-file base.
    const single = path.join(p.root, 'from-file');
    await editAdapters({ old: p.old, new: p.new, out: single, base: p.basePath }, {});
    const hs = readSafetensorsHeaderSync(path.join(single, 'model.safetensors'));
    const hd = readSafetensorsHeaderSync(path.join(out, 'model.safetensors'));
    for (const t of hs.tensors) {
      const a = await readTensor(path.join(single, 'model.safetensors'), t.name, hs);
      const b = await readTensor(path.join(out, 'model.safetensors'), t.name, hd);
      expect(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength).equals(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength))).toBe(true);
    }
  });

  it('analyzeAdapters reports the same regions as editAdapters without writing', async () => {
    const p = await makePair();
    const rep = await analyzeAdapters({ old: p.old, new: p.new });
    const man = await editAdapters({ old: p.old, new: p.new, out: path.join(p.root, 'a2') }, {});
    expect(rep.totals.counts).toEqual(man.totals.counts);
    expect(rep.modules.map((m) => m.name)).toEqual(man.modules.map((m) => m.name));
  });
});

describe('refused configurations', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['use_dora', { use_dora: true }, 'use_dora'],
    ['lora_bias', { lora_bias: true }, 'lora_bias'],
    ['bias all', { bias: 'all' }, 'bias'],
    ['use_qalora', { use_qalora: true }, 'use_qalora'],
    ['loftq', { loftq_config: { loftq_bits: 4 } }, 'loftq_config'],
    ['init loftq', { init_lora_weights: 'loftq' }, 'loftq_config'],
    ['init pissa', { init_lora_weights: 'pissa_niter_4' }, 'init_lora_weights'],
    ['init olora', { init_lora_weights: 'olora' }, 'init_lora_weights'],
    ['quantization_config', { quantization_config: { load_in_4bit: true } }, 'quantization_config'],
    ['peft_type', { peft_type: 'IA3' }, 'peft_type'],
    ['layer_replication', { layer_replication: [[0, 2]] }, 'layer_replication'],
    ['alora', { alora_invocation_tokens: [1, 2] }, 'alora_invocation_tokens'],
    ['trainable tokens', { trainable_token_indices: [5] }, 'trainable_token_indices'],
    ['target_parameters', { target_parameters: ['experts.gate_up_proj'] }, 'target_parameters'],
  ];
  for (const [label, cfg, key] of cases) {
    it(`${label}: ERR_UNSUPPORTED naming the file and key`, async () => {
      const d = tmp('bad');
      await writeAdapter(d, cfg, [linearModule(rng(1), 'model.layers.0.q_proj', 6, 5, 2)]);
      let err: { code?: string; message?: string } = {};
      try {
        readPeftAdapter(d);
      } catch (e) {
        err = e as typeof err;
      }
      expect(err.code).toBe('ERR_UNSUPPORTED');
      expect(err.message).toContain(path.join(d, 'adapter_config.json'));
      expect(err.message).toContain(key);
    });
  }

  it('DoRA magnitude vectors and LoRA bias tensors in the file', async () => {
    const d = tmp('bad');
    await writeAdapter(d, {}, [linearModule(rng(1), 'm.q_proj', 6, 5, 2)], [], [{ name: 'base_model.model.m.q_proj.lora_magnitude_vector', dtype: 'F32', shape: [6], data: new Float32Array(6) }]);
    expect(() => readPeftAdapter(d)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED', message: expect.stringContaining('lora_magnitude_vector') }));
    const d2 = tmp('bad');
    await writeAdapter(d2, {}, [linearModule(rng(1), 'm.q_proj', 6, 5, 2)], [], [{ name: 'base_model.model.m.q_proj.lora_B.bias', dtype: 'F32', shape: [6], data: new Float32Array(6) }]);
    expect(() => readPeftAdapter(d2)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED', message: expect.stringContaining('lora_B.bias') }));
  });

  it('bad adapters: rank disagreeing with the config, missing factor, missing files, non-finite factors', async () => {
    const d = tmp('bad');
    await writeAdapter(d, { r: 4 }, [linearModule(rng(1), 'm.q_proj', 6, 5, 2)]);
    expect(() => readPeftAdapter(d)).toThrow(expect.objectContaining({ code: 'ERR_BAD_ADAPTER', message: expect.stringContaining("'m.q_proj' has rank 2") }));
    const d2 = tmp('bad');
    await writeAdapter(d2, { r: 2 }, [], [], [{ name: 'base_model.model.m.q_proj.lora_A.weight', dtype: 'F32', shape: [2, 5], data: new Float32Array(10) }]);
    expect(() => readPeftAdapter(d2)).toThrow(expect.objectContaining({ code: 'ERR_BAD_ADAPTER', message: expect.stringContaining('no lora_B') }));
    expect(() => readPeftAdapter(path.join(d, 'nope'))).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
    fs.renameSync(path.join(d2, 'adapter_model.safetensors'), path.join(d2, 'adapter_model.bin'));
    expect(() => readPeftAdapter(d2)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED', message: expect.stringContaining('pickle') }));
    const d3 = tmp('bad');
    const m = linearModule(rng(1), 'm.q_proj', 6, 5, 2);
    m.B[7] = NaN;
    await writeAdapter(d3, { r: 2 }, [m]);
    const d4 = tmp('ok');
    await writeAdapter(d4, { r: 2 }, [linearModule(rng(2), 'm.q_proj', 6, 5, 2)]);
    await expect(analyzeAdapters({ old: d4, new: d3 })).rejects.toMatchObject({ code: 'ERR_NON_FINITE', message: expect.stringContaining('lora_B.weight') });
    // allowNonFinite: the row holding the NaN gets cos 0 (orthogonal); the others are computed.
    const rep = await analyzeAdapters({ old: d4, new: d3 }, { allowNonFinite: true, perRow: true });
    const st = rep.perRow!['m.q_proj']!;
    expect(st.cos[3]).toBe(0); // B[7] is row 3 of B [6, 2]
    expect(Number.isFinite(st.cos[0]!) && st.cos[0] !== 0).toBe(true);
  });

  it('pairs that do not fit: different shapes, fan_in_fan_out disagreement, options', async () => {
    const a = tmp('a'), b = tmp('b'), c = tmp('c');
    await writeAdapter(a, { r: 2 }, [linearModule(rng(1), 'm.q_proj', 6, 5, 2)]);
    await writeAdapter(b, { r: 2 }, [linearModule(rng(2), 'm.q_proj', 7, 5, 2)]);
    await writeAdapter(c, { r: 2, fan_in_fan_out: true }, [linearModule(rng(3), 'm.q_proj', 6, 5, 2)]);
    await expect(analyzeAdapters({ old: a, new: b })).rejects.toMatchObject({ code: 'ERR_SHAPE_MISMATCH', message: expect.stringContaining("'m.q_proj'") });
    await expect(editAdapters({ old: a, new: c, out: path.join(a, 'o') })).rejects.toMatchObject({ code: 'ERR_BAD_ADAPTER', message: expect.stringContaining('fan_in_fan_out') });
    await expect(editAdapters({ old: a, new: a, out: path.join(a, 'o') }, { outFormat: 'full' })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(editAdapters({ old: a, new: a, out: path.join(a, 'o') }, { kappa: -1 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(editAdapters({ old: a, new: a, out: path.join(a, 'o') }, { importanceOld: {} } as never)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
    expect(fs.existsSync(path.join(a, 'o'))).toBe(false);
  });
});
