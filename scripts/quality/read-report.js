// Reads a quality report written by scripts/quality/sweep.js: plain JSON, or JSON compressed with xz
// (bench/results/quality-*.json.xz, as committed), which is decompressed with the system's `xz -dc`.
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

function readReport(file) {
  if (!file) throw new Error('no report file given (bench/results/quality-YYYY-MM-DD.json or .json.xz)');
  const text = file.endsWith('.xz') ? execFileSync('xz', ['-dc', file], { encoding: 'utf8', maxBuffer: 1 << 30 }) : fs.readFileSync(file, 'utf8');
  return JSON.parse(text);
}

module.exports = { readReport };
