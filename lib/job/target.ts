// Checks on what a job will write, before any work: the output directory is not (and holds no)
// input, it does not exist unless `force`, its parent exists; the report is not an input.
// Hardening rules on targets (device + inode comparison, what --force may replace) go here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError, describe, typeError } from '../errors';

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

function real(p: string): string {
  try { return fs.realpathSync(p); } catch { return p; }
}

/** Resolves and checks the output directory of a job; returns its absolute path. */
export function checkOutputTarget(out: unknown, inputs: InputFiles[], force: boolean, what: string): string {
  if (typeof out !== 'string' || out.length === 0) throw typeError(`Expected an output directory 'out' for ${what} but received ${describe(out)}`);
  const abs = path.resolve(out);
  // Compared through real paths too, so a symlink to an input directory is caught.
  const outReal = fs.existsSync(abs) ? real(abs) : path.join(real(path.dirname(abs)), path.basename(abs));
  for (const c of inputs) {
    const hits = (o: string, dir: string, files: string[]) => o === dir || files.some((f) => f === o || isInside(o, f));
    if (abs === c.path || hits(abs, c.dir, c.files) || hits(outReal, real(c.dir), c.files.map(real))) {
      throw new GeoEditError('ERR_INVALID_OPTION', `the output ${abs} is (or holds) an input (${c.path}); choose another output directory`, { option: 'out' });
    }
  }
  if (fs.existsSync(abs) && !force) {
    throw new GeoEditError('ERR_OUTPUT_EXISTS', `the output ${abs} already exists; pass --force (force: true) to replace it`, { file: abs });
  }
  if (!statOrNull(path.dirname(abs))?.isDirectory()) {
    throw new GeoEditError('ERR_NOT_FOUND', `the parent directory of the output (${path.dirname(abs)}) does not exist`, { file: abs });
  }
  return abs;
}

/** Resolves and checks the report path: not an input file, in an existing directory. */
export function checkReportTarget(report: string, inputFiles: Set<string>): string {
  const rep = path.resolve(report);
  if (inputFiles.has(rep)) throw new GeoEditError('ERR_INVALID_OPTION', `the report path ${rep} is an input file`, { option: 'report' });
  if (!statOrNull(path.dirname(rep))?.isDirectory()) throw new GeoEditError('ERR_NOT_FOUND', `the parent directory of the report (${path.dirname(rep)}) does not exist`, { file: rep });
  return rep;
}
