// Temporary paths beside a target and their cleanup. Every live job registers a synchronous
// cleanup here; one set of process handlers runs them all on a signal (then re-raises it, so the
// process ends as it would have) and on exit. Hardening rules slot in here: more signals
// (CLEANUP_SIGNALS), recognisable names of dead processes' temp dirs (tempPathBeside).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';

/** Bytes a temporary directory or lock name adds to the target's name (checked up front). */
export const TEMP_SUFFIX_MAX = 64;

export const CLEANUP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/** A temporary path beside `target` (same directory, so the rename into place is atomic). */
export function tempPathBeside(target: string): string {
  const dir = path.dirname(path.resolve(target));
  return path.join(dir, `.${path.basename(target)}.geoedit-tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

/** Removes a file or directory, ignoring errors (best effort, synchronous). */
export function removeQuietly(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}

type Cleanup = () => void;
const live = new Set<Cleanup>();

function runAll(): void {
  for (const c of [...live]) {
    live.delete(c);
    try { c(); } catch { /* best effort */ }
  }
}

function onSignal(sig: NodeJS.Signals): void {
  runAll();
  uninstall();
  process.kill(process.pid, sig);
}

function install(): void {
  for (const s of CLEANUP_SIGNALS) process.on(s, onSignal);
  process.on('exit', runAll);
}

function uninstall(): void {
  for (const s of CLEANUP_SIGNALS) process.removeListener(s, onSignal);
  process.removeListener('exit', runAll);
}

/** Registers a synchronous cleanup until the returned function is called. Install before creating what it removes. */
export function onCleanup(c: Cleanup): () => void {
  if (live.size === 0) install();
  live.add(c);
  return () => {
    live.delete(c);
    if (live.size === 0) uninstall();
  };
}

/**
 * Runs work(tmp) in a fresh temporary directory beside `target`. On an error, a signal or exit the
 * directory is removed (a signal is then re-raised); on success it is left to the caller (who has
 * moved or removed what it holds). For jobs that commit by themselves (governance's rollout).
 */
export async function inTempDir<T>(target: string, work: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = tempPathBeside(target);
  const release = onCleanup(() => removeQuietly(tmp));
  try {
    fs.mkdirSync(tmp, { recursive: false });
    return await work(tmp);
  } catch (e) {
    removeQuietly(tmp);
    throw e;
  } finally {
    release();
  }
}
