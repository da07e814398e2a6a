#!/usr/bin/env node
// Markdown tables from a bench/results/quality-*.json(.xz) report: per regime and method, the best
// Locality at Reliability >= 0.99x / 0.95x of plain fine-tuning (mean ± sd over seeds) and the
// paired gain over plain fine-tuning (same seed, mean ± sd), with the setting that reached it.
// Usage: node scripts/quality/table.js bench/results/quality-YYYY-MM-DD.json.xz
const { readReport } = require('./read-report');
const rep = readReport(process.argv[2]);
const fams = ['task-arithmetic', 'forget-then-learn', 'geoedit', 'geoedit-paper', 'random-mask', 'shrinkage'];
const names = { 'task-arithmetic': 'plain fine-tuning', 'forget-then-learn': 'F-Learning (λ)', geoedit: 'GeoEdit (κ, γ)', 'geoedit-paper': "GeoEdit 'paper' (κ)", 'random-mask': 'control: random row mask', shrinkage: 'control: uniform shrinkage' };
const ms = (xs) => {
  if (!xs.length) return null;
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
  return { m, sd, n: xs.length };
};
const fmt = (s, sign) => (s ? `${sign && s.m >= 0 ? '+' : ''}${s.m.toFixed(3)} ± ${s.sd.toFixed(3)}` : '—');
for (const [regime, runs] of Object.entries(rep.sweeps)) {
  console.log(`\n**${regime}** — plain fine-tuning: R ${fmt(ms(runs.map((r) => r.reference.reliability)))}, G ${fmt(ms(runs.map((r) => r.reference.generality)))}, L ${fmt(ms(runs.map((r) => r.reference.locality)))}\n`);
  console.log('| method | L at R ≥ 0.99× | gain (paired) | L at R ≥ 0.95× | gain (paired) | settings reached (0.95×, per seed) |');
  console.log('|---|---|---|---|---|---|');
  for (const f of fams) {
    const cells = [];
    let labels = [];
    for (const key of ['at099', 'at095']) {
      const got = runs.map((r) => [r.frontiers[f][key], r.reference.locality]).filter(([e]) => e);
      const L = ms(got.map(([e]) => e.locality));
      const d = ms(got.map(([e, ref]) => e.locality - ref));
      const note = got.length < runs.length ? ` (${got.length}/${runs.length} seeds)` : '';
      cells.push(L ? fmt(L) + note : 'not reached', d ? fmt(d, true) : '—');
      if (key === 'at095') labels = got.map(([e]) => e.label.replace(/ \(share [^)]*\)/, '').replace(/ \(matched to [^)]*\)/, ' (matched)'));
    }
    console.log(`| ${names[f]} | ${cells.join(' | ')} | ${labels.join('; ') || '—'} |`);
  }
}
