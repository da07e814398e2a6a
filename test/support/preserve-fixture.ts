// A small model with preservation statistics of every form (tests of option `preserve`):
//   l0.q.weight [8, 6] :cov + :edit_cov; l0.k.weight shares q's (metadata); l0.fc.weight [10, 6] +
//   l0.fc.bias [10]: augmented [7, 7] :cov; l0.out.weight [6, 10] :basis [3, 10]; l0.key.weight
//   [5, 6] :keys [20, 6]; l0.norm.weight [6]: no statistics (edited without, a warning).
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../lib/safetensors';
import { writeCheckpoint } from './ckpt';
import { gram, orthonormalRows } from './preserve-reference';
import { randn, rng } from './prng';

export const PRES_SPECS: Array<{ name: string; shape: number[] }> = [
  { name: 'l0.q.weight', shape: [8, 6] },
  { name: 'l0.k.weight', shape: [8, 6] },
  { name: 'l0.fc.weight', shape: [10, 6] },
  { name: 'l0.fc.bias', shape: [10] },
  { name: 'l0.out.weight', shape: [6, 10] },
  { name: 'l0.key.weight', shape: [5, 6] },
  { name: 'l0.norm.weight', shape: [6] },
];

/** base/old/new (f32) under root. */
export async function writePresModel(root: string, seed = 1): Promise<{ base: string; old: string; new: string }> {
  const r = rng(seed);
  const dirs = { base: path.join(root, 'base'), old: path.join(root, 'old'), new: path.join(root, 'new') };
  const base: TensorToWrite[] = [], old: TensorToWrite[] = [], nw: TensorToWrite[] = [];
  for (const s of PRES_SPECS) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const b = randn(r, n), d0 = randn(r, n, 0.1), d1 = randn(r, n, 0.1);
    base.push({ name: s.name, dtype: 'F32', shape: s.shape, data: b });
    old.push({ name: s.name, dtype: 'F32', shape: s.shape, data: b.map((v, i) => v + d0[i]!) });
    nw.push({ name: s.name, dtype: 'F32', shape: s.shape, data: b.map((v, i) => v + 0.6 * d0[i]! + d1[i]!) });
  }
  await writeCheckpoint(dirs.base, base, 1, false);
  await writeCheckpoint(dirs.old, old, 1, false);
  await writeCheckpoint(dirs.new, nw, 1, false);
  return dirs;
}

/** A second moment K^T K / N of N keys [N, d] with a mean (as activations have), f32. */
export function covOf(r: () => number, N: number, d: number): { K: Float32Array; C: Float32Array } {
  const K = randn(r, N * d);
  for (let i = 0; i < N; i++) for (let j = 0; j < d; j++) K[i * d + j] += 0.5 * (j % 3);
  const C64 = gram(K, N, d);
  const C = new Float32Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) C[i * d + j] = Math.fround((C64[i * d + j]! + C64[j * d + i]!) / 2);
  return { K, C };
}

export interface PresStats {
  tensors: TensorToWrite[];
  shared: Record<string, string>;
  cq: Float32Array; c1q: Float32Array; cfc: Float32Array; U: Float32Array; keys: Float32Array;
}

export function presStats(seed = 7): PresStats {
  const r = rng(seed);
  const cq = covOf(r, 40, 6).C, c1q = covOf(r, 12, 6).C, cfc = covOf(r, 40, 7).C;
  const U = Float32Array.from(orthonormalRows(randn(r, 30), 3, 10));
  const keys = covOf(r, 20, 6).K;
  return {
    cq, c1q, cfc, U, keys,
    shared: { 'l0.k.weight': 'l0.q.weight' },
    tensors: [
      { name: 'l0.q.weight:cov', dtype: 'F32', shape: [6, 6], data: cq },
      { name: 'l0.q.weight:edit_cov', dtype: 'F32', shape: [6, 6], data: c1q },
      { name: 'l0.fc.weight:cov', dtype: 'F32', shape: [7, 7], data: cfc },
      { name: 'l0.out.weight:basis', dtype: 'F32', shape: [3, 10], data: U },
      { name: 'l0.key.weight:keys', dtype: 'F32', shape: [20, 6], data: keys },
    ],
  };
}

export async function writeStats(file: string, tensors: TensorToWrite[], shared: Record<string, string> | string | null): Promise<string> {
  const meta: Record<string, string> = {};
  if (shared !== null) meta['geoedit.preserve.shared'] = typeof shared === 'string' ? shared : JSON.stringify(shared);
  await writeSafetensors(file, tensors, meta);
  return file;
}
