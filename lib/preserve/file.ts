// The statistics file of option `preserve: { file }` (docs/preservation.md): a safetensors file of
// f32 tensors named `W:cov` (C0), `W:edit_cov` (C1, optional), `W:keys` (a sample K0 [N, n]; C0 =
// K0ᵀK0/N formed in the core), `W:edit_keys` (K1) or `W:basis` (U [k, n]) for a weight W (its name in
// the base model), and `__metadata__["geoedit.preserve.shared"]`: JSON { weight: name whose
// statistics it uses } (q/k/v, gate/up). Only the header is read to plan; every check that needs no
// values is done here, before any work; the values are read one statistic at a time (loadSource).
import { fileIdOf, type FileId } from '../job/inputs';
import * as fs from 'node:fs';
import { GeoEditError, type GeoEditErrorCode } from '../errors';
import { readSafetensorsHeaderSync, type SafetensorsTensorInfo } from '../safetensors';
import type { NativePreserve } from '../native';
import type { PreserveFileOption } from './option';

export const SHARED_KEY = 'geoedit.preserve.shared';
const KINDS = ['cov', 'edit_cov', 'keys', 'edit_keys', 'basis'] as const;
type Kind = (typeof KINDS)[number];

/** A weight the statistics may apply to: its row length n in its layout, and its bias (the augmented form). */
export interface WeightInfo {
  name: string;
  shape: number[];
  rows: number;
  cols: number;
  /** The bias beside it (`….bias` for `….weight`), when there is one of `rows` elements. */
  bias?: string;
}

/** The statistics stored under one name (used by that weight and by the weights sharing it). */
export interface StatSource {
  name: string;
  form: 'ridge' | 'basis';
  /** d: n, or n + 1 for the augmented input [x; 1]. */
  dim: number;
  parts: Partial<Record<Kind, SafetensorsTensorInfo>>;
  /** Bytes of f32 values to read. */
  bytes: number;
}

export interface WeightStats {
  weight: string;
  source: StatSource;
  /** Through a `shared` entry. */
  shared: boolean;
  /** d = n + 1: the weight's bias is preserved with it. */
  augmented: boolean;
  bias?: string;
}

export interface StatisticsPlan {
  file: string;
  /** The file's device and inode when its header was read (a job reads it through a descriptor checked against this). */
  id: FileId;
  rho: number;
  mu: number;
  byWeight: Map<string, WeightStats>;
  sources: Map<string, StatSource>;
}

function bad(code: GeoEditErrorCode, file: string, tensor: string, msg: string, extra?: Record<string, unknown>): GeoEditError {
  return new GeoEditError(code, `${file}: ${msg}`, { file, tensor, ...extra });
}

const shapeText = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** The width d a statistic gives, checking its parts against each other. */
function sourceOf(file: string, name: string, parts: Partial<Record<Kind, SafetensorsTensorInfo>>): StatSource {
  const forms = (['cov', 'keys', 'basis'] as const).filter((k) => parts[k]);
  if (forms.length !== 1) {
    const msg = forms.length ? `has ${forms.map((k) => `'${name}:${k}'`).join(' and ')}: give exactly one of :cov, :keys, :basis` : `has ${Object.keys(parts).map((k) => `'${name}:${k}'`).join(', ')} but none of :cov, :keys, :basis`;
    throw bad('ERR_BAD_STATISTICS', file, name, `the statistics of '${name}' ${msg}`);
  }
  const form = forms[0]!;
  if (form === 'basis' && (parts.edit_cov || parts.edit_keys)) throw bad('ERR_BAD_STATISTICS', file, name, `'${name}:basis' cannot be combined with edit statistics (:edit_cov / :edit_keys are for the ridge form)`);
  if (parts.edit_cov && parts.edit_keys) throw bad('ERR_BAD_STATISTICS', file, name, `'${name}' has both :edit_cov and :edit_keys: give one`);
  const main = parts[form]!;
  const dim = main.shape[1]!;
  if (form === 'cov' && main.shape[0] !== dim) throw bad('ERR_SHAPE_MISMATCH', file, name, `'${name}:cov' has shape ${shapeText(main.shape)}: a covariance is square [d, d]`);
  if (parts.edit_cov && (parts.edit_cov.shape[0] !== dim || parts.edit_cov.shape[1] !== dim)) {
    throw bad('ERR_SHAPE_MISMATCH', file, name, `'${name}:edit_cov' has shape ${shapeText(parts.edit_cov.shape)} but '${name}:${form}' gives width ${dim}: expected [${dim}, ${dim}]`);
  }
  if (parts.edit_keys && parts.edit_keys.shape[1] !== dim) {
    throw bad('ERR_SHAPE_MISMATCH', file, name, `'${name}:edit_keys' has shape ${shapeText(parts.edit_keys.shape)} but '${name}:${form}' gives width ${dim}`);
  }
  let bytes = 0;
  for (const t of Object.values(parts)) bytes += t!.end - t!.begin;
  return { name, form: form === 'basis' ? 'basis' : 'ridge', dim, parts, bytes };
}

