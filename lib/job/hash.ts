// SHA-256 of input and output files: streaming (bounded memory), abortable.
import * as fs from 'node:fs';
import * as crypto from 'node:crypto';

/** SHA-256 of a file, read in 4 MiB chunks off the event loop; stops early when `signal` aborts. */
export async function sha256File(file: string, signal?: AbortSignal): Promise<string> {
  const h = crypto.createHash('sha256');
  const s = fs.createReadStream(file, { highWaterMark: 4 << 20 });
  for await (const chunk of s) {
    if (signal?.aborted) { s.destroy(); break; }
    h.update(chunk as Buffer);
  }
  return h.digest('hex');
}

/** SHA-256 of several files, one at a time (one core at most), as path → hex. */
export async function sha256Files(files: Iterable<string>, signal?: AbortSignal): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const f of files) m.set(f, await sha256File(f, signal));
  return m;
}

/** SHA-256 and size of a (small) file, synchronously. */
export function sha256FileSync(p: string): { sha256: string; bytes: number } {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(p, 'r');
  const buf = Buffer.alloc(1 << 20);
  let bytes = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      bytes += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { sha256: h.digest('hex'), bytes };
}
