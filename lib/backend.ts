// Backend choice. The CUDA backend is a plugin (geoedit_cuda.so next to the addon) that the core
// loads only when CUDA is asked for or probed. 'auto' uses a usable GPU, else the CPU; an explicit
// 'cuda' that cannot run throws ERR_CUDA_UNAVAILABLE with the reason (never a silent fallback).
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

/** Resolves the backend option (or $GEOEDIT_BACKEND when the option is absent) to 'cpu' or 'cuda'. */
export function selectBackend(b: unknown): 'cpu' | 'cuda' {
  const env = readEnv('GEOEDIT_BACKEND');
  const fromEnv = b === undefined && env !== undefined;
  const v = b === undefined ? (env ?? 'auto') : b;
  const where = fromEnv ? 'the environment variable GEOEDIT_BACKEND' : "option 'backend'";
  if (typeof v !== 'string') throw typeError(`Expected 'auto', 'cpu' or 'cuda' for ${where} but received ${describe(v)}`);
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') {
    throw new GeoEditError('ERR_INVALID_OPTION', `Expected 'auto', 'cpu' or 'cuda' for ${where} but received ${describe(v)}`, { option: 'backend' });
  }
  const backend = v as Backend;
  if (backend === 'cpu') return 'cpu';
  const cuda = cudaStatus();
  if (backend === 'cuda') {
    if (!cuda.available) {
      throw new GeoEditError('ERR_CUDA_UNAVAILABLE', `backend 'cuda' was requested${fromEnv ? ' (GEOEDIT_BACKEND)' : ''} but CUDA is unavailable: ${cuda.reason}`, { reason: cuda.reason, kind: cuda.kind });
    }
    return 'cuda';
  }
  return cuda.available ? 'cuda' : 'cpu';
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
