// geoedit assemble / assembleParts: the parts of a partitioned edit (geoedit edit --part K/N)
// joined into the output the unpartitioned edit writes, byte for byte (docs/partitioned.md).
// Checks before anything is written: every directory is a part (its manifest intact), all parts
// come from one job (the same key: version, parameters, inputs, plan, count), each part once, every
// part present, the input hashes they recorded agree. Then, in an output job (lib/job: lock, temp
// directory beside the target, fsync, no-replace commit, --force rules), each part's files are
// hard-linked into the temporary directory (copied only across file systems, and said so), checked
// against the part's manifest (size always, SHA-256 unless verify: false), the index is written from
// the plan, and one manifest (every tensor, the totals, the parts' timings and records, lineage).
// Parts are never modified; with `move` they are removed after the commit.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError, describe, typeError } from '../errors';
import { validateOptions } from '../options';
import { canonicalJson, loadManifest, sha256Files, type LineageFields, type OutputFile, type ParentRef } from '../governance/lineage';
import { runOutputJob, type OutputJob } from '../job/job';
import { checkOutputTarget, checkReportTarget, realPath, type InputFiles } from '../job/target';
import { acquireTargetLock } from '../job/lock';
import { onCleanup } from '../job/cleanup';
import { isPartKind, MANIFEST_FILE, type AdapterManifest, type CheckpointManifest, type TensorManifestEntry } from '../job/manifest';
import { adapterReportAsCheckpointManifest } from '../lora/report';
import { totalsOf } from '../checkpoint/run';
import { totalsOf as moduleTotals } from '../lora/modules';
import type { AssembledPart, AssembledRecord, PartRecord } from './plan';

export interface AssembleOptions {
  /** Replace an existing output directory (a previous geoedit output), as editCheckpoint's force. */
  force?: boolean;
  /** Remove the part directories once the output is committed (their shards stay, hard-linked into the output). */
  move?: boolean;
  /** Re-hash every part file against its part manifest (default true). */
  verify?: boolean;
  /** Write the HTML report of the assembled output here. */
  report?: string;
}

type PartManifest = (CheckpointManifest | AdapterManifest) & LineageFields & { partition: PartRecord };

interface LoadedPart { dir: string; given: string; m: PartManifest; rec: PartRecord; hashes: Map<string, OutputFile> }

const label = (p: LoadedPart) => `${p.dir} (part ${p.rec.index}/${p.rec.count})`;

function loadPart(given: string): LoadedPart {
  const dir = path.resolve(given);
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st) throw new GeoEditError('ERR_NOT_FOUND', `the part ${dir} does not exist`, { file: dir, part: dir });
  if (!st.isDirectory()) throw new GeoEditError('ERR_NOT_A_PART', `${dir} is not a directory: a part is the output directory of geoedit edit --part K/N`, { file: dir, part: dir });
  let lm;
  try {
    lm = loadManifest(dir);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_NO_MANIFEST') throw new GeoEditError('ERR_NOT_A_PART', `${dir} holds no ${MANIFEST_FILE}: not a part of a partitioned edit (geoedit edit --part K/N writes one)`, { file: dir, part: dir });
    throw new GeoEditError('ERR_PART_CORRUPT', `the part ${dir}: ${(e as Error).message}`, { file: path.join(dir, MANIFEST_FILE), part: dir });
  }
  const m = lm.manifest as unknown as PartManifest;
  const rec = m.partition as PartRecord | undefined;
  if (!isPartKind(m.kind) || !rec || typeof rec.index !== 'number' || typeof rec.count !== 'number' || typeof rec.key !== 'string' || !rec.plan || !Array.isArray(rec.files)) {
    throw new GeoEditError('ERR_NOT_A_PART', `${dir} is a geoedit output of kind '${String(m.kind)}', not a part of a partitioned edit (geoedit edit --part K/N)`, { file: dir, part: dir });
  }
  if (!lm.idOk) {
    throw new GeoEditError('ERR_PART_CORRUPT', `the part ${dir}: its manifest does not match its id ${lm.storedId ?? '(none)'} (the content gives ${lm.computedId}): it was changed after the part was written`, { file: lm.file, part: dir });
  }
  const hashes = new Map((m.outputFiles ?? []).map((f) => [f.name, f]));
  return { dir, given, m, rec, hashes };
}

