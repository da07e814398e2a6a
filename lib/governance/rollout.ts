// Staged rollout: edit at each stage's strength (`scale`, or an option set such as a subset of
// layers through `include`), evaluate the stage, and go on only while every gate passes. Stages are
// written to a temporary directory beside the target and removed; the output is the last stage
// that passed, with every stage's parameters, metrics and gate results in its manifest (`rollout`,
// covered by the id). Nothing appears at the target when the first stage fails. The target follows
// the job layer's rules (lib/job): checked before any work (not an input, --force only over a
// previous geoedit output or a file), and run as an output job (lib/job/job.ts OutputJob: the
// target's lock for the whole rollout, the stages in its temporary directory, removed on an error, a
// signal or exit; the chosen stage fsync'ed and committed by OutputJob.commit: no replace of what
// appeared meanwhile).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError } from '../errors';
import { editCheckpoint, openCheckpoint, type CheckpointOptions } from '../checkpoint';
import { editAdapters, type EditAdaptersOptions } from '../lora';
import { runOutputJob, type OutputJob } from '../job/job';
import { markPhase } from '../job/phase';
import { checkOutputTarget, type InputFiles } from '../job/target';
import { MANIFEST_FILE, loadSealedManifest, manifestId, manifestText, parentRefOf, type Manifest } from './lineage';
import {
  evaluate, findBaseline, parseGate, rebindEvaluations,
  type Baseline, type EvaluateOptions, type EvaluationEntry, type EvaluationResult, type Gate, type GateResult, type Metrics,
} from './evaluate';

export type RolloutStage = number | Record<string, unknown>;

export interface RolloutOptions {
  /** Checkpoint form: base, old, new. Adapter form: oldAdapter, newAdapter (and base for merged weights). */
  base?: string;
  old?: string;
  new?: string;
  oldAdapter?: string;
  newAdapter?: string;
  out: string;
  /** Each stage: a scale, or an option set merged over `options` (e.g. { scale: 1, include: ['*.mlp.*'] }). */
  stages: RolloutStage[];
  scorer?: string;
  score?: EvaluateOptions['score'];
  scorerName?: string;
  gates: Array<string | Gate>;
  timeout?: number;
  baseline?: EvaluateOptions['baseline'];
  /** Options every stage's edit shares (editCheckpoint / editAdapters options). */
  options?: CheckpointOptions | EditAdaptersOptions;
  /** Replace an existing output directory. */
  force?: boolean;
  onStage?: (e: StageEvent) => void;
}

export interface StageEvent {
  index: number;
  total: number;
  phase: 'edit' | 'evaluate' | 'passed' | 'failed';
  options: Record<string, unknown>;
  evaluation?: EvaluationResult;
}

export interface StageRecord {
  index: number;
  options: Record<string, unknown>;
  /** The stage's manifest id (the output's own id differs: its manifest also holds this rollout record). */
  manifestId: string;
  metrics: Metrics;
  gates: GateResult[];
  passed: boolean;
  durationMs: number;
}

export interface RolloutRecord {
  form: 'checkpoint' | 'adapter';
  scorer: string;
  gates: string[];
  baseline: Baseline | null;
  stages: StageRecord[];
  /** The stage written to the output (index), or null when the first failed. */
  chosen: number | null;
  /** The stage whose gates failed, or null when every stage passed. */
  stoppedAt: number | null;
}

export interface RolloutResult extends RolloutRecord {
  /** At least one stage passed and the output was written. */
  passed: boolean;
  out: string | null;
  /** The output's manifest id. */
  id: string | null;
}

export function normalizeStages(stages: unknown): Array<Record<string, unknown>> {
  if (!Array.isArray(stages) || stages.length === 0) throw new GeoEditError('ERR_INVALID_OPTION', `Expected a non-empty list of stages (scales such as [0.25, 0.5, 1], or option sets) but received ${JSON.stringify(stages)}`, { option: 'stages' });
  return stages.map((s, i) => {
    if (typeof s === 'number') {
      if (!Number.isFinite(s) || s <= 0) throw new GeoEditError('ERR_INVALID_OPTION', `stage ${i + 1}: Expected a scale > 0 but received ${s}`, { option: 'stages' });
      return { scale: s };
    }
    if (s && typeof s === 'object' && !Array.isArray(s)) return { ...(s as Record<string, unknown>) };
    throw new GeoEditError('ERR_INVALID_OPTION', `stage ${i + 1}: Expected a scale or an object of edit options but received ${JSON.stringify(s)}`, { option: 'stages' });
  });
}

