// Pretraining on all facts, and the fine-tuning regimes that produce θold / θnew.
import { Rng } from './prng';
import { allFactPrompts, editSet, makeBatch, type Batch, type Prompt, type World } from './data';
import {
  Adam, Sgd, cloneParams, initParams, lossAndGrad, loraGrads, loraMerged, predict, zerosLike,
  type LoraFactor, type ModelConfig, type Optimizer, type ParamName, type Params,
} from './model';

export interface PretrainConfig {
  epochs: number;
  batch: number;
  lr: number;
}

function sliceBatch(b: Batch, idx: Int32Array, s: number, n: number): Batch {
  const L = b.len;
  const tokens = new Int32Array(n * L), targets = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = idx[s + i]!;
    targets[i] = b.targets[k]!;
    for (let j = 0; j < L; j++) tokens[i * L + j] = b.tokens[k * L + j]!;
  }
  return { tokens, targets, size: n, len: L };
}

/** The base model θ0: every parameter trained with Adam on all facts (training templates). */
export function pretrain(w: World, mc: ModelConfig, seed: number, pc: PretrainConfig, log?: (s: string) => void): Params {
  const rng = new Rng(seed * 104729 + 3);
  const p = initParams(mc, rng);
  const { prompts, targets } = allFactPrompts(w);
  const all = makeBatch(w, prompts, targets);
  const opt = new Adam(pc.lr);
  const want = new Set<ParamName>(['embed', 'up', 'down', 'unembed']);
  const idx = Int32Array.from({ length: all.size }, (_, i) => i);
  const names: ParamName[] = ['embed', 'up', 'down', 'unembed'];
  for (let ep = 0; ep < pc.epochs; ep++) {
    rng.shuffle(idx);
    let tot = 0, nb = 0;
    for (let s = 0; s < all.size; s += pc.batch) {
      const n = Math.min(pc.batch, all.size - s);
      const b = sliceBatch(all, idx, s, n);
      const g = zerosLike(p);
      tot += lossAndGrad(mc, p, b, g, want);
      nb++;
      opt.step(names.map((k) => p[k]), names.map((k) => g[k]));
    }
    if (log && (ep % 5 === 4 || ep === pc.epochs - 1)) log(`pretrain epoch ${ep + 1}/${pc.epochs} loss ${(tot / nb).toFixed(4)}`);
  }
  return p;
}

export interface Regime {
  name: string;
  /** What it stands for, for reports. */
  description: string;
  optimizer: 'adam' | 'sgd';
  lr: number;
  /** Full-batch steps (a cap when stopAtFit). */
  steps: number;
  /** Weights that train (LoRA: the weights that get adapters). */
  trainable: ('up' | 'down')[];
  /** Light: train θnew until every D_new prompt is right (at most `steps`), then θold the same number of steps. */
  stopAtFit?: boolean;
  lora?: { r: number; alpha: number };
}

export const REGIMES: readonly Regime[] = [
  { name: 'adam-over', description: 'full FFN, Adam, over-trained', optimizer: 'adam', lr: 1e-3, steps: 150, trainable: ['up', 'down'] },
  { name: 'ffn-value', description: 'FFN value matrix W_down only (as FT-L), Adam', optimizer: 'adam', lr: 1e-3, steps: 150, trainable: ['down'] },
  { name: 'sgd', description: 'full FFN, plain SGD', optimizer: 'sgd', lr: 0.5, steps: 150, trainable: ['up', 'down'] },
  { name: 'adam-light', description: 'full FFN, Adam, stopped once the edits are learned', optimizer: 'adam', lr: 1e-3, steps: 150, trainable: ['up', 'down'], stopAtFit: true },
  { name: 'lora-r8', description: 'LoRA rank 8 on W_up and W_down (PEFT adapters), Adam', optimizer: 'adam', lr: 2e-3, steps: 150, trainable: ['up', 'down'], lora: { r: 8, alpha: 16 } },
];

