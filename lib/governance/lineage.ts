// Lineage: every manifest carries a stable `id` (SHA-256 of its canonical JSON, without the
// sections appended later), the SHA-256 of every output file, and — when an input directory holds
// a geoedit manifest — its `parent` (that manifest's id and summary), so edits chain.
// sealManifest() is the one call the writers make when a manifest is finalised; readLineage()
// walks the chain newest first.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { GeoEditError } from '../errors';
import { writeFileAtomicSync } from '../job/atomic';
import { DEFAULTS } from '../options';
import { sha256Files } from './hashing';
import { canonicalJson, canonicalSha256, writeManifestFile, manifestText } from './manifest-json';

export const MANIFEST_FILE = 'geoedit-manifest.json';
export const REVIEW_LOG = 'geoedit-reviews.jsonl';
export const REPORT_FILE = 'geoedit-report.html';
/** Lineage format of the fields below (bumped if their meaning changes). */
export const LINEAGE_VERSION = 1;
/** Top-level manifest keys that are not covered by the id: appended after the output is written. */
export const APPENDED_SECTIONS: readonly string[] = ['evaluations', 'reviews'];

/** A file of the output directory with its hash (names relative to the directory, '/'-separated). */
export interface OutputFile {
  name: string;
  size: number;
  sha256: string;
}

/** What a manifest records about the manifest found in one of its input directories. */
export interface ParentRef {
  id: string;
  /** The input that held it: 'base', 'new', 'old' (adapters: 'base', 'new-adapter', 'old-adapter'). */
  role: string;
  /** The input directory, absolute, as it was when this edit ran. */
  path: string;
  kind: string;
  createdAt: string | null;
  /** The parent's own parent id (so `log` can name it even when that directory is gone). */
  parent: string | null;
  /** False when the parent's stored id did not match its content (hand-edited): recorded, with a warning. */
  idMatches: boolean;
  /** The parent's manifest predates lineage (no stored id): `id` is its content's hash. */
  legacy?: true;
  /** The parent's recorded summary: strategy, parameters that differ from the defaults, totals. */
  summary: Record<string, unknown>;
  /** The parent's evaluation log at the time (latest entry per scorer), for relative gates. */
  evaluations: EvaluationSummary[];
}

export interface EvaluationSummary {
  seq: number;
  time: string;
  scorer: string;
  metrics: Record<string, number>;
  passed: boolean | null;
}

/** The fields sealManifest adds. */
export interface LineageFields {
  id: string;
  lineageVersion: number;
  outputFiles: OutputFile[];
  parent: ParentRef | null;
  /** Every input directory that held a geoedit manifest (parent is the first of them). */
  inputManifests: Array<{ role: string; id: string; path: string }>;
}

export type Manifest = Record<string, unknown> & Partial<LineageFields> & { tool?: string; kind?: string; createdAt?: string };

// ---- canonical JSON and the manifest's text: manifest-json.ts ------------------------------------

export { canonicalJson, canonicalSha256, manifestText, writeManifestFile } from './manifest-json';

export function sha256Hex(data: string | Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** The manifest id: SHA-256 of the canonical JSON without `id` and the appended sections. */
export function manifestId(m: Record<string, unknown>): string {
  return sha256Hex(canonicalJson(idCovered(m)));
}

/** manifestId, streamed (canonicalSha256): the same id without building the canonical string; yields to the event loop. */
export function manifestIdAsync(m: Record<string, unknown>): Promise<string> {
  return canonicalSha256(idCovered(m));
}

function idCovered(m: Record<string, unknown>): Record<string, unknown> {
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) if (k !== 'id' && !APPENDED_SECTIONS.includes(k)) rest[k] = v;
  return rest;
}

// ---- files ------------------------------------------------------------------------------------

/** Files of an output directory that are not outputs: the manifest, the review log, the re-rendered report, locks and temp files. */
export function isGovernanceFile(name: string): boolean {
  const base = name.split('/').pop()!;
  return base === MANIFEST_FILE || base === REVIEW_LOG || base === REPORT_FILE || base.endsWith('.lock') || (base.startsWith('.') && base.includes('.geoedit-'));
}

export { sha256File, sha256Files, sha256FilesNative, sha256FileStream, outputHashProvider, type FileHash } from './hashing';