/** Which of the job's identity fields two parts disagree on (for the message). */
function differences(a: PartManifest, b: PartManifest): string[] {
  const d: string[] = [];
  const same = (x: unknown, y: unknown) => canonicalJson(x) === canonicalJson(y);
  if (a.kind !== b.kind) d.push(`kind ${a.kind} vs ${b.kind}`);
  if (a.versions?.geoedit !== b.versions?.geoedit) d.push(`geoedit version ${b.versions?.geoedit} vs ${a.versions?.geoedit}`);
  if (a.partition.count !== b.partition.count) d.push(`part count ${b.partition.count} vs ${a.partition.count}`);
  if (!same(a.parameters, b.parameters)) {
    const pa = a.parameters as unknown as Record<string, unknown>, pb = b.parameters as unknown as Record<string, unknown>;
    const keys = [...new Set([...Object.keys(pa), ...Object.keys(pb)])].filter((k) => !same(pa[k], pb[k]));
    d.push(`parameters (${keys.map((k) => `${k}: ${JSON.stringify(pb[k])} vs ${JSON.stringify(pa[k])}`).join(', ')})`);
  }
  const files = (m: PartManifest) => {
    const inputs = m.inputs as unknown as Record<string, { path?: string; files?: Array<{ path: string; size?: number }> }> | Array<{ path: string; bytes?: number }>;
    const list = Array.isArray(inputs) ? inputs : Object.values(inputs).flatMap((r) => r.files ?? []);
    return list.map((f) => `${f.path}:${(f as { size?: number }).size ?? (f as { bytes?: number }).bytes}`).sort();
  };
  if (!same(files(a), files(b))) d.push('input files (paths or sizes)');
  if (a.partition.planId !== b.partition.planId) d.push('the output plan (shards and tensors)');
  if (!d.length) d.push('input files (modification times) or options that change no parameter (hash, copyFiles)');
  return d;
}

/** Every check on the parts that needs no output: one job, each part once, all present. Returns them by index. */
function checkParts(given: string[]): LoadedPart[] {
  const parts = given.map(loadPart);
  const byReal = new Map<string, LoadedPart>();
  for (const p of parts) {
    const r = realPath(p.dir);
    const o = byReal.get(r);
    if (o) throw new GeoEditError('ERR_PART_DUPLICATE', `the part ${p.dir} is given twice${o.given !== p.given ? ` (as ${o.given} and ${p.given})` : ''}`, { part: p.dir });
    byReal.set(r, p);
  }
  // The job: the key most parts share (ties: the first part's); a part with another key is foreign.
  const count = new Map<string, number>();
  for (const p of parts) count.set(p.rec.key, (count.get(p.rec.key) ?? 0) + 1);
  const key = [...count].sort((a, b) => b[1] - a[1])[0]![0];
  const ref = parts.find((p) => p.rec.key === key)!;
  for (const p of parts) {
    if (p.rec.key === key) continue;
    throw new GeoEditError('ERR_PART_FOREIGN', `the part ${label(p)} is from another job than ${label(ref)}: ${differences(ref.m, p.m).join('; ')}`, { part: p.dir, reference: ref.dir });
  }
  const byIndex = new Map<number, LoadedPart>();
  for (const p of parts) {
    const o = byIndex.get(p.rec.index);
    if (o) throw new GeoEditError('ERR_PART_DUPLICATE', `part ${p.rec.index}/${p.rec.count} is given twice: ${o.dir} and ${p.dir}`, { part: p.dir, other: o.dir, index: p.rec.index });
    byIndex.set(p.rec.index, p);
  }
  const n = ref.rec.count;
  const missing = Array.from({ length: n }, (_, i) => i + 1).filter((k) => !byIndex.has(k));
  if (missing.length) {
    const what = missing.map((k) => {
      const files = ref.rec.plan.files.filter((f) => f.part === k).map((f) => f.name);
      return `part ${k}/${n} (${files.length ? files.join(', ') : 'no shards'})`;
    });
    throw new GeoEditError('ERR_PART_MISSING', `${missing.length} of the ${n} parts ${missing.length === 1 ? 'is' : 'are'} missing: ${what.join('; ')}; given: ${parts.map(label).join(', ')}`, { missing });
  }
  const sorted = [...byIndex.values()].sort((a, b) => a.rec.index - b.rec.index);
  // Each part's files: exactly its planned shards (part 1: also the side files), each in its manifest's hashes.
  const seen = new Map<string, LoadedPart>();
  for (const p of sorted) {
    const planned = p.rec.plan.files.filter((f) => f.part === p.rec.index).map((f) => f.name);
    const missingShards = planned.filter((f) => !p.rec.files.includes(f));
    if (missingShards.length) throw new GeoEditError('ERR_PART_CORRUPT', `the part ${label(p)} does not record its shard(s) ${missingShards.join(', ')}`, { part: p.dir, file: missingShards[0] });
    for (const f of p.rec.files) {
      const o = seen.get(f);
      if (o) throw new GeoEditError('ERR_PART_DUPLICATE', `the file ${f} is in two parts: ${label(o)} and ${label(p)}`, { part: p.dir, other: o.dir, file: f });
      seen.set(f, p);
      if (!p.hashes.has(f)) throw new GeoEditError('ERR_PART_CORRUPT', `the part ${label(p)}: ${f} has no recorded hash in its manifest`, { part: p.dir, file: f });
    }
  }
  for (const f of ref.rec.plan.files) if (!seen.has(f.name)) throw new GeoEditError('ERR_PART_MISSING', `no part holds the shard ${f.name}`, { file: f.name });
  return sorted;
}

