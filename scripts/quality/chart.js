#!/usr/bin/env node
// Draws docs/quality.svg from a bench/results/quality-*.json(.xz) report: per regime, the best
// Locality each method reaches at Reliability >= 0.99x and >= 0.95x of plain fine-tuning
// (mean ± sd over seeds; a missing bar means the level was not reached in every seed).
// Usage: node scripts/quality/chart.js bench/results/quality-YYYY-MM-DD.json.xz [docs/quality.svg]
const fs = require('node:fs');
const { readReport } = require('./read-report');

const file = process.argv[2];
const outFile = process.argv[3] || 'docs/quality.svg';
if (!file) { console.error('usage: node scripts/quality/chart.js REPORT.json [OUT.svg]'); process.exit(2); }
const rep = readReport(file);
const fams = ['task-arithmetic', 'forget-then-learn', 'geoedit', 'geoedit-paper', 'random-mask', 'shrinkage'];
const names = { 'task-arithmetic': 'plain fine-tuning', 'forget-then-learn': 'F-Learning (best λ)', geoedit: 'GeoEdit (best κ, γ)', 'geoedit-paper': "GeoEdit 'paper' preset", 'random-mask': 'control: random row mask', shrinkage: 'control: uniform shrinkage' };
const colors = { 'task-arithmetic': '#888888', 'forget-then-learn': '#e69f00', geoedit: '#0072b2', 'geoedit-paper': '#56b4e9', 'random-mask': '#cc79a7', shrinkage: '#009e73' };
const regimes = Object.keys(rep.summary);
const levels = [['at099', 'Reliability ≥ 0.99 × plain fine-tuning'], ['at095', 'Reliability ≥ 0.95 × plain fine-tuning']];
const W = 980, panelH = 260, top = 90, left = 60, right = 20, gap = 60;
const H = top + levels.length * (panelH + gap) + 40;
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n`;
s += `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Best Locality at matched Reliability (fact-memory model, ${rep.config.seeds.length} seeds, mean ± sd)</text>\n`;
s += `<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(rep.date.slice(0, 10))} · ${rep.config.world.subjects * rep.config.world.relations} facts, ${Math.round(rep.config.world.editShare * 100)}% edited, d=${rep.config.model.d}, h=${rep.config.model.h} · bars missing = level not reached in every seed</text>\n`;
// legend
fams.forEach((f, i) => {
  const lx = left + (i % 3) * 300, ly = 50 + Math.floor(i / 3) * 16;
  s += `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${colors[f]}"/><text x="${lx + 16}" y="${ly + 10}">${esc(names[f])}</text>\n`;
});
levels.forEach(([key, title], li) => {
  const y0 = top + 20 + li * (panelH + gap);
  const plotW = W - left - right;
  let lo = 1, hi = 0;
  for (const r of regimes) for (const f of fams) { const st = rep.summary[r].families[f][key]; if (st.n) { lo = Math.min(lo, st.mean - st.sd); hi = Math.max(hi, st.mean + st.sd); } }
  lo = Math.max(0, Math.floor((lo - 0.05) * 10) / 10); hi = Math.min(1, Math.ceil((hi + 0.02) * 10) / 10);
  const yOf = (v) => y0 + panelH - ((v - lo) / (hi - lo)) * panelH;
  s += `<text x="${left}" y="${y0 - 8}" font-weight="bold">${esc(title)}</text>\n`;
  for (let v = lo; v <= hi + 1e-9; v += 0.1) {
    s += `<line x1="${left}" x2="${W - right}" y1="${yOf(v)}" y2="${yOf(v)}" stroke="#ddd"/><text x="${left - 6}" y="${yOf(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>\n`;
  }
  s += `<text transform="translate(16 ${y0 + panelH / 2}) rotate(-90)" text-anchor="middle">Locality</text>\n`;
  const gw = plotW / regimes.length, bw = (gw - 24) / fams.length;
  regimes.forEach((r, ri) => {
    const gx = left + ri * gw + 12;
    fams.forEach((f, fi) => {
      const st = rep.summary[r].families[f][key];
      const x = gx + fi * bw;
      if (st.n === rep.summary[r].runs && st.n > 0) {
        s += `<rect x="${x.toFixed(1)}" y="${yOf(st.mean).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(y0 + panelH - yOf(st.mean)).toFixed(1)}" fill="${colors[f]}"><title>${esc(`${r} · ${names[f]}: ${st.mean.toFixed(3)} ± ${st.sd.toFixed(3)}`)}</title></rect>\n`;
        const cx = x + (bw - 2) / 2;
        s += `<line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${yOf(Math.min(hi, st.mean + st.sd)).toFixed(1)}" y2="${yOf(Math.max(lo, st.mean - st.sd)).toFixed(1)}" stroke="black"/>\n`;
      }
    });
    s += `<text x="${(gx + (gw - 24) / 2).toFixed(1)}" y="${y0 + panelH + 16}" text-anchor="middle">${esc(r)}</text>\n`;
  });
});
s += '</svg>\n';
fs.mkdirSync(require('node:path').dirname(outFile), { recursive: true });
fs.writeFileSync(outFile, s);
console.log(`wrote ${outFile}`);
