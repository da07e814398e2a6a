// The demo benchmark: build (or reuse from the cache) the fact-memory models — θ0 and, per
// regime, θold / θnew as safetensors checkpoints or PEFT adapter directories — and score edited
// weights with R/G/L.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { writeSafetensors } from '../safetensors';
import type { Tensor } from '../types';
import { editSet, makeBatch, makeWorld, preservedSample, type Prompt, type World, type WorldConfig } from './data';
import { PARAM_NAMES, TENSOR_NAME, embedBatch, matmulABt, paramShape, type LoraFactor, type ModelConfig, type Params } from './model';
import { REGIMES, fineTunePair, pretrain, type PretrainConfig, type Regime } from './train';
import { makeScorer, type Scorer } from './metrics';
import { loadCheckpoint, saveCheckpoint, type EditSource, type Weights } from './edit-path';
import { readEnv } from '../env';

/** Bump when the model, data or training code changes what is built (invalidates caches). */
export const MODEL_VERSION = 1;

export interface SuiteConfig {
  world: WorldConfig;
  model: { d: number; h: number };
  pretrain: PretrainConfig;
  regimes: string[];
  seeds: number[];
}

export const DEMO_CONFIG: Readonly<SuiteConfig> = Object.freeze({
  world: { subjects: 1000, relations: 3, objects: 64, templates: 5, relationWords: 3, fillers: 6, editShare: 0.01, localityPrompts: 2000 },
  model: { d: 64, h: 512 },
  pretrain: { epochs: 6, batch: 64, lr: 3e-3 },
  regimes: REGIMES.map((r) => r.name),
  seeds: [1],
});

/** The small model `.ci/run` uses (test/e2e/quality.test.ts). */
export const FAST_CONFIG: Readonly<SuiteConfig> = Object.freeze({
  world: { subjects: 400, relations: 3, objects: 48, templates: 5, relationWords: 3, fillers: 6, editShare: 0.02, localityPrompts: 1000 },
  model: { d: 48, h: 256 },
  pretrain: { epochs: 8, batch: 64, lr: 3e-3 },
  regimes: REGIMES.map((r) => r.name),
  seeds: [1, 2, 3],
});

export function regimeByName(name: string): Regime {
  const r = REGIMES.find((x) => x.name === name);
  if (!r) throw new Error(`unknown regime '${name}' (known: ${REGIMES.map((x) => x.name).join(', ')})`);
  return r;
}

export function defaultCacheRoot(): string {
  const dir = readEnv('GEOEDIT_CACHE_DIR');
  if (dir) return dir;
  return path.join(readEnv('XDG_CACHE_HOME') ?? path.join(os.homedir(), '.cache'), 'geoedit');
}

export function configHash(c: SuiteConfig): string {
  const key = JSON.stringify({ v: MODEL_VERSION, world: c.world, model: c.model, pretrain: c.pretrain, regimes: c.regimes.map(regimeByName) });
  return crypto.createHash('sha256').update(key).digest('hex').slice(0, 12);
}

export function modelConfig(c: SuiteConfig, w: World): ModelConfig {
  return { vocab: w.vocab, objects: c.world.objects, d: c.model.d, h: c.model.h };
}

export function paramsToWeights(mc: ModelConfig, p: Params): Weights {
  const w: Weights = new Map();
  for (const n of PARAM_NAMES) w.set(TENSOR_NAME[n], { dtype: 'f32', shape: paramShape(mc, n), data: p[n] });
  return w;
}

export function weightsToParams(w: Weights): Params {
  const get = (n: (typeof PARAM_NAMES)[number]): Float32Array => {
    const t = w.get(TENSOR_NAME[n]);
    if (!t || t.dtype !== 'f32') throw new Error(`weights: no f32 tensor '${TENSOR_NAME[n]}'`);
    return t.data as Float32Array;
  };
  return { embed: get('embed'), up: get('up'), down: get('down'), unembed: get('unembed') };
}

