// PEFT LoRA adapter directories (adapter_config.json + adapter_model.safetensors): read and check
// them (everything that would make tau differ from scale * B * A is refused), and load a module's
// factors.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError, describe, typeError } from '../errors';
import { native } from '../native';
import { readSafetensorsHeaderSync, readTensor, EDITABLE_ST_DTYPES, type SafetensorsHeader, type SafetensorsTensorInfo } from '../safetensors';
import type { LoraFactors } from '../lora-math';
import { fileIdOf, type FileId } from '../job/inputs';
import { codePointsOf, compilePatternKey, PatternError, type PatternKeyMatcher } from './pyre';
import type { Tensor } from '../types';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_MODEL = 'adapter_model.safetensors';

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
  /** adapter_model.safetensors' device and inode when its header was read. */
  id: FileId;
  /** Set by a job for its run: the factors are read through this descriptor of modelPath (checked against id). */
  fd?: number;
}

function unsupported(file: string, key: string, why: string): GeoEditError {
  return new GeoEditError('ERR_UNSUPPORTED', `${file}: ${key} ${why}; geoedit refuses it rather than approximate it`, { file, key });
}
export function badAdapter(file: string, msg: string, extra: Record<string, unknown> = {}): GeoEditError {
  return new GeoEditError('ERR_BAD_ADAPTER', `${file}: ${msg}`, { file, ...extra });
}

const compiledPatterns = new WeakMap<object, Array<{ m: PatternKeyMatcher; v: number }>>();

/**
 * A rank_pattern / alpha_pattern object, checked and compiled once (lib/lora/pyre.ts: PEFT's
 * Python-regex match in linear time). Every key is compiled, also those after the one a module
 * matches: a key outside the supported subset, over the caps, or with a value that is not a number
 * (a positive integer for rank_pattern) is ERR_BAD_ADAPTER naming the file and the key.
 */
function compiledPattern(pattern: object, file: string, option: string): Array<{ m: PatternKeyMatcher; v: number }> {
  let c = compiledPatterns.get(pattern);
  if (c) return c;
  if (Array.isArray(pattern)) throw badAdapter(file, `expected an object (module pattern -> value) for '${option}' but received an array`, { key: option });
  c = [];
  for (const [k, v] of Object.entries(pattern as Record<string, unknown>)) {
    const ok = option === 'rank_pattern' ? typeof v === 'number' && Number.isInteger(v) && v > 0 : typeof v === 'number' && Number.isFinite(v);
    if (!ok) throw badAdapter(file, `${option} key ${JSON.stringify(k)} has the value ${describe(v)}; expected ${option === 'rank_pattern' ? 'a positive integer' : 'a finite number'}`, { key: option, pattern: k });
    try {
      c.push({ m: compilePatternKey(k), v: v as number });
    } catch (e) {
      if (!(e instanceof PatternError)) throw e;
      throw badAdapter(file, `${option} key ${JSON.stringify(k)} is not a regular expression geoedit matches (${e.message}); PEFT matches these keys as Python regular expressions, and geoedit refuses what it cannot match exactly and in linear time (docs/adapters.md)`, { key: option, pattern: k });
    }
  }
  compiledPatterns.set(pattern, c);
  return c;
}

/**
 * PEFT's pattern lookup (get_pattern_key): the value of the first key k (in the config's order)
 * with `re.match(rf"(.*\.)?({k})$", name)`. `file` / `option` name the config in errors.
 */
export function patternValue(pattern: unknown, name: string, file: string = ADAPTER_CONFIG, option = 'rank_pattern'): number | undefined {
  if (!pattern || typeof pattern !== 'object') return undefined;
  const compiled = compiledPattern(pattern, file, option);
  if (compiled.length === 0) return undefined;
  const cps = codePointsOf(name);
  for (const { m, v } of compiled) if (m.testCodePoints(cps)) return v;
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
  for (const option of ['rank_pattern', 'alpha_pattern']) {
    const p = cfg[option];
    if (p === undefined || p === null) continue;
    if (typeof p !== 'object') throw badAdapter(file, `expected an object (module pattern -> value) for '${option}' but received ${describe(p)}`, { key: option });
    compiledPattern(p, file, option);
  }
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
  const id = fileIdOf(fs.statSync(modelPath));
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
    const rCfg = patternValue(config.rank_pattern, name, configPath, 'rank_pattern') ?? (config.r as number);
    const alpha = patternValue(config.alpha_pattern, name, configPath, 'alpha_pattern') ?? (config.lora_alpha as number);
    if (rCfg !== r) {
      throw badAdapter(modelPath, `module '${name}' has rank ${r} in the file but ${rCfg} in ${ADAPTER_CONFIG} (r / rank_pattern)`, { tensor: p.A.name, key: 'rank_pattern' });
    }
    const scale = rslora ? alpha / Math.sqrt(r) : alpha / r;
    const rows = p.emb ? p.A.shape[1]! : p.B.shape[0]!;
    const cols = p.emb ? p.B.shape[0]! : p.A.shape[1]!;
    modules.set(name, { name, embedding: !!p.emb, A: p.A, B: p.B, r, alpha, rslora, scale, rows, cols });
  }
  if (modules.size === 0) throw badAdapter(modelPath, 'holds no LoRA factors (no lora_A / lora_B tensors)');
  return { dir, configPath, modelPath, config, header, modules, extras, fanInFanOut: config.fan_in_fan_out === true, prefix: prefix || 'base_model.model.', id };
}

async function readFactor(ad: PeftAdapter, t: SafetensorsTensorInfo, allowNonFinite: boolean): Promise<Tensor> {
  const raw = await readTensor(ad.modelPath, t.name, ad.header, ad.fd);
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