/** Every string in a value with `from` replaced by `to` (the stage directory's path → the output's). */
function repath<T>(v: T, from: string, to: string): T {
  if (typeof v === 'string') return (v.startsWith(from) ? to + v.slice(from.length) : v) as T;
  if (Array.isArray(v)) return v.map((x) => repath(x, from, to)) as T;
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) o[k] = repath(x, from, to);
    return o as T;
  }
  return v;
}

interface Plan {
  adapter: boolean;
  out: string;
  stages: Array<Record<string, unknown>>;
  gates: Gate[];
  label: string;
  evalBase: EvaluateOptions;
}

/** Checks the options before anything is read or written. */
function planRollout(o: RolloutOptions): Plan {
  if (!o || typeof o !== 'object') throw new GeoEditError('ERR_INVALID_OPTION', 'rollout needs an options object');
  const adapter = o.oldAdapter !== undefined || o.newAdapter !== undefined;
  if (adapter) {
    if (typeof o.oldAdapter !== 'string' || typeof o.newAdapter !== 'string') throw new GeoEditError('ERR_INVALID_OPTION', 'the adapter form needs both oldAdapter and newAdapter', { option: 'oldAdapter' });
    if (o.old !== undefined || o.new !== undefined) throw new GeoEditError('ERR_INVALID_OPTION', 'give old/new (checkpoints) or oldAdapter/newAdapter, not both', { option: 'old' });
  } else {
    for (const k of ['base', 'old', 'new'] as const) if (typeof o[k] !== 'string') throw new GeoEditError('ERR_INVALID_OPTION', `rollout needs '${k}' (or the adapter form: oldAdapter, newAdapter)`, { option: k });
  }
  if (typeof o.out !== 'string' || !o.out) throw new GeoEditError('ERR_INVALID_OPTION', "rollout needs 'out'", { option: 'out' });
  const stages = normalizeStages(o.stages);
  const gates = (o.gates ?? []).map((g) => (typeof g === 'string' ? parseGate(g) : g));
  if (!gates.length) throw new GeoEditError('ERR_INVALID_OPTION', 'a rollout needs at least one gate: it goes on only while the gates pass', { option: 'gates' });
  if ((o.scorer === undefined) === (o.score === undefined)) throw new GeoEditError('ERR_INVALID_OPTION', "rollout needs exactly one of 'scorer' (a command) and 'score' (a function)", { option: 'scorer' });
  // The output's checks of every job (lib/job/target.ts): not an input, exists only with force (and
  // force replaces only a previous output or a file), the parent exists, the name fits.
  const out = checkOutputTarget(o.out, rolloutInputs(o, adapter), o.force === true, 'rollout');
  const evalBase: EvaluateOptions = { ...(o.scorer !== undefined ? { scorer: o.scorer } : { score: o.score! }), ...(o.scorerName ? { scorerName: o.scorerName } : {}), ...(o.timeout !== undefined ? { timeout: o.timeout } : {}) };
  return { adapter, out, stages, gates, label: o.scorer ?? o.scorerName ?? 'function', evalBase };
}

/** The paths a rollout reads (its target may not be, hold or lie inside any of them). */
function rolloutInputs(o: RolloutOptions, adapter: boolean): InputFiles[] {
  const opts = (o.options ?? {}) as Record<string, unknown>;
  const preserve = opts.preserve as { file?: unknown } | undefined;
  const given = [
    ...(adapter ? [o.oldAdapter, o.newAdapter] : [o.old, o.new]), o.base,
    opts.importanceOld, opts.importanceNew, opts.coefficients, typeof preserve === 'string' ? preserve : preserve?.file,
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);
  return given.map((p) => {
    const abs = path.resolve(p);
    const isDir = fs.statSync(abs, { throwIfNoEntry: false })?.isDirectory() === true;
    const dir = isDir ? abs : path.dirname(abs);
    // A directory input counts with its files, each compared by device + inode too (a hard link to a shard is that shard).
    const filesOf = (d: string) => fs.readdirSync(d).map((n) => path.join(d, n)).filter((f) => fs.statSync(f, { throwIfNoEntry: false })?.isFile());
    const files = isDir ? filesOf(abs) : abs.endsWith('.index.json') ? [abs, ...filesOf(dir)] : [abs];
    return { path: abs, dir, files };
  });
}

