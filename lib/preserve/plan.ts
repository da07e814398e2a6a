// Preservation in a job: the statistics planned against the model's weights (every structural
// check), the values checked by the core before any work (one statistic at a time), and what the
// manifest says per tensor.
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';
import { native, type CallSite, type NativeParams, type NativePreserve } from '../native';
import { matrixView } from '../tensor';
import type { PreserveEntry } from '../job/manifest';
import { inputBytes, listNames, type PlanItem } from '../checkpoint/plan';
import type { PreserveWork } from '../backend';
import { loadSource, planStatistics, type StatisticsPlan, type StatSource, type WeightInfo, type WeightStats } from './file';
import type { PreserveFileOption } from './option';

/** The bias beside a weight (`x.weight` -> `x.bias`) when it has one element per row. */
export function biasOf(name: string, rows: number, shapeOf: (n: string) => number[] | undefined): string | undefined {
  if (!name.endsWith('.weight')) return undefined;
  const b = `${name.slice(0, -'.weight'.length)}.bias`;
  const s = shapeOf(b);
  return s && s.length === 1 && s[0] === rows ? b : undefined;
}

/** Weight infos for tensors given by name and shape (rows layout: n = product of shape[1:]). */
export function weightInfos(tensors: Array<{ name: string; shape: number[]; layout?: { rows: number; cols: number } }>): Map<string, WeightInfo> {
  const shapes = new Map(tensors.map((t) => [t.name, t.shape]));
  const out = new Map<string, WeightInfo>();
  for (const t of tensors) {
    // The neuron view: the tensor's layout where the job planned one (columns: cols = the input width), else rows.
    const { rows, cols } = t.layout ?? matrixView(t.shape);
    const bias = t.shape.length >= 2 ? biasOf(t.name, rows, (n) => shapes.get(n)) : undefined;
    out.set(t.name, { name: t.name, shape: t.shape, rows, cols, ...(bias ? { bias } : {}) });
  }
  return out;
}

export interface JobPreservation {
  plan: StatisticsPlan;
  /** Bias name -> the weight whose pass preserves it (augmented form). */
  biasOfWeight: Map<string, string>;
}

/**
 * Plans preservation for a checkpoint job: `edited` are the tensors the job edits. Statistics for
 * a name not in the model, or shared entries naming one, are errors; an augmented statistic needs
 * its bias edited too. Warnings: weights edited without statistics; statistics of tensors not edited.
 */
export function planJobPreservation(opt: PreserveFileOption, model: Map<string, WeightInfo>, edited: Set<string>, warnings: string[], strict = true, augmentedNeedsBias = true): JobPreservation {
  const plan = planStatistics(opt, model, strict);
  const biasOfWeight = new Map<string, string>();
  const notEdited: string[] = [];
  for (const [w, ws] of plan.byWeight) {
    if (!edited.has(w)) { notEdited.push(w); plan.byWeight.delete(w); continue; }
    if (ws.augmented && augmentedNeedsBias) {
      if (!edited.has(ws.bias!)) {
        throw new GeoEditError('ERR_BAD_STATISTICS', `${plan.file}: the statistics of '${w}' are for the augmented input [x; 1] (width ${ws.source.dim}), which preserves its bias '${ws.bias}' with it, but '${ws.bias}' is not edited (select it too, or give [${ws.source.dim - 1}, ${ws.source.dim - 1}] statistics)`, { file: plan.file, tensor: w });
      }
      biasOfWeight.set(ws.bias!, w);
    }
  }
  if (notEdited.length) warnings.push(`preservation: statistics for ${notEdited.length} tensor(s) that are not edited are not used: ${listNames(notEdited)}`);
  if (plan.unused.length) warnings.push(`preservation: statistics for ${plan.unused.length} name(s) that match no edited weight are not used: ${listNames(plan.unused)}`);
  const without = [...edited].filter((n) => !plan.byWeight.has(n) && !biasOfWeight.has(n));
  if (without.length) warnings.push(`preservation: ${without.length} edited tensor(s) have no statistics in ${plan.file} and are edited without preservation: ${listNames(without)}`);
  return { plan, biasOfWeight };
}

