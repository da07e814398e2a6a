// Atomic, durable writes of one file (the HTML reports: a job's, `geoedit report`'s, writeReport's):
// a temporary file beside the target (same directory: the rename is atomic), written and fsync'ed,
// renamed over the target, the directory fsync'ed; on an error, a signal or exit before the rename
// the temporary file is removed and the target is as it was.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onCleanup, removeQuietly, tempPathBeside } from './cleanup';

/** fsync of one file or directory (durability: a rename must not land before the data). */
export function syncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

/**
 * writeFileAtomic, synchronously (for callers that hold no event-loop turn between the steps, so no
 * signal handler can run in between): temp beside `file` written and fsync'ed, renamed over `file`, the
 * directory fsync'ed; the temp removed on an error.
 */
export function writeFileAtomicSync(file: string, data: string | Uint8Array): void {
  const tmp = tempPathBeside(file);
  try {
    const fd = fs.openSync(tmp, 'wx');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    removeQuietly(tmp);
    throw e;
  }
  try { syncPath(path.dirname(file)); } catch { /* the rename is done; the directory's fsync is best effort */ }
}

/**
 * Writes `data` into the new file `tmp`, then fsyncs it (the write and the fsync on the thread
 * pool). Created synchronously ('wx'): a signal's cleanup (synchronous) then always finds the file
 * it removes, where an asynchronous open still in flight could create it after the cleanup ran.
 * The caller removes `tmp` on a failure (writeFileAtomic does; a job's cleanup does for its report).
 */
export async function writeDurable(tmp: string, data: string | Uint8Array): Promise<void> {
  const fd = fs.openSync(tmp, 'wx');
  try {
    await new Promise<void>((resolve, reject) => fs.writeFile(fd, data, (e) => (e ? reject(e) : resolve())));
    await new Promise<void>((resolve, reject) => fs.fsync(fd, (e) => (e ? reject(e) : resolve())));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replaces `file` with `data`, atomically and durably: a temporary file beside it (tempPathBeside),
 * written and fsync'ed (writeDurable), renamed over `file`, then its directory fsync'ed (best effort:
 * the rename is done). Until the rename, an error, a signal or exit removes the temporary file
 * (lib/job/cleanup.ts) and leaves `file` as it was. Errors are thrown as they come (callers wrap them).
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPathBeside(file);
  const release = onCleanup(() => removeQuietly(tmp));
  try {
    await writeDurable(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    removeQuietly(tmp);
    throw e;
  } finally {
    release();
  }
  try { syncPath(path.dirname(path.resolve(file))); } catch { /* renamed: the directory's fsync is best effort */ }
}
