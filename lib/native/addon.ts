// The private interface of the addon: exactly what native/binding exports (native/binding/EXPORTS.md;
// test/unit/native-wrapper.test.ts checks that the two lists agree). Only lib/native/ may use these types to call the addon;
// the rest of lib/ goes through the wrapped `native` API (lib/native/api.ts).

/** The core's edit parameters as they cross to the binding (built from the option table by lib/options). */
export type NativeParams = Readonly<Record<string, number | string | boolean>>;

export interface NativeResult {
  out?: Float32Array | Uint16Array;
  cos: Float64Array;
  region: Uint8Array;
  coefNew: Float32Array;
  coefOld: Float32Array;
  deltaSq: Float64Array;
  na: Float64Array;
  nb: Float64Array;
  /** Preserved edits only (NativePreserveResult). */
  preserveEnergy?: Float64Array;
  preserveProvider?: string;
  biasTauOld?: Float32Array;
  biasTauNew?: Float32Array;
}

export interface NativeSpec {
  rows: number;
  cols: number;
  base: Float32Array | Uint16Array;
  baseDtype: string;
  old: Float32Array | Uint16Array;
  oldDtype: string;
  new: Float32Array | Uint16Array;
  newDtype: string;
  impOld?: Float32Array | Uint16Array;
  impOldDtype?: string;
  impNew?: Float32Array | Uint16Array;
  impNewDtype?: string;
  cNew?: Float32Array;
  cOld?: Float32Array;
  outDtype: string;
  outData?: Float32Array | Uint16Array;
  wantOut: boolean;
  threads: number;
  simd?: number;
  tensorName?: string;
  rowOffset?: number;
  /** 'cuda' runs on the CUDA plugin; anything else on the CPU core. */
  backend?: 'cpu' | 'cuda';
  /** Device bytes a CUDA call may use (0: $GEOEDIT_CUDA_MEMORY or the plugin's default). */
  cudaMemoryLimit?: number;
  params: NativeParams;
  /** old/new hold task vectors (f32), not weights (materialised LoRA rows). */
  tauGiven?: boolean;
  /** SPEC §3 step 0 (native/binding/EXPORTS.md): preservation statistics; with a bias, the augmented form. */
  preserve?: NativePreserve;
  biasBase?: Float32Array | Uint16Array;
  biasBaseDtype?: string;
  biasOld?: Float32Array | Uint16Array;
  biasOldDtype?: string;
  biasNew?: Float32Array | Uint16Array;
  biasNewDtype?: string;
}

/** Preservation statistics as the binding reads them (exactly one of cov, keys, basis). */
export interface NativePreserve {
  cov?: Float32Array;
  covShape?: [number, number];
  editCov?: Float32Array;
  editCovShape?: [number, number];
  keys?: Float32Array;
  keysShape?: [number, number];
  editKeys?: Float32Array;
  editKeysShape?: [number, number];
  basis?: Float32Array;
  basisShape?: [number, number];
  rho?: number;
  mu?: number;
  source?: string;
  tensor?: string;
  /** Check only (shapes, finite, symmetric, PSD, orthonormal, rho/mu): no operator is formed. */
  validateOnly?: boolean;
  /** The CPU linear algebra of the ridge form (native/core/blas.h): default GEOEDIT_BLAS ('auto': the system's OpenBLAS when it loads, else Eigen). Tests and the bench. */
  blas?: NativeBlasChoice;
}

export type NativeBlasChoice = 'auto' | 'eigen' | 'openblas';

/** blasInfo(): which CPU linear algebra preserved edits use (native/core/blas.h). */
export interface NativeBlasInfo {
  /** GEOEDIT_BLAS as read ('auto' when unset), or the unknown value given. */
  choice: string;
  /** Who a preserved edit's ridge rows use now ('openblas-<version>-<core>' | 'eigen-<isa>'), null when GEOEDIT_BLAS cannot be honoured. */
  provider: string | null;
  error: string | null;
  openblas: { available: boolean; reason: string; lib: string; config: string; core: string; version: string; provider: string };
}

/** What a preserved edit adds to its result (EXPORTS.md). */
export interface NativePreserveResult {
  /** [oldBefore, oldAfter, newBefore, newAfter, biasOldBefore, biasOldAfter, biasNewBefore, biasNewAfter, rows, gpuRows] */
  preserveEnergy?: Float64Array;
  /** Who computed the preserved rows: 'openblas-<version>-<core>' | 'eigen-<isa>' | 'cublas', then '; factored: <who formed P>' when that differs. */
  preserveProvider?: string;
  biasTauOld?: Float32Array;
  biasTauNew?: Float32Array;
}

/** One side of a LoRA module in the core's canonical form: tau = scale * L * R, L [rows, r], R [r, cols]. */
export interface NativeLoraSide {
  L: Float32Array;
  R: Float32Array;
  r: number;
  scale: number;
}

