// A pure-TS f64 reference of SPEC §2–§3, written from the SPEC text alone (no code shared with
// the native core), and helpers to make test tensors.
import type { DType, EditOptions, Tensor } from '../../lib/types';
import { normal, rng } from './prng';

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
export function bf16ToF32(h: number): number {
  u32buf[0] = h << 16;
  return f32buf[0]!;
}
export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0]!;
}

function roundBits(x: number, mbits: number, emin: number, bias: number, expMax: number, nan: number): number {
  if (Number.isNaN(x)) return nan;
  const sign = x < 0 || Object.is(x, -0) ? 1 << (mbits + (expMax === 31 ? 5 : 8)) : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  if (a === Infinity) return sign | (expMax << mbits);
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  if (e < emin) e = emin;
  const q = a / 2 ** (e - mbits);
  const fl = Math.floor(q), diff = q - fl;
  let r = diff > 0.5 ? fl + 1 : diff < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
  if (r === 2 ** (mbits + 1)) { r = 2 ** mbits; e++; }
  if (r < 2 ** mbits) return sign | r; // subnormal (e == emin)
  const field = e + bias;
  if (field >= expMax) return sign | (expMax << mbits);
  return sign | (field << mbits) | (r - 2 ** mbits);
}
/** Correct round-to-nearest-even of a double to bf16 bits. */
export function toBf16(x: number): number {
  return roundBits(x, 7, -126, 127, 255, 0x7fc0);
}
/** Correct round-to-nearest-even of a double to f16 bits. */
export function toF16(x: number): number {
  return roundBits(x, 10, -14, 15, 31, 0x7e00);
}

export function decode(t: Tensor): Float64Array {
  const n = t.data.length;
  const out = new Float64Array(n);
  if ((t.dtype as string) === 'f64') return Float64Array.from(t.data); // f64 values (referencePreservedEdit)
  if (t.dtype === 'f32') for (let i = 0; i < n; i++) out[i] = t.data[i]!;
  else if (t.dtype === 'f16') for (let i = 0; i < n; i++) out[i] = f16ToF32(t.data[i]!);
  else for (let i = 0; i < n; i++) out[i] = bf16ToF32(t.data[i]!);
  return out;
}

export function encode(values: ArrayLike<number>, dtype: DType, shape: number[]): Tensor {
  const n = values.length;
  if (dtype === 'f32') return { dtype, shape, data: Float32Array.from(values as ArrayLike<number>) };
  const d = new Uint16Array(n);
  for (let i = 0; i < n; i++) d[i] = dtype === 'f16' ? toF16(values[i]!) : toBf16(values[i]!);
  return { dtype, shape, data: d };
}

export interface RefRow {
  cos: number;
  region: 0 | 1 | 2;
  cNew: number;
  cOld: number;
  out: Float64Array; // exact f64 output values
  bound: Float64Array; // |θ0| + |c_new·b̃| + |c_old·ã| per element
}

const DEF = { scale: 1, kappa: 2, keepOrthogonal: 0.75, fuseAligned: 0, forgetConflicting: 0, lambda: 1, density: 1, temperature: 1 };

