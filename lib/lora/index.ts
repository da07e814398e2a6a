// PEFT LoRA adapters: analyse and edit two adapters trained from the same base, neuron by neuron,
// without forming B*A (SPEC §4). Output (through the output job, lib/job): an exact adapter
// (density 1) or merged full weights (with a base checkpoint).
import * as path from 'node:path';
import { GeoEditError, describe, typeError } from '../errors';
import { callSite, type CallSite } from '../native';
import { loraGeometry, type LoraOptions, type LoraStats } from '../lora-math';
import { openCheckpoint, type Checkpoint } from '../checkpoint/open';
import { runOutputJob, type OutputJob } from '../job/job';
import { checkOutputTarget, checkReportTarget, type InputFiles } from '../job/target';
import { sha256Files } from '../governance/hashing';
import { markPhase } from '../job/phase';
import { versionsBlock } from '../job/versions';
import type { AdapterManifest, AdapterModuleReport, AdapterReport } from '../job/manifest';
import { badAdapter, readPeftAdapter, type PeftAdapter } from './peft';
import {
  checkAdapterOptions, moduleReport, parametersOf, planModules, prepareModule, splitOptions, totalsOf, warningsOf,
  type AdapterPaths, type EditAdaptersOptions, type ModulePlan,
} from './modules';
import { buildAdapterOutput, writeAdapterFiles } from './adapter-out';
import { mergeIntoBase, planMerge, shardReads } from './merge';
import { adapterReportAsCheckpointManifest } from './report';
import { checkPreserveFileOption, type PreserveFileOption } from '../preserve/option';
import { planAdapterPreservation, validateAdapterStatistics, type AdapterPreservation } from '../preserve/adapters';
import { OpenInputs } from '../job/inputs';
import { hashInputs } from '../job/hash';
import { nativeParams, parseSize, resolveParams } from '../options';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { packageVersion } from '../job/versions';
import { assignFiles, hashAssignment, partitionKey, planId, resolvePart, type PartitionPlan, type PartRecord, type PartSpec } from '../partition/plan';
import type { MergePlan } from './merge';
import type { EditOptions } from '../types';

/** Option preserve (the file form) taken out of the LoRA options: the modules get their statistics from the file. */
function takePreserve(lora: LoraOptions, what: string): PreserveFileOption | null {
  const o = lora as Record<string, unknown>;
  const p = checkPreserveFileOption(o.preserve, what);
  delete o.preserve;
  return p;
}

/** Plans the statistics (every check, the values by the core) and hands every module the plan. */
async function attachPreservation(p: PreserveFileOption | null, plans: ModulePlan[], lora: LoraOptions, base: Checkpoint | undefined, warnings: string[], site: CallSite): Promise<AdapterPreservation | null> {
  if (!p) return null;
  const mods = plans.map((mp) => { const m = (mp.n ?? mp.o)!; return { name: mp.name, rows: m.rows, cols: m.cols, embedding: m.embedding }; });
  const ap = planAdapterPreservation(p, mods, base, warnings);
  const o = { ...lora } as Record<string, unknown>;
  delete o.coefficients;
  await validateAdapterStatistics(ap, nativeParams(resolveParams(o as EditOptions)), (lora as { threads?: number }).threads ?? 0, site);
  for (const mp of plans) mp.pres = ap;
  return ap;
}

/**
 * Opens every input the job reads (the adapters' safetensors, the base's files, the statistics),
 * each checked against the file validated (lib/job/inputs.ts); the reads go through these
 * descriptors. The caller closes it (and its adapters' fd fields are cleared then).
 */
function openAdapterInputs(what: string, oa: PeftAdapter, na: PeftAdapter, base: Checkpoint | undefined, ap: AdapterPreservation | null): OpenInputs & { release(): void } {
  const inputs = new OpenInputs(what);
  const release = () => { delete oa.fd; delete na.fd; if (ap) delete ap.fd; inputs.close(); };
  try {
    oa.fd = inputs.open(oa.modelPath, oa.id);
    na.fd = inputs.open(na.modelPath, na.id);
    for (const f of base?.files ?? []) inputs.open(f.path, f.id);
    if (ap) ap.fd = inputs.open(ap.jp.plan.file, ap.jp.plan.id);
  } catch (e) {
    release();
    throw e;
  }
  return Object.assign(inputs, { release });
}