/** Every regular file under dir (relative names, sorted), governance files left out. */
export function listOutputFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(name);
      else if (!isGovernanceFile(name)) out.push(name);
    }
  };
  walk('');
  return out.sort();
}

/** Every output file of dir (listOutputFiles) with its size and SHA-256, sorted by name. */
export async function hashOutputFiles(dir: string, known?: ReadonlyMap<string, { size: number; sha256: string }>): Promise<OutputFile[]> {
  const names = listOutputFiles(dir);
  const todo = names.filter((n) => !known?.has(n));
  const hashes = await sha256Files(todo.map((n) => path.join(dir, n)));
  const got = new Map(todo.map((n, i) => [n, hashes[i]!]));
  return names.map((name) => { const h = known?.get(name) ?? got.get(name)!; return { name, size: h.size, sha256: h.sha256 }; });
}

// ---- reading ------------------------------------------------------------------------------------

export interface LoadedManifest {
  /** The output directory. */
  dir: string;
  file: string;
  manifest: Manifest;
  /** The id stored in the file (null: a manifest written before lineage). */
  storedId: string | null;
  /** The id its content gives now. */
  computedId: string;
  /** storedId === computedId */
  idOk: boolean;
}

/** Reads DIR/geoedit-manifest.json (DIR may also name the manifest file). Throws ERR_NO_MANIFEST / ERR_MANIFEST_INVALID. */
export function loadManifest(dirOrFile: string): LoadedManifest {
  if (typeof dirOrFile !== 'string' || dirOrFile.length === 0) {
    throw new GeoEditError('ERR_INVALID_ARG_TYPE', `Expected a directory path but received ${JSON.stringify(dirOrFile)}`);
  }
  const abs = path.resolve(dirOrFile);
  const st = fs.statSync(abs, { throwIfNoEntry: false });
  if (!st) throw new GeoEditError('ERR_NOT_FOUND', `${abs} does not exist`, { file: abs });
  const file = st.isDirectory() ? path.join(abs, MANIFEST_FILE) : abs;
  const dir = st.isDirectory() ? abs : path.dirname(abs);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new GeoEditError('ERR_NO_MANIFEST', `${dir} holds no ${MANIFEST_FILE}: not a geoedit output`, { file });
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new GeoEditError('ERR_MANIFEST_INVALID', `${file}: not valid JSON (${(e as Error).message}); was it edited by hand?`, { file });
  }
  if (!m || typeof m !== 'object' || Array.isArray(m) || (m as Manifest).tool !== 'geoedit') {
    throw new GeoEditError('ERR_MANIFEST_INVALID', `${file}: not a geoedit manifest (no "tool": "geoedit")`, { file });
  }
  const man = m as Manifest;
  const storedId = typeof man.id === 'string' ? man.id : null;
  const computedId = manifestId(man);
  return { dir, file, manifest: man, storedId, computedId, idOk: storedId === computedId };
}

/** loadManifest, then the id check: a hand-edited manifest is ERR_MANIFEST_TAMPERED, one without lineage ERR_NO_LINEAGE. */
export function loadSealedManifest(dirOrFile: string): LoadedManifest & { storedId: string } {
  const lm = loadManifest(dirOrFile);
  if (lm.storedId === null) {
    throw new GeoEditError('ERR_NO_LINEAGE', `${lm.file} has no id: it was written by a geoedit without lineage (re-run the edit to get one)`, { file: lm.file });
  }
  if (!lm.idOk) {
    throw new GeoEditError('ERR_MANIFEST_TAMPERED', `${lm.file}: the manifest's content does not match its id ${lm.storedId} (content gives ${lm.computedId}): it was edited after it was written`, { file: lm.file, id: lm.storedId, computed: lm.computedId });
  }
  return lm as LoadedManifest & { storedId: string };
}

// ---- summaries --------------------------------------------------------------------------------

const DEFAULT_PARAMS: Record<string, unknown> = { ...DEFAULTS, bandDegrees: -1, allowNonFinite: false, outDtype: null, include: null, exclude: null };

/** Parameters that differ from the defaults (threads / shard size left out: they do not change the weights). */
export function nonDefaultParameters(m: Manifest): Record<string, unknown> {
  const p = (m.parameters ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) {
    if (k === 'threads' || k === 'maxShardSize') continue;
    if (k in DEFAULT_PARAMS) {
      if (canonicalJson(DEFAULT_PARAMS[k]) !== canonicalJson(v)) out[k] = v;
    } else if (v !== null && v !== undefined && v !== false) {
      out[k] = v;
    }
  }
  return out;
}

