// verifyOutput(): is this directory the output its manifest describes? Re-hashes every output
// file the way the seal hashed it (lineage sha256Files: native and parallel, 1 MiB reads per
// thread, else node:crypto one file at a time; bounded memory, never the input-hash cache), names
// each file that changed, is missing or is extra; optionally re-checks the recorded input hashes where those paths still
// exist; checks the manifest against its id, the evaluation log, and the review log (hash chain,
// manifest id, signatures, and with trusted keys which reviewers signed with which key).
// Read-only: nothing in the directory is touched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError, type GeoEditErrorCode } from '../errors';
import { listOutputFiles, loadManifest, sha256File, sha256Files, type LoadedManifest, type Manifest, type OutputFile } from './lineage';
import { checkReviewLog, loadTrustedKeys, type TrustedKey } from './review';
import { checkEvaluationLog } from './evaluate';
import { safeText } from '../text';

export interface VerifyOptions {
  /** Also re-hash the recorded inputs where those paths exist. */
  inputs?: boolean;
  /** A folder of trusted SPKI public keys (*.pem), or keys already loaded. */
  trustedKeys?: string | TrustedKey[];
  /** With trusted keys: accept unsigned review records (default: each record must be signed by a trusted key). */
  allowUnsigned?: boolean;
  /** Called after each file is hashed. */
  onFile?: (e: { name: string; bytes: number; index: number; total: number }) => void;
}

export interface VerifyProblem {
  code: GeoEditErrorCode;
  message: string;
  file?: string;
}

export interface ReviewStatus {
  seq: number;
  reviewer: string | null;
  decision: string | null;
  time: string | null;
  /** 'valid' (chain, manifest id and any signature check out), else 'invalid'. */
  status: 'valid' | 'invalid';
  signed: boolean;
  fingerprint: string | null;
  /** The trusted key that signed it (name = its file name without .pem), when trusted keys were given. */
  trustedKey: string | null;
}

export interface VerifyResult {
  ok: boolean;
  dir: string;
  manifest: string;
  id: string | null;
  idMatches: boolean;
  files: {
    checked: number;
    bytes: number;
    /** `actual` is '' where the name is no longer a regular file (a symbolic link): nothing was hashed through it. */
    changed: Array<{ name: string; expected: string; actual: string; expectedSize: number; actualSize: number }>;
    missing: string[];
    extra: string[];
  };
  inputs: null | {
    checked: number;
    changed: Array<{ role: string; path: string; expected: string; actual: string }>;
    /** Recorded inputs whose paths no longer exist (not checked, not an error). */
    absent: string[];
    /** Inputs recorded without a hash (--no-hash). */
    unhashed: string[];
  };
  reviews: {
    records: ReviewStatus[];
    /** Reviewers whose records are validly signed by a trusted key (trusted keys given), in log order. */
    signedBy: Array<{ reviewer: string; decision: string; key: string; fingerprint: string; seq: number }>;
  };
  evaluations: { entries: number };
  problems: VerifyProblem[];
}

interface InputFile { role: string; path: string; sha256: string | null }

function recordedInputs(m: Record<string, unknown>): InputFile[] {
  const inp = m.inputs as unknown;
  const out: InputFile[] = [];
  if (Array.isArray(inp)) {
    for (const i of inp as Array<{ role: string; path: string; sha256?: string | null }>) out.push({ role: i.role, path: i.path, sha256: i.sha256 ?? null });
  } else if (inp && typeof inp === 'object') {
    for (const [role, v] of Object.entries(inp as Record<string, { files?: Array<{ path: string; sha256: string | null }> }>)) {
      for (const f of v?.files ?? []) out.push({ role, path: f.path, sha256: f.sha256 ?? null });
    }
  }
  return out;
}

