// Merged output: the edit of two adapters applied to the base checkpoint, written as one
// model.safetensors in the output job. Each LoRA module maps to its base tensor (directly, or
// transposed for a Conv1D base with fan_in_fan_out); unedited tensors are copied byte for byte;
// the new adapter's non-LoRA tensors replace or join base tensors. The whole file after the header
// is ONE native stream call (native/binding/EXPORTS.md `stream`): copy tasks (kind 1) for base
// tensors and extras, merged-LoRA tasks (kind 3) for adapted tensors (density 1: factor-space
// geometry, merged rows; density < 1: materialised rows through the dense core; a transposed base
// is edited whole). The job's ctl block carries cancel and progress.
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';
import { native, type CallSite, type NativeOutputHash, type NativeResult, type NativeStreamTask } from '../native';
import { nativeParams, resolveParams } from '../options';
import { planSafetensors, EDITABLE_ST_DTYPES, ST_DTYPE_SIZE, type SafetensorsPlan, type SafetensorsTensorInfo } from '../safetensors';
import { loraStatsOf, type LoraOptions, type LoraStats, type PreparedLora } from '../lora-math';
import type { OutputJob } from '../job/job';
import { OpenInputs } from '../job/inputs';
import type { AdapterModuleReport, AdapterReport } from '../job/manifest';
import type { Checkpoint, CheckpointTensor } from '../checkpoint/open';
import type { DType } from '../types';
import type { PeftAdapter } from './peft';
import { shardNames } from '../checkpoint/plan';
import { finishOutputHashes, hashAsWritten } from '../checkpoint/stream';
import { moduleReport, prepareModule, type EditAdaptersOptions, type ModulePlan } from './modules';

interface MergeJob { mp: ModulePlan; transposed: boolean }
interface ExtraOut { info: SafetensorsTensorInfo; baseName?: string }

export interface MergeResult {
  mods: AdapterModuleReport[]; extras: AdapterReport['extras']; perRow: Record<string, LoraStats>;
  /** The files written (shards; inside the job's temporary directory). */
  files: Array<{ name: string; path: string }>;
  /**
   * Each shard's size and SHA-256, taken as the stream wrote it (native outputHash, as checkpoint
   * shards are: lib/checkpoint/stream.ts), for the manifest and the seal's `known`. Empty when native
   * SHA-256 is unavailable or GEOEDIT_STREAM_HASH=0: the files are then read back.
   */
  hashes: Map<string, { size: number; sha256: string }>;
  /** The whole output's layout (every shard, also those another part writes). */
  layout: MergeLayout;
}

/** The merged output's shards: names, tensors, sizes (a pure function of the inputs and options). */
export interface MergeLayout {
  shards: Array<{ name: string; plan: SafetensorsPlan; tensors: string[] }>;
  /** Sum of the tensors' bytes (the index's total_size). */
  totalSize: number;
}

/** What a merge writes, planned before anything is read or written (a pure function of the inputs and options). */
export interface MergePlan {
  /** Base tensor name → its LoRA module. */
  jobs: Map<string, MergeJob>;
  /** Output tensor name → the new adapter's non-LoRA tensor written there. */
  extraOut: Map<string, ExtraOut>;
  extras: AdapterReport['extras'];
  layout: MergeLayout;
}

/** Default bytes per block of an adapted tensor (the TS path used ~16 MiB of base rows). */
const BLOCK_BYTES = 16 << 20;
/** Resolves a module to its base tensor: `<module>.weight`, else the longest suffix of the path that names one. */
function baseTensorFor(name: string, byName: Map<string, CheckpointTensor>): CheckpointTensor | undefined {
  const parts = name.split('.');
  for (let i = 0; i < parts.length; i++) {
    const t = byName.get(`${parts.slice(i).join('.')}.weight`);
    if (t) return t;
  }
  return undefined;
}

