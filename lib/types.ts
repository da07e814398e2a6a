export type DType = 'f32' | 'f16' | 'bf16';
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16'];

/** A dense tensor. f16/bf16 data are raw bits in a Uint16Array. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: Float32Array | Uint16Array;
}

export type Strategy = 'geoedit' | 'forget-then-learn' | 'task-arithmetic' | 'custom';
export const STRATEGIES: readonly Strategy[] = ['geoedit', 'forget-then-learn', 'task-arithmetic', 'custom'];

export type Backend = 'auto' | 'cpu' | 'cuda';

export interface EditOptions {
  strategy?: Strategy;
  /** 'paper': the paper's literal reading (keepOrthogonal 0, fuseAligned 1, forgetConflicting 1, kappa 1). Explicit options win. */
  preset?: 'paper';
  scale?: number;
  kappa?: number;
  bandDegrees?: number;
  keepOrthogonal?: number;
  fuseAligned?: number;
  forgetConflicting?: number;
  lambda?: number;
  density?: number;
  temperature?: number;
  importanceOld?: Tensor;
  importanceNew?: Tensor;
  /** strategy 'custom': one (cNew, cOld) pair per row. */
  coefficients?: { cNew: Float32Array; cOld: Float32Array };
  outDtype?: DType;
  /**
   * Write into this tensor instead of allocating a new one (same shape; its dtype is the output
   * dtype). Reusing one output across calls avoids faulting in fresh pages on every call. It must
   * not overlap an input.
   */
  out?: Tensor;
  /** Threads of the shared pool; 0 or undefined = all cores. */
  threads?: number;
  backend?: Backend;
  allowNonFinite?: boolean;
  /** CUDA backend: device bytes one call may use (all streams together). Default:
   *  $GEOEDIT_CUDA_MEMORY (e.g. '2G') or half the free device memory, at most 4 GiB. */
  cudaMemoryLimit?: number;
  /** SPEC §3 step 0: statistics of the tensor's inputs (C0 = cov [n,n] f32, C1 = editCov), or an orthonormal basis [k,n] to protect. */
  preserve?: PreserveTensorOption;
}

/** Option `preserve` of the in-memory API (rho, mu default to the option table's --preserve-rho / --preserve-mu). */
export type PreserveTensorOption = { cov: Tensor; editCov?: Tensor; rho?: number; mu?: number } | { basis: Tensor };

export interface EditInputs {
  base: Tensor;
  old: Tensor;
  new: Tensor;
}

export interface RegionCounts {
  orthogonal: number;
  synergy: number;
  conflict: number;
}

export interface TensorStats {
  rows: number;
  cols: number;
  /** cos(τold[i], τnew[i]) per row (f64). */
  cos: Float64Array;
  /** Per row: 0 orthogonal, 1 synergy, 2 conflict. */
  region: Uint8Array;
  counts: RegionCounts;
  /** The |cos| threshold used (κ/√n or sin(bandDegrees)). */
  threshold: number;
  /** Coefficients applied per row. */
  coefNew: Float32Array;
  coefOld: Float32Array;
  /** Σ‖τnew[i]‖² over rows, and Σ‖c_new·b̃ + c_old·ã‖²: the update energy offered and applied. */
  energy: { new: number; old: number; applied: number };
  /** With option `preserve` (SPEC §3 step 0): Σ‖τ‖² per side before and after the projection, and the share removed (1 − after/before; null when before is 0). */
  preserve?: {
    energy: { oldBefore: number; oldAfter: number; newBefore: number; newAfter: number };
    removed: { old: number | null; new: number | null };
    /** Who computed the preserved rows ('openblas-<version>-<core>', 'eigen-<isa>', 'cublas'; docs/preservation.md). */
    provider?: string;
  };
}

export interface EditResult {
  out: Tensor;
  stats: TensorStats;
}

export interface InfoResult {
  version: string;
  /** SIMD level in use: 'avx512' | 'avx2' | 'scalar'. */
  simd: string;
  threads: number;
  backends: string[];
  cuda: null | Record<string, unknown>;
  /** Why CUDA is not in use, when cuda is null. */
  cudaStatus: string;
  simdSupported: string[];
  /** The backend 'auto' (and $GEOEDIT_BACKEND when set) resolves to now, for an edit of data in host memory. */
  backend?: 'cpu' | 'cuda';
  /** Why (lib/backend.ts chooseBackend): e.g. the host-memory rule, or that no GPU is usable. */
  backendReason?: string;
  /** What 'auto' picks for a job with preservation statistics on this machine, and by which rule (lib/backend.ts preserveRule). */
  preserveBackendReason?: string;
  platform: string;
  node: string;
  napi: string;
  /** The addon file in use (a prebuild or a source build): for bug reports. */
  addonPath: string;
}
