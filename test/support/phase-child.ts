// The CLI as a child process stopped at a phase marker of its job (lib/job/phase.ts,
// GEOEDIT_TEST_STOP_AT): the signal tests of test/hostile and test/e2e send their signal there, so
// it surely lands in that phase however fast or loaded the machine is (no polling, no time limit).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';

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
