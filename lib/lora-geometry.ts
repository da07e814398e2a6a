// SPEC §4: per-row geometry (dot, na, nb) of LoRA deltas τ = s·B·A without materialising B·A,
// from the small Gram matrices A_x A_yᵀ, on the CUDA plugin (f64 Gram kernel) or, for 'cpu', the
// LoRA path's own factor-space geometry (native/core/lora.cc, the same code lib/lora-math.ts runs).
// A building block for a CUDA LoRA path (test-only, hence the `_`); not exported from the package index. The LoRA API
// (analyzeLora/editLora, lib/lora-math.ts) runs on the CPU.
import { GeoEditError, describe, typeError } from './errors';
import { selectBackend } from './backend';
import { native } from './native';
import type { Backend } from './types';

export interface CudaLoraFactors {
  /** A: r×n, row-major. */
  a: Float32Array;
  /** B: m×r, row-major. */
  b: Float32Array;
  r: number;
  /** The adapter scale s (lora_alpha / r, or / √r with rsLoRA). */
  scale: number;
}

export interface CudaLoraGeometry {
  dot: Float64Array;
  na: Float64Array;
  nb: Float64Array;
}

function checkFactors(f: CudaLoraFactors, name: string, m: number, n: number): void {
  if (!f || typeof f !== 'object') throw typeError(`Expected LoRA factors { a, b, r, scale } for ${name} but received ${describe(f)}`);
  if (!(f.a instanceof Float32Array) || !(f.b instanceof Float32Array)) throw typeError(`Expected Float32Array factors a and b for ${name}`);
  if (!Number.isInteger(f.r) || f.r < 0) throw new GeoEditError('ERR_INVALID_OPTION', `Expected an integer rank >= 0 for ${name}.r but received ${f.r}`);
  if (f.a.length !== f.r * n) throw new GeoEditError('ERR_SHAPE_MISMATCH', `Expected ${name}.a to hold r×n = ${f.r}×${n} values but received ${f.a.length}`);
  if (f.b.length !== m * f.r) throw new GeoEditError('ERR_SHAPE_MISMATCH', `Expected ${name}.b to hold m×r = ${m}×${f.r} values but received ${f.b.length}`);
  if (typeof f.scale !== 'number' || !Number.isFinite(f.scale)) throw typeError(`Expected a finite number for ${name}.scale but received ${describe(f.scale)}`);
}

/** Geometry of the LoRA deltas of one [m, n] weight, on the chosen backend. */
export function _cudaLoraGeometry(m: number, n: number, old: CudaLoraFactors, nw: CudaLoraFactors, options?: { backend?: Backend }): CudaLoraGeometry {
  if (!Number.isInteger(m) || m < 0 || !Number.isInteger(n) || n < 0) {
    throw new GeoEditError('ERR_INVALID_OPTION', `Expected non-negative integers m and n but received ${m} and ${n}`);
  }
  checkFactors(old, 'old', m, n);
  checkFactors(nw, 'new', m, n);
  const backend = selectBackend(options?.backend);
  return native._cudaLoraGeometry({
    m, n, rOld: old.r, rNew: nw.r, aOld: old.a, bOld: old.b, aNew: nw.a, bNew: nw.b, sOld: old.scale, sNew: nw.scale, backend,
  });
}
