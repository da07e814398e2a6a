// Backend choice. The CUDA backend is a plugin (geoedit_cuda.so next to the addon) that the core
// loads only when CUDA is asked for or probed. 'auto' picks the backend that is faster for the job
// from what is known (chooseBackend: where the data is, whether it has preservation statistics), and
// says why; an explicit 'cuda' that cannot run throws ERR_CUDA_UNAVAILABLE with the reason (never
// a silent fallback).
import { GeoEditError, describe, typeError } from './errors';
import { native, type NativeCudaDevice } from './native';
import { readEnv } from './env';
import { checkOption, optionSpec, parseSize } from './options';
import type { Backend } from './types';

export type CudaDevice = NativeCudaDevice;

export interface CudaStatus {
  available: boolean;
  /** Why CUDA is not usable ('' when available): starts with 'plugin missing', 'no driver',
   *  'plugin failed to load', 'no device', 'too old' or 'error'. */
  reason: string;
  /** 'ok' | 'plugin-missing' | 'no-driver' | 'plugin-load' | 'no-device' | 'too-old' | 'error' */
  kind: string;
  /** The plugin file used, or '' when none was found. */
  pluginPath: string;
  /** Every plugin path looked at. */
  tried: string[];
  device?: CudaDevice;
}

let cached: CudaStatus | undefined;

/** Probes the CUDA backend once (cached); `refresh` probes again. Never throws. */
export function cudaStatus(refresh = false): CudaStatus {
  if (cached && !refresh) return cached;
  try {
    const r = native.cudaProbe(refresh);
    cached = { available: r.available, reason: r.reason, kind: r.kind, pluginPath: r.pluginPath, tried: r.tried };
    if (r.device) cached.device = r.device;
  } catch (e) {
    cached = { available: false, reason: `error: the CUDA probe failed: ${(e as Error).message}`, kind: 'error', pluginPath: '', tried: [] };
  }
  return cached;
}

/** The backend asked for: the option, else $GEOEDIT_BACKEND, else 'auto' (validated). */
function requestedBackend(b: unknown): { requested: Backend; fromEnv: boolean } {
  const env = readEnv('GEOEDIT_BACKEND');
  const fromEnv = b === undefined && env !== undefined;
  const v = b === undefined ? (env ?? 'auto') : b;
  const where = fromEnv ? 'the environment variable GEOEDIT_BACKEND' : "option 'backend'";
  if (typeof v !== 'string') throw typeError(`Expected 'auto', 'cpu' or 'cuda' for ${where} but received ${describe(v)}`);
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') {
    throw new GeoEditError('ERR_INVALID_OPTION', `Expected 'auto', 'cpu' or 'cuda' for ${where} but received ${describe(v)}`, { option: 'backend' });
  }
  return { requested: v as Backend, fromEnv };
}

/** What a job is, for the 'auto' backend choice (chooseBackend). */
export interface BackendJob {
  /** 'tensor': editTensor/analyzeTensor; 'checkpoint': the checkpoint pipeline; 'lora-geometry'; 'preserve': projection GEMMs. */
  kind: 'tensor' | 'checkpoint' | 'lora-geometry' | 'preserve';
  /** Where the data lives: 'host' (JS typed arrays, files: every entry point today) or 'device'. */
  location?: 'host' | 'device';
  /** A job with preservation statistics (SPEC §3 step 0): its projection work, weighed by preserveRule. */
  preserve?: PreserveWork;
}

/** The work of a job's preservation (ridge statistics: the part the GPU path does with cuBLAS/cuSOLVER). */
export interface PreserveWork {
  /** f32 FLOPs of the row GEMMs x·P: 2 sides × 2·rows·d² per tensor with ridge statistics. */
  gemmFlops: number;
  /** f64 FLOPs of the operator builds (Cholesky + solve for P, ≈ 2.67·d³ per distinct statistic). */
  buildFlops: number;
  /** Input bytes the job streams through the core (base, old and new of every streamed tensor; the rule's rates are per input byte). */
  bytes: number;
  /** The widest ridge operator (d), for the reason. */
  maxDim: number;
}

/** What the GPU offers a preserved job: cuBLAS/cuSOLVER loadable by the plugin (native cudaPreserveStatus). */
export interface GpuLinalgStatus { available: boolean; reason: string }

/**
 * The figures the preservation rule rests on (docs/performance.md; docs/cuda.md "'auto' and
 * preservation"). Measured on the 2-core VM in the quiet runs of 2026-12-01: the CPU's projection GEMM
 * 205-240 GFLOP/s and the f64 operator build ~60 GFLOP/s (bench:preserve, 11:30), and the checkpoint
 * pipeline reading + computing 5.7 GB/s of input (bench:checkpoint `analyze --no-hash`, 3 x 2 GiB in
 * 1.13 s, 11:35); so in the time the CPU streams one input byte it does ~42 FLOPs of GEMM or ~10.5 of
 * the build. Measured on an H200 machine (2026-11-28): host-memory streaming jobs took 2.5-3x the CPU's
 * time on the GPU. NOT measured: a preserved job on a GPU (no GPU was available when the rule was written).
 */