// ---- merged records ------------------------------------------------------------------------------

type InputRecords = CheckpointManifest['inputs'];

/** The inputs as one record: each file's hash from the part(s) that read it (all must agree). */
function mergeInputs(parts: LoadedPart[]): InputRecords {
  const first = parts[0]!.m as CheckpointManifest;
  const out: InputRecords = JSON.parse(JSON.stringify(first.inputs)) as InputRecords;
  const from = new Map<string, LoadedPart>();
  for (const rec of Object.values(out)) for (const f of rec.files) if (f.sha256) from.set(f.path, parts[0]!);  // the first part's own hashes
  for (const [role, rec] of Object.entries(out)) {
    rec.files.forEach((f, i) => {
      for (const p of parts) {
        const g = (p.m as CheckpointManifest).inputs[role]?.files[i];
        if (!g || g.path !== f.path) continue;
        if (!g.sha256) continue;
        if (f.sha256 && f.sha256 !== g.sha256) {
          const o = from.get(f.path)!;
          throw new GeoEditError('ERR_PART_FOREIGN', `the input ${f.path} changed between the parts: ${label(o)} read SHA-256 ${f.sha256}, ${label(p)} read ${g.sha256}`, { part: p.dir, other: o.dir, file: f.path });
        }
        if (!f.sha256) { f.sha256 = g.sha256; f.sha256Source = g.sha256Source ?? null; from.set(f.path, p); }
        else if (g.sha256Source === 'computed') f.sha256Source = 'computed';
      }
    });
  }
  return out;
}

/** Every part hashes the inputs it reads and part 1 those no part reads: an input no part hashed means a part's manifest is not what its job wrote. */
function unhashedRefused(parts: LoadedPart[], files: ReadonlyArray<{ path: string; sha256: string | null }>): void {
  const f = files.find((x) => !x.sha256);
  if (f) throw new GeoEditError('ERR_PART_CORRUPT', `no part recorded a hash for the input ${f.path} (each part hashes the inputs it reads, part 1 those no part reads): a part's manifest is not what its job wrote: run the parts that read it (part 1 for a file no part reads) again, then assemble`, { file: f.path, part: parts[0]!.dir });
}

function partRecordOf(p: LoadedPart): AssembledPart {
  const m = p.m as CheckpointManifest;
  const bytes = p.rec.files.reduce((a, f) => a + p.hashes.get(f)!.size, 0);
  return {
    index: p.rec.index, dir: p.dir, id: p.m.id, createdAt: p.m.createdAt, host: p.rec.host, source: p.rec.source, files: [...p.rec.files], bytesWritten: bytes,
    timings: { ...(m.timings as unknown as Record<string, number>) }, ...(m.backend ? { backend: m.backend } : {}), ...(m.hashing !== undefined ? { hashing: m.hashing } : {}),
  };
}