async function saveAdapter(dir: string, lora: Partial<Record<'up' | 'down', LoraFactor>>, r: number, alpha: number): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  const modules: string[] = [];
  for (const n of ['up', 'down'] as const) {
    const f = lora[n];
    if (!f) continue;
    const mod = n === 'up' ? 'ffn.up' : 'ffn.down';
    modules.push(mod);
    tensors.push({ name: `base_model.model.${mod}.lora_A.weight`, dtype: 'F32', shape: [f.r, f.in], data: f.A });
    tensors.push({ name: `base_model.model.${mod}.lora_B.weight`, dtype: 'F32', shape: [f.out, f.r], data: f.B });
  }
  await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  const cfg = {
    base_model_name_or_path: 'geoedit-demo-fact-memory', peft_type: 'LORA', task_type: null, r, lora_alpha: alpha,
    lora_dropout: 0, use_rslora: false, use_dora: false, bias: 'none', fan_in_fan_out: false, init_lora_weights: true,
    target_modules: modules, modules_to_save: null, inference_mode: true,
  };
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg, null, 2) + '\n');
}

export interface SeedModels {
  seed: number;
  dir: string;
  base: string;
  /** Per regime: the edit source (checkpoints or adapters), and for LoRA the materialised checkpoints too. */
  regimes: Record<string, { source: EditSource; materialised?: EditSource; steps: { old: number; new: number } }>;
  baseAccuracy: { train: number; heldOut: number };
}

interface SeedMeta {
  seed: number;
  regimes: Record<string, { kind: 'checkpoints' | 'adapters'; steps: { old: number; new: number } }>;
  baseAccuracy: { train: number; heldOut: number };
  seconds: number;
}

function seedModelsFrom(dir: string, m: SeedMeta): SeedModels {
  const regimes: SeedModels['regimes'] = {};
  const base = path.join(dir, 'base.safetensors');
  for (const [name, r] of Object.entries(m.regimes)) {
    const rd = path.join(dir, name);
    if (r.kind === 'adapters') {
      regimes[name] = {
        source: { kind: 'adapters', base, old: path.join(rd, 'old'), new: path.join(rd, 'new') },
        materialised: { kind: 'checkpoints', base, old: path.join(rd, 'old.merged.safetensors'), new: path.join(rd, 'new.merged.safetensors') },
        steps: r.steps,
      };
    } else {
      regimes[name] = { source: { kind: 'checkpoints', base, old: path.join(rd, 'old.safetensors'), new: path.join(rd, 'new.safetensors') }, steps: r.steps };
    }
  }
  return { seed: m.seed, dir, base, regimes, baseAccuracy: m.baseAccuracy };
}