export interface NativeLoraGeometry {
  cos: Float64Array;
  region: Uint8Array;
  coefNew: Float32Array;
  coefOld: Float32Array;
  na: Float64Array;
  nb: Float64Array;
  dot: Float64Array;
  deltaSq: Float64Array;
}

/** Exactly what the .node exports. */
export interface NativeAddon {
  edit(spec: NativeSpec): Promise<NativeResult>;
  editSync(spec: NativeSpec): NativeResult;
  info(): { version: string; simd: string; simdDetected: string; threads: number; simdSupported: string[] };
  defaults(): Record<string, number> & { paper: Record<string, number>; preserve: { rho: number; mu: number } };
  convert(from: string, data: Float32Array | Uint16Array, to: string): Float32Array | Uint16Array;
  /** SHA-256 of the first `size` bytes of each open file, several files at once on native threads (OpenSSL). */
  hashFiles(spec: { files: Array<{ fd: number; size: number; file?: string }>; threads?: number; ctl?: Float64Array }): Promise<{ sha256: string[]; seconds: number[] }>;
  /** Whether hashFiles can run here. */
  sha256Info(): { available: boolean; provider: string; reason: string };
  /** An output file's SHA-256 taken as the stream writes it (stream tasks' outHash); prefix: bytes at offset 0 written by the caller. */
  outputHash(prefix?: Uint8Array): NativeOutputHash;
  /** Finishes an outputHash: reads back [hashed frontier, size) of fd (whatever was not fed in order), then the digest. */
  outputHashFinish(h: NativeOutputHash, spec: { fd: number; size: number; file?: string; ctl?: Float64Array }): Promise<{ sha256: string; fromMemory: number; reread: number }>;
  /** Which CPU linear algebra preserved edits use (libopenblas is loaded by the first preserved call, or here, on the JS thread; not under GEOEDIT_BLAS=eigen). */
  blasInfo(): NativeBlasInfo;
  /** Tests only: the fused row path on/off. */
  _setFused(on: boolean): boolean;
  /** The row pipeline's form for the rest of the process ('sums' | 'prefetch' | 'off'); returns the previous one (no argument: only reads it). Same results every way. */
  _setRowPipeline(mode?: 'sums' | 'prefetch' | 'off'): 'sums' | 'prefetch' | 'off';
  /** Tests only: bytes the stream's writer wrote with O_DIRECT / through the page cache, and O_DIRECT opens or writes refused, since the process started. */
  _directWrites(): { direct: number; buffered: number; refused: number };
  /** Tests only: counters of the fresh-output pool (native/binding/EXPORTS.md). */
  _outputPool(): { hits: number; misses: number; idleBytes: number; cap: number; early: number; reclaimed: number; forced: number; futile: number; gcMs: number; faultMsPerMiB: number; uncounted: number; marking: number; uncountedAvailable: boolean; uncountedUnavailable: '' | 'off' | 'transfer' | 'node' | 'symbols' | 'external' | 'probe' };
  /** Bench only: STREAM triad GB/s over the shared pool. */
  _triad(n: number, threads: number, reps: number): Promise<number>;
  cudaProbe(refresh?: boolean): NativeCudaProbe;
  /** Whether preserved edits on backend 'cuda' use cuBLAS/cuSOLVER, or why they run on the CPU. */
  cudaPreserveStatus(refresh?: boolean): { available: boolean; reason: string; libs: string };
  /** Internal (lib/native/loader.ts, once at load): Node's markAsUntransferable, for async calls' inputs. */
  _setTransferGuard(mark: (o: object) => void): void;
  /** Tests only: SPEC §4 dot/na/nb of two LoRA deltas on the CPU or the CUDA plugin (lib/lora-geometry.ts). */
  _cudaLoraGeometry(spec: NativeLoraSpec): { dot: Float64Array; na: Float64Array; nb: Float64Array };
  /** Bench only (bench/gpu/): device-resident kernel benchmark. */
  _cudaBench(spec: NativeCudaBenchSpec): { kernelMs: number; kernelGBps: number; copyGBps: number; checksum: number };
  /** Bench only (bench/preserve.js): preservation build + row GEMM timings and the ISA's FMA peak. */
  _preserveBench(spec: { n: number; rows: number; form?: 'cov' | 'keys' | 'basis'; k?: number; withC1?: boolean; threads?: number; simd?: number; reps?: number; peakSeconds?: number; blas?: NativeBlasChoice }): {
    buildMs: number; applyMs: number; applyCpuMs: number; applyGflops: number; gemmFlops: number; peakGflops: number; peakGflops1: number;
    threads: number; simd: string; la: string; provider: string; factoredBy: string; statBytes: number; workBytes: number; checksum: number;
  };
  loraGeometry(spec: {
    rows: number; cols: number; old: NativeLoraSide | null; new: NativeLoraSide | null;
    params: NativeParams; cNew?: Float32Array; cOld?: Float32Array; threads?: number; tensorName?: string;
  }): Promise<NativeLoraGeometry>;
  loraMaterialize(spec: { rows: number; cols: number; side: NativeLoraSide | null; r0: number; r1: number; threads?: number }): Float32Array;
  loraMaterializeAsync(spec: { rows: number; cols: number; side: NativeLoraSide | null; r0: number; r1: number; threads?: number }): Promise<{ out: Float32Array }>;
  loraMerge(spec: {
    rows: number; cols: number; old: NativeLoraSide | null; new: NativeLoraSide | null; cNew: Float32Array; cOld: Float32Array;
    transposed: boolean; s0: number; s1: number; base: Float32Array | Uint16Array; baseDtype: string; outDtype: string;
    threads?: number; tensorName?: string; allowNonFiniteOutput?: boolean;
  }): Promise<{ out: Float32Array | Uint16Array }>;
  /** safetensors header of a file (pread, validated); offsets relative to the data section. */
  stHeader(path: string): NativeStHeader;
  /** The same for a whole file held in memory. */
  stHeaderBytes(bytes: Uint8Array, name?: string): NativeStHeader;
  /** The checkpoint data path: edit / copy / convert tensors file to file in row blocks. */
  stream(spec: NativeStreamSpec): Promise<(NativeResult | null)[]>;
}

