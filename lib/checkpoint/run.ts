// A checkpoint job, step by step: resolve the options, open and plan the inputs, check the
// targets, lay the output out, then inside the output job (lib/job): hash the inputs beside the
// data, stream every tensor through the core, build the manifest, copy the side files, finish.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError, describe, typeError } from '../errors';
import type { CallSite } from '../native';
import { cudaStatus } from '../backend';
import { runOutputJob, type OutputJob } from '../job/job';
import { checkOutputTarget, checkReportTarget } from '../job/target';
import { OpenInputs } from '../job/inputs';
import { hashInputs, type InputHashes } from '../job/hash';
import { markPhase } from '../job/phase';
import { packageVersion, versionsBlock } from '../job/versions';
import type { CheckpointManifest, CheckpointTotals, TensorManifestEntry } from '../job/manifest';
import { openCheckpoint, type Checkpoint, type FileId } from './open';
import { choosePreservedBackend, resolveCheckpointOptions, type CheckpointOptions, type Resolved } from './options';
import { inputBytes, plan, shardLayout, shardNames, type CheckpointInputs, type PlanItem } from './plan';
import { CheckpointStream, degenerateThreshold } from './stream';
import { readModelFamily, type ModelFamily } from './layout';
import { findTies, type TieRecord } from './ties';
import { openCoefficients, type CoefficientsFile } from './coefficients';
import { nativeParams } from '../options';
import { planJobPreservation, preserveWork, validateStatisticValues, weightInfos, type JobPreservation } from '../preserve/plan';
import type { WeightInfo } from '../preserve/file';
import { planSafetensors } from '../safetensors';
import { assignFiles, hashAssignment, partitionKey, planId, resolvePart, type PartitionPlan, type PartRecord, type PartSpec } from '../partition/plan';
import * as os from 'node:os';

export interface CheckpointJob {
  kind: 'edit' | 'analyze';
  inputs: CheckpointInputs;
  opts: CheckpointOptions;
  out: string | null;
  site: CallSite;
}

interface Inputs { base: Checkpoint; old: Checkpoint; new: Checkpoint; impOld?: Checkpoint; impNew?: Checkpoint }

/** Everything decided before any output is written. */
interface Prepared {
  job: CheckpointJob;
  r: Resolved;
  ck: Inputs;
  items: PlanItem[];
  family: ModelFamily;
  ties: TieRecord[];
  coefficients: CoefficientsFile | null;
  warnings: string[];
  allInputFiles: Set<string>;
  out: string | null;
  report: string | undefined;
  validateMs: number;
  t0: number;
  pres?: { jp: JobPreservation; model: Map<string, WeightInfo> };
  /** A partitioned edit (option part): this part's shards, its record, the input files it hashes. */
  part?: PartOfJob;
}

interface PartOfJob {
  spec: PartSpec;
  /** Every shard of the whole job, and the names. */
  shards: PlanItem[][];
  names: string[];
  /** Indices of this part's shards. */
  mine: number[];
  record: Omit<PartRecord, 'files'>;
}

function openInputs(inputs: CheckpointInputs, opts: CheckpointOptions): Inputs {
  return {
    base: openCheckpoint(inputs.base, 'base'),
    old: openCheckpoint(inputs.old, 'old'),
    new: openCheckpoint(inputs.new, 'new'),
    impOld: opts.importanceOld ? openCheckpoint(opts.importanceOld, 'importanceOld') : undefined,
    impNew: opts.importanceNew ? openCheckpoint(opts.importanceNew, 'importanceNew') : undefined,
  };
}

function present(ck: Inputs): Checkpoint[] {
  return [ck.base, ck.old, ck.new, ck.impOld, ck.impNew].filter((c): c is Checkpoint => c !== undefined);
}