/** The sources the job uses, in first-use order. */
export function usedSources(jp: JobPreservation): StatSource[] {
  const seen = new Map<string, StatSource>();
  for (const ws of jp.plan.byWeight.values()) if (!seen.has(ws.source.name)) seen.set(ws.source.name, ws.source);
  return [...seen.values()];
}

/**
 * The values of every statistic the job uses, checked by the core before any work (finite,
 * symmetric, positive semi-definite, orthonormal basis, rho/mu): one statistic in memory at a time,
 * on a one-row edit of the first weight that uses it, with `validateOnly` (the PSD Cholesky, no solve:
 * the operator itself is formed once, in the pass).
 */
export async function validateStatisticValues(jp: JobPreservation, model: Map<string, WeightInfo>, params: NativeParams, threads: number, site: CallSite): Promise<void> {
  const fd = fs.openSync(jp.plan.file, 'r');
  try {
    for (const src of usedSources(jp)) {
      const ws = [...jp.plan.byWeight.values()].find((w) => w.source === src)!;
      const w = model.get(ws.weight)!;
      const preserve: NativePreserve = { ...loadSource(jp.plan, src, fd), tensor: ws.weight, validateOnly: true };
      const z = new Float32Array(w.cols), zb = new Float32Array(1);
      await native.edit({
        rows: 1, cols: w.cols, base: z, baseDtype: 'f32', old: z, oldDtype: 'f32', new: z, newDtype: 'f32', outDtype: 'f32', wantOut: false,
        // Task arithmetic: the check needs no per-row coefficients, whatever the job's strategy.
        threads, params: { ...params, strategy: 'task-arithmetic' }, preserve, tensorName: ws.weight,
        ...(ws.augmented ? { biasBase: zb, biasBaseDtype: 'f32', biasOld: zb, biasOldDtype: 'f32', biasNew: zb, biasNewDtype: 'f32' } : {}),
      }, site);
    }
  } finally {
    fs.closeSync(fd);
  }
}

const removed = (before: number, after: number): number | null => (before > 0 ? 1 - after / before : null);

/** The manifest entry of a preserved weight (e: preserveEnergy) and, augmented, of its bias. */
export function preserveEntries(jp: JobPreservation, ws: WeightStats, e: Float64Array, provider?: string): { weight: PreserveEntry; bias?: PreserveEntry } {
  const ridge = ws.source.form === 'ridge';
  const common = {
    statistics: ws.source.name, shared: ws.shared, form: ws.source.form, rho: ridge ? jp.plan.rho : null, mu: ridge ? jp.plan.mu : null,
    ...(provider ? { provider } : {}),
  };
  const weight: PreserveEntry = {
    ...common, ...(ws.augmented ? { bias: ws.bias } : {}),
    energy: { oldBefore: e[0]!, oldAfter: e[1]!, newBefore: e[2]!, newAfter: e[3]! },
    removed: { old: removed(e[0]!, e[1]!), new: removed(e[2]!, e[3]!) },
  };
  if (!ws.augmented) return { weight };
  const bias: PreserveEntry = {
    ...common, withWeight: ws.weight,
    energy: { oldBefore: e[4]!, oldAfter: e[5]!, newBefore: e[6]!, newAfter: e[7]! },
    removed: { old: removed(e[4]!, e[5]!), new: removed(e[6]!, e[7]!) },
  };
  return { weight, bias };
}

/**
 * The projection work of a checkpoint job, for 'auto' (lib/backend.ts preserveRule): ridge statistics
 * only (the basis form runs on the CPU on either backend); bytes = the input bytes the job streams
 * (the rule's CPU rates are per input byte).
 */
export function preserveWork(jp: JobPreservation, items: PlanItem[]): PreserveWork {
  const w: PreserveWork = { gemmFlops: 0, buildFlops: 0, bytes: 0, maxDim: 0 };
  const built = new Set<string>();
  for (const it of items) {
    w.bytes += inputBytes(it);
    const ws = jp.plan.byWeight.get(it.name);
    if (it.action !== 'edit' || !ws || ws.source.form !== 'ridge') continue;
    const d = ws.source.dim;
    w.gemmFlops += 2 * 2 * it.layout.rows * d * d;
    w.maxDim = Math.max(w.maxDim, d);
    if (!built.has(ws.source.name)) { built.add(ws.source.name); w.buildFlops += 2.67 * d * d * d; }
  }
  return w;
}
