// PEFT LoRA adapter directories (adapter_config.json + adapter_model.safetensors): read, analyse
// and edit two adapters trained from the same base, neuron by neuron, without forming B*A
// (SPEC §4). Output: an exact adapter (density 1) or merged full weights (with a base file).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { GeoEditError, describe, typeError } from './errors';
import { native } from './native';
import { versionsBlock } from './versions';
import { summarizeRows, threshold } from './stats';
import {
  readSafetensorsHeaderSync, readTensor, planSafetensors, tempPathBeside, writeSafetensors,
  type SafetensorsHeader, type SafetensorsTensorInfo, type TensorToWrite, EDITABLE_ST_DTYPES, ST_DTYPE_SIZE,
} from './safetensors';
import { openCheckpoint, type CheckpointTensor } from './checkpoint';
import {
  buildEditedAdapter, checkLoraOptions, denseLoraRows, loraGeometry, mergeLoraRows, prepareLora,
  type LoraFactors, type LoraOptions, type LoraStats, type PreparedLora,
} from './lora-math';
import { resolveParams } from './options';
import type { DType, EditOptions, RegionCounts, Tensor } from './types';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_MODEL = 'adapter_model.safetensors';
export const LORA_MANIFEST = 'geoedit-manifest.json';

/** One LoRA module of an adapter file. */
export interface AdapterModule {
  /** Module path as in the model, without the `base_model.model.` prefix. */
  name: string;
  embedding: boolean;
  A: SafetensorsTensorInfo;
  B: SafetensorsTensorInfo;
  /** Rank from the file (checked against the config's r / rank_pattern). */
  r: number;
  alpha: number;
  rslora: boolean;
  /** alpha / r, or alpha / sqrt(r) with rsLoRA. */
  scale: number;
  /** tau's neuron view [rows, cols]: Linear [out, in], Embedding [num_embeddings, dim]. */
  rows: number;
  cols: number;
}

export interface PeftAdapter {
  dir: string;
  configPath: string;
  modelPath: string;
  config: Record<string, unknown>;
  header: SafetensorsHeader;
  modules: Map<string, AdapterModule>;
  /** Tensors that are not LoRA factors (modules_to_save heads, e.g. `classifier.weight`). */
  extras: SafetensorsTensorInfo[];
  fanInFanOut: boolean;
  /** The key prefix PEFT saved with (usually `base_model.model.`). */
  prefix: string;
}

function unsupported(file: string, key: string, why: string): GeoEditError {
  return new GeoEditError('ERR_UNSUPPORTED', `${file}: ${key} ${why}; geoedit refuses it rather than approximate it`, { file, key });
}
function badAdapter(file: string, msg: string, extra: Record<string, unknown> = {}): GeoEditError {
  return new GeoEditError('ERR_BAD_ADAPTER', `${file}: ${msg}`, { file, ...extra });
}

/** PEFT's pattern lookup (get_pattern_key): the first key k with re.match(`(.*\.)?(k)$`, name). */
export function patternValue(pattern: unknown, name: string): number | undefined {
  if (!pattern || typeof pattern !== 'object') return undefined;
  for (const [k, v] of Object.entries(pattern as Record<string, unknown>)) {
    let hit: boolean;
    try {
      hit = new RegExp(`^(?:.*\\.)?(?:${k})$`).test(name);
    } catch {
      hit = name === k || name.endsWith(`.${k}`);
    }
    if (hit && typeof v === 'number') return v;
  }
  return undefined;
}

const SKIP_NULLISH = (v: unknown): boolean => v === undefined || v === null || v === false;
const EMPTY = (v: unknown): boolean => SKIP_NULLISH(v) || (typeof v === 'object' && Object.keys(v as object).length === 0) || (Array.isArray(v) && v.length === 0);

/** Config checks: everything that would make tau differ from scale * B * A is refused. */
function checkConfig(cfg: Record<string, unknown>, file: string): void {
  const t = cfg.peft_type;
  if (t !== undefined && t !== 'LORA') throw unsupported(file, `peft_type ${describe(t)}`, 'is not a LoRA adapter');
  if (!SKIP_NULLISH(cfg.use_dora)) throw unsupported(file, 'use_dora', 'is true (DoRA rescales each column by a learned magnitude: the task vector is not s*B*A)');
  if (!SKIP_NULLISH(cfg.lora_bias)) throw unsupported(file, 'lora_bias', 'is true (the adapter adds a bias term besides s*B*A)');
  if (cfg.bias !== undefined && cfg.bias !== 'none') throw unsupported(file, `bias ${describe(cfg.bias)}`, "is not 'none' (trained bias vectors need the base biases)");
  if (!SKIP_NULLISH(cfg.use_qalora)) throw unsupported(file, 'use_qalora', 'is true (quantisation-aware LoRA on a quantised base)');
  if (!EMPTY(cfg.loftq_config) || cfg.init_lora_weights === 'loftq') throw unsupported(file, 'loftq_config', 'is set (LoftQ adapters compensate a quantised base: the base they apply to is not the original weights)');
  const init = cfg.init_lora_weights;
  if (typeof init === 'string' && /^(pissa|olora|corda)/i.test(init)) {
    throw unsupported(file, `init_lora_weights ${describe(init)}`, "means the adapter is relative to a residual base (the principal part was moved out of the base weights); convert it to a plain LoRA first (PEFT: save_pretrained with path_initial_model_for_weight_conversion)");
  }
  if (!EMPTY(cfg.quantization_config)) throw unsupported(file, 'quantization_config', 'is set (a quantised base)');
  if (!EMPTY(cfg.layer_replication)) throw unsupported(file, 'layer_replication', 'is set (layers are duplicated before the adapter applies)');
  if (!EMPTY(cfg.alora_invocation_tokens)) throw unsupported(file, 'alora_invocation_tokens', 'is set (activated LoRA applies only after invocation tokens)');
  if (!SKIP_NULLISH(cfg.use_bdlora) && !EMPTY(cfg.use_bdlora)) throw unsupported(file, 'use_bdlora', 'is set');
  if (!EMPTY(cfg.arrow_config)) throw unsupported(file, 'arrow_config', 'is set (Arrow routes between several LoRA experts)');
  if (!EMPTY(cfg.trainable_token_indices)) throw unsupported(file, 'trainable_token_indices', 'is set (trainable token rows are stored outside the LoRA factors)');
  if (!EMPTY(cfg.target_parameters)) throw unsupported(file, 'target_parameters', 'is set (LoRA on raw parameters, e.g. MoE experts)');
  if (typeof cfg.r !== 'number' || !(cfg.r > 0)) throw badAdapter(file, `expected a positive number for 'r' but received ${describe(cfg.r)}`, { key: 'r' });
  if (typeof cfg.lora_alpha !== 'number' || !Number.isFinite(cfg.lora_alpha)) throw badAdapter(file, `expected a number for 'lora_alpha' but received ${describe(cfg.lora_alpha)}`, { key: 'lora_alpha' });
}

