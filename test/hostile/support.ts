// Fixtures and helpers of the hostile-input suite (issue 14): small checkpoints and adapters built
// by the tests, the CLI run in process with stdout/stderr captured, and a file-tree fingerprint to
// prove that inputs were not touched.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { vi } from 'vitest';
import { makeTriple, llamaSpecs } from '../support/ckpt';
import { tmpDir, writeAdapter, linearModule } from '../support/lora';
import { rng, randn } from '../support/prng';
import { writeSafetensors } from '../../lib/safetensors';

export { tmpDir };

export async function run(fn: (a: string[]) => Promise<number>, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => { out += String(s); return true; });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { err += String(s); return true; });
  try {
    const code = await fn(args);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

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

const BIN = path.join(__dirname, '..', '..', 'bin', 'geoedit.js');

function stoppedNow(pid: number): boolean {
  try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('T'); } catch { return false; }
}

/**
 * Runs the CLI (bin/geoedit.js, or `script`) with GEOEDIT_TEST_STOP_AT=phase (lib/job/phase.ts) in
 * cwd; once it has printed that phase's marker and stopped itself, sends `sig`, then SIGCONT. No
 * time limit of its own: it waits on the marker and on the stopped state (the test's timeout bounds
 * it). `phases`: the markers printed after that one, in order; `reached`: whether it stopped at
 * `phase` (else it ended first). `onStopped`: runs while the child is stopped, before the signal.
 */
export async function waitForPhase(argv: string[], phase: string, sig: NodeJS.Signals, cwd: string, script = BIN, onStopped?: () => void):
  Promise<{ reached: boolean; code: number | null; signal: string | null; stdout: string; stderr: string; phases: string[] }> {
  const c = spawn(process.execPath, [script, ...argv], { cwd, env: { ...process.env, GEOEDIT_TEST_STOP_AT: phase } });
  let stdout = '', stderr = '';
  let onData: () => void = () => undefined;
  c.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
  c.stderr.on('data', (b: Buffer) => { stderr += b.toString(); onData(); });
  const done = new Promise<[number | null, string | null]>((resolve) => c.on('exit', (code, signal) => resolve([code, signal])));
  const marker = `geoedit-test: phase ${phase}\n`;
  // The marker is written (a pipe: synchronously) before the child stops itself: wait for it, then for the stop.
  const reached = await Promise.race([
    new Promise<boolean>((resolve) => { onData = () => { if (stderr.includes(marker)) resolve(true); }; onData(); }),
    done.then(() => false),
  ]);
  if (reached) {
    while (!stoppedNow(c.pid!) && c.exitCode === null) await new Promise((r) => setTimeout(r, 2));
    onStopped?.();
    c.kill(sig);
    c.kill('SIGCONT');
  }
  const [code, signal] = await done;
  const phases = [...stderr.matchAll(/^geoedit-test: phase (\S+)$/gm)].map((m) => m[1]!);
  return { reached, code, signal, stdout, stderr, phases: phases.slice(phases.indexOf(phase) + 1) };
}
