// Preservation statistics in the quality protocol (QUALITY.md step 4, SPEC §3 step 0): the families
// `preserve` (task arithmetic after preservation with C0 and C1), `preserve-no-c1` (C0 only: plain
// ridge), `preserve+geoedit` (GeoEdit's defaults on the preserved rows) and the control
// `random-subspace` (the basis form with random orthonormal directions: the gain must come from the
// statistics' directions, not from shrinking the update). Shrinkage is the frontier's own control.
// Every point goes through editTensor's `preserve` option.
import { DEFAULTS } from '../options';
import type { EditOptions, PreserveTensorOption, Tensor } from '../types';
import { PRESERVE_DEFAULTS } from '../preserve/option';
import { Rng } from './prng';

export type PreserveFamily = 'preserve' | 'preserve-no-c1' | 'preserve+geoedit' | 'random-subspace';
export const PRESERVE_FAMILIES: readonly PreserveFamily[] = ['preserve', 'preserve-no-c1', 'preserve+geoedit', 'random-subspace'];

/**
 * The statistics: in memory per tensor name (C0 `cov`, optionally C1 `editCov`, f32 [n, n]; edits go
 * through editTensor), or a statistics file (`{ file }`, docs/preservation.md; edits go through
 * editCheckpoint / editAdapters with `preserve: { file, rho, mu }`; the random-subspace control then
 * uses editTensor on the weights the file names).
 */
export type SweepPreservation =
  | { layers: Map<string, { cov: Tensor; editCov?: Tensor }>; prompts?: number; facts?: number }
  | { file: string };

export interface PreserveGrids {
  /** `preserve`: rho × mu. */
  rho: number[];
  mu: number[];
  /** `preserve-no-c1`: rho (mu = 0). */
  noC1Rho: number[];
  /** `preserve+geoedit`: rho × mu, GeoEdit at its defaults. */
  geoRho: number[];
  geoMu: number[];
  /** `random-subspace`: k as a share of each tensor's row length n (k = max(1, round(share·n))). */
  subspace: number[];
}

export const DEFAULT_PRESERVE_GRIDS: Readonly<PreserveGrids> = Object.freeze({
  rho: [0.03, 0.1, 0.3, 1, 3, 10],
  mu: [1, 10, 100],
  noC1Rho: [0.1, 0.3, 1, 3, 10, 30, 100],
  geoRho: [0.1, 0.3, 1],
  geoMu: [10],
  subspace: [1 / 32, 1 / 8, 1 / 4, 1 / 2],
});

/** One point of each family, at the package's defaults (the demo's quick run). */
export function quickPreserveGrids(): PreserveGrids {
  return { rho: [PRESERVE_DEFAULTS.rho], mu: [PRESERVE_DEFAULTS.mu], noC1Rho: [PRESERVE_DEFAULTS.rho], geoRho: [PRESERVE_DEFAULTS.rho], geoMu: [PRESERVE_DEFAULTS.mu], subspace: [1 / 8] };
}

/** k random orthonormal rows of length n (Gram–Schmidt in f64, twice for stability), as f32 [k, n]. */
export function randomBasis(k: number, n: number, rng: Rng): Tensor {
  const U = new Float64Array(k * n);
  for (let i = 0; i < k; i++) {
    const o = i * n;
    for (let j = 0; j < n; j++) U[o + j] = rng.normal();
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < i; p++) {
        let d = 0;
        for (let j = 0; j < n; j++) d += U[o + j]! * U[p * n + j]!;
        for (let j = 0; j < n; j++) U[o + j] = U[o + j]! - d * U[p * n + j]!;
      }
      let s = 0;
      for (let j = 0; j < n; j++) s += U[o + j]! * U[o + j]!;
      s = 1 / Math.sqrt(s);
      for (let j = 0; j < n; j++) U[o + j] = U[o + j]! * s;
    }
  }
  return { dtype: 'f32', shape: [k, n], data: Float32Array.from(U) };
}

type Run = (family: PreserveFamily, label: string, knobs: Record<string, number>, options: EditOptions, extra: { preserve?: Map<string, PreserveTensorOption> }) => Promise<unknown>;

/** The ridge form at (rho, mu): per-tensor options (in memory) or the file form in the edit options. */
function ridge(s: SweepPreservation, base: EditOptions, rho: number, mu: number): [EditOptions, { preserve?: Map<string, PreserveTensorOption> }] {
  if ('file' in s) return [{ ...base, preserve: { file: s.file, rho, mu } as never }, {}];
  const m = new Map<string, PreserveTensorOption>();
  for (const [name, l] of s.layers) m.set(name, mu > 0 && l.editCov ? { cov: l.cov, editCov: l.editCov, rho, mu } : { cov: l.cov, rho, mu: 0 });
  return [base, { preserve: m }];
}

/**
 * Runs the preservation families through the sweep's `run`. `widths`: each statistic's row length n by
 * tensor name (for the random-subspace control).
 */
export async function sweepPreservation(run: Run, s: SweepPreservation, g: PreserveGrids, fams: ReadonlySet<string>, seed: number, widths: Map<string, number>): Promise<void> {
  const ta: EditOptions = { strategy: 'task-arithmetic', scale: 1 };
  if (fams.has('preserve')) {
    for (const rho of g.rho) for (const mu of g.mu) await run('preserve', `rho=${rho} mu=${mu}`, { rho, mu }, ...ridge(s, ta, rho, mu));
  }
  if (fams.has('preserve-no-c1')) for (const rho of g.noC1Rho) await run('preserve-no-c1', `rho=${rho} mu=0`, { rho, mu: 0 }, ...ridge(s, ta, rho, 0));
  if (fams.has('preserve+geoedit')) {
    const geo: EditOptions = { strategy: 'geoedit', kappa: DEFAULTS.kappa, keepOrthogonal: DEFAULTS.keepOrthogonal, fuseAligned: 0, forgetConflicting: 0 };
    for (const rho of g.geoRho) for (const mu of g.geoMu) await run('preserve+geoedit', `rho=${rho} mu=${mu} kappa=${DEFAULTS.kappa} keepOrthogonal=${DEFAULTS.keepOrthogonal}`, { rho, mu }, ...ridge(s, geo, rho, mu));
  }
  if (fams.has('random-subspace')) {
    const rng = new Rng(seed * 7717 + 5);
    for (const share of g.subspace) {
      const m = new Map<string, PreserveTensorOption>();
      for (const [name, n] of widths) {
        m.set(name, { basis: randomBasis(Math.min(n - 1, Math.max(1, Math.round(share * n))), n, rng) });
      }
      await run('random-subspace', `k=${share}·n`, { subspace: share }, ta, { preserve: m });
    }
  }
}