/** Input paths by role (checkpoint manifests: inputs.{role}.path; adapter manifests: old/new/base). */
export function inputPaths(m: Manifest): Record<string, string> {
  const out: Record<string, string> = {};
  const inp = m.inputs as unknown;
  if (Array.isArray(inp)) {
    // adapter manifest: files per role; old/new name the adapter directories
    if (typeof m.old === 'string') out['old-adapter'] = m.old;
    if (typeof m.new === 'string') out['new-adapter'] = m.new;
    const b = (inp as Array<{ role: string; path: string }>).find((i) => i.role === 'base');
    if (b) out.base = b.path;
  } else if (inp && typeof inp === 'object') {
    for (const [role, v] of Object.entries(inp as Record<string, { path?: string }>)) if (v && typeof v.path === 'string') out[role] = v.path;
  }
  return out;
}

export function totalsSummary(m: Manifest): Record<string, unknown> {
  const t = (m.totals ?? {}) as Record<string, unknown>;
  const keep = ['tensors', 'edited', 'copied', 'converted', 'modules', 'rows', 'counts', 'energyKept', 'bytesWritten'];
  const out: Record<string, unknown> = {};
  for (const k of keep) if (t[k] !== undefined) out[k] = t[k];
  return out;
}

export function latestEvaluations(m: Manifest): EvaluationSummary[] {
  const ev = Array.isArray(m.evaluations) ? (m.evaluations as Array<Record<string, unknown>>) : [];
  const byScorer = new Map<string, EvaluationSummary>();
  for (const e of ev) {
    if (!e || typeof e !== 'object' || typeof e.scorer !== 'string' || !e.metrics || typeof e.metrics !== 'object') continue;
    byScorer.set(e.scorer, { seq: Number(e.seq), time: String(e.time), scorer: e.scorer, metrics: e.metrics as Record<string, number>, passed: typeof e.passed === 'boolean' ? e.passed : null });
  }
  return [...byScorer.values()];
}

function summaryOf(m: Manifest): Record<string, unknown> {
  const p = (m.parameters ?? {}) as Record<string, unknown>;
  return {
    strategy: p.strategy ?? null, parameters: nonDefaultParameters(m), totals: totalsSummary(m),
    ...(m.outFormat ? { outFormat: m.outFormat } : {}),
    ...(m.rollout ? { rollout: { chosen: (m.rollout as { chosen?: unknown }).chosen ?? null } } : {}),
  };
}

// ---- sealing ----------------------------------------------------------------------------------

/** The manifest in an input directory, as a parent reference (null: none there, or not a geoedit manifest). */
export function parentRefOf(inputDir: string, role: string): ParentRef | null {
  const f = path.join(inputDir, MANIFEST_FILE);
  if (!fs.existsSync(f)) return null;
  let lm: LoadedManifest;
  try {
    lm = loadManifest(f);
  } catch {
    return null;
  }
  const m = lm.manifest;
  return {
    id: lm.storedId ?? lm.computedId, role, path: path.resolve(inputDir), kind: String(m.kind ?? 'unknown'),
    createdAt: typeof m.createdAt === 'string' ? m.createdAt : null,
    parent: (m.parent as ParentRef | null | undefined)?.id ?? null,
    idMatches: lm.storedId === null || lm.idOk, summary: summaryOf(m), evaluations: latestEvaluations(m),
    ...(lm.storedId === null ? { legacy: true } : {}),
  };
}

export interface SealInput {
  role: string;
  /** The directory holding the input (a file input: its directory). */
  dir: string;
}

/**
 * Finalises a manifest for the output directory `dir` (the temporary directory before it is moved
 * into place): hashes every output file there, records the parent when an input directory holds a
 * geoedit manifest, computes the id, and writes dir/geoedit-manifest.json. Mutates and returns
 * `manifest`, with `id` first in the written file.
 */
