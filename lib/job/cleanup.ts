// Temporary paths beside a target and their cleanup. Every live job registers a synchronous
// cleanup here; one set of process handlers runs them all on a signal (then re-raises it, so the
// process ends as it would have) and on exit. Hardening rules slot in here: more signals
// (CLEANUP_SIGNALS), recognisable names of dead processes' temp dirs (tempPathBeside,
// sweepDeadTemps). SIGHUP (a dropped ssh session) and SIGQUIT are handled like SIGINT/SIGTERM: the
// process then ends by the re-raised signal (a shell reports 128 + n: 129, 130, 131, 143).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { processAlive, selfId } from './lock';
import { safeText } from '../text';

/** Bytes a temporary directory or lock name adds to the target's name (checked up front). */
export const TEMP_SUFFIX_MAX = 64;

export const CLEANUP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

const TMP_TAG = '.geoedit-tmp-';

/**
 * A temporary path beside `target` (same directory, so the rename into place is atomic):
 * `.<name>.geoedit-tmp-<pid>-<start time>-<random>`, so that a later run can tell whether the
 * process that made it is still running (sweepDeadTemps).
 */
export function tempPathBeside(target: string): string {
  const dir = path.dirname(path.resolve(target));
  const me = selfId();
  return path.join(dir, `.${path.basename(target)}${TMP_TAG}${me.pid}-${me.start ?? 'x'}-${crypto.randomBytes(4).toString('hex')}`);
}

/**
 * Removes the temporary paths beside `target` left by processes that are no longer running
 * (killed by SIGKILL, power loss, a terminated worker's process…), saying so on stderr. A
 * target moved aside by a --force commit that did not finish (`….old`) is put back when nothing
 * is at the target. Returns the names removed.
 */
export function sweepDeadTemps(target: string): string[] {
  const abs = path.resolve(target);
  const dir = path.dirname(abs);
  const prefix = `.${path.basename(abs)}${TMP_TAG}`;
  const removed: string[] = [];
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return removed; }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    // New names: pid-start-rand[.old]; older ones: pid-rand[.old] (pid only).
    const m = /^(\d+)-(?:(\d+|x)-)?[0-9a-f]{8}(\.old)?$/.exec(n.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[1]);
    const start = m[2] && m[2] !== 'x' ? m[2] : null;
    if (pid === process.pid || processAlive(pid, start)) continue;
    const p = path.join(dir, n);
    if (m[3] && !fs.existsSync(abs)) {
      try {
        fs.renameSync(p, abs);
        process.stderr.write(`geoedit: restored ${safeText(abs)} from ${safeText(n)}, left by process ${pid} (no longer running) in the middle of a --force replacement\n`);
        continue;
      } catch { /* removed below */ }
    }
    removeQuietly(p);
    removed.push(n);
    process.stderr.write(`geoedit: removed ${safeText(p)}, a temporary directory left by process ${pid} (no longer running)\n`);
  }
  return removed;
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
