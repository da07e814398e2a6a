// Fixtures and helpers of the hostile-input suite (issue 14): small checkpoints and adapters built
// by the tests, the CLI run in process (run, from test/support/cli-run.ts) or as a child stopped at a
// phase marker (waitForPhase, from test/support/phase-child.ts), and a file-tree fingerprint to prove that inputs were not touched.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeTriple, llamaSpecs } from '../support/ckpt';
import { tmpDir, writeAdapter, linearModule } from '../support/lora';
import { rng, randn } from '../support/prng';
import { writeSafetensors } from '../../lib/safetensors';

export { tmpDir };
export { run } from '../support/cli-run';

/** base/old/new checkpoint directories (small, f32) under a fresh root. */
export async function checkpointTriple(tag: string): Promise<{ root: string; base: string; old: string; new: string }> {
  const root = tmpDir(tag);
  const d = await makeTriple(root, llamaSpecs(1, 'F32'), [1, 1, 2]);
  return { root, ...d };
}

/** Two adapters and a base file (small) under a fresh root. */
export async function adapterSet(tag: string): Promise<{ root: string; old: string; new: string; base: string }> {
  const root = tmpDir(tag);
  const names = ['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.down_proj'];
  const mk = (seed: number) => names.map((n, i) => linearModule(rng(seed + i), n, i ? 16 : 24, i ? 40 : 24, 4));
  await writeAdapter(path.join(root, 'old'), { r: 4, lora_alpha: 8 }, mk(1));
  await writeAdapter(path.join(root, 'new'), { r: 4, lora_alpha: 8 }, mk(10));
  const r = rng(77);
  await writeSafetensors(path.join(root, 'base.safetensors'), [
    { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [24, 24], data: randn(r, 576) },
    { name: 'model.layers.0.mlp.down_proj.weight', dtype: 'F32', shape: [16, 40], data: randn(r, 640) },
  ]);
  return { root, old: path.join(root, 'old'), new: path.join(root, 'new'), base: path.join(root, 'base.safetensors') };
}

/** name -> sha256 (or link target / 'dir') of every entry under p (lstat: links are not followed). */
export function fingerprint(p: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (q: string, rel: string) => {
    const st = fs.lstatSync(q);
    if (st.isSymbolicLink()) out[rel] = `-> ${fs.readlinkSync(q)}`;
    else if (st.isDirectory()) {
      out[rel] = 'dir';
      for (const n of fs.readdirSync(q).sort()) walk(path.join(q, n), rel ? `${rel}/${n}` : n);
    } else out[rel] = crypto.createHash('sha256').update(fs.readFileSync(q)).digest('hex');
  };
  walk(p, '');
  return out;
}

import { waitForPhase } from '../support/phase-child';
import { expect } from 'vitest';
export { waitForPhase };

/** The hidden entries of a directory (temporary directories, locks, temp reports: what a job must not leave). */
export const hidden = (dir: string): string[] => fs.readdirSync(dir).filter((n) => n.startsWith('.'));

/** The CLI's --base/--old/--new arguments of a checkpoint triple. */
export const args = (s: { base: string; old: string; new: string }): string[] => ['--base', s.base, '--old', s.old, '--new', s.new];

/** Renames a copy of `file` with its last byte flipped over it (same size, another inode). */
export function swap(file: string): void {
  const b = fs.readFileSync(file);
  b[b.length - 1] ^= 0xff;
  fs.writeFileSync(`${file}.swap`, b);
  fs.renameSync(`${file}.swap`, file);
}

/**
 * Runs the CLI `argv` as a child stopped at `phase`, renames another file over `file` (swap), lets it
 * go on: a coded ERR_IO naming the file, exit 3, none of `produced`, nothing left beside the target or the input.
 */
export async function expectReplaced(root: string, argv: string[], phase: string, file: string, produced: string[]): Promise<void> {
  const r = await waitForPhase(argv, phase, 'SIGCONT', root, undefined, () => swap(file));
  expect(r.reached, r.stderr).toBe(true);
  expect(r.code, r.stderr).toBe(3);
  expect(r.stderr).toContain('ERR_IO');
  expect(r.stderr).toContain(`${file} was replaced during`);
  for (const p of produced) expect(fs.existsSync(p), p).toBe(false);
  expect(hidden(root)).toEqual([]);
  expect(hidden(path.dirname(file))).toEqual([]);
}
