// geoedit verify DIR [--inputs] [--trusted-keys KEYDIR] [--json]: exit 0, or 2 naming each problem.
import { verifyOutput } from '../governance/verify';
import { EXIT, fmtBytes, helpText, parse, type OptSpec } from './common';
import { govError, onePositional } from './gov-common';

export const VERIFY_FLAGS: OptSpec[] = [
  { name: 'inputs', type: 'boolean', kind: 'boolean', default: 'off', desc: 'also re-hash the recorded inputs whose paths still exist' },
  { name: 'trusted-keys', type: 'string', kind: 'string', default: 'none (signatures checked against the key each record carries)', metavar: 'KEYDIR', desc: 'folder of trusted Ed25519 public keys (SPKI .pem); every review record must then be validly signed by one of them' },
  { name: 'allow-unsigned', type: 'boolean', kind: 'boolean', default: 'off', desc: 'with --trusted-keys: accept unsigned review records (they are listed, not counted as signed)' },
  { name: 'json', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print the whole result as JSON' },
  { name: 'quiet', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print problems only' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export async function runVerify(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, VERIFY_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit verify DIR [--inputs] [--trusted-keys KEYDIR]', 'Checks that DIR is the output its manifest describes: the manifest matches its id, every output file matches its\nrecorded SHA-256 (none missing, none extra), the evaluation log and the review log are intact (hash chain, manifest\nid, signatures). Streams the files (bounded memory) and changes nothing. Exit 0: verified; 2: each problem named.', VERIFY_FLAGS));
      return EXIT.OK;
    }
    const dir = onePositional(positionals);
    const r = await verifyOutput(dir, {
      inputs: values.inputs === true,
      ...(typeof values['trusted-keys'] === 'string' ? { trustedKeys: values['trusted-keys'] } : {}),
      allowUnsigned: values['allow-unsigned'] === true,
    });
    if (values.json) {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    } else {
      const out: string[] = [];
      if (!values.quiet) {
        out.push(`manifest ${r.id ?? '(no id)'}: ${r.idMatches ? 'matches its id' : 'DOES NOT match its id'}`);
        out.push(`output files: ${r.files.checked} checked (${fmtBytes(r.files.bytes)}), ${r.files.changed.length} changed, ${r.files.missing.length} missing, ${r.files.extra.length} extra`);
        if (r.inputs) out.push(`inputs: ${r.inputs.checked} checked, ${r.inputs.changed.length} changed${r.inputs.absent.length ? `, ${r.inputs.absent.length} no longer present (not checked)` : ''}${r.inputs.unhashed.length ? `, ${r.inputs.unhashed.length} recorded without a hash` : ''}`);
        out.push(`evaluations: ${r.evaluations.entries}`);
        const valid = r.reviews.records.filter((x) => x.status === 'valid').length;
        out.push(`reviews: ${r.reviews.records.length} record${r.reviews.records.length === 1 ? '' : 's'}, ${valid} valid${r.reviews.records.length ? ` (${r.reviews.records.filter((x) => x.signed).length} signed)` : ''}`);
        for (const s of r.reviews.signedBy) out.push(`  signed by trusted key ${s.key}: ${s.reviewer} (${s.decision}, record ${s.seq})`);
      }
      for (const p of r.problems) out.push(`${p.code}: ${p.message}`);
      out.push(r.ok ? `verified: ${r.dir}` : `NOT verified: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} in ${r.dir}`);
      (r.ok ? process.stdout : process.stderr).write(out.join('\n') + '\n');
    }
    return r.ok ? EXIT.OK : EXIT.BAD_INPUT;
  } catch (e) {
    return govError(e, 'verify');
  }
}
