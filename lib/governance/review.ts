// Review: an append-only log beside the manifest (geoedit-reviews.jsonl), one JSON record per line:
// reviewer, time, decision, note, the manifest id, the SHA-256 of the report reviewed, and `prev`,
// the SHA-256 of the previous line (a hash chain: a re-ordered, removed or edited record breaks it).
// With a key the record is signed (Ed25519, node:crypto) over its canonical JSON without the
// signature; the record carries the signer's public key (SPKI) and its fingerprint.
// Appends take a lock (the chain needs the last line) and write each record with one O_APPEND write.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { GeoEditError } from '../errors';
import { REPORT_FILE, REVIEW_LOG, canonicalJson, loadSealedManifest, sha256Hex } from './lineage';
import { withLock } from './lock';

export type Decision = 'approve' | 'reject';

export interface ReviewRecord {
  v: 1;
  seq: number;
  time: string;
  reviewer: string;
  decision: Decision;
  note: string | null;
  manifestId: string;
  /** The report the reviewer approved from: its file name (relative to the directory when inside it) and SHA-256. */
  report: { file: string; sha256: string } | null;
  /** SHA-256 of the previous line of the log (null for the first record). */
  prev: string | null;
  key?: { fingerprint: string; publicKey: string };
  signature?: string;
}

export interface ReviewOptions {
  reviewer: string;
  decision: Decision;
  note?: string;
  /** Ed25519 private key: a PEM file path (PKCS#8, as `openssl genpkey -algorithm ed25519` writes), PEM text, or a KeyObject. */
  key?: string | crypto.KeyObject;
  /** The report reviewed (default DIR/geoedit-report.html, rendered from the manifest when missing). */
  report?: string;
  /** Lock wait before ERR_LOCKED (ms). */
  lockTimeoutMs?: number;
}

// ---- keys -------------------------------------------------------------------------------------

function keyError(file: string, why: string): GeoEditError {
  return new GeoEditError('ERR_BAD_KEY', `${file}: ${why}`, { file });
}

/** SHA-256 of the SPKI DER of a public key, hex: how records and trusted keys are matched. */
export function keyFingerprint(pub: crypto.KeyObject): string {
  return sha256Hex(pub.export({ type: 'spki', format: 'der' }) as Buffer);
}