/** Maps every module to its base tensor and checks shapes, before anything is written. */
function mapModules(ck: Checkpoint, plans: ModulePlan[], oa: PeftAdapter): Map<string, MergeJob> {
  const basePath = ck.path;
  const jobs = new Map<string, MergeJob>();
  for (const mp of plans) {
    const m = (mp.n ?? mp.o)!;
    const t = baseTensorFor(mp.name, ck.byName);
    if (!t) throw new GeoEditError('ERR_MISSING_TENSOR', `${basePath}: no tensor for LoRA module '${mp.name}' (looked for '${mp.name}.weight' and its suffixes)`, { file: basePath, module: mp.name });
    if (!EDITABLE_ST_DTYPES[t.dtype]) throw new GeoEditError('ERR_UNSUPPORTED', `${basePath}: tensor '${t.name}' is ${t.dtype}; only F32, F16 and BF16 can be edited`, { file: basePath, tensor: t.name });
    const s = t.shape;
    const direct = s.length === 2 && s[0] === m.rows && s[1] === m.cols;
    const trans = s.length === 2 && s[0] === m.cols && s[1] === m.rows;
    let transposed: boolean;
    if (direct && trans) transposed = !m.embedding && oa.fanInFanOut; // square: the config decides
    else if (direct) transposed = false;
    else if (trans && !m.embedding && oa.fanInFanOut) transposed = true;
    else {
      throw new GeoEditError('ERR_SHAPE_MISMATCH', `${basePath}: tensor '${t.name}' is [${s.join(', ')}] but LoRA module '${mp.name}' gives a delta [${m.rows}, ${m.cols}]${oa.fanInFanOut ? ` (or [${m.cols}, ${m.rows}] with fan_in_fan_out)` : ''}`, { file: basePath, tensor: t.name, module: mp.name });
    }
    if (jobs.has(t.name)) throw new GeoEditError('ERR_BAD_ADAPTER', `${basePath}: tensor '${t.name}' matches two LoRA modules ('${jobs.get(t.name)!.mp.name}' and '${mp.name}')`, { tensor: t.name });
    jobs.set(t.name, { mp, transposed });
  }
  return jobs;
}

/** The new adapter's non-LoRA tensors: replace a same-shaped base tensor, else join the output. */
function mapExtras(ck: Checkpoint, oa: PeftAdapter, na: PeftAdapter, jobs: Map<string, MergeJob>): { extraOut: Map<string, ExtraOut>; extras: AdapterReport['extras'] } {
  const extraOut = new Map<string, ExtraOut>();
  const extras: AdapterReport['extras'] = [];
  for (const t of na.extras) {
    const rel = t.name.startsWith(na.prefix) ? t.name.slice(na.prefix.length) : t.name;
    const comps = rel.split('.');
    let b: CheckpointTensor | undefined;
    for (let i = 0; i < comps.length - 1 && !b; i++) b = ck.byName.get(comps.slice(i).join('.'));
    if (b && b.shape.length === t.shape.length && b.shape.every((v, i) => v === t.shape[i]) && !jobs.has(b.name)) {
      extraOut.set(b.name, { info: t, baseName: b.name });
      extras.push({ tensor: t.name, from: 'new', action: 'replaced-in-base' });
    } else {
      extraOut.set(rel, { info: t });
      extras.push({ tensor: t.name, from: 'new', action: 'added-to-base' });
    }
  }
  for (const t of oa.extras) if (!na.extras.some((x) => x.name === t.name)) extras.push({ tensor: t.name, from: 'old', action: 'dropped' });
  return { extraOut, extras };
}

/** The output layout: the base tensors in order (edited ones possibly in outDtype), then added extras; cut into
 *  shards of at most maxShardSize bytes of tensors (as checkpoints are; a larger tensor gets a shard of its own), HF-named. */
function layoutOf(ck: Checkpoint, jobs: Map<string, MergeJob>, extraOut: Map<string, ExtraOut>, outDtype: DType | undefined, maxShardSize: number): MergeLayout {
  const stOut = outDtype === 'f32' ? 'F32' : outDtype === 'f16' ? 'F16' : 'BF16';
  const layout: Array<{ name: string; dtype: string; shape: number[] }> = [];
  for (const t of ck.tensors) {
    const ex = extraOut.get(t.name);
    if (ex) layout.push({ name: t.name, dtype: ex.info.dtype, shape: ex.info.shape });
    else layout.push({ name: t.name, dtype: jobs.get(t.name) && outDtype ? stOut : t.dtype, shape: t.shape });
  }
  for (const [name, ex] of extraOut) if (!ex.baseName) layout.push({ name, dtype: ex.info.dtype, shape: ex.info.shape });
  const bytesOf = (t: { dtype: string; shape: number[] }) => t.shape.reduce((a, b) => a * b, 1) * ST_DTYPE_SIZE[t.dtype as keyof typeof ST_DTYPE_SIZE];
  const groups: Array<typeof layout> = [];
  let cur: typeof layout = [], size = 0, totalSize = 0;
  for (const t of layout) {
    const b = bytesOf(t);
    totalSize += b;
    if (cur.length && size + b > maxShardSize) { groups.push(cur); cur = []; size = 0; }
    cur.push(t);
    size += b;
  }
  groups.push(cur);
  const names = shardNames(groups.length);
  return { shards: groups.map((g, i) => ({ name: names[i]!, plan: planSafetensors(g as never, ck.metadata), tensors: g.map((t) => t.name) })), totalSize };
}