export { ADAPTER_CONFIG, ADAPTER_MODEL, loadModuleFactors, patternValue, readPeftAdapter, type AdapterModule, type PeftAdapter } from './peft';
export type { AdapterPaths, EditAdaptersOptions } from './modules';
export { adapterReportAsCheckpointManifest, writeAdapterReport } from './report';
export type { AdapterManifest, AdapterModuleReport, AdapterReport } from '../job/manifest';
export { MANIFEST_FILE as LORA_MANIFEST } from '../job/manifest';

/**
 * Geometry of two adapters, module by module, in factor space (density 1): regions, coefficients
 * and energies per module, without writing anything (but the report, when asked for).
 */
export async function analyzeAdapters(paths: { old: string; new: string }, options?: LoraOptions & { perRow?: boolean; report?: string }): Promise<AdapterReport & { perRow?: Record<string, LoraStats> }> {
  const site = callSite(analyzeAdapters);
  markPhase('validation');
  if (!paths || typeof paths !== 'object') throw typeError(`Expected { old, new } adapter directories but received ${describe(paths)}`);
  const { lora, own } = splitOptions(options as EditAdaptersOptions);
  const pres = takePreserve(lora, 'analyzeAdapters');
  const oa = readPeftAdapter(paths.old), na = readPeftAdapter(paths.new);
  const report = own.report === undefined ? undefined : checkReportTarget(own.report, adapterInputs(oa, na));
  const plans = planModules(oa, na);
  const presWarnings: string[] = [];
  const ap = await attachPreservation(pres, plans, lora, undefined, presWarnings, site);
  const mods: AdapterModuleReport[] = [];
  const perRow: Record<string, LoraStats> = {};
  const inputs = openAdapterInputs('the adapter analysis', oa, na, undefined, ap);
  try {
    markPhase('data');
    for (const mp of plans) {
      const prep = await prepareModule(mp, oa, na, lora);
      const st = await loraGeometry(prep, mp.name, site);
      mods.push(moduleReport(mp, st));
      if (own.perRow) perRow[mp.name] = st;
    }
    inputs.checkNotReplaced();
  } finally {
    inputs.release();
  }
  const extras: AdapterReport['extras'] = na.extras.map((t) => ({ tensor: t.name, from: 'new' as const, action: 'copied' as const }));
  const newExtras = new Set(na.extras.map((x) => x.name));
  for (const t of oa.extras) if (!newExtras.has(t.name)) extras.push({ tensor: t.name, from: 'old', action: 'dropped' });
  const rep: AdapterReport & { perRow?: Record<string, LoraStats> } = {
    old: paths.old, new: paths.new, options: { ...lora }, parameters: parametersOf(lora), modules: mods, totals: totalsOf(mods),
    extras, warnings: [...warningsOf(mods, extras), ...presWarnings],
  };
  if (pres) rep.parameters.preserve = { file: pres.file, rho: pres.rho, mu: pres.mu };
  if (own.perRow) rep.perRow = perRow;
  if (!report) return rep;
  return runOutputJob({ kind: 'adapter-analyze', out: null, report, what: 'the adapter analysis' },
    (job) => job.finish(rep, (r) => adapterReportAsCheckpointManifest(r, 'analyze')));
}

function adapterInputs(oa: PeftAdapter, na: PeftAdapter, base?: Checkpoint): InputFiles[] {
  const list: InputFiles[] = [oa, na].map((a) => ({ path: a.dir, dir: a.dir, files: [a.modelPath, a.configPath] }));
  if (base) list.push({ path: base.path, dir: base.dir, files: [...base.files.map((f) => f.path), ...(base.index ? [base.index] : [])] });
  return list;
}

/** The output format, from the options and the paths (checked before any reading). */
function outputFormat(paths: AdapterPaths, lora: LoraOptions, own: EditAdaptersOptions): 'adapter' | 'full' {
  const density = (lora as { density?: number }).density ?? 1;
  const fmt = own.outFormat ?? (density < 1 || paths.base !== undefined ? 'full' : 'adapter');
  if (fmt !== 'adapter' && fmt !== 'full') throw new GeoEditError('ERR_INVALID_OPTION', `Expected 'adapter' or 'full' for option 'outFormat' but received ${describe(fmt)}`, { option: 'outFormat' });
  if (fmt === 'adapter' && density < 1) {
    throw new GeoEditError('ERR_UNSUPPORTED', `density ${density} < 1 cannot be written as an adapter: trimming keeps a different set of entries in every row, which no rank-(r_new + r_old) product B'A' can express; use outFormat 'full' with a base checkpoint`, { option: 'density' });
  }
  if (fmt === 'full' && !paths.base) throw new GeoEditError('ERR_INVALID_OPTION', `outFormat 'full' needs the base checkpoint (base: a .safetensors file)`, { option: 'base' });
  if (fmt === 'adapter' && paths.base !== undefined) throw new GeoEditError('ERR_INVALID_OPTION', `a base checkpoint is only used with outFormat 'full'`, { option: 'base' });
  return fmt;
}