const KEY_RE = /^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.(?!weight$|bias$)([A-Za-z0-9_-]+))?(?:\.(weight|bias))?$/;

/** Reads and checks a PEFT LoRA directory (only headers and the config are read). */
export function readPeftAdapter(dir: string): PeftAdapter {
  if (typeof dir !== 'string' || dir.length === 0) throw typeError(`Expected an adapter directory path but received ${describe(dir)}`);
  const configPath = path.join(dir, ADAPTER_CONFIG);
  const modelPath = path.join(dir, ADAPTER_MODEL);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new GeoEditError('ERR_NOT_FOUND', `${dir}: no such adapter directory`, { file: dir });
  if (!fs.existsSync(configPath)) throw new GeoEditError('ERR_NOT_FOUND', `${configPath}: missing (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors)`, { file: configPath });
  if (!fs.existsSync(modelPath)) {
    const bin = path.join(dir, 'adapter_model.bin');
    if (fs.existsSync(bin)) throw unsupported(bin, 'adapter_model.bin', 'is a pickle file; convert it to safetensors first');
    throw new GeoEditError('ERR_NOT_FOUND', `${modelPath}: missing`, { file: modelPath });
  }
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (e) {
    throw badAdapter(configPath, `not valid JSON (${(e as Error).message})`);
  }
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw badAdapter(configPath, 'expected a JSON object');
  checkConfig(config, configPath);
  const header = readSafetensorsHeaderSync(modelPath);
  const parts = new Map<string, { A?: SafetensorsTensorInfo; B?: SafetensorsTensorInfo; emb?: boolean }>();
  const extras: SafetensorsTensorInfo[] = [];
  let prefix = '';
  for (const t of header.tensors) {
    if (/\.lora_magnitude_vector(\.|$)/.test(t.name)) throw unsupported(modelPath, `tensor '${t.name}'`, 'is a DoRA magnitude vector');
    const m = KEY_RE.exec(t.name);
    if (!m) {
      extras.push(t);
      continue;
    }
    if (m[4] === 'bias') throw unsupported(modelPath, `tensor '${t.name}'`, 'is a LoRA bias (lora_bias)');
    const full = m[1]!;
    const kind = m[2]!;
    const p = parts.get(full) ?? {};
    const emb = kind.startsWith('lora_embedding');
    if (p.emb !== undefined && p.emb !== emb) throw badAdapter(modelPath, `module '${full}' mixes lora_A/B and lora_embedding_A/B`, { tensor: t.name });
    p.emb = emb;
    if (kind.endsWith('A')) {
      if (p.A) throw badAdapter(modelPath, `module '${full}' has two A factors (several adapter names in one file?)`, { tensor: t.name });
      p.A = t;
    } else {
      if (p.B) throw badAdapter(modelPath, `module '${full}' has two B factors (several adapter names in one file?)`, { tensor: t.name });
      p.B = t;
    }
    parts.set(full, p);
  }
  const modules = new Map<string, AdapterModule>();
  const rslora = config.use_rslora === true;
  for (const [full, p] of parts) {
    if (!p.A || !p.B) throw badAdapter(modelPath, `module '${full}' has ${p.A ? 'lora_A' : 'lora_B'} but no ${p.A ? 'lora_B' : 'lora_A'}`, { tensor: (p.A ?? p.B)!.name });
    for (const t of [p.A, p.B]) {
      if (!EDITABLE_ST_DTYPES[t.dtype]) throw unsupported(modelPath, `tensor '${t.name}' (${t.dtype})`, 'is not F32, F16 or BF16');
      if (t.shape.length !== 2) throw unsupported(modelPath, `tensor '${t.name}' [${t.shape.join(', ')}]`, 'is not a 2-D LoRA factor (convolution LoRA is not supported)');
    }
    const r = p.A.shape[0]!;
    if (p.B.shape[1] !== r) throw badAdapter(modelPath, `module '${full}': ${p.B.name} [${p.B.shape.join(', ')}] does not match the rank ${r} of ${p.A.name} [${p.A.shape.join(', ')}]`, { tensor: p.B.name });
    const bm = /^base_model\.model\./.exec(full);
    if (bm) prefix = bm[0];
    const name = bm ? full.slice(bm[0].length) : full;
    const rCfg = patternValue(config.rank_pattern, name) ?? (config.r as number);
    const alpha = patternValue(config.alpha_pattern, name) ?? (config.lora_alpha as number);
    if (rCfg !== r) {
      throw badAdapter(modelPath, `module '${name}' has rank ${r} in the file but ${rCfg} in ${ADAPTER_CONFIG} (r / rank_pattern)`, { tensor: p.A.name, key: 'rank_pattern' });
    }
    const scale = rslora ? alpha / Math.sqrt(r) : alpha / r;
    const rows = p.emb ? p.A.shape[1]! : p.B.shape[0]!;
    const cols = p.emb ? p.B.shape[0]! : p.A.shape[1]!;
    modules.set(name, { name, embedding: !!p.emb, A: p.A, B: p.B, r, alpha, rslora, scale, rows, cols });
  }
  if (modules.size === 0) throw badAdapter(modelPath, 'holds no LoRA factors (no lora_A / lora_B tensors)');
  return { dir, configPath, modelPath, config, header, modules, extras, fanInFanOut: config.fan_in_fan_out === true, prefix: prefix || 'base_model.model.' };
}

