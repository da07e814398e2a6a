// The one function every benchmark edit goes through: the package's own user path.
// Checkpoints go through editCheckpoint, PEFT adapters through editAdapters (merged into the base
// checkpoint, outFormat 'full'), and the edited file is read back for scoring. The one exception
// is strategy 'custom' (the random-mask control): its coefficients are per tensor, which
// editCheckpoint / editAdapters do not take, so it runs editTensor on every tensor of the same
// files (adapters materialised as base + s·B·A); likewise preservation with in-memory statistics
// (editTensor's `preserve`; on a LoRA pair (s·B·A)·P = s·B·(A·P), SPEC §4, so materialised rows give the same edit).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { editTensor } from '../edit';
import { editCheckpoint, type CheckpointManifest } from '../checkpoint';
import { editAdapters, type AdapterManifest } from '../lora';
import { GeoEditError } from '../errors';
import { readSafetensorsHeaderSync, readTensor, toTensor, writeSafetensors } from '../safetensors';
import { readModelFamily, resolveLayouts, type TensorLayout } from '../checkpoint/layout';
import type { EditOptions, PreserveTensorOption, Tensor, TensorStats } from '../types';

export type Weights = Map<string, Tensor>;

/** Full checkpoints θ0, θold, θnew (safetensors files). */
export interface CheckpointSource {
  kind: 'checkpoints';
  base: string;
  old: string;
  new: string;
}

/** LoRA adapters (PEFT directories) on a base checkpoint. */
export interface AdapterSource {
  kind: 'adapters';
  base: string;
  old: string;
  new: string;
}

export type EditSource = CheckpointSource | AdapterSource;

export interface EditRun {
  weights: Weights;
  stats: Map<string, TensorStats>;
}

export async function loadCheckpoint(file: string): Promise<Weights> {
  const h = readSafetensorsHeaderSync(file);
  const out: Weights = new Map();
  for (const t of h.tensors) out.set(t.name, toTensor(await readTensor(file, t.name, h), `${file}: ${t.name}`));
  return out;
}

export async function saveCheckpoint(file: string, w: Weights, metadata?: Record<string, string>): Promise<void> {
  await writeSafetensors(file, [...w].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data })), metadata ?? { format: 'pt' });
}

interface AdapterConfig {
  r: number;
  lora_alpha: number;
  use_rslora?: boolean;
  fan_in_fan_out?: boolean;
  target_modules: string[];
}

/** base + s·B·A for every module of a PEFT adapter directory (f32). */
export async function materialiseAdapter(base: Weights, dir: string): Promise<Weights> {
  const cfgPath = path.join(dir, 'adapter_config.json');
  let cfg: AdapterConfig;
  try {
    cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as AdapterConfig;
  } catch (e) {
    throw new GeoEditError('ERR_BAD_ADAPTER', `${cfgPath}: cannot read the adapter config (${(e as Error).message})`, { file: cfgPath });
  }
  const s = cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
  const file = path.join(dir, 'adapter_model.safetensors');
  const ad = await loadCheckpoint(file);
  const out: Weights = new Map();
  for (const [name, t] of base) out.set(name, { ...t, data: (t.data as Float32Array).slice() });
  for (const [key, A] of ad) {
    const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(key);
    if (!m) continue;
    const mod = m[1]!;
    const B = ad.get(`base_model.model.${mod}.lora_B.weight`);
    const W = out.get(`${mod}.weight`);
    if (!B || !W) throw new GeoEditError('ERR_BAD_ADAPTER', `${file}: module '${mod}' has no lora_B or no base weight '${mod}.weight'`, { file, tensor: key });
    const [r, inn] = A.shape as [number, number];
    const outDim = B.shape[0]!;
    const a = A.data as Float32Array, b = B.data as Float32Array, w = W.data as Float32Array;
    // fan_in_fan_out (GPT-2 Conv1D): the base stores the layer [in, out], so B·A lands transposed.
    const at = cfg.fan_in_fan_out === true ? (i: number, j: number) => j * outDim + i : (i: number, j: number) => i * inn + j;
    for (let i = 0; i < outDim; i++) {
      for (let k = 0; k < r; k++) {
        const c = s * b[i * r + k]!;
        if (c === 0) continue;
        for (let j = 0; j < inn; j++) w[at(i, j)] = w[at(i, j)]! + c * a[k * inn + j]!;
      }
    }
  }
  return out;
}

/** The three weight sets of a source, in memory (adapters materialised). */
export async function loadSource(src: EditSource): Promise<{ base: Weights; old: Weights; new: Weights }> {
  const base = await loadCheckpoint(src.base);
  if (src.kind === 'checkpoints') return { base, old: await loadCheckpoint(src.old), new: await loadCheckpoint(src.new) };
  return { base, old: await materialiseAdapter(base, src.old), new: await materialiseAdapter(base, src.new) };
}

/** The neuron layout of every tensor of a source (SPEC §2: detected from the base's config.json, as editCheckpoint does). */
export function sourceLayouts(src: EditSource, base: Weights): Map<string, TensorLayout> {
  const fam = readModelFamily(path.dirname(path.resolve(src.base)));
  return resolveLayouts([...base].map(([name, t]) => ({ name, shape: t.shape })), [], fam, []);
}