export function referenceEdit(base: Tensor, old: Tensor, nw: Tensor, opts: EditOptions = {}): { rows: RefRow[]; t: number; rowsN: number; cols: number } {
  const shape = base.shape;
  const m = shape.length === 0 ? 1 : shape.length === 1 ? 1 : shape[0]!;
  const n = shape.length === 0 ? 1 : shape.length === 1 ? shape[0]! : shape.slice(1).reduce((x, y) => x * y, 1);
  const p: Record<string, number> = { ...DEF };
  if (opts.preset === 'paper') Object.assign(p, { keepOrthogonal: 0, fuseAligned: 1, forgetConflicting: 1, kappa: 1 });
  for (const k of Object.keys(DEF)) if ((opts as Record<string, unknown>)[k] !== undefined) p[k] = (opts as Record<string, number>)[k]!;
  const t = opts.bandDegrees !== undefined ? Math.sin((opts.bandDegrees * Math.PI) / 180) : p.kappa! / Math.sqrt(n);
  const B = decode(base), O = decode(old), N = decode(nw);
  const IO = opts.importanceOld ? decode(opts.importanceOld) : null;
  const IN = opts.importanceNew ? decode(opts.importanceNew) : null;
  const rho = p.density!;
  const k = Math.max(1, Math.ceil(rho * n));
  const rows: RefRow[] = [];
  for (let i = 0; i < m; i++) {
    const a = new Float64Array(n), b = new Float64Array(n);
    let dot = 0, na = 0, nb = 0;
    for (let j = 0; j < n; j++) {
      a[j] = Math.fround(O[i * n + j]! - B[i * n + j]!);
      b[j] = Math.fround(N[i * n + j]! - B[i * n + j]!);
      dot += a[j]! * b[j]!;
      na += a[j]! * a[j]!;
      nb += b[j]! * b[j]!;
    }
    const cos = na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
    const region: 0 | 1 | 2 = Math.abs(cos) <= t ? 0 : cos > 0 ? 1 : 2;
    const trim = (v: Float64Array, imp: Float64Array | null): { v: Float64Array; s: number } => {
      const e = new Float64Array(n);
      for (let j = 0; j < n; j++) e[j] = imp ? imp[i * n + j]! : Math.abs(v[j]!);
      const idx = Array.from({ length: n }, (_, j) => j);
      idx.sort((x, y) => (e[y]! - e[x]!) || x - y);
      const kept = new Set(idx.slice(0, Math.min(k, n)));
      const outv = new Float64Array(n);
      let ss = 0;
      for (let j = 0; j < n; j++) if (kept.has(j)) { outv[j] = v[j]!; ss += e[j]! * e[j]!; }
      return { v: rho < 1 ? outv : v, s: Math.sqrt(ss / (rho < 1 ? k : n)) };
    };
    const ta = trim(a, IO), tb = trim(b, IN);
    const sa = ta.s, sb = tb.s;
    let wOld = 0.5;
    if (sa + sb !== 0) {
      const rOld = sa / (sa + sb), rNew = 1 - rOld;
      wOld = 1 / (1 + Math.exp((rNew - rOld) / p.temperature!));
    }
    const al = p.scale!;
    let cNew = 0, cOld = 0;
    const strat = opts.strategy ?? 'geoedit';
    if (strat === 'geoedit') {
      if (region === 0) { cNew = al * p.keepOrthogonal!; cOld = 0; }
      else if (region === 1) { cNew = al; cOld = p.fuseAligned! * 2 * wOld; }
      else { cNew = al; cOld = -p.forgetConflicting! * 2 * wOld; }
    } else if (strat === 'forget-then-learn') { cNew = al; cOld = -p.lambda!; }
    else if (strat === 'task-arithmetic') { cNew = al; cOld = 0; }
    else { cNew = al * opts.coefficients!.cNew[i]!; cOld = opts.coefficients!.cOld[i]!; }
    const out = new Float64Array(n), bound = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      const x = B[i * n + j]!;
      out[j] = x + cNew * tb.v[j]! + cOld * ta.v[j]!;
      bound[j] = Math.abs(x) + Math.abs(cNew * tb.v[j]!) + Math.abs(cOld * ta.v[j]!);
    }
    rows.push({ cos, region, cNew, cOld, out, bound });
  }
  return { rows, t, rowsN: m, cols: n };
}

/**
 * Three tensors whose rows cover every region: aligned (synergy), opposed (conflict) and
 * unrelated (orthogonal) task vectors, in the given dtypes.
 */
export function makeTriple(rows: number, cols: number, seed: number, dtypes: [DType, DType, DType] = ['f32', 'f32', 'f32']) {
  const r = rng(seed);
  const shape = [rows, cols];
  const n = rows * cols;
  const base = new Float64Array(n), old = new Float64Array(n), nw = new Float64Array(n);
  for (let i = 0; i < rows; i++) {
    const kind = i % 3;
    for (let j = 0; j < cols; j++) {
      const x = normal(r);
      const a = normal(r) * 0.1;
      const noise = normal(r) * 0.1;
      const b = kind === 0 ? a * 0.8 + noise * 0.3 : kind === 1 ? -a * 0.8 + noise * 0.3 : noise;
      base[i * cols + j] = x;
      old[i * cols + j] = x + a;
      nw[i * cols + j] = x + b;
    }
  }
  return {
    base: encode(base, dtypes[0], shape),
    old: encode(old, dtypes[1], shape),
    new: encode(nw, dtypes[2], shape),
  };
}

