// LoRA task vectors in memory (SPEC §4): geometry in factor space, the exact edited adapter,
// materialised rows, and merged full weights. File I/O (PEFT directories) lives in lib/lora.ts.
//
// A module's task vector is tau = scale * B * A with rows = output units (Linear: A [r, in],
// B [out, r]). For an Embedding PEFT stores lora_embedding_A [r, num_embeddings] and
// lora_embedding_B [dim, r] and tau = scale * (B * A)^T [num_embeddings, dim]. The core works on
// one canonical form, tau = scale * L * R with L [rows, r] and R [r, cols]: Linear L = B, R = A;
// Embedding L = A^T, R = B^T.
import { GeoEditError, describe, typeError } from './errors';
import { callSite, native, type CallSite, type NativeLoraSide, type NativePreserve, type NativeResult } from './native';
import { checkPreserveTensorOption, type PreserveTensorOption } from './preserve/option';
import { preserveLoraSides, removedShares, type LoraPreserveEnergy } from './preserve/lora';
import { checkCoefficients, nativeParams, resolveParams, resolveThreads, validateOptions, type ResolvedParams } from './options';
import { checkTensor } from './tensor';
import { cpuOnlyBackend } from './backend';
import { summarizeRows, threshold } from './stats';
import type { DType, EditOptions, Tensor, TensorStats } from './types';

/** One side (old or new) of one LoRA module. */
export interface LoraFactors {
  /** lora_A [r, in], or lora_embedding_A [r, num_embeddings] when `embedding`. */
  A: Tensor;
  /** lora_B [out, r], or lora_embedding_B [dim, r] when `embedding`. */
  B: Tensor;
  /** lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA. */
  scale: number;
  /** PEFT Embedding convention: tau = scale * (B A)^T. */
  embedding?: boolean;
}

/** The two task vectors of one module; a missing side is a zero task vector (cos = 0, orthogonal). */
export interface LoraPair {
  old?: LoraFactors | null;
  new?: LoraFactors | null;
}

/** Geometry and coefficients per row of tau, plus the raw sums. */
export interface LoraStats extends TensorStats {
  /** tau_old[i] . tau_new[i] per row (f64). */
  dot: Float64Array;
  na: Float64Array;
  nb: Float64Array;
  /** Preservation: Σ‖τ‖² before/after the projection per side, and the share removed (1 − after/before; null when before is 0). */
  preserve?: { energy: LoraPreserveEnergy; removed: { old: number | null; new: number | null }; provider?: string };
}

/** Options for the LoRA path: the edit options, less those that need materialised rows. */
export type LoraOptions = Omit<EditOptions, 'importanceOld' | 'importanceNew' | 'outDtype'> & {
  outDtype?: DType;
  /** Preservation statistics of the module's inputs (SPEC §3 step 0, §4): A ← A·P per side; the edited adapter keeps its rank. */
  preserve?: PreserveTensorOption;
};

/** The canonical side the core takes, with tau's shape. */
export interface CanonicalSide extends NativeLoraSide {
  rows: number;
  cols: number;
}

function f32Data(t: Tensor, name: string): Float32Array {
  const d = checkTensor(t, name);
  if (d === 'f32') return t.data as Float32Array;
  return native.convert(d, t.data, 'f32') as Float32Array;
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const o = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = src[o + j]!;
  }
  return out;
}

/** tau's shape [rows, cols] for one side (Linear [out, in]; Embedding [num_embeddings, dim]). */
export function loraShape(f: LoraFactors): [number, number] {
  return f.embedding ? [f.A.shape[1]!, f.B.shape[0]!] : [f.B.shape[0]!, f.A.shape[1]!];
}

