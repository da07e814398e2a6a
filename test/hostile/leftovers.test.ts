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
import { checkpointTriple, hidden, run, waitForPhase } from './support';

const CHILD = path.join(__dirname, 'fixtures', 'job-child.cjs');

/** Runs the child job (a misbehaving onProgress: `exit`, `throw`). */
async function child(mode: string, s: { root: string; base: string; old: string; new: string }, out: string) {
  const c = spawn(process.execPath, [CHILD, mode, s.base, s.old, s.new, out], { cwd: s.root });
  let stdout = '';
  c.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => c.on('exit', (x, y) => resolve([x, y])));
  return { code, signal, stdout };
}

/** The child job, stopped at its data phase's marker (lib/job/phase.ts), then sent `sig`: waits on the marker, not on time. */
async function signalled(s: { root: string; base: string; old: string; new: string }, out: string, sig: NodeJS.Signals) {
  let sawTemp = false;
  const r = await waitForPhase(['run', s.base, s.old, s.new, out], 'data', sig, s.root, CHILD, () => {
    sawTemp = fs.readdirSync(s.root).some((n) => n.includes('geoedit-tmp'));
  });
  return { ...r, sawTemp };
}


describe('hostile: nothing is left behind (class 4)', () => {
  it.each(['SIGHUP', 'SIGQUIT', 'SIGINT', 'SIGTERM'] as const)('%s in the data phase: nothing at the target, no temp, no lock; ends by the signal', async (sig) => {
    const s = await checkpointTriple(`h4-${sig}`);
    const out = path.join(s.root, 'out');
    const r = await signalled(s, out, sig);
    expect(r.reached).toBe(true);
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
    const r = await signalled(s, out, 'SIGKILL');
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
