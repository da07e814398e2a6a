// The data step of a checkpoint job: plan items become native stream tasks (edit / copy /
// convert, file to file in row blocks), sent to the core in batches (up to ~1 GiB of input or 256
// tensors per call, so the write of one tensor overlaps the compute of the next); per-row results
// are summarised per batch; progress is reported about every 200 ms.
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';
import { native, type CallSite, type NativeResult, type NativeStreamSrc, type NativeStreamTask } from '../native';
import { nativeParams, type ResolvedParams } from '../options';
import { EDITABLE_ST_DTYPES, planSafetensors } from '../safetensors';
import { summarizeRows, threshold } from '../stats';
import { readCoefficients, type CoefficientsFile } from './coefficients';
import type { OutputJob } from '../job/job';
import type { TensorManifestEntry } from '../job/manifest';
import type { CheckpointTensor } from './open';
import type { ProgressEvent, Resolved } from './options';
import { inputBytes, type PlanItem } from './plan';

const BATCH_BYTES = 2 ** 30;
const BATCH_TENSORS = 256;

export interface StreamSetup {
  job: OutputJob;
  r: Resolved;
  /** Open input files (path → fd). */
  fds: Map<string, number>;
  site: CallSite;
  phase: ProgressEvent['phase'];
  onProgress?: (e: ProgressEvent) => void;
  t0: number;
  bytesTotal: number;
  tensorsTotal: number;
  /** strategy 'custom': where each edited tensor's cNew / cOld are. */
  coefficients?: CoefficientsFile | null;
}

interface Batched { item: PlanItem; task: NativeStreamTask }

function layoutFields(item: PlanItem): Pick<TensorManifestEntry, 'layout' | 'layoutSource' | 'layoutWhy'> {
  return { layout: item.layout.kind, layoutSource: item.layout.source, layoutWhy: item.layout.why };
}

/** κ/√n ≥ 1 (bandDegrees unset): every row lies in the adaptive band, so every row is 'orthogonal'. */
export function degenerateThreshold(p: ResolvedParams, cols: number): boolean {
  return p.strategy === 'geoedit' && p.bandDegrees < 0 && threshold(p, cols) >= 1;
}

function summarise(item: PlanItem, r: NativeResult, p: ResolvedParams): TensorManifestEntry {
  const { rows, cols } = item.layout;
  const sum = summarizeRows(r, rows);
  const e: TensorManifestEntry = {
    name: item.name, shape: item.shape, dtype: item.base.dtype, outDtype: item.outDtype, action: 'edit', ...layoutFields(item),
    rows, cols, threshold: threshold(p, cols), counts: sum.counts, zeroRows: sum.zeroRows, angleHistogram: sum.angleHistogram,
    meanCos: sum.meanCos, energy: sum.energy, energyKept: sum.energyKept,
  };
  if (degenerateThreshold(p, cols)) e.degenerateThreshold = true;
  return e;
}

function otherEntry(item: PlanItem): TensorManifestEntry {
  const e: TensorManifestEntry = { name: item.name, shape: item.shape, dtype: item.base.dtype, outDtype: item.outDtype, action: item.action, note: item.why, ...layoutFields(item) };
  if (item.tiedTo) e.tiedTo = item.tiedTo;
  return e;
}

/** Where a tensor's bytes are in the output (for tied tensors). */
interface Placement { shard: string; offset: number; bytes: number }

export class CheckpointStream {
  /** Input bytes done by finished batches. */
  bytesRead = 0;
  readonly entries: TensorManifestEntry[] = [];
  private readonly placed = new Map<string, Placement>();
  private tensorsDone = 0;
  private batchNames: string[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly s: StreamSetup) {}

  private emit(): void {
    const ctl = this.s.job.ctl;
    this.s.onProgress?.({
      phase: this.s.phase, bytesDone: this.bytesRead + ctl[0]!, bytesTotal: this.s.bytesTotal, tensor: this.batchNames[ctl[2]!] ?? '',
      tensorsDone: this.tensorsDone, tensorsTotal: this.s.tensorsTotal, elapsedMs: Date.now() - this.s.t0,
    });
  }

  private src(t: CheckpointTensor): NativeStreamSrc {
    return { fd: this.s.fds.get(t.file)!, offset: t.begin, dtype: EDITABLE_ST_DTYPES[t.dtype] ?? 'f32', file: t.file };
  }

  task(item: PlanItem, outFd: number, outOffset: number): NativeStreamTask {
    const { rows, cols, groups, columns } = item.layout;
    const outDtype = EDITABLE_ST_DTYPES[item.outDtype];
    if (item.action === 'edit') {
      const t: NativeStreamTask = {
        kind: 0, name: item.name, rows, cols, base: this.src(item.base), old: this.src(item.old!), new: this.src(item.new!),
        outFd, outOffset, outDtype, stats: true,
      };
      if (columns) { t.layout = 1; t.groups = groups; }
      if (item.impOld && item.impNew) { t.impOld = this.src(item.impOld); t.impNew = this.src(item.impNew); }
      if (this.s.coefficients) Object.assign(t, readCoefficients(this.s.coefficients, item.name));
      return t;
    }
    const count = item.shape.reduce((a, b) => a * b, 1);
    if (item.action === 'convert') return { kind: 2, name: item.name, rows: count, cols: 1, base: this.src(item.base), outFd, outOffset, outDtype };
    return { kind: 1, name: item.name, copyBytes: item.base.end - item.base.begin, base: { ...this.src(item.base), dtype: 'f32' }, outFd, outOffset };
  }

