// Test checkpoints, written with the package's own writer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openCheckpoint } from '../../lib/checkpoint';
import { readTensor, writeSafetensors, type TensorToWrite } from '../../lib/safetensors';
import { loadNative } from '../../lib/native';
import { rnd } from './prng';

/** f32 -> f16/bf16 raw bits with the core's conversion (round to nearest even). */
export function convert(f: Float32Array, to: 'bf16' | 'f16'): Uint16Array {
  return loadNative().convert('f32', f, to) as Uint16Array;
}

export interface Spec { name: string; dtype: 'F32' | 'BF16' | 'F16' | 'I64' | 'BOOL'; shape: number[] }

/** A small Llama-like layout: layers × modules (bf16 by default), a norm, an int buffer. */
export function llamaSpecs(layers = 3, dtype: 'BF16' | 'F32' | 'F16' = 'BF16'): Spec[] {
  const s: Spec[] = [{ name: 'model.embed_tokens.weight', dtype, shape: [40, 16] }];
  for (let l = 0; l < layers; l++) {
    s.push({ name: `model.layers.${l}.self_attn.q_proj.weight`, dtype, shape: [16, 16] });
    s.push({ name: `model.layers.${l}.self_attn.v_proj.weight`, dtype, shape: [16, 16] });
    s.push({ name: `model.layers.${l}.mlp.up_proj.weight`, dtype, shape: [32, 16] });
    s.push({ name: `model.layers.${l}.mlp.down_proj.weight`, dtype, shape: [16, 32] });
    s.push({ name: `model.layers.${l}.input_layernorm.weight`, dtype, shape: [16] });
  }
  s.push({ name: 'model.position_ids', dtype: 'I64', shape: [8] });
  s.push({ name: 'model.mask', dtype: 'BOOL', shape: [2, 3] });
  return s;
}

/** Tensor data for a role: base = rnd(seed); old/new = base + step * rnd(other seed). */
export function tensorsFor(specs: Spec[], role: 'base' | 'old' | 'new', step = 0.05): TensorToWrite[] {
  return specs.map((sp, k) => {
    const n = sp.shape.reduce((a, b) => a * b, 1);
    if (sp.dtype === 'I64') return { ...sp, data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i * 3 + k + (role === 'base' ? 0 : 100))) };
    if (sp.dtype === 'BOOL') return { ...sp, data: Uint8Array.from({ length: n }, (_, i) => (i + k + (role === 'base' ? 0 : 1)) & 1) };
    const base = rnd(n, 1000 + k);
    let f = base;
    if (role !== 'base') {
      const d = rnd(n, (role === 'old' ? 2000 : 3000) + k);
      const shared = rnd(n, 4000 + k);
      f = base.map((v, i) => v + step * (d[i]! + 0.7 * shared[i]! * (i % 3 === 0 ? -1 : 1) * (role === 'old' ? 1 : (k % 2 ? 1 : -1))));
    }
    return { ...sp, data: sp.dtype === 'F32' ? f : convert(f, sp.dtype === 'BF16' ? 'bf16' : 'f16') };
  });
}

/** Writes a checkpoint directory: one file, or `shards` shards with an index. */
export async function writeCheckpoint(dir: string, tensors: TensorToWrite[], shards = 1, extraFiles = true): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  if (shards <= 1) {
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  } else {
    const per = Math.ceil(tensors.length / shards);
    const wm: Record<string, string> = {};
    let total = 0;
    for (let s = 0; s < shards; s++) {
      const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.slice(s * per, (s + 1) * per);
      await writeSafetensors(path.join(dir, name), part, { format: 'pt' });
      for (const t of part) { wm[t.name] = name; total += t.data.byteLength; }
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: wm }));
  }
  if (extraFiles) {
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 16 }));
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"version":"1.0"}');
  }
}

/** base/old/new under root, sharded differently (1, 2 and 3 shards unless given). */
export async function makeTriple(root: string, specs: Spec[], shards: [number, number, number] = [3, 1, 2]): Promise<{ base: string; old: string; new: string }> {
  const dirs = { base: path.join(root, 'base'), old: path.join(root, 'old'), new: path.join(root, 'new') };
  await writeCheckpoint(dirs.base, tensorsFor(specs, 'base'), shards[0]);
  await writeCheckpoint(dirs.old, tensorsFor(specs, 'old'), shards[1], false);
  await writeCheckpoint(dirs.new, tensorsFor(specs, 'new'), shards[2], false);
  return dirs;
}

/** Names under dir that look like leftovers of a job (temp dirs/files). */
export function leftovers(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.includes('geoedit-tmp'));
}

/** One tensor of a checkpoint (a file, a directory, or index + shards), as stored. */
export async function readCheckpointTensor(ckpt: string, name: string) {
  const t = openCheckpoint(ckpt).byName.get(name);
  if (!t) throw new Error(`${ckpt} has no tensor '${name}'`);
  return readTensor(t.file, name);
}
