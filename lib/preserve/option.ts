// The option `preserve` (SPEC §3 step 0), checked once for every entry point: the file form
// { file, rho?, mu? } (checkpoints, adapters) and the tensor form { cov, editCov?, rho?, mu? } |
// { basis } (the in-memory API: editLora/analyzeLora here; editTensor/analyzeTensor reuse it).
// THE defaults of rho and mu are the option table's --preserve-rho / --preserve-mu entries.
import { GeoEditError, describe, typeError } from '../errors';
import { OPTIONS, type OptionSpec } from '../options/table';
import type { NativePreserve } from '../native';
import type { PreserveTensorOption, Tensor } from '../types';

function cliEntry(sets: string): OptionSpec {
  return (OPTIONS as readonly OptionSpec[]).find((o) => o.cli?.of === 'preserve' && o.cli.sets === sets)!;
}

/** rho and mu when the caller gives none (the option table, one place). */
export const PRESERVE_DEFAULTS = Object.freeze({ rho: cliEntry('rho').default as number, mu: cliEntry('mu').default as number });

export interface PreserveFileOption { file: string; rho: number; mu: number }
export type { PreserveTensorOption };

function invalid(msg: string, option: string): GeoEditError {
  return new GeoEditError('ERR_INVALID_OPTION', msg, { option });
}

/** rho > 0, mu >= 0, both finite (defaults from the table). */
export function checkRhoMu(o: { rho?: unknown; mu?: unknown }, what: string): { rho: number; mu: number } {
  const rho = o.rho ?? PRESERVE_DEFAULTS.rho, mu = o.mu ?? PRESERVE_DEFAULTS.mu;
  if (typeof rho !== 'number') throw typeError(`Expected a number for option 'preserve.rho' of ${what} but received ${describe(rho)}`);
  if (typeof mu !== 'number') throw typeError(`Expected a number for option 'preserve.mu' of ${what} but received ${describe(mu)}`);
  if (!Number.isFinite(rho) || !(rho > 0)) throw invalid(`Expected a finite number > 0 for option 'preserve.rho' of ${what} but received ${rho}`, 'preserve.rho');
  if (!Number.isFinite(mu) || !(mu >= 0)) throw invalid(`Expected a finite number >= 0 for option 'preserve.mu' of ${what} but received ${mu}`, 'preserve.mu');
  return { rho, mu };
}

function checkKeys(o: Record<string, unknown>, allowed: string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (o[k] !== undefined && !allowed.includes(k)) {
      throw new GeoEditError('ERR_UNKNOWN_OPTION', `Unknown key '${k}' in option 'preserve' of ${what}; known keys: ${allowed.join(', ')}`, { option: `preserve.${k}` });
    }
  }
}

/** The file form (checkpoints, adapters). */
export function checkPreserveFileOption(v: unknown, what: string): PreserveFileOption | null {
  if (v === undefined) return null;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw typeError(`Expected { file, rho?, mu? } for option 'preserve' of ${what} but received ${describe(v)}`);
  const o = v as Record<string, unknown>;
  checkKeys(o, ['file', 'rho', 'mu'], what);
  if (typeof o.file !== 'string' || o.file.length === 0) throw typeError(`Expected a file path for option 'preserve.file' of ${what} but received ${describe(o.file)}`);
  return { file: o.file, ...checkRhoMu(o, what) };
}

function f32Matrix(t: unknown, key: string, what: string): { data: Float32Array; shape: [number, number] } {
  const x = t as Tensor | null | undefined;
  if (!x || typeof x !== 'object' || x.dtype !== 'f32' || !(x.data instanceof Float32Array) || !Array.isArray(x.shape) || x.shape.length !== 2) {
    throw typeError(`Expected an f32 tensor of shape [rows, cols] for option 'preserve.${key}' of ${what} but received ${describe(t)}`);
  }
  const [r, c] = x.shape as [number, number];
  if (!Number.isSafeInteger(r) || !Number.isSafeInteger(c) || r < 0 || c < 0 || r * c !== x.data.length) {
    throw new GeoEditError('ERR_DATA_LENGTH', `option 'preserve.${key}' of ${what}: shape [${x.shape.join(', ')}] needs ${r * c} values but the data holds ${x.data.length}`, { option: `preserve.${key}` });
  }
  return { data: x.data, shape: [r, c] };
}

/**
 * The tensor form, checked and turned into the binding's NativePreserve (the core validates the
 * values: symmetric, PSD, finite, orthonormal; and the width against the tensor's rows).
 */
export function checkPreserveTensorOption(v: unknown, what: string, tensorName?: string): NativePreserve | null {
  if (v === undefined) return null;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw typeError(`Expected { cov, editCov?, rho?, mu? } or { basis } for option 'preserve' of ${what} but received ${describe(v)}`);
  const o = v as Record<string, unknown>;
  const source = `option 'preserve' of ${what}`;
  if (o.basis !== undefined) {
    checkKeys(o, ['basis'], what);
    const b = f32Matrix(o.basis, 'basis', what);
    return { basis: b.data, basisShape: b.shape, source, ...(tensorName ? { tensor: tensorName } : {}) };
  }
  checkKeys(o, ['cov', 'editCov', 'rho', 'mu'], what);
  if (o.cov === undefined) throw typeError(`Expected { cov, editCov?, rho?, mu? } or { basis } for option 'preserve' of ${what}: neither cov nor basis is given`);
  const c = f32Matrix(o.cov, 'cov', what);
  const p: NativePreserve = { cov: c.data, covShape: c.shape, ...checkRhoMu(o, what), source, ...(tensorName ? { tensor: tensorName } : {}) };
  if (o.editCov !== undefined) {
    const e = f32Matrix(o.editCov, 'editCov', what);
    p.editCov = e.data;
    p.editCovShape = e.shape;
  }
  return p;
}
