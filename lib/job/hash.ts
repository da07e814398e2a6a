// SHA-256 of input and output files: streaming (bounded memory), abortable.
// Input files of a job (hashInputs): on native threads, several files at once and beside the data
// pass, with the platform's OpenSSL (native hashFiles, core/hash.cc); and a cache of input hashes
// keyed as git's index keys its entries (device, inode, size, modification time), so that a
// repeated edit of the same inputs (a sweep, a rollout) re-hashes nothing. The manifest says which
// hashes came from the cache.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { GeoEditError } from '../errors';
import { readEnv } from '../env';
import { native } from '../native';

const CHUNK = 4 << 20;

function readAt(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

/**
 * SHA-256 of a file (the node:crypto path of hashInputs), in 4 MiB positional reads off the event
 * loop. `at`: read through this open descriptor (the very file a job validated, even if its name was
 * replaced since) the first `size` bytes, as the native hash does (a shorter file is ERR_IO); the
 * descriptor is the caller's and stays open (positional reads only: nothing moves or closes it).
 * Without it the file is opened here (and closed) and read to its end. An abort of `signal` throws
 * ERR_ABORTED: a digest of part of the file is never returned (it would be recorded, and cached, as
 * the file's hash).
 */
export async function sha256File(file: string, signal?: AbortSignal, at?: { fd: number; size: number }): Promise<string> {
  const h = crypto.createHash('sha256');
  const fd = at ? at.fd : fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (let pos = 0; !at || pos < at.size;) {
      if (signal?.aborted) throw new GeoEditError('ERR_ABORTED', `hashing ${file} was aborted`, { file });
      const n = await readAt(fd, buf, at ? Math.min(CHUNK, at.size - pos) : CHUNK, pos);
      if (n === 0) {
        if (at) throw new GeoEditError('ERR_IO', `${file}: short read while hashing (${pos} of ${at.size} bytes): the file shrank`, { file });
        break;
      }
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    if (!at) fs.closeSync(fd);
  }
  if (signal?.aborted) throw new GeoEditError('ERR_ABORTED', `hashing ${file} was aborted`, { file });
  return h.digest('hex');
}

// ---- input hashes: native, parallel, cached ------------------------------------------------------

/** Where an input's hash came from: the cache (not read) or computed now. */
export type HashSource = 'cache' | 'computed';

export interface InputHashes {
  /** path → { sha256, source } for every input file. */
  hashes: Map<string, { sha256: string; source: HashSource }>;
  /** Bytes read and hashed now (0 when every hash came from the cache). */
  bytesHashed: number;
  /** 'OpenSSL 3.0.x …' (native, parallel) or 'node:crypto' (the fallback: one file at a time). */
  provider: string;
  /** The cache file used, or null (GEOEDIT_HASH_CACHE=off). */
  cacheFile: string | null;
}

interface CacheEntry { size: string; mtimeNs: string; sha256: string; path: string; usedAt: number }
interface CacheFile { version: 1; entries: Record<string, CacheEntry> }
const CACHE_MAX_ENTRIES = 20000;
// A file modified less than this before its hash was taken may change again within its file
// system's timestamp granularity without its mtime changing (git's "racily clean" entries): such
// a hash is used for this job but not cached.
const RACY_MS = 2000;

/** The hash cache's file: $GEOEDIT_HASH_CACHE (`off`/`0`: no cache), else <cache dir>/sha256-cache.json. */
export function hashCacheFile(): string | null {
  const v = readEnv('GEOEDIT_HASH_CACHE');
  if (v !== undefined && ['off', '0', 'false', 'none'].includes(v.toLowerCase())) return null;
  if (v !== undefined) return path.resolve(v);
  const dir = readEnv('GEOEDIT_CACHE_DIR') ?? path.join(readEnv('XDG_CACHE_HOME') ?? path.join(os.homedir(), '.cache'), 'geoedit');
  return path.join(dir, 'sha256-cache.json');
}

function readCache(file: string | null): CacheFile {
  if (!file) return { version: 1, entries: {} };
  try {
    const c = JSON.parse(fs.readFileSync(file, 'utf8')) as CacheFile;
    if (c && c.version === 1 && c.entries && typeof c.entries === 'object') return c;
  } catch { /* absent or unreadable: an empty cache */ }
  return { version: 1, entries: {} };
}

// Merges `add` into the file as it is now (another process may have written meanwhile) and
// replaces it atomically; the oldest-used entries go past CACHE_MAX_ENTRIES. Best effort: a cache
// that cannot be written only costs a re-hash next time.
function writeCache(file: string | null, add: Record<string, CacheEntry>): void {
  if (!file || Object.keys(add).length === 0) return;
  try {
    const c = readCache(file);
    Object.assign(c.entries, add);
    const keys = Object.keys(c.entries);
    if (keys.length > CACHE_MAX_ENTRIES) {
      keys.sort((a, b) => c.entries[a]!.usedAt - c.entries[b]!.usedAt);
      for (const k of keys.slice(0, keys.length - CACHE_MAX_ENTRIES)) delete c.entries[k];
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(c));
    fs.renameSync(tmp, file);
  } catch { /* best effort */ }
}

const keyOf = (st: fs.BigIntStats) => `${st.dev}:${st.ino}`;

/**
 * SHA-256 of every input file, for the manifest: from the cache where device, inode, size and
 * modification time match, else computed (natively, all files at once, while the caller's data pass
 * runs). Stops with the signal (the native hash checks it every MiB). `fds`: files already open
 * (path → fd), hashed through that descriptor (the very file the job reads, even if its name was
 * replaced meanwhile) and left open; `stats`: their fstat from when they were opened (OpenInputs:
 * not taken again).
 */
export async function hashInputs(files: readonly string[], signal?: AbortSignal, fds?: ReadonlyMap<string, number>, stats?: ReadonlyMap<string, fs.BigIntStats>): Promise<InputHashes> {
  const cacheFile = hashCacheFile();
  const cache = readCache(cacheFile);
  const started = Date.now();
  const hashes = new Map<string, { sha256: string; source: HashSource }>();
  const misses: Array<{ file: string; st: fs.BigIntStats }> = [];
  const used: Record<string, CacheEntry> = {};
  for (const file of new Set(files)) {
    const given = fds?.get(file);
    const st = given === undefined ? fs.statSync(file, { bigint: true }) : stats?.get(file) ?? fs.fstatSync(given, { bigint: true });
    const e = cache.entries[keyOf(st)];
    if (e && e.size === String(st.size) && e.mtimeNs === String(st.mtimeNs)) {
      hashes.set(file, { sha256: e.sha256, source: 'cache' });
      used[keyOf(st)] = { ...e, path: file, usedAt: started };
    } else {
      misses.push({ file, st });
    }
  }
  let provider = 'cache';
  let bytesHashed = 0;
  if (misses.length) {
    const info = native.sha256Info();
    let digests: string[];
    if (info.available) {
      provider = info.provider;
      const own = misses.map((m) => fds?.get(m.file) === undefined);
      const open = misses.map((m, i) => (own[i] ? fs.openSync(m.file, 'r') : fds!.get(m.file)!));
      const ctl = new Float64Array(2);
      const onAbort = () => { ctl[1] = 1; };
      signal?.addEventListener('abort', onAbort);
      try {
        const r = await native.hashFiles({ files: misses.map((m, i) => ({ fd: open[i]!, size: Number(m.st.size), file: m.file })), threads: 0, ctl });
        digests = r.sha256;
      } finally {
        signal?.removeEventListener('abort', onAbort);
        open.forEach((fd, i) => { if (own[i]) fs.closeSync(fd); });
      }
    } else {
      provider = 'node:crypto';
      digests = [];
      // Through the caller's descriptor where there is one (never by name: the name may now be another file's).
      for (const m of misses) {
        const fd = fds?.get(m.file);
        digests.push(await sha256File(m.file, signal, fd === undefined ? undefined : { fd, size: Number(m.st.size) }));
      }
    }
    misses.forEach((m, i) => {
      hashes.set(m.file, { sha256: digests[i]!, source: 'computed' });
      bytesHashed += Number(m.st.size);
      // A hash of a file that changed after its stat is not cached (nor one of a file modified
      // just before: see RACY_MS).
      const fd = fds?.get(m.file);
      const now = fd === undefined ? fs.statSync(m.file, { bigint: true }) : fs.fstatSync(fd, { bigint: true });
      const fresh = now.size === m.st.size && now.mtimeNs === m.st.mtimeNs;
      if (fresh && Number(m.st.mtimeNs / 1000000n) <= started - RACY_MS) {
        used[keyOf(m.st)] = { size: String(m.st.size), mtimeNs: String(m.st.mtimeNs), sha256: digests[i]!, path: m.file, usedAt: started };
      }
    });
  }
  writeCache(cacheFile, used);
  return { hashes, bytesHashed, provider, cacheFile };
}