async function readFactor(ad: PeftAdapter, t: SafetensorsTensorInfo, allowNonFinite: boolean): Promise<Tensor> {
  const raw = await readTensor(ad.modelPath, t.name, ad.header);
  const d = EDITABLE_ST_DTYPES[raw.dtype]!;
  const data = raw.data as Float32Array | Uint16Array;
  // Non-finite factors are named here, by file, tensor and index.
  const f = d === 'f32' ? (data as Float32Array) : (native.convert(d, data, 'f32') as Float32Array);
  for (let i = 0; i < f.length && !allowNonFinite; i++) {
    if (!Number.isFinite(f[i]!)) {
      const c = t.shape[1]!;
      throw new GeoEditError('ERR_NON_FINITE', `${ad.modelPath}: tensor '${t.name}' holds ${f[i]} at [${Math.floor(i / c)}, ${i % c}]`, { file: ad.modelPath, tensor: t.name });
    }
  }
  return { dtype: 'f32', shape: [...raw.shape], data: f };
}

/** The factors of one module of an adapter, ready for lib/lora-math. */
export async function loadModuleFactors(ad: PeftAdapter, name: string, opts: { allowNonFinite?: boolean } = {}): Promise<LoraFactors> {
  const m = ad.modules.get(name);
  if (!m) throw new GeoEditError('ERR_MISSING_TENSOR', `${ad.modelPath}: no LoRA module '${name}'`, { file: ad.modelPath, module: name });
  const anf = opts.allowNonFinite === true;
  const [A, B] = await Promise.all([readFactor(ad, m.A, anf), readFactor(ad, m.B, anf)]);
  return { A, B, scale: m.scale, embedding: m.embedding };
}

export interface AdapterModuleReport {
  name: string;
  rows: number;
  cols: number;
  /** Rank and scale per side (0 / null: the module is absent on that side, a zero task vector). */
  rOld: number;
  rNew: number;
  scaleOld: number | null;
  scaleNew: number | null;
  embedding: boolean;
  counts: RegionCounts;
  threshold: number;
  energy: { new: number; old: number; applied: number };
  /** Mean cos over rows where both sides are non-zero. */
  meanCos: number;
  /** Rows where tau_old or tau_new is zero (cos defined as 0): every row of a one-sided module. */
  zeroRows: number;
  /** Angle between tau_old and tau_new per row, 5° bins over [0°, 180°] (as in the checkpoint manifest). */
  angleHistogram: number[];
  /** applied / new: share of the new update's energy kept. */
  energyKept: number | null;
  /** Output adapter rank (adapter output only). */
  rOut?: number;
  /** Base tensor the module was merged into (full output only). */
  baseTensor?: string;
  transposed?: boolean;
}

export interface AdapterReport {
  old: string;
  new: string;
  options: Record<string, unknown>;
  /** The resolved edit parameters (defaults filled in), as in the checkpoint manifest. */
  parameters: Record<string, unknown>;
  modules: AdapterModuleReport[];
  totals: { modules: number; rows: number; counts: RegionCounts; energy: { new: number; old: number; applied: number }; energyKept: number | null };
  /** Things worth a look: one-sided modules, dropped tensors. */
  warnings: string[];
  /** Non-LoRA tensors and what was done with them. */
  extras: Array<{ tensor: string; from: 'new' | 'old'; action: 'copied' | 'dropped' | 'replaced-in-base' | 'added-to-base' }>;
}

export interface AdapterPaths {
  old: string;
  new: string;
  /** Output directory: the PEFT adapter, or (full) model.safetensors; geoedit-manifest.json in both. */
  out?: string;
  /** Base checkpoint for outFormat 'full': a .safetensors file, or a directory (model.safetensors or index + shards). */
  base?: string;
}

export interface EditAdaptersOptions extends LoraOptions {
  /** 'adapter' (the default when density is 1 and no base is given) or 'full' (needs `base`; the default when a base is given or density < 1). */
  outFormat?: 'adapter' | 'full';
  /** Replace an existing output directory. Default false: ERR_OUTPUT_EXISTS. */
  force?: boolean;
  /** Keep per-row statistics in the report (cos, region, coefficients per module). */
  perRow?: boolean;
  /** Rows per block when merging into full weights (default: ~16 MiB of base per block). */
  blockRows?: number;
  /** Full output from a base directory: copy its other files (config.json, tokenizer, ...). Default true. */
  copyFiles?: boolean;
  /** Adapter output: keep a side's block of B' even when all its coefficients are 0 (rank always r_new + r_old). Default false. */
  keepZeroBlocks?: boolean;
}

export interface AdapterManifest extends AdapterReport {
  tool: 'geoedit';
  kind: 'edit-adapters';
  createdAt: string;
  versions: { geoedit: string; node: string; napi: string; simd: string; platform: string };
  outFormat: 'adapter' | 'full';
  timings: { totalMs: number };
  inputs: Array<{ role: 'old' | 'new' | 'base'; path: string; sha256: string; bytes: number }>;
  outputs: Array<{ path: string; sha256: string; bytes: number }>;
  /** Per-row statistics, when perRow was asked for. */
  perRow?: Record<string, LoraStats>;
}

const EDIT_ADAPTER_KEYS = new Set(['outFormat', 'force', 'perRow', 'blockRows', 'keepZeroBlocks', 'copyFiles']);

function splitOptions(options: EditAdaptersOptions | undefined): { lora: LoraOptions; own: EditAdaptersOptions } {
  const o = (options ?? {}) as Record<string, unknown>;
  if (typeof o !== 'object') throw typeError(`Expected an options object but received ${describe(options)}`);
  const lora: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!EDIT_ADAPTER_KEYS.has(k)) lora[k] = v;
  return { lora: lora as LoraOptions, own: o as EditAdaptersOptions };
}

