#!/usr/bin/env node
// npm run bench: effective GB/s (bytes read + written) of editTensor for [4096,4096] and
// [16384,4096], f32 and bf16, density 1 and 0.2, against — in the same run — the machine's own
// memory bandwidth (a STREAM-style triad measured here), a straightforward TS implementation,
// and numpy (when python3 with numpy is present). Prints a table, writes bench/results/*.json.
//   GEOEDIT_BENCH_QUICK=1  only [4096,4096] (for a fast look)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist', 'cjs');
if (!fs.existsSync(path.join(dist, 'index.js'))) {
  console.error('bench: build first (npm run build)');
  process.exit(1);
}
const geo = require(path.join(dist, 'index.js'));
const { loadNative } = require(path.join(dist, 'native', 'index.js'));
const native = loadNative();

const QUICK = process.env.GEOEDIT_BENCH_QUICK === '1';
const SHAPES = QUICK ? [[4096, 4096]] : [[4096, 4096], [16384, 4096]];
const DTYPES = ['f32', 'bf16'];
const DENSITIES = [1, 0.2];
const REPS = 5;

function median(xs) { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; }
function now() { return Number(process.hrtime.bigint()) / 1e9; }

function makeTensor(rows, cols, dtype, seed) {
  const n = rows * cols;
  let s = seed >>> 0;
  const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296 - 0.5; };
  if (dtype === 'f32') { const d = new Float32Array(n); for (let i = 0; i < n; i++) d[i] = next(); return { dtype, shape: [rows, cols], data: d }; }
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  const d = new Uint16Array(n);
  for (let i = 0; i < n; i++) { f[0] = next(); d[i] = u[0] >>> 16; }
  return { dtype, shape: [rows, cols], data: d };
}

// The straightforward TS implementation a user might write (SPEC §3, geoedit defaults).
function tsEdit(base, old, nw, density) {
  const [rows, cols] = base.shape;
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  const dec = (t, i) => { if (t.dtype === 'f32') return t.data[i]; u[0] = t.data[i] << 16; return f[0]; };
  const enc = (x) => { f[0] = x; const v = u[0]; return ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff; };
  const out = base.dtype === 'f32' ? new Float32Array(rows * cols) : new Uint16Array(rows * cols);
  const a = new Float32Array(cols), b = new Float32Array(cols), b0 = new Float32Array(cols);
  const k = Math.max(1, Math.ceil(density * cols));
  const t = 1.5 / Math.sqrt(cols);
  for (let i = 0; i < rows; i++) {
    let dot = 0, na = 0, nb = 0;
    for (let j = 0; j < cols; j++) {
      const x = dec(base, i * cols + j);
      b0[j] = x;
      a[j] = Math.fround(dec(old, i * cols + j) - x);
      b[j] = Math.fround(dec(nw, i * cols + j) - x);
      dot += a[j] * b[j]; na += a[j] * a[j]; nb += b[j] * b[j];
    }
    const cos = na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
    const cn = Math.abs(cos) <= t ? 0.5 : 1;
    if (density < 1) {
      for (const v of [a, b]) {
        const idx = Array.from({ length: cols }, (_, j) => j).sort((x, y) => Math.abs(v[y]) - Math.abs(v[x]) || x - y);
        for (let r = k; r < cols; r++) v[idx[r]] = 0;
      }
    }
    for (let j = 0; j < cols; j++) {
      const y = Math.fround(b0[j] + Math.fround(cn * b[j]));
      out[i * cols + j] = base.dtype === 'f32' ? y : enc(y);
    }
  }
  return out;
}

function numpyAvailable() {
  try { execFileSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }); return true; } catch { return false; }
}