/** One adapted tensor as a kind-3 stream task. */
function loraTask(bt: CheckpointTensor, job: MergeJob, prep: PreparedLora, fd: number, outFd: number, outOffset: number, outDtype: DType | undefined): NativeStreamTask {
  const side = (s: PreparedLora['old']) => (s && s.r > 0 ? { L: s.L, R: s.R, r: s.r, scale: s.scale } : null);
  const bdt = EDITABLE_ST_DTYPES[bt.dtype]!;
  return {
    kind: 3, name: bt.name, rows: prep.rows, cols: prep.cols, base: { fd, offset: bt.begin, dtype: bdt, file: bt.file },
    loraOld: side(prep.old), loraNew: side(prep.new), transposed: job.transposed, outFd, outOffset, outDtype: outDtype ?? bdt, stats: true,
    ...(prep.cNew ? { cNew: prep.cNew, cOld: prep.cOld } : {}),
  };
}

function copyTask(name: string, file: string, fd: number, begin: number, end: number, outFd: number, outOffset: number): NativeStreamTask {
  return { kind: 1, name, copyBytes: end - begin, base: { fd, offset: begin, dtype: 'f32', file }, outFd, outOffset };
}

/** Bytes per block: `blockRows` rows of the widest adapted tensor (base or output row), else ~16 MiB. */
function blockBytesOf(tasks: Array<{ bt: CheckpointTensor; outDtype: DType | undefined }>, blockRows: number | undefined): number {
  if (blockRows === undefined) return BLOCK_BYTES;
  let widest = 1;
  for (const { bt, outDtype } of tasks) {
    const cols = bt.shape[1]!;
    widest = Math.max(widest, cols * ST_DTYPE_SIZE[bt.dtype], cols * (outDtype ? (outDtype === 'f32' ? 4 : 2) : ST_DTYPE_SIZE[bt.dtype]));
  }
  return blockRows * widest;
}

/** Maps modules and extras to the base's tensors (every check of shapes and dtypes) and lays the output out in shards of at most maxShardSize bytes. */
export function planMerge(ck: Checkpoint, plans: ModulePlan[], oa: PeftAdapter, na: PeftAdapter, lora: LoraOptions, maxShardSize = Infinity): MergePlan {
  const jobs = mapModules(ck, plans, oa);
  const { extraOut, extras } = mapExtras(ck, oa, na, jobs);
  return { jobs, extraOut, extras, layout: layoutOf(ck, jobs, extraOut, (lora as { outDtype?: DType }).outDtype, maxShardSize) };
}

/** The input files each shard's tensors are read from (base shards, and the adapters for modules and extras). */
export function shardReads(ck: Checkpoint, oa: PeftAdapter, na: PeftAdapter, mp: MergePlan): Array<Set<string>> {
  return mp.layout.shards.map((sh) => {
    const files = new Set<string>();
    for (const name of sh.tensors) {
      const ex = mp.extraOut.get(name), j = mp.jobs.get(name);
      if (ex) { files.add(na.modelPath); continue; }
      files.add(ck.byName.get(name)!.file);
      if (j?.mp.o) files.add(oa.modelPath);
      if (j?.mp.n) files.add(na.modelPath);
    }
    return files;
  });
}

/**
 * Writes the merged model into the job (model.safetensors, or the shards of `mp.layout` and their
 * index); `mine`: only these shards (a partitioned merge: docs/partitioned.md; no index then). Every
 * check happens before the first byte.
 */
