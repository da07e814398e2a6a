#!/usr/bin/env node
// node bench/fused-ab.js: the fused row path (native/core/kernels.h FusedRowKernels) against the
// unfused steps, the row pipeline's three forms against each other (geoedit.h RowPipeline: 'sums',
// 'prefetch', 'off'; the fused figure is the CPU's default form), and fresh outputs against a reused `out`,
// measured alternately in ONE process (_setFused and _setRowPipeline switch between calls), so a loaded
// machine slows both sides alike: the
// robust relative figure when `npm run bench`'s ratios to the triad are not (load average > 1).
// Each round times one call of every variant in turn; the medians over ROUNDS are printed, with the
// same-run triad for scale, and the process CPU time (user + sys) per call of the fused and unfused
// forms (less moved by other processes than the wall time: a descheduled thread uses none). Not a target
// check: `npm run bench` is.
//   GEOEDIT_BENCH_QUICK=1  only [4096,4096]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { makeTensor } = require('./tensor');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist', 'cjs');
if (!fs.existsSync(path.join(dist, 'index.js'))) {
  console.error('fused-ab: build first (npm run build)');
  process.exit(1);
}
const geo = require(path.join(dist, 'index.js'));
const { loadNative } = require(path.join(dist, 'native', 'index.js'));
const native = loadNative();

const QUICK = process.env.GEOEDIT_BENCH_QUICK === '1';
const SHAPES = QUICK ? [[4096, 4096]] : [[4096, 4096], [16384, 4096]];
const ROUNDS = 7;

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const info = geo.info();
  console.log(`geoedit ${info.version} fused A/B — ${new Date().toISOString()} — ${os.cpus()[0]?.model}, simd ${info.simd}, threads ${info.threads}`);
  console.log(`load average at the start: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')}`);
  const defaultPipe = native._setRowPipeline();
  console.log(`row pipeline by default: ${defaultPipe}`);
  const triad = await native._triad(32 * 1024 * 1024, 0, 5);
  const rows = [];
  for (const [r, c] of SHAPES) {
    for (const dtype of ['f32', 'bf16']) {
      const inputs = { base: makeTensor(r, c, dtype, 1), old: makeTensor(r, c, dtype, 2), new: makeTensor(r, c, dtype, 3) };
      const out = { dtype, shape: [r, c], data: dtype === 'f32' ? new Float32Array(r * c) : new Uint16Array(r * c) };
      const bytes = r * c * (dtype === 'f32' ? 4 : 2) * 4;
      for (const density of [1, 0.2]) {
        const PIPES = ['sums', 'prefetch', 'off'];
        const VARIANTS = ['unfused', 'fused', 'fresh', ...PIPES.map((p) => `pipe:${p}`)];
        const t = Object.fromEntries(VARIANTS.map((v) => [v, []]));
        const cpu = Object.fromEntries(VARIANTS.map((v) => [v, []]));
        let last = null;
        for (let k = 0; k <= ROUNDS; k++) {  // round 0 warms up (first touch, pool)
          for (const v of VARIANTS) {
            native._setFused(v !== 'unfused');
            native._setRowPipeline(v.startsWith('pipe:') ? v.slice(5) : defaultPipe);
            last = null;
            const t0 = now(), c0 = process.cpuUsage();
            if (v === 'fresh') last = await geo.editTensor(inputs, { density });
            else await geo.editTensor(inputs, { density, out });
            const c1 = process.cpuUsage(c0);
            if (k > 0) { t[v].push(now() - t0); cpu[v].push((c1.user + c1.system) / 1000); }
          }
        }
        native._setFused(true);
        native._setRowPipeline(defaultPipe);
        const gb = (v) => bytes / median(t[v]) / 1e9;
        const row = { shape: `[${r},${c}]`, dtype, density, unfusedGBps: gb('unfused'), fusedGBps: gb('fused'), freshGBps: gb('fresh'),
          unfusedCpuMs: median(cpu.unfused), fusedCpuMs: median(cpu.fused),
          pipelineGBps: Object.fromEntries(PIPES.map((p) => [p, gb(`pipe:${p}`)])) };
        rows.push(row);
        console.log(`  ${row.shape} ${dtype} density ${density}: unfused ${row.unfusedGBps.toFixed(2)} GB/s, fused ${row.fusedGBps.toFixed(2)} GB/s (reused out), fused fresh out ${row.freshGBps.toFixed(2)} GB/s; CPU ms per call unfused ${row.unfusedCpuMs.toFixed(1)}, fused ${row.fusedCpuMs.toFixed(1)}; row pipeline (reused out) ${PIPES.map((p) => `${p} ${row.pipelineGBps[p].toFixed(2)}`).join(', ')} GB/s`);
      }
    }
  }
  const triad1 = await native._triad(32 * 1024 * 1024, 0, 5);
  const tr = Math.max(triad, triad1);
  console.log(`\ntriad (same run): ${tr.toFixed(1)} GB/s; load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')}`);
  console.log(`\n(fused: the default row pipeline here, '${defaultPipe}')`);
  console.log('\n| shape | dtype | density | unfused × triad | fused × triad | fused ÷ unfused | unfused ÷ fused CPU time | fresh ÷ reused (fused) | pipeline prefetch ÷ sums | off ÷ sums |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const x of rows) {
    const pg = x.pipelineGBps;
    console.log(`| ${x.shape} | ${x.dtype} | ${x.density} | ${(x.unfusedGBps / tr).toFixed(2)} | ${(x.fusedGBps / tr).toFixed(2)} | ${(x.fusedGBps / x.unfusedGBps).toFixed(2)} | ${(x.unfusedCpuMs / x.fusedCpuMs).toFixed(2)} | ${(x.freshGBps / x.fusedGBps).toFixed(2)} | ${(pg.prefetch / pg.sums).toFixed(2)} | ${(pg.off / pg.sums).toFixed(2)} |`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