export async function sealManifest<T extends object>(dir: string, manifest: T, inputs: SealInput[], extra?: SealExtra): Promise<T & LineageFields> {
  const m = manifest as unknown as Manifest;
  const found: ParentRef[] = [];
  const seen = new Set<string>();
  if (extra?.lineage) {
    // Recorded by the jobs that wrote the data (assembled parts): taken as they recorded it.
    delete m.id;
    m.lineageVersion = LINEAGE_VERSION;
    m.outputFiles = await hashOutputFiles(dir, extra.known);
    m.parent = extra.lineage.parent;
    m.inputManifests = extra.lineage.inputManifests;
    return (await writeSealed(dir, m)) as unknown as T & LineageFields;
  }
  for (const i of inputs) {
    const d = path.resolve(i.dir);
    if (seen.has(d)) continue;
    seen.add(d);
    const p = parentRefOf(d, i.role);
    if (p) found.push(p);
  }
  const parent = found[0] ?? null;
  const warn = (s: string) => {
    if (Array.isArray(m.warnings)) (m.warnings as string[]).push(s);
    if (extra?.warnings && extra.warnings !== m.warnings) extra.warnings.push(s);
  };
  for (const p of found) {
    if (!p.idMatches) warn(`the manifest in ${p.path} (${p.role}) does not match its id ${p.id}: it was edited after it was written`);
    else if (p.legacy) warn(`the manifest in ${p.path} (${p.role}) was written before lineage (no id): recorded by its content hash ${p.id}`);
  }
  delete m.id;
  m.lineageVersion = LINEAGE_VERSION;
  m.outputFiles = await hashOutputFiles(dir, extra?.known);
  m.parent = parent;
  m.inputManifests = found.map((p) => ({ role: p.role, id: p.id, path: p.path }));
  return (await writeSealed(dir, m)) as unknown as T & LineageFields;
}

/** What a writer may hand sealManifest besides the inputs. */
export interface SealExtra {
  warnings?: string[];
  /** Output files whose size and hash the writer has just computed (not read again). */
  known?: ReadonlyMap<string, { size: number; sha256: string }>;
  /** parent and inputManifests as the jobs that wrote the data recorded them (instead of reading the input directories now). */
  lineage?: { parent: ParentRef | null; inputManifests: LineageFields['inputManifests'] };
}

async function writeSealed(dir: string, m: Manifest): Promise<Manifest> {
  const id = await manifestIdAsync(m);
  const ordered = { id, ...m };
  await writeManifestFile(path.join(dir, MANIFEST_FILE), ordered);
  m.id = id;
  return m;
}

/** Re-seals an already sealed manifest after a section covered by the id changed: new id, written atomically (tests forge part and stage manifests with it). */
export function resealManifestFile(file: string, m: Manifest): string {
  delete m.id;
  const id = manifestId(m);
  writeFileAtomicSync(file, manifestText({ id, ...m }));
  m.id = id;
  return id;
}

/** Writes a manifest whose id-covered content is unchanged (appended sections only), atomically. */
export function writeManifestAppended(file: string, m: Manifest): void {
  const stored = loadManifest(file);
  if (stored.computedId !== manifestId(m) || stored.storedId !== m.id) {
    throw new GeoEditError('ERR_INTERNAL', `${file}: an append would change the manifest's covered content`, { file });
  }
  writeFileAtomicSync(file, manifestText(m));
}

// ---- the chain -----------------------------------------------------------------------------------

export interface ReviewSummary {
  seq: number;
  reviewer: string;
  decision: string;
  time: string;
  note: string | null;
  signed: boolean;
  keyFingerprint: string | null;
}

export interface LineageEntry {
  id: string;
  /** The parent's id, or null. */
  parent: string | null;
  /** Where this manifest was read from; null when only the child's record of it is left. */
  dir: string | null;
  /** False: the directory is gone (or no longer holds that manifest); the entry comes from the child's record. */
  available: boolean;
  /** The stored id matches the content (false: hand-edited). Null when not available, or for a manifest from before lineage (no id; `id` is then its content's hash). */
  idMatches: boolean | null;
  date: string | null;
  kind: string;
  inputs: Record<string, string>;
  parameters: Record<string, unknown>;
  strategy: string | null;
  totals: Record<string, unknown>;
  evaluations: EvaluationSummary[];
  reviews: ReviewSummary[];
  /** A staged rollout's output: which stage was kept, where it stopped. */
  rollout?: { chosen: number | null; stoppedAt: number | null; stages: Array<{ options: Record<string, unknown>; passed: boolean; metrics: Record<string, number> }> };
}

