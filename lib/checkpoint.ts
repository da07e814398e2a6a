// Checkpoints: open (file, directory, index + shards), validate base/old/new against each other,
// then stream every tensor through the native core into a temporary directory beside the target,
// renamed into place only when complete. Memory stays bounded: the core reads row blocks. Edit
// blocks run on the backend selectBackend picks ('auto': a usable GPU, else the CPU).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { GeoEditError, describe, typeError, type GeoEditErrorCode } from './errors';
import { callSite, native, type CallSite, type NativeResult, type NativeStreamSrc, type NativeStreamTask } from './native';
import { checkDtype, nativeParams, optionSpec, parseSize, resolveParams, resolveThreads, validateOptions, type ResolvedParams } from './options';
import { cudaStatus, resolveCudaMemoryLimit, selectBackend } from './backend';
import { matrixView } from './tensor';
import { summarizeRows, threshold } from './stats';
import { packageVersion, versionsBlock } from './versions';
import {
  EDITABLE_ST_DTYPES, ST_DTYPE_SIZE, planSafetensors, readSafetensorsHeaderSync, stDtypeOf,
  type SafetensorsHeader, type SafetensorsTensorInfo, type StDtype,
} from './safetensors';
import type { DType, EditOptions } from './types';

// ---- opening -------------------------------------------------------------------------------------

export interface CheckpointTensor {
  name: string;
  dtype: StDtype;
  shape: number[];
  /** The shard holding it. */
  file: string;
  /** Absolute byte offsets in that file. */
  begin: number;
  end: number;
}

export interface Checkpoint {
  /** The path as given, resolved. */
  path: string;
  kind: 'file' | 'directory' | 'sharded';
  /** The directory holding the weights (and config/tokenizer files when it is a directory). */
  dir: string;
  /** The index file, when sharded. */
  index: string | null;
  files: Array<{ path: string; size: number; header: SafetensorsHeader }>;
  /** In file order, then data order. */
  tensors: CheckpointTensor[];
  byName: Map<string, CheckpointTensor>;
  metadata: Record<string, string> | null;
}

function bad(code: GeoEditErrorCode, msg: string, details?: Record<string, unknown>): GeoEditError {
  return new GeoEditError(code, msg, details);
}

function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