/** Checks one side and returns it in the core's form (no copy for f32 Linear factors). */
export function canonicalSide(f: LoraFactors, name: string): CanonicalSide {
  if (f === null || typeof f !== 'object') throw typeError(`Expected LoRA factors { A, B, scale } for ${name} but received ${describe(f)}`);
  checkTensor(f.A, `${name}.A`);
  checkTensor(f.B, `${name}.B`);
  if (f.A.shape.length !== 2 || f.B.shape.length !== 2) {
    throw new GeoEditError('ERR_SHAPE_MISMATCH', `Expected 2-D LoRA factors for ${name} but received A [${f.A.shape.join(', ')}] and B [${f.B.shape.join(', ')}]`, { argument: name });
  }
  const r = f.A.shape[0]!;
  if (f.B.shape[1] !== r) {
    throw new GeoEditError('ERR_SHAPE_MISMATCH', `Expected ${name}.B to have ${r} columns (the rank of ${name}.A [${f.A.shape.join(', ')}]) but received B [${f.B.shape.join(', ')}]`, { argument: name });
  }
  if (typeof f.scale !== 'number' || !Number.isFinite(f.scale)) {
    throw new GeoEditError('ERR_INVALID_OPTION', `Expected a finite number for ${name}.scale but received ${describe(f.scale)}`, { argument: name });
  }
  const [rows, cols] = loraShape(f);
  const A = f32Data(f.A, `${name}.A`);
  const B = f32Data(f.B, `${name}.B`);
  if (!f.embedding) return { L: B, R: A, r, scale: f.scale, rows, cols };
  // Embedding: L = A^T [num_embeddings, r], R = B^T [r, dim].
  return { L: transpose(A, r, rows), R: transpose(B, cols, r), r, scale: f.scale, rows, cols };
}

export interface PreparedLora {
  rows: number;
  cols: number;
  old: CanonicalSide | null;
  new: CanonicalSide | null;
  embedding: boolean;
  params: ResolvedParams;
  threads: number;
  cNew?: Float32Array;
  cOld?: Float32Array;
  /** Preservation (SPEC §4): the sides' R are already R·P; Σ‖τ‖² before/after per side; who computed R·P. */
  preserveEnergy?: LoraPreserveEnergy;
  preserveProvider?: string;
}

export function prepareLora(pair: LoraPair, options: LoraOptions | undefined, what = 'analyzeLora', statistics?: NativePreserve): PreparedLora {
  if (pair === null || typeof pair !== 'object') throw typeError(`Expected { old, new } LoRA factors but received ${describe(pair)}`);
  const opts = (options ?? {}) as LoraOptions & Record<string, unknown>;
  checkLoraOptions(opts, what);
  const params = resolveParams(opts as EditOptions);
  const threads = resolveThreads(opts.threads);
  const o = pair.old ? canonicalSide(pair.old, 'old') : null;
  const n = pair.new ? canonicalSide(pair.new, 'new') : null;
  if (!o && !n) throw new GeoEditError('ERR_INVALID_OPTION', `${what}: at least one of old and new LoRA factors is needed`);
  if (o && n && (o.rows !== n.rows || o.cols !== n.cols)) {
    throw new GeoEditError('ERR_SHAPE_MISMATCH', `Expected the old and new LoRA deltas to have the same shape but received [${o.rows}, ${o.cols}] and [${n.rows}, ${n.cols}]`);
  }
  if (pair.old && pair.new && !!pair.old.embedding !== !!pair.new.embedding) {
    throw new GeoEditError('ERR_SHAPE_MISMATCH', `Expected both sides to be Linear or both Embedding LoRA factors`);
  }
  const ref = (o ?? n)!;
  const embedding = !!(pair.old ?? pair.new)!.embedding;
  const prep: PreparedLora = { rows: ref.rows, cols: ref.cols, old: o, new: n, embedding, params, threads };
  // Preservation: the tensor form (editLora/analyzeLora) or a file's statistics (editAdapters).
  const pres = statistics ?? checkPreserveTensorOption(opts.preserve, what);
  if (pres) {
    const ps = preserveLoraSides({ old: o, new: n }, embedding, pres, params, threads, what);
    prep.old = ps.old;
    prep.new = ps.new;
    prep.preserveEnergy = ps.energy;
    if (ps.provider) prep.preserveProvider = ps.provider;
  }
  if (params.strategy === 'custom') {
    // Finite, one per row: the same check as editTensor's.
    const c = checkCoefficients(opts.coefficients, ref.rows);
    prep.cNew = c.cNew;
    prep.cOld = c.cOld;
  } else if (opts.coefficients !== undefined) {
    throw new GeoEditError('ERR_INVALID_OPTION', `Option 'coefficients' is only used by strategy 'custom' (strategy is '${params.strategy}')`, { option: 'coefficients' });
  }
  return prep;
}

