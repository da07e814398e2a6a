// geoedit log DIR [--json]: the chain of edits ending at DIR, newest first.
import { readLineage, type LineageEntry } from '../governance/lineage';
import { EXIT, helpText, parse, safeText, type OptSpec } from './common';
import { govError, onePositional } from './gov-common';

export const LOG_FLAGS: OptSpec[] = [
  { name: 'json', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print the chain as a JSON array, newest first (each entry: id, parent id or null, date, kind, inputs, parameters, totals, evaluations, reviews)' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

function pct(n: unknown, rows: unknown): string {
  return typeof n === 'number' && typeof rows === 'number' && rows > 0 ? `${((100 * n) / rows).toFixed(1)}%` : '–';
}

export function formatEntry(e: LineageEntry, i: number): string {
  const t = e.totals as { edited?: number; tensors?: number; modules?: number; rows?: number; counts?: Record<string, number>; energyKept?: number | null };
  const params = Object.entries(e.parameters).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : JSON.stringify(v)}`).join(' ');
  const lines = [
    `${i === 0 ? 'edit' : 'parent'} ${e.id}${e.available ? '' : '  (directory gone: from the child\'s record)'}${e.idMatches === false ? '  (MANIFEST EDITED: content does not match the id)' : e.idMatches === null && e.available ? '  (written before lineage: no stored id; this is its content hash)' : ''}`,
    `  parent:     ${e.parent ?? 'none'}`,
    `  date:       ${e.date ?? '–'}   kind: ${e.kind}${e.dir ? `   dir: ${e.dir}` : ''}`,
  ];
  if (Object.keys(e.inputs).length) lines.push(`  inputs:     ${Object.entries(e.inputs).map(([r, p]) => `${r}=${p}`).join('  ')}`);
  lines.push(`  parameters: strategy ${e.strategy ?? '–'}${params ? `, ${params}` : ', defaults otherwise'}`);
  if (t.rows !== undefined) {
    lines.push(`  totals:     ${t.edited ?? t.modules ?? '–'} ${t.modules !== undefined ? 'modules' : `of ${t.tensors ?? '–'} tensors`} edited, ${t.rows} rows: orthogonal ${pct(t.counts?.orthogonal, t.rows)}, synergy ${pct(t.counts?.synergy, t.rows)}, conflict ${pct(t.counts?.conflict, t.rows)}; energy kept ${typeof t.energyKept === 'number' ? `${(100 * t.energyKept).toFixed(1)}%` : '–'}`);
  }
  if (e.rollout) {
    const lab = (o: Record<string, unknown>) => Object.entries(o).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : v}`).join(', ');
    const r = e.rollout;
    lines.push(`  rollout:    ${r.stages.map((s, k) => `stage ${k + 1} (${lab(s.options)}) ${s.passed ? 'passed' : 'FAILED'}`).join('; ')}; kept stage ${r.chosen === null ? '–' : r.chosen + 1}`);
  }
  for (const ev of e.evaluations) {
    lines.push(`  evaluation ${ev.seq}: ${ev.time} ${ev.scorer}: ${Object.entries(ev.metrics).map(([k, v]) => `${k} ${Number(v.toPrecision(6))}`).join(', ')}${ev.passed === null ? '' : ev.passed ? ' (gates passed)' : ' (a gate FAILED)'}`);
  }
  for (const r of e.reviews) lines.push(`  review ${r.seq}: ${r.time} ${r.reviewer}: ${r.decision}${r.note ? ` "${r.note}"` : ''} (${r.signed ? `signed, key ${r.keyFingerprint?.slice(0, 16)}…` : 'unsigned'})`);
  if (!e.evaluations.length) lines.push('  evaluations: none');
  if (!e.reviews.length && e.available) lines.push('  reviews:    none');
  return lines.map(safeText).join('\n');
}

export async function runLog(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, LOG_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit log DIR [--json]', 'Prints the chain of edits that produced DIR, newest first: id, parent, date, kind, inputs, the parameters that differ\nfrom the defaults, totals, evaluations and reviews. A parent is read from the directory its child recorded while that\ndirectory still holds the manifest with that id; otherwise from the child\'s record of it.', LOG_FLAGS));
      return EXIT.OK;
    }
    const chain = readLineage(onePositional(positionals));
    if (values.json) process.stdout.write(JSON.stringify(chain, null, 2) + '\n');
    else process.stdout.write(chain.map(formatEntry).join('\n\n') + '\n');
    return EXIT.OK;
  } catch (e) {
    return govError(e, 'log');
  }
}
