// geoedit review DIR --reviewer NAME --decision approve|reject [--note TEXT] [--key KEY.pem] [--report FILE]
import { review } from '../governance/review';
import { EXIT, UsageError, helpText, parse, safeText, type OptSpec } from './common';
import { govError, needString, onePositional } from './gov-common';

export const REVIEW_FLAGS: OptSpec[] = [
  { name: 'reviewer', type: 'string', kind: 'string', default: 'required', metavar: 'NAME', desc: 'who reviewed' },
  { name: 'decision', type: 'string', kind: 'string', default: 'required', metavar: 'D', desc: 'approve | reject' },
  { name: 'note', type: 'string', kind: 'string', default: 'none', metavar: 'TEXT', desc: 'a note kept with the record' },
  { name: 'key', type: 'string', kind: 'string', default: 'none (unsigned)', metavar: 'KEY.pem', desc: "sign the record with this Ed25519 private key (PKCS#8 PEM: 'geoedit keygen' or 'openssl genpkey -algorithm ed25519')" },
  { name: 'report', type: 'string', kind: 'string', default: 'DIR/geoedit-report.html (rendered from the manifest if missing)', metavar: 'FILE', desc: 'the report reviewed; its SHA-256 goes into the record' },
  { name: 'json', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print the record as JSON' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export async function runReview(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, REVIEW_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit review DIR --reviewer NAME --decision approve|reject [--note TEXT] [--key KEY.pem]', 'Appends a review record (reviewer, time, decision, note, the manifest id, the SHA-256 of the report) to\nDIR/geoedit-reviews.jsonl, never rewriting earlier records. Each record links to the previous one by hash; with --key\nit is signed (Ed25519). Refuses (exit 2, nothing written) when the manifest does not match its id or the log does\nnot check out. Concurrent reviews of one directory are serialised by a lock: none is lost.', REVIEW_FLAGS));
      return EXIT.OK;
    }
    const dir = onePositional(positionals);
    const decision = needString(values, 'decision');
    if (decision !== 'approve' && decision !== 'reject') throw new UsageError(`Expected 'approve' or 'reject' for --decision but received '${decision}'`);
    const rec = await review(dir, {
      reviewer: needString(values, 'reviewer'), decision,
      ...(typeof values.note === 'string' ? { note: values.note } : {}),
      ...(typeof values.key === 'string' ? { key: values.key } : {}),
      ...(typeof values.report === 'string' ? { report: values.report } : {}),
    });
    if (values.json) process.stdout.write(JSON.stringify(rec, null, 2) + '\n');
    else process.stdout.write(safeText(`review ${rec.seq} recorded: ${rec.reviewer} ${rec.decision}s manifest ${rec.manifestId}${rec.signature ? ` (signed, key ${rec.key!.fingerprint.slice(0, 16)}…)` : ' (unsigned)'}; report ${rec.report?.file} sha256 ${rec.report?.sha256.slice(0, 16)}…`) + '\n');
    return EXIT.OK;
  } catch (e) {
    return govError(e, 'review');
  }
}
