// editTensor / editTensorSync / analyzeTensor: validate everything in TS, then one coarse
// native call that runs off the event loop (async) or inline (sync, for small tensors).
import { GeoEditError, describe, typeError } from './errors';
import { callSite, native, type NativePreserve, type NativeResult, type NativeSpec } from './native';
import { checkCoefficients, checkDtype, nativeParams, resolveParams, resolveThreads, validateOptions, type ResolvedParams } from './options';
import { checkSameShape, checkTensor, matrixView } from './tensor';
import { resolveCudaMemoryLimit, selectBackend, type BackendJob } from './backend';
import { summarizeRows, threshold } from './stats';
import { checkPreserveTensorOption } from './preserve/option';
import { removedShares } from './preserve/lora';
import type { DType, EditInputs, EditOptions, EditResult, Tensor, TensorStats } from './types';

export interface PreparedEdit {
  spec: NativeSpec;
  params: ResolvedParams;
  shape: number[];
  rows: number;
  cols: number;
}

export function prepareEdit(inputs: EditInputs, options: EditOptions | undefined, wantOut: boolean, what = 'editTensor'): PreparedEdit {
  if (inputs === null || typeof inputs !== 'object') throw typeError(`Expected inputs { base, old, new } but received ${describe(inputs)}`);
  const opts = validateOptions(options, 'tensor', what) as EditOptions;
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
  // SPEC §3 step 0: the core checks the statistics' values and their width against cols
  const preserve = checkPreserveTensorOption(opts.preserve, what);
  const backend = selectBackend(opts.backend, preserve ? tensorPreserveJob(preserve, rows, cols, [bd, od, nd]) : undefined);
  const cudaMemoryLimit = resolveCudaMemoryLimit(opts.cudaMemoryLimit, backend);
  const spec: NativeSpec = {
    rows, cols,
    base: inputs.base.data, baseDtype: bd,
    old: inputs.old.data, oldDtype: od,
    new: inputs.new.data, newDtype: nd,
    outDtype, wantOut, threads,
    ...(outData ? { outData } : {}),
    params: nativeParams(params),
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
    const c = checkCoefficients(opts.coefficients, rows);
    spec.cNew = c.cNew;
    spec.cOld = c.cOld;
  } else if (opts.coefficients !== undefined) {
    throw new GeoEditError('ERR_INVALID_OPTION', `Option 'coefficients' is only used by strategy 'custom' (strategy is '${params.strategy}')`, { option: 'coefficients' });
  }
  if (preserve) spec.preserve = preserve;
  return { spec, params, shape, rows, cols };
}

/** editTensor with preservation, for 'auto' (lib/backend.ts preserveRule): the ridge form's work (the basis form runs on the CPU); bytes: the inputs. */
export function tensorPreserveJob(p: NativePreserve, rows: number, cols: number, dtypes: DType[]): BackendJob {
  const ridge = p.cov !== undefined || p.keys !== undefined;
  const bytes = rows * cols * dtypes.reduce((a, d) => a + (d === 'f32' ? 4 : 2), 0);
  return { kind: 'preserve', location: 'host', preserve: { gemmFlops: ridge ? 4 * rows * cols * cols : 0, buildFlops: ridge ? 2.67 * cols ** 3 : 0, bytes, maxDim: ridge ? cols : 0 } };
}

function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

export function makeStats(prep: PreparedEdit, r: NativeResult): TensorStats {
  const sum = summarizeRows(r, prep.rows);
  const st: TensorStats = {
    rows: prep.rows, cols: prep.cols, cos: r.cos, region: r.region, counts: sum.counts,
    threshold: threshold(prep.params, prep.cols), coefNew: r.coefNew, coefOld: r.coefOld, energy: sum.energy,
  };
  const e = r.preserveEnergy;
  if (prep.spec.preserve && e) {
    const energy = { oldBefore: e[0]!, oldAfter: e[1]!, newBefore: e[2]!, newAfter: e[3]! };
    st.preserve = { energy, removed: removedShares(energy), ...(r.preserveProvider ? { provider: r.preserveProvider } : {}) };
  }
  return st;
}

function toResult(prep: PreparedEdit, r: NativeResult): EditResult {
  return {
    out: { dtype: prep.spec.outDtype as Tensor['dtype'], shape: prep.shape, data: r.out! },
    stats: makeStats(prep, r),
  };
}

/** Edit one tensor off the event loop. Resolves to the edited tensor and per-row statistics. */
export async function editTensor(inputs: EditInputs, options?: EditOptions): Promise<EditResult> {
  const site = callSite(editTensor);
  const prep = prepareEdit(inputs, options, true);
  return toResult(prep, await native.edit(prep.spec, site));
}

/** Synchronous variant, for small tensors (it blocks the calling thread). */
export function editTensorSync(inputs: EditInputs, options?: EditOptions): EditResult {
  const prep = prepareEdit(inputs, options, true, 'editTensorSync');
  return toResult(prep, native.editSync(prep.spec));
}

/** Geometry and regions only: writes no weights. */
export async function analyzeTensor(inputs: EditInputs, options?: EditOptions): Promise<TensorStats> {
  const site = callSite(analyzeTensor);
  const prep = prepareEdit(inputs, options, false, 'analyzeTensor');
  return makeStats(prep, await native.edit(prep.spec, site));
}
