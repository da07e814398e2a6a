// Partitioned edits (docs/partitioned.md): which part of N a process is (--part K/N, or the index
// a job-array scheduler gives it), and which output files each part writes. Pure functions of
// their inputs: every part computes the same plan and the same assignment on its own, so N
// processes started with one command line never write the same file and together write them all.
import { GeoEditError, describe } from '../errors';
import { readEnv, type Env, type EnvName } from '../env';
import { canonicalJson, sha256Hex } from '../governance/lineage';

/** Which part a process is: index 1..count; `source` says where the index came from. */
export interface PartSpec {
  index: number;
  count: number;
  /** 'option' (K given), or the environment variable read for --part auto/N. */
  source: 'option' | PartIndexVar;
}

/** The variables --part auto/N reads, in the order they are looked at. */
export const PART_INDEX_VARS = ['JOB_COMPLETION_INDEX', 'SLURM_ARRAY_TASK_ID', 'AWS_BATCH_JOB_ARRAY_INDEX'] as const;
export type PartIndexVar = (typeof PART_INDEX_VARS)[number];

/** The option `part` as the API takes it: 'K/N', 'auto/N', or { index: K | 'auto', count: N } (K is 1-based). */
export type PartOption = string | { index: number | 'auto'; count: number };

export const MAX_PARTS = 10000;

function badPart(v: unknown, why: string): GeoEditError {
  return new GeoEditError('ERR_INVALID_OPTION', `Expected 'K/N' (1 <= K <= N), 'auto/N' or { index, count } for option 'part' but received ${typeof v === 'object' ? JSON.stringify(v) : describe(v)}: ${why}`, { option: 'part' });
}

const INT = /^[0-9]+$/;

function integerText(s: string): number | null {
  const t = s.trim();
  return INT.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : null;
}

/** The 0-based index a job-array scheduler gave this process, from `env`; a coded error when none, several or a bad one is set. */
export function indexFromEnv(count: number, env?: Env): { index0: number; source: PartIndexVar; detail: string } {
  const set = PART_INDEX_VARS.filter((n) => readEnv(n, env) !== undefined);
  if (set.length === 0) {
    throw new GeoEditError('ERR_PART_INDEX', `--part auto/${count}: none of ${PART_INDEX_VARS.join(', ')} is set (Kubernetes Indexed Jobs set JOB_COMPLETION_INDEX, Slurm arrays SLURM_ARRAY_TASK_ID, AWS Batch array jobs AWS_BATCH_JOB_ARRAY_INDEX); pass --part K/${count} instead`, { option: 'part' });
  }
  if (set.length > 1) {
    throw new GeoEditError('ERR_PART_INDEX', `--part auto/${count}: ${set.join(' and ')} are all set, so which one numbers this process is ambiguous; unset the others or pass --part K/${count}`, { option: 'part', variables: set });
  }
  const name = set[0]!;
  const raw = readEnv(name, env)!;
  const v = integerText(raw);
  if (v === null) throw new GeoEditError('ERR_PART_INDEX', `--part auto/${count}: ${name}='${raw}' is not a non-negative integer`, { option: 'part', variable: name });
  let index0 = v;
  let detail = `${name}=${v} (0-based)`;
  if (name === 'SLURM_ARRAY_TASK_ID') {
    // Slurm numbers array tasks as --array says (0-N or 1-N, …): SLURM_ARRAY_TASK_MIN is the first.
    const minRaw = readEnv('SLURM_ARRAY_TASK_MIN', env);
    if (minRaw !== undefined) {
      const min = integerText(minRaw);
      if (min === null) throw new GeoEditError('ERR_PART_INDEX', `--part auto/${count}: SLURM_ARRAY_TASK_MIN='${minRaw}' is not a non-negative integer`, { option: 'part', variable: 'SLURM_ARRAY_TASK_MIN' });
      if (v < min) throw new GeoEditError('ERR_PART_INDEX', `--part auto/${count}: SLURM_ARRAY_TASK_ID=${v} is below SLURM_ARRAY_TASK_MIN=${min}`, { option: 'part', variable: name });
      index0 = v - min;
      detail = `SLURM_ARRAY_TASK_ID=${v} - SLURM_ARRAY_TASK_MIN=${min}`;
    } else detail = `SLURM_ARRAY_TASK_ID=${v} (SLURM_ARRAY_TASK_MIN unset: read as 0-based)`;
  }
  if (index0 >= count) {
    throw new GeoEditError('ERR_PART_INDEX', `--part auto/${count}: ${detail} gives part ${index0 + 1}, outside 1..${count} (a ${count}-part job needs array indices 0..${count - 1}${name === 'SLURM_ARRAY_TASK_ID' ? `, or --array=1-${count} with SLURM_ARRAY_TASK_MIN set` : ''})`, { option: 'part', variable: name });
  }
  return { index0, source: name, detail };
}

