// Hashing of output files for lineage: THE one way seal (hashOutputFiles) and verify read them.
// Native and parallel (lib/native hashFiles: OpenSSL on native threads, 1 MiB preads per thread)
// when sha256Info() says available, else node:crypto streaming on the JS thread, one file at a
// time. Never the (dev, ino, size, mtime) input-hash cache of lib/job/hash.ts: these hashes exist
// to catch changed bytes, so the bytes are always read. Read-only.
import * as fs from 'node:fs';
import * as crypto from 'node:crypto';
import { native } from '../native';

/** SHA-256 and size of one file. */
export interface FileHash { sha256: string; size: number }

/** node:crypto fallback: streams a file through SHA-256 on the JS thread (1 MiB reads: bounded memory). */
export async function sha256FileStream(file: string, ctl?: Float64Array): Promise<FileHash> {
  const h = crypto.createHash('sha256');
  let size = 0;
  const s = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  for await (const chunk of s) {
    if (ctl && ctl[1] !== 0) { s.destroy(); break; }
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}

// Open descriptors per native call (an output dir has a handful of shards; this only bounds fds).
const NATIVE_BATCH = 64;

/**
 * Native path: SHA-256 of each file's bytes as they are now (size from fstat of the open fd), several
 * files at once on native threads (lib/native hashFiles: pread in 1 MiB pieces per thread: bounded
 * memory, read-only). No hash cache: seal and verify always read the bytes.
 */
export async function sha256FilesNative(files: readonly string[], ctl?: Float64Array): Promise<FileHash[]> {
  const out: FileHash[] = [];
  for (let b = 0; b < files.length; b += NATIVE_BATCH) {
    const part = files.slice(b, b + NATIVE_BATCH);
    const fds: number[] = [];
    try {
      for (const f of part) fds.push(fs.openSync(f, 'r'));
      const sizes = fds.map((fd) => fs.fstatSync(fd).size);
      const r = await native.hashFiles({ files: part.map((f, i) => ({ fd: fds[i]!, size: sizes[i]!, file: f })), threads: 0, ...(ctl ? { ctl } : {}) });
      part.forEach((_, i) => out.push({ sha256: r.sha256[i]!, size: sizes[i]! }));
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }
  return out;
}

/** Which path output hashing takes here: the native OpenSSL provider, or 'node:crypto' when sha256Info() says unavailable. */
export function outputHashProvider(): string {
  const info = nativeInfo();
  return info.available ? info.provider : 'node:crypto';
}

// sha256Info(), or unavailable when the addon itself cannot load here (a TS-only checkout: the
// node:crypto path then seals and verifies the same bytes).
function nativeInfo(): { available: boolean; provider: string } {
  try {
    return native.sha256Info();
  } catch {
    return { available: false, provider: 'node:crypto' };
  }
}

/**
 * SHA-256 and size of every file, in order: THE hashing of output files (seal and verify both use
 * it). Native and parallel when sha256Info() says available, else node:crypto one file at a time.
 * `ctl`: a job's control block ([1] non-zero: stop; the caller then discards the result and throws).
 */
export async function sha256Files(files: readonly string[], ctl?: Float64Array): Promise<FileHash[]> {
  if (nativeInfo().available) return sha256FilesNative(files, ctl);
  const out: FileHash[] = [];
  for (const f of files) out.push(await sha256FileStream(f, ctl));
  return out;
}

/** SHA-256 and size of one file (the same path as sha256Files). */
export async function sha256File(file: string): Promise<FileHash> {
  return (await sha256Files([file]))[0]!;
}