export const PRESERVE_RULE = Object.freeze({ cpuGemmFlopPerByte: 42, cpuBuildFlopPerByte: 10.5, gpuStreamPenalty: 3 });

/**
 * 'auto' for a preserved job (pure: the job's work and what the GPU offers). The GPU path projects on
 * the device (cuBLAS; builds with cuSOLVER) and runs everything else of the job on the GPU's streaming
 * kernels, which over host memory are slower than the CPU (gpuStreamPenalty). So the GPU is chosen
 * when the projection's estimated CPU time exceeds what the GPU loses on the streaming:
 *   gemmFlops / cpuGemmFlopPerByte + buildFlops / cpuBuildFlopPerByte  >  (gpuStreamPenalty − 1) · bytes
 * (both sides in units of the CPU's time to stream one input byte), and only when cuBLAS/cuSOLVER are usable (else
 * the projection would run on the CPU anyway).
 */
export function preserveRule(work: PreserveWork, linalg: GpuLinalgStatus): { gpu: boolean; reason: string } {
  const R = PRESERVE_RULE;
  if (!linalg.available) return { gpu: false, reason: `preserved job, but the GPU's linear algebra is unusable (${linalg.reason}): the projection would run on the CPU, and the rest is faster there` };
  const projection = work.gemmFlops / R.cpuGemmFlopPerByte + work.buildFlops / R.cpuBuildFlopPerByte;
  const loss = (R.gpuStreamPenalty - 1) * work.bytes;
  const ratio = work.bytes > 0 ? projection / work.bytes : Infinity;
  const what = `the projection (${(work.gemmFlops / 1e9).toPrecision(3)} GFLOP GEMM + ${(work.buildFlops / 1e9).toPrecision(3)} GFLOP f64 builds, d up to ${work.maxDim}) ` +
    `is estimated at ${ratio.toPrecision(3)}x the streaming time on the CPU`;
  return projection > loss
    ? { gpu: true, reason: `preserved job: ${what}, above the ${R.gpuStreamPenalty - 1}x the GPU loses on host-memory streaming (an estimate, not measured on a GPU)` }
    : { gpu: false, reason: `preserved job: ${what}, below the ${R.gpuStreamPenalty - 1}x the GPU loses on host-memory streaming; ${HOST_MEMORY_RULE}` };
}

/** What 'auto' does for preserved jobs on this machine, in one sentence (info().preserveBackendReason). */
export function describePreserveAuto(status: CudaStatus = cudaStatus(), linalg?: GpuLinalgStatus): string {
  if (!status.available) return `the CPU: no usable GPU (${status.reason})`;
  const l = linalg ?? gpuLinalgStatus();
  if (!l.available) return `the CPU: the GPU's linear algebra (cuBLAS/cuSOLVER) is unusable (${l.reason})`;
  const R = PRESERVE_RULE;
  return `per job: the GPU when the projection's estimated CPU time (GEMM FLOPs / ${R.cpuGemmFlopPerByte} + f64 build FLOPs / ${R.cpuBuildFlopPerByte}, in input bytes streamed) exceeds ${R.gpuStreamPenalty - 1}x the input bytes the job streams, else the CPU (an estimate from CPU and H200 measurements; a preserved job was not measured on a GPU)`;
}

/** What the plugin says about cuBLAS/cuSOLVER (never throws). */
export function gpuLinalgStatus(): GpuLinalgStatus {
  try {
    const s = native.cudaPreserveStatus();
    return { available: s.available, reason: s.reason };
  } catch (e) {
    return { available: false, reason: `the status probe failed: ${(e as Error).message}` };
  }
}

/** The backend a call runs on, and why. */
export interface BackendChoice {
  name: 'cpu' | 'cuda';
  /** What was asked for: the option, else $GEOEDIT_BACKEND, else 'auto'. */
  requested: Backend;
  /** One sentence: why this backend (for info(), the manifest and the CLI's --json). */
  reason: string;
}

/** The measurement the host-memory rule rests on (docs/performance.md, "CUDA on an H200"). */
export const HOST_MEMORY_RULE =
  "host-memory streaming job (memory-bound): on the H200 machine (bench/results/h200-2026-11-28) the CPU was 2.5-3x faster " +
  'for host-memory checkpoint edits and editTensor, the PCIe copies and host staging costing more than the GPU kernels save';