function parseShared(file: string, meta: Record<string, string> | null): Map<string, string> {
  const out = new Map<string, string>();
  const raw = meta?.[SHARED_KEY];
  if (raw === undefined) return out;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new GeoEditError('ERR_BAD_STATISTICS', `${file}: __metadata__["${SHARED_KEY}"] is not valid JSON (${(e as Error).message})`, { file, key: SHARED_KEY });
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new GeoEditError('ERR_BAD_STATISTICS', `${file}: __metadata__["${SHARED_KEY}"] must be a JSON object mapping a weight name to the name whose statistics it uses`, { file, key: SHARED_KEY });
  }
  for (const [k, t] of Object.entries(v as Record<string, unknown>)) {
    if (typeof t !== 'string' || t.length === 0 || k.length === 0) {
      throw new GeoEditError('ERR_BAD_STATISTICS', `${file}: __metadata__["${SHARED_KEY}"]["${k}"] must be a weight name (a non-empty string)`, { file, key: SHARED_KEY, tensor: k });
    }
    out.set(k, t);
  }
  return out;
}

/** The file's tensors grouped by weight name (only `W:<kind>` names, f32, 2-D). */
function readSources(file: string): { sources: Map<string, StatSource>; shared: Map<string, string> } {
  const h = readSafetensorsHeaderSync(file);
  const groups = new Map<string, Partial<Record<Kind, SafetensorsTensorInfo>>>();
  for (const t of h.tensors) {
    const at = t.name.lastIndexOf(':');
    const w = at > 0 ? t.name.slice(0, at) : '';
    const kind = at > 0 ? t.name.slice(at + 1) : '';
    if (!w || !(KINDS as readonly string[]).includes(kind)) {
      throw bad('ERR_BAD_STATISTICS', file, t.name, `tensor '${t.name}' is not a statistic: names are W:cov, W:edit_cov, W:keys, W:edit_keys or W:basis for a weight W`);
    }
    if (t.dtype !== 'F32') throw bad('ERR_BAD_STATISTICS', file, t.name, `'${t.name}' is ${t.dtype}; statistics are F32`);
    if (t.shape.length !== 2) throw bad('ERR_SHAPE_MISMATCH', file, t.name, `'${t.name}' has shape ${shapeText(t.shape)}; statistics are 2-D`);
    const g = groups.get(w) ?? {};
    g[kind as Kind] = t;
    groups.set(w, g);
  }
  const sources = new Map<string, StatSource>();
  for (const [w, parts] of groups) sources.set(w, sourceOf(file, w, parts));
  return { sources, shared: parseShared(file, h.metadata) };
}

/** Every name the file gives statistics for: its own (W of W:cov, …) and the shared entries' keys. */
export function statisticNames(file: string): Set<string> {
  const { sources, shared } = readSources(file);
  return new Set([...sources.keys(), ...shared.keys()]);
}

/** d fits the weight: n, or n + 1 with a bias. */
function checkWidth(file: string, w: WeightInfo, src: StatSource, via: string | null): boolean {
  if (src.dim === w.cols) return false;
  if (src.dim === w.cols + 1 && w.bias) return true;
  const main = src.parts.cov ?? src.parts.keys ?? src.parts.basis!;
  const what = via ? `shared entry '${w.name}' -> '${via}': the statistics '${main.name}'` : `'${main.name}'`;
  const expect = `[${src.form === 'basis' ? 'k' : main === src.parts.keys ? 'N' : w.cols}, ${w.cols}]${w.bias ? ` (or width ${w.cols + 1} for the augmented [x; 1] with its bias '${w.bias}')` : ''}`;
  throw bad('ERR_SHAPE_MISMATCH', file, w.name, `${what} has shape ${shapeText(main.shape)} (width ${src.dim}) but weight '${w.name}' has shape ${shapeText(w.shape)} (rows of length ${w.cols}): expected ${expect}`, { statistic: main.name, weightShape: w.shape, statisticShape: main.shape });
}