function sha256File(p: string): { sha256: string; bytes: number } {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(p, 'r');
  const buf = Buffer.alloc(1 << 20);
  let bytes = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      bytes += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { sha256: h.digest('hex'), bytes };
}

interface ModulePlan {
  name: string;
  o?: AdapterModule;
  n?: AdapterModule;
}

function planModules(oa: PeftAdapter, na: PeftAdapter): ModulePlan[] {
  const names = [...new Set([...oa.modules.keys(), ...na.modules.keys()])].sort();
  return names.map((name) => {
    const o = oa.modules.get(name), n = na.modules.get(name);
    if (o && n) {
      if (o.rows !== n.rows || o.cols !== n.cols || o.embedding !== n.embedding) {
        throw new GeoEditError('ERR_SHAPE_MISMATCH', `module '${name}': the old adapter (${oa.modelPath}) gives a ${o.embedding ? 'Embedding' : 'Linear'} delta [${o.rows}, ${o.cols}] but the new adapter (${na.modelPath}) gives a ${n.embedding ? 'Embedding' : 'Linear'} delta [${n.rows}, ${n.cols}]: were they trained from the same base?`, { module: name });
      }
    }
    return { name, ...(o ? { o } : {}), ...(n ? { n } : {}) };
  });
}

function moduleReport(mp: ModulePlan, st: LoraStats): AdapterModuleReport {
  const sum = summarizeRows(st, st.rows);
  const m = (mp.n ?? mp.o)!;
  return {
    name: mp.name, rows: st.rows, cols: st.cols, rOld: mp.o?.r ?? 0, rNew: mp.n?.r ?? 0,
    scaleOld: mp.o ? mp.o.scale : null, scaleNew: mp.n ? mp.n.scale : null, embedding: m.embedding,
    counts: { ...st.counts }, threshold: st.threshold, energy: { ...st.energy }, meanCos: sum.meanCosNonZero,
    zeroRows: sum.zeroRows, angleHistogram: sum.angleHistogram, energyKept: st.energy.new > 0 ? st.energy.applied / st.energy.new : null,
  };
}

function warningsOf(mods: AdapterModuleReport[], extras: AdapterReport['extras']): string[] {
  const w: string[] = [];
  for (const m of mods) {
    if (m.rOld === 0) w.push(`module '${m.name}' is only in the new adapter: a zero old task vector, every row orthogonal`);
    if (m.rNew === 0) w.push(`module '${m.name}' is only in the old adapter: a zero new task vector, every row orthogonal`);
  }
  for (const e of extras) if (e.action === 'dropped') w.push(`non-LoRA tensor '${e.tensor}' of the old adapter is dropped (the new adapter's non-LoRA tensors are kept)`);
  return w;
}

function parametersOf(lora: LoraOptions): Record<string, unknown> {
  const o = { ...lora } as Record<string, unknown>;
  delete o.coefficients;
  const p = resolveParams(o as EditOptions) as unknown as Record<string, unknown>;
  return { ...p, outDtype: (lora as { outDtype?: DType }).outDtype ?? null, threads: (lora as { threads?: number }).threads ?? 0 };
}

function totalsOf(mods: AdapterModuleReport[]): AdapterReport['totals'] {
  const t = { modules: mods.length, rows: 0, counts: { orthogonal: 0, synergy: 0, conflict: 0 }, energy: { new: 0, old: 0, applied: 0 }, energyKept: null as number | null };
  for (const m of mods) {
    t.rows += m.rows;
    t.counts.orthogonal += m.counts.orthogonal;
    t.counts.synergy += m.counts.synergy;
    t.counts.conflict += m.counts.conflict;
    t.energy.new += m.energy.new;
    t.energy.old += m.energy.old;
    t.energy.applied += m.energy.applied;
  }
  t.energyKept = t.energy.new > 0 ? t.energy.applied / t.energy.new : null;
  return t;
}

async function prepareModule(mp: ModulePlan, oa: PeftAdapter, na: PeftAdapter, lora: LoraOptions): Promise<PreparedLora> {
  const anf = { allowNonFinite: (lora as { allowNonFinite?: boolean }).allowNonFinite === true };
  const [o, n] = await Promise.all([mp.o ? loadModuleFactors(oa, mp.name, anf) : null, mp.n ? loadModuleFactors(na, mp.name, anf) : null]);
  return prepareLora({ old: o, new: n }, lora, `module '${mp.name}'`);
}

/**
 * Geometry of two adapters, module by module, in factor space (density 1): regions, coefficients
 * and energies per module, without writing anything.
 */
export async function analyzeAdapters(paths: { old: string; new: string }, options?: LoraOptions & { perRow?: boolean }): Promise<AdapterReport & { perRow?: Record<string, LoraStats> }> {
  if (!paths || typeof paths !== 'object') throw typeError(`Expected { old, new } adapter directories but received ${describe(paths)}`);
  const { lora, own } = splitOptions(options as EditAdaptersOptions);
  const oa = readPeftAdapter(paths.old), na = readPeftAdapter(paths.new);
  const plans = planModules(oa, na);
  const mods: AdapterModuleReport[] = [];
  const perRow: Record<string, LoraStats> = {};
  for (const mp of plans) {
    const prep = await prepareModule(mp, oa, na, lora);
    const st = await loraGeometry(prep, mp.name);
    mods.push(moduleReport(mp, st));
    if (own.perRow) perRow[mp.name] = st;
  }
  const extras: AdapterReport['extras'] = na.extras.map((t) => ({ tensor: t.name, from: 'new' as const, action: 'copied' as const }));
  for (const t of oa.extras) if (!na.extras.some((x) => x.name === t.name)) extras.push({ tensor: t.name, from: 'old', action: 'dropped' });
  const rep: AdapterReport & { perRow?: Record<string, LoraStats> } = {
    old: paths.old, new: paths.new, options: { ...lora }, parameters: parametersOf(lora), modules: mods, totals: totalsOf(mods),
    extras, warnings: warningsOf(mods, extras),
  };
  if (own.perRow) rep.perRow = perRow;
  return rep;
}