/** Options, inputs, plan and targets: every check that can fail before work starts. */
function prepare(job: CheckpointJob): Prepared {
  markPhase('validation');
  const t0 = Date.now();
  const what = job.kind === 'edit' ? 'editCheckpoint' : 'analyzeCheckpoint';
  if (!job.inputs || typeof job.inputs !== 'object') throw typeError(`Expected { base, old, new${job.kind === 'edit' ? ', out' : ''} } for ${what} but received ${describe(job.inputs)}`);
  const opts = job.opts ?? {};
  const r = resolveCheckpointOptions(opts, what);
  const warnings: string[] = [];
  const ck = openInputs(job.inputs, opts);
  const family = readModelFamily(ck.base.dir, warnings);
  const ties = findTies(ck, family, warnings);
  const items = plan(ck, r, warnings, { family, ties });
  const coefficients = r.coefficients ? openCoefficients(r.coefficients, items, warnings) : null;
  warnDegenerate(items, r, warnings);
  let pres: Prepared['pres'];
  if (r.preserve) {
    const layouts = new Map(items.map((i) => [i.name, i.layout]));
    const model = weightInfos(ck.base.tensors.map((t) => ({ name: t.name, shape: t.shape, layout: layouts.get(t.name) })));
    pres = { jp: planJobPreservation(r.preserve, model, new Set(items.filter((i) => i.action === 'edit').map((i) => i.name)), warnings), model };
    const streamed = job.kind === 'edit' ? items : items.filter((i) => i.action === 'edit');
    choosePreservedBackend(r, opts, preserveWork(pres.jp, streamed));
  }
  const allInputFiles = new Set<string>();
  for (const c of present(ck)) for (const f of c.files) allInputFiles.add(f.path);
  const inputs = present(ck).map((c) => ({ path: c.path, dir: c.dir, files: [...c.files.map((f) => f.path), ...(c.index ? [c.index] : [])] }));
  if (r.preserve?.file) inputs.push({ path: path.resolve(r.preserve.file), dir: path.dirname(path.resolve(r.preserve.file)), files: [path.resolve(r.preserve.file)] });
  if (coefficients) inputs.push({ path: coefficients.path, dir: path.dirname(coefficients.path), files: [coefficients.path] });
  const out = job.kind === 'edit' ? checkOutputTarget(job.out, inputs, opts.force === true, 'editCheckpoint') : null;
  const report = opts.report === undefined ? undefined : checkReportTarget(opts.report, inputs, out);
  if (coefficients) allInputFiles.add(coefficients.path);
  const p: Prepared = { job, r, ck, items, family, ties, coefficients, warnings, allInputFiles, out, report, validateMs: 0, t0, ...(pres ? { pres } : {}) };
  if (opts.part !== undefined) {
    if (job.kind !== 'edit') throw new GeoEditError('ERR_INVALID_OPTION', `option 'part' is for editCheckpoint (analyzeCheckpoint writes no shards to divide)`, { option: 'part' });
    if (opts.report !== undefined) throw new GeoEditError('ERR_INVALID_OPTION', `option 'report' is not taken with 'part': a part holds some tensors only; write the report when the parts are assembled (geoedit assemble --report)`, { option: 'report' });
    p.part = planPart(p, resolvePart(opts.part));
  }
  p.validateMs = Date.now() - t0;
  return p;
}

/** The safetensors metadata of every output shard (the same in every part). */
function shardMetadata(p: Prepared): Record<string, string> {
  return {
    ...(p.ck.base.metadata ?? {}), format: 'pt', 'geoedit.version': packageVersion(), 'geoedit.strategy': p.r.params.strategy,
    'geoedit.parameters': JSON.stringify(parametersOf(p)),
  };
}

/**
 * The whole job's shard layout (as the unpartitioned edit lays it out), the part each shard goes to
 * (lib/partition/plan.ts assignFiles: bytes balanced; a tied tensor and its primary, an augmented
 * bias and its weight, in one part), and the input files this part hashes (the ones it reads).
 */
