// The output-directory job every writer uses (checkpoint edits and analyses, adapter outputs,
// merged adapters): a temporary directory beside the target, removed on error, abort, signal or
// exit; output files opened and tracked there; the manifest finalised and written; the report
// written inside the job (a failed report fails the job: nothing at the target); then the commit.
//
//   runOutputJob(spec, async (job) => {
//     const fd = job.openOutput('model.safetensors');   // or job.path(name) for a file you write
//     … job.ctl is the cancel/progress array native streams share; job.checkAborted() between steps
//     return job.finish(manifest, reportView);            // manifest → report → commit
//   });
//
// Steps a hardening or governance change touches, one place each: target checks (target.ts),
// cleanup and signals (cleanup.ts), commit (commit below), manifest fields (finalizeManifest in
// manifest.ts), side files (side-files.ts), hashing (hash.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError } from '../errors';
import { writeReport } from '../report';
import { onCleanup, removeQuietly, sweepDeadTemps, tempPathBeside } from './cleanup';
import { acquireTargetLock } from './lock';
import { forceRefusal } from './target';
import { finalizeManifest, type CheckpointManifest, type ManifestKind } from './manifest';
import { copySideFiles, type SkippedSideFile } from './side-files';
import { sealManifest, type SealExtra, type SealInput } from '../governance/lineage';

export interface OutputJobSpec {
  kind: ManifestKind;
  /** The output directory (absolute, checked: checkOutputTarget); null: nothing is written but the report. */
  out: string | null;
  /** Replace an existing target. */
  force?: boolean;
  signal?: AbortSignal;
  /** The HTML report (absolute, checked: checkReportTarget), written inside the job before the commit. */
  report?: string;
  /** Names the job in the ERR_ABORTED message ('the checkpoint job'). */
  what: string;
  /** Input directories that may hold a parent manifest (lineage), in order of preference. */
  lineage?: SealInput[];
}

export class OutputJob {
  /** [bytes done, cancel (non-zero: stop), task index]: shared with native streams. */
  readonly ctl = new Float64Array(3);
  /** The temporary directory (null for a job without output). */
  tmp: string | null = null;
  private readonly fds = new Set<number>();
  private readonly written: string[] = [];
  /** Side files not copied (links, special files, other weight formats): listed in the manifest (`skippedFiles`) and its warnings. */
  private readonly skipped: SkippedSideFile[] = [];
  private release: (() => void) | null = null;
  private unlock: (() => void) | null = null;
  /** Whether something was at the target when the job began (only that may be replaced, and only with force). */
  private existedAtStart = false;
  private readonly onAbort = () => { this.ctl[1] = 1; };

  constructor(readonly spec: OutputJobSpec) {}

  /** Registers the cleanup, then creates the temporary directory (a signal just after the mkdir finds the handlers installed). */
  begin(): void {
    this.spec.signal?.addEventListener('abort', this.onAbort);
    this.release = onCleanup(() => { this.ctl[1] = 1; this.cleanup(); this.releaseLock(); });
    if (this.spec.out) {
      this.unlock = acquireTargetLock(this.spec.out);
      sweepDeadTemps(this.spec.out);
      this.existedAtStart = lstatOrNull(this.spec.out) !== null;
      this.tmp = tempPathBeside(this.spec.out);
      fs.mkdirSync(this.tmp);
    }
  }

  get aborted(): boolean {
    return this.spec.signal?.aborted === true || this.ctl[1] !== 0;
  }

  abortedError(): GeoEditError {
    return new GeoEditError('ERR_ABORTED', `${this.spec.what} was aborted; nothing was written at the target`);
  }

  checkAborted(): void {
    if (this.aborted) throw this.abortedError();
  }

  /** The path of an output file inside the temporary directory (recorded as written). */
  path(name: string): string {
    if (!this.tmp) throw new GeoEditError('ERR_INTERNAL', `${this.spec.what}: no output directory to write ${name} into`);
    this.written.push(name);
    return path.join(this.tmp, name);
  }

  /** The output files written so far (relative names, in order). */
  writtenFiles(): string[] {
    return [...new Set(this.written)];
  }

  /** Opens a new output file for writing (closed by closeOutput, or on cleanup). */
  openOutput(name: string): number {
    const fd = fs.openSync(this.path(name), 'wx');
    this.fds.add(fd);
    return fd;
  }

  closeOutput(fd: number): void {
    this.fds.delete(fd);
    fs.closeSync(fd);
  }

  /** The base directory's other files, into the output. */
  copySideFiles(dir: string, skip: Set<string>): void {
    if (!this.tmp) return;
    const r = copySideFiles(dir, this.tmp, skip);
    this.written.push(...r.copied);
    for (const x of r.skipped) process.stderr.write(`geoedit: not copied from ${dir}: ${x.name}: ${x.reason}\n`);
    this.skipped.push(...r.skipped);
  }