function mostCommon(xs: number[]): number {
  const c = new Map<number, number>();
  for (const x of xs) c.set(x, (c.get(x) ?? 0) + 1);
  let best = xs[0]!, bc = -1;
  for (const [x, k] of c) if (k > bc || (k === bc && x > best)) { best = x; bc = k; }
  return best;
}

/** PEFT adapter_config.json for the edited adapter: scale 1 per module (lora_alpha = r'). */
function outputConfig(oa: PeftAdapter, na: PeftAdapter, ranks: Map<string, number>): Record<string, unknown> {
  const cfg: Record<string, unknown> = { ...na.config };
  const r = mostCommon([...ranks.values()]);
  const rank_pattern: Record<string, number> = {}, alpha_pattern: Record<string, number> = {};
  for (const [name, rr] of ranks) if (rr !== r) { rank_pattern[name] = rr; alpha_pattern[name] = rr; }
  cfg.r = r;
  cfg.lora_alpha = r;
  cfg.use_rslora = false;
  cfg.rank_pattern = rank_pattern;
  cfg.alpha_pattern = alpha_pattern;
  cfg.use_dora = false;
  const to = oa.config.target_modules, tn = na.config.target_modules;
  if (Array.isArray(to) && Array.isArray(tn)) cfg.target_modules = [...new Set([...tn, ...to])];
  else cfg.target_modules = [...ranks.keys()];
  cfg.inference_mode = true;
  return cfg;
}

function checkOut(out: string | undefined, overwrite: boolean, what: string): string {
  if (typeof out !== 'string' || out.length === 0) throw typeError(`Expected an output path for ${what} but received ${describe(out)}`);
  if (fs.existsSync(out) && !overwrite) throw new GeoEditError('ERR_OUTPUT_EXISTS', `${out} already exists (pass force to replace it)`, { file: out });
  return out;
}

/** Moves a finished temp directory into place (whole or not at all). */
function commitDir(tmp: string, out: string, overwrite: boolean): void {
  if (fs.existsSync(out)) {
    if (!overwrite) throw new GeoEditError('ERR_OUTPUT_EXISTS', `${out} already exists`, { file: out });
    const old = tempPathBeside(out);
    fs.renameSync(out, old);
    fs.renameSync(tmp, out);
    fs.rmSync(old, { recursive: true, force: true });
  } else {
    fs.renameSync(tmp, out);
  }
}

/**
 * Edit two PEFT adapters trained from the same base. outFormat 'adapter' writes a PEFT directory
 * whose modules have rank r_new + r_old and compute exactly the GeoEdit edit (SPEC §4); 'full'
 * merges the edit into the base checkpoint (`paths.base`: a .safetensors file, a directory, or index +
 * shards) and writes out/model.safetensors. Resolves to the manifest (also written as
 * out/geoedit-manifest.json).
 */
