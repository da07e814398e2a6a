// Checks on what a job will write, before any work: no file the job writes (output directory,
// temporary directory, manifest, report) may be, contain, or lie inside an input, compared by real
// path AND by device + inode (symlinks, hard links, bind mounts); the output does not exist unless
// `force`, and `force` replaces only a previous geoedit output (a directory holding a geoedit
// manifest) or a single regular file; the parent exists; the names fit (temporary suffix).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GeoEditError, describe, typeError } from '../errors';
import { MANIFEST_FILE } from './manifest';
import { TEMP_SUFFIX_MAX } from './cleanup';

/** An input as the target checks see it: its path, its directory, and its files. */
export interface InputFiles {
  path: string;
  dir: string;
  files: string[];
}

export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

export function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}

/** The real path of p; for a path that does not exist (yet), its real parent + its name. */
export function realPath(p: string): string {
  try { return fs.realpathSync(p); } catch { /* not there */ }
  const parent = path.dirname(p);
  if (parent === p) return p;
  return path.join(realPath(parent), path.basename(p));
}

interface Protected { given: string; real: string; st: fs.Stats | null; dir: boolean }

/** Every input path a job must not write: files, index, and input directories (directory/sharded checkpoints, adapters). */
function protectedPaths(inputs: InputFiles[]): Protected[] {
  const out: Protected[] = [];
  const seen = new Set<string>();
  const add = (p: string, dir: boolean) => {
    const abs = path.resolve(p);
    if (seen.has(abs)) return;
    seen.add(abs);
    out.push({ given: abs, real: realPath(abs), st: statOrNull(abs), dir });
  };
  for (const c of inputs) {
    for (const f of c.files) add(f, false);
    const st = statOrNull(c.path);
    if (st?.isDirectory()) add(c.path, true);
    else {
      add(c.path, false);
      if (c.path.endsWith('.index.json')) add(c.dir, true);
    }
  }
  return out;
}

