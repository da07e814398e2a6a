#!/usr/bin/env node
// The quality benchmark (QUALITY.md protocol) on the demo's fact-memory model: every regime,
// every knob grid, 3 seeds, frontiers at Reliability >= 0.99x / 0.95x of plain fine-tuning, with
// the random-mask and uniform-shrinkage controls. Needs `npm run build` first.
// Usage: node scripts/quality/sweep.js [--seeds N] [--cache-dir DIR] [extra geoedit-demo flags]
// Writes bench/results/quality-<YYYY-MM-DD>.json and prints the frontier table (commit it as .json.xz:
// `xz -9 bench/results/quality-<date>.json`; scripts/quality/{table,chart,calibrate}.js read either).
const path = require('node:path');
const { runDemo } = require('../../dist/cjs/cli/demo.js');

const argv = process.argv.slice(2);
const date = new Date().toISOString().slice(0, 10);
const out = path.join(__dirname, '..', '..', 'bench', 'results', `quality-${date}.json`);
const args = ['--full', '--report-json', out];
if (!argv.includes('--seeds')) args.push('--seeds', '3');
runDemo([...args, ...argv]).then((code) => {
  if (code === 0) process.stderr.write(`wrote ${out}\n`);
  process.exit(code);
});