/** Every recorded output file re-hashed; missing and extra files named. */
async function checkOutputFiles(lm: LoadedManifest, res: VerifyResult, onFile: VerifyOptions['onFile']): Promise<void> {
  const problems = res.problems;
  const recorded = Array.isArray(lm.manifest.outputFiles) ? (lm.manifest.outputFiles as OutputFile[]) : null;
  if (!recorded) {
    if (lm.storedId !== null) problems.push({ code: 'ERR_MANIFEST_INVALID', message: `${lm.file} has no outputFiles list`, file: lm.file });
    return;
  }
  const present = new Set(listOutputFiles(lm.dir));
  const known = new Set(recorded.map((f) => f.name));
  // A geoedit output holds only regular files: a name replaced by a symbolic link (to an identical copy
  // elsewhere, say) is not the file that was sealed, so it is never hashed through the link.
  const linked = new Map<string, string>();
  for (const f of recorded) {
    if (!present.has(f.name)) continue;
    const st = fs.lstatSync(path.join(lm.dir, f.name), { throwIfNoEntry: false });
    if (st && !st.isFile()) {
      let to = '';
      try { to = st.isSymbolicLink() ? ` to ${fs.readlinkSync(path.join(lm.dir, f.name))}` : ''; } catch { /* gone */ }
      linked.set(f.name, st.isSymbolicLink() ? `a symbolic link${to}` : 'not a regular file');
    }
  }
  // Present files hashed the way sealManifest hashed them (sha256Files: native and parallel, or
  // node:crypto), in one batch; bounded memory either way, read-only, no hash cache.
  const toHash = recorded.filter((f) => present.has(f.name) && !linked.has(f.name));
  const hashed = await sha256Files(toHash.map((f) => path.join(lm.dir, f.name)));
  let index = 0;
  for (const f of recorded) {
    const file = path.join(lm.dir, f.name);
    if (!present.has(f.name)) {
      res.files.missing.push(f.name);
      problems.push({ code: 'ERR_OUTPUT_MISSING', message: `${file} is missing (the manifest lists it, ${f.size} bytes)`, file });
      continue;
    }
    const why = linked.get(f.name);
    if (why !== undefined) {
      res.files.changed.push({ name: f.name, expected: f.sha256, actual: '', expectedSize: f.size, actualSize: -1 });
      problems.push({ code: 'ERR_OUTPUT_CHANGED', message: `${file} is ${safeText(why)}, not the regular file that was sealed (a geoedit output holds only regular files; it was not hashed through the link)`, file });
      continue;
    }
    const got = hashed[index]!; // index counts the present files, in toHash's order
    res.files.checked++;
    res.files.bytes += got.size;
    onFile?.({ name: f.name, bytes: got.size, index, total: recorded.length });
    index++;
    if (got.sha256 !== f.sha256) {
      res.files.changed.push({ name: f.name, expected: f.sha256, actual: got.sha256, expectedSize: f.size, actualSize: got.size });
      problems.push({ code: 'ERR_OUTPUT_CHANGED', message: `${file} changed: SHA-256 ${got.sha256} (${got.size} bytes), the manifest says ${f.sha256} (${f.size} bytes)`, file });
    }
  }
  for (const n of present) {
    if (known.has(n)) continue;
    res.files.extra.push(n);
    problems.push({ code: 'ERR_OUTPUT_EXTRA', message: `${path.join(lm.dir, n)} is not in the manifest (an extra ${n.endsWith('.safetensors') ? 'weights file' : 'file'})`, file: path.join(lm.dir, n) });
  }
}

/** The recorded inputs re-hashed where those paths still exist. */
async function checkInputs(m: Manifest, res: VerifyResult): Promise<void> {
  const ir: NonNullable<VerifyResult['inputs']> = { checked: 0, changed: [], absent: [], unhashed: [] };
  res.inputs = ir;
  for (const i of recordedInputs(m)) {
    if (!i.sha256) { ir.unhashed.push(i.path); continue; }
    if (!fs.statSync(i.path, { throwIfNoEntry: false })?.isFile()) { ir.absent.push(i.path); continue; }
    const got = await sha256File(i.path);
    ir.checked++;
    if (got.sha256 !== i.sha256) {
      ir.changed.push({ role: i.role, path: i.path, expected: i.sha256, actual: got.sha256 });
      res.problems.push({ code: 'ERR_INPUT_CHANGED', message: `input ${i.role} ${i.path} changed since the edit: SHA-256 ${got.sha256}, the manifest says ${i.sha256}`, file: i.path });
    }
  }
}