/** The assembled checkpoint manifest: what editCheckpoint writes for the whole job, plus `partition`. */
function checkpointManifest(parts: LoadedPart[], out: string, rec: AssembledRecord, t0: number): CheckpointManifest {
  const ms = parts.map((p) => p.m as CheckpointManifest);
  const first = ms[0]!;
  const plan = parts[0]!.rec.plan;
  const at = new Map(plan.files.flatMap((f) => f.tensors).map((n, k) => [n, k]));
  const entries: TensorManifestEntry[] = ms.flatMap((m) => m.tensors).sort((a, b) => at.get(a.name)! - at.get(b.name)!);
  const bytesRead = ms.reduce((a, m) => a + m.totals.bytesRead, 0);
  const bytesWritten = plan.files.reduce((a, f) => a + f.size, 0);
  const max = (k: 'totalMs' | 'validateMs' | 'dataMs' | 'hashMs') => Math.max(...ms.map((m) => m.timings[k]));
  const dataMs = max('dataMs');
  const inputs = mergeInputs(parts);
  const recs = Object.values(inputs).flatMap((r) => r.files);
  if (first.hashing) unhashedRefused(parts, recs);
  const m: CheckpointManifest = {
    tool: 'geoedit', kind: 'checkpoint-edit', createdAt: new Date().toISOString(), versions: first.versions, backend: first.backend, inputs,
    output: { path: out, files: plan.files.map((f) => ({ name: f.name, size: f.size, tensors: f.tensors.length })), totalSize: plan.totalSize },
    parameters: first.parameters, tensors: entries, totals: totalsOf(entries, entries, bytesRead, bytesWritten),
    // The parts ran side by side: the slowest part, then the assembly.
    timings: { totalMs: max('totalMs') + (Date.now() - t0), validateMs: max('validateMs'), dataMs, hashMs: max('hashMs'), gbPerSecond: dataMs > 0 ? bytesRead / 1e9 / (dataMs / 1000) : 0 },
    hashing: first.hashing ? {
      provider: ms.map((x) => x.hashing?.provider).find((p) => p && p !== 'cache') ?? first.hashing.provider, bytesHashed: ms.reduce((a, x) => a + (x.hashing?.bytesHashed ?? 0), 0),
      fromCache: recs.filter((f) => f.sha256Source === 'cache').length, computed: recs.filter((f) => f.sha256Source === 'computed').length,
    } : null,
    warnings: [...first.warnings],
    ...(first.model ? { model: first.model } : {}),
  };
  if (first.skippedFiles) m.skippedFiles = first.skippedFiles;
  if (first.hardLinkedFiles) m.hardLinkedFiles = first.hardLinkedFiles;
  m.partition = rec;
  return m;
}

/** The assembled merged-adapter manifest: what editAdapters (outFormat 'full') writes, plus `partition`. */
function adapterManifest(parts: LoadedPart[], out: string, rec: AssembledRecord, t0: number): AdapterManifest {
  const ms = parts.map((p) => p.m as AdapterManifest);
  const first = ms[0]!;
  const order = new Map(first.partition && 'plan' in first.partition ? (first.partition as PartRecord).plan.files.flatMap((f) => f.tensors).map((n, k) => [n, k]) : []);
  const mods = ms.flatMap((m) => m.modules).sort((a, b) => (order.get(a.baseTensor ?? '') ?? 0) - (order.get(b.baseTensor ?? '') ?? 0) || (a.name < b.name ? -1 : 1));
  const { outputs: _o, partition: _p, id: _i, lineageVersion: _l, outputFiles: _f, parent: _pa, inputManifests: _im, ...rest } = first as AdapterManifest & LineageFields;
  void _o; void _p; void _i; void _l; void _f; void _pa; void _im;
  // Each input's hash from the parts that hashed it (each part hashes the inputs it reads: lib/partition/plan.ts hashAssignment); two must agree.
  const inputs = first.inputs.map((i) => ({ ...i }));
  const from = new Map<number, LoadedPart>();
  inputs.forEach((i, k) => { if (i.sha256) from.set(k, parts[0]!); });
  for (const p of parts.slice(1)) {
    const x = (p.m as AdapterManifest).inputs;
    const same = x.length === inputs.length && x.every((g, k) => g.role === inputs[k]!.role && g.path === inputs[k]!.path && g.bytes === inputs[k]!.bytes);
    if (!same) throw new GeoEditError('ERR_PART_FOREIGN', `the part ${label(p)} read other inputs than ${label(parts[0]!)}: an input changed between the parts`, { part: p.dir, other: parts[0]!.dir });
    x.forEach((g, k) => {
      const f = inputs[k]!;
      if (!g.sha256) return;
      if (f.sha256 && f.sha256 !== g.sha256) {
        const o = from.get(k)!;
        throw new GeoEditError('ERR_PART_FOREIGN', `the input ${f.path} changed between the parts: ${label(o)} read SHA-256 ${f.sha256}, ${label(p)} read ${g.sha256}`, { part: p.dir, other: o.dir, file: f.path });
      }
      if (!f.sha256) { f.sha256 = g.sha256; from.set(k, p); }
    });
  }
  unhashedRefused(parts, inputs);
  const plan = parts[0]!.rec.plan;
  const outputs = plan.files.map((f) => {
    const p = parts.find((x) => x.rec.index === f.part)!;
    const h = p.hashes.get(f.name)!;
    return { path: path.join(out, f.name), sha256: h.sha256, bytes: h.size };
  });
  const m = { ...rest, kind: 'adapter-merge', createdAt: new Date().toISOString(), inputs, modules: mods, timings: { totalMs: Math.max(...ms.map((x) => x.timings.totalMs)) + (Date.now() - t0) }, outputs } as AdapterManifest;
  m.partition = rec;
  return m;
}

