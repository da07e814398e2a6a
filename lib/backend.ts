// Backend choice. The CUDA backend is a plugin loaded only when asked for; until it is present
// and usable, 'auto' means the CPU and an explicit 'cuda' throws ERR_CUDA_UNAVAILABLE (never a
// silent fallback).
import { GeoEditError, describe, typeError } from './errors';
import type { Backend } from './types';

export interface CudaStatus {
  available: boolean;
  reason: string;
  device?: Record<string, unknown>;
}

export function cudaStatus(): CudaStatus {
  return { available: false, reason: 'the CUDA plugin is not built into this package (CPU build)' };
}

export function selectBackend(b: unknown): 'cpu' | 'cuda' {
  const v = b === undefined ? (process.env.GEOEDIT_BACKEND ?? 'auto') : b;
  if (typeof v !== 'string') throw typeError(`Expected 'auto', 'cpu' or 'cuda' for option 'backend' but received ${describe(v)}`);
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') {
    throw new GeoEditError('ERR_INVALID_OPTION', `Expected 'auto', 'cpu' or 'cuda' for option 'backend' but received ${describe(v)}`, { option: 'backend' });
  }
  const backend = v as Backend;
  if (backend === 'cpu') return 'cpu';
  const cuda = cudaStatus();
  if (backend === 'cuda') {
    if (!cuda.available) throw new GeoEditError('ERR_CUDA_UNAVAILABLE', `backend 'cuda' was requested but CUDA is unavailable: ${cuda.reason}`, { reason: cuda.reason });
    return 'cuda';
  }
  return cuda.available ? 'cuda' : 'cpu';
}