  /** Finalises and writes the manifest, writes the report, then commits. Resolves to the manifest. */
  async finish<M extends object>(m: M, reportView?: (m: M) => CheckpointManifest, seal?: Omit<SealExtra, 'warnings'>): Promise<M> {
    if (this.skipped.length) {
      Object.assign(m, { skippedFiles: [...this.skipped] });
      const w = (m as { warnings?: string[] }).warnings;
      for (const x of this.skipped) w?.push(`side file '${x.name}' not copied: ${x.reason}`);
    }
    const json = finalizeManifest(m, { out: this.spec.out, tmp: this.tmp, files: [...this.written] });
    if (this.tmp) {
      // Lineage (id, output hashes, parent) over the finished output; writes MANIFEST_FILE.
      const warnings = (m as { warnings?: string[] }).warnings;
      const sealed = await sealManifest(this.tmp, json, this.spec.lineage ?? [], { ...(warnings ? { warnings } : {}), ...seal });
      const { id, lineageVersion, outputFiles, parent, inputManifests } = sealed;
      Object.assign(m, { id, lineageVersion, outputFiles, parent, inputManifests });
    }
    if (this.spec.report) await writeReportFile(this.spec.report, reportView ? reportView(m) : (m as unknown as CheckpointManifest));
    this.checkAborted();
    if (this.tmp && this.spec.out) {
      commit(this.tmp, this.spec.out, this.spec.force === true, this.existedAtStart);
      this.tmp = null;
    }
    return m;
  }

  /** Closes what is open and removes the temporary directory (synchronous; safe to call twice). */
  cleanup(): void {
    for (const fd of this.fds) { try { fs.closeSync(fd); } catch { /* closed */ } }
    this.fds.clear();
    if (this.tmp) { removeQuietly(this.tmp); this.tmp = null; }
  }

  private releaseLock(): void {
    this.unlock?.();
    this.unlock = null;
  }

  end(): void {
    this.cleanup();
    this.releaseLock();
    this.release?.();
    this.release = null;
    this.spec.signal?.removeEventListener('abort', this.onAbort);
  }
}

/** Runs `work` as an output job: whole output at the target, or nothing (error, abort, signal, exit). */
export async function runOutputJob<T>(spec: OutputJobSpec, work: (job: OutputJob) => Promise<T>): Promise<T> {
  const job = new OutputJob(spec);
  if (spec.signal?.aborted) throw job.abortedError();
  try {
    job.begin();
    return await work(job);
  } catch (e) {
    if (job.aborted && !(e instanceof GeoEditError && e.code === 'ERR_ABORTED')) throw job.abortedError();
    throw e;
  } finally {
    job.end();
  }
}

function lstatOrNull(p: string): fs.Stats | null {
  try { return fs.lstatSync(p); } catch { return null; }
}

/**
 * Moves a finished temporary directory into place, under the target's lock (lock.ts): no other
 * geoedit job writes this target meanwhile. Nothing at the target: one rename (rename(2) of a
 * directory fails on anything there but an empty directory). Something there: replaced only with
 * `force`, only if it was there when the job began, and only if --force may replace it (a previous
 * geoedit output or a regular file, checked again now): moved aside, the new output renamed in,
 * the old one removed.
 */
function commit(tmp: string, out: string, force: boolean, existedAtStart: boolean): void {
  syncTree(tmp);
  const exists = (e: unknown) => new GeoEditError('ERR_OUTPUT_EXISTS', `${out} appeared during the job; it is left as it is and nothing was written (${(e as Error).message ?? e})`, { file: out });
  if (!lstatOrNull(out)) {
    try {
      fs.renameSync(tmp, out);
      syncPath(path.dirname(out));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') throw exists(e);
      throw e;
    }
    return;
  }
  if (!force) throw new GeoEditError('ERR_OUTPUT_EXISTS', `${out} appeared during the job; it is left as it is and nothing was written (pass --force to replace a previous output)`, { file: out });
  if (!existedAtStart) throw new GeoEditError('ERR_OUTPUT_EXISTS', `${out} appeared during the job; --force replaces only what was there when the job began, so it is left as it is and nothing was written`, { file: out });
  const why = forceRefusal(out);
  if (why) throw new GeoEditError('ERR_OUTPUT_EXISTS', `the output ${out} changed during the job and --force (force: true) will not replace it now: ${why}`, { file: out });
  const aside = `${tmp}.old`;
  fs.renameSync(out, aside);
  fs.renameSync(tmp, out);
  syncPath(path.dirname(out));
  removeQuietly(aside);
}

/** fsync of one file or directory (durability: the commit's rename must not land before the data). */
export function syncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

/** fsync of every file under dir, then of each directory (deepest first), before the rename into place. */
export function syncTree(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) syncTree(p);
    else if (e.isFile()) syncPath(p);
  }
  syncPath(dir);
}

async function writeReportFile(file: string, m: CheckpointManifest): Promise<void> {
  try {
    await writeReport(file, m);
    syncPath(file);
  } catch (e) {
    throw new GeoEditError('ERR_IO', `${file}: cannot write the report: ${(e as Error).message}`, { file });
  }
}