/**
 * Plans the statistics for the weights of a model: which weights have which statistics. Every
 * structural error is thrown here (names, forms, shapes, shared entries). `model` holds every
 * weight of the model; with `strict`, statistics for a name that is not in the model are an error
 * (else they are returned in `unused`).
 */
export function planStatistics(opt: PreserveFileOption, model: Map<string, WeightInfo>, strict: boolean): StatisticsPlan & { unused: string[] } {
  const file = opt.file;
  let id: FileId;
  try { id = fileIdOf(fs.statSync(file)); } catch { id = { dev: -1, ino: -1 }; } // a missing file: readSources names it
  const { sources, shared } = readSources(file);
  const byWeight = new Map<string, WeightStats>();
  const unused: string[] = [];
  const outside: string[] = []; // sources not in the model: used only through shared entries, else unused
  for (const [name, src] of sources) {
    const w = model.get(name);
    if (!w) {
      if (strict) throw bad('ERR_MISSING_TENSOR', file, name, `statistics for '${name}', which is not a weight of the model`);
      outside.push(name);
      continue;
    }
    const augmented = checkWidth(file, w, src, null);
    byWeight.set(name, { weight: name, source: src, shared: false, augmented, ...(augmented ? { bias: w.bias } : {}) });
  }
  for (const [k, target] of shared) {
    const src = sources.get(target);
    if (!src) throw bad('ERR_BAD_STATISTICS', file, k, `__metadata__["${SHARED_KEY}"] maps '${k}' to '${target}', which has no statistics in the file`, { key: SHARED_KEY, shared: target });
    if (sources.has(k)) throw bad('ERR_BAD_STATISTICS', file, k, `'${k}' has statistics of its own and a shared entry (-> '${target}'): give one`, { key: SHARED_KEY });
    const w = model.get(k);
    if (!w) {
      if (strict) throw bad('ERR_MISSING_TENSOR', file, k, `__metadata__["${SHARED_KEY}"] names '${k}', which is not a weight of the model`, { key: SHARED_KEY });
      unused.push(k);
      continue;
    }
    const augmented = checkWidth(file, w, src, target);
    byWeight.set(k, { weight: k, source: src, shared: true, augmented, ...(augmented ? { bias: w.bias } : {}) });
  }
  const viaShared = new Set([...byWeight.values()].filter((w) => w.shared).map((w) => w.source.name));
  for (const n of outside) if (!viaShared.has(n)) unused.push(n);
  return { file, id, rho: opt.rho, mu: opt.mu, byWeight, sources, unused };
}

function readF32(fd: number, t: SafetensorsTensorInfo): Float32Array {
  const out = new Float32Array((t.end - t.begin) / 4);
  const buf = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, t.begin + done);
    if (n <= 0) throw new GeoEditError('ERR_IO', `${t.name}: the statistics file ended early`, { tensor: t.name });
    done += n;
  }
  return out;
}

/** One statistic's values, read from the open file, as the binding takes them. */
export function loadSource(plan: StatisticsPlan, src: StatSource, fd: number): NativePreserve {
  const p: NativePreserve = { rho: plan.rho, mu: plan.mu, source: plan.file, tensor: src.name };
  const map: Array<[Kind, 'cov' | 'editCov' | 'keys' | 'editKeys' | 'basis']> = [['cov', 'cov'], ['edit_cov', 'editCov'], ['keys', 'keys'], ['edit_keys', 'editKeys'], ['basis', 'basis']];
  for (const [k, key] of map) {
    const t = src.parts[k];
    if (!t) continue;
    p[key] = readF32(fd, t);
    p[`${key}Shape`] = [t.shape[0]!, t.shape[1]!];
  }
  return p;
}

/** Bytes of a statistic's values plus its operator (f32 d×d or U) and the f64 build's work space. */
export function sourceMemory(src: StatSource): number {
  return src.bytes + 20 * src.dim * src.dim;
}