/** maxShardSize and part: for merged output only (an adapter is rank-r factors: small, one file); part resolved early (its index may come from the environment). */
function checkMergeOptions(fmt: 'adapter' | 'full', own: EditAdaptersOptions): PartSpec | null {
  if (fmt === 'adapter' && own.part !== undefined) {
    throw new GeoEditError('ERR_UNSUPPORTED', `option 'part' (--part) divides a merged output (outFormat 'full', with a base) or a checkpoint edit among processes; an adapter output is the edited rank-(r_new + r_old) factors, small enough for one process: run it without --part`, { option: 'part' });
  }
  if (fmt === 'adapter' && own.maxShardSize !== undefined) {
    throw new GeoEditError('ERR_INVALID_OPTION', `option 'maxShardSize' shards a merged output (outFormat 'full'); an adapter output is one adapter_model.safetensors`, { option: 'maxShardSize' });
  }
  if (own.maxShardSize !== undefined) parseSize(own.maxShardSize);
  if (own.part === undefined) return null;
  if (own.report !== undefined) throw new GeoEditError('ERR_INVALID_OPTION', `option 'report' is not taken with 'part': a part holds some tensors only; write the report when the parts are assembled (geoedit assemble --report)`, { option: 'report' });
  return resolvePart(own.part);
}

interface AdapterJob {
  t0: number; paths: AdapterPaths; lora: LoraOptions; own: EditAdaptersOptions; fmt: 'adapter' | 'full';
  oa: PeftAdapter; na: PeftAdapter; base?: Checkpoint; plans: ModulePlan[]; out: string; report?: string;
  /** The input files hashed for the manifest (the adapters' safetensors and the base's), and their records once hashed (sha256 null: hashed by another part). */
  inputPaths: string[]; inputRecords: (hashes: ReadonlyMap<string, { sha256: string }>) => AdapterManifest['inputs'];
  inputs: AdapterManifest['inputs']; site: CallSite;
  pres: PreserveFileOption | null; presWarnings: string[];
  /** A partitioned merge (option part). */
  part: PartSpec | null;
  /** The inputs, open for the job (lib/job/inputs.ts). */
  inputFiles: OpenInputs;
}

function manifestOf(a: AdapterJob, mods: AdapterModuleReport[], extras: AdapterReport['extras'], outputs: AdapterManifest['outputs'], perRow: Record<string, LoraStats>): AdapterManifest {
  const m: AdapterManifest = {
    tool: 'geoedit', kind: a.fmt === 'adapter' ? 'adapter-edit' : 'adapter-merge', createdAt: new Date().toISOString(), versions: versionsBlock(),
    outFormat: a.fmt, timings: { totalMs: Date.now() - a.t0 },
    old: a.paths.old, new: a.paths.new, options: { ...a.lora }, parameters: parametersOf(a.lora), modules: mods, totals: totalsOf(mods), extras,
    warnings: [...warningsOf(mods, extras), ...a.presWarnings], inputs: a.inputs, outputs,
  };
  if (a.pres) m.parameters.preserve = { file: a.pres.file, rho: a.pres.rho, mu: a.pres.mu };
  if (a.own.perRow) m.perRow = perRow;
  return m;
}

async function writeAdapter(a: AdapterJob): Promise<AdapterManifest> {
  markPhase('data');
  const built = await buildAdapterOutput(a.plans, a.oa, a.na, a.lora, a.own, a.site);
  const lineage = [{ role: 'new-adapter', dir: a.na.dir }, { role: 'old-adapter', dir: a.oa.dir }];
  return runOutputJob({ kind: 'adapter-edit', out: a.out, force: a.own.force === true, report: a.report, what: 'the adapter edit', lineage }, async (job) => {
    const outputs = await writeAdapterFiles(job, a.out, built);
    a.inputFiles.checkNotReplaced();
    const m = manifestOf(a, built.mods, built.extras, outputs, built.perRow);
    for (const name of built.omitted) m.warnings.push(`module '${name}': every coefficient is 0, so the edit leaves it unchanged; it is left out of the adapter`);
    // the seal takes the hashes just computed instead of reading the files again
    const known = new Map(outputs.map((o) => [path.basename(o.path), { size: o.bytes, sha256: o.sha256 }]));
    return job.finish(m, (x) => adapterReportAsCheckpointManifest(x, 'edit'), { known });
  });
}

