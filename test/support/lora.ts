// Helpers for the LoRA tests: deterministic data and PEFT adapter directories written on the fly.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../lib/safetensors';
import { randn, rng } from './prng';
import { writeCheckpoint } from './ckpt';

export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `geoedit-${tag}-`));
}

export interface SynthModule {
  name: string;
  /** Linear: A [r, in], B [out, r]; Embedding: A [r, V], B [D, r]. */
  A: Float32Array;
  B: Float32Array;
  r: number;
  rows: number; // Linear: out; Embedding: V
  cols: number; // Linear: in; Embedding: D
  embedding?: boolean;
}

/** Writes a PEFT directory: adapter_config.json (defaults of PEFT 0.14, overridable) + safetensors. */
export async function writeAdapter(dir: string, config: Record<string, unknown>, modules: SynthModule[], extras: TensorToWrite[] = [], extraTensors: TensorToWrite[] = []): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const cfg = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'synthetic', bias: 'none', fan_in_fan_out: false,
    inference_mode: true, init_lora_weights: true, lora_dropout: 0, modules_to_save: null, r: 8, lora_alpha: 16,
    rank_pattern: {}, alpha_pattern: {}, use_rslora: false, use_dora: false, target_modules: ['q_proj', 'v_proj'],
    ...config,
  };
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg, null, 2));
  const tensors: TensorToWrite[] = [];
  for (const m of modules) {
    const k = `base_model.model.${m.name}`;
    if (m.embedding) {
      tensors.push({ name: `${k}.lora_embedding_A`, dtype: 'F32', shape: [m.r, m.rows], data: m.A });
      tensors.push({ name: `${k}.lora_embedding_B`, dtype: 'F32', shape: [m.cols, m.r], data: m.B });
    } else {
      tensors.push({ name: `${k}.lora_A.weight`, dtype: 'F32', shape: [m.r, m.cols], data: m.A });
      tensors.push({ name: `${k}.lora_B.weight`, dtype: 'F32', shape: [m.rows, m.r], data: m.B });
    }
  }
  tensors.push(...extras, ...extraTensors);
  await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
}

export function linearModule(r: () => number, name: string, rows: number, cols: number, rank: number, sd = 0.1): SynthModule {
  return { name, A: randn(r, rank * cols, sd), B: randn(r, rows * rank, sd), r: rank, rows, cols };
}

/** tau = s * B * A (Linear) or s * (B A)^T (Embedding), in f64, [rows, cols]. */
export function tauOf(m: SynthModule, s: number): Float64Array {
  const t = new Float64Array(m.rows * m.cols);
  if (!m.embedding) {
    for (let i = 0; i < m.rows; i++) for (let k = 0; k < m.r; k++) {
      const b = m.B[i * m.r + k]!;
      if (b === 0) continue;
      for (let j = 0; j < m.cols; j++) t[i * m.cols + j]! += b * m.A[k * m.cols + j]!;
    }
  } else {
    for (let v = 0; v < m.rows; v++) for (let d = 0; d < m.cols; d++) {
      let acc = 0;
      for (let k = 0; k < m.r; k++) acc += m.B[d * m.r + k]! * m.A[k * m.rows + v]!;
      t[v * m.cols + d] = acc;
    }
  }
  for (let q = 0; q < t.length; q++) t[q]! *= s;
  return t;
}

/**
 * Two adapters (r 4) over three layers' q_proj and down_proj, and a base checkpoint of two shards with
 * those weights and a norm, under root (old/, new/, base/): the merged-adapter fixture (a merge shards
 * into several files with a small maxShardSize).
 */
export async function writeMergeFixture(root: string): Promise<{ old: string; new: string; base: string }> {
  const names = [0, 1, 2].flatMap((l) => [`model.layers.${l}.self_attn.q_proj`, `model.layers.${l}.mlp.down_proj`]);
  const mk = (seed: number) => names.map((n, i) => linearModule(rng(seed + i), n, i % 2 ? 16 : 24, i % 2 ? 40 : 24, 4));
  await writeAdapter(path.join(root, 'old'), { r: 4, lora_alpha: 8 }, mk(1));
  await writeAdapter(path.join(root, 'new'), { r: 4, lora_alpha: 8 }, mk(10));
  const r = rng(77);
  const base: TensorToWrite[] = names.map((n, i) => ({ name: `${n}.weight`, dtype: 'F32' as const, shape: i % 2 ? [16, 40] : [24, 24], data: randn(r, i % 2 ? 640 : 576) }));
  base.push({ name: 'model.norm.weight', dtype: 'F32', shape: [24], data: randn(r, 24) });
  await writeCheckpoint(path.join(root, 'base'), base, 2);
  return { old: path.join(root, 'old'), new: path.join(root, 'new'), base: path.join(root, 'base') };
}