/** A tensor as the matrix of its neurons [rows, cols] (columns layouts: each stored matrix transposed), or back (`inverse`). */
export function neuronView(t: Tensor, l: TensorLayout, inverse = false): Tensor {
  if (!l.columns) return inverse ? t : { ...t, shape: [l.rows, l.cols] };
  const per = l.rows / l.groups, n = l.cols; // stored [n, per] per group; neurons [per, n]
  const src = t.data, out = new (src.constructor as new (len: number) => typeof src)(src.length);
  for (let g = 0; g < l.groups; g++) {
    const o = g * per * n;
    for (let i = 0; i < n; i++) for (let j = 0; j < per; j++) {
      if (inverse) out[o + i * per + j] = src[o + j * n + i]!;
      else out[o + j * n + i] = src[o + i * per + j]!;
    }
  }
  return { dtype: t.dtype, shape: inverse ? [] : [l.rows, l.cols], data: out } as Tensor;
}

export interface RunEditOptions {
  /** strategy 'custom': coefficients per tensor name (tensors not listed get task arithmetic's (1, 0)). */
  coefficients?: Map<string, { cNew: Float32Array; cOld: Float32Array }>;
  /** Write the edited checkpoint (a .safetensors file) here; default: a temporary file, removed after reading. */
  outFile?: string;
  /** The loaded source (the sweep edits the same files many times; 'custom' and preserve use it). */
  loaded?: { base: Weights; old: Weights; new: Weights };
  /** Option `preserve` per tensor name (SPEC §3 step 0): runs editTensor per tensor with it (tensors not listed: no preservation). */
  preserve?: Map<string, PreserveTensorOption>;
}

export interface EditRunResult extends EditRun {
  /** editCheckpoint's or editAdapters' manifest (null for 'custom', which runs per tensor). */
  manifest: CheckpointManifest | AdapterManifest | null;
  /** 'editCheckpoint' | 'editAdapters' | 'editTensor' */
  path: string;
}

let tmpRoot: string | null = null;
function tmpDir(): string {
  if (!tmpRoot) {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-quality-'));
    const root = tmpRoot;
    process.once('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  }
  return tmpRoot;
}
let tmpCount = 0;

/** Edit θ0 with τold / τnew from `src` through the package's path; returns the edited weights. */
export async function runEdit(src: EditSource, options: EditOptions, extra: RunEditOptions = {}): Promise<EditRunResult> {
  if (options.strategy === 'custom' || extra.preserve) {
    const w = extra.loaded ?? (await loadSource(src));
    const layouts = sourceLayouts(src, w.base);
    const weights: Weights = new Map();
    const stats = new Map<string, TensorStats>();
    for (const [name, base] of w.base) {
      const old = w.old.get(name), nw = w.new.get(name);
      if (!old || !nw) throw new GeoEditError('ERR_MISSING_TENSOR', `tensor '${name}' of ${src.base} is missing from the ${!old ? 'old' : 'new'} weights`, { tensor: name });
      const c = extra.coefficients?.get(name);
      let opts: EditOptions = options.strategy !== 'custom' ? options : c ? { ...options, coefficients: c } : { ...options, strategy: 'task-arithmetic' };
      const p = extra.preserve?.get(name);
      if (p) opts = { ...opts, preserve: p };
      const l = layouts.get(name)!; // per neuron, as editCheckpoint: columns tensors are edited transposed (statistics: [in, in])
      const r = await editTensor({ base: neuronView(base, l), old: neuronView(old, l), new: neuronView(nw, l) }, opts);
      weights.set(name, l.columns ? { ...neuronView(r.out, l, true), shape: base.shape } : { ...r.out, shape: base.shape });
      stats.set(name, r.stats);
    }
    if (extra.outFile) await saveCheckpoint(extra.outFile, weights);
    return { weights, stats, manifest: null, path: 'editTensor' };
  }
  const work = path.join(tmpDir(), `edit-${process.pid}-${tmpCount++}`);
  try {
    let file: string;
    let manifest: CheckpointManifest | AdapterManifest;
    if (src.kind === 'checkpoints') {
      manifest = await editCheckpoint({ base: src.base, old: src.old, new: src.new, out: work }, { ...options, hash: false, copyFiles: false } as never);
      file = path.join(work, 'model.safetensors');
    } else {
      manifest = await editAdapters({ old: src.old, new: src.new, base: src.base, out: work }, { ...options, outFormat: 'full', copyFiles: false } as never);
      file = path.join(work, 'model.safetensors');
    }
    const weights = await loadCheckpoint(file);
    if (extra.outFile) {
      fs.mkdirSync(path.dirname(path.resolve(extra.outFile)), { recursive: true });
      fs.copyFileSync(file, extra.outFile);
    }
    return { weights, stats: new Map(), manifest, path: src.kind === 'checkpoints' ? 'editCheckpoint' : 'editAdapters' };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
