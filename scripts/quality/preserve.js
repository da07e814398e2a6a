#!/usr/bin/env node
// Preservation statistics in the quality benchmark (QUALITY.md step 4): per regime and seed, the
// frontiers of plain fine-tuning, shrinkage, GeoEdit (defaults), `preserve` (rho × mu),
// `preserve-no-c1`, `preserve+geoedit` and the random-subspace control, all through editTensor's
// `preserve`; plus `preserve` with a small preserved sample (--small-facts facts). Needs `npm run build:ts`.
// Usage: node scripts/quality/preserve.js [--fast] [--seeds N] [--regime A,B] [--small-facts N] [--cache-dir DIR] [--out FILE]
const path = require('node:path');
const fs = require('node:fs');
const { FAST_CONFIG, DEMO_CONFIG, buildSeed, configHash, defaultCacheRoot, makeSeedScorer, preservationStatistics } = require('../../dist/cjs/quality/suite.js');
const { REGIMES } = require('../../dist/cjs/quality/train.js');
const { sweepFrontier, summarizeSweeps } = require('../../dist/cjs/quality/frontier.js');
const { DEFAULTS } = require('../../dist/cjs/options/index.js');

const argv = process.argv.slice(2);
const arg = (f, d) => { const i = argv.indexOf(f); return i >= 0 ? argv[i + 1] : d; };
const fast = argv.includes('--fast');
const base = fast ? FAST_CONFIG : DEMO_CONFIG;
const seeds = Array.from({ length: Number(arg('--seeds', '3')) }, (_, i) => i + 1);
const regimes = arg('--regime', REGIMES.map((r) => r.name).join(',')).split(',');
const smallFacts = Number(arg('--small-facts', '25'));
const cacheDir = arg('--cache-dir', defaultCacheRoot());
const date = new Date().toISOString().slice(0, 10);
const out = arg('--out', path.join(__dirname, '..', '..', 'bench', 'results', `quality-preserve-${date}${fast ? '-fast' : ''}.json`));
const buildCfg = { ...base, regimes: REGIMES.map((r) => r.name) };
const root = path.join(cacheDir, `demo-${configHash(buildCfg)}`);
const grids = { scale: [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5], kappa: [DEFAULTS.kappa], keepOrthogonal: [DEFAULTS.keepOrthogonal] };
const fams = ['task-arithmetic', 'shrinkage', 'geoedit', 'preserve', 'preserve-no-c1', 'preserve+geoedit', 'random-subspace'];
const log = (s) => process.stderr.write(`[preserve ${((Date.now() - t0) / 1000).toFixed(0)}s] ${s}\n`);
const t0 = Date.now();

(async () => {
  const sweeps = {}, small = {}, samples = [];
  for (const s of seeds) {
    const { models } = await buildSeed(buildCfg, root, s, log);
    const { score } = await makeSeedScorer(buildCfg, models);
    const st = await preservationStatistics(buildCfg, models);
    const sm = await preservationStatistics(buildCfg, models, { facts: smallFacts });
    samples.push({ seed: s, facts: st.facts, prompts: st.prompts, editPrompts: st.editPrompts, smallFacts: sm.facts, smallPrompts: sm.prompts });
    for (const rn of regimes) {
      log(`seed ${s} ${rn}`);
      (sweeps[rn] ??= []).push(await sweepFrontier({ source: models.regimes[rn].source, score: (w) => score(w), grids, families: fams, seed: s, preserve: st, matchedShrinkage: false }));
      (small[rn] ??= []).push(await sweepFrontier({ source: models.regimes[rn].source, score: (w) => score(w), grids: { scale: [] }, families: ['task-arithmetic', 'preserve'], seed: s, preserve: sm }));
    }
  }
  const summary = {}, smallSummary = {};
  for (const rn of regimes) { summary[rn] = summarizeSweeps(sweeps[rn]); smallSummary[rn] = summarizeSweeps(small[rn]); }
  const strip = (rs) => rs.map((r) => ({ reference: r.reference, frontiers: r.frontiers, points: r.points.map((p) => ({ family: p.family, label: p.label, knobs: p.knobs, scores: p.scores })) }));
  const rep = { date: new Date().toISOString(), config: { ...base, seeds, regimes }, samples, sweeps: Object.fromEntries(regimes.map((r) => [r, strip(sweeps[r])])), small: Object.fromEntries(regimes.map((r) => [r, strip(small[r])])), summary, smallSummary, seconds: (Date.now() - t0) / 1000 };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(rep) + '\n');
  const f = (x) => (x.n ? `${x.mean.toFixed(3)}±${x.sd.toFixed(3)}${x.n < seeds.length ? ` (${x.n}/${seeds.length})` : ''}` : '—');
  console.log(`| regime | TA L | shrinkage | geoedit | preserve | preserve (no C1) | preserve+geoedit | random subspace | preserve, ${samples[0].smallPrompts} prompts |`);
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const rn of regimes) {
    const su = summary[rn].families, sm = smallSummary[rn].families;
    for (const lvl of ['at099', 'at095']) console.log(`| ${rn} ${lvl === 'at099' ? '0.99×' : '0.95×'} | ${f(summary[rn].reference.locality)} | ${f(su.shrinkage[lvl])} | ${f(su.geoedit[lvl])} | ${f(su.preserve[lvl])} | ${f(su['preserve-no-c1'][lvl])} | ${f(su['preserve+geoedit'][lvl])} | ${f(su['random-subspace'][lvl])} | ${f(sm.preserve[lvl])} |`);
  }
  console.log(JSON.stringify(samples));
  log(`wrote ${out}`);
})().catch((e) => { console.error(e); process.exit(1); });