/** The option `part` resolved (K/N checked; auto/N read from the environment). */
export function resolvePart(v: unknown, env?: Env): PartSpec {
  let k: string | number, n: number | null;
  if (typeof v === 'string') {
    const m = /^\s*([^/\s]+)\s*\/\s*([^/\s]+)\s*$/.exec(v);
    if (!m) throw badPart(v, 'no K/N');
    k = m[1]!.toLowerCase() === 'auto' ? 'auto' : (integerText(m[1]!) ?? NaN);
    n = integerText(m[2]!);
  } else if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as { index?: unknown; count?: unknown };
    const extra = Object.keys(o).filter((x) => x !== 'index' && x !== 'count');
    if (extra.length) throw badPart(v, `unknown key ${extra.join(', ')}`);
    k = o.index === 'auto' ? 'auto' : typeof o.index === 'number' && Number.isSafeInteger(o.index) ? o.index : NaN;
    n = typeof o.count === 'number' && Number.isSafeInteger(o.count) ? o.count : null;
  } else throw badPart(v, 'not a string or { index, count }');
  if (n === null || n < 1 || n > MAX_PARTS) throw badPart(v, `N must be an integer in 1..${MAX_PARTS}`);
  if (k === 'auto') {
    const e = indexFromEnv(n, env);
    return { index: e.index0 + 1, count: n, source: e.source };
  }
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > n) throw badPart(v, `K must be an integer in 1..${n} (parts are numbered from 1; --part auto/${n} takes a 0-based scheduler index)`);
  return { index: k, count: n, source: 'option' };
}

// ---- the assignment ------------------------------------------------------------------------------

/** One output file as the assignment sees it. */
export interface PlannedFile { name: string; bytes: number }

/**
 * Output files into `count` parts, balancing bytes, in contiguous runs: files that must be written
 * together (`groups`: indices into `files`, e.g. a tied tensor and its primary) form one unit, placed
 * at its first file; walking the units in output order, a unit goes to the part whose share of the
 * bytes, [k·total/count, (k+1)·total/count), holds the unit's middle byte. So every part is within
 * half a unit of total/count at each end, and (the output keeps the inputs' tensor order) reads — and
 * hashes — few input files beyond its own range. Returns the 0-based part of each file.
 * Deterministic: a function of the order, sizes, groups and count only.
 */
