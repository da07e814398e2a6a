// Preservation of LoRA task vectors (SPEC §4): (s·B·A)·P = s·B·(A·P), so each side's input factor
// (canonical R [r, n]) becomes R·P (ridge) or R − (R·Uᵀ)·U (basis), computed by the core (the same
// operator and f32 rows as a dense preserved edit), and everything else runs on the new factors:
// the output adapter keeps its rank. New arrays: the caller's factors are never modified.
import { GeoEditError } from '../errors';
import { native, type NativePreserve } from '../native';
import { nativeParams, type ResolvedParams } from '../options';

/** One side in the core's canonical form, tau = scale·L·R (lib/lora-math.ts CanonicalSide; structural, so no import circle). */
interface CanonicalSide { L: Float32Array; R: Float32Array; r: number; scale: number; rows: number; cols: number }

/** Σ‖τ‖² before/after per side, in τ = s·L·R terms. */
export interface LoraPreserveEnergy { oldBefore: number; oldAfter: number; newBefore: number; newAfter: number }

/** The share of each side's update energy the projection removed, 1 − after/before (null when before is 0). */
export function removedShares(e: LoraPreserveEnergy): { old: number | null; new: number | null } {
  return { old: e.oldBefore > 0 ? 1 - e.oldAfter / e.oldBefore : null, new: e.newBefore > 0 ? 1 - e.newAfter / e.newBefore : null };
}

/** ‖s·L·R‖²_F = s²·Σ_pq (LᵀL)_pq (R·Rᵀ)_pq, in f64. */
function tauEnergy(s: CanonicalSide, R: Float32Array): number {
  const { r, rows, cols } = s;
  const G = new Float64Array(r * r), H = new Float64Array(r * r);
  for (let i = 0; i < rows; i++) for (let p = 0; p < r; p++) { const lp = s.L[i * r + p]!; if (lp !== 0) for (let q = 0; q < r; q++) G[p * r + q] = G[p * r + q]! + lp * s.L[i * r + q]!; }
  for (let p = 0; p < r; p++) for (let q = 0; q < r; q++) { let h = 0; for (let j = 0; j < cols; j++) h += R[p * cols + j]! * R[q * cols + j]!; H[p * r + q] = h; }
  let e = 0;
  for (let k = 0; k < r * r; k++) e += G[k]! * H[k]!;
  return s.scale * s.scale * e;
}

/** R·P for one side's input factor, by the core, and who computed it. */
function preserveFactor(s: CanonicalSide, p: NativePreserve, params: ResolvedParams, threads: number, name: string): { R: Float32Array; provider?: string } {
  const zeros = new Float32Array(s.r * s.cols);
  const res = native.editSync({
    rows: s.r, cols: s.cols, base: zeros, baseDtype: 'f32', old: zeros, oldDtype: 'f32', new: s.R, newDtype: 'f32', tauGiven: true,
    // out = 0 + 1·(R·P) exactly: task arithmetic at scale 1, no trim.
    params: nativeParams({ ...params, strategy: 'task-arithmetic', scale: 1, density: 1 }), outDtype: 'f32', wantOut: true, threads, preserve: p, tensorName: name,
  });
  return { R: res.out as Float32Array, provider: res.preserveProvider };
}

/**
 * Replaces each side's R by R·P (new CanonicalSide objects) and returns the energies. Augmented
 * statistics ([n+1, n+1]) need the layer's bias, which an adapter does not carry; embeddings have
 * no input vectors: both are refused.
 */
export function preserveLoraSides<S extends CanonicalSide>(
  sides: { old: S | null; new: S | null }, embedding: boolean, p: NativePreserve, params: ResolvedParams, threads: number, name: string,
): { old: S | null; new: S | null; energy: LoraPreserveEnergy; provider?: string } {
  const ref = (sides.new ?? sides.old)!;
  if (embedding) throw new GeoEditError('ERR_UNSUPPORTED', `${name}: preservation statistics describe a linear layer's inputs; an Embedding module has none (leave it out of the statistics)`, { tensor: p.tensor ?? name });
  const d = p.covShape?.[1] ?? p.keysShape?.[1] ?? p.basisShape?.[1] ?? Math.round(Math.sqrt(p.cov?.length ?? 0));
  if (d === ref.cols + 1) {
    throw new GeoEditError('ERR_UNSUPPORTED', `${name}: the statistics are for the augmented input [x; 1] (width ${d}), which preserves the layer's bias with its weight; a LoRA adapter carries no bias update, so give [${ref.cols}, ${ref.cols}] statistics for adapters`, { tensor: p.tensor ?? name });
  }
  const energy: LoraPreserveEnergy = { oldBefore: 0, oldAfter: 0, newBefore: 0, newAfter: 0 };
  let provider: string | undefined;
  const one = (s: S | null, key: 'old' | 'new'): S | null => {
    if (!s || s.r === 0) return s;
    const f = preserveFactor(s, p, params, threads, name);
    const R = f.R;
    provider = f.provider ?? provider;
    energy[`${key}Before`] = tauEnergy(s, s.R);
    energy[`${key}After`] = tauEnergy(s, R);
    return { ...s, R };
  };
  const old = one(sides.old, 'old'), nw = one(sides.new, 'new');
  return { old, new: nw, energy, ...(provider ? { provider } : {}) };
}