async function writeMerged(a: AdapterJob): Promise<AdapterManifest> {
  const base = a.base!;
  const lineage = [{ role: 'base', dir: base.dir }, { role: 'new-adapter', dir: a.na.dir }, { role: 'old-adapter', dir: a.oa.dir }];
  const part = a.part;
  const maxShardSize = a.own.maxShardSize === undefined ? Infinity : parseSize(a.own.maxShardSize);
  // Planned (every module and extra mapped and checked) before anything is read or written.
  const mp = planMerge(base, a.plans, a.oa, a.na, a.lora, maxShardSize);
  // A partitioned merge: the whole layout is planned; this part writes the shards assigned to it and hashes the inputs assigned to it.
  const record = part ? mergePartRecord(a, mp, part) : null;
  const mine = record ? record.plan.files.map((_, i) => i).filter((i) => record.plan.files[i]!.part === part!.index) : undefined;
  return runOutputJob({ kind: part ? 'adapter-merge-part' : 'adapter-merge', out: a.out, force: a.own.force === true, report: a.report, what: 'the adapter merge', lineage }, async (job: OutputJob) => {
    // The input hashes beside the data pass (as checkpoint jobs hash), through the job's descriptors.
    markPhase('hashing');
    const stop = new AbortController();
    const hashing = hashInputs(record ? record.hashed : a.inputPaths, stop.signal, a.inputFiles.map, a.inputFiles.stats);
    hashing.catch(() => undefined);
    markPhase('data');
    let res: Awaited<ReturnType<typeof mergeIntoBase>>;
    let hs: Array<{ sha256: string; size: number }>;
    try {
      res = await mergeIntoBase(job, base, mp, a.oa, a.na, a.lora, a.own, a.site, mine, a.inputFiles);
      // Hashed as written (res.hashes); read back only where the stream could not hash them.
      const r = res;
      hs = r.hashes.size === r.files.length ? r.files.map((f) => r.hashes.get(f.name)!) : await sha256Files(r.files.map((f) => f.path), job.ctl);
    } catch (e) {
      // the input hash stops (its descriptors are closed after the job) before the error goes on
      stop.abort();
      await hashing.catch(() => undefined);
      throw e;
    }
    a.inputs = a.inputRecords((await hashing).hashes);
    job.checkAborted();
    a.inputFiles.checkNotReplaced();
    const m = manifestOf(a, res.mods, res.extras, res.files.map((f, i) => ({ path: path.join(a.out, f.name), sha256: hs[i]!.sha256, bytes: hs[i]!.size })), res.perRow);
    if (part) m.kind = 'adapter-merge-part';
    // As the checkpoint pipeline does: the base directory's other files (config, tokenizer, ...) come along (a partitioned merge: with part 1).
    if (a.own.copyFiles !== false && base.kind !== 'file' && (!part || part.index === 1)) await job.copySideFiles(base.dir, new Set([...base.files.map((f) => f.path), base.index ?? '']));
    if (record) m.partition = { ...record, files: job.writtenFiles() };
    // the seal takes the shards' hashes (above) instead of reading every shard again
    const known = new Map(res.files.map((f, i) => [f.name, { size: hs[i]!.size, sha256: hs[i]!.sha256 }]));
    return job.finish(m, (x) => adapterReportAsCheckpointManifest(x, 'edit'), { known });
  });
}

/**
 * A merged adapter's part record: the layout's shards assigned to parts (bytes balanced), the key
 * every part shares, and the input files this part hashes (the ones it reads; part 1 also those no
 * part reads: partition/plan.ts hashAssignment, as checkpoint parts do).
 */
function mergePartRecord(a: AdapterJob, mp: MergePlan, part: PartSpec): Omit<PartRecord, 'files'> {
  const layout = mp.layout;
  const assign = assignFiles(layout.shards.map((sh) => ({ name: sh.name, bytes: sh.plan.size })), part.count);
  const plan: PartitionPlan = { files: layout.shards.map((sh, i) => ({ name: sh.name, size: sh.plan.size, tensors: sh.tensors, part: assign[i]! + 1 })), totalSize: layout.totalSize, index: layout.shards.length > 1 };
  const readsOf = new Map<string, Set<number>>();
  shardReads(a.base!, a.oa, a.na, mp).forEach((files, i) => {
    for (const f of files) { let s = readsOf.get(f); if (!s) readsOf.set(f, (s = new Set())); s.add(assign[i]! + 1); }
  });
  const stat = (f: string) => { const st = fs.statSync(f); return { path: f, size: st.size, mtimeMs: Math.floor(st.mtimeMs) }; };
  const identity = {
    version: packageVersion(), kind: 'adapter-merge', parameters: { ...parametersOf(a.lora), ...(a.pres ? { preserve: { file: a.pres.file, rho: a.pres.rho, mu: a.pres.mu } } : {}) }, options: { ...a.lora },
    inputs: [a.oa.modelPath, a.oa.configPath, a.na.modelPath, a.na.configPath, ...a.base!.files.map((f) => f.path), ...(a.base!.index ? [a.base!.index] : [])].map(stat),
    plan, count: part.count, job: { copyFiles: a.own.copyFiles !== false, maxShardSize: a.own.maxShardSize ?? null },
  };
  return { index: part.index, count: part.count, source: part.source, key: partitionKey(identity), planId: planId(plan), plan, hashed: hashAssignment(a.inputPaths, readsOf, part.index), host: os.hostname() };
}