export function assignFiles(files: readonly PlannedFile[], count: number, groups: ReadonlyArray<readonly number[]> = []): number[] {
  // Union-find over files: a group joins its members (the root is the lowest index).
  const up = files.map((_, i) => i);
  const find = (i: number): number => { while (up[i] !== i) { up[i] = up[up[i]!]!; i = up[i]!; } return i; };
  for (const g of groups) for (let j = 1; j < g.length; j++) { const a = find(g[0]!), b = find(g[j]!); if (a !== b) up[Math.max(a, b)] = Math.min(a, b); }
  const units = new Map<number, { members: number[]; bytes: number }>();
  files.forEach((f, i) => {
    const r = find(i);
    let u = units.get(r);
    if (!u) { u = { members: [], bytes: 0 }; units.set(r, u); }
    u.members.push(i);
    u.bytes += f.bytes;
  });
  const total = files.reduce((a, f) => a + f.bytes, 0);
  const out = new Array<number>(files.length).fill(-1);
  let done = 0, part = 0;
  for (const [, u] of [...units].sort((a, b) => a[0] - b[0])) {
    const middle = done + u.bytes / 2;
    while (part < count - 1 && middle >= ((part + 1) * total) / count) part++;
    for (const i of u.members) out[i] = part;
    done += u.bytes;
  }
  return out;
}

// ---- the plan every part records -------------------------------------------------------------

/** The output layout of the whole (unpartitioned) job, and which part writes each file. */
export interface PartitionPlan {
  /** Output files in order: name, size in bytes, the tensors it holds (in order), the 1-based part that writes it. */
  files: Array<{ name: string; size: number; tensors: string[]; part: number }>;
  /** Sum of the tensors' bytes (the index's total_size). */
  totalSize: number;
  /** Whether the job writes model.safetensors.index.json (sharded output). */
  index: boolean;
}

/** The record a part's manifest carries (`partition`). */
export interface PartRecord {
  index: number;
  count: number;
  source: PartSpec['source'];
  /** SHA-256 of the canonical JSON of what every part must share: geoedit version, kind, parameters, input files (path and size), the plan, the count. */
  key: string;
  /** SHA-256 of the canonical JSON of the plan. */
  planId: string;
  plan: PartitionPlan;
  /** The files this part wrote (its shards, and with part 1 the base directory's other files). */
  files: string[];
  /** The input files this part hashed: the ones it reads; part 1 also those no part reads (hashAssignment). */
  hashed: string[];
  host: string;
}

/** One part as the assembled manifest records it. */
export interface AssembledPart {
  index: number;
  /** The part directory, absolute, as given to assemble. */
  dir: string;
  /** The part manifest's id. */
  id: string;
  createdAt: string;
  host: string;
  source: PartSpec['source'];
  files: string[];
  bytesWritten: number;
  timings: Record<string, number>;
  backend?: unknown;
  hashing?: unknown;
}

/** The record an assembled manifest carries (`partition`). */
export interface AssembledRecord {
  count: number;
  key: string;
  planId: string;
  parts: AssembledPart[];
  /** How the files came into the output: 'link' (hard links: no data copied), 'copy' (across file systems). */
  assemble: { mode: 'link' | 'copy' | 'mixed'; filesLinked: number; filesCopied: number; bytesCopied: number; verified: boolean; bytesVerified: number; ms: number; movedParts: boolean };
}

export function planId(plan: PartitionPlan): string {
  return sha256Hex(canonicalJson(plan));
}

/** The key every part of one job shares. */
export function partitionKey(k: { version: string; kind: string; parameters: unknown; inputs: unknown; plan: PartitionPlan; count: number }): string {
  return sha256Hex(canonicalJson(k));
}

/**
 * The input files part `part` hashes: every file it reads (`readsOf`: per input file, the 1-based parts
 * whose output files' tensors read it), so that the bytes each part edits from are the bytes a hash in
 * its manifest names, and a file two parts read (on two machines, perhaps two copies) is hashed by both
 * and must agree at assembly; part 1 also hashes the files no part reads (index files, a coefficients
 * file, a file none of the output's tensors come from). So the assembled manifest has every input hash,
 * and no part hashes what it does not read (docs/partitioned.md).
 */
export function hashAssignment(inputFiles: readonly string[], readsOf: ReadonlyMap<string, ReadonlySet<number>>, part: number): string[] {
  return inputFiles.filter((f) => {
    const r = readsOf.get(f);
    return r && r.size ? r.has(part) : part === 1;
  });
}
