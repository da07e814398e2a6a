// editTensor / editTensorSync / analyzeTensor: validate everything in TS, then one coarse
// native call that runs off the event loop (async) or inline (sync, for small tensors).
import { GeoEditError, describe, fromNative, typeError } from './errors';
import { loadNative, type NativeResult, type NativeSpec } from './native';
import { EDIT_OPTION_KEYS, checkDtype, checkKnownKeys, resolveParams, resolveThreads, type ResolvedParams } from './options';
import { checkSameShape, checkTensor, matrixView } from './tensor';
import { resolveCudaMemoryLimit, selectBackend } from './backend';
import type { EditInputs, EditOptions, EditResult, Tensor, TensorStats } from './types';

export interface PreparedEdit {
  spec: NativeSpec;
  params: ResolvedParams;
  shape: number[];
  rows: number;
  cols: number;
}

export function prepareEdit(inputs: EditInputs, options: EditOptions | undefined, wantOut: boolean): PreparedEdit {
  if (inputs === null || typeof inputs !== 'object') throw typeError(`Expected inputs { base, old, new } but received ${describe(inputs)}`);
  const opts = (options ?? {}) as EditOptions;
  if (typeof opts !== 'object') throw typeError(`Expected an options object but received ${describe(options)}`);
  checkKnownKeys(opts, EDIT_OPTION_KEYS, 'editTensor');
  const params = resolveParams(opts);
  const bd = checkTensor(inputs.base, 'base');
  const od = checkTensor(inputs.old, 'old');
  const nd = checkTensor(inputs.new, 'new');
  checkSameShape(inputs.base, 'base', inputs.old, 'old');
  checkSameShape(inputs.base, 'base', inputs.new, 'new');
  const shape = [...inputs.base.shape];
  const { rows, cols } = matrixView(shape);
  let outDtype = opts.outDtype === undefined ? bd : checkDtype(opts.outDtype, 'outDtype');
  let outData: Float32Array | Uint16Array | undefined;
  if (opts.out !== undefined && wantOut) {
    const d = checkTensor(opts.out, 'out');
    checkSameShape(inputs.base, 'base', opts.out, 'out');
    if (opts.outDtype !== undefined && d !== outDtype) {
      throw new GeoEditError('ERR_INVALID_OPTION', `Expected out.dtype to equal outDtype '${outDtype}' but received '${d}'`, { option: 'out' });
    }
    outDtype = d;
    outData = opts.out.data;
    for (const [name, t] of [['base', inputs.base], ['old', inputs.old], ['new', inputs.new]] as const) {
      if (overlaps(outData, t.data)) throw new GeoEditError('ERR_INVALID_OPTION', `Expected option 'out' not to overlap ${name}.data (inputs are never modified)`, { option: 'out' });
    }
  }
  const threads = resolveThreads(opts.threads);
  const backend = selectBackend(opts.backend);
  const cudaMemoryLimit = resolveCudaMemoryLimit(opts.cudaMemoryLimit);
  const spec: NativeSpec = {
    rows, cols,
    base: inputs.base.data, baseDtype: bd,
    old: inputs.old.data, oldDtype: od,
    new: inputs.new.data, newDtype: nd,
    outDtype, wantOut, threads,
    ...(outData ? { outData } : {}),
    params: params as unknown as Record<string, number | string | boolean>,
    backend,
    cudaMemoryLimit,
  };
  if (opts.importanceOld !== undefined || opts.importanceNew !== undefined) {
    if (opts.importanceOld === undefined || opts.importanceNew === undefined) {
      throw new GeoEditError('ERR_INVALID_OPTION', 'Expected both importanceOld and importanceNew (or neither) but received only one', { option: opts.importanceOld ? 'importanceNew' : 'importanceOld' });
    }
    const io = opts.importanceOld as Tensor, inw = opts.importanceNew as Tensor;
    spec.impOldDtype = checkTensor(io, 'importanceOld');
    spec.impNewDtype = checkTensor(inw, 'importanceNew');
    checkSameShape(inputs.base, 'base', io, 'importanceOld');
    checkSameShape(inputs.base, 'base', inw, 'importanceNew');
    spec.impOld = io.data;
    spec.impNew = inw.data;
  }
  if (params.strategy === 'custom') {
    const c = opts.coefficients;
    if (!c || typeof c !== 'object' || !(c.cNew instanceof Float32Array) || !(c.cOld instanceof Float32Array)) {
      throw new GeoEditError('ERR_COEFFICIENTS', `Expected coefficients { cNew: Float32Array, cOld: Float32Array } with ${rows} values each for strategy 'custom' but received ${describe(c)}`, { option: 'coefficients' });
    }
    if (c.cNew.length !== rows || c.cOld.length !== rows) {
      throw new GeoEditError('ERR_COEFFICIENTS', `Expected ${rows} values (one per row) in coefficients.cNew and coefficients.cOld but received ${c.cNew.length} and ${c.cOld.length}`, { option: 'coefficients' });
    }
    for (let i = 0; i < rows; i++) {
      if (!Number.isFinite(c.cNew[i]!) || !Number.isFinite(c.cOld[i]!)) {
        throw new GeoEditError('ERR_COEFFICIENTS', `Expected finite coefficients but row ${i} has cNew ${c.cNew[i]}, cOld ${c.cOld[i]}`, { option: 'coefficients', row: i });
      }
    }
    spec.cNew = c.cNew;
    spec.cOld = c.cOld;
  } else if (opts.coefficients !== undefined) {
    throw new GeoEditError('ERR_INVALID_OPTION', `Option 'coefficients' is only used by strategy 'custom' (strategy is '${params.strategy}')`, { option: 'coefficients' });
  }
  return { spec, params, shape, rows, cols };
}