  private async runBatch(batch: Batched[]): Promise<void> {
    const { job, r } = this.s;
    job.checkAborted();
    this.batchNames = batch.map((b) => b.item.name);
    job.ctl[0] = 0;
    job.ctl[2] = 0;
    let res: (NativeResult | null)[];
    try {
      res = await native.stream({
        tasks: batch.map((b) => b.task), params: nativeParams(r.params), threads: r.threads,
        blockBytes: r.blockBytes, backend: r.backend, cudaMemoryLimit: r.cudaMemoryLimit, ctl: job.ctl,
      }, this.s.site);
    } catch (err) {
      if (err instanceof GeoEditError && err.code === 'ERR_ABORTED') throw job.abortedError();
      throw err;
    }
    this.bytesRead += job.ctl[0]!;
    job.ctl[0] = 0;
    this.tensorsDone += batch.length;
    batch.forEach(({ item }, k) => {
      if (item.action === 'edit') this.entries.push(summarise(item, res[k]!, r.params));
      else this.entries.push(otherEntry(item));
    });
    this.emit();
  }

  /** Runs the tasks in batches, in order. */
  async run(list: Batched[]): Promise<void> {
    if (this.s.onProgress && !this.timer) this.timer = setInterval(() => this.emit(), 200);
    let batch: Batched[] = [], bytes = 0;
    for (const x of list) {
      batch.push(x);
      bytes += inputBytes(x.item);
      if (bytes >= BATCH_BYTES || batch.length >= BATCH_TENSORS) { await this.runBatch(batch); batch = []; bytes = 0; }
    }
    if (batch.length) await this.runBatch(batch);
  }

  /** Writes each shard into the job's output: header, then every tensor streamed to its offset. */
  async writeShards(shards: PlanItem[][], names: string[], meta: Record<string, string>): Promise<{ files: Array<{ name: string; size: number; tensors: number }>; weightMap: Record<string, string> }> {
    const files: Array<{ name: string; size: number; tensors: number }> = [];
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards.length; s++) {
      const items = shards[s]!;
      const sp = planSafetensors(items.map((it) => ({ name: it.name, dtype: it.outDtype, shape: it.shape })), meta);
      const fd = this.s.job.openOutput(names[s]!);
      fs.ftruncateSync(fd, sp.size);
      fs.writeSync(fd, sp.header, 0, sp.header.length, 0);
      items.forEach((it, k) => this.placed.set(it.name, { shard: names[s]!, offset: sp.dataOffset + sp.entries[k]!.begin, bytes: it.outBytes }));
      const tasks = items.map((it, k) => ({ item: it, task: this.task(it, fd, sp.dataOffset + sp.entries[k]!.begin) }));
      await this.run(tasks.filter((x) => x.item.action !== 'tied'));
      for (const it of items) weightMap[it.name] = names[s]!;
      this.s.job.closeOutput(fd);
      files.push({ name: names[s]!, size: sp.size, tensors: items.length });
    }
    this.writeTied(shards.flat().filter((it) => it.action === 'tied'));
    return { files, weightMap };
  }

  /** Tied tensors: their primary's output bytes, copied once every shard is written (1 MiB at a
   *  time; in TS, as the source and the target may be the same file, which the native stream's
   *  changed-input guard would rightly refuse). */
  private writeTied(tied: PlanItem[]): void {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (const it of tied) {
      this.s.job.checkAborted();
      const from = this.placed.get(it.tiedTo!)!, to = this.placed.get(it.name)!;
      const rfd = fs.openSync(this.s.job.path(from.shard), 'r');
      const wfd = fs.openSync(this.s.job.path(to.shard), 'r+'); // may be the same file: two descriptors
      try {
        for (let off = 0; off < from.bytes; off += buf.length) {
          const n = Math.min(buf.length, from.bytes - off);
          if (fs.readSync(rfd, buf, 0, n, from.offset + off) !== n) throw new GeoEditError('ERR_IO', `short read of '${it.tiedTo}' in ${this.s.job.path(from.shard)}`, { tensor: it.name });
          fs.writeSync(wfd, buf, 0, n, to.offset + off);
        }
      } finally {
        fs.closeSync(rfd);
        fs.closeSync(wfd);
      }
      this.entries.push(otherEntry(it));
    }
  }

  /** Analysis: edit tasks without output. */
  async analyze(items: PlanItem[]): Promise<void> {
    await this.run(items.map((it) => ({ item: it, task: this.task(it, -1, 0) })));
  }

  /** Entries of tensors that are not streamed (analysis: copied and tied ones). */
  note(items: PlanItem[]): void {
    for (const it of items) this.entries.push(otherEntry(it));
  }

  stop(): void {
    if (this.timer) { clearInterval(this.timer); this.timer = undefined; }
  }
}