export async function mergeIntoBase(
  job: OutputJob, ck: Checkpoint, mp: MergePlan, oa: PeftAdapter, na: PeftAdapter, lora: LoraOptions, own: EditAdaptersOptions, site: CallSite,
  mine?: number[], inputs?: OpenInputs,
): Promise<MergeResult> {
  const outDtype = (lora as { outDtype?: DType }).outDtype;
  const { jobs, extraOut, extras, layout } = mp;
  const written = mine ?? layout.shards.map((_, i) => i);
  const mineTensors = new Set(written.flatMap((i) => layout.shards[i]!.tensors));
  // The factors of every module written here, checked and in the core's form, before anything is written.
  const preps = new Map<string, PreparedLora>();
  for (const [name, j] of jobs) { if (!mineTensors.has(name)) continue; job.checkAborted(); preps.set(name, await prepareModule(j.mp, oa, na, lora)); }
  const res: MergeResult = { mods: [], extras, perRow: {}, files: [], hashes: new Map(), layout };
  const hashed = hashAsWritten();
  const outHashes: NativeOutputHash[] = [];
  // The inputs through the job's descriptors (checked against the files validated); without them, opened here.
  const ins = inputs ?? new OpenInputs('the adapter merge');
  const fdOf = (file: string) => ins.open(file);
  const outFds: number[] = [];
  try {
    const tasks: NativeStreamTask[] = [];
    const adapted: Array<{ k: number; bt: CheckpointTensor; j: MergeJob; prep: PreparedLora; outDtype: DType | undefined }> = [];
    for (const si of written) {
      const { name, plan } = layout.shards[si]!;
      const file = job.path(name);
      const outFd = fs.openSync(file, 'wx');
      outFds.push(outFd);
      res.files.push({ name, path: file });
      fs.ftruncateSync(outFd, plan.size);
      fs.writeSync(outFd, plan.header, 0, plan.header.length, 0);
      const first = tasks.length;
      for (const e of plan.entries) {
        const bt = ck.byName.get(e.name), ex = extraOut.get(e.name), j = jobs.get(e.name);
        const at = plan.dataOffset + e.begin;
        if (ex) tasks.push(copyTask(e.name, na.modelPath, fdOf(na.modelPath), ex.info.begin, ex.info.end, outFd, at));
        else if (!j) tasks.push(copyTask(e.name, bt!.file, fdOf(bt!.file), bt!.begin, bt!.end, outFd, at));
        else {
          const prep = preps.get(e.name)!;
          adapted.push({ k: tasks.length, bt: bt!, j, prep, outDtype });
          tasks.push(loraTask(bt!, j, prep, fdOf(bt!.file), outFd, at, outDtype));
        }
      }
      if (hashed) {
        // The shard's SHA-256 as it is written: the header, then every block its tasks write.
        const h = native.outputHash(plan.header);
        outHashes.push(h);
        for (let k = first; k < tasks.length; k++) tasks[k]!.outHash = h;
      }
    }
    const params = nativeParams(adapted[0]?.prep.params ?? resolveParams(lora));
    const out = tasks.length === 0 ? [] : await runStream(job, { tasks, params, threads: adapted[0]?.prep.threads ?? 0, blockBytes: blockBytesOf(adapted, own.blockRows) }, site);
    for (const { k, bt, j, prep } of adapted) {
      const st = loraStatsOf(prep, out[k]!);
      const rep = moduleReport(j.mp, st);
      rep.baseTensor = bt.name;
      rep.transposed = j.transposed;
      res.mods.push(rep);
      if (own.perRow) res.perRow[j.mp.name] = st;
    }
  } finally {
    for (const fd of outFds) fs.closeSync(fd);
    if (!inputs) ins.close();
  }
  if (hashed) res.hashes = (await finishOutputHashes(job, res.files.map((f) => f.name), outHashes, site)).hashes;
  if (layout.shards.length > 1 && !mine) writeMergeIndex(job.path('model.safetensors.index.json'), layout);
  return res;
}

/** model.safetensors.index.json of a sharded merged output (as checkpoint edits write it). */
export function writeMergeIndex(file: string, layout: MergeLayout): void {
  const weightMap: Record<string, string> = {};
  for (const sh of layout.shards) for (const t of sh.tensors) weightMap[t] = sh.name;
  fs.writeFileSync(file, JSON.stringify({ metadata: { total_size: layout.totalSize }, weight_map: weightMap }, null, 2) + '\n');
}

/** The one native call; the job's ctl block: [bytes done, cancel, task index]. */
async function runStream(job: OutputJob, spec: { tasks: NativeStreamTask[]; params: ReturnType<typeof nativeParams>; threads: number; blockBytes: number }, site: CallSite): Promise<(NativeResult | null)[]> {
  job.checkAborted();
  job.ctl[0] = 0;
  job.ctl[2] = 0;
  try {
    return await native.stream({ ...spec, ctl: job.ctl }, site);
  } catch (err) {
    if (err instanceof GeoEditError && err.code === 'ERR_ABORTED') throw job.abortedError();
    throw err;
  }
}
