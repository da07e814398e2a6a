// Issue 14 class 4: nothing left behind. SIGHUP and SIGQUIT are handled like SIGINT/SIGTERM,
// process.exit() and a throwing onProgress mid-job clean up synchronously, and the temporary
// directories and locks of processes that died without cleaning up (SIGKILL) are recognised by a
// later run and removed, saying so on stderr.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { lockPathFor } from '../../lib/job/lock';
import { checkpointTriple, run } from './support';

const CHILD = path.join(__dirname, 'fixtures', 'job-child.cjs');

function stopped(pid: number): boolean {
  try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('T'); } catch { return false; }
}

/** Runs the child job; `sig`: sent once the child has stopped itself at its first progress event. */
async function child(mode: string, s: { root: string; base: string; old: string; new: string }, out: string, sig?: NodeJS.Signals) {
  const c = spawn(process.execPath, [CHILD, mode, s.base, s.old, s.new, out], { cwd: s.root });
  let stdout = '', stderr = '';
  c.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
  c.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const done = new Promise<[number | null, string | null]>((resolve) => c.on('exit', (code, signal) => resolve([code, signal])));
  let sawTemp = false;
  if (sig) {
    const t0 = Date.now();
    while (!stopped(c.pid!) && c.exitCode === null && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 5));
    sawTemp = fs.readdirSync(s.root).some((n) => n.includes('geoedit-tmp'));
    c.kill(sig);
    c.kill('SIGCONT');
  }
  const [code, signal] = await done;
  return { code, signal, stdout, stderr, sawTemp };
}

const hidden = (root: string) => fs.readdirSync(root).filter((n) => n.startsWith('.'));

describe('hostile: nothing is left behind (class 4)', () => {
  it.each(['SIGHUP', 'SIGQUIT', 'SIGINT', 'SIGTERM'] as const)('%s in the data phase: nothing at the target, no temp, no lock; ends by the signal', async (sig) => {
    const s = await checkpointTriple(`h4-${sig}`);
    const out = path.join(s.root, 'out');
    const r = await child('stop', s, out, sig);
    expect(r.stdout).toContain('phase: data');
    expect(r.sawTemp).toBe(true);
    expect(r.stdout).not.toContain('committed');
    expect(r.signal).toBe(sig);
    expect(fs.existsSync(out)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
  });

  it.each(['exit', 'throw'])('%s from onProgress mid-job: nothing at the target, no temp, no lock', async (mode) => {
    const s = await checkpointTriple(`h4-${mode}`);
    const out = path.join(s.root, 'out');
    const r = await child(mode, s, out);
    expect(r.stdout).toContain('phase: data');
    expect(r.code).not.toBe(0);
    expect(fs.existsSync(out)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
  });

  it('a job killed by SIGKILL leaves its temp and lock; the next run on that target removes them and says so', async () => {
    const s = await checkpointTriple('h4-kill');
    const out = path.join(s.root, 'out');
    const r = await child('stop', s, out, 'SIGKILL');
    expect(r.signal).toBe('SIGKILL');
    const left = hidden(s.root);
    expect(left.some((n) => n.includes('geoedit-tmp'))).toBe(true);
    expect(left).toContain(path.basename(lockPathFor(out)));
    const again = await run(runEdit, ['--base', s.base, '--old', s.old, '--new', s.new, '--out', out]);
    expect(again.code).toBe(0);
    expect(again.err).toMatch(/removed .*geoedit-tmp.*no longer running/);
    expect(again.err).toContain('stale lock');
    expect(hidden(s.root)).toEqual([]);
    expect(fs.existsSync(path.join(out, 'geoedit-manifest.json'))).toBe(true);
  });
});