/** Ordered integer of f16/bf16 bits, so |ord(x) − ord(y)| counts units in the last place. */
export function ord16(bits: number): number {
  return bits & 0x8000 ? -(bits & 0x7fff) : bits;
}

/**
 * SPEC §3 step 0 then the edit, in f64: every row of τold and τnew replaced by x·P (P [d, d], d = n,
 * or n + 1 with a bias: the augmented [row_i, bias_i]) before referenceEdit's steps 1–6. Returns the
 * weight's reference and, with a bias, the bias's (edited as its own [1, m] tensor from the preserved
 * bias task vectors, with `biasOpts`: the bias's own importance tensors, say). `xNorm`: ‖x‖₂ per row and
 * side (x before preservation), for SPEC §5's 1e-5·‖x‖₂ bound.
 */
export function referencePreservedEdit(
  base: Tensor, old: Tensor, nw: Tensor, P: ArrayLike<number>, opts: EditOptions = {},
  bias?: { base: Tensor; old: Tensor; new: Tensor },
  biasOpts: EditOptions = opts,
): { weight: ReturnType<typeof referenceEdit>; bias?: ReturnType<typeof referenceEdit>; xNorm: { old: Float64Array; new: Float64Array } } {
  const m = base.shape[0]!, n = base.shape.slice(1).reduce((a, b) => a * b, 1), d = bias ? n + 1 : n;
  const B = decode(base), O = decode(old), N = decode(nw);
  const bb = bias ? decode(bias.base) : null, bo = bias ? decode(bias.old) : null, bn = bias ? decode(bias.new) : null;
  const tauO = new Float64Array(m * n), tauN = new Float64Array(m * n), biasO = new Float64Array(m), biasN = new Float64Array(m);
  const xNorm = { old: new Float64Array(m), new: new Float64Array(m) };
  for (let i = 0; i < m; i++) {
    for (const [src, tau, tb, bsrc, key] of [[O, tauO, biasO, bo, 'old'], [N, tauN, biasN, bn, 'new']] as const) {
      const x = new Float64Array(d);
      for (let j = 0; j < n; j++) x[j] = Math.fround(src[i * n + j]! - B[i * n + j]!);
      if (bias) x[n] = Math.fround(bsrc![i]! - bb![i]!);
      let nx = 0;
      for (let j = 0; j < d; j++) nx += x[j]! * x[j]!;
      xNorm[key][i] = Math.sqrt(nx);
      for (let j = 0; j < d; j++) {
        let y = 0;
        for (let q = 0; q < d; q++) y += x[q]! * P[q * d + j]!;
        if (j < n) tau[i * n + j] = y;
        else tb[i] = y;
      }
    }
  }
  // referenceEdit takes weights: base + preserved τ, exactly in f64 (decode(base) is exact).
  const asWeights = (tau: Float64Array, baseVals: Float64Array, shape: number[]): Tensor => ({ dtype: 'f64' as DType, shape, data: Float64Array.from(tau, (t, k) => baseVals[k]! + t) as unknown as Float32Array });
  const f64Base = (vals: Float64Array, shape: number[]): Tensor => ({ dtype: 'f64' as DType, shape, data: vals as unknown as Float32Array });
  const weight = referenceEdit(f64Base(B, base.shape), asWeights(tauO, B, base.shape), asWeights(tauN, B, base.shape), opts);
  if (!bias) return { weight, xNorm };
  const ref = referenceEdit(f64Base(bb!, [1, m]), asWeights(biasO, bb!, [1, m]), asWeights(biasN, bb!, [1, m]), biasOpts);
  return { weight, bias: ref, xNorm };
}
