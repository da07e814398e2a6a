// The data step of a checkpoint job: plan items become native stream tasks (edit / copy /
// convert, file to file in row blocks), sent to the core in batches (up to ~1 GiB of input or 256
// tensors per call, so the write of one tensor overlaps the compute of the next); per-row results
// are summarised per batch; progress is reported about every 200 ms.
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';
import * as path from 'node:path';
import { native, type CallSite, type NativeOutputHash, type NativePreserve, type NativeResult, type NativeStreamSrc, type NativeStreamTask } from '../native';
import { flagSet, readEnv } from '../env';
import { nativeParams, type ResolvedParams } from '../options';
import { EDITABLE_ST_DTYPES, planSafetensors } from '../safetensors';
import { summarizeRows, threshold } from '../stats';
import { readCoefficients, type CoefficientsFile } from './coefficients';
import type { OutputJob } from '../job/job';
import type { TensorManifestEntry } from '../job/manifest';
import type { CheckpointTensor } from './open';
import type { ProgressEvent, Resolved } from './options';
import { inputBytes, type PlanItem } from './plan';
import { loadSource, sourceMemory } from '../preserve/file';
import { preserveEntries, type JobPreservation } from '../preserve/plan';

const BATCH_BYTES = 2 ** 30;
const BATCH_TENSORS = 256;
/** Statistics (values + operators) one stream call may hold: the batch is cut before more. */
const BATCH_PRESERVE_BYTES = 2 ** 29;

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
  /** Preservation: the planned statistics and the open statistics file. */
  pres?: { jp: JobPreservation; fd: number };
}

interface Batched { item: PlanItem; task: NativeStreamTask }

function layoutFields(item: PlanItem): Pick<TensorManifestEntry, 'layout' | 'layoutSource' | 'layoutWhy'> {
  return { layout: item.layout.kind, layoutSource: item.layout.source, layoutWhy: item.layout.why };
}

/** κ/√n ≥ 1 (bandDegrees unset): every row lies in the adaptive band, so every row is 'orthogonal'. */
export function degenerateThreshold(p: ResolvedParams, cols: number): boolean {
  return p.strategy === 'geoedit' && p.bandDegrees < 0 && threshold(p, cols) >= 1;
}