function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

export function threshold(p: ResolvedParams, cols: number): number {
  if (p.bandDegrees >= 0) return Math.sin((p.bandDegrees * Math.PI) / 180);
  return cols > 0 ? p.kappa / Math.sqrt(cols) : Infinity;
}

export function makeStats(prep: PreparedEdit, r: NativeResult): TensorStats {
  const counts = { orthogonal: 0, synergy: 0, conflict: 0 };
  let eNew = 0, eOld = 0, eApplied = 0;
  for (let i = 0; i < prep.rows; i++) {
    const g = r.region[i];
    if (g === 0) counts.orthogonal++;
    else if (g === 1) counts.synergy++;
    else counts.conflict++;
    eNew += r.nb[i]!;
    eOld += r.na[i]!;
    eApplied += r.deltaSq[i]!;
  }
  return {
    rows: prep.rows,
    cols: prep.cols,
    cos: r.cos,
    region: r.region,
    counts,
    threshold: threshold(prep.params, prep.cols),
    coefNew: r.coefNew,
    coefOld: r.coefOld,
    energy: { new: eNew, old: eOld, applied: eApplied },
  };
}

function toResult(prep: PreparedEdit, r: NativeResult): EditResult {
  return {
    out: { dtype: prep.spec.outDtype as Tensor['dtype'], shape: prep.shape, data: r.out! },
    stats: makeStats(prep, r),
  };
}

/** Edit one tensor off the event loop. Resolves to the edited tensor and per-row statistics. */
export async function editTensor(inputs: EditInputs, options?: EditOptions): Promise<EditResult> {
  const prep = prepareEdit(inputs, options, true);
  try {
    return toResult(prep, await loadNative().edit(prep.spec));
  } catch (e) {
    throw fromNative(e);
  }
}

/** Synchronous variant, for small tensors (it blocks the calling thread). */
export function editTensorSync(inputs: EditInputs, options?: EditOptions): EditResult {
  const prep = prepareEdit(inputs, options, true);
  try {
    return toResult(prep, loadNative().editSync(prep.spec));
  } catch (e) {
    throw fromNative(e);
  }
}

/** Geometry and regions only: writes no weights. */
export async function analyzeTensor(inputs: EditInputs, options?: EditOptions): Promise<TensorStats> {
  const prep = prepareEdit(inputs, options, false);
  try {
    return makeStats(prep, await loadNative().edit(prep.spec));
  } catch (e) {
    throw fromNative(e);
  }
}