/** Builds one seed's models into `root/seed-<s>` (or reuses them when complete). */
export async function buildSeed(c: SuiteConfig, root: string, seed: number, log: (s: string) => void = () => {}): Promise<{ models: SeedModels; cached: boolean }> {
  const dir = path.join(root, `seed-${seed}`);
  const metaPath = path.join(dir, 'meta.json');
  if (fs.existsSync(metaPath)) {
    const m = JSON.parse(fs.readFileSync(metaPath, 'utf8')) as SeedMeta;
    if (c.regimes.every((r) => m.regimes[r])) return { models: seedModelsFrom(dir, m), cached: true };
  }
  const t0 = Date.now();
  const tmp = path.join(root, `.seed-${seed}.tmp-${process.pid}-${crypto.randomBytes(3).toString('hex')}`);
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const w = makeWorld(c.world, seed);
    const mc = modelConfig(c, w);
    log(`seed ${seed}: pretraining the base model (${c.world.subjects * c.world.relations} facts, d=${mc.d}, h=${mc.h})…`);
    const base = pretrain(w, mc, seed, c.pretrain);
    const sc = makeScorer(w, mc, base);
    await saveCheckpoint(path.join(tmp, 'base.safetensors'), paramsToWeights(mc, base));
    const meta: SeedMeta = { seed, regimes: {}, baseAccuracy: sc.baseAccuracy, seconds: 0 };
    for (const rn of c.regimes) {
      const reg = regimeByName(rn);
      log(`seed ${seed}: fine-tuning θold / θnew (${rn})…`);
      const pair = fineTunePair(w, mc, base, reg, seed);
      const rd = path.join(tmp, rn);
      fs.mkdirSync(rd, { recursive: true });
      if (reg.lora) {
        await saveAdapter(path.join(rd, 'old'), pair.old.lora!, reg.lora.r, reg.lora.alpha);
        await saveAdapter(path.join(rd, 'new'), pair.new.lora!, reg.lora.r, reg.lora.alpha);
        await saveCheckpoint(path.join(rd, 'old.merged.safetensors'), paramsToWeights(mc, pair.old.params));
        await saveCheckpoint(path.join(rd, 'new.merged.safetensors'), paramsToWeights(mc, pair.new.params));
        meta.regimes[rn] = { kind: 'adapters', steps: { old: pair.old.steps, new: pair.new.steps } };
      } else {
        await saveCheckpoint(path.join(rd, 'old.safetensors'), paramsToWeights(mc, pair.old.params));
        await saveCheckpoint(path.join(rd, 'new.safetensors'), paramsToWeights(mc, pair.new.params));
        meta.regimes[rn] = { kind: 'checkpoints', steps: { old: pair.old.steps, new: pair.new.steps } };
      }
    }
    meta.seconds = (Date.now() - t0) / 1000;
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
    log(`seed ${seed}: built in ${meta.seconds.toFixed(1)} s`);
    return { models: seedModelsFrom(dir, meta), cached: false };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Scores edited weights on the seed's world (R/G/L against the cached base model). */
export async function makeSeedScorer(c: SuiteConfig, models: SeedModels): Promise<{ scorer: Scorer; score: (w: Weights) => Promise<{ reliability: number; generality: number; locality: number }> }> {
  const w = makeWorld(c.world, models.seed);
  const mc = modelConfig(c, w);
  const base = weightsToParams(await loadCheckpoint(models.base));
  const scorer = makeScorer(w, mc, base);
  return { scorer, score: async (weights: Weights) => scorer.score(weightsToParams(weights)) };
}

/** Statistics of one edited layer's inputs: C0 on the preserved sample, C1 on the edit prompts (SPEC §3 step 0). */
export interface LayerStatistics { cov: Tensor; editCov: Tensor }

export interface PreservationStatistics {
  /** Per tensor name (ffn.up.weight: the block input x [d]; ffn.down.weight: relu(W_up·x) [h]; the model has no biases). */
  layers: Map<string, LayerStatistics>;
  /** The preserved sample: unrelated facts disjoint from the Locality prompts' facts, × the training templates. */
  facts: number;
  prompts: number;
  /** Edit prompts behind C1. */
  editPrompts: number;
}

/** Σ xᵀx / N over rows of X [N, n], in f64, returned as f32 [n, n]. */
function secondMoment(X: Float32Array, N: number, n: number): Tensor {
  const C = new Float64Array(n * n);
  for (let b = 0; b < N; b++) {
    const o = b * n;
    for (let i = 0; i < n; i++) {
      const xi = X[o + i]!;
      if (xi === 0) continue;
      const ci = i * n;
      for (let j = i; j < n; j++) C[ci + j] = C[ci + j]! + xi * X[o + j]!;
    }
  }
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) out[i * n + j] = out[j * n + i] = C[i * n + j]! / Math.max(1, N);
  return { dtype: 'f32', shape: [n, n], data: out };
}

/** The inputs of W_up (x) and of W_down (relu(W_up·x)) on prompts, under the base model. */
function layerInputs(w: World, mc: ModelConfig, base: Params, prompts: Prompt[]): { x: Float32Array; a: Float32Array; n: number } {
  const b = makeBatch(w, prompts, prompts.map(() => 0));
  const x = new Float32Array(b.size * mc.d);
  embedBatch(mc, base, b, x);
  const a = new Float32Array(b.size * mc.h);
  matmulABt(x, base.up, a, b.size, mc.h, mc.d);
  for (let i = 0; i < a.length; i++) if (!(a[i]! > 0)) a[i] = 0;
  return { x, a, n: b.size };
}

/** C0 / C1 of every edited layer from the base model (the package's own demo computes them in TS). */
export async function preservationStatistics(c: SuiteConfig, models: SeedModels, opts: { facts?: number } = {}): Promise<PreservationStatistics> {
  const w = makeWorld(c.world, models.seed);
  const mc = modelConfig(c, w);
  const base = weightsToParams(await loadCheckpoint(models.base));
  const sample = preservedSample(w, opts.facts);
  const p0 = layerInputs(w, mc, base, sample.prompts);
  const p1 = layerInputs(w, mc, base, editSet(w, 'new').prompts);
  const layers = new Map<string, LayerStatistics>([
    [TENSOR_NAME.up, { cov: secondMoment(p0.x, p0.n, mc.d), editCov: secondMoment(p1.x, p1.n, mc.d) }],
    [TENSOR_NAME.down, { cov: secondMoment(p0.a, p0.n, mc.h), editCov: secondMoment(p1.a, p1.n, mc.h) }],
  ]);
  return { layers, facts: sample.facts, prompts: p0.n, editPrompts: p1.n };
}

export type { Tensor };