function checkShardName(indexFile: string, dir: string, shard: unknown, tensor: string): string {
  if (typeof shard !== 'string' || shard.length === 0 || shard.includes('\0')) {
    throw bad('ERR_BAD_SAFETENSORS', `${indexFile}: weight_map entry for tensor '${tensor}' is not a file name (${describe(shard)})`, { file: indexFile, tensor });
  }
  if (path.isAbsolute(shard) || path.win32.isAbsolute(shard) || shard.includes('\\')) {
    throw bad('ERR_BAD_SAFETENSORS', `${indexFile}: weight_map entry '${shard}' for tensor '${tensor}' is an absolute path; shard names must stay inside ${dir}`, { file: indexFile, tensor, shard });
  }
  const full = path.resolve(dir, shard);
  if (!isInside(dir, full)) {
    throw bad('ERR_BAD_SAFETENSORS', `${indexFile}: weight_map entry '${shard}' for tensor '${tensor}' leaves the directory ${dir}`, { file: indexFile, tensor, shard });
  }
  return full;
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** Opens a checkpoint: a .safetensors file, an index .json, or a directory holding either. */
export function openCheckpoint(p: string, role = 'checkpoint'): Checkpoint {
  if (typeof p !== 'string' || p.length === 0) throw typeError(`Expected a path for ${role} but received ${describe(p)}`);
  const abs = path.resolve(p);
  const st = statOrNull(abs);
  if (!st) throw bad('ERR_NOT_FOUND', `${role}: ${abs} does not exist`, { file: abs, role });
  let dir: string, index: string | null = null, single: string | null = null;
  if (st.isDirectory()) {
    dir = abs;
    const idx = path.join(abs, 'model.safetensors.index.json');
    const one = path.join(abs, 'model.safetensors');
    if (statOrNull(idx)?.isFile()) index = idx;
    else if (statOrNull(one)?.isFile()) single = one;
    else {
      const names = fs.readdirSync(abs);
      const idxs = names.filter((n) => n.endsWith('.safetensors.index.json'));
      const sts = names.filter((n) => n.endsWith('.safetensors'));
      if (idxs.length === 1) index = path.join(abs, idxs[0]!);
      else if (idxs.length === 0 && sts.length === 1) single = path.join(abs, sts[0]!);
      else {
        throw bad('ERR_NOT_FOUND', `${role}: ${abs} holds neither model.safetensors nor model.safetensors.index.json` +
          (sts.length + idxs.length > 1 ? ` (and ${sts.length + idxs.length} candidate files: name one of them)` : ''), { file: abs, role });
      }
    }
  } else if (abs.endsWith('.json')) {
    index = abs;
    dir = path.dirname(abs);
  } else {
    single = abs;
    dir = path.dirname(abs);
  }
  const files: Checkpoint['files'] = [];
  const tensors: CheckpointTensor[] = [];
  const byName = new Map<string, CheckpointTensor>();
  if (single) {
    const h = readSafetensorsHeaderSync(single);
    files.push({ path: single, size: h.size, header: h });
    for (const t of h.tensors) {
      const ct = { name: t.name, dtype: t.dtype, shape: t.shape, file: single, begin: t.begin, end: t.end };
      tensors.push(ct);
      byName.set(t.name, ct);
    }
    return { path: abs, kind: st.isDirectory() ? 'directory' : 'file', dir, index: null, files, tensors, byName, metadata: h.metadata };
  }
  const indexFile = index!;
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw bad('ERR_BAD_SAFETENSORS', `${indexFile}: not a valid JSON index (${(e as Error).message})`, { file: indexFile });
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) {
    throw bad('ERR_BAD_SAFETENSORS', `${indexFile}: no 'weight_map' object`, { file: indexFile });
  }
  const realDir = fs.realpathSync(dir);
  const shardOf = new Map<string, string>();
  const shardOrder: string[] = [];
  for (const [tensor, shard] of Object.entries(wm as Record<string, unknown>)) {
    const full = checkShardName(indexFile, dir, shard, tensor);
    if (!shardOrder.includes(full)) shardOrder.push(full);
    shardOf.set(tensor, full);
  }
  const headers = new Map<string, SafetensorsHeader>();
  for (const full of shardOrder) {
    const sst = statOrNull(full);
    const tensor = [...shardOf].find(([, f]) => f === full)![0];
    if (!sst || !sst.isFile()) {
      throw bad('ERR_NOT_FOUND', `${indexFile}: shard '${path.relative(dir, full)}' (holding tensor '${tensor}') is missing`, { file: full, tensor });
    }
    const real = fs.realpathSync(full);
    if (!isInside(realDir, real)) {
      throw bad('ERR_BAD_SAFETENSORS', `${indexFile}: shard '${path.relative(dir, full)}' (tensor '${tensor}') resolves outside ${dir} (a link?)`, { file: full, tensor });
    }
    const h = readSafetensorsHeaderSync(full);
    headers.set(full, h);
    files.push({ path: full, size: h.size, header: h });
  }
  for (const f of files) {
    for (const t of f.header.tensors) {
      if (shardOf.get(t.name) !== f.path) continue; // not listed for this shard: not part of the model
      const ct = { name: t.name, dtype: t.dtype, shape: t.shape, file: f.path, begin: t.begin, end: t.end };
      tensors.push(ct);
      byName.set(t.name, ct);
    }
  }
  for (const [tensor, full] of shardOf) {
    if (!byName.has(tensor)) {
      throw bad('ERR_MISSING_TENSOR', `${indexFile}: tensor '${tensor}' is listed in shard '${path.relative(dir, full)}' but that file does not hold it`, { file: full, tensor });
    }
  }
  return { path: abs, kind: 'sharded', dir, index: indexFile, files, tensors, byName, metadata: files[0]?.header.metadata ?? null };
}

// ---- inspect -------------------------------------------------------------------------------------

export interface InspectResult {
  path: string;
  kind: Checkpoint['kind'];
  files: Array<{ path: string; size: number; tensors: number }>;
  tensors: Array<{ name: string; dtype: StDtype; shape: number[]; bytes: number; file: string }>;
  totalBytes: number;
  dtypes: Record<string, { tensors: number; bytes: number }>;
  metadata: Record<string, string> | null;
}

