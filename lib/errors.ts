import { safeText } from './text';

/** Stable error codes. Codes are part of the public API: they never change meaning. */
export type GeoEditErrorCode =
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_OPTION'
  | 'ERR_UNKNOWN_OPTION'
  | 'ERR_UNKNOWN_DTYPE'
  | 'ERR_UNKNOWN_STRATEGY'
  | 'ERR_SHAPE_MISMATCH'
  | 'ERR_DATA_LENGTH'
  | 'ERR_COEFFICIENTS'
  | 'ERR_NON_FINITE'
  | 'ERR_NON_FINITE_OUTPUT'
  | 'ERR_BAD_IMPORTANCE'
  | 'ERR_BAD_STATISTICS'
  | 'ERR_BAD_SAFETENSORS'
  | 'ERR_BAD_ADAPTER'
  | 'ERR_UNSUPPORTED'
  | 'ERR_MISSING_TENSOR'
  | 'ERR_NOT_FOUND'
  | 'ERR_OUTPUT_EXISTS'
  | 'ERR_OUTPUT_IS_INPUT'
  | 'ERR_TARGET_BUSY'
  | 'ERR_IO'
  | 'ERR_ABORTED'
  | 'ERR_CUDA_UNAVAILABLE'
  | 'ERR_CUDA'
  | 'ERR_NATIVE_LOAD'
  | 'ERR_OUT_OF_MEMORY'
  | 'ERR_INTERNAL'
  // partitioned edits (lib/partition, docs/partitioned.md)
  | 'ERR_PART_INDEX'
  | 'ERR_NOT_A_PART'
  | 'ERR_PART_MISSING'
  | 'ERR_PART_DUPLICATE'
  | 'ERR_PART_FOREIGN'
  | 'ERR_PART_CORRUPT'
  // governance (lib/governance, docs/governance.md): lineage, verify, review, evaluate, rollout
  | 'ERR_NO_MANIFEST'
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_MANIFEST_TAMPERED'
  | 'ERR_NO_LINEAGE'
  | 'ERR_OUTPUT_CHANGED'
  | 'ERR_OUTPUT_MISSING'
  | 'ERR_OUTPUT_EXTRA'
  | 'ERR_INPUT_CHANGED'
  | 'ERR_REVIEW_INVALID'
  | 'ERR_REVIEW_UNTRUSTED'
  | 'ERR_REVIEW_UNSIGNED'
  | 'ERR_EVALUATION_INVALID'
  | 'ERR_BAD_KEY'
  | 'ERR_LOCKED'
  | 'ERR_SCORER_FAILED'
  | 'ERR_SCORER_TIMEOUT'
  | 'ERR_SCORER_OUTPUT'
  | 'ERR_METRIC_MISSING'
  | 'ERR_BAD_GATE'
  | 'ERR_NO_BASELINE'
  | 'ERR_GATE_FAILED';

/**
 * The one error class of the package; `code` is stable, `message` names what is wrong. The message
 * is made safe (lib/text.ts safeText: control and bidi characters escaped), so a tensor or file
 * name from an input cannot forge lines in it; `details` keep the raw values.
 */
export class GeoEditError extends Error {
  readonly code: GeoEditErrorCode;
  /** Optional structured context: file, tensor, row, option… */
  readonly details?: Record<string, unknown>;
  constructor(code: GeoEditErrorCode, message: string, details?: Record<string, unknown>) {
    super(safeText(message));
    this.name = 'GeoEditError';
    this.code = code;
    if (details) this.details = details;
  }
}

/** A TypeError carrying a stable code (wrong JS type for an argument). */
export function typeError(message: string): TypeError & { code: 'ERR_INVALID_ARG_TYPE' } {
  const e = new TypeError(safeText(message)) as TypeError & { code: 'ERR_INVALID_ARG_TYPE' };
  e.code = 'ERR_INVALID_ARG_TYPE';
  return e;
}

/** Describe a received value for messages: `Expected X for NAME but received V`. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of length ${(v as unknown as { length: number }).length}`;
  if (typeof v === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(v).slice(8, -1)})`;
}
