// The governance sections of the HTML report (lineage, staged rollout, evaluations with their
// gates, reviews); lib/report.ts places them. Re-rendering a directory's report: render.ts.
import { readLineage, type Manifest, type ReviewSummary } from './lineage';
import type { EvaluationEntry } from './evaluate';

function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function num(x: unknown): string {
  return typeof x === 'number' && Number.isFinite(x) ? String(Number(x.toPrecision(6))) : '–';
}

export interface GovernanceContext {
  /** The output directory (for the lineage walk); null: the manifest alone. */
  dir?: string | null;
  reviews?: ReviewSummary[];
}

/** Lineage, evaluations and reviews as HTML sections ('' for a manifest without lineage). */
export function governanceSections(m: Manifest, ctx: GovernanceContext = {}): string {
  const parts: string[] = [];
  if (typeof m.id === 'string') {
    let chain: Array<{ id: string; date: string | null; kind: string; strategy: string | null; parameters: Record<string, unknown>; available: boolean }> = [];
    try {
      chain = ctx.dir ? readLineage(ctx.dir) : [];
    } catch { /* the manifest alone */ }
    if (!chain.length) {
      chain = [{ id: m.id, date: m.createdAt ?? null, kind: String(m.kind), strategy: ((m.parameters ?? {}) as { strategy?: string }).strategy ?? null, parameters: {}, available: true }];
      if (m.parent) chain.push({ id: m.parent.id, date: m.parent.createdAt, kind: m.parent.kind, strategy: (m.parent.summary?.strategy as string) ?? null, parameters: (m.parent.summary?.parameters ?? {}) as Record<string, unknown>, available: false });
    }
    const rows = chain.map((e, i) => `<tr><td>${i === 0 ? '<b>this output</b>' : `parent ${i}`}</td><td><code>${esc(e.id.slice(0, 16))}…</code></td><td>${esc(e.date ?? '–')}</td><td>${esc(e.kind)}</td><td>${esc(e.strategy ?? '–')}</td><td>${esc(Object.entries(e.parameters).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`).join(' ') || 'defaults')}</td><td>${e.available ? '' : 'directory gone: recorded summary'}</td></tr>`).join('');
    const files = (m.outputFiles ?? []).map((f) => `<tr><td><code>${esc(f.name)}</code></td><td>${f.size}</td><td><code>${esc(f.sha256)}</code></td></tr>`).join('');
    parts.push(`<section><h2>Lineage</h2><p>Manifest id <code>${esc(m.id)}</code> (SHA-256 of the manifest's canonical JSON, without the evaluation log). ${m.parent ? `Parent: <code>${esc(m.parent.id)}</code> (the ${esc(m.parent.role)} input ${esc(m.parent.path)}).` : 'No parent: the inputs hold no geoedit manifest.'} <code>geoedit verify DIR</code> re-hashes the files below.</p>
<table><tr><th></th><th>id</th><th>date</th><th>kind</th><th>strategy</th><th>parameters (non-default)</th><th></th></tr>${rows}</table>
<h3>Output files</h3><table><tr><th>file</th><th>bytes</th><th>SHA-256</th></tr>${files}</table></section>`);
  }
  const ro = m.rollout as { stages?: Array<{ index: number; options: Record<string, unknown>; metrics: Record<string, number> | null; gates: EvaluationEntry['gates']; passed: boolean; error?: string }>; chosen?: number | null } | undefined;
  if (ro?.stages) {
    const rows = ro.stages.map((s) => `<tr><td>${s.index + 1}${ro.chosen === s.index ? ' <b>(output)</b>' : ''}</td><td><code>${esc(JSON.stringify(s.options))}</code></td><td>${esc(s.metrics ? Object.entries(s.metrics).map(([k, v]) => `${k} ${num(v)}`).join(', ') : s.error ?? '–')}</td><td>${(s.gates ?? []).map((g) => `<span style="color:${g.pass ? '#2e8b57' : '#c0392b'}">${esc(g.expr)}: ${num(g.value)} ${g.pass ? '✓' : '✗'}</span>`).join('<br>')}</td><td>${s.passed ? 'passed' : 'failed'}</td></tr>`).join('');
    parts.push(`<section><h2>Staged rollout</h2><table><tr><th>stage</th><th>options</th><th>metrics</th><th>gates</th><th></th></tr>${rows}</table></section>`);
  }
  const evs = Array.isArray(m.evaluations) ? (m.evaluations as EvaluationEntry[]) : [];
  if (evs.length) {
    const rows = evs.map((e) => `<tr><td>${e.seq}</td><td>${esc(e.time)}</td><td><code>${esc(e.scorer)}</code></td><td>${esc(Object.entries(e.metrics ?? {}).map(([k, v]) => `${k} ${num(v)}`).join(', '))}</td><td>${(e.gates ?? []).map((g) => `<span style="color:${g.pass ? '#2e8b57' : '#c0392b'}">${esc(g.expr)}: ${num(g.value)} ${esc(g.op)} ${num(g.threshold)} ${g.pass ? '✓' : '✗'}</span>`).join('<br>') || '–'}</td><td><b>${e.gates?.length ? (e.passed ? 'passed' : 'FAILED') : '–'}</b></td><td>${num(e.durationMs / 1000)} s</td></tr>`).join('');
    parts.push(`<section><h2>Evaluations</h2><table><tr><th>#</th><th>time</th><th>scorer</th><th>metrics</th><th>gates</th><th>result</th><th>took</th></tr>${rows}</table></section>`);
  } else if (typeof m.id === 'string') {
    parts.push(`<section><h2>Evaluations</h2><p>None yet: <code>geoedit evaluate DIR --scorer CMD --gate 'metric&gt;=x'</code>.</p></section>`);
  }
  const reviews = ctx.reviews ?? [];
  if (reviews.length) {
    const rows = reviews.map((r) => `<tr><td>${r.seq}</td><td>${esc(r.time)}</td><td>${esc(r.reviewer)}</td><td><b>${esc(r.decision)}</b></td><td>${esc(r.note ?? '')}</td><td>${r.signed ? `signed (key <code>${esc((r.keyFingerprint ?? '').slice(0, 16))}…</code>)` : 'unsigned'}</td></tr>`).join('');
    parts.push(`<section><h2>Reviews</h2><p>From the review log beside the manifest; <code>geoedit verify DIR --trusted-keys KEYDIR</code> checks the signatures.</p><table><tr><th>#</th><th>time</th><th>reviewer</th><th>decision</th><th>note</th><th>signature</th></tr>${rows}</table></section>`);
  } else if (typeof m.id === 'string') {
    parts.push(`<section><h2>Reviews</h2><p>None yet: <code>geoedit review DIR --reviewer NAME --decision approve --key KEY.pem</code>.</p></section>`);
  }
  return parts.join('\n');
}
