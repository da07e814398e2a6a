#!/usr/bin/env node
// Reads a bench/results/quality-*.json(.xz) report and ranks every geoedit (kappa, keepOrthogonal)
// point, and every other method's knob, over all regimes and seeds: mean Locality, mean
// Reliability relative to plain fine-tuning, and the worst case. The defaults are the geoedit
// point with the best mean Locality among those that keep Reliability >= 0.95x in every run.
// Usage: node scripts/quality/calibrate.js bench/results/quality-YYYY-MM-DD.json.xz
const { readReport } = require('./read-report');
const rep = readReport(process.argv[2]);
const rows = new Map();
for (const [regime, runs] of Object.entries(rep.sweeps)) {
  for (const run of runs) {
    const ref = run.reference;
    for (const p of run.points) {
      const key = `${p.family} | ${p.label.replace(/ \(share [^)]*\)/, '').replace(/ \(matched to [^)]*\)/, ' (matched)')}`;
      const k = p.family === 'shrinkage' && /matched/.test(p.label) ? `shrinkage | matched to ${p.label.match(/matched to (.*)\)/)[1]}` : key;
      if (!rows.has(k)) rows.set(k, { L: [], rRatio: [], G: [], dL: [], regimes: new Set() });
      const r = rows.get(k);
      r.L.push(p.scores.locality);
      r.G.push(p.scores.generality);
      r.rRatio.push(ref.reliability > 0 ? p.scores.reliability / ref.reliability : 1);
      r.dL.push(p.scores.locality - ref.locality);
      r.regimes.add(regime);
    }
  }
}
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const out = [...rows].map(([k, r]) => ({ k, L: mean(r.L), dL: mean(r.dL), G: mean(r.G), R: mean(r.rRatio), Rmin: Math.min(...r.rRatio), n: r.L.length }));
out.sort((a, b) => b.dL - a.dL);
console.log('method | knob'.padEnd(58), 'meanL  ΔL vs FT  meanG  R/R_FT  min R/R_FT  n');
for (const o of out) console.log(o.k.padEnd(58), o.L.toFixed(3), (o.dL >= 0 ? '+' : '') + o.dL.toFixed(3), '  ', o.G.toFixed(3), o.R.toFixed(3), '  ', o.Rmin.toFixed(3), '    ', o.n);
const geo = out.filter((o) => o.k.startsWith('geoedit |'));
const ok95 = geo.filter((o) => o.Rmin >= 0.95 - 1e-9).sort((a, b) => b.L - a.L)[0];
const ok99 = geo.filter((o) => o.R >= 0.99 - 1e-9).sort((a, b) => b.L - a.L)[0];
console.log('\nbest geoedit point keeping R >= 0.95x in every run:', ok95 && ok95.k, ok95 && ok95.L.toFixed(3));
console.log('best geoedit point with mean R >= 0.99x:', ok99 && ok99.k, ok99 && ok99.L.toFixed(3));