/** Hard link, or (across file systems, or where links are refused) a copy; never a replacement. */
function linkOrCopy(src: string, dst: string): 'link' | 'copy' {
  try {
    fs.linkSync(src, dst);
    return 'link';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw e;
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_EXCL);
    return 'copy';
  }
}

/**
 * Joins the parts of a partitioned edit into `out`: the same files as the unpartitioned edit
 * (byte-identical shards, index and side files) and one manifest. Resolves to that manifest.
 */
export async function assembleParts(io: { parts: string[]; out: string }, options?: AssembleOptions): Promise<CheckpointManifest | AdapterManifest> {
  const t0 = Date.now();
  if (!io || typeof io !== 'object') throw typeError(`Expected { parts, out } for assembleParts but received ${describe(io)}`);
  if (!Array.isArray(io.parts) || io.parts.length === 0 || !io.parts.every((p) => typeof p === 'string' && p.length > 0)) {
    throw typeError(`Expected a non-empty array of part directories for 'parts' of assembleParts but received ${describe(io.parts)}`);
  }
  const opts = validateOptions(options, 'assemble', 'assembleParts') as AssembleOptions;
  const parts = checkParts(io.parts);
  const rec0 = parts[0]!.rec;
  const inputs: InputFiles[] = parts.map((p) => ({ path: p.dir, dir: p.dir, files: [...p.rec.files.map((f) => path.join(p.dir, f)), path.join(p.dir, MANIFEST_FILE)] }));
  const out = checkOutputTarget(io.out, inputs, opts.force === true, 'assembleParts');
  const report = opts.report === undefined ? undefined : checkReportTarget(opts.report, inputs, out);
  const adapter = parts[0]!.m.kind === 'adapter-merge-part';
  const releaseParts = lockParts(parts);
  try {
    const result = await runOutputJob({ kind: adapter ? 'adapter-merge' : 'checkpoint-edit', out, force: opts.force === true, report, what: 'the assembly of the parts' }, async (job: OutputJob) => {
      const a: AssembledRecord['assemble'] = { mode: 'link', filesLinked: 0, filesCopied: 0, bytesCopied: 0, verified: opts.verify !== false, bytesVerified: 0, ms: 0, movedParts: opts.move === true };
      const known = new Map<string, { size: number; sha256: string }>();
      for (const p of parts) {
        const names = p.rec.files;
        for (const name of names) {
          job.checkAborted();
          const src = path.join(p.dir, name);
          const want = p.hashes.get(name)!;
          const st = fs.lstatSync(src, { throwIfNoEntry: false });
          if (!st) throw new GeoEditError('ERR_PART_CORRUPT', `the part ${label(p)}: ${name} is missing`, { part: p.dir, file: src });
          if (!st.isFile()) throw new GeoEditError('ERR_PART_CORRUPT', `the part ${label(p)}: ${name} is not a regular file`, { part: p.dir, file: src });
          if (st.size !== want.size) throw new GeoEditError('ERR_PART_CORRUPT', `the part ${label(p)}: ${name} is ${st.size} bytes, its manifest says ${want.size}`, { part: p.dir, file: src });
          const how = linkOrCopy(src, job.path(name));
          if (how === 'link') a.filesLinked++;
          else { a.filesCopied++; a.bytesCopied += st.size; }
        }
        if (opts.verify !== false) {
          // The files now in the output (the same inodes as the part's, when linked), against the part's manifest.
          const got = await sha256Files(names.map((n) => path.join(job.tmp!, n)));
          names.forEach((name, i) => {
            const want = p.hashes.get(name)!;
            a.bytesVerified += got[i]!.size;
            if (got[i]!.sha256 !== want.sha256 || got[i]!.size !== want.size) {
              throw new GeoEditError('ERR_PART_CORRUPT', `the part ${label(p)}: ${name} does not match its manifest (SHA-256 ${got[i]!.sha256}, recorded ${want.sha256}): the file changed after the part was written`, { part: p.dir, file: path.join(p.dir, name) });
            }
          });
        }
        for (const name of names) known.set(name, { size: p.hashes.get(name)!.size, sha256: p.hashes.get(name)!.sha256 });
      }
      if (a.filesCopied) {
        a.mode = a.filesLinked ? 'mixed' : 'copy';
        process.stderr.write(`geoedit assemble: ${a.filesCopied} file(s) (${a.bytesCopied} bytes) were copied, not linked: the parts are on another file system than ${out} (put the parts beside the output to assemble without copying)\n`);
      }
      if (rec0.plan.index) {
        const weightMap: Record<string, string> = {};
        for (const f of rec0.plan.files) for (const t of f.tensors) weightMap[t] = f.name;
        fs.writeFileSync(job.path('model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: rec0.plan.totalSize }, weight_map: weightMap }, null, 2) + '\n');
      }
      const rec: AssembledRecord = { count: rec0.count, key: rec0.key, planId: rec0.planId, parts: parts.map(partRecordOf), assemble: a };
      const lineage = { parent: (parts[0]!.m.parent ?? null) as ParentRef | null, inputManifests: parts[0]!.m.inputManifests ?? [] };
      for (const p of parts) {
        if ((p.m.parent?.id ?? null) !== (lineage.parent?.id ?? null)) throw new GeoEditError('ERR_PART_FOREIGN', `the part ${label(p)} records the parent ${p.m.parent?.id ?? 'none'}, ${label(parts[0]!)} records ${lineage.parent?.id ?? 'none'}: an input's manifest changed between the parts`, { part: p.dir });
      }
      if (adapter) {
        const m = adapterManifest(parts, out, rec, t0);
        m.totals = moduleTotals(m.modules);
        a.ms = Date.now() - t0;
        return job.finish(m, (x) => adapterReportAsCheckpointManifest(x, 'edit'), { known, lineage });
      }
      const m = checkpointManifest(parts, out, rec, t0);
      a.ms = Date.now() - t0;
      return job.finish(m, undefined, { known, lineage });
    });
    if (opts.move) for (const p of parts) removePart(p);
    return result;
  } finally {
    releaseParts();
  }
}

/**
 * The parts stay as they are while they are read: each part's lock (a part still being written
 * holds it), released by the function returned, and on a signal or exit too (the output job's
 * cleanup covers only its own lock and temporary directory).
 */
function lockParts(parts: LoadedPart[]): () => void {
  const unlocks: Array<() => void> = [];
  const unlockAll = () => { for (const u of unlocks.splice(0).reverse()) u(); };
  const unregister = onCleanup(unlockAll);
  const release = () => { unlockAll(); unregister(); };
  try {
    for (const p of parts) unlocks.push(acquireTargetLock(p.dir));
  } catch (e) {
    release();
    throw e;
  }
  return release;
}

/** --move: the part's files (now also in the output), its manifest, then the directory if empty. */
function removePart(p: LoadedPart): void {
  for (const f of [...p.rec.files, MANIFEST_FILE]) { try { fs.unlinkSync(path.join(p.dir, f)); } catch { /* gone */ } }
  try { fs.rmdirSync(p.dir); } catch { process.stderr.write(`geoedit assemble: ${p.dir} is not empty after its part files were removed; left in place\n`); }
}
