import { expect } from 'vitest';
import type { EditOptions, Tensor, TensorStats } from '../../lib/types';
import { decode, ord16, referenceEdit, toBf16, toF16, type referencePreservedEdit } from './reference';
import { COS_ABS, F32_ABS, F32_REL, HALF_ULPS } from './tolerances';

/** Checks an edit against the f64 reference within SPEC §5. Returns the number of rows checked. */
export function expectMatchesReference(
  inputs: { base: Tensor; old: Tensor; new: Tensor },
  opts: EditOptions,
  out: Tensor | null,
  stats: TensorStats,
): void {
  const ref = referenceEdit(inputs.base, inputs.old, inputs.new, opts);
  expect(stats.rows).toBe(ref.rowsN);
  expect(stats.cols).toBe(ref.cols);
  const n = ref.cols;
  const outVals = out ? decode(out) : null;
  for (let i = 0; i < ref.rowsN; i++) {
    const r = ref.rows[i]!;
    const c = stats.cos[i]!;
    if (Math.abs(c - r.cos) > COS_ABS) throw new Error(`row ${i}: cos ${c} vs reference ${r.cos}`);
    const nearTie = Math.abs(Math.abs(r.cos) - ref.t) < COS_ABS;
    if (nearTie) continue; // SPEC §5: region (and so the output) may differ on a tie
    if (stats.region[i] !== r.region) throw new Error(`row ${i}: region ${stats.region[i]} vs reference ${r.region} (cos ${r.cos}, t ${ref.t})`);
    if (!out || !outVals) continue;
    for (let j = 0; j < n; j++) {
      const got = outVals[i * n + j]!;
      const want = r.out[j]!;
      if (out.dtype === 'f32') {
        // SPEC §5 plus one f32 subnormal ulp (2^-149): the relative bound alone cannot hold where
        // the f32 result itself is subnormal (even a correctly rounded f32 would miss it).
        const tol = F32_REL * r.bound[j]! + F32_ABS;
        if (!(Math.abs(got - want) <= tol)) throw new Error(`row ${i} col ${j}: ${got} vs reference ${want} (tol ${tol})`);
      } else {
        const bits = out.data[i * n + j]!;
        const wantBits = referenceBits(want, out.dtype);
        // one unit in the last place of the correctly rounded reference, plus the f32 slack
        // of the computation itself (1e-6 relative) which can straddle a rounding boundary
        const d = Math.abs(ord16(bits) - ord16(wantBits));
        if (d > HALF_ULPS) throw new Error(`row ${i} col ${j}: bits ${bits.toString(16)} vs reference ${wantBits.toString(16)} (${want})`);
      }
    }
  }
}

function referenceBits(v: number, dtype: 'f16' | 'bf16'): number {
  return dtype === 'f16' ? toF16(v) : toBf16(v);
}

export function bytesOf(t: { data: ArrayBufferView }): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * A preserved edit's f32 output (neuron rows [m, n]) against referencePreservedEdit: element-wise within
 * SPEC §5's f32 bound plus the preservation bound 1e-5·‖x‖₂ times each side's |c| (x: the row before
 * preservation; rowOf maps output row i to its x). Throws (via expect) on the worst ratio above 1.
 */
export function expectPreservedClose(out: ArrayLike<number>, ref: ReturnType<typeof referencePreservedEdit>['weight'], xNorm: { old: Float64Array; new: Float64Array }, rowOf: (i: number) => number = (i) => i): void {
  let worst = 0;
  ref.rows.forEach((row, i) => {
    const src = rowOf(i);
    const pres = 1e-5 * (Math.abs(row.cNew) * xNorm.new[src]! + Math.abs(row.cOld) * xNorm.old[src]!);
    for (let j = 0; j < ref.cols; j++) {
      const err = Math.abs(out[i * ref.cols + j]! - row.out[j]!);
      const tol = F32_REL * row.bound[j]! + pres + 1e-30;
      worst = Math.max(worst, err / tol);
    }
  });
  expect(worst).toBeLessThanOrEqual(1);
}