/**
 * Resolves the backend option (or $GEOEDIT_BACKEND when the option is absent) for a job. An explicit
 * 'cpu'/'cuda' is obeyed ('cuda' unusable: ERR_CUDA_UNAVAILABLE). 'auto' picks the backend that is
 * faster for the job from what is known: no usable GPU -> the CPU; a job with preservation
 * statistics -> preserveRule (the GPU when its projection outweighs the GPU's streaming penalty and
 * cuBLAS/cuSOLVER are usable); data already on the device -> the GPU; a
 * memory-bound job over host memory (every other edit and checkpoint job) -> the CPU, as measured
 * on an H200 machine. `status` / `linalg`: the device description (tests pass fakes). Not re-measured on a GPU since
 * this rule was written (no GPU machine was available); the rule is tested with a mocked probe.
 */
export function chooseBackend(b: unknown, job: BackendJob = { kind: 'tensor' }, status?: CudaStatus, linalg?: GpuLinalgStatus): BackendChoice {
  const { requested, fromEnv } = requestedBackend(b);
  if (requested === 'cpu') return { name: 'cpu', requested, reason: `backend 'cpu' was requested${fromEnv ? ' (GEOEDIT_BACKEND)' : ''}` };
  const cuda = status ?? cudaStatus();
  if (requested === 'cuda') {
    if (!cuda.available) {
      throw new GeoEditError('ERR_CUDA_UNAVAILABLE', `backend 'cuda' was requested${fromEnv ? ' (GEOEDIT_BACKEND)' : ''} but CUDA is unavailable: ${cuda.reason}`, { reason: cuda.reason, kind: cuda.kind });
    }
    return { name: 'cuda', requested, reason: `backend 'cuda' was requested${fromEnv ? ' (GEOEDIT_BACKEND)' : ''}` };
  }
  if (!cuda.available) return { name: 'cpu', requested, reason: `auto: no usable GPU (${cuda.reason})` };
  // Test and device-check runs of the whole suite on the GPU: 'auto' = CUDA wherever it can run.
  if (readEnv('GEOEDIT_AUTO_BACKEND') === 'cuda') return { name: 'cuda', requested, reason: 'auto: GEOEDIT_AUTO_BACKEND=cuda' };
  if (job.preserve) {
    const p = preserveRule(job.preserve, linalg ?? gpuLinalgStatus());
    return { name: p.gpu ? 'cuda' : 'cpu', requested, reason: `auto: ${p.reason}` };
  }
  if (job.location === 'device') return { name: 'cuda', requested, reason: 'auto: the data is on the device already' };
  return { name: 'cpu', requested, reason: `auto: ${HOST_MEMORY_RULE}` };
}

/** chooseBackend's backend alone (for a host-memory edit unless `job` says otherwise). */
export function selectBackend(b: unknown, job?: BackendJob): 'cpu' | 'cuda' {
  return chooseBackend(b, job).name;
}

/**
 * Option 'cudaMemoryLimit' (device bytes one call may use; 0 = the plugin's default). When it is
 * absent and the call runs on CUDA, $GEOEDIT_CUDA_MEMORY is read here, with the one size parser,
 * so '2GB' means the same in the variable as in every option.
 */
export function resolveCudaMemoryLimit(v: unknown, backend: 'cpu' | 'cuda' = 'cuda'): number {
  if (v !== undefined) return checkOption(optionSpec('cudaMemoryLimit')!, v) as number;
  const env = backend === 'cuda' ? readEnv('GEOEDIT_CUDA_MEMORY') : undefined;
  return env === undefined ? 0 : parseSize(env, '$GEOEDIT_CUDA_MEMORY');
}

/**
 * Backend check for the paths that run on the CPU core only (the LoRA API; the checkpoint pipeline
 * uses selectBackend): validates the option like selectBackend (an unusable explicit 'cuda' still throws
 * ERR_CUDA_UNAVAILABLE), 'auto' means the CPU there, and an explicit 'cuda' (option or
 * $GEOEDIT_BACKEND) throws ERR_UNSUPPORTED instead of running on the CPU behind the caller's back.
 */
export function cpuOnlyBackend(b: unknown, what: string): 'cpu' {
  const env = readEnv('GEOEDIT_BACKEND');
  const fromEnv = b === undefined && env !== undefined;
  const requested = b === undefined ? (env ?? 'auto') : b;
  if (requested === 'cuda') {
    selectBackend(b);
    throw new GeoEditError('ERR_UNSUPPORTED', `${what} runs on the CPU only; backend 'cuda' was requested${fromEnv ? ' (GEOEDIT_BACKEND)' : ''} (use 'auto' or 'cpu')`, { option: 'backend' });
  }
  if (requested !== 'auto') selectBackend(b); // validates 'cpu' / rejects anything else
  return 'cpu';
}