function side(s: CanonicalSide | null): NativeLoraSide | null {
  return s && s.r > 0 ? { L: s.L, R: s.R, r: s.r, scale: s.scale } : null;
}

/**
 * A module's LoraStats from the core's per-row results (loraGeometry, or a kind-3 stream task): `dot`
 * as the core gives it (density 1), else cos·sqrt(na·nb) per row (the materialised path has no dot).
 */
export function loraStatsOf(prep: PreparedLora, g: NativeResult & { dot?: Float64Array }): LoraStats {
  const m = prep.rows;
  const sum = summarizeRows(g, m);
  let dot = g.dot;
  if (!dot) {
    dot = new Float64Array(m);
    for (let i = 0; i < m; i++) dot[i] = g.cos[i]! * Math.sqrt(g.na[i]! * g.nb[i]!);
  }
  return {
    rows: m, cols: prep.cols, cos: g.cos, region: g.region, counts: sum.counts, threshold: threshold(prep.params, prep.cols),
    coefNew: g.coefNew, coefOld: g.coefOld, energy: sum.energy, dot, na: g.na, nb: g.nb,
    ...(prep.preserveEnergy ? { preserve: { energy: prep.preserveEnergy, removed: removedShares(prep.preserveEnergy), ...(prep.preserveProvider ? { provider: prep.preserveProvider } : {}) } } : {}),
  };
}

/**
 * The options of the LoRA path, checked from the option table without any tensor: known keys,
 * types and ranges, the parameters, the backend (CPU only) and dtype. Used by prepareLora and,
 * before any I/O, by editAdapters/analyzeAdapters.
 */
export function checkLoraOptions(opts: Record<string, unknown>, what: string): ResolvedParams {
  if (opts.importanceOld !== undefined || opts.importanceNew !== undefined) {
    throw new GeoEditError('ERR_UNSUPPORTED', `${what}: importance tensors need materialised rows; the LoRA path uses magnitude importance (pass task vectors to editTensor instead)`, { option: 'importanceOld' });
  }
  validateOptions(opts, 'lora', what);
  const params = resolveParams(opts);
  cpuOnlyBackend(opts.backend, `${what} (the LoRA path)`);
  return params;
}

/** Factor-space geometry of a prepared module (density must be 1). */
export async function loraGeometry(prep: PreparedLora, tensorName?: string, site?: CallSite): Promise<LoraStats> {
  if (prep.params.density !== 1) {
    throw new GeoEditError('ERR_UNSUPPORTED', `density ${prep.params.density} < 1 trims each row, which needs materialised rows: use materialised full output (outFormat 'full'), or density 1`, { option: 'density' });
  }
  const g = await native.loraGeometry({
    rows: prep.rows, cols: prep.cols, old: side(prep.old), new: side(prep.new), params: nativeParams(prep.params),
    ...(prep.cNew ? { cNew: prep.cNew, cOld: prep.cOld } : {}), threads: prep.threads, ...(tensorName ? { tensorName } : {}),
  }, site);
  return loraStatsOf(prep, g);
}

/**
 * Per-row geometry, regions and coefficients of two LoRA task vectors, computed from the small
 * Gram matrices (O(r^2 (m + n))) without forming B*A. Density must be 1.
 */
export async function analyzeLora(pair: LoraPair, options?: LoraOptions): Promise<LoraStats> {
  const site = callSite(analyzeLora);
  return loraGeometry(prepareLora(pair, options, 'analyzeLora'), undefined, site);
}