/**
 * Edit two PEFT adapters trained from the same base. outFormat 'adapter' writes a PEFT directory
 * whose modules have rank r_new + r_old and compute exactly the GeoEdit edit (SPEC §4); 'full'
 * merges the edit into the base checkpoint (`paths.base`: a .safetensors file, a directory, or index +
 * shards) and writes out/model.safetensors. Resolves to the manifest (also written as
 * out/geoedit-manifest.json).
 */
export async function editAdapters(paths: AdapterPaths, options?: EditAdaptersOptions): Promise<AdapterManifest> {
  const site = callSite(editAdapters);
  if (!paths || typeof paths !== 'object') throw typeError(`Expected { old, new, out, base? } but received ${describe(paths)}`);
  markPhase('validation');
  const t0 = Date.now();
  const { lora, own } = splitOptions(options);
  const pres = takePreserve(lora, 'editAdapters');
  const fmt = outputFormat(paths, lora, own);
  const part = checkMergeOptions(fmt, own);
  if (typeof paths.out !== 'string' || paths.out.length === 0) throw typeError(`Expected an output path for out but received ${describe(paths.out)}`);
  // Validate the options once before any reading.
  checkAdapterOptions(lora, 'editAdapters');
  const oa = readPeftAdapter(paths.old), na = readPeftAdapter(paths.new);
  if (oa.fanInFanOut !== na.fanInFanOut) {
    throw badAdapter(na.configPath, `fan_in_fan_out is ${na.fanInFanOut} but ${oa.configPath} says ${oa.fanInFanOut}: the adapters do not describe the same base layout`, { key: 'fan_in_fan_out' });
  }
  const base = fmt === 'full' ? openCheckpoint(paths.base!, 'base') : undefined;
  const targets = adapterInputs(oa, na, base);
  if (pres?.file) targets.push({ path: path.resolve(pres.file), dir: path.dirname(path.resolve(pres.file)), files: [path.resolve(pres.file)] });
  const out = checkOutputTarget(paths.out, targets, own.force === true, 'editAdapters');
  const report = own.report === undefined ? undefined : checkReportTarget(own.report, targets, out);
  const plans = planModules(oa, na);
  const presWarnings: string[] = [];
  const ap = await attachPreservation(pres, plans, lora, base, presWarnings, site);
  const inputs = openAdapterInputs(fmt === 'adapter' ? 'the adapter edit' : 'the adapter merge', oa, na, base, ap);
  try {
    const inputPaths = [oa.modelPath, na.modelPath, ...(base ? base.files.map((f) => f.path) : [])];
    const inputRecords = (hs: ReadonlyMap<string, { sha256: string }>): AdapterManifest['inputs'] => {
      const rec = (role: 'base' | 'old' | 'new', f: string) => ({ role, path: f, sha256: hs.get(f)?.sha256 ?? null, bytes: inputs.size(f) });
      return [rec('old', oa.modelPath), rec('new', na.modelPath), ...(base ? base.files.map((f) => rec('base', f.path)) : [])];
    };
    const a: AdapterJob = {
      t0, paths, lora, own, fmt, oa, na, base, plans, out, report, site, pres, presWarnings, part, inputFiles: inputs, inputPaths, inputRecords, inputs: [],
    };
    if (fmt === 'adapter') {
      // The adapters are read whole before the job (the output's factors): hashed first, through the
      // descriptors the data pass reads (the very files validated). A merge hashes beside its data pass.
      markPhase('hashing');
      a.inputs = inputRecords((await hashInputs(inputPaths, undefined, inputs.map, inputs.stats)).hashes);
    }
    return await (fmt === 'adapter' ? writeAdapter(a) : writeMerged(a));
  } finally {
    inputs.release();
  }
}
