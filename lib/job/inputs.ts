// The input files a job reads, held open for the whole job: every path that reads inputs
// (checkpoint edits and analyses, adapter edits and analyses, merged adapters, the statistics file
// of preservation) opens each input once, checks that it is the file whose header was validated
// (device + inode), reads and hashes through that descriptor, and checks after the data pass that
// every path still names that file. An input replaced (renamed over) meanwhile is ERR_IO naming it:
// never an output edited from one file and recorded with the hash of another.
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';

/** A file's identity: device and inode (as `fs.Stats` gives them). */
export interface FileId { dev: number; ino: number }

export function fileIdOf(st: fs.Stats): FileId {
  return { dev: st.dev, ino: st.ino };
}

/**
 * Whether an open file's exact (bigint) identity is the validated `id`. `id` comes from a number
 * `fs.Stats`, whose inode is rounded above 2^53 (Lustre's FID-based inodes, overlayfs xino): compared
 * as that same rounding of the exact value, never by widening the rounded one (which would call every
 * such file replaced).
 */
export function matchesId(st: { dev: bigint; ino: bigint }, id: FileId): boolean {
  return Number(st.dev) === id.dev && Number(st.ino) === id.ino;
}

export function inputReplaced(file: string, when: string, what = 'the edit'): GeoEditError {
  return new GeoEditError('ERR_IO', `${file} was replaced ${when} (another file now has its name); nothing was written: run ${what} again on inputs that stay put`, { file });
}

export class OpenInputs {
  private readonly fds = new Map<string, number>();
  /** The fstat of each descriptor taken when it was opened (checked against the validated identity): the job's one look at
   *  the open file's identity, size and mtime (hashInputs keys its cache by it; checkNotReplaced compares paths against it). */
  private readonly st = new Map<string, fs.BigIntStats>();

  /** `what` names the job in the messages ('the edit', 'the adapter edit'…). */
  constructor(private readonly what = 'the edit') {}

  /** Opens `file` (once: a second call returns the same descriptor), checked against `id` when given (the file validated). */
  open(file: string, id?: FileId): number {
    let fd = this.fds.get(file);
    if (fd !== undefined) return fd;
    fd = fs.openSync(file, 'r');
    this.fds.set(file, fd);
    const st = fs.fstatSync(fd, { bigint: true });
    this.st.set(file, st);
    if (id && !matchesId(st, id)) throw inputReplaced(file, 'since its header was validated', this.what);
    return fd;
  }

  /** path -> descriptor (for hashInputs and the native streams). */
  get map(): Map<string, number> {
    return this.fds;
  }

  /** path -> the descriptor's fstat when it was opened (for hashInputs). */
  get stats(): ReadonlyMap<string, fs.BigIntStats> {
    return this.st;
  }

  get(file: string): number | undefined {
    return this.fds.get(file);
  }

  /** The open file's size when it was opened. */
  size(file: string): number {
    return Number(this.st.get(file)!.size);
  }

  /** After the data pass: every path still names the file that was read (the manifest's hashes are of those files). */
  checkNotReplaced(): void {
    for (const f of this.fds.keys()) {
      const a = this.st.get(f)!;
      let b: fs.BigIntStats | undefined;
      try { b = fs.statSync(f, { bigint: true, throwIfNoEntry: false }); } catch { b = undefined; }
      // both exact (bigint): the inode as the kernel gives it, whatever its size
      if (!b || b.dev !== a.dev || b.ino !== a.ino) throw inputReplaced(f, `during ${this.what}`, this.what);
    }
  }

  close(): void {
    for (const fd of this.fds.values()) { try { fs.closeSync(fd); } catch { /* closed */ } }
    this.fds.clear();
    this.st.clear();
  }
}