/** Rows [r0, r1) of tau, formed off the event loop. */
export async function materializeRowsAsync(s: CanonicalSide | null, r0: number, r1: number, threads = 0, rows?: number, cols?: number): Promise<Float32Array> {
  return (await native.loraMaterializeAsync({ rows: rows ?? s!.rows, cols: cols ?? s!.cols, side: side(s), r0, r1, threads })).out;
}

/**
 * tau = scale * B * A (or its Embedding transpose) as a dense f32 tensor [rows, cols]. Synchronous:
 * it blocks the calling thread for O(rows * cols * r); meant for small modules and checks.
 */
export function materializeLora(f: LoraFactors, threads = 0): Tensor {
  const s = canonicalSide(f, 'factors');
  return { dtype: 'f32', shape: [s.rows, s.cols], data: materializeRows(s, 0, s.rows, threads) };
}

export function materializeRows(s: CanonicalSide | null, r0: number, r1: number, threads = 0, rows?: number, cols?: number): Float32Array {
  return native.loraMaterialize({ rows: rows ?? s!.rows, cols: cols ?? s!.cols, side: side(s), r0, r1, threads });
}

/** The edited module as an adapter: tau' = B' A' with scale 1 (SPEC §4). */
export interface EditedLora {
  /** lora_A' [r', in] (or lora_embedding_A' [r', num_embeddings]). */
  A: Tensor;
  /** lora_B' [out, r'] (or lora_embedding_B' [dim, r']). */
  B: Tensor;
  /** r' = r_new + r_old, less any side whose coefficients are all 0 (unless keepZeroBlocks); 0 when nothing is left. */
  rank: number;
  scale: 1;
  embedding: boolean;
}

/**
 * B' = [diag(c_new) s_n B_n | diag(c_old) s_o B_o], A' = [A_n ; A_o] (canonical L/R form;
 * Embeddings are mapped back to PEFT's transposed layout). Each factor entry is rounded once to f32.
 */
export function buildEditedAdapter(prep: PreparedLora, coefNew: Float32Array, coefOld: Float32Array, opts: { keepZeroBlocks?: boolean } = {}): EditedLora {
  const m = prep.rows, n = prep.cols;
  const sides: Array<[CanonicalSide, Float32Array]> = [];
  // A side whose coefficients are all 0 contributes an all-zero block of B': leaving it out keeps
  // the product exactly the same (with the default options c_old is 0 on every row).
  const used = (c: Float32Array) => opts.keepZeroBlocks === true || c.some((v) => v !== 0);
  if (prep.new && prep.new.r > 0 && used(coefNew)) sides.push([prep.new, coefNew]);
  if (prep.old && prep.old.r > 0 && used(coefOld)) sides.push([prep.old, coefOld]);
  const rank = sides.reduce((a, [s]) => a + s.r, 0);
  const L = new Float32Array(m * rank);
  const R = new Float32Array(rank * n);
  let off = 0;
  for (const [s, c] of sides) {
    for (let i = 0; i < m; i++) {
      const ci = c[i]! * s.scale;
      const src = i * s.r, dst = i * rank + off;
      for (let k = 0; k < s.r; k++) L[dst + k] = ci * s.L[src + k]!;
    }
    R.set(s.R, off * n);
    off += s.r;
  }
  if (!prep.embedding) {
    return { A: { dtype: 'f32', shape: [rank, n], data: R }, B: { dtype: 'f32', shape: [m, rank], data: L }, rank, scale: 1, embedding: false };
  }
  return {
    A: { dtype: 'f32', shape: [rank, m], data: transpose(L, m, rank) },
    B: { dtype: 'f32', shape: [n, rank], data: transpose(R, rank, n) },
    rank, scale: 1, embedding: true,
  };
}

/** The GeoEdit edit of two LoRA task vectors, as an adapter (density 1), with its statistics. */
export async function editLora(pair: LoraPair, options?: LoraOptions & { keepZeroBlocks?: boolean }): Promise<{ adapter: EditedLora; stats: LoraStats }> {
  const { keepZeroBlocks, ...rest } = (options ?? {}) as LoraOptions & { keepZeroBlocks?: boolean };
  const site = callSite(editLora);
  const prep = prepareLora(pair, rest, 'editLora');
  const stats = await loraGeometry(prep, undefined, site);
  return { adapter: buildEditedAdapter(prep, stats.coefNew, stats.coefOld, { keepZeroBlocks: keepZeroBlocks === true }), stats };
}