export interface FineTuneResult {
  params: Params;
  steps: number;
  /** LoRA regimes: the adapters (keyed 'up' / 'down'). */
  lora?: Partial<Record<'up' | 'down', LoraFactor>>;
}

function makeOpt(r: Regime): Optimizer {
  return r.optimizer === 'adam' ? new Adam(r.lr) : new Sgd(r.lr);
}

function allRight(mc: ModelConfig, p: Params, b: Batch): boolean {
  const pr = predict(mc, p, b);
  for (let i = 0; i < b.size; i++) if (pr[i] !== b.targets[i]) return false;
  return true;
}

/** Fine-tune a copy of `base` on D_old or D_new in a regime; `fixedSteps` overrides the step count. */
export function fineTune(w: World, mc: ModelConfig, base: Params, which: 'old' | 'new', regime: Regime, seed: number, fixedSteps?: number): FineTuneResult {
  const { prompts, targets } = editSet(w, which);
  const b = makeBatch(w, prompts, targets);
  const want = new Set<ParamName>(regime.trainable);
  const opt = makeOpt(regime);
  const maxSteps = fixedSteps ?? regime.steps;
  if (regime.lora) {
    const rng = new Rng(seed * 31337 + (which === 'old' ? 1 : 2));
    const { r, alpha } = regime.lora;
    const lora: Partial<Record<'up' | 'down', LoraFactor>> = {};
    for (const name of regime.trainable) {
      const [out, inn] = name === 'up' ? [mc.h, mc.d] : [mc.d, mc.h];
      // PEFT's init: A Kaiming-uniform-like, B zero
      const A = new Float32Array(r * inn);
      const bound = 1 / Math.sqrt(inn);
      for (let i = 0; i < A.length; i++) A[i] = (rng.next() * 2 - 1) * bound;
      lora[name] = { A, B: new Float32Array(out * r), r, out, in: inn, alpha };
    }
    const names = regime.trainable;
    let steps = 0;
    for (; steps < maxSteps; steps++) {
      const cur = cloneParams(base);
      for (const n of names) cur[n] = loraMerged(base[n], lora[n]!);
      if (regime.stopAtFit && fixedSteps === undefined && allRight(mc, cur, b)) break;
      const g: Partial<Params> = {};
      for (const n of names) g[n] = new Float32Array(cur[n].length);
      lossAndGrad(mc, cur, b, g, want);
      const ps: Float32Array[] = [], gs: Float32Array[] = [];
      for (const n of names) {
        const f = lora[n]!;
        const gA = new Float32Array(f.A.length), gB = new Float32Array(f.B.length);
        loraGrads(g[n]!, f, gA, gB);
        ps.push(f.A, f.B);
        gs.push(gA, gB);
      }
      opt.step(ps, gs);
    }
    const params = cloneParams(base);
    for (const n of names) params[n] = loraMerged(base[n], lora[n]!);
    return { params, steps, lora };
  }
  const p = cloneParams(base);
  const names = regime.trainable;
  let steps = 0;
  for (; steps < maxSteps; steps++) {
    if (regime.stopAtFit && fixedSteps === undefined && allRight(mc, p, b)) break;
    const g: Partial<Params> = {};
    for (const n of names) g[n] = new Float32Array(p[n].length);
    lossAndGrad(mc, p, b, g, want);
    opt.step(names.map((n) => p[n]), names.map((n) => g[n]!));
  }
  return { params: p, steps };
}

/** θnew then θold (θold gets θnew's step count in the light regime). */
export function fineTunePair(w: World, mc: ModelConfig, base: Params, regime: Regime, seed: number): { old: FineTuneResult; new: FineTuneResult } {
  const nw = fineTune(w, mc, base, 'new', regime, seed);
  const old = fineTune(w, mc, base, 'old', regime, seed, regime.stopAtFit ? Math.max(1, nw.steps) : undefined);
  return { old, new: nw };
}

export type { Prompt };
