// Merged output: the edit of two adapters applied to the base checkpoint, written as one
// model.safetensors in the output job. Each LoRA module maps to its base tensor (directly, or
// transposed for a Conv1D base with fan_in_fan_out); unedited tensors are copied byte for byte;
// the new adapter's non-LoRA tensors replace or join base tensors. Blocks of stored rows are
// merged by the core (density 1: factor-space geometry, merged rows; density < 1: materialised
// rows through the dense core).
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';
import type { CallSite } from '../native';
import { readTensor, planSafetensors, EDITABLE_ST_DTYPES, ST_DTYPE_SIZE, type SafetensorsPlan, type SafetensorsTensorInfo } from '../safetensors';
import { denseLoraRows, loraGeometry, mergeLoraRows, type LoraOptions, type LoraStats, type PreparedLora } from '../lora-math';
import { summarizeRows, threshold } from '../stats';
import type { AdapterModuleReport, AdapterReport } from '../job/manifest';
import type { Checkpoint, CheckpointTensor } from '../checkpoint/open';
import type { DType } from '../types';
import type { PeftAdapter } from './peft';
import { moduleReport, prepareModule, type EditAdaptersOptions, type ModulePlan } from './modules';

interface MergeJob { mp: ModulePlan; transposed: boolean }
interface ExtraOut { info: SafetensorsTensorInfo; baseName?: string }
type RowStats = { region: Uint8Array; cos: Float64Array; coefNew: Float32Array; coefOld: Float32Array; deltaSq: Float64Array; na: Float64Array; nb: Float64Array };

export interface MergeResult { mods: AdapterModuleReport[]; extras: AdapterReport['extras']; perRow: Record<string, LoraStats> }

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

/** The output layout: the base tensors in order (edited ones possibly in outDtype), then added extras. */
function layoutOf(ck: Checkpoint, jobs: Map<string, MergeJob>, extraOut: Map<string, ExtraOut>, outDtype: DType | undefined): SafetensorsPlan {
  const stOut = outDtype === 'f32' ? 'F32' : outDtype === 'f16' ? 'F16' : 'BF16';
  const layout: Array<{ name: string; dtype: string; shape: number[] }> = [];
  for (const t of ck.tensors) {
    const ex = extraOut.get(t.name);
    if (ex) layout.push({ name: t.name, dtype: ex.info.dtype, shape: ex.info.shape });
    else layout.push({ name: t.name, dtype: jobs.get(t.name) && outDtype ? stOut : t.dtype, shape: t.shape });
  }
  for (const [name, ex] of extraOut) if (!ex.baseName) layout.push({ name, dtype: ex.info.dtype, shape: ex.info.shape });
  return planSafetensors(layout as never, ck.metadata);
}

/** Sequential writes into the output file, and positioned reads from the base's shards. */
class MergeIO {
  private pos: number;
  private readonly fds = new Map<string, fs.promises.FileHandle>();
  constructor(private readonly out: fs.promises.FileHandle, start: number) { this.pos = start; }

  async write(b: Uint8Array): Promise<void> {
    let done = 0;
    while (done < b.length) {
      const { bytesWritten } = await this.out.write(b, done, b.length - done, this.pos + done);
      done += bytesWritten;
    }
    this.pos += b.length;
  }

  async read(file: string, pos: number, len: number): Promise<Buffer> {
    let f = this.fds.get(file);
    if (!f) { f = await fs.promises.open(file, 'r'); this.fds.set(file, f); }
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await f.read(buf, got, len - got, pos + got);
      if (bytesRead === 0) throw new GeoEditError('ERR_BAD_SAFETENSORS', `${file}: unexpected end of file`, { file });
      got += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    for (const f of this.fds.values()) await f.close().catch(() => undefined);
  }
}

function typed(buf: Buffer, dtype: DType): Float32Array | Uint16Array {
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  return dtype === 'f32' ? new Float32Array(ab) : new Uint16Array(ab);
}

function concatStats(prep: PreparedLora, parts: RowStats[]): LoraStats {
  const m = prep.rows;
  const cat = <T extends Float64Array | Float32Array | Uint8Array>(C: new (n: number) => T, get: (p: RowStats) => T): T => {
    const out = new C(m);
    let o = 0;
    for (const p of parts) { out.set(get(p) as never, o); o += get(p).length; }
    return out;
  };
  const cos = cat(Float64Array, (p) => p.cos), region = cat(Uint8Array, (p) => p.region);
  const na = cat(Float64Array, (p) => p.na), nb = cat(Float64Array, (p) => p.nb), deltaSq = cat(Float64Array, (p) => p.deltaSq);
  const sum = summarizeRows({ cos, region, na, nb, deltaSq }, m);
  const dot = new Float64Array(m);
  for (let i = 0; i < m; i++) dot[i] = cos[i]! * Math.sqrt(na[i]! * nb[i]!);
  return {
    rows: m, cols: prep.cols, cos, region, counts: sum.counts, threshold: threshold(prep.params, prep.cols),
    coefNew: cat(Float32Array, (q) => q.coefNew), coefOld: cat(Float32Array, (q) => q.coefOld), energy: sum.energy, dot, na, nb,
  };
}