/** Tensors, dtypes, shapes and bytes of a checkpoint (reads headers only). */
export async function inspectCheckpoint(p: string): Promise<InspectResult> {
  const ck = openCheckpoint(p);
  const dtypes: InspectResult['dtypes'] = {};
  let total = 0;
  const tensors = ck.tensors.map((t) => {
    const bytes = t.end - t.begin;
    total += bytes;
    const d = (dtypes[t.dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += bytes;
    return { name: t.name, dtype: t.dtype, shape: t.shape, bytes, file: t.file };
  });
  return {
    path: ck.path, kind: ck.kind,
    files: ck.files.map((f) => ({ path: f.path, size: f.size, tensors: f.header.tensors.length })),
    tensors, totalBytes: total, dtypes, metadata: ck.metadata,
  };
}

// ---- options -------------------------------------------------------------------------------------

export interface ProgressEvent {
  phase: 'edit' | 'analyze';
  bytesDone: number;
  bytesTotal: number;
  tensor: string;
  tensorsDone: number;
  tensorsTotal: number;
  elapsedMs: number;
}

export interface CheckpointOptions extends Omit<EditOptions, 'importanceOld' | 'importanceNew' | 'coefficients'> {
  /** Checkpoints holding importance tensors (same names and shapes as the base). */
  importanceOld?: string;
  importanceNew?: string;
  /** Glob patterns on tensor names (`*` any run of characters, `?` one); unselected tensors are copied from the base. */
  include?: string | string[];
  exclude?: string | string[];
  /** Bytes, or a string like '5GB', '500MB', '2GiB'. Default '5GB'. */
  maxShardSize?: number | string;
  /** Write an HTML report to this path. */
  report?: string;
  /** Replace an existing output directory. */
  force?: boolean;
  /** Compute SHA-256 of every input file for the manifest (default true). */
  hash?: boolean;
  /** Copy the base directory's other files (config.json, tokenizer…) (default true). */
  copyFiles?: boolean;
  onProgress?: (e: ProgressEvent) => void;
  signal?: AbortSignal;
  /** Bytes per block of the widest input of an edited tensor (default 8 MiB on the CPU, 64 MiB
   *  on the GPU, where each block is split into device chunks that stream through >= 2 CUDA streams). */
  blockBytes?: number;
}

export const DEFAULT_MAX_SHARD_SIZE = optionSpec('maxShardSize')!.default as string;
export { parseSize };

function globToRegExp(g: string): RegExp {
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === '*') {
      while (g[i + 1] === '*') i++;
      re += '.*';
    } else if (c === '?') re += '.';
    else if (c === '[') {
      const j = g.indexOf(']', i + 1);
      if (j < 0) re += '\\[';
      else {
        let cls = g.slice(i + 1, j).replace(/\\/g, '\\\\');
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += `[${cls}]`;
        i = j;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function globList(v: unknown): RegExp[] | null {
  if (v === undefined) return null;
  return (typeof v === 'string' ? [v] : (v as string[])).map(globToRegExp);
}

interface Resolved {
  params: ResolvedParams;
  outDtype: DType | null;
  threads: number;
  include: RegExp[] | null;
  exclude: RegExp[] | null;
  maxShardSize: number;
  /** 0: the backend's default (the core decides). */
  blockBytes: number;
  backend: 'cpu' | 'cuda';
  cudaMemoryLimit: number;
}

function resolveCheckpointOptions(o: CheckpointOptions | undefined, what: string): Resolved {
  // Keys, types and ranges from the option table; then the rules between options.
  const opts = validateOptions(o, 'checkpoint', what) as CheckpointOptions;
  const params = resolveParams(opts);
  if (params.strategy === 'custom') {
    throw new GeoEditError('ERR_UNSUPPORTED', "strategy 'custom' needs per-row coefficients for every tensor; use editTensor for it (checkpoints support geoedit, forget-then-learn, task-arithmetic)", { option: 'strategy' });
  }
  if ((opts.importanceOld === undefined) !== (opts.importanceNew === undefined)) {
    throw new GeoEditError('ERR_INVALID_OPTION', 'Expected both importanceOld and importanceNew (or neither) but received only one', { option: opts.importanceOld ? 'importanceNew' : 'importanceOld' });
  }
  // Last: every other option is checked before the CUDA probe (an explicit 'cuda' that cannot
  // run throws ERR_CUDA_UNAVAILABLE with the reason; never a silent fallback to the CPU).
  const backend = selectBackend(opts.backend);
  return {
    params,
    outDtype: opts.outDtype === undefined ? null : checkDtype(opts.outDtype, 'outDtype'),
    threads: resolveThreads(opts.threads),
    include: globList(opts.include),
    exclude: globList(opts.exclude),
    maxShardSize: parseSize(opts.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE),
    blockBytes: opts.blockBytes ?? 0,
    cudaMemoryLimit: resolveCudaMemoryLimit(opts.cudaMemoryLimit, backend),
    backend,
  };
}

// ---- planning --------------------------------------------------------------------------------------

type Action = 'edit' | 'copy' | 'convert';

interface PlanItem {
  name: string;
  shape: number[];
  base: CheckpointTensor;
  old?: CheckpointTensor;
  new?: CheckpointTensor;
  impOld?: CheckpointTensor;
  impNew?: CheckpointTensor;
  action: Action;
  outDtype: StDtype;
  outBytes: number;
  why?: string; // why it is not edited
}

export interface CheckpointInputs {
  base: string;
  old: string;
  new: string;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function listNames(names: string[], max = 40): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, … and ${names.length - max} more` : shown;
}

function plan(ck: { base: Checkpoint; old: Checkpoint; new: Checkpoint; impOld?: Checkpoint; impNew?: Checkpoint }, r: Resolved, warnings: string[]): PlanItem[] {
  const missing: string[] = [];
  const shapes: string[] = [];
  for (const t of ck.base.tensors) {
    for (const [role, c] of [['old', ck.old], ['new', ck.new]] as const) {
      const o = c.byName.get(t.name);
      if (!o) missing.push(`'${t.name}' (missing from ${role}: ${c.path})`);
      else if (!sameShape(o.shape, t.shape)) shapes.push(`'${t.name}' (base [${t.shape.join(', ')}], ${role} [${o.shape.join(', ')}])`);
    }
  }
  for (const [role, c] of [['old', ck.old], ['new', ck.new]] as const) {
    for (const t of c.tensors) if (!ck.base.byName.has(t.name)) missing.push(`'${t.name}' (in ${role} but not in base: ${ck.base.path})`);
  }
  if (shapes.length || missing.length) {
    const parts: string[] = [];
    if (shapes.length) parts.push(`${shapes.length} tensor(s) differ in shape: ${listNames(shapes)}`);
    if (missing.length) parts.push(`${missing.length} tensor(s) are not in all three checkpoints: ${listNames(missing)}`);
    throw new GeoEditError(shapes.length ? 'ERR_SHAPE_MISMATCH' : 'ERR_MISSING_TENSOR', `base, old and new do not match: ${parts.join('; ')}`, {
      shapeMismatch: shapes, missing,
    });
  }
  const selected = (name: string): boolean =>
    (!r.include || r.include.some((re) => re.test(name))) && !(r.exclude && r.exclude.some((re) => re.test(name)));
  const items: PlanItem[] = [];
  const impProblems: string[] = [];
  for (const t of ck.base.tensors) {
    const old = ck.old.byName.get(t.name)!;
    const nw = ck.new.byName.get(t.name)!;
    const editable = EDITABLE_ST_DTYPES[t.dtype];
    let action: Action = 'edit';
    let why: string | undefined;
    if (!selected(t.name)) { action = 'copy'; why = 'not selected'; }
    else if (!editable) {
      action = 'copy';
      const isInt = /^(BOOL|U8|I8|I16|U16|I32|U32|I64|U64)$/.test(t.dtype);
      why = isInt ? `integer/bool dtype ${t.dtype}: copied from the base` : `dtype ${t.dtype} is not edited (only F32, F16, BF16): copied from the base`;
      if (!isInt) {
        if (r.include) {
          throw new GeoEditError('ERR_UNSUPPORTED', `tensor '${t.name}' (${ck.base.path}) has dtype ${t.dtype}, which cannot be edited (only F32, F16, BF16); exclude it or narrow --include`, { tensor: t.name, dtype: t.dtype });
        }
        warnings.push(`tensor '${t.name}': ${why}`);
      }
    } else if (!EDITABLE_ST_DTYPES[old.dtype] || !EDITABLE_ST_DTYPES[nw.dtype]) {
      throw new GeoEditError('ERR_UNSUPPORTED', `tensor '${t.name}': base is ${t.dtype} but old is ${old.dtype} and new is ${nw.dtype}; only F32, F16, BF16 can be edited`, { tensor: t.name });
    }
    const item: PlanItem = { name: t.name, shape: t.shape, base: t, action, outDtype: t.dtype, outBytes: t.end - t.begin, why };
    if (editable && r.outDtype) item.outDtype = stDtypeOf(r.outDtype);
    if (action === 'copy' && editable && item.outDtype !== t.dtype) item.action = 'convert';
    let n = 1;
    for (const s of t.shape) n *= s;
    item.outBytes = n * ST_DTYPE_SIZE[item.outDtype];
    if (item.action === 'edit') {
      item.old = old;
      item.new = nw;
      if (ck.impOld && ck.impNew) {
        for (const [role, c] of [['importanceOld', ck.impOld], ['importanceNew', ck.impNew]] as const) {
          const it = c.byName.get(t.name);
          if (!it) impProblems.push(`'${t.name}' missing from ${role} (${c.path})`);
          else if (!sameShape(it.shape, t.shape)) impProblems.push(`'${t.name}' has shape [${it.shape.join(', ')}] in ${role}, base [${t.shape.join(', ')}]`);
          else if (!EDITABLE_ST_DTYPES[it.dtype]) impProblems.push(`'${t.name}' has dtype ${it.dtype} in ${role}`);
          else if (role === 'importanceOld') item.impOld = it;
          else item.impNew = it;
        }
      }
    }
    items.push(item);
  }
  if (impProblems.length) throw new GeoEditError('ERR_BAD_IMPORTANCE', `importance checkpoints do not match the base: ${listNames(impProblems)}`, { problems: impProblems });
  return items;
}

// ---- stats -----------------------------------------------------------------------------------------

export interface TensorManifestEntry {
  name: string;
  shape: number[];
  dtype: StDtype;
  outDtype: StDtype;
  action: Action;
  note?: string;
  rows?: number;
  cols?: number;
  threshold?: number;
  counts?: { orthogonal: number; synergy: number; conflict: number };
  /** Rows where τold or τnew is zero (cos defined as 0). */
  zeroRows?: number;
  /** Angle between τold and τnew per row, 5° bins over [0°, 180°]. */
  angleHistogram?: number[];
  meanCos?: number;
  energy?: { new: number; old: number; applied: number };
  /** applied / new: share of the update energy (Σ‖τnew‖²) kept in the output. */
  energyKept?: number | null;
}

function summarise(item: PlanItem, r: NativeResult, p: ResolvedParams): TensorManifestEntry {
  const { rows, cols } = matrixView(item.shape);
  const sum = summarizeRows(r, rows);
  return {
    name: item.name, shape: item.shape, dtype: item.base.dtype, outDtype: item.outDtype, action: 'edit',
    rows, cols, threshold: threshold(p, cols), counts: sum.counts, zeroRows: sum.zeroRows, angleHistogram: sum.angleHistogram,
    meanCos: sum.meanCos, energy: sum.energy, energyKept: sum.energyKept,
  };
}

export interface CheckpointManifest {
  tool: 'geoedit';
  kind: 'edit' | 'analyze';
  createdAt: string;
  versions: { geoedit: string; node: string; napi: string; simd: string; platform: string };
  /** Where the edit blocks ran: 'cpu', or 'cuda' with the device's name. */
  backend: { name: 'cpu' | 'cuda'; device: string | null };
  inputs: Record<string, { path: string; kind: Checkpoint['kind']; files: Array<{ path: string; size: number; sha256: string | null }> }>;
  output: null | { path: string; files: Array<{ name: string; size: number; tensors: number }>; totalSize: number };
  parameters: ResolvedParams & { outDtype: DType | null; include: string[] | null; exclude: string[] | null; maxShardSize: number; threads: number };
  tensors: TensorManifestEntry[];
  totals: {
    tensors: number; edited: number; copied: number; converted: number;
    rows: number; counts: { orthogonal: number; synergy: number; conflict: number };
    energy: { new: number; old: number; applied: number }; energyKept: number | null;
    bytesRead: number; bytesWritten: number;
  };
  timings: { totalMs: number; validateMs: number; dataMs: number; hashMs: number; gbPerSecond: number };
  warnings: string[];
}

// ---- running ---------------------------------------------------------------------------------------

function srcOf(t: CheckpointTensor, fds: Map<string, number>): NativeStreamSrc {
  return { fd: fds.get(t.file)!, offset: t.begin, dtype: EDITABLE_ST_DTYPES[t.dtype] ?? 'f32', file: t.file };
}

async function sha256File(file: string, signal?: AbortSignal): Promise<string> {
  const h = crypto.createHash('sha256');
  const s = fs.createReadStream(file, { highWaterMark: 4 << 20 });
  for await (const chunk of s) {
    if (signal?.aborted) { s.destroy(); break; }
    h.update(chunk as Buffer);
  }
  return h.digest('hex');
}

async function writeReportFile(file: string, m: CheckpointManifest): Promise<void> {
  const { writeReport } = await import('./report');
  try {
    await writeReport(file, m);
  } catch (e) {
    throw new GeoEditError('ERR_IO', `${file}: cannot write the report: ${(e as Error).message}`, { file });
  }
}

function abortedError(): GeoEditError {
  return new GeoEditError('ERR_ABORTED', 'the checkpoint job was aborted; nothing was written at the target');
}

function shardNames(n: number): string[] {
  if (n === 1) return ['model.safetensors'];
  const w = 5;
  const pad = (k: number) => String(k).padStart(w, '0');
  return Array.from({ length: n }, (_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
}

interface Job {
  kind: 'edit' | 'analyze';
  inputs: CheckpointInputs;
  opts: CheckpointOptions;
  out: string | null;
  site: CallSite;
}

async function runJob(job: Job): Promise<CheckpointManifest> {
  const t0 = Date.now();
  const what = job.kind === 'edit' ? 'editCheckpoint' : 'analyzeCheckpoint';
  const inputs = job.inputs;
  if (!inputs || typeof inputs !== 'object') throw typeError(`Expected { base, old, new${job.kind === 'edit' ? ', out' : ''} } for ${what} but received ${describe(inputs)}`);
  const opts = job.opts ?? {};
  const r = resolveCheckpointOptions(opts, what);
  const signal = opts.signal;
  if (signal?.aborted) throw abortedError();
  const warnings: string[] = [];
  const ck = {
    base: openCheckpoint(inputs.base, 'base'),
    old: openCheckpoint(inputs.old, 'old'),
    new: openCheckpoint(inputs.new, 'new'),
    impOld: opts.importanceOld ? openCheckpoint(opts.importanceOld, 'importanceOld') : undefined,
    impNew: opts.importanceNew ? openCheckpoint(opts.importanceNew, 'importanceNew') : undefined,
  };
  const items = plan(ck, r, warnings);
  const allInputFiles = new Set<string>();
  for (const c of [ck.base, ck.old, ck.new, ck.impOld, ck.impNew]) if (c) for (const f of c.files) allInputFiles.add(f.path);

  // The output target.
  let out: string | null = null;
  if (job.kind === 'edit') {
    if (typeof job.out !== 'string' || job.out.length === 0) throw typeError(`Expected an output directory 'out' for editCheckpoint but received ${describe(job.out)}`);
    out = path.resolve(job.out);
    // Compared through real paths too, so a symlink to an input directory is caught.
    const real = (p: string): string => { try { return fs.realpathSync(p); } catch { return p; } };
    const outReal = fs.existsSync(out) ? real(out) : path.join(real(path.dirname(out)), path.basename(out));
    for (const c of [ck.base, ck.old, ck.new, ck.impOld, ck.impNew]) {
      if (!c) continue;
      const hits = (o: string, dir: string, files: string[]) => o === dir || files.some((f) => f === o || isInside(o, f));
      if (out === c.path || hits(out, c.dir, c.files.map((f) => f.path)) || hits(outReal, real(c.dir), c.files.map((f) => real(f.path)))) {
        throw new GeoEditError('ERR_INVALID_OPTION', `the output ${out} is (or holds) an input (${c.path}); choose another output directory`, { option: 'out' });
      }
    }
    if (fs.existsSync(out) && !opts.force) {
      throw new GeoEditError('ERR_OUTPUT_EXISTS', `the output ${out} already exists; pass --force (force: true) to replace it`, { file: out });
    }
    if (!statOrNull(path.dirname(out))?.isDirectory()) {
      throw new GeoEditError('ERR_NOT_FOUND', `the parent directory of the output (${path.dirname(out)}) does not exist`, { file: out });
    }
  }
  if (opts.report !== undefined) {
    const rep = path.resolve(opts.report);
    if (allInputFiles.has(rep)) throw new GeoEditError('ERR_INVALID_OPTION', `the report path ${rep} is an input file`, { option: 'report' });
    if (!statOrNull(path.dirname(rep))?.isDirectory()) throw new GeoEditError('ERR_NOT_FOUND', `the parent directory of the report (${path.dirname(rep)}) does not exist`, { file: rep });
  }
  const validateMs = Date.now() - t0;

  // Output layout.
  const version = packageVersion();
  const outItems = job.kind === 'edit' ? items : items.filter((i) => i.action === 'edit');
  const shards: PlanItem[][] = [];
  if (job.kind === 'edit') {
    let cur: PlanItem[] = [], size = 0;
    for (const it of outItems) {
      if (cur.length && size + it.outBytes > r.maxShardSize) { shards.push(cur); cur = []; size = 0; }
      cur.push(it);
      size += it.outBytes;
    }
    shards.push(cur);
  }
  const names = shardNames(shards.length);
  const paramsRecord = {
    ...r.params, outDtype: r.outDtype,
    include: opts.include === undefined ? null : ([] as string[]).concat(opts.include),
    exclude: opts.exclude === undefined ? null : ([] as string[]).concat(opts.exclude),
    maxShardSize: r.maxShardSize, threads: r.threads,
  };
  const stMeta: Record<string, string> = {
    ...(ck.base.metadata ?? {}),
    format: 'pt',
    'geoedit.version': version,
    'geoedit.strategy': r.params.strategy,
    'geoedit.parameters': JSON.stringify(paramsRecord),
  };

  const bytesTotal = items.reduce((s, it) => {
    if (it.action === 'edit') return s + (it.base.end - it.base.begin) + (it.old!.end - it.old!.begin) + (it.new!.end - it.new!.begin);
    return job.kind === 'edit' ? s + (it.base.end - it.base.begin) : s;
  }, 0);

  // Temporary directory beside the target; cleanup on error, abort and signals.
  let tmp: string | null = null;
  const fds = new Map<string, number>();
  const outFds: number[] = [];
  const ctl = new Float64Array(3); // [bytes done, cancel, task index] shared with the worker
  const cleanup = () => {
    for (const fd of outFds.splice(0)) { try { fs.closeSync(fd); } catch { /* closed */ } }
    if (tmp) { try { fs.rmSync(tmp, { recursive: true, force: true }); } catch { /* best effort */ } }
  };
  const onSignal = (sig: NodeJS.Signals) => {
    ctl[1] = 1;
    cleanup();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.kill(process.pid, sig);
  };
  const onAbort = () => { ctl[1] = 1; };
  signal?.addEventListener('abort', onAbort);
  if (out) {
    tmp = path.join(path.dirname(out), `.${path.basename(out)}.geoedit-tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    // Handlers first: a signal arriving just after the mkdir must find them installed.
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    fs.mkdirSync(tmp);
  }
  const entries: TensorManifestEntry[] = [];
  let hashMs = 0, dataMs = 0;
  let timer: NodeJS.Timeout | undefined;
  try {
    for (const f of allInputFiles) fds.set(f, fs.openSync(f, 'r'));
    const hashStart = Date.now();
    // Hashing runs beside the data path, one file at a time (bounded memory, one core at most).
    const hashing = opts.hash === false ? null : (async () => {
      const m = new Map<string, string>();
      for (const f of allInputFiles) m.set(f, await sha256File(f, signal));
      hashMs = Date.now() - hashStart;
      return m;
    })();
    hashing?.catch(() => undefined);

    let doneBefore = 0, tensorsDone = 0;
    let batchNames: string[] = [];
    const tensorsTotal = outItems.length;
    const emit = () => {
      opts.onProgress?.({
        phase: job.kind, bytesDone: doneBefore + ctl[0]!, bytesTotal, tensor: batchNames[ctl[2]!] ?? '', tensorsDone, tensorsTotal, elapsedMs: Date.now() - t0,
      });
    };
    if (opts.onProgress) timer = setInterval(emit, 200);
    const dataStart = Date.now();
    const outFiles: Array<{ name: string; size: number; tensors: number }> = [];
    const weightMap: Record<string, string> = {};
    // Tasks go to the core in batches (up to ~1 GiB of input or 256 tensors per call), so the
    // write of one tensor overlaps the compute of the next; per-row stats are summarised per batch.
    const runBatch = async (batch: Array<{ item: PlanItem; task: NativeStreamTask }>) => {
      if (signal?.aborted || ctl[1]) throw abortedError();
      batchNames = batch.map((b) => b.item.name);
      ctl[0] = 0;
      ctl[2] = 0;
      let res: (NativeResult | null)[];
      try {
        res = await native.stream({
          tasks: batch.map((b) => b.task), params: nativeParams(r.params), threads: r.threads,
          blockBytes: r.blockBytes, backend: r.backend, cudaMemoryLimit: r.cudaMemoryLimit, ctl,
        }, job.site);
      } catch (err) {
        if (err instanceof GeoEditError && err.code === 'ERR_ABORTED') throw abortedError();
        throw err;
      }
      doneBefore += ctl[0]!;
      ctl[0] = 0;
      tensorsDone += batch.length;
      batch.forEach(({ item }, k) => {
        if (item.action === 'edit') entries.push(summarise(item, res[k]!, r.params));
        else entries.push({ name: item.name, shape: item.shape, dtype: item.base.dtype, outDtype: item.outDtype, action: item.action, note: item.why });
      });
      emit();
    };
    const taskBytes = (it: PlanItem) => (it.action === 'edit' ? (it.base.end - it.base.begin) + (it.old!.end - it.old!.begin) + (it.new!.end - it.new!.begin) : it.base.end - it.base.begin);
    const runAll = async (list: Array<{ item: PlanItem; task: NativeStreamTask }>) => {
      let batch: typeof list = [], bytes = 0;
      for (const x of list) {
        batch.push(x);
        bytes += taskBytes(x.item);
        if (bytes >= 2 ** 30 || batch.length >= 256) { await runBatch(batch); batch = []; bytes = 0; }
      }
      if (batch.length) await runBatch(batch);
    };
    const makeTask = (item: PlanItem, outFd: number, outOffset: number): NativeStreamTask => {
      const { rows, cols } = matrixView(item.shape);
      if (item.action === 'edit') {
        const t: NativeStreamTask = {
          kind: 0, name: item.name, rows, cols, base: srcOf(item.base, fds), old: srcOf(item.old!, fds), new: srcOf(item.new!, fds),
          outFd, outOffset, outDtype: EDITABLE_ST_DTYPES[item.outDtype], stats: true,
        };
        if (item.impOld && item.impNew) { t.impOld = srcOf(item.impOld, fds); t.impNew = srcOf(item.impNew, fds); }
        return t;
      }
      if (item.action === 'convert') {
        return { kind: 2, name: item.name, rows: rows * cols, cols: 1, base: srcOf(item.base, fds), outFd, outOffset, outDtype: EDITABLE_ST_DTYPES[item.outDtype] };
      }
      return { kind: 1, name: item.name, copyBytes: item.base.end - item.base.begin, base: { fd: fds.get(item.base.file)!, offset: item.base.begin, dtype: 'f32', file: item.base.file }, outFd, outOffset };
    };
    if (job.kind === 'edit') {
      for (let s = 0; s < shards.length; s++) {
        const sp = planSafetensors(shards[s]!.map((it) => ({ name: it.name, dtype: it.outDtype, shape: it.shape })), stMeta);
        const file = path.join(tmp!, names[s]!);
        const fd = fs.openSync(file, 'wx');
        outFds.push(fd);
        fs.ftruncateSync(fd, sp.size);
        fs.writeSync(fd, sp.header, 0, sp.header.length, 0);
        await runAll(shards[s]!.map((it, k) => ({ item: it, task: makeTask(it, fd, sp.dataOffset + sp.entries[k]!.begin) })));
        for (const it of shards[s]!) weightMap[it.name] = names[s]!;
        fs.closeSync(outFds.pop()!);
        outFiles.push({ name: names[s]!, size: sp.size, tensors: shards[s]!.length });
      }
      if (shards.length > 1) {
        const totalSize = items.reduce((a, it) => a + it.outBytes, 0);
        fs.writeFileSync(path.join(tmp!, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n');
      }
    } else {
      await runAll(outItems.map((it) => ({ item: it, task: makeTask(it, -1, 0) })));
    }
    dataMs = Date.now() - dataStart;
    if (timer) { clearInterval(timer); timer = undefined; }
    const hashes = hashing ? await hashing : null;
    if (signal?.aborted) throw abortedError();

    // The manifest.
    const totals: CheckpointManifest['totals'] = {
      tensors: items.length, edited: 0, copied: 0, converted: 0, rows: 0,
      counts: { orthogonal: 0, synergy: 0, conflict: 0 }, energy: { new: 0, old: 0, applied: 0 }, energyKept: null,
      bytesRead: doneBefore, bytesWritten: outFiles.reduce((a, f) => a + f.size, 0),
    };
    for (const e of entries) {
      if (e.action === 'edit') {
        totals.edited++;
        totals.rows += e.rows!;
        for (const k of ['orthogonal', 'synergy', 'conflict'] as const) totals.counts[k] += e.counts![k];
        totals.energy.new += e.energy!.new;
        totals.energy.old += e.energy!.old;
        totals.energy.applied += e.energy!.applied;
      } else if (e.action === 'copy') totals.copied++;
      else totals.converted++;
    }
    totals.energyKept = totals.energy.new > 0 ? totals.energy.applied / totals.energy.new : null;
    const inputsRec: CheckpointManifest['inputs'] = {};
    for (const [role, c] of Object.entries(ck)) {
      if (!c) continue;
      inputsRec[role] = {
        path: c.path, kind: c.kind,
        files: c.files.map((f) => ({ path: f.path, size: f.size, sha256: hashes?.get(f.path) ?? null })),
      };
      if (c.index) inputsRec[role]!.files.push({ path: c.index, size: fs.statSync(c.index).size, sha256: opts.hash === false ? null : crypto.createHash('sha256').update(fs.readFileSync(c.index)).digest('hex') });
    }
    const totalMs = Date.now() - t0;
    const manifest: CheckpointManifest = {
      tool: 'geoedit', kind: job.kind, createdAt: new Date().toISOString(),
      versions: versionsBlock(),
      backend: { name: r.backend, device: r.backend === 'cuda' ? cudaStatus().device?.name ?? null : null },
      inputs: inputsRec,
      output: out ? { path: out, files: outFiles, totalSize: items.reduce((a, it) => a + it.outBytes, 0) } : null,
      parameters: paramsRecord,
      tensors: entries,
      totals,
      timings: { totalMs, validateMs, dataMs, hashMs, gbPerSecond: dataMs > 0 ? doneBefore / 1e9 / (dataMs / 1000) : 0 },
      warnings,
    };
    if (out) {
      fs.writeFileSync(path.join(tmp!, 'geoedit-manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
      if (opts.copyFiles !== false && ck.base.kind !== 'file') {
        const skip = new Set([...ck.base.files.map((f) => f.path), ck.base.index ?? '']);
        for (const n of fs.readdirSync(ck.base.dir)) {
          const src = path.join(ck.base.dir, n);
          if (skip.has(src) || n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json') || n === 'geoedit-manifest.json' || n.startsWith('.')) continue;
          if (!statOrNull(src)?.isFile()) continue;
          fs.copyFileSync(src, path.join(tmp!, n));
        }
      }
      // The report goes into place first: if it fails, the job fails and nothing is at the target.
      if (opts.report) await writeReportFile(path.resolve(opts.report), manifest);
      if (signal?.aborted || ctl[1]) throw abortedError();
      // Into place: an existing target (force) is moved aside first, then removed.
      let aside: string | null = null;
      if (fs.existsSync(out)) {
        aside = `${tmp}.old`;
        fs.renameSync(out, aside);
      }
      fs.renameSync(tmp!, out);
      tmp = null;
      if (aside) fs.rmSync(aside, { recursive: true, force: true });
    }
    if (opts.report && !out) await writeReportFile(path.resolve(opts.report), manifest);
    return manifest;
  } catch (e) {
    if (signal?.aborted && !(e instanceof GeoEditError && e.code === 'ERR_ABORTED')) throw abortedError();
    throw e;
  } finally {
    if (timer) clearInterval(timer);
    cleanup();
    for (const fd of fds.values()) { try { fs.closeSync(fd); } catch { /* closed */ } }
    signal?.removeEventListener('abort', onAbort);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/**
 * Edits a whole checkpoint: every tensor present in base, old and new (same shapes) is edited
 * row by row (float tensors) or copied from the base (integer/bool, unselected). Writes
 * `out/model.safetensors` (or HF-named shards + index), `geoedit-manifest.json` and the base
 * directory's other files; resolves to the manifest. Nothing appears at `out` unless it completes.
 */
export function editCheckpoint(io: CheckpointInputs & { out: string }, options?: CheckpointOptions): Promise<CheckpointManifest> {
  return runJob({ kind: 'edit', inputs: io, opts: options ?? {}, out: io?.out, site: callSite(editCheckpoint) });
}

/** The same statistics (and report) as editCheckpoint, without writing weights. */
export function analyzeCheckpoint(io: CheckpointInputs, options?: CheckpointOptions): Promise<CheckpointManifest> {
  return runJob({ kind: 'analyze', inputs: io, opts: options ?? {}, out: null, site: callSite(analyzeCheckpoint) });
}

export type { SafetensorsTensorInfo };