function planPart(p: Prepared, spec: PartSpec): PartOfJob {
  const shards = shardLayout(p.items, p.r.maxShardSize);
  const names = shardNames(shards.length);
  const meta = shardMetadata(p);
  const sizes = shards.map((items) => planSafetensors(items.map((it) => ({ name: it.name, dtype: it.outDtype, shape: it.shape })), meta).size);
  const shardOf = new Map<string, number>();
  shards.forEach((items, i) => { for (const it of items) shardOf.set(it.name, i); });
  const groups: number[][] = [];
  for (const it of p.items) if (it.tiedTo !== undefined) groups.push([shardOf.get(it.name)!, shardOf.get(it.tiedTo)!]);
  for (const [w, b] of p.pres?.jp.biasOfWeight ?? []) groups.push([shardOf.get(w)!, shardOf.get(b)!]);
  const assign = assignFiles(names.map((name, i) => ({ name, bytes: sizes[i]! })), spec.count, groups);
  const plan: PartitionPlan = {
    files: names.map((name, i) => ({ name, size: sizes[i]!, tensors: shards[i]!.map((it) => it.name), part: assign[i]! + 1 })),
    totalSize: p.items.reduce((a, it) => a + it.outBytes, 0), index: shards.length > 1,
  };
  // Who reads which input file: each part hashes the files it reads; part 1 also those no part reads.
  const readsOf = new Map<string, Set<number>>();
  const reads = (f: string | undefined, part: number) => { if (f) { let s = readsOf.get(f); if (!s) readsOf.set(f, (s = new Set())); s.add(part); } };
  shards.forEach((items, i) => {
    for (const it of items) {
      if (it.action === 'tied') continue;
      reads(it.base.file, assign[i]! + 1);
      if (it.action === 'edit') for (const t of [it.old, it.new, it.impOld, it.impNew]) reads(t?.file, assign[i]! + 1);
    }
  });
  const hashed = p.job.opts.hash === false ? [] : hashAssignment(filesToHash(p), readsOf, spec.index);
  const identity = {
    version: packageVersion(), kind: 'checkpoint-edit', parameters: parametersOf(p), plan, count: spec.count,
    inputs: { files: present(p.ck).map((c) => ({ path: c.path, kind: c.kind, files: [...c.files.map((f) => f.path), ...(c.index ? [c.index] : [])].map(statRecord) })), coefficients: p.coefficients ? statRecord(p.coefficients.path) : null, preserve: p.r.preserve ? statRecord(path.resolve(p.r.preserve.file)) : null },
    job: { hash: p.job.opts.hash !== false, copyFiles: p.job.opts.copyFiles !== false },
  };
  const mine = names.map((_, i) => i).filter((i) => assign[i]! + 1 === spec.index);
  return {
    spec, shards, names, mine,
    record: { index: spec.index, count: spec.count, source: spec.source, key: partitionKey(identity), planId: planId(plan), plan, hashed, host: os.hostname() },
  };
}