export function loadPrivateKey(key: string | crypto.KeyObject): crypto.KeyObject {
  let k: crypto.KeyObject;
  const label = typeof key === 'string' && !key.includes('-----BEGIN') ? path.resolve(key) : 'the private key';
  if (key instanceof crypto.KeyObject) k = key;
  else {
    let pem: string;
    if (key.includes('-----BEGIN')) pem = key;
    else {
      try {
        pem = fs.readFileSync(key, 'utf8');
      } catch (e) {
        throw keyError(label, `cannot read the key file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
    }
    try {
      k = crypto.createPrivateKey(pem);
    } catch (e) {
      throw keyError(label, `not a PEM private key (${(e as Error).message}); make one with 'geoedit keygen' or 'openssl genpkey -algorithm ed25519'`);
    }
  }
  if (k.type !== 'private') throw keyError(label, 'is a public key; --key takes the private key (the public one goes into the trusted-keys folder)');
  if (k.asymmetricKeyType !== 'ed25519') throw keyError(label, `is a ${k.asymmetricKeyType} key; reviews are signed with Ed25519 keys`);
  return k;
}

export interface TrustedKey {
  name: string;
  file: string;
  fingerprint: string;
  key: crypto.KeyObject;
}

/** The public keys (*.pem, SPKI) of a trusted-keys folder. A key that is not Ed25519 or not a key is ERR_BAD_KEY. */
export function loadTrustedKeys(dir: string): TrustedKey[] {
  const abs = path.resolve(dir);
  let names: string[];
  try {
    names = fs.readdirSync(abs).filter((n) => n.endsWith('.pem')).sort();
  } catch (e) {
    throw keyError(abs, `cannot read the trusted-keys folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!names.length) throw keyError(abs, 'holds no .pem public keys');
  const out: TrustedKey[] = [];
  for (const n of names) {
    const file = path.join(abs, n);
    const pem = fs.readFileSync(file, 'utf8');
    if (/-----BEGIN (ENCRYPTED )?PRIVATE KEY-----/.test(pem)) throw keyError(file, 'is a private key; a trusted-keys folder holds public keys only (openssl pkey -in KEY.pem -pubout)');
    let k: crypto.KeyObject;
    try {
      k = crypto.createPublicKey(pem);
    } catch (e) {
      throw keyError(file, `not a PEM public key (${(e as Error).message})`);
    }
    if (k.asymmetricKeyType !== 'ed25519') throw keyError(file, `is a ${k.asymmetricKeyType} key; reviews are signed with Ed25519 keys`);
    out.push({ name: n.replace(/(\.pub)?\.pem$/, ''), file, fingerprint: keyFingerprint(k), key: k });
  }
  return out;
}

/** A new Ed25519 pair as PEM: PKCS#8 private, SPKI public (what openssl writes). */
export function generateKeyPair(): { privateKeyPem: string; publicKeyPem: string; fingerprint: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    fingerprint: keyFingerprint(publicKey),
  };
}

/** Writes a new pair: the private key 0600 (never over an existing file). */
export function writeKeyPair(privateFile: string, publicFile: string): { fingerprint: string; privateFile: string; publicFile: string } {
  const kp = generateKeyPair();
  const priv = path.resolve(privateFile), pub = path.resolve(publicFile);
  for (const f of [priv, pub]) if (fs.existsSync(f)) throw new GeoEditError('ERR_OUTPUT_EXISTS', `${f} already exists; keys are never overwritten`, { file: f });
  fs.writeFileSync(priv, kp.privateKeyPem, { mode: 0o600, flag: 'wx' });
  try {
    fs.writeFileSync(pub, kp.publicKeyPem, { flag: 'wx' });
  } catch (e) {
    fs.rmSync(priv, { force: true });
    throw e;
  }
  return { fingerprint: kp.fingerprint, privateFile: priv, publicFile: pub };
}

// ---- the log ------------------------------------------------------------------------------------

export interface CheckedRecord {
  /** 1-based line number in the log. */
  line: number;
  record: Partial<ReviewRecord> | null;
  /** Signature checked against the record's own public key: true valid, false invalid, null unsigned. */
  signatureValid: boolean | null;
  problems: Array<{ code: 'ERR_REVIEW_INVALID'; message: string }>;
}

function signedBytes(r: Partial<ReviewRecord>): Buffer {
  const { signature, ...rest } = r;
  void signature;
  return Buffer.from(canonicalJson(rest), 'utf8');
}

/** Reads and checks every record of DIR's review log: JSON, fields, order (seq), hash chain, manifest id, signature. */
export function checkReviewLog(dir: string, manifestIdNow: string): { file: string; exists: boolean; records: CheckedRecord[] } {
  const file = path.join(dir, REVIEW_LOG);
  if (!fs.existsSync(file)) return { file, exists: false, records: [] };
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const trailing = lines.pop(); // '' when the file ends with a newline
  const records: CheckedRecord[] = [];
  let prevLine: string | null = null;
  const all = trailing ? [...lines, trailing] : lines;
  all.forEach((line, i) => {
    const n = i + 1;
    const c: CheckedRecord = { line: n, record: null, signatureValid: null, problems: [] };
    const bad = (message: string) => c.problems.push({ code: 'ERR_REVIEW_INVALID', message: `${file}: record ${n}: ${message}` });
    records.push(c);
    const expectPrev: string | null = prevLine === null ? null : sha256Hex(prevLine);
    prevLine = line;
    if (trailing && i === all.length - 1) bad('the last line has no newline (a cut-off write?)');
    let r: Partial<ReviewRecord>;
    try {
      r = JSON.parse(line) as Partial<ReviewRecord>;
      if (!r || typeof r !== 'object' || Array.isArray(r)) throw new Error('not an object');
    } catch (e) {
      bad(`not a JSON record (${(e as Error).message})`);
      return;
    }
    c.record = r;
    if (r.v !== 1 || typeof r.reviewer !== 'string' || (r.decision !== 'approve' && r.decision !== 'reject') || typeof r.time !== 'string' || typeof r.manifestId !== 'string') {
      bad('missing or malformed fields (v, reviewer, decision, time, manifestId)');
    }
    if (r.seq !== n) bad(`its sequence number is ${JSON.stringify(r.seq)}, expected ${n}: records were re-ordered, removed or inserted`);
    if ((r.prev ?? null) !== expectPrev) {
      bad(n === 1 ? 'it links to a previous record but is the first: records before it were removed' : `its link to record ${n - 1} does not match (hash chain broken): a record was edited, re-ordered, removed or inserted`);
    }
    if (typeof r.manifestId === 'string' && r.manifestId !== manifestIdNow) {
      bad(`it reviews manifest ${r.manifestId}, not this directory's ${manifestIdNow}`);
    }
    if (r.signature !== undefined || r.key !== undefined) {
      let ok = false;
      try {
        if (typeof r.signature !== 'string' || !r.key || typeof r.key.publicKey !== 'string') throw new Error('signature or key missing');
        const pub = crypto.createPublicKey({ key: Buffer.from(r.key.publicKey, 'base64'), format: 'der', type: 'spki' });
        if (pub.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 key');
        if (keyFingerprint(pub) !== r.key.fingerprint) throw new Error('the key fingerprint does not match the key');
        ok = crypto.verify(null, signedBytes(r), pub, Buffer.from(r.signature, 'base64'));
        if (!ok) throw new Error('the signature does not match the record: it was edited or forged');
      } catch (e) {
        bad(`bad signature (${(e as Error).message})`);
      }
      c.signatureValid = ok;
    }
  });
  return { file, exists: true, records };
}

function reportFileFor(dir: string, report: string | undefined): string | null {
  if (report !== undefined) return path.resolve(report);
  const f = path.join(dir, REPORT_FILE);
  return fs.existsSync(f) ? f : null;
}

/**
 * Appends a review record to DIR's log (never rewriting earlier records). The directory's
 * manifest must match its id and the existing log must check out, else nothing is written.
 * Resolves to the record written.
 */
export async function review(dir: string, options: ReviewOptions): Promise<ReviewRecord> {
  const o = options ?? ({} as ReviewOptions);
  if (typeof o.reviewer !== 'string' || !o.reviewer.trim()) throw new GeoEditError('ERR_INVALID_OPTION', `Expected a reviewer name for option 'reviewer' but received ${JSON.stringify(o.reviewer)}`, { option: 'reviewer' });
  if (o.decision !== 'approve' && o.decision !== 'reject') throw new GeoEditError('ERR_INVALID_OPTION', `Expected 'approve' or 'reject' for option 'decision' but received ${JSON.stringify(o.decision)}`, { option: 'decision' });
  if (o.note !== undefined && typeof o.note !== 'string') throw new GeoEditError('ERR_INVALID_OPTION', `Expected a string for option 'note'`, { option: 'note' });
  const lm = loadSealedManifest(dir);
  const key = o.key !== undefined ? loadPrivateKey(o.key) : null;
  const logProblems = (): string[] => checkReviewLog(lm.dir, lm.storedId).records.flatMap((r) => r.problems.map((p) => p.message));
  const refuse = (problems: string[]) => new GeoEditError('ERR_REVIEW_INVALID', `the review log does not check out, so no record was added: ${problems.join('; ')}`, { file: path.join(lm.dir, REVIEW_LOG) });
  const before = logProblems();
  if (before.length) throw refuse(before);
  let reportFile = reportFileFor(lm.dir, o.report);
  if (reportFile === null) {
    // the page the reviewer approves from: rendered from the manifest, kept beside it
    const { writeDirReport } = await import('./render');
    reportFile = await writeDirReport(lm.dir);
  }
  let reportRec: ReviewRecord['report'];
  try {
    const rel = path.relative(lm.dir, reportFile);
    reportRec = { file: rel.startsWith('..') || path.isAbsolute(rel) ? reportFile : rel, sha256: sha256Hex(fs.readFileSync(reportFile)) };
  } catch (e) {
    throw new GeoEditError('ERR_NOT_FOUND', `${reportFile}: cannot read the report (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: reportFile });
  }
  const log = path.join(lm.dir, REVIEW_LOG);
  return withLock(log, () => {
    const checked = checkReviewLog(lm.dir, lm.storedId);
    const problems = checked.records.flatMap((r) => r.problems.map((p) => p.message));
    if (problems.length) throw refuse(problems);
    let prev: string | null = null;
    if (checked.exists) {
      const lines = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.length);
      if (lines.length) prev = sha256Hex(lines[lines.length - 1]!);
    }
    const rec: ReviewRecord = {
      v: 1, seq: checked.records.length + 1, time: new Date().toISOString(), reviewer: o.reviewer, decision: o.decision,
      note: o.note ?? null, manifestId: lm.storedId, report: reportRec, prev,
    };
    if (key) {
      const pub = crypto.createPublicKey(key);
      rec.key = { fingerprint: keyFingerprint(pub), publicKey: (pub.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64') };
      rec.signature = crypto.sign(null, signedBytes(rec), key).toString('base64');
    }
    const buf = Buffer.from(canonicalJson(rec) + '\n', 'utf8');
    const fd = fs.openSync(log, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644);
    try {
      const n = fs.writeSync(fd, buf, 0, buf.length);
      if (n !== buf.length) throw new GeoEditError('ERR_IO', `${log}: short write (${n} of ${buf.length} bytes)`, { file: log });
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return rec;
  }, { timeoutMs: o.lockTimeoutMs });
}