/** Each augmented bias moved right after its weight (the weight's pass hands the bias its preserved task vectors). */
function pairBiases(list: Batched[], jp: JobPreservation | undefined): Batched[][] {
  if (!jp || jp.biasOfWeight.size === 0) return list.map((x) => [x]);
  const biases = new Map<string, Batched>();
  for (const x of list) if (jp.biasOfWeight.has(x.item.name)) biases.set(jp.biasOfWeight.get(x.item.name)!, x);
  const units: Batched[][] = [];
  for (const x of list) {
    if (jp.biasOfWeight.has(x.item.name)) continue;
    const b = biases.get(x.item.name);
    units.push(b ? [x, b] : [x]);
  }
  return units;
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

/** The batch's statistics: each source loaded once (tasks name it by index), augmented weights given their bias's sources. */
function attachPreserves(batch: Batched[], pres: NonNullable<StreamSetup['pres']>, src: (t: CheckpointTensor) => NativeStreamSrc): NativePreserve[] {
  const { jp, fd } = pres;
  const preserves: NativePreserve[] = [];
  const index = new Map<string, number>();
  const pos = new Map(batch.map((b, k) => [b.item.name, k]));
  for (const { item, task } of batch) {
    const ws = jp.plan.byWeight.get(item.name);
    const weight = jp.biasOfWeight.get(item.name);
    if (ws) {
      let k = index.get(ws.source.name);
      if (k === undefined) {
        k = preserves.length;
        preserves.push({ ...loadSource(jp.plan, ws.source, fd), tensor: item.name });
        index.set(ws.source.name, k);
      }
      task.preserve = k;
      if (ws.augmented) {
        const b = batch[pos.get(ws.bias!)!]!.item;
        task.biasBase = src(b.base);
        task.biasOld = src(b.old!);
        task.biasNew = src(b.new!);
      }
    } else if (weight !== undefined) {
      // The bias is then edited as any 1-D tensor [1, m] (SPEC §2, §3 steps 1-6) from its preserved task
      // vectors: its own importance tensors (impOld/impNew), when given, are kept, as for every tensor.
      task.tauFrom = pos.get(weight)!;
      delete task.old;
      delete task.new;
    }
  }
  return preserves;
}

/** Whether output files are hashed as the stream writes them (native SHA-256 here, GEOEDIT_STREAM_HASH not 0). */
export function hashAsWritten(): boolean {
  if (readEnv('GEOEDIT_STREAM_HASH') !== undefined && !flagSet('GEOEDIT_STREAM_HASH')) return false;
  try { return native.sha256Info().available; } catch { return false; }
}

/**
 * Finishes the outputHash of each file written into the job's temporary directory (`names[i]` fed
 * through `handles[i]`), once every write is done: reads back what the stream did not write in file
 * order. Returns name → { size, sha256 } (for sealManifest's `known`) and the bytes hashed from
 * memory / read back. Also the merged adapters' shards (lib/lora/merge.ts).
 */
export async function finishOutputHashes(job: OutputJob, names: readonly string[], handles: readonly NativeOutputHash[], site: CallSite): Promise<{ hashes: Map<string, { size: number; sha256: string }>; stats: { fromMemory: number; reread: number } }> {
  const hashes = new Map<string, { size: number; sha256: string }>();
  const stats = { fromMemory: 0, reread: 0 };
  for (let s = 0; s < names.length; s++) {
    job.checkAborted();
    const file = path.join(job.tmp!, names[s]!);
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const r = await native.outputHashFinish(handles[s]!, { fd, size, file, ctl: job.ctl }, site);
      hashes.set(names[s]!, { size, sha256: r.sha256 });
      stats.fromMemory += r.fromMemory;
      stats.reread += r.reread;
    } finally {
      fs.closeSync(fd);
    }
  }
  job.checkAborted();
  return { hashes, stats };
}

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
    const preserves = this.s.pres ? attachPreserves(batch, this.s.pres, (t) => this.src(t)) : [];
    let res: (NativeResult | null)[];
    try {
      res = await native.stream({
        tasks: batch.map((b) => b.task), params: nativeParams(r.params), threads: r.threads,
        blockBytes: r.blockBytes, backend: r.backend, cudaMemoryLimit: r.cudaMemoryLimit, ctl: job.ctl,
        ...(preserves.length ? { preserves } : {}),
      }, this.s.site);
    } catch (err) {
      if (err instanceof GeoEditError && err.code === 'ERR_ABORTED') throw job.abortedError();
      throw err;
    }
    this.bytesRead += job.ctl[0]!;
    job.ctl[0] = 0;
    this.tensorsDone += batch.length;
    const biasEntries = new Map<string, TensorManifestEntry['preserve']>();
    batch.forEach(({ item }, k) => {
      if (item.action !== 'edit') {
        this.entries.push(otherEntry(item));
        return;
      }
      const e = summarise(item, res[k]!, r.params);
      const jp = this.s.pres?.jp;
      if (jp) {
        const ws = jp.plan.byWeight.get(item.name);
        if (ws) {
          const pe = preserveEntries(jp, ws, res[k]!.preserveEnergy!, res[k]!.preserveProvider);
          e.preserve = pe.weight;
          if (pe.bias) biasEntries.set(ws.bias!, pe.bias);
        } else e.preserve = biasEntries.get(item.name) ?? null;
      }
      this.entries.push(e);
    });
    this.emit();
  }

  /** Runs the tasks in batches, in order (an augmented bias right after its weight, in the same batch). */
  async run(list: Batched[]): Promise<void> {
    if (this.s.onProgress && !this.timer) this.timer = setInterval(() => this.emit(), 200);
    const jp = this.s.pres?.jp;
    let batch: Batched[] = [], bytes = 0, statBytes = 0;
    const sources = new Set<string>();
    for (const unit of pairBiases(list, jp)) {
      const ws = jp?.plan.byWeight.get(unit[0]!.item.name);
      const extra = ws && !sources.has(ws.source.name) ? sourceMemory(ws.source) : 0;
      // A new shard starts a new call (the abort check and progress run between calls); so does a statistic over the budget.
      const newShard = batch.length > 0 && unit[0]!.task.outFd !== batch[0]!.task.outFd;
      if (batch.length && (newShard || (extra && statBytes + extra > BATCH_PRESERVE_BYTES))) { await this.runBatch(batch); batch = []; bytes = 0; statBytes = 0; sources.clear(); }
      if (ws && !sources.has(ws.source.name)) { sources.add(ws.source.name); statBytes += extra; }
      for (const x of unit) { batch.push(x); bytes += inputBytes(x.item); }
      if (bytes >= BATCH_BYTES || batch.length >= BATCH_TENSORS) { await this.runBatch(batch); batch = []; bytes = 0; statBytes = 0; sources.clear(); }
    }
    if (batch.length) await this.runBatch(batch);
    if (jp && jp.biasOfWeight.size) {
      const order = new Map(list.map((x, k) => [x.item.name, k]));
      const start = this.entries.length - list.length;
      const mine = this.entries.splice(start).sort((a, b) => order.get(a.name)! - order.get(b.name)!);
      for (const e of mine) this.entries.push(e);
    }
  }

  /**
   * Writes each shard into the job's output: every header, then every tensor streamed to its offset
   * (one task list, so a bias may follow its weight across shards). Each shard's SHA-256 is taken as
   * it is written (native outputHash: the header, then every block the stream writes in file order;
   * what came out of order, such as tied tensors, is read back once at the end), so the seal does not
   * read the files again: `hashes` (name → size, sha256) is for sealManifest's `known`. Empty when
   * native SHA-256 is unavailable or GEOEDIT_STREAM_HASH=0 (the seal then reads the files).
   */
  async writeShards(shards: PlanItem[][], names: string[], meta: Record<string, string>): Promise<{ files: Array<{ name: string; size: number; tensors: number }>; weightMap: Record<string, string>; hashes: Map<string, { size: number; sha256: string }>; hashStats: { fromMemory: number; reread: number } | null }> {
    const files: Array<{ name: string; size: number; tensors: number }> = [];
    const weightMap: Record<string, string> = {};
    const fds: number[] = [];
    const list: Batched[] = [];
    const hashed = hashAsWritten();
    const outHashes: NativeOutputHash[] = [];
    for (let s = 0; s < shards.length; s++) {
      const items = shards[s]!;
      const sp = planSafetensors(items.map((it) => ({ name: it.name, dtype: it.outDtype, shape: it.shape })), meta);
      const fd = this.s.job.openOutput(names[s]!);
      fds.push(fd);
      fs.ftruncateSync(fd, sp.size);
      fs.writeSync(fd, sp.header, 0, sp.header.length, 0);
      const h = hashed ? native.outputHash(sp.header) : undefined;
      if (h) outHashes.push(h);
      items.forEach((it, k) => this.placed.set(it.name, { shard: names[s]!, offset: sp.dataOffset + sp.entries[k]!.begin, bytes: it.outBytes }));
      items.forEach((it, k) => {
        if (it.action === 'tied') return;
        const task = this.task(it, fd, sp.dataOffset + sp.entries[k]!.begin);
        if (h) task.outHash = h;
        list.push({ item: it, task });
      });
      for (const it of items) weightMap[it.name] = names[s]!;
      files.push({ name: names[s]!, size: sp.size, tensors: items.length });
    }
    await this.run(list);
    for (const fd of fds) this.s.job.closeOutput(fd);
    this.writeTied(shards.flat().filter((it) => it.action === 'tied'));
    if (!hashed) return { files, weightMap, hashes: new Map(), hashStats: null };
    // Every write is done (the stream's and the tied copies): finish each hash, reading back what it lacks.
    const fin = await finishOutputHashes(this.s.job, files.map((f) => f.name), outHashes, this.s.site);
    return { files, weightMap, hashes: fin.hashes, hashStats: fin.stats };
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