/** An input file as every part must see it: path, size and modification time. */
function statRecord(f: string): { path: string; size: number; mtimeMs: number } {
  const st = fs.statSync(f);
  return { path: f, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
}

/** Per-tensor warnings of one kind past this many become one line with the count (a model of 100,000 tiny tensors). */
const WARN_PER_TENSOR_MAX = 100;

/** SPEC §3.2 with κ/√n ≥ 1: the adaptive band holds every row; said per tensor (the first WARN_PER_TENSOR_MAX), not applied silently. */
function warnDegenerate(items: PlanItem[], r: Resolved, warnings: string[]): void {
  let k = 0;
  for (const it of items) {
    if (it.action !== 'edit' || !degenerateThreshold(r.params, it.layout.cols)) continue;
    if (++k > WARN_PER_TENSOR_MAX) continue;
    const n = it.layout.cols;
    warnings.push(`tensor '${it.name}': its neurons (layout ${it.layout.kind}) have n = ${n} element${n === 1 ? '' : 's'}, so the adaptive threshold κ/√n = ${(r.params.kappa / Math.sqrt(n)).toFixed(3)} ≥ 1 and every row counts as orthogonal (keepOrthogonal ${r.params.keepOrthogonal} applies to the whole tensor); pass bandDegrees, a kappa below √n = ${Math.sqrt(n).toFixed(3)}, or exclude it`);
  }
  if (k > WARN_PER_TENSOR_MAX) warnings.push(`${k - WARN_PER_TENSOR_MAX} more tensors have κ/√n ≥ 1 (every row orthogonal), as the ${WARN_PER_TENSOR_MAX} above: their manifest entries say degenerateThreshold: true`);
}

function modelRecord(p: Prepared): NonNullable<CheckpointManifest['model']> {
  const f = p.family;
  return { config: f.config, modelType: f.modelType, architectures: f.architectures, family: f.family, layoutRule: f.rule, tieWordEmbeddings: f.tieWordEmbeddings, ties: p.ties };
}

function parametersOf(p: Prepared): CheckpointManifest['parameters'] {
  const o = p.job.opts;
  return {
    ...p.r.params, outDtype: p.r.outDtype,
    include: o.include === undefined ? null : ([] as string[]).concat(o.include),
    exclude: o.exclude === undefined ? null : ([] as string[]).concat(o.exclude),
    maxShardSize: p.r.maxShardSize, threads: p.r.threads,
    layout: o.layout === undefined ? null : { ...o.layout }, coefficients: p.r.coefficients,
    ...(p.r.preserve ? { preserve: { file: p.r.preserve.file, rho: p.r.preserve.rho, mu: p.r.preserve.mu } } : {}),
  };
}

export function totalsOf(items: { length: number }, entries: TensorManifestEntry[], bytesRead: number, bytesWritten: number): CheckpointTotals {
  const t: CheckpointTotals = {
    tensors: items.length, edited: 0, copied: 0, converted: 0, tied: 0, rows: 0,
    counts: { orthogonal: 0, synergy: 0, conflict: 0 }, energy: { new: 0, old: 0, applied: 0 }, energyKept: null, bytesRead, bytesWritten,
  };
  for (const e of entries) {
    if (e.action === 'edit') {
      t.edited++;
      t.rows += e.rows!;
      for (const k of ['orthogonal', 'synergy', 'conflict'] as const) t.counts[k] += e.counts![k];
      t.energy.new += e.energy!.new;
      t.energy.old += e.energy!.old;
      t.energy.applied += e.energy!.applied;
    } else if (e.action === 'copy') t.copied++;
    else if (e.action === 'tied') t.tied!++;
    else t.converted++;
  }
  t.energyKept = t.energy.new > 0 ? t.energy.applied / t.energy.new : null;
  return t;
}

function inputsRecord(ck: Inputs, hashes: InputHashes['hashes'] | null): CheckpointManifest['inputs'] {
  const rec: CheckpointManifest['inputs'] = {};
  const file = (p: string, size: number) => {
    const h = hashes?.get(p);
    return { path: p, size, sha256: h?.sha256 ?? null, sha256Source: h?.source ?? null };
  };
  for (const [role, c] of Object.entries(ck) as Array<[string, Checkpoint | undefined]>) {
    if (!c) continue;
    rec[role] = { path: c.path, kind: c.kind, files: c.files.map((f) => file(f.path, f.size)) };
    if (c.index) rec[role]!.files.push(file(c.index, fs.statSync(c.index).size));
  }
  return rec;
}

/** Every input file the manifest lists: the safetensors files and the index files. */
function filesToHash(p: Prepared): string[] {
  const idx = (Object.values(p.ck) as Array<Checkpoint | undefined>).map((c) => c?.index).filter((x): x is string => !!x);
  return [...p.allInputFiles, ...idx];
}

/** The data step: every tensor through the core, into the job's output (edit) or into statistics only (analyze). */
async function streamData(p: Prepared, job: OutputJob, fds: Map<string, number>): Promise<{ stream: CheckpointStream; files: Array<{ name: string; size: number; tensors: number }>; known?: Map<string, { size: number; sha256: string }>; hashStats?: { fromMemory: number; reread: number } | null }> {
  const edit = p.job.kind === 'edit';
  const part = p.part;
  const outItems = part ? part.mine.flatMap((i) => part.shards[i]!) : edit ? p.items : p.items.filter((i) => i.action === 'edit');
  const presFd = p.pres ? fds.get(p.pres.jp.plan.file)! : -1;
  const stream = new CheckpointStream({
    job, r: p.r, fds, site: p.job.site, phase: p.job.kind, onProgress: p.job.opts.onProgress, t0: p.t0,
    bytesTotal: outItems.reduce((s, it) => s + inputBytes(it), 0), tensorsTotal: outItems.length, coefficients: p.coefficients,
    ...(p.pres ? { pres: { jp: p.pres.jp, fd: presFd } } : {}),
  });
  try {
    if (!edit) {
      await stream.analyze(outItems);
      return { stream, files: [] };
    }
    const meta = shardMetadata(p);
    if (part) {
      // Only this part's shards (the index is written by assemble, from the plan).
      const r = await stream.writeShards(part.mine.map((i) => part.shards[i]!), part.mine.map((i) => part.names[i]!), meta);
      return { stream, files: r.files, known: r.hashes, hashStats: r.hashStats };
    }
    const shards = shardLayout(outItems, p.r.maxShardSize);
    const names = shardNames(shards.length);
    const { files, weightMap, hashes, hashStats } = await stream.writeShards(shards, names, meta);
    if (shards.length > 1) {
      const totalSize = p.items.reduce((a, it) => a + it.outBytes, 0);
      fs.writeFileSync(job.path('model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n');
    }
    return { stream, files, known: hashes, hashStats };
  } finally {
    stream.stop();
  }
}

function inPlanOrder(entries: TensorManifestEntry[], items: PlanItem[]): TensorManifestEntry[] {
  const at = new Map(items.map((it, k) => [it.name, k]));
  return [...entries].sort((a, b) => at.get(a.name)! - at.get(b.name)!);
}

/** Opens every input file the data pass reads, each checked to be the file whose header was validated (device + inode). */
function openInputFiles(p: Prepared, inputs: OpenInputs): void {
  const ids = new Map<string, FileId>();
  for (const c of present(p.ck)) for (const f of c.files) ids.set(f.path, f.id);
  for (const f of p.allInputFiles) inputs.open(f, ids.get(f));
  if (p.pres) inputs.open(p.pres.jp.plan.file, p.pres.jp.plan.id);
}

async function work(p: Prepared, job: OutputJob): Promise<CheckpointManifest> {
  const opts = p.job.opts;
  const inputs = new OpenInputs(p.job.kind === 'edit' ? 'the edit' : 'the analysis');
  const fds = inputs.map;
  // The input hash stops on the caller's signal, or when the data pass fails: it reads the job's
  // descriptors, which close (finally, below) only after it has settled.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  if (opts.signal?.aborted) stop.abort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    openInputFiles(p, inputs);
    // Hashing runs beside the data path: the files not in the hash cache, all at once on native
    // threads (lib/job/hash.ts).
    const hashStart = Date.now();
    let hashMs = 0;
    if (opts.hash !== false) markPhase('hashing');
    const hashing = opts.hash === false ? null : hashInputs(p.part ? p.part.record.hashed : filesToHash(p), stop.signal, fds, inputs.stats).then((m) => { hashMs = Date.now() - hashStart; return m; });
    hashing?.catch(() => undefined);
    const dataStart = Date.now();
    markPhase('data');
    let streamed: Awaited<ReturnType<typeof streamData>>;
    try {
      streamed = await streamData(p, job, fds);
    } catch (e) {
      stop.abort();
      await hashing?.catch(() => undefined);
      throw e;
    }
    const { stream, files, known, hashStats } = streamed;
    const dataMs = Date.now() - dataStart;
    const hashes = hashing ? await hashing : null;
    job.checkAborted();
    inputs.checkNotReplaced();
    const items = p.part ? p.part.mine.flatMap((i) => p.part!.shards[i]!) : p.items;
    const manifest: CheckpointManifest = {
      tool: 'geoedit', kind: p.part ? 'checkpoint-edit-part' : p.job.kind === 'edit' ? 'checkpoint-edit' : 'checkpoint-analyze', createdAt: new Date().toISOString(),
      versions: versionsBlock(),
      backend: { name: p.r.backend, device: p.r.backend === 'cuda' ? cudaStatus().device?.name ?? null : null, requested: p.r.backendChoice.requested, reason: p.r.backendChoice.reason },
      inputs: inputsRecord(p.ck, hashes?.hashes ?? null),
      output: p.out ? { path: p.out, files, totalSize: items.reduce((a, it) => a + it.outBytes, 0) } : null,
      parameters: parametersOf(p),
      tensors: inPlanOrder(stream.entries, items),
      totals: totalsOf(items, stream.entries, stream.bytesRead, files.reduce((a, f) => a + f.size, 0)),
      timings: { totalMs: Date.now() - p.t0, validateMs: p.validateMs, dataMs, hashMs, gbPerSecond: dataMs > 0 ? stream.bytesRead / 1e9 / (dataMs / 1000) : 0, ...(hashStats ? { outputHash: hashStats } : {}) },
      hashing: hashes ? { provider: hashes.provider, bytesHashed: hashes.bytesHashed, fromCache: [...hashes.hashes.values()].filter((h) => h.source === 'cache').length, computed: [...hashes.hashes.values()].filter((h) => h.source === 'computed').length } : null,
      warnings: p.warnings,
      model: modelRecord(p),
    };
    // A partitioned edit: part 1 carries the base directory's other files (assemble takes them from it).
    if (p.out && opts.copyFiles !== false && p.ck.base.kind !== 'file' && (!p.part || p.part.spec.index === 1)) {
      await job.copySideFiles(p.ck.base.dir, new Set([...p.ck.base.files.map((f) => f.path), p.ck.base.index ?? '']));
    }
    if (p.part) manifest.partition = { ...p.part.record, files: job.writtenFiles() };
    return await job.finish(manifest, undefined, known && known.size ? { known } : undefined);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    inputs.close();
  }
}

/** Runs a checkpoint edit or analysis: nothing appears at the target unless it completes. */
export async function runCheckpointJob(cj: CheckpointJob): Promise<CheckpointManifest> {
  const p = prepare(cj);
  // The statistics' values, checked by the core before any output exists (one statistic at a time).
  if (p.pres) await validateStatisticValues(p.pres.jp, p.pres.model, nativeParams(p.r.params), p.r.threads, cj.site);
  const lineage = [{ role: 'base', dir: p.ck.base.dir }, { role: 'new', dir: p.ck.new.dir }, { role: 'old', dir: p.ck.old.dir }];
  return runOutputJob({ kind: p.part ? 'checkpoint-edit-part' : cj.kind === 'edit' ? 'checkpoint-edit' : 'checkpoint-analyze', out: p.out, force: cj.opts?.force === true, signal: cj.opts?.signal, report: p.report, what: 'the checkpoint job', lineage },
    (job) => work(p, job));
}
