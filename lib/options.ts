// Option defaults and validation. The numeric defaults are read from the core (one place: Params
// in native/include/geoedit/geoedit.h); DEFAULTS here mirrors them and a test checks they agree.
import { GeoEditError, describe, typeError } from './errors';
import { DTYPES, STRATEGIES, type DType, type EditOptions, type Strategy } from './types';

export const DEFAULTS = Object.freeze({
  strategy: 'geoedit' as Strategy,
  scale: 1,
  kappa: 2,
  keepOrthogonal: 0.75,
  fuseAligned: 0,
  forgetConflicting: 0,
  lambda: 1,
  density: 1,
  temperature: 1,
});

export const PAPER_PRESET = Object.freeze({ keepOrthogonal: 0, fuseAligned: 1, forgetConflicting: 1, kappa: 1 });

/** Fully resolved numeric parameters (what the kernels receive). */
export interface ResolvedParams {
  strategy: Strategy;
  scale: number;
  kappa: number;
  bandDegrees: number; // -1: not set (adaptive kappa threshold)
  keepOrthogonal: number;
  fuseAligned: number;
  forgetConflicting: number;
  lambda: number;
  density: number;
  temperature: number;
  allowNonFinite: boolean;
}

const EDIT_OPTION_KEYS = new Set<string>([
  'strategy', 'preset', 'scale', 'kappa', 'bandDegrees', 'keepOrthogonal', 'fuseAligned', 'forgetConflicting',
  'lambda', 'density', 'temperature', 'importanceOld', 'importanceNew', 'coefficients', 'outDtype', 'out', 'threads',
  'backend', 'allowNonFinite', 'cudaMemoryLimit',
]);

export function checkKnownKeys(opts: object, allowed: Set<string>, what: string): void {
  for (const k of Object.keys(opts)) {
    if (!allowed.has(k)) {
      throw new GeoEditError('ERR_UNKNOWN_OPTION', `Unknown option '${k}' for ${what}; known options: ${[...allowed].join(', ')}`, { option: k });
    }
  }
}
export { EDIT_OPTION_KEYS };

function numberOpt(opts: Record<string, unknown>, name: string): number | undefined {
  const v = opts[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw typeError(`Expected a number for option '${name}' but received ${describe(v)}`);
  if (!Number.isFinite(v)) throw new GeoEditError('ERR_INVALID_OPTION', `Expected a finite number for option '${name}' but received ${v}`, { option: name });
  return v;
}

function range(name: string, v: number, ok: boolean, expected: string): void {
  if (!ok) throw new GeoEditError('ERR_INVALID_OPTION', `Expected ${expected} for option '${name}' but received ${v}`, { option: name });
}

export function checkDtype(v: unknown, name: string): DType {
  if (typeof v !== 'string' || !(DTYPES as readonly string[]).includes(v)) {
    throw new GeoEditError('ERR_UNKNOWN_DTYPE', `Expected one of 'f32', 'f16', 'bf16' for ${name} but received ${describe(v)}`, { argument: name });
  }
  return v as DType;
}

export function resolveParams(options: EditOptions | undefined): ResolvedParams {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object') throw typeError(`Expected an options object but received ${describe(options)}`);
  const o = options as Record<string, unknown>;
  let strategy: Strategy = DEFAULTS.strategy;
  if (o.strategy !== undefined) {
    if (typeof o.strategy !== 'string' || !(STRATEGIES as readonly string[]).includes(o.strategy)) {
      throw new GeoEditError('ERR_UNKNOWN_STRATEGY', `Expected one of ${STRATEGIES.map((s) => `'${s}'`).join(', ')} for option 'strategy' but received ${describe(o.strategy)}`, { option: 'strategy' });
    }
    strategy = o.strategy as Strategy;
  }
  const base: Record<string, number> = { ...DEFAULTS } as unknown as Record<string, number>;
  if (o.preset !== undefined) {
    if (o.preset !== 'paper') throw new GeoEditError('ERR_INVALID_OPTION', `Expected 'paper' for option 'preset' but received ${describe(o.preset)}`, { option: 'preset' });
    Object.assign(base, PAPER_PRESET);
  }
  const get = (name: string): number => numberOpt(o, name) ?? base[name]!;
  const p: ResolvedParams = {
    strategy,
    scale: get('scale'),
    kappa: get('kappa'),
    bandDegrees: numberOpt(o, 'bandDegrees') ?? -1,
    keepOrthogonal: get('keepOrthogonal'),
    fuseAligned: get('fuseAligned'),
    forgetConflicting: get('forgetConflicting'),
    lambda: get('lambda'),
    density: get('density'),
    temperature: get('temperature'),
    allowNonFinite: false,
  };
  range('kappa', p.kappa, p.kappa >= 0, 'a number >= 0');
  if (o.bandDegrees !== undefined) range('bandDegrees', p.bandDegrees, p.bandDegrees >= 0 && p.bandDegrees <= 90, 'a number in [0, 90]');
  range('density', p.density, p.density > 0 && p.density <= 1, 'a number in (0, 1]');
  range('temperature', p.temperature, p.temperature > 0, 'a number > 0');
  if (o.allowNonFinite !== undefined) {
    if (typeof o.allowNonFinite !== 'boolean') throw typeError(`Expected a boolean for option 'allowNonFinite' but received ${describe(o.allowNonFinite)}`);
    p.allowNonFinite = o.allowNonFinite;
  }
  return p;
}

export function resolveThreads(v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number') throw typeError(`Expected a number for option 'threads' but received ${describe(v)}`);
  if (!Number.isInteger(v) || v < 0) throw new GeoEditError('ERR_INVALID_OPTION', `Expected an integer >= 0 for option 'threads' but received ${v}`, { option: 'threads' });
  return v;
}