export interface NativeCudaDevice {
  name: string;
  memory: number;
  computeCapability: string;
  driverVersion: string;
  runtimeVersion: string;
  multiprocessors: number;
  deviceCount: number;
  index: number;
}

export interface NativeCudaProbe {
  available: boolean;
  reason: string;
  kind: string;
  pluginPath: string;
  tried: string[];
  device: NativeCudaDevice | null;
  versions?: { driverVersion: string; runtimeVersion: string };
}

export interface NativeLoraSpec {
  m: number;
  n: number;
  rOld: number;
  rNew: number;
  aOld: Float32Array;
  bOld: Float32Array;
  aNew: Float32Array;
  bNew: Float32Array;
  sOld: number;
  sNew: number;
  backend?: 'cpu' | 'cuda';
}

export interface NativeCudaBenchSpec {
  rows: number;
  cols: number;
  dtype: string;
  reps: number;
  params: NativeParams;
  withImportance?: boolean;
}

export interface NativeStHeader {
  fileSize: number;
  headerLen: number;
  dataOffset: number;
  metadata: Record<string, string> | null;
  tensors: Array<{ name: string; dtype: string; shape: number[]; begin: number; end: number }>;
}

export interface NativeStreamSrc {
  fd: number;
  offset: number;
  dtype: string;
  file?: string;
}

/** A handle from outputHash() (an opaque native object). */
export type NativeOutputHash = { readonly __outputHash: unique symbol };

export interface NativeStreamTask {
  kind: 0 | 1 | 2 | 3; // edit | copy | convert | merged LoRA (base + c_new·tau_new + c_old·tau_old, EXPORTS.md)
  name: string;
  rows?: number;
  cols?: number;
  copyBytes?: number;
  base: NativeStreamSrc;
  old?: NativeStreamSrc;
  new?: NativeStreamSrc;
  impOld?: NativeStreamSrc;
  impNew?: NativeStreamSrc;
  cNew?: Float32Array;
  cOld?: Float32Array;
  outFd?: number;
  outOffset?: number;
  outDtype?: string;
  /** The output file's SHA-256, fed as this task writes (a handle from outputHash(), shared by the file's tasks). */
  outHash?: NativeOutputHash;
  stats?: boolean;
  /** 0 rows (default), 1 columns: `groups` stored matrices [cols, rows/groups], neurons = their columns. */
  layout?: 0 | 1;
  groups?: number;
  /** Index into spec.preserves (SPEC §3 step 0). */
  preserve?: number;
  /** The augmented form: the bias tensor's sources (rows elements). */
  biasBase?: NativeStreamSrc;
  biasOld?: NativeStreamSrc;
  biasNew?: NativeStreamSrc;
  /** Edit this bias task from the preserved bias task vectors of task `tauFrom` (no old/new). */
  tauFrom?: number;
  /** kind 3: the two LoRA sides (canonical L/R form) and whether the base stores neurons as columns. */
  loraOld?: NativeLoraSide | null;
  loraNew?: NativeLoraSide | null;
  transposed?: boolean;
}

export interface NativeStreamSpec {
  tasks: NativeStreamTask[];
  /** Preservation statistics, each built once before any task runs (tasks name them by index). */
  preserves?: NativePreserve[];
  params: NativeParams;
  threads?: number;
  /** Bytes per block of the widest edit input; 0 or absent: the backend's default (8 MiB on the CPU, 64 MiB on the GPU). */
  blockBytes?: number;
  /** Where edit blocks run (resolved by selectBackend); absent: the CPU. */
  backend?: 'cpu' | 'cuda';
  /** CUDA: device bytes one block call may use; 0 = default. */
  cudaMemoryLimit?: number;
  /** [bytesDone (written by the worker), cancel (set non-zero to stop), task index (written by the worker)] */
  ctl?: Float64Array;
}

