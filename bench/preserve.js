#!/usr/bin/env node
// npm run bench:preserve — preservation statistics (SPEC §3 step 0, issue 12 item 8):
//   * the row GEMM (x·P over both sides' rows, f32, Eigen per ISA on the shared pool) in GFLOP/s, as a
//     ratio to the machine's peak measured in the same run (an FMA loop of the same ISA on every thread
//     at once, best of short windows) and to numpy's matmul (OpenBLAS) on the same shapes;
//   * the operator's build (symmetry + PSD checks, f64 Cholesky of C0 + mu'C1 + lambda·I, the solve for
//     P: about 2.67·d³ f64 flops) against numpy's f64 solve (LAPACK gesv, the same 2.67·d³);
//   * a 7B-shaped estimate (32 layers; q/k/v/o 4096×4096, gate/up 11008×4096, down 4096×11008; q/k/v share
//     one statistic, gate/up another): the distinct operations of one layer measured, times 32;
//   * the memory of the statistics: f32 inputs per layer, the build's f64 work (2·8·d² + 4·d² bytes), the
//     retained operator (4·d²), and the process's peak RSS (VmHWM) around the largest build.
// Targets: GEMM >= 0.6x the measured peak, >= 1x numpy. The machine may be shared: the load average is
// printed at the start and the end; figures from a loaded machine are low and say so.
//   GEOEDIT_BENCH_QUICK=1  skips the 11008-wide statistic (its build takes about a minute on 2 cores)
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
const nativeModule = require(fs.existsSync(path.join(dist, 'native', 'index.js')) ? path.join(dist, 'native', 'index.js') : path.join(dist, 'native.js'));
const addon = nativeModule.loadNative();
const QUICK = process.env.GEOEDIT_BENCH_QUICK === '1';

function numpyAvailable() {
  try { execFileSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }); return true; } catch { return false; }
}
function vmHwm() {
  try { return Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024; } catch { return null; }
}
function resetHwm() {
  try { fs.writeFileSync('/proc/self/clear_refs', '5'); return true; } catch { return false; }
}
const GB = 1e9, MiB = 1 << 20;