/** Review records of a directory, as summaries (unparseable lines are skipped here; verify names them). */
export function reviewSummaries(dir: string): ReviewSummary[] {
  const f = path.join(dir, REVIEW_LOG);
  if (!fs.existsSync(f)) return [];
  const out: ReviewSummary[] = [];
  for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as Record<string, unknown>;
      out.push({
        seq: Number(r.seq), reviewer: String(r.reviewer), decision: String(r.decision), time: String(r.time),
        note: typeof r.note === 'string' ? r.note : null, signed: typeof r.signature === 'string',
        keyFingerprint: (r.key as { fingerprint?: string } | undefined)?.fingerprint ?? null,
      });
    } catch { /* reported by verify */ }
  }
  return out;
}

function entryOf(lm: LoadedManifest): LineageEntry {
  const m = lm.manifest;
  const p = (m.parameters ?? {}) as Record<string, unknown>;
  return {
    id: lm.storedId ?? lm.computedId, parent: (m.parent as ParentRef | null | undefined)?.id ?? null, dir: lm.dir, available: true,
    idMatches: lm.storedId === null ? null : lm.idOk,
    date: typeof m.createdAt === 'string' ? m.createdAt : null, kind: String(m.kind ?? 'unknown'), inputs: inputPaths(m),
    parameters: nonDefaultParameters(m), strategy: typeof p.strategy === 'string' ? p.strategy : null, totals: totalsSummary(m),
    evaluations: (Array.isArray(m.evaluations) ? (m.evaluations as Array<Record<string, unknown>>) : []).map((e) => ({
      seq: Number(e.seq), time: String(e.time), scorer: String(e.scorer), metrics: (e.metrics ?? {}) as Record<string, number>,
      passed: typeof e.passed === 'boolean' ? e.passed : null,
    })),
    reviews: reviewSummaries(lm.dir),
    ...(m.rollout && typeof m.rollout === 'object' ? { rollout: rolloutSummary(m.rollout as Record<string, unknown>) } : {}),
  };
}

function rolloutSummary(r: Record<string, unknown>): NonNullable<LineageEntry['rollout']> {
  const stages = Array.isArray(r.stages) ? (r.stages as Array<Record<string, unknown>>) : [];
  return {
    chosen: typeof r.chosen === 'number' ? r.chosen : null, stoppedAt: typeof r.stoppedAt === 'number' ? r.stoppedAt : null,
    stages: stages.map((s) => ({ options: (s.options ?? {}) as Record<string, unknown>, passed: s.passed === true, metrics: (s.metrics ?? {}) as Record<string, number> })),
  };
}

/**
 * The chain of edits ending at `dir`, newest first. Each parent is read from the directory its
 * child recorded when that directory still holds the manifest with that id; otherwise the entry is
 * the child's record of it (available: false) and the walk goes on by id only as far as recorded.
 */
export function readLineage(dir: string): LineageEntry[] {
  const first = loadManifest(dir);
  const out: LineageEntry[] = [entryOf(first)];
  const seen = new Set<string>([out[0]!.id]);
  let ref = (first.manifest.parent as ParentRef | null | undefined) ?? null;
  while (ref && !seen.has(ref.id)) {
    seen.add(ref.id);
    let lm: LoadedManifest | null = null;
    try {
      const cand = loadManifest(path.join(ref.path, MANIFEST_FILE));
      if ((cand.storedId ?? cand.computedId) === ref.id) lm = cand;
    } catch { /* gone */ }
    if (lm) {
      out.push(entryOf(lm));
      ref = (lm.manifest.parent as ParentRef | null | undefined) ?? null;
    } else {
      const s = ref.summary ?? {};
      out.push({
        id: ref.id, parent: ref.parent, dir: null, available: false, idMatches: null, date: ref.createdAt, kind: ref.kind,
        inputs: {}, parameters: (s.parameters ?? {}) as Record<string, unknown>, strategy: (s.strategy as string | null) ?? null,
        totals: (s.totals ?? {}) as Record<string, unknown>, evaluations: ref.evaluations ?? [], reviews: [],
      });
      break; // the grandparent's directory is not recorded here
    }
  }
  return out;
}