/**
 * (In memory; editAdapters' merged output runs the same core code as stream task kind 3, and
 * test/native/lora-stream.test.ts checks the two agree.)
 * Merged full weights for stored rows [s0, s1) of the base tensor: base + c_new*tau_new + c_old*tau_old
 * per neuron, in f32, rounded to outDtype. `transposed`: the base stores neurons as columns
 * (GPT-2 Conv1D, fan_in_fan_out), i.e. it is [cols, rows].
 */
export async function mergeLoraRows(
  prep: PreparedLora, coefNew: Float32Array, coefOld: Float32Array, transposed: boolean,
  base: { dtype: DType; data: Float32Array | Uint16Array }, s0: number, s1: number, outDtype: DType, tensorName?: string,
): Promise<Float32Array | Uint16Array> {
  const r = await native.loraMerge({
    rows: prep.rows, cols: prep.cols, old: side(prep.old), new: side(prep.new), cNew: coefNew, cOld: coefOld,
    transposed, s0, s1, base: base.data, baseDtype: base.dtype, outDtype, threads: prep.threads, ...(tensorName ? { tensorName } : {}),
    allowNonFiniteOutput: prep.params.allowNonFinite || prep.params.allowNonFiniteOutput,
  });
  return r.out;
}

/**
 * Materialised edit for stored rows [s0, s1) when rows must be trimmed (density < 1): tau rows are
 * formed (s*B*A, f32) and edited by the dense core exactly as editTensor edits task vectors.
 * Non-transposed only: a transposed (fan_in_fan_out) tensor needs every neuron of the block, so
 * callers pass the whole tensor (s0 = 0, s1 = cols).
 */
export async function denseLoraRows(
  prep: PreparedLora, transposed: boolean, base: { dtype: DType; data: Float32Array | Uint16Array }, s0: number, s1: number,
  outDtype: DType, tensorName?: string,
): Promise<{ out: Float32Array | Uint16Array; stats: { region: Uint8Array; cos: Float64Array; coefNew: Float32Array; coefOld: Float32Array; deltaSq: Float64Array; na: Float64Array; nb: Float64Array } }> {
  const m = prep.rows, n = prep.cols;
  // Neuron rows [i0, i1) and their base rows in neuron layout.
  let i0 = s0, i1 = s1;
  let baseRows: Float32Array | Uint16Array = base.data;
  if (transposed) {
    if (s0 !== 0 || s1 !== n) throw new GeoEditError('ERR_INTERNAL', 'denseLoraRows: a transposed tensor is edited whole');
    i0 = 0;
    i1 = m;
    const T = base.data instanceof Float32Array ? Float32Array : Uint16Array;
    const t = new T(m * n);
    const src = base.data;
    for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) t[i * n + j] = src[j * m + i]!;
    baseRows = t;
  }
  const rows = i1 - i0;
  const [a, b] = await Promise.all([
    materializeRowsAsync(prep.old, i0, i1, prep.threads, m, n),
    materializeRowsAsync(prep.new, i0, i1, prep.threads, m, n),
  ]);
  const spec = {
    rows, cols: n, base: baseRows, baseDtype: base.dtype, old: a, oldDtype: 'f32', new: b, newDtype: 'f32',
    outDtype, wantOut: true, threads: prep.threads, tauGiven: true, rowOffset: i0,
    params: nativeParams(prep.params),
    ...(prep.cNew ? { cNew: prep.cNew.subarray(i0, i1), cOld: prep.cOld!.subarray(i0, i1) } : {}),
    ...(tensorName ? { tensorName } : {}),
  };
  const r = await native.edit(spec);
  let out = r.out!;
  if (transposed) {
    const T = out instanceof Float32Array ? Float32Array : Uint16Array;
    const t = new T(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = out[i * n + j]!;
    out = t;
  }
  return { out, stats: r };
}

