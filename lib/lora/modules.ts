// The adapter job's options and modules: which modules the two adapters hold (matched by name,
// checked to describe the same base), their factors prepared for the core, and what the report
// says per module and in total.
import { GeoEditError, describe, typeError } from '../errors';
import { keysFor, resolveParams } from '../options';
import { summarizeRows } from '../stats';
import { checkLoraOptions, prepareLora, type LoraOptions, type LoraStats, type PreparedLora } from '../lora-math';
import type { AdapterModuleReport, AdapterReport } from '../job/manifest';
import type { DType, EditOptions } from '../types';
import { loadModuleFactors, type AdapterModule, type PeftAdapter } from './peft';
import { moduleStatistics, modulePreserveEntry, type AdapterPreservation } from '../preserve/adapters';
import type { PartOption } from '../partition/plan';

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
  /** Write the HTML report here (inside the job: a failed report leaves nothing at the target). */
  report?: string;
  /** Merged output (outFormat 'full'): shards of at most this many bytes of tensors (HF names + index), as checkpoint edits write them. Default: one model.safetensors. */
  maxShardSize?: number | string;
  /** Merged output: write only part K of N (docs/partitioned.md); refused for adapter output. */
  part?: PartOption;
}

// Options of the adapter job itself (the rest are the LoRA path's): the table's 'adapters' entries that 'lora' does not take.
const EDIT_ADAPTER_KEYS = new Set([...keysFor('adapters')].filter((k) => !keysFor('lora').has(k)));

export function splitOptions(options: EditAdaptersOptions | undefined): { lora: LoraOptions; own: EditAdaptersOptions } {
  const o = (options ?? {}) as Record<string, unknown>;
  if (typeof o !== 'object') throw typeError(`Expected an options object but received ${describe(options)}`);
  const lora: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!EDIT_ADAPTER_KEYS.has(k)) lora[k] = v;
  return { lora: lora as LoraOptions, own: o as EditAdaptersOptions };
}

export interface ModulePlan {
  name: string;
  o?: AdapterModule;
  n?: AdapterModule;
  /** Preservation (option preserve): the job's planned statistics (the module's own are looked up by name). */
  pres?: AdapterPreservation;
}

export function planModules(oa: PeftAdapter, na: PeftAdapter): ModulePlan[] {
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

export function moduleReport(mp: ModulePlan, st: LoraStats): AdapterModuleReport {
  const sum = summarizeRows(st, st.rows);
  const m = (mp.n ?? mp.o)!;
  return {
    name: mp.name, rows: st.rows, cols: st.cols, rOld: mp.o?.r ?? 0, rNew: mp.n?.r ?? 0,
    scaleOld: mp.o ? mp.o.scale : null, scaleNew: mp.n ? mp.n.scale : null, embedding: m.embedding,
    counts: { ...st.counts }, threshold: st.threshold, energy: { ...st.energy }, meanCos: sum.meanCosNonZero,
    zeroRows: sum.zeroRows, angleHistogram: sum.angleHistogram, energyKept: st.energy.new > 0 ? st.energy.applied / st.energy.new : null,
    ...(mp.pres ? { preserve: modulePreserveEntry(mp.pres, mp.name, st) } : {}),
  };
}

export function warningsOf(mods: AdapterModuleReport[], extras: AdapterReport['extras']): string[] {
  const w: string[] = [];
  for (const m of mods) {
    if (m.rOld === 0) w.push(`module '${m.name}' is only in the new adapter: a zero old task vector, every row orthogonal`);
    if (m.rNew === 0) w.push(`module '${m.name}' is only in the old adapter: a zero new task vector, every row orthogonal`);
  }
  for (const e of extras) if (e.action === 'dropped') w.push(`non-LoRA tensor '${e.tensor}' of the old adapter is dropped (the new adapter's non-LoRA tensors are kept)`);
  return w;
}

export function parametersOf(lora: LoraOptions): Record<string, unknown> {
  const o = { ...lora } as Record<string, unknown>;
  delete o.coefficients;
  const p = resolveParams(o as EditOptions) as unknown as Record<string, unknown>;
  return { ...p, outDtype: (lora as { outDtype?: DType }).outDtype ?? null, threads: (lora as { threads?: number }).threads ?? 0 };
}

export function totalsOf(mods: AdapterModuleReport[]): AdapterReport['totals'] {
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

export async function prepareModule(mp: ModulePlan, oa: PeftAdapter, na: PeftAdapter, lora: LoraOptions): Promise<PreparedLora> {
  const anf = { allowNonFinite: (lora as { allowNonFinite?: boolean }).allowNonFinite === true };
  const [o, n] = await Promise.all([mp.o ? loadModuleFactors(oa, mp.name, anf) : null, mp.n ? loadModuleFactors(na, mp.name, anf) : null]);
  const stats = moduleStatistics(mp.pres, mp.name);
  return prepareLora({ old: o, new: n }, lora, `module '${mp.name}'`, stats?.preserve);
}

/** The adapter options, checked from the option table before any I/O (no tensor needed). */
export function checkAdapterOptions(lora: LoraOptions, what: string): void {
  const o = { ...lora } as Record<string, unknown>;
  delete o.coefficients;
  if (o.strategy === 'custom') throw new GeoEditError('ERR_UNSUPPORTED', `strategy 'custom' takes per-row coefficients for one tensor; for adapters use editLora per module`, { option: 'strategy' });
  checkLoraOptions(o, what);
}
