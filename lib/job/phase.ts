// The phases of a job, as the signal tests see them. Every job passes these markers in this order
// (a job skips the ones it has not): validation → hashing → data → side-files → seal → report →
// commit. With GEOEDIT_TEST_STOP_AT unset (always, outside the tests) a marker costs one lookup.
// With it set, each marker is written to stderr as `geoedit-test: phase NAME`, and the process
// stops itself (SIGSTOP) at the one named: a test then sends a signal and SIGCONT, so that the
// signal surely lands in that phase however fast the machine is (test/hostile/signals.test.ts).
import { readEnv } from '../env';

export const JOB_PHASES = ['validation', 'hashing', 'data', 'side-files', 'seal', 'report', 'commit'] as const;
export type JobPhase = (typeof JOB_PHASES)[number];

/** Marks the start of a phase (see the file comment). */
export function markPhase(phase: JobPhase): void {
  const at = readEnv('GEOEDIT_TEST_STOP_AT');
  if (at === undefined) return;
  process.stderr.write(`geoedit-test: phase ${phase}\n`);
  if (at === phase) process.kill(process.pid, 'SIGSTOP');
}

/**
 * Two turns of the event loop, so that a signal already received (its byte waiting in libuv's
 * signal pipe) is dispatched to the cleanup handlers now. A chain of resolved promises alone never
 * reaches the poll phase: without this, a signal that arrived mid-job could lose the race against
 * the commit that follows the last asynchronous step.
 */
export async function letSignalsIn(): Promise<void> {
  await new Promise<void>((r) => setImmediate(r));
  await new Promise<void>((r) => setImmediate(r));
}