async function main() {
  const info = geo.info();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`geoedit ${info.version} bench — ${new Date().toISOString()} — ${cpu}, ${os.cpus().length} cores, simd ${info.simd}, threads ${info.threads}`);
  const triadN = 32 * 1024 * 1024; // 3 x 256 MiB of doubles, well past the caches
  const triad0 = await native._triad(triadN, 0, 5);
  const haveNumpy = numpyAvailable();
  const rows = [];
  for (const shape of SHAPES) {
    for (const dtype of DTYPES) {
      const [r, c] = shape;
      const inputs = { base: makeTensor(r, c, dtype, 1), old: makeTensor(r, c, dtype, 2), new: makeTensor(r, c, dtype, 3) };
      const bytes = r * c * (dtype === 'f32' ? 4 : 2) * 4; // 3 inputs read + 1 output written
      for (const density of DENSITIES) {
        const out = { dtype, shape, data: dtype === 'f32' ? new Float32Array(r * c) : new Uint16Array(r * c) };
        await geo.editTensor(inputs, { density, out });
        const times = [];
        for (let k = 0; k < REPS; k++) { const t0 = now(); await geo.editTensor(inputs, { density, out }); times.push(now() - t0); }
        const fresh = [];
        for (let k = 0; k < 3; k++) { const t0 = now(); await geo.editTensor(inputs, { density }); fresh.push(now() - t0); }
        const t0 = now(); tsEdit(inputs.base, inputs.old, inputs.new, density); const tsT = now() - t0;
        let npT = null;
        if (haveNumpy) {
          const res = execFileSync('python3', [path.join(__dirname, 'numpy_peer.py'), JSON.stringify([{ shape, dtype, density }]), '3'], { encoding: 'utf8', maxBuffer: 1 << 20 });
          npT = JSON.parse(res.trim().split('\n').pop()).seconds;
        }
        const gbps = bytes / median(times) / 1e9;
        const row = {
          shape: `[${shape.join(',')}]`, dtype, density,
          geoeditGBps: gbps, geoeditFreshOutGBps: bytes / median(fresh) / 1e9,
          tsGBps: bytes / tsT / 1e9, numpyGBps: npT ? bytes / npT / 1e9 : null,
        };
        rows.push(row);
        console.log(`  ${row.shape} ${dtype} density ${density}: ${gbps.toFixed(2)} GB/s`);
      }
    }
  }
  const triad1 = await native._triad(triadN, 0, 5);
  const triad = Math.max(triad0, triad1);
  console.log(`\nSTREAM-style triad (all ${info.threads} threads): ${triad.toFixed(1)} GB/s`);
  console.log('\n| shape | dtype | density | geoedit GB/s | × triad | fresh out GB/s | TS GB/s | × TS | numpy GB/s | × numpy | target |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  let allMet = true;
  for (const r of rows) {
    r.vsTriad = r.geoeditGBps / triad;
    r.vsTs = r.geoeditGBps / r.tsGBps;
    r.vsNumpy = r.numpyGBps ? r.geoeditGBps / r.numpyGBps : null;
    const target = r.density === 1 ? '≥0.7× triad, ≥8× numpy' : '≥0.3× triad';
    r.met = r.density === 1 ? r.vsTriad >= 0.7 && (r.vsNumpy === null || r.vsNumpy >= 8) : r.vsTriad >= 0.3;
    allMet = allMet && r.met;
    console.log(`| ${r.shape} | ${r.dtype} | ${r.density} | ${r.geoeditGBps.toFixed(2)} | ${r.vsTriad.toFixed(2)} | ${r.geoeditFreshOutGBps.toFixed(2)} | ${r.tsGBps.toFixed(3)} | ${r.vsTs.toFixed(0)} | ${r.numpyGBps ? r.numpyGBps.toFixed(2) : 'n/a'} | ${r.vsNumpy ? r.vsNumpy.toFixed(1) : 'n/a'} | ${target}: ${r.met ? 'met' : 'NOT met'} |`);
  }
  const result = {
    date: new Date().toISOString(), version: info.version, cpu, cores: os.cpus().length, simd: info.simd,
    threads: info.threads, loadavg: os.loadavg(), triadGBps: triad, numpy: haveNumpy, cases: rows, allTargetsMet: allMet,
  };
  fs.mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  const file = path.join(root, 'bench', 'results', `bench-${result.date.slice(0, 10)}${QUICK ? '-quick' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nload average during the run: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')}; written ${path.relative(root, file)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
