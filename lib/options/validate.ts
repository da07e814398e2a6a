// Validation from the option table, once, in TS: known keys per entry point, then each present
// option by its type and range. Structured options (tensors, coefficients, importance) and rules
// between options are checked by the entry points themselves.
import { GeoEditError, describe, typeError } from '../errors';
import type { NativeParams } from '../native';
import { PARAM_SPECS, keysFor, optionSpec, type EntryPoint, type OptionSpec, type ResolvedParams } from './table';
import { parseSize } from './size';
import type { DType } from '../types';

export type { ResolvedParams } from './table';

function paramDefault(name: string): number {
  return optionSpec(name)!.default as number;
}

/** The numeric defaults (mirroring Params in geoedit.h; test/defaults.test.ts compares them). */
export const DEFAULTS = Object.freeze({
  strategy: optionSpec('strategy')!.default as ResolvedParams['strategy'],
  scale: paramDefault('scale'),
  kappa: paramDefault('kappa'),
  keepOrthogonal: paramDefault('keepOrthogonal'),
  fuseAligned: paramDefault('fuseAligned'),
  forgetConflicting: paramDefault('forgetConflicting'),
  lambda: paramDefault('lambda'),
  density: paramDefault('density'),
  temperature: paramDefault('temperature'),
});

/** preset 'paper': the table's `paper` values. */
export const PAPER_PRESET = Object.freeze(
  Object.fromEntries(PARAM_SPECS.filter((s) => s.paper !== undefined).map((s) => [s.name, s.paper])) as { keepOrthogonal: number; fuseAligned: number; forgetConflicting: number; kappa: number },
);

export function checkKnownKeys(opts: object, allowed: Set<string>, what: string): void {
  for (const k of Object.keys(opts)) {
    if (!allowed.has(k)) {
      throw new GeoEditError('ERR_UNKNOWN_OPTION', `Unknown option '${k}' for ${what}; known options: ${[...allowed].join(', ')}`, { option: k });
    }
  }
}

function invalid(name: string, msg: string): GeoEditError {
  return new GeoEditError('ERR_INVALID_OPTION', msg, { option: name });
}

/** The range of a number/int entry in words ('a number in (0, 1]'), or '' when unbounded. */
export function rangeText(s: OptionSpec): string {
  if (s.rangeDoc) return s.rangeDoc;
  const kind = s.type === 'int' ? 'an integer' : 'a number';
  if (s.min !== undefined && s.max !== undefined) return `${kind} in ${s.minOpen ? '(' : '['}${s.min}, ${s.max}${s.maxOpen ? ')' : ']'}`;
  if (s.min !== undefined) return `${kind} ${s.minOpen ? '>' : '>='} ${s.min}`;
  if (s.max !== undefined) return `${kind} ${s.maxOpen ? '<' : '<='} ${s.max}`;
  return '';
}

function checkNumber(s: OptionSpec, v: unknown): number {
  if (typeof v !== 'number') throw typeError(`Expected a number for option '${s.name}' but received ${describe(v)}`);
  if (!Number.isFinite(v)) throw invalid(s.name, `Expected a finite number for option '${s.name}' but received ${v}`);
  const ok = (s.type !== 'int' || Number.isSafeInteger(v))
    && (s.min === undefined || (s.minOpen ? v > s.min : v >= s.min))
    && (s.max === undefined || (s.maxOpen ? v < s.max : v <= s.max));
  if (!ok) throw invalid(s.name, `Expected ${rangeText(s) || (s.type === 'int' ? 'an integer' : 'a number')} for option '${s.name}' but received ${v}`);
  return v;
}