/** One edited base tensor, in blocks of stored rows; returns its per-row statistics. */
async function mergeTensor(io: MergeIO, bt: CheckpointTensor, job: MergeJob, prep: PreparedLora, outDtype: DType | undefined, blockRows: number | undefined, site: CallSite): Promise<LoraStats> {
  const bdt = EDITABLE_ST_DTYPES[bt.dtype]!;
  const odt: DType = outDtype ?? bdt;
  const storedRows = bt.shape[0]!, storedCols = bt.shape[1]!;
  const rowBytes = storedCols * ST_DTYPE_SIZE[bt.dtype];
  const defaultBlk = Math.max(1, Math.floor((16 << 20) / Math.max(1, rowBytes)));
  const block = async (s0: number, s1: number) => ({ dtype: bdt, data: typed(await io.read(bt.file, bt.begin + s0 * rowBytes, (s1 - s0) * rowBytes), bdt) });
  if (prep.params.density === 1) {
    const st = await loraGeometry(prep, job.mp.name, site);
    const blk = blockRows ?? defaultBlk;
    for (let s0 = 0; s0 < storedRows; s0 += blk) {
      const s1 = Math.min(storedRows, s0 + blk);
      const o = await mergeLoraRows(prep, st.coefNew, st.coefOld, job.transposed, await block(s0, s1), s0, s1, odt, bt.name);
      await io.write(new Uint8Array(o.buffer, o.byteOffset, o.byteLength));
    }
    return st;
  }
  // density < 1: materialised rows, edited by the dense core (the whole tensor when transposed).
  const blk = job.transposed ? storedRows : (blockRows ?? defaultBlk);
  const parts: RowStats[] = [];
  for (let s0 = 0; s0 < storedRows; s0 += blk) {
    const s1 = Math.min(storedRows, s0 + blk);
    const d = await denseLoraRows(prep, job.transposed, await block(s0, s1), s0, s1, odt, bt.name);
    await io.write(new Uint8Array(d.out.buffer, d.out.byteOffset, d.out.byteLength));
    parts.push(d.stats);
  }
  return concatStats(prep, parts);
}

/** Writes the merged model to `out` (a new file); every check happens before the first byte. */
export async function mergeIntoBase(
  ck: Checkpoint, out: string, plans: ModulePlan[], oa: PeftAdapter, na: PeftAdapter, lora: LoraOptions, own: EditAdaptersOptions, site: CallSite,
): Promise<MergeResult> {
  const outDtype = (lora as { outDtype?: DType }).outDtype;
  const jobs = mapModules(ck, plans, oa);
  const { extraOut, extras } = mapExtras(ck, oa, na, jobs);
  const plan = layoutOf(ck, jobs, extraOut, outDtype);
  const res: MergeResult = { mods: [], extras, perRow: {} };
  const outFd = await fs.promises.open(out, 'wx');
  const io = new MergeIO(outFd, plan.dataOffset);
  try {
    await outFd.write(plan.header, 0, plan.header.length, 0);
    for (const e of plan.entries) {
      const bt = ck.byName.get(e.name);
      const ex = extraOut.get(e.name);
      const job = jobs.get(e.name);
      if (ex) {
        const raw = await readTensor(na.modelPath, ex.info.name, na.header);
        await io.write(new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength));
      } else if (!job) {
        // Copied byte for byte, in blocks.
        const len = bt!.end - bt!.begin;
        for (let off = 0; off < len; off += 64 << 20) await io.write(await io.read(bt!.file, bt!.begin + off, Math.min(64 << 20, len - off)));
      } else {
        const prep = await prepareModule(job.mp, oa, na, lora);
        const st = await mergeTensor(io, bt!, job, prep, outDtype, own.blockRows, site);
        const rep = moduleReport(job.mp, st);
        rep.baseTensor = e.name;
        rep.transposed = job.transposed;
        res.mods.push(rep);
        if (own.perRow) res.perRow[job.mp.name] = st;
      }
    }
  } finally {
    await outFd.close().catch(() => undefined);
    await io.close();
  }
  return res;
}
