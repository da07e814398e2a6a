// Adapter output (SPEC §4): per module, the exact edited adapter B'A' of rank r_new + r_old (less
// all-zero blocks), the new adapter's non-LoRA tensors, and a PEFT config with scale 1 per module;
// written into the output job.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError } from '../errors';
import type { CallSite } from '../native';
import { readTensor, writeSafetensors, type TensorToWrite } from '../safetensors';
import { buildEditedAdapter, loraGeometry, type LoraOptions, type LoraStats } from '../lora-math';
import { sha256Files } from '../governance/hashing';
import type { OutputJob } from '../job/job';
import type { AdapterManifest, AdapterModuleReport, AdapterReport } from '../job/manifest';
import { ADAPTER_CONFIG, ADAPTER_MODEL, type PeftAdapter } from './peft';
import { moduleReport, prepareModule, type EditAdaptersOptions, type ModulePlan } from './modules';

export interface AdapterOutput {
  tensors: TensorToWrite[];
  config: Record<string, unknown>;
  mods: AdapterModuleReport[];
  extras: AdapterReport['extras'];
  /** Modules whose coefficients are all 0 (left out of the adapter). */
  omitted: string[];
  perRow: Record<string, LoraStats>;
}

/**
 * The edited factors are rounded to f32 in the core's geometry and here (c_i · s · B): a huge scale
 * overflows them to Inf (or Inf · 0 = NaN). That is ERR_NON_FINITE_OUTPUT naming the module, the
 * factor and the element, as merged and checkpoint outputs are, unless the caller opts in.
 */
function checkFiniteFactors(ed: ReturnType<typeof buildEditedAdapter>, module: string): void {
  for (const [which, t] of [['B', ed.B], ['A', ed.A]] as const) {
    const d = t.data as Float32Array, c = t.shape[1]!;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i]!)) {
        throw new GeoEditError('ERR_NON_FINITE_OUTPUT', `module '${module}': the edited factor ${which} overflows f32 at [${Math.floor(i / c)}, ${i % c}] (${d[i]}); lower scale, or pass allowNonFiniteOutput to write it anyway`, { module, factor: which, row: Math.floor(i / c), col: i % c });
      }
    }
  }
}

function pushModule(tensors: TensorToWrite[], key: string, ed: ReturnType<typeof buildEditedAdapter>): void {
  if (ed.embedding) {
    tensors.push({ name: `${key}.lora_embedding_A`, dtype: 'F32', shape: ed.A.shape, data: ed.A.data });
    tensors.push({ name: `${key}.lora_embedding_B`, dtype: 'F32', shape: ed.B.shape, data: ed.B.data });
  } else {
    tensors.push({ name: `${key}.lora_A.weight`, dtype: 'F32', shape: ed.A.shape, data: ed.A.data });
    tensors.push({ name: `${key}.lora_B.weight`, dtype: 'F32', shape: ed.B.shape, data: ed.B.data });
  }
}

/** Every module edited in factor space into an adapter of the output (nothing written yet). */
export async function buildAdapterOutput(plans: ModulePlan[], oa: PeftAdapter, na: PeftAdapter, lora: LoraOptions, own: EditAdaptersOptions, site: CallSite): Promise<AdapterOutput> {
  const o: AdapterOutput = { tensors: [], config: {}, mods: [], extras: [], omitted: [], perRow: {} };
  const ranks = new Map<string, number>();
  const lo = lora as { allowNonFinite?: boolean; allowNonFiniteOutput?: boolean };
  const allowOut = lo.allowNonFinite === true || lo.allowNonFiniteOutput === true;
  for (const mp of plans) {
    const prep = await prepareModule(mp, oa, na, lora);
    const st = await loraGeometry(prep, mp.name, site);
    const ed = buildEditedAdapter(prep, st.coefNew, st.coefOld, { keepZeroBlocks: own.keepZeroBlocks === true });
    if (!allowOut) checkFiniteFactors(ed, mp.name);
    // Every coefficient 0: the edit leaves this module's weights unchanged. PEFT has no rank-0
    // module, so it is left out of the adapter (a LoRA layer PEFT still creates for a matching
    // target starts with B = 0, which is the same zero delta).
    if (ed.rank === 0) o.omitted.push(mp.name);
    else { pushModule(o.tensors, `${na.prefix}${mp.name}`, ed); ranks.set(mp.name, ed.rank); }
    const rep = moduleReport(mp, st);
    rep.rOut = ed.rank;
    o.mods.push(rep);
    if (own.perRow) o.perRow[mp.name] = st;
  }
  // Non-LoRA tensors (modules_to_save heads): the new adapter's are kept, the old one's dropped.
  for (const t of na.extras) {
    const raw = await readTensor(na.modelPath, t.name, na.header, na.fd);
    o.tensors.push({ name: t.name, dtype: raw.dtype, shape: raw.shape, data: raw.data });
    o.extras.push({ tensor: t.name, from: 'new', action: 'copied' });
  }
  const newExtras = new Set(na.extras.map((x) => x.name));
  for (const t of oa.extras) if (!newExtras.has(t.name)) o.extras.push({ tensor: t.name, from: 'old', action: 'dropped' });
  if (ranks.size === 0) {
    throw new GeoEditError('ERR_UNSUPPORTED', `every coefficient of every module is 0 with these options: the edit is the base model itself, and a PEFT adapter cannot have no LoRA module`, { option: 'scale' });
  }
  o.config = outputConfig(oa, na, ranks);
  return o;
}

/** Writes the adapter into the job's output; returns the output records (path at the target, hash, size). */
export async function writeAdapterFiles(job: OutputJob, out: string, a: AdapterOutput): Promise<AdapterManifest['outputs']> {
  const model = job.path(ADAPTER_MODEL);
  await writeSafetensors(model, a.tensors, { format: 'pt' });
  const config = job.path(ADAPTER_CONFIG);
  fs.writeFileSync(config, JSON.stringify(a.config, null, 2) + '\n');
  const [hm, hc] = await sha256Files([model, config], job.ctl);
  job.checkAborted();
  return [
    { path: path.join(out, ADAPTER_MODEL), sha256: hm!.sha256, bytes: hm!.size },
    { path: path.join(out, ADAPTER_CONFIG), sha256: hc!.sha256, bytes: hc!.size },
  ];
}

function mostCommon(xs: number[]): number {
  const c = new Map<number, number>();
  for (const x of xs) c.set(x, (c.get(x) ?? 0) + 1);
  let best = xs[0]!, bc = -1;
  for (const [x, k] of c) if (k > bc || (k === bc && x > best)) { best = x; bc = k; }
  return best;
}

/** PEFT adapter_config.json for the edited adapter: scale 1 per module (lora_alpha = r'). */
export function outputConfig(oa: PeftAdapter, na: PeftAdapter, ranks: Map<string, number>): Record<string, unknown> {
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