export async function editAdapters(paths: AdapterPaths, options?: EditAdaptersOptions): Promise<AdapterManifest> {
  if (!paths || typeof paths !== 'object') throw typeError(`Expected { old, new, out, base? } but received ${describe(paths)}`);
  const t0 = Date.now();
  const { lora, own } = splitOptions(options);
  const density = (lora as { density?: number }).density ?? 1;
  const fmt = own.outFormat ?? (density < 1 || paths.base !== undefined ? 'full' : 'adapter');
  if (fmt !== 'adapter' && fmt !== 'full') throw new GeoEditError('ERR_INVALID_OPTION', `Expected 'adapter' or 'full' for option 'outFormat' but received ${describe(fmt)}`, { option: 'outFormat' });
  if (fmt === 'adapter' && density < 1) {
    throw new GeoEditError('ERR_UNSUPPORTED', `density ${density} < 1 cannot be written as an adapter: trimming keeps a different set of entries in every row, which no rank-(r_new + r_old) product B'A' can express; use outFormat 'full' with a base checkpoint`, { option: 'density' });
  }
  if (fmt === 'full' && !paths.base) throw new GeoEditError('ERR_INVALID_OPTION', `outFormat 'full' needs the base checkpoint (base: a .safetensors file)`, { option: 'base' });
  if (fmt === 'adapter' && paths.base !== undefined) throw new GeoEditError('ERR_INVALID_OPTION', `a base checkpoint is only used with outFormat 'full'`, { option: 'base' });
  const overwrite = own.force === true;
  const out = checkOut(paths.out, overwrite, 'out');
  // Validate the options once before any reading.
  checkAdapterOptions(lora, 'editAdapters');
  const oa = readPeftAdapter(paths.old), na = readPeftAdapter(paths.new);
  if (oa.fanInFanOut !== na.fanInFanOut) {
    throw badAdapter(na.configPath, `fan_in_fan_out is ${na.fanInFanOut} but ${oa.configPath} says ${oa.fanInFanOut}: the adapters do not describe the same base layout`, { key: 'fan_in_fan_out' });
  }
  const plans = planModules(oa, na);
  const inputs: AdapterManifest['inputs'] = [
    { role: 'old', path: oa.modelPath, ...sha256File(oa.modelPath) },
    { role: 'new', path: na.modelPath, ...sha256File(na.modelPath) },
  ];
  const perRow: Record<string, LoraStats> = {};
  const mods: AdapterModuleReport[] = [];
  const extras: AdapterReport['extras'] = [];
  let outputs: AdapterManifest['outputs'];
  if (fmt === 'adapter') {
    const tensors: TensorToWrite[] = [];
    const ranks = new Map<string, number>();
    const omitted: string[] = [];
    for (const mp of plans) {
      const prep = await prepareModule(mp, oa, na, lora);
      const st = await loraGeometry(prep, mp.name);
      const ed = buildEditedAdapter(prep, st.coefNew, st.coefOld, { keepZeroBlocks: own.keepZeroBlocks === true });
      const key = `${na.prefix}${mp.name}`;
      if (ed.rank === 0) {
        // Every coefficient is 0: the edit leaves this module's weights unchanged. PEFT has no
        // rank-0 module, so it is left out of the adapter (a LoRA layer PEFT still creates for a
        // matching target starts with B = 0, which is the same zero delta).
        omitted.push(mp.name);
      } else if (ed.embedding) {
        tensors.push({ name: `${key}.lora_embedding_A`, dtype: 'F32', shape: ed.A.shape, data: ed.A.data });
        tensors.push({ name: `${key}.lora_embedding_B`, dtype: 'F32', shape: ed.B.shape, data: ed.B.data });
      } else {
        tensors.push({ name: `${key}.lora_A.weight`, dtype: 'F32', shape: ed.A.shape, data: ed.A.data });
        tensors.push({ name: `${key}.lora_B.weight`, dtype: 'F32', shape: ed.B.shape, data: ed.B.data });
      }
      if (ed.rank > 0) ranks.set(mp.name, ed.rank);
      const rep = moduleReport(mp, st);
      rep.rOut = ed.rank;
      mods.push(rep);
      if (own.perRow) perRow[mp.name] = st;
    }
    // Non-LoRA tensors (modules_to_save heads): the new adapter's are kept, the old one's dropped.
    for (const t of na.extras) {
      const raw = await readTensor(na.modelPath, t.name, na.header);
      tensors.push({ name: t.name, dtype: raw.dtype, shape: raw.shape, data: raw.data });
      extras.push({ tensor: t.name, from: 'new', action: 'copied' });
    }
    for (const t of oa.extras) if (!na.extras.some((x) => x.name === t.name)) extras.push({ tensor: t.name, from: 'old', action: 'dropped' });
    if (ranks.size === 0) {
      throw new GeoEditError('ERR_UNSUPPORTED', `every coefficient of every module is 0 with these options: the edit is the base model itself, and a PEFT adapter cannot have no LoRA module`, { option: 'scale' });
    }
    const cfg = outputConfig(oa, na, ranks);
    return inTempDir(out, async (tmp) => {
      await writeSafetensors(path.join(tmp, ADAPTER_MODEL), tensors, { format: 'pt' });
      fs.writeFileSync(path.join(tmp, ADAPTER_CONFIG), JSON.stringify(cfg, null, 2) + '\n');
      outputs = [
        { path: path.join(out, ADAPTER_MODEL), ...sha256File(path.join(tmp, ADAPTER_MODEL)) },
        { path: path.join(out, ADAPTER_CONFIG), ...sha256File(path.join(tmp, ADAPTER_CONFIG)) },
      ];
      const manifest = makeManifest(t0, paths, lora, mods, extras, fmt, inputs, outputs, own.perRow ? perRow : undefined);
      for (const name of omitted) manifest.warnings.push(`module '${name}': every coefficient is 0, so the edit leaves it unchanged; it is left out of the adapter`);
      fs.writeFileSync(path.join(tmp, LORA_MANIFEST), JSON.stringify(manifestJson(manifest), null, 2) + '\n');
      commitDir(tmp, out, overwrite);
      return manifest;
    });
  }
  // Full weights: out/model.safetensors + out/geoedit-manifest.json, written in a temp directory.
  const base = openCheckpoint(paths.base!, 'base');
  for (const f of base.files) inputs.push({ role: 'base', path: f.path, ...sha256File(f.path) });
  return inTempDir(out, async (tmp) => {
    const model = path.join(tmp, 'model.safetensors');
    const res = await mergeIntoBase(base, model, plans, oa, na, lora, own);
    mods.push(...res.mods);
    extras.push(...res.extras);
    Object.assign(perRow, res.perRow);
    outputs = [{ path: path.join(out, 'model.safetensors'), ...sha256File(model) }];
    const manifest = makeManifest(t0, paths, lora, mods, extras, fmt, inputs, outputs, own.perRow ? perRow : undefined);
    fs.writeFileSync(path.join(tmp, LORA_MANIFEST), JSON.stringify(manifestJson(manifest), null, 2) + '\n');
    // As the checkpoint pipeline does: the base directory's other files (config, tokenizer, ...) come along.
    if (own.copyFiles !== false && base.kind !== 'file') {
      const skip = new Set([...base.files.map((f) => f.path), base.index ?? '']);
      for (const n of fs.readdirSync(base.dir)) {
        const src = path.join(base.dir, n);
        if (skip.has(src) || n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json') || n === LORA_MANIFEST || n.startsWith('.')) continue;
        if (!fs.statSync(src, { throwIfNoEntry: false })?.isFile()) continue;
        fs.copyFileSync(src, path.join(tmp, n));
      }
    }
    commitDir(tmp, out, overwrite);
    return manifest;
  });
}

/**
 * Runs work(tmp) in a fresh temporary directory beside out. On an error, SIGINT or SIGTERM the
 * directory is removed (the signal is then re-raised), so nothing half-written is left behind.
 */
async function inTempDir<T>(out: string, work: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = tempPathBeside(out);
  const remove = () => { try { fs.rmSync(tmp, { recursive: true, force: true }); } catch { /* best effort */ } };
  const onSignal = (sig: NodeJS.Signals) => {
    remove();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.kill(process.pid, sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    fs.mkdirSync(tmp, { recursive: false });
    return await work(tmp);
  } catch (e) {
    remove();
    throw e;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** The adapter options, checked from the option table before any I/O (no tensor needed). */
function checkAdapterOptions(lora: LoraOptions, what: string): void {
  const o = { ...lora } as Record<string, unknown>;
  delete o.coefficients;
  if (o.strategy === 'custom') throw new GeoEditError('ERR_UNSUPPORTED', `strategy 'custom' takes per-row coefficients for one tensor; for adapters use editLora per module`, { option: 'strategy' });
  checkLoraOptions(o, what);
}

function makeManifest(
  t0: number, paths: AdapterPaths, lora: LoraOptions, mods: AdapterModuleReport[], extras: AdapterReport['extras'], fmt: 'adapter' | 'full',
  inputs: AdapterManifest['inputs'], outputs: AdapterManifest['outputs'], perRow?: Record<string, LoraStats>,
): AdapterManifest {
  const m: AdapterManifest = {
    tool: 'geoedit', kind: 'edit-adapters', createdAt: new Date().toISOString(),
    versions: versionsBlock(),
    outFormat: fmt, timings: { totalMs: Date.now() - t0 },
    old: paths.old, new: paths.new, options: { ...lora }, parameters: parametersOf(lora), modules: mods, totals: totalsOf(mods), extras,
    warnings: warningsOf(mods, extras), inputs, outputs,
  };
  if (perRow) m.perRow = perRow;
  return m;
}

function manifestJson(m: AdapterManifest): unknown {
  const { perRow, ...rest } = m;
  void perRow;
  return rest;
}

/** Resolves a module to its base tensor: `<module>.weight`, else the longest suffix of the path that names one. */
function baseTensorFor(name: string, byName: Map<string, CheckpointTensor>): CheckpointTensor | undefined {
  const parts = name.split('.');
  for (let i = 0; i < parts.length; i++) {
    const t = byName.get(`${parts.slice(i).join('.')}.weight`);
    if (t) return t;
  }
  return undefined;
}

async function readRange(fd: fs.promises.FileHandle, pos: number, len: number, file: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fd.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) throw new GeoEditError('ERR_BAD_SAFETENSORS', `${file}: unexpected end of file`, { file });
    got += bytesRead;
  }
  return buf;
}

function typed(buf: Buffer, dtype: DType): Float32Array | Uint16Array {
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  return dtype === 'f32' ? new Float32Array(ab) : new Uint16Array(ab);
}

async function mergeIntoBase(
  ck: ReturnType<typeof openCheckpoint>, out: string, plans: ModulePlan[], oa: PeftAdapter, na: PeftAdapter, lora: LoraOptions,
  own: EditAdaptersOptions,
): Promise<{ mods: AdapterModuleReport[]; extras: AdapterReport['extras']; perRow: Record<string, LoraStats> }> {
  const basePath = ck.path;
  const byName: Map<string, CheckpointTensor> = ck.byName;
  const density = (lora as { density?: number }).density ?? 1;
  const outDtypeOpt = (lora as { outDtype?: DType }).outDtype;
  // Map modules to base tensors and check shapes before writing anything.
  const jobs = new Map<string, { mp: ModulePlan; transposed: boolean }>();
  const bh = { tensors: ck.tensors, metadata: ck.metadata };
  for (const mp of plans) {
    const m = (mp.n ?? mp.o)!;
    const t = baseTensorFor(mp.name, byName);
    if (!t) throw new GeoEditError('ERR_MISSING_TENSOR', `${basePath}: no tensor for LoRA module '${mp.name}' (looked for '${mp.name}.weight' and its suffixes)`, { file: basePath, module: mp.name });
    if (!EDITABLE_ST_DTYPES[t.dtype]) throw new GeoEditError('ERR_UNSUPPORTED', `${basePath}: tensor '${t.name}' is ${t.dtype}; only F32, F16 and BF16 can be edited`, { file: basePath, tensor: t.name });
    const s = t.shape;
    const direct = s.length === 2 && s[0] === m.rows && s[1] === m.cols;
    const trans = s.length === 2 && s[0] === m.cols && s[1] === m.rows;
    let transposed: boolean;
    if (direct && trans) transposed = !m.embedding && oa.fanInFanOut; // square: the config decides
    else if (direct) transposed = false;
    else if (trans && !m.embedding && oa.fanInFanOut) transposed = true;
    else {
      throw new GeoEditError('ERR_SHAPE_MISMATCH', `${basePath}: tensor '${t.name}' is [${s.join(', ')}] but LoRA module '${mp.name}' gives a delta [${m.rows}, ${m.cols}]${oa.fanInFanOut ? ` (or [${m.cols}, ${m.rows}] with fan_in_fan_out)` : ''}`, { file: basePath, tensor: t.name, module: mp.name });
    }
    if (jobs.has(t.name)) throw new GeoEditError('ERR_BAD_ADAPTER', `${basePath}: tensor '${t.name}' matches two LoRA modules ('${jobs.get(t.name)!.mp.name}' and '${mp.name}')`, { tensor: t.name });
    jobs.set(t.name, { mp, transposed });
  }
  // Extras from the new adapter: replace a same-shaped base tensor, else add it.
  const extraOut = new Map<string, { info: SafetensorsTensorInfo; baseName?: string }>();
  const extras: AdapterReport['extras'] = [];
  for (const t of na.extras) {
    const rel = t.name.startsWith(na.prefix) ? t.name.slice(na.prefix.length) : t.name;
    const comps = rel.split('.');
    let b: CheckpointTensor | undefined;
    for (let i = 0; i < comps.length - 1 && !b; i++) b = byName.get(comps.slice(i).join('.'));
    if (b && b.shape.length === t.shape.length && b.shape.every((v, i) => v === t.shape[i]) && !jobs.has(b.name)) {
      extraOut.set(b.name, { info: t, baseName: b.name });
      extras.push({ tensor: t.name, from: 'new', action: 'replaced-in-base' });
    } else {
      extraOut.set(rel, { info: t });
      extras.push({ tensor: t.name, from: 'new', action: 'added-to-base' });
    }
  }
  for (const t of oa.extras) if (!na.extras.some((x) => x.name === t.name)) extras.push({ tensor: t.name, from: 'old', action: 'dropped' });
  // Output layout: the base tensors in order (edited ones possibly in outDtype), then added extras.
  const layout: Array<{ name: string; dtype: string; shape: number[] }> = [];
  for (const t of bh.tensors) {
    const j = jobs.get(t.name);
    const ex = extraOut.get(t.name);
    if (ex) layout.push({ name: t.name, dtype: ex.info.dtype, shape: ex.info.shape });
    else layout.push({ name: t.name, dtype: j && outDtypeOpt ? (outDtypeOpt === 'f32' ? 'F32' : outDtypeOpt === 'f16' ? 'F16' : 'BF16') : t.dtype, shape: t.shape });
  }
  for (const [name, ex] of extraOut) if (!ex.baseName) layout.push({ name, dtype: ex.info.dtype, shape: ex.info.shape });
  const plan = planSafetensors(layout as never, bh.metadata);
  const mods: AdapterModuleReport[] = [];
  const perRow: Record<string, LoraStats> = {};
  const fds = new Map<string, fs.promises.FileHandle>();
  const fdFor = async (file: string): Promise<fs.promises.FileHandle> => {
    let f = fds.get(file);
    if (!f) { f = await fs.promises.open(file, 'r'); fds.set(file, f); }
    return f;
  };
  const outFd = await fs.promises.open(out, 'wx');
  try {
    await outFd.write(plan.header, 0, plan.header.length, 0);
    let pos = plan.dataOffset;
    const write = async (b: Uint8Array): Promise<void> => {
      let done = 0;
      while (done < b.length) {
        const { bytesWritten } = await outFd.write(b, done, b.length - done, pos + done);
        done += bytesWritten;
      }
      pos += b.length;
    };
    for (const e of plan.entries) {
      const bt = byName.get(e.name);
      const ex = extraOut.get(e.name);
      const job = jobs.get(e.name);
      if (ex) {
        const raw = await readTensor(na.modelPath, ex.info.name, na.header);
        await write(new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength));
        continue;
      }
      if (!job) {
        // Copied byte for byte, in blocks.
        const len = bt!.end - bt!.begin;
        for (let off = 0; off < len; off += 64 << 20) await write(await readRange(await fdFor(bt!.file), bt!.begin + off, Math.min(64 << 20, len - off), bt!.file));
        continue;
      }
      const { mp, transposed } = job;
      const prep = await prepareModule(mp, oa, na, lora);
      const bdt = EDITABLE_ST_DTYPES[bt!.dtype]!;
      const odt: DType = outDtypeOpt ?? bdt;
      const storedRows = bt!.shape[0]!, storedCols = bt!.shape[1]!;
      const rowBytes = storedCols * ST_DTYPE_SIZE[bt!.dtype];
      let st: LoraStats | undefined;
      if (density === 1) {
        st = await loraGeometry(prep, mp.name);
        const blk = own.blockRows ?? Math.max(1, Math.floor((16 << 20) / Math.max(1, rowBytes)));
        for (let s0 = 0; s0 < storedRows; s0 += blk) {
          const s1 = Math.min(storedRows, s0 + blk);
          const buf = await readRange(await fdFor(bt!.file), bt!.begin + s0 * rowBytes, (s1 - s0) * rowBytes, bt!.file);
          const o = await mergeLoraRows(prep, st.coefNew, st.coefOld, transposed, { dtype: bdt, data: typed(buf, bdt) }, s0, s1, odt, e.name);
          await write(new Uint8Array(o.buffer, o.byteOffset, o.byteLength));
        }
      } else {
        // density < 1: materialised rows, edited by the dense core (the whole tensor when transposed).
        const blk = transposed ? storedRows : (own.blockRows ?? Math.max(1, Math.floor((16 << 20) / Math.max(1, rowBytes))));
        const parts: Array<{ region: Uint8Array; cos: Float64Array; coefNew: Float32Array; coefOld: Float32Array; deltaSq: Float64Array; na: Float64Array; nb: Float64Array }> = [];
        for (let s0 = 0; s0 < storedRows; s0 += blk) {
          const s1 = Math.min(storedRows, s0 + blk);
          const buf = await readRange(await fdFor(bt!.file), bt!.begin + s0 * rowBytes, (s1 - s0) * rowBytes, bt!.file);
          const d = await denseLoraRows(prep, transposed, { dtype: bdt, data: typed(buf, bdt) }, s0, s1, odt, e.name);
          await write(new Uint8Array(d.out.buffer, d.out.byteOffset, d.out.byteLength));
          parts.push(d.stats);
        }
        st = concatStats(prep, parts);
      }
      const rep = moduleReport(mp, st);
      rep.baseTensor = e.name;
      rep.transposed = transposed;
      mods.push(rep);
      if (own.perRow) perRow[mp.name] = st;
    }
  } finally {
    await outFd.close().catch(() => undefined);
    for (const f of fds.values()) await f.close().catch(() => undefined);
  }
  return { mods, extras, perRow };
}

function concatStats(prep: PreparedLora, parts: Array<{ region: Uint8Array; cos: Float64Array; coefNew: Float32Array; coefOld: Float32Array; deltaSq: Float64Array; na: Float64Array; nb: Float64Array }>): LoraStats {
  const m = prep.rows;
  const cat = <T extends Float64Array | Float32Array | Uint8Array>(C: new (n: number) => T, get: (p: (typeof parts)[number]) => T): T => {
    const out = new C(m);
    let o = 0;
    for (const p of parts) { out.set(get(p) as never, o); o += get(p).length; }
    return out;
  };
  const cos = cat(Float64Array, (p) => p.cos), region = cat(Uint8Array, (p) => p.region);
  const na = cat(Float64Array, (p) => p.na), nb = cat(Float64Array, (p) => p.nb), deltaSq = cat(Float64Array, (p) => p.deltaSq);
  const sum = summarizeRows({ cos, region, na, nb, deltaSq }, m);
  const dot = new Float64Array(m);
  for (let i = 0; i < m; i++) dot[i] = cos[i]! * Math.sqrt(na[i]! * nb[i]!);
  return {
    rows: m, cols: prep.cols, cos, region, counts: sum.counts, threshold: threshold(prep.params, prep.cols),
    coefNew: cat(Float32Array, (q) => q.coefNew), coefOld: cat(Float32Array, (q) => q.coefOld), energy: sum.energy, dot, na, nb,
  };
}
