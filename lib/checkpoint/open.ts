// Opening a checkpoint: a .safetensors file, an index .json + shards, or a directory holding
// either. Only headers are read; shard names are checked to stay inside the directory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError, describe, typeError, type GeoEditErrorCode } from '../errors';
import { fileIdOf, type FileId } from '../job/inputs';
import { readSafetensorsHeaderSync, type SafetensorsHeader, type StDtype } from '../safetensors';
import { isInside, statOrNull } from '../job/target';

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
  /** `id`: device and inode when the header was read (a job checks that it edits the same files). */
  files: Array<{ path: string; size: number; header: SafetensorsHeader; id: FileId }>;
  /** In file order, then data order. */
  tensors: CheckpointTensor[];
  byName: Map<string, CheckpointTensor>;
  metadata: Record<string, string> | null;
}

export type { FileId } from '../job/inputs';

function bad(code: GeoEditErrorCode, msg: string, details?: Record<string, unknown>): GeoEditError {
  return new GeoEditError(code, msg, details);
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

/** Where the weights of a path are: an index, or a single file (a directory is searched). */
function locate(abs: string, st: fs.Stats, role: string): { dir: string; index: string | null; single: string | null; singleSt?: fs.Stats } {
  if (!st.isDirectory()) return abs.endsWith('.json') ? { dir: path.dirname(abs), index: abs, single: null } : { dir: path.dirname(abs), index: null, single: abs, singleSt: st };
  const idx = path.join(abs, 'model.safetensors.index.json');
  const one = path.join(abs, 'model.safetensors');
  if (statOrNull(idx)?.isFile()) return { dir: abs, index: idx, single: null };
  const oneSt = statOrNull(one);
  if (oneSt?.isFile()) return { dir: abs, index: null, single: one, singleSt: oneSt };
  const names = fs.readdirSync(abs);
  const idxs = names.filter((n) => n.endsWith('.safetensors.index.json'));
  const sts = names.filter((n) => n.endsWith('.safetensors'));
  if (idxs.length === 1) return { dir: abs, index: path.join(abs, idxs[0]!), single: null };
  if (idxs.length === 0 && sts.length === 1) return { dir: abs, index: null, single: path.join(abs, sts[0]!) };
  throw bad('ERR_NOT_FOUND', `${role}: ${abs} holds neither model.safetensors nor model.safetensors.index.json` +
    (sts.length + idxs.length > 1 ? ` (and ${sts.length + idxs.length} candidate files: name one of them)` : ''), { file: abs, role });
}

function tensorOf(t: { name: string; dtype: StDtype; shape: number[]; begin: number; end: number }, file: string): CheckpointTensor {
  return { name: t.name, dtype: t.dtype, shape: t.shape, file, begin: t.begin, end: t.end };
}

/** The index's weight_map: tensor → shard (checked to stay inside dir), and the shards in first-seen order. */
function readWeightMap(indexFile: string, dir: string): { shardOf: Map<string, string>; shardOrder: string[] } {
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
  const shardOf = new Map<string, string>();
  const seen = new Set<string>();
  const shardOrder: string[] = [];
  for (const [tensor, shard] of Object.entries(wm as Record<string, unknown>)) {
    const full = checkShardName(indexFile, dir, shard, tensor);
    if (!seen.has(full)) { seen.add(full); shardOrder.push(full); }
    shardOf.set(tensor, full);
  }
  return { shardOf, shardOrder };
}

/** An index + shards: every shard present, inside the directory, holding what the index says. */
function openSharded(abs: string, dir: string, indexFile: string): Checkpoint {
  const { shardOf, shardOrder } = readWeightMap(indexFile, dir);
  const realDir = fs.realpathSync(dir);
  const firstTensor = new Map<string, string>();
  for (const [tensor, full] of shardOf) if (!firstTensor.has(full)) firstTensor.set(full, tensor);
  const files: Checkpoint['files'] = [];
  for (const full of shardOrder) {
    const sst = statOrNull(full);
    const tensor = firstTensor.get(full)!;
    if (!sst || !sst.isFile()) {
      throw bad('ERR_NOT_FOUND', `${indexFile}: shard '${path.relative(dir, full)}' (holding tensor '${tensor}') is missing`, { file: full, tensor });
    }
    if (!isInside(realDir, fs.realpathSync(full))) {
      throw bad('ERR_BAD_SAFETENSORS', `${indexFile}: shard '${path.relative(dir, full)}' (tensor '${tensor}') resolves outside ${dir} (a link?)`, { file: full, tensor });
    }
    const h = readSafetensorsHeaderSync(full);
    files.push({ path: full, size: h.size, header: h, id: fileIdOf(sst) });
  }
  const tensors: CheckpointTensor[] = [];
  const byName = new Map<string, CheckpointTensor>();
  for (const f of files) {
    for (const t of f.header.tensors) {
      if (shardOf.get(t.name) !== f.path) continue; // not listed for this shard: not part of the model
      const ct = tensorOf(t, f.path);
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

/** Opens a checkpoint: a .safetensors file, an index .json, or a directory holding either. */
export function openCheckpoint(p: string, role = 'checkpoint'): Checkpoint {
  if (typeof p !== 'string' || p.length === 0) throw typeError(`Expected a path for ${role} but received ${describe(p)}`);
  const abs = path.resolve(p);
  const st = statOrNull(abs);
  if (!st) throw bad('ERR_NOT_FOUND', `${role}: ${abs} does not exist`, { file: abs, role });
  const { dir, index, single, singleSt } = locate(abs, st, role);
  if (index) return openSharded(abs, dir, index);
  // its identity from the stat that found it (OpenInputs checks the descriptor the job reads against it)
  const sst = singleSt ?? fs.statSync(single!);
  const h = readSafetensorsHeaderSync(single!);
  const tensors = h.tensors.map((t) => tensorOf(t, single!));
  return {
    path: abs, kind: st.isDirectory() ? 'directory' : 'file', dir, index: null, files: [{ path: single!, size: h.size, header: h, id: fileIdOf(sst) }],
    tensors, byName: new Map(tensors.map((t) => [t.name, t])), metadata: h.metadata,
  };
}
