// Preservation for adapter jobs (editAdapters / analyzeAdapters): each LoRA module's statistics
// are those of its base weight, named as in the base model (`<module path>.weight`, or the longest
// suffix of the path that names one, as the merge maps modules to base tensors). With a base
// checkpoint, statistics for a name that is not in it are an error; without one, statistics no
// module uses are reported (the file usually describes the whole model, the adapters a part of it).
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';
import type { CallSite, NativeParams, NativePreserve } from '../native';
import type { Checkpoint } from '../checkpoint/open';
import { readModelFamily, resolveLayouts } from '../checkpoint/layout';
import { loadSource, statisticNames, type WeightInfo, type WeightStats } from './file';
import { planJobPreservation, preserveEntries, validateStatisticValues, weightInfos, type JobPreservation } from './plan';
import type { PreserveFileOption } from './option';
import type { PreserveEntry } from '../job/manifest';
import type { LoraStats } from '../lora-math';

export interface AdapterModuleInfo { name: string; rows: number; cols: number; embedding: boolean }

export interface AdapterPreservation {
  jp: JobPreservation;
  model: Map<string, WeightInfo>;
  /** Module name -> its weight's name in the statistics' terms (absent: no statistics). */
  weightOf: Map<string, string>;
  /** Set by a job for its run: the statistics are read through this descriptor (checked against jp.plan.id). */
  fd?: number;
}

/** `<module>.weight`, else the longest suffix of the module path + '.weight' that `has`. */
export function weightNameFor(module: string, has: (n: string) => boolean): string | undefined {
  const parts = module.split('.');
  for (let i = 0; i < parts.length; i++) {
    const n = `${parts.slice(i).join('.')}.weight`;
    if (has(n)) return n;
  }
  return undefined;
}

/** Plans the statistics of every module (all structural checks; LoRA refusals: augmented statistics, embeddings). */
export function planAdapterPreservation(opt: PreserveFileOption, modules: AdapterModuleInfo[], base: Checkpoint | undefined, warnings: string[]): AdapterPreservation {
  const names = statisticNames(opt.file);
  // The base's other weights per neuron of their layout (a GPT-2 base: Conv1D weights [in, out] have
  // neurons of the input width), as editCheckpoint plans them: statistics no module uses are checked the same way.
  const layouts = base ? resolveLayouts(base.tensors, [], readModelFamily(base.dir), []) : null;
  const model = base ? weightInfos(base.tensors.map((t) => ({ ...t, layout: layouts!.get(t.name) }))) : new Map<string, WeightInfo>();
  const weightOf = new Map<string, string>();
  for (const m of modules) {
    const w = base ? weightNameFor(m.name, (n) => base.byName.has(n)) : weightNameFor(m.name, (n) => names.has(n));
    if (!w) continue;
    weightOf.set(m.name, w);
    // The delta's orientation (rows = output units, n = the input width, also for a Conv1D base);
    // a placeholder bias lets augmented statistics through the width check, to be refused below.
    model.set(w, { name: w, shape: [m.rows, m.cols], rows: m.rows, cols: m.cols, bias: `${w} (bias)` });
  }
  const edited = new Set(weightOf.values());
  const pw: string[] = [];
  const jp = planJobPreservation(opt, model, edited, pw, base !== undefined, false);
  for (const m of modules) {
    const w = weightOf.get(m.name);
    const ws = w ? jp.plan.byWeight.get(w) : undefined;
    if (!ws) continue;
    if (ws.augmented) {
      throw new GeoEditError('ERR_UNSUPPORTED', `${opt.file}: the statistics of '${w}' are for the augmented input [x; 1] (width ${ws.source.dim}), which preserves the layer's bias with its weight; a LoRA adapter carries no bias update: give [${m.cols}, ${m.cols}] statistics for module '${m.name}'`, { file: opt.file, tensor: w, module: m.name });
    }
    if (m.embedding) throw new GeoEditError('ERR_UNSUPPORTED', `${opt.file}: statistics for '${w}', but module '${m.name}' is an Embedding, which has no input vectors to preserve`, { file: opt.file, tensor: w, module: m.name });
  }
  const without = modules.filter((m) => !jp.plan.byWeight.has(weightOf.get(m.name) ?? '')).map((m) => m.name);
  for (const x of pw) if (!x.includes('edited tensor(s) have no statistics')) warnings.push(x);
  if (without.length) warnings.push(`preservation: ${without.length} module(s) have no statistics in ${opt.file} and are edited without preservation: ${without.join(', ')}`);
  return { jp, model, weightOf };
}

/** The values, checked by the core before any work (one statistic at a time). */
export function validateAdapterStatistics(ap: AdapterPreservation, params: NativeParams, threads: number, site: CallSite): Promise<void> {
  return validateStatisticValues(ap.jp, ap.model, params, threads, site);
}

/** The statistics of one module, read from the file (null: none). */
export function moduleStatistics(ap: AdapterPreservation | undefined, module: string): { ws: WeightStats; preserve: NativePreserve } | null {
  const w = ap?.weightOf.get(module);
  const ws = w ? ap!.jp.plan.byWeight.get(w) : undefined;
  if (!ws) return null;
  const fd = ap!.fd ?? fs.openSync(ap!.jp.plan.file, 'r');
  try {
    return { ws, preserve: { ...loadSource(ap!.jp.plan, ws.source, fd), tensor: w } };
  } finally {
    if (ap!.fd === undefined) fs.closeSync(fd);
  }
}

/** The module report's record (null: edited without statistics). */
export function modulePreserveEntry(ap: AdapterPreservation, module: string, st: LoraStats): PreserveEntry | null {
  const w = ap.weightOf.get(module);
  const ws = w ? ap.jp.plan.byWeight.get(w) : undefined;
  if (!ws || !st.preserve) return null;
  const e = st.preserve.energy;
  return preserveEntries(ap.jp, ws, Float64Array.of(e.oldBefore, e.oldAfter, e.newBefore, e.newAfter, 0, 0, 0, 0, 0), st.preserve.provider).weight;
}
