// A lock file beside the file it guards (created with O_EXCL), so appends that must read the log
// first (the review hash chain, the manifest's evaluation log) never interleave. A lock whose
// holder died (pid gone) or that is older than staleMs is taken over.
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function stale(lock: string, staleMs: number): boolean {
  try {
    const st = fs.statSync(lock);
    const txt = fs.readFileSync(lock, 'utf8');
    const pid = Number(txt.split(' ')[0]);
    if (Number.isInteger(pid) && pid > 0 && !alive(pid)) return true;
    return Date.now() - st.mtimeMs > staleMs;
  } catch {
    return false; // gone already: the next try takes it
  }
}

/** Runs fn holding `${target}.lock`; ERR_LOCKED after timeoutMs. */
export async function withLock<T>(target: string, fn: () => Promise<T> | T, opts: { timeoutMs?: number; staleMs?: number } = {}): Promise<T> {
  const lock = `${target}.lock`;
  const timeoutMs = opts.timeoutMs ?? 30_000, staleMs = opts.staleMs ?? 120_000;
  const t0 = Date.now();
  let fd: number | null = null;
  for (;;) {
    try {
      fd = fs.openSync(lock, 'wx');
      fs.writeSync(fd, `${process.pid} ${new Date().toISOString()}\n`);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new GeoEditError('ERR_IO', `${lock}: cannot create the lock file (${(e as Error).message})`, { file: lock });
      if (stale(lock, staleMs)) {
        try { fs.unlinkSync(lock); } catch { /* someone else took it over */ }
        continue;
      }
      if (Date.now() - t0 > timeoutMs) {
        throw new GeoEditError('ERR_LOCKED', `${lock} has been held by another geoedit process for over ${Math.round(timeoutMs / 1000)} s; if none is running, remove it`, { file: lock });
      }
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 25));
    }
  }
  try {
    return await fn();
  } finally {
    try { fs.closeSync(fd); } catch { /* closed */ }
    try { fs.unlinkSync(lock); } catch { /* gone */ }
  }
}
