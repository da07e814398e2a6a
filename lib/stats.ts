// The one row summary: what every path (editTensor, the LoRA API, checkpoints, adapters) reports
// about the per-row results of the core — region counts, update energies, zero rows, the angle
// histogram and mean cosines — computed in one loop from the core's per-row arrays.
import type { ResolvedParams } from './options';
import type { RegionCounts } from './types';

/** The per-row arrays the core returns for every edit or analysis. */
export interface RowArrays {
  cos: Float64Array;
  region: Uint8Array;
  /** ‖τold[i]‖², ‖τnew[i]‖², ‖c_new·b̃ + c_old·ã‖². */
  na: Float64Array;
  nb: Float64Array;
  /** Absent: no applied energy (factor-space geometry). */
  deltaSq?: Float64Array;
}

export interface RowSummary {
  counts: RegionCounts;
  energy: { new: number; old: number; applied: number };
  /** applied / new, or null when there is no update energy. */
  energyKept: number | null;
  /** Rows where τold or τnew is zero (cos defined as 0). */
  zeroRows: number;
  /** Angle between τold and τnew per row, 5° bins over [0°, 180°]. */
  angleHistogram: number[];
  /** Mean cos over all rows, and over the rows where both task vectors are non-zero. */
  meanCos: number;
  meanCosNonZero: number;
}

/** Summarises rows [0, rows) of the core's per-row arrays. */
export function summarizeRows(r: RowArrays, rows: number): RowSummary {
  const counts = { orthogonal: 0, synergy: 0, conflict: 0 };
  const hist = new Array<number>(36).fill(0);
  let eNew = 0, eOld = 0, eApp = 0, zero = 0, sumCos = 0, sumBoth = 0, both = 0;
  for (let i = 0; i < rows; i++) {
    const g = r.region[i];
    if (g === 0) counts.orthogonal++;
    else if (g === 1) counts.synergy++;
    else counts.conflict++;
    const c = r.cos[i]!;
    sumCos += c;
    if (r.na[i]! > 0 && r.nb[i]! > 0) { sumBoth += c; both++; } else zero++;
    const ang = (Math.acos(Math.max(-1, Math.min(1, c))) * 180) / Math.PI;
    hist[Math.min(35, Math.floor(ang / 5))]!++;
    eNew += r.nb[i]!;
    eOld += r.na[i]!;
    if (r.deltaSq) eApp += r.deltaSq[i]!;
  }
  return {
    counts, energy: { new: eNew, old: eOld, applied: eApp }, energyKept: eNew > 0 ? eApp / eNew : null,
    zeroRows: zero, angleHistogram: hist, meanCos: rows ? sumCos / rows : 0, meanCosNonZero: both ? sumBoth / both : 0,
  };
}

/** The |cos| threshold: sin(bandDegrees) when set, else κ/√n. */
export function threshold(p: Pick<ResolvedParams, 'bandDegrees' | 'kappa'>, cols: number): number {
  if (p.bandDegrees >= 0) return Math.sin((p.bandDegrees * Math.PI) / 180);
  return cols > 0 ? p.kappa / Math.sqrt(cols) : Infinity;
}