/** Checks one present option against its entry; returns the value (sizes: in bytes). */
export function checkOption(s: OptionSpec, v: unknown): unknown {
  switch (s.type) {
    case 'number':
    case 'int':
      return checkNumber(s, v);
    case 'boolean':
      if (typeof v !== 'boolean') throw typeError(`Expected a boolean for option '${s.name}' but received ${describe(v)}`);
      return v;
    case 'enum': {
      const vals = s.values ?? [];
      if (typeof v === 'string' && vals.includes(v)) return v;
      const list = vals.length === 1 ? `'${vals[0]}'` : `one of ${vals.map((x) => `'${x}'`).join(', ')}`;
      const msg = `Expected ${list} for option '${s.name}' but received ${describe(v)}`;
      if (s.code) throw new GeoEditError(s.code, msg, { option: s.name });
      if (typeof v !== 'string' && s.name === 'backend') throw typeError(msg);
      throw invalid(s.name, msg);
    }
    case 'size':
      return parseSize(v, s.name);
    case 'globs': {
      const arr = typeof v === 'string' ? [v] : v;
      if (!Array.isArray(arr) || !arr.every((x) => typeof x === 'string' && x.length > 0)) {
        throw typeError(`Expected a glob string or an array of glob strings for option '${s.name}' but received ${describe(v)}`);
      }
      return arr;
    }
    case 'path':
      if (typeof v !== 'string' || v.length === 0) throw typeError(`Expected a file path for option '${s.name}' but received ${describe(v)}`);
      return v;
    case 'function':
      if (typeof v !== 'function') throw typeError(`Expected a function for option '${s.name}' but received ${describe(v)}`);
      return v;
    case 'signal':
      if (!(v instanceof AbortSignal)) throw typeError(`Expected an AbortSignal for option '${s.name}' but received ${describe(v)}`);
      return v;
    case 'structured':
      return v;
  }
}

/**
 * The options object of an entry point: an object, only known keys, and every present option of
 * a simple type valid by the table. Returns it as a record.
 */
export function validateOptions(options: unknown, entry: EntryPoint, what: string): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw typeError(`Expected an options object but received ${describe(options)}`);
  const o = options as Record<string, unknown>;
  checkKnownKeys(o, keysFor(entry), what);
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue;
    const s = optionSpec(k)!;
    if (s.param) continue; // resolveParams checks them (with the preset)
    checkOption(s, v);
  }
  return o;
}

/** The core's parameters: each `param` entry checked and resolved (preset, then explicit values). */
export function resolveParams(options: object | undefined | null): ResolvedParams {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object') throw typeError(`Expected an options object but received ${describe(options)}`);
  const o = options as Record<string, unknown>;
  const preset = o.preset === undefined ? undefined : checkOption(optionSpec('preset')!, o.preset);
  const p: Record<string, unknown> = {};
  for (const s of PARAM_SPECS) {
    const v = o[s.name];
    if (v !== undefined) p[s.name] = checkOption(s, v);
    else p[s.name] = preset === 'paper' && s.paper !== undefined ? s.paper : s.default;
  }
  return p as ResolvedParams;
}

/** What crosses to the binding: exactly the `param` entries. */
export function nativeParams(p: ResolvedParams): NativeParams {
  return { ...p };
}

export function checkDtype(v: unknown, name: string): DType {
  if (typeof v !== 'string' || !['f32', 'f16', 'bf16'].includes(v)) {
    throw new GeoEditError('ERR_UNKNOWN_DTYPE', `Expected one of 'f32', 'f16', 'bf16' for ${name} but received ${describe(v)}`, { argument: name });
  }
  return v as DType;
}

/** Option 'threads' (0: all cores). */
export function resolveThreads(v: unknown): number {
  return v === undefined ? 0 : checkNumber(optionSpec('threads')!, v);
}

/** Coefficients of strategy 'custom' for `rows` rows: Float32Arrays of finite values, on every path. */
export function checkCoefficients(c: unknown, rows: number): { cNew: Float32Array; cOld: Float32Array } {
  const cc = c as { cNew?: unknown; cOld?: unknown } | null | undefined;
  if (!cc || typeof cc !== 'object' || !(cc.cNew instanceof Float32Array) || !(cc.cOld instanceof Float32Array)) {
    throw new GeoEditError('ERR_COEFFICIENTS', `Expected coefficients { cNew: Float32Array, cOld: Float32Array } with ${rows} values each for strategy 'custom' but received ${describe(c)}`, { option: 'coefficients' });
  }
  const { cNew, cOld } = cc as { cNew: Float32Array; cOld: Float32Array };
  if (cNew.length !== rows || cOld.length !== rows) {
    throw new GeoEditError('ERR_COEFFICIENTS', `Expected ${rows} values (one per row) in coefficients.cNew and coefficients.cOld but received ${cNew.length} and ${cOld.length}`, { option: 'coefficients' });
  }
  for (let i = 0; i < rows; i++) {
    if (!Number.isFinite(cNew[i]!) || !Number.isFinite(cOld[i]!)) {
      throw new GeoEditError('ERR_COEFFICIENTS', `Expected finite coefficients but row ${i} has cNew ${cNew[i]}, cOld ${cOld[i]}`, { option: 'coefficients', row: i });
    }
  }
  return { cNew, cOld };
}
