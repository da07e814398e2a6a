// One lock file per target, beside it: `.<name>.geoedit-lock`, created with O_EXCL, holding the pid
// and the start time of the process that holds it (so a later run can tell a live holder from a
// dead one, even after the pid was reused). Held for the whole job; a second job on the same
// target fails with ERR_TARGET_BUSY; a lock whose holder is gone is removed, saying so on stderr.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GeoEditError } from '../errors';
import { safeText } from '../text';

/** The process's start time (clock ticks since boot, /proc/<pid>/stat field 22), or null where there is no /proc. */
export function processStart(pid: number): string | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

const SELF_START = processStart(process.pid);

/** This process's identity as written into lock files and temporary names: pid and start time. */
export function selfId(): { pid: number; start: string | null } {
  return { pid: process.pid, start: SELF_START };
}

/** Whether the process pid (started at `start`, when known) is still running. */
export function processAlive(pid: number, start: string | null): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (start !== null) {
    const now = processStart(pid);
    if (now !== null && now !== start) return false;
  }
  return true;
}

export function lockPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.geoedit-lock`);
}

interface Holder { pid: number; start: string | null; host?: string; createdAt?: string }

function readHolder(lock: string): Holder | null {
  try {
    const j = JSON.parse(fs.readFileSync(lock, 'utf8')) as Holder;
    return typeof j.pid === 'number' ? j : null;
  } catch {
    return null;
  }
}

/** Takes the lock of `target` (absolute); returns the synchronous release. */
export function acquireTargetLock(target: string): () => void {
  const lock = lockPathFor(target);
  const me: Holder = { ...selfId(), host: os.hostname(), createdAt: new Date().toISOString() };
  const body = JSON.stringify(me);
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = fs.openSync(lock, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | (fs.constants.O_NOFOLLOW ?? 0), 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw lockError(lock, target, e as Error);
      const h = readHolder(lock);
      let age = Infinity;
      try { age = Date.now() - fs.lstatSync(lock).mtimeMs; } catch { /* gone */ }
      // A lock being written right now (no JSON yet) counts as held for a few seconds.
      const live = h ? (h.host === undefined || h.host === os.hostname()) && processAlive(h.pid, h.start) : age < 5000;
      if (live) {
        throw new GeoEditError('ERR_TARGET_BUSY', `another geoedit job${h ? ` (pid ${h.pid})` : ''} is writing ${target} (lock ${lock}); wait for it to finish, or remove the lock if that process is gone`, { file: target });
      }
      process.stderr.write(`geoedit: removing the stale lock ${safeText(lock)}${h ? ` of process ${h.pid}, which is no longer running` : ''}\n`);
      try { fs.unlinkSync(lock); } catch { /* raced: retried below */ }
      continue;
    }
    try { fs.writeSync(fd, body); } finally { fs.closeSync(fd); }
    return () => {
      try {
        if (readHolder(lock)?.pid === me.pid) fs.unlinkSync(lock);
      } catch { /* gone */ }
    };
  }
}

function lockError(lock: string, target: string, e: Error): GeoEditError {
  return new GeoEditError('ERR_TARGET_BUSY', `cannot take the lock ${lock} for ${target}: ${e.message}`, { file: target });
}