function sameFile(a: fs.Stats | null, b: fs.Stats | null): boolean {
  return !!a && !!b && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Refuses a path the job writes (`role`: 'output directory', 'report', …) that is, holds or lies
 * inside an input: ERR_OUTPUT_IS_INPUT naming both paths.
 */
export function checkNotInput(target: string, role: string, inputs: InputFiles[], option: string): void {
  const abs = path.resolve(target);
  const real = realPath(abs);
  const st = statOrNull(abs);
  for (const p of protectedPaths(inputs)) {
    let why: string | null = null;
    if (abs === p.given || real === p.real || sameFile(st, p.st)) why = 'is';
    else if (isInside(abs, p.given) || isInside(real, p.real)) why = 'holds';
    else if (p.dir && (isInside(p.given, abs) || isInside(p.real, real))) why = 'lies inside';
    if (why) {
      throw new GeoEditError('ERR_OUTPUT_IS_INPUT',
        `the ${role} ${abs}${real !== abs ? ` (${real})` : ''} ${why} the input ${p.given}${p.real !== p.given ? ` (${p.real})` : ''}; inputs are never written: choose another path`,
        { option, file: abs });
    }
  }
}

/** Why `--force` may not replace what is at abs (null: it may: a geoedit output directory or a regular file). */
export function forceRefusal(abs: string, previous?: { is: (dir: string) => boolean; what: string }): string | null {
  const lst = lstatOrNull(abs);
  if (!lst) return null;
  const real = realPath(abs);
  const home = realPath(os.homedir());
  const cwd = realPath(process.cwd());
  if (lst.isSymbolicLink()) return 'it is a symbolic link (replace its target explicitly)';
  if (lst.isFile()) return null;
  if (!lst.isDirectory()) return 'it is not a regular file or directory';
  if (real === path.parse(real).root) return 'it is the root directory';
  if (real === home || isInside(real, home)) return 'it is (or holds) the home directory';
  if (real === cwd || isInside(real, cwd)) return 'it is (or holds) the current directory';
  if (previous) return previous.is(abs) ? null : `it is not ${previous.what}`;
  if (!lstatOrNull(path.join(abs, MANIFEST_FILE))?.isFile()) return `it is not a previous geoedit output (no ${MANIFEST_FILE} inside)`;
  return null;
}

/** Refuses an existing target that --force may not replace (ERR_OUTPUT_EXISTS with the reason). */
export function checkForceable(abs: string): void {
  const why = forceRefusal(abs);
  if (why) throw new GeoEditError('ERR_OUTPUT_EXISTS', `the output ${abs} already exists and --force (force: true) will not replace it: ${why}`, { file: abs });
}

/** Resolves and checks the output directory of a job; returns its absolute path. */
export function checkOutputTarget(out: unknown, inputs: InputFiles[], force: boolean, what: string): string {
  if (typeof out !== 'string' || out.length === 0) throw typeError(`Expected an output directory 'out' for ${what} but received ${describe(out)}`);
  const abs = path.resolve(out);
  checkNotInput(abs, 'output', inputs, 'out');
  const lst = lstatOrNull(abs);
  if (lst?.isSymbolicLink() && !statOrNull(abs)) {
    throw new GeoEditError('ERR_OUTPUT_EXISTS', `the output ${abs} is a dangling symbolic link (to ${fs.readlinkSync(abs)}); remove it or choose another path`, { file: abs });
  }
  if (lst && !force) {
    throw new GeoEditError('ERR_OUTPUT_EXISTS', `the output ${abs} already exists; pass --force (force: true) to replace it`, { file: abs });
  }
  if (lst) checkForceable(abs);
  if (!statOrNull(path.dirname(abs))?.isDirectory()) {
    throw new GeoEditError('ERR_NOT_FOUND', `the parent directory of the output (${path.dirname(abs)}) does not exist`, { file: abs });
  }
  checkNameFits(abs, 'out');
  return abs;
}

/** The temporary directory and lock beside a target need a few dozen more bytes than its name. */
function checkNameFits(abs: string, option: string): void {
  const n = Buffer.byteLength(path.basename(abs));
  if (n + TEMP_SUFFIX_MAX > 255) {
    throw new GeoEditError('ERR_INVALID_OPTION', `the name of ${abs} is ${n} bytes: too long for the temporary directory beside it (at most ${255 - TEMP_SUFFIX_MAX} bytes)`, { option, file: abs });
  }
}

/**
 * Resolves and checks the report path: not (and not inside) an input, not the output directory nor
 * inside it (the commit replaces that directory: the report would be lost), not something that is
 * not a file (a directory there would fail the rename after all the work), in an existing directory.
 */
export function checkReportTarget(report: string, inputs: InputFiles[] | Set<string>, out: string | null = null): string {
  const rep = path.resolve(report);
  const list: InputFiles[] = inputs instanceof Set ? [...inputs].map((f) => ({ path: f, dir: path.dirname(f), files: [f] })) : inputs;
  checkNotInput(rep, 'report', list, 'report');
  // geoedit's own names beside a target (temporary directories and files, locks): a report there
  // would be renamed over a live job's lock or swept as a dead process's leftover.
  if (/\.geoedit-(tmp-|lock$)/.test(path.basename(rep))) {
    throw new GeoEditError('ERR_INVALID_OPTION', `the report ${rep} has the name of a geoedit temporary file or lock: choose another name`, { option: 'report', file: rep });
  }
  if (out !== null) {
    const o = path.resolve(out), ro = realPath(o), rr = realPath(rep);
    if (rep === o || rr === ro || isInside(o, rep) || isInside(ro, rr)) {
      throw new GeoEditError('ERR_INVALID_OPTION', `the report ${rep} is or lies inside the output ${o}, which the commit replaces as a whole: write the report beside the output`, { option: 'report', file: rep });
    }
  }
  const lst = lstatOrNull(rep);
  if (lst && !lst.isFile() && !lst.isSymbolicLink()) {
    throw new GeoEditError('ERR_OUTPUT_EXISTS', `the report ${rep} exists and is not a regular file; it is left as it is: choose another path`, { file: rep });
  }
  if (!statOrNull(path.dirname(rep))?.isDirectory()) throw new GeoEditError('ERR_NOT_FOUND', `the parent directory of the report (${path.dirname(rep)}) does not exist`, { file: rep });
  return rep;
}
