// Layout tests (issue 13): the f64 reference computed on the neurons of a layout. The stored tensor
// is turned into the [neurons, length] matrix SPEC §2 speaks of (columns: transposed per stored
// matrix) in TS, run through referenceEdit, and the expected output turned back into storage order.
import type { EditOptions, Tensor } from '../../lib/types';
import type { LayoutKind } from '../../lib/checkpoint/layout';
import { decode, encode, referenceEdit } from './reference';
import { COS_ABS, F32_ABS, F32_REL } from './tolerances';

/** [E, rows, cols] stored -> [E, cols, rows] (each of the E matrices transposed). */
export function transposeGroups(v: Float64Array, groups: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(v.length);
  for (let g = 0; g < groups; g++) {
    const o = g * rows * cols;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[o + j * rows + i] = v[o + i * cols + j]!;
  }
  return out;
}

/** Stored shape -> { groups, stored rows, stored cols, neurons, neuron length } of a layout. */
export function geometry(kind: LayoutKind, shape: number[]): { groups: number; sr: number; sc: number; neurons: number; n: number } {
  if (kind === 'columns') return { groups: 1, sr: shape[0]!, sc: shape[1]!, neurons: shape[1]!, n: shape[0]! };
  if (kind === 'experts-columns') return { groups: shape[0]!, sr: shape[1]!, sc: shape[2]!, neurons: shape[0]! * shape[2]!, n: shape[1]! };
  if (kind === 'experts') return { groups: 1, sr: shape[0]! * shape[1]!, sc: shape[2]!, neurons: shape[0]! * shape[1]!, n: shape[2]! };
  const n = shape.length <= 1 ? (shape[0] ?? 1) : shape.slice(1).reduce((a, b) => a * b, 1);
  return { groups: 1, sr: shape.length <= 1 ? 1 : shape[0]!, sc: n, neurons: shape.length <= 1 ? 1 : shape[0]!, n };
}

/** A stored tensor as the f32 matrix of its neurons [neurons, n]. */
function neuronsOf(t: Tensor, kind: LayoutKind): Tensor {
  const g = geometry(kind, t.shape);
  const v = decode(t);
  const cols = kind === 'columns' || kind === 'experts-columns' ? transposeGroups(v, g.groups, g.sr, g.sc) : v;
  return encode(cols, 'f32', [g.neurons, g.n]);
}

export interface LayoutReference {
  /** Expected output in storage order, and its SPEC §5 bound. */
  out: Float64Array;
  bound: Float64Array;
  /** Per neuron: region, cos, and whether |cos| is within COS_ABS of the threshold (a tie). */
  region: number[];
  cos: number[];
  tie: boolean[];
  counts: { orthogonal: number; synergy: number; conflict: number };
  n: number;
  neurons: number;
}

/** referenceEdit over the neurons of `kind` (inputs must be f32 or exactly representable in f32). */
export function layoutReference(kind: LayoutKind, base: Tensor, old: Tensor, nw: Tensor, opts: EditOptions = {}): LayoutReference {
  const g = geometry(kind, base.shape);
  const ref = referenceEdit(neuronsOf(base, kind), neuronsOf(old, kind), neuronsOf(nw, kind), opts);
  let out = new Float64Array(g.neurons * g.n), bound = new Float64Array(g.neurons * g.n);
  ref.rows.forEach((r, i) => { out.set(r.out, i * g.n); bound.set(r.bound, i * g.n); });
  if (kind === 'columns' || kind === 'experts-columns') {
    // [E, out, in] back to [E, in, out]
    out = transposeGroups(out, g.groups, g.sc, g.sr);
    bound = transposeGroups(bound, g.groups, g.sc, g.sr);
  }
  const counts = { orthogonal: 0, synergy: 0, conflict: 0 };
  for (const r of ref.rows) counts[(['orthogonal', 'synergy', 'conflict'] as const)[r.region]]++;
  return {
    out, bound, region: ref.rows.map((r) => r.region), cos: ref.rows.map((r) => r.cos),
    tie: ref.rows.map((r) => Math.abs(Math.abs(r.cos) - ref.t) < COS_ABS), counts, n: g.n, neurons: g.neurons,
  };
}

/** The neuron (in `kind`) an element of storage order belongs to. */
export function neuronOfElement(kind: LayoutKind, shape: number[], e: number): number {
  const g = geometry(kind, shape);
  if (kind === 'columns' || kind === 'experts-columns') {
    const per = g.sr * g.sc, grp = Math.floor(e / per), j = e % g.sc;
    return grp * g.sc + j;
  }
  return Math.floor(e / g.n);
}

/** Checks f32 output bytes against the reference (elements of tie neurons are skipped); returns how many were compared. */
export function expectLayoutOutput(kind: LayoutKind, shape: number[], got: Float32Array, ref: LayoutReference): number {
  if (got.length !== ref.out.length) throw new Error(`output has ${got.length} values, reference ${ref.out.length}`);
  let checked = 0;
  for (let e = 0; e < got.length; e++) {
    if (ref.tie[neuronOfElement(kind, shape, e)]) continue;
    const tol = F32_REL * ref.bound[e]! + F32_ABS;
    if (!(Math.abs(got[e]! - ref.out[e]!) <= tol)) throw new Error(`element ${e} (neuron ${neuronOfElement(kind, shape, e)}): ${got[e]} vs reference ${ref.out[e]} (tol ${tol})`);
    checked++;
  }
  return checked;
}
