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
import { safeText } from '../text';
import { renderReport } from '../report';
import { onCleanup, removeQuietly, sweepDeadTemps, tempPathBeside } from './cleanup';
import { letSignalsIn, markPhase } from './phase';
import { acquireTargetLock } from './lock';
import { forceRefusal } from './target';
import { finalizeManifest, type CheckpointManifest, type ManifestKind } from './manifest';
import { copySideFiles, type HardLinkedSideFile, type SkippedSideFile } from './side-files';
import { sealManifest, type SealExtra, type SealInput } from '../governance/lineage';
import { syncPath, writeDurable } from './atomic';

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
  /** The report's temporary file beside it (written before the commit, renamed into place with it). */
  private reportTmp: string | null = null;
  private readonly fds = new Set<number>();
  private readonly written: string[] = [];
  /** Side files not copied (links, special files, other weight formats): listed in the manifest (`skippedFiles`) and its warnings. */
  private readonly skipped: SkippedSideFile[] = [];
  /** Side files copied that have more than one hard link: listed in the manifest (`hardLinkedFiles`) and said on stderr. */
  private readonly hardLinked: HardLinkedSideFile[] = [];
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
    // The report's temporaries left beside it by a dead process (SIGKILL mid-report) go too.
    if (this.spec.report) sweepDeadTemps(this.spec.report);
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

  /** The base directory's other files, into the output (asynchronous, abortable between chunks). */
  async copySideFiles(dir: string, skip: Set<string>): Promise<void> {
    if (!this.tmp) return;
    markPhase('side-files');
    const r = await copySideFiles(dir, this.tmp, skip, () => this.checkAborted());
    for (const n of r.copied) this.written.push(n);
    for (const x of r.skipped) process.stderr.write(`geoedit: not copied from ${safeText(dir)}: ${safeText(x.name)}: ${x.reason}\n`);
    for (const x of r.skipped) this.skipped.push(x);
    for (const x of r.hardLinked) {
      process.stderr.write(`geoedit: note: copied from ${safeText(dir)}: ${safeText(x.name)} has ${x.hardLinks} hard links (a hard link cannot be told apart from the file itself: it may be a link to a file outside the directory)\n`);
      this.hardLinked.push(x);
    }
  }

  /**
   * Finalises and writes the manifest, writes the report beside its target, then commits: the
   * output renamed into place, then the report. A failure before the commit (the report too)
   * leaves nothing at the target and no report; after the output's commit nothing fails the job
   * (a report that cannot be renamed into place is said on stderr). Resolves to the manifest.
   */
  async finish<M extends object>(m: M, reportView?: (m: M) => CheckpointManifest, seal?: Omit<SealExtra, 'warnings'>): Promise<M> {
    this.checkAborted();
    if (this.skipped.length) {
      Object.assign(m, { skippedFiles: [...this.skipped] });
      const w = (m as { warnings?: string[] }).warnings;
      for (const x of this.skipped) w?.push(`side file '${x.name}' not copied: ${x.reason}`);
    }
    if (this.hardLinked.length) Object.assign(m, { hardLinkedFiles: [...this.hardLinked] });
    const json = finalizeManifest(m, { out: this.spec.out, tmp: this.tmp, files: [...this.written] });
    if (this.tmp) {
      markPhase('seal');
      // Lineage (id, output hashes, parent) over the finished output; writes MANIFEST_FILE.
      const warnings = (m as { warnings?: string[] }).warnings;
      const sealed = await sealManifest(this.tmp, json, this.spec.lineage ?? [], { ...(warnings ? { warnings } : {}), ...seal });
      const { id, lineageVersion, outputFiles, parent, inputManifests } = sealed;
      Object.assign(m, { id, lineageVersion, outputFiles, parent, inputManifests });
    }
    this.checkAborted();
    if (this.spec.report) {
      markPhase('report');
      await this.writeReportTemp(this.spec.report, reportView ? reportView(m) : (m as unknown as CheckpointManifest));
    }
    markPhase('commit');
    if (this.tmp) await this.commit(this.tmp);
    else {
      await letSignalsIn();
      this.checkAborted();
    }
    if (this.reportTmp && this.spec.report) this.commitReport(this.spec.report, this.spec.out !== null);
    return m;
  }

  /**
   * The commit: `dir` (the temporary directory, or a directory inside it: governance's rollout
   * commits its chosen stage, a finished output of its own) fsync'ed, a signal received meanwhile
   * acted on, then renamed into place by commitOutput (a target there only with force, only if it
   * was there when the job began; moved aside meanwhile as `<tmp>.old`, the name sweepDeadTemps
   * restores). finish() commits this way; rollout calls it directly (no manifest of the job's own).
   */
  async commit(dir: string): Promise<void> {
    if (!this.tmp || !this.spec.out) throw new GeoEditError('ERR_INTERNAL', `${this.spec.what}: no output directory to commit`);
    await syncTree(dir, () => this.checkAborted());
    // A signal received meanwhile is acted on now, before anything is renamed into place.
    await letSignalsIn();
    this.checkAborted();
    commitOutput(dir, this.spec.out, this.spec.force === true, this.existedAtStart, `${this.tmp}.old`);
    // Committed: the temporary directory is the output now, or (a directory inside it committed) the job's cleanup removes what is left.
    if (dir === this.tmp) this.tmp = null;
  }

  /** Renders the report into a temporary file beside it (fsync'ed); a failure fails the job (nothing at the target). */
  private async writeReportTemp(file: string, m: CheckpointManifest): Promise<void> {
    try {
      const html = renderReport(m);
      this.checkAborted();
      this.reportTmp = tempPathBeside(file);
      // written and fsync'ed now, renamed into place after the output's commit (commitReport); the job's cleanup removes it meanwhile
      await writeDurable(this.reportTmp, html);
    } catch (e) {
      if (e instanceof GeoEditError && e.code === 'ERR_ABORTED') throw e;
      throw new GeoEditError('ERR_IO', `${file}: cannot write the report: ${(e as Error).message}`, { file });
    }
    this.checkAborted();
  }

  /**
   * The report into place, right after the output's commit. With an output, the edit has
   * succeeded by now: a report that cannot be renamed (its directory removed meanwhile…) is said
   * on stderr, not thrown. Without one (an analysis), the report is the output: its failure is the job's.
   */
  private commitReport(file: string, afterOutput: boolean): void {
    const tmp = this.reportTmp!;
    try {
      fs.renameSync(tmp, file);
      this.reportTmp = null;
      try { syncPath(path.dirname(file)); } catch { /* the rename is done; the directory's fsync is best effort */ }
    } catch (e) {
      removeQuietly(tmp);
      this.reportTmp = null;
      const msg = `${file}: cannot move the report into place: ${(e as Error).message}`;
      if (!afterOutput) throw new GeoEditError('ERR_IO', msg, { file });
      process.stderr.write(`geoedit: warning: the output is committed, but ${safeText(msg)}\n`);
    }
  }

  /** Closes what is open and removes the temporary directory (synchronous; safe to call twice). */
  cleanup(): void {
    for (const fd of this.fds) { try { fs.closeSync(fd); } catch { /* closed */ } }
    this.fds.clear();
    if (this.tmp) { removeQuietly(this.tmp); this.tmp = null; }
    if (this.reportTmp) { removeQuietly(this.reportTmp); this.reportTmp = null; }
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
 * the old one removed. `aside`: where the old target waits meanwhile (a name sweepDeadTemps restores).
 * The caller holds the target's lock and has fsync'ed tmp (syncTree): OutputJob.commit.
 */
function commitOutput(tmp: string, out: string, force: boolean, existedAtStart: boolean, aside = `${tmp}.old`): void {
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
  fs.renameSync(out, aside);
  fs.renameSync(tmp, out);
  syncPath(path.dirname(out));
  removeQuietly(aside);
}


/**
 * fsync of every file under dir, then of each directory (deepest first), before the rename into
 * place: on the thread pool, one file at a time, `check` (the abort check) between files, so a
 * signal is acted on while the disk writes back.
 */
export async function syncTree(dir: string, check: () => void = () => undefined): Promise<void> {
  const stack: string[] = [dir];
  const dirs: string[] = [];
  while (stack.length) {
    const d = stack.pop()!;
    dirs.push(d);
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) { check(); await syncPathAsync(p); }
    }
  }
  for (const d of dirs.reverse()) await syncPathAsync(d);
  check();
}

async function syncPathAsync(p: string): Promise<void> {
  const fh = await fs.promises.open(p, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}