/** Edits one stage into dir with the shared options and the stage's own. */
async function editStage(o: RolloutOptions, adapter: boolean, st: Record<string, unknown>, dir: string): Promise<void> {
  const common = { ...((o.options ?? {}) as Record<string, unknown>) };
  delete common.report;
  delete common.force;
  if (adapter) await editAdapters({ old: o.oldAdapter!, new: o.newAdapter!, out: dir, ...(o.base ? { base: o.base } : {}) }, { ...common, ...st } as EditAdaptersOptions);
  else await editCheckpoint({ base: o.base!, old: o.old!, new: o.new!, out: dir }, { ...common, ...st } as CheckpointOptions);
}

/** The chosen stage becomes the output: its manifest names the output's path and holds the rollout record, re-sealed; then committed (OutputJob.commit: fsync'ed, renamed into place). */
async function commitStage(job: OutputJob, stageDir: string, out: string, record: RolloutRecord): Promise<string> {
  const lm = loadSealedManifest(stageDir);
  const m = repath(lm.manifest, stageDir, out);
  const stageEvals = (m.evaluations as EvaluationEntry[] | undefined) ?? [];
  delete m.evaluations;
  m.rollout = record;
  // the new id (over the repathed manifest with its rollout record), and the manifest written once (in the job's directory: fsync'ed by the commit)
  delete m.id;
  const id = manifestId(m);
  fs.writeFileSync(path.join(stageDir, MANIFEST_FILE), manifestText({ id, ...m, evaluations: rebindEvaluations(stageEvals, id) }));
  markPhase('commit');
  await job.commit(stageDir);
  return id;
}

/** Runs a staged rollout (see the file comment). Resolves with passed: false (and nothing at out) when the first stage fails. */
export async function rollout(o: RolloutOptions): Promise<RolloutResult> {
  const plan = planRollout(o);
  const { adapter, out, gates, label, evalBase } = plan;
  // The baseline once, before any stage: the base's own evaluation by this scorer, else the base scored now.
  let baseline: Baseline | null = null;
  if (gates.some((g) => g.relative)) {
    const baseDir = o.base ? openCheckpoint(o.base, 'base').dir : null;
    const pseudo: Manifest = { parent: baseDir ? parentRefOf(baseDir, 'base') : null, inputs: o.base ? { base: { path: path.resolve(o.base) } } : {} };
    baseline = await findBaseline({ ...evalBase, ...(o.baseline !== undefined ? { baseline: o.baseline } : {}) }, pseudo, label);
  }
  // An output job: the target's lock for the whole rollout (a second job on it: ERR_TARGET_BUSY), the stages in its temporary directory.
  return runOutputJob({ kind: adapter ? 'adapter-edit' : 'checkpoint-edit', out, force: o.force === true, what: 'the rollout' }, (job) => runStages(o, plan, baseline, job));
}

/** Each stage edited into the job's temporary directory and evaluated; the last that passed is committed, the others removed. */
async function runStages(o: RolloutOptions, { adapter, out, stages, gates, label, evalBase }: Plan, baseline: Baseline | null, job: OutputJob): Promise<RolloutResult> {
  const tmpRoot = job.tmp!;
  const records: StageRecord[] = [];
  let chosen: { index: number; dir: string } | null = null;
  let stoppedAt: number | null = null;
  for (let i = 0; i < stages.length && stoppedAt === null; i++) {
    const st = stages[i]!;
    const dir = path.join(tmpRoot, `stage-${i + 1}`);
    const t0 = Date.now();
    o.onStage?.({ index: i, total: stages.length, phase: 'edit', options: st });
    await editStage(o, adapter, st, dir);
    o.onStage?.({ index: i, total: stages.length, phase: 'evaluate', options: st });
    const ev = await evaluate(dir, { ...evalBase, gates, ...(baseline ? { baseline } : {}), context: { rolloutStage: i + 1, stageOptions: st } });
    records.push({ index: i, options: st, manifestId: ev.manifestId, metrics: ev.metrics, gates: ev.gates, passed: ev.passed, durationMs: Date.now() - t0 });
    o.onStage?.({ index: i, total: stages.length, phase: ev.passed ? 'passed' : 'failed', options: st, evaluation: ev });
    if (!ev.passed) {
      stoppedAt = i;
      fs.rmSync(dir, { recursive: true, force: true });
    } else {
      if (chosen) fs.rmSync(chosen.dir, { recursive: true, force: true });
      chosen = { index: i, dir };
    }
  }
  const record: RolloutRecord = { form: adapter ? 'adapter' : 'checkpoint', scorer: label, gates: gates.map((g) => g.expr), baseline, stages: records, chosen: chosen?.index ?? null, stoppedAt };
  if (!chosen) return { ...record, passed: false, out: null, id: null };
  return { ...record, passed: true, out, id: await commitStage(job, chosen.dir, out, record) };
}