function main() {
  const info = addon.info();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const started = new Date().toISOString();
  const loadStart = os.loadavg();
  console.log(`geoedit ${info.version} preservation bench — ${started} — ${cpu}, ${os.cpus().length} cores, simd ${info.simd}, threads ${info.threads}`);
  console.log(`load average at the start: ${loadStart.map((x) => x.toFixed(2)).join(', ')}${loadStart[0] > 1.5 ? '  (busy: other work shares the cores, figures will be low)' : ''}`);

  // The peak of each ISA (FMA loop on every thread at once), measured now.
  const peaks = {};
  for (const [lv, name] of [[0, 'scalar'], [1, 'avx2'], [2, 'avx512']]) {
    if (!info.simdSupported.includes(name)) continue;
    const r = addon._preserveBench({ n: 64, rows: 64, simd: lv, peakSeconds: 1 });
    peaks[name] = { all: r.peakGflops, one: r.peakGflops1, la: r.la };
    console.log(`  peak ${name} (Eigen copy '${r.la}'): ${r.peakGflops.toFixed(1)} GFLOP/s on ${r.threads} threads, ${r.peakGflops1.toFixed(1)} on one`);
  }
  const peak = peaks[info.simd].all;

  const haveNumpy = numpyAvailable();
  const cases = [
    { name: 'small', n: 1024, rows: 1024 },
    { name: 'q/k/v/o', n: 4096, rows: 4096 },
    { name: 'gate/up', n: 4096, rows: 11008 },
    ...(QUICK ? [] : [{ name: 'down', n: 11008, rows: 4096 }]),
  ];
  const rows = [];
  for (const c of cases) {
    resetHwm();
    const rss0 = vmHwm();
    const r = addon._preserveBench({ n: c.n, rows: c.rows, reps: 3, peakSeconds: 0.3 });
    const rss1 = vmHwm();
    let np = null;
    if (haveNumpy) {
      const solve = c.name !== 'gate/up' && (c.n <= 4096 || !QUICK);
      const out = execFileSync('python3', [path.join(__dirname, 'numpy_preserve.py'), JSON.stringify([{ n: c.n, rows: c.rows, solve }]), '3'], { encoding: 'utf8', maxBuffer: 1 << 20 });
      np = JSON.parse(out.trim().split('\n').pop());
    }
    const buildFlops = (8 / 3) * c.n ** 3;
    const row = {
      ...c,
      buildMs: r.buildMs, buildGflops: buildFlops / (r.buildMs * 1e-3) / GB,
      gemmMs: r.applyMs, gemmGflops: r.applyGflops, gemmVsPeak: r.applyGflops / peak, peakInRun: r.peakGflops,
      numpyGemmGflops: np ? r.gemmFlops / np.gemmSeconds / GB : null,
      numpySolveMs: np && np.solveSeconds !== null ? np.solveSeconds * 1e3 : null,
      operatorBytes: r.statBytes, workBytes: r.workBytes, peakRssBytes: rss1, rssBeforeBytes: rss0, blas: np ? np.blas : null,
    };
    row.gemmVsNumpy = row.numpyGemmGflops ? row.gemmGflops / row.numpyGemmGflops : null;
    row.buildVsNumpySolve = row.numpySolveMs ? row.numpySolveMs / row.buildMs : null;
    rows.push(row);
    console.log(`  ${c.name} [rows ${c.rows}, n ${c.n}]: GEMM ${row.gemmGflops.toFixed(1)} GFLOP/s (${row.gemmVsPeak.toFixed(2)}x peak${row.gemmVsNumpy ? `, ${row.gemmVsNumpy.toFixed(2)}x numpy` : ''}), build ${row.buildMs.toFixed(0)} ms${row.numpySolveMs ? ` (numpy solve ${row.numpySolveMs.toFixed(0)} ms)` : ''}`);
  }
  const by = (name) => rows.find((r) => r.name === name);
  const loadEnd = os.loadavg();
  const f = (x, d = 2) => (x === null || x === undefined ? 'n/a' : x.toFixed(d));
  console.log(`\n| case | rows × n | GEMM GFLOP/s | × peak (${f(peak, 0)}) | numpy GEMM GFLOP/s | × numpy | build ms (f64 GFLOP/s) | numpy solve ms | operator MiB | build work MiB | targets |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  let allMet = true;
  for (const r of rows) {
    r.met = r.gemmVsPeak >= 0.6 && (r.gemmVsNumpy === null || r.gemmVsNumpy >= 1);
    allMet = allMet && r.met;
    console.log(`| ${r.name} | ${r.rows} × ${r.n} | ${f(r.gemmGflops, 1)} | ${f(r.gemmVsPeak)} | ${f(r.numpyGemmGflops, 1)} | ${f(r.gemmVsNumpy)} | ${f(r.buildMs, 0)} (${f(r.buildGflops, 1)}) | ${f(r.numpySolveMs, 0)} | ${f(r.operatorBytes / MiB, 0)} | ${f(r.workBytes / MiB, 0)} | GEMM ≥0.6× peak, ≥1× numpy: ${r.met ? 'met' : 'NOT met'} |`);
  }
  // 7B-shaped estimate: per layer 3 distinct 4096-wide statistics (attention input shared by q/k/v, o's
  // input, the MLP input shared by gate/up) and one 11008-wide (down's input).
  let estimate = null;
  if (by('down')) {
    const q = by('q/k/v/o'), g = by('gate/up'), d = by('down');
    const layerMs = 3 * q.buildMs + d.buildMs + 4 * q.gemmMs + 2 * g.gemmMs + d.gemmMs;
    const statsPerLayer = (3 * 4096 * 4096 + 11008 * 11008) * 4;
    estimate = {
      layers: 32, layerSeconds: layerMs / 1e3, totalSeconds: (32 * layerMs) / 1e3,
      buildShare: (3 * q.buildMs + d.buildMs) / layerMs,
      statsFileBytes: 32 * statsPerLayer, operatorsPerLayerBytes: statsPerLayer,
      peakBuildWorkBytes: d.workBytes, peakRssBytes: d.peakRssBytes,
    };
    console.log(`\n7B-shaped (32 layers): ${f(estimate.layerSeconds, 1)} s per layer (build ${f(100 * estimate.buildShare, 0)}%), ` +
      `${f(estimate.totalSeconds / 60, 1)} min for the model on ${info.threads} threads; statistics file (f32 cov) ${f(estimate.statsFileBytes / GB, 1)} GB, ` +
      `operators per layer ${f(statsPerLayer / MiB, 0)} MiB, the largest build's work ${f(d.workBytes / MiB, 0)} MiB (process peak RSS ${f(d.peakRssBytes / MiB, 0)} MiB)`);
  }
  const result = {
    date: started, version: info.version, cpu, cores: os.cpus().length, simd: info.simd, threads: info.threads,
    loadavgStart: loadStart, loadavgEnd: loadEnd, peaks, numpy: haveNumpy, cases: rows, estimate7B: estimate, allTargetsMet: allMet,
  };
  fs.mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  const file = path.join(root, 'bench', 'results', `preserve-${started.slice(0, 10)}${QUICK ? '-quick' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nload average at the end: ${loadEnd.map((x) => x.toFixed(2)).join(', ')}; written ${path.relative(root, file)}`);
}

main();