/** The review log checked; with trusted keys, who signed with which, and what is untrusted or unsigned. */
function checkReviews(lm: LoadedManifest, res: VerifyResult, trusted: TrustedKey[] | null, allowUnsigned: boolean): void {
  const problems = res.problems;
  const rl = checkReviewLog(lm.dir, lm.storedId ?? lm.computedId);
  const byFp = new Map((trusted ?? []).map((k) => [k.fingerprint, k]));
  for (const c of rl.records) {
    const r = c.record;
    const fp = r?.key?.fingerprint ?? null;
    const st: ReviewStatus = {
      seq: c.line, reviewer: typeof r?.reviewer === 'string' ? r.reviewer : null, decision: typeof r?.decision === 'string' ? r.decision : null,
      time: typeof r?.time === 'string' ? r.time : null, status: c.problems.length ? 'invalid' : 'valid', signed: c.signatureValid !== null,
      fingerprint: fp, trustedKey: null,
    };
    for (const p of c.problems) problems.push({ code: p.code, message: p.message, file: rl.file });
    res.reviews.records.push(st);
    if (!trusted || c.problems.length) continue;
    const who = `record ${c.line} (${st.reviewer}, ${st.decision})`;
    if (c.signatureValid === true && fp && byFp.has(fp)) {
      st.trustedKey = byFp.get(fp)!.name;
      res.reviews.signedBy.push({ reviewer: st.reviewer!, decision: st.decision!, key: st.trustedKey, fingerprint: fp, seq: c.line });
    } else if (c.signatureValid === true) {
      problems.push({ code: 'ERR_REVIEW_UNTRUSTED', message: `${rl.file}: ${who} is signed by key ${fp}, which is not among the trusted keys`, file: rl.file });
    } else if (!allowUnsigned) {
      problems.push({ code: 'ERR_REVIEW_UNSIGNED', message: `${rl.file}: ${who} is not signed, and trusted keys were asked for`, file: rl.file });
    }
  }
}

/** Verifies an output directory against its manifest (see the file comment). Throws only when there is no manifest to check against. */
export async function verifyOutput(dir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const lm = loadManifest(dir);
  const problems: VerifyProblem[] = [];
  const trusted = typeof options.trustedKeys === 'string' ? loadTrustedKeys(options.trustedKeys) : options.trustedKeys ?? null;
  const res: VerifyResult = {
    ok: false, dir: lm.dir, manifest: lm.file, id: lm.storedId, idMatches: lm.idOk,
    files: { checked: 0, bytes: 0, changed: [], missing: [], extra: [] }, inputs: null,
    reviews: { records: [], signedBy: [] }, evaluations: { entries: 0 }, problems,
  };
  if (lm.storedId === null) {
    problems.push({ code: 'ERR_NO_LINEAGE', message: `${lm.file} has no id and no output hashes: it was written by a geoedit without lineage`, file: lm.file });
  } else if (!lm.idOk) {
    problems.push({ code: 'ERR_MANIFEST_TAMPERED', message: `${lm.file}: the content does not match the id ${lm.storedId} (it gives ${lm.computedId}): the manifest was edited after it was written`, file: lm.file });
  }
  await checkOutputFiles(lm, res, options.onFile);
  if (options.inputs) await checkInputs(lm.manifest, res);
  const ev = checkEvaluationLog(lm.manifest, lm.storedId ?? lm.computedId);
  res.evaluations.entries = ev.entries;
  for (const p of ev.problems) problems.push({ code: 'ERR_EVALUATION_INVALID', message: `${lm.file}: ${p}`, file: lm.file });
  checkReviews(lm, res, trusted, options.allowUnsigned === true);
  res.ok = problems.length === 0;
  return res;
}

/** verifyOutput, throwing the first problem as a GeoEditError (details: the whole result) when it does not pass. */
export async function assertVerified(dir: string, options?: VerifyOptions): Promise<VerifyResult> {
  const r = await verifyOutput(dir, options);
  if (!r.ok) {
    const p = r.problems[0]!;
    throw new GeoEditError(p.code, r.problems.length > 1 ? `${p.message} (and ${r.problems.length - 1} more problem${r.problems.length > 2 ? 's' : ''})` : p.message, { result: r });
  }
  return r;
}
