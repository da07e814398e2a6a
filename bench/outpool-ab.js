#!/usr/bin/env node
// The output pool's cost per fresh editTensor call (native/binding/outpool.cc), for A/B runs of its
// policies in separate processes (two policies in one process share V8's collections):
//   node bench/outpool-ab.js                                  (this build's default)
//   GEOEDIT_OUTPUT_POOL_UNCOUNTED=0 node bench/outpool-ab.js  (64 MiB outputs keep V8's count)
// MODE=bench (default): reused and fresh calls alternating, the order alternating, the previous fresh
// result dropped before the next (as bench/run.js does); MODE=tight: `r = await editTensor(...)` only.
// SHAPE=4096,4096 DT=f32|bf16 DENS=1 N=15 (rounds; the first 3 are not timed); V=1 prints every call
// with the collections V8 reported during it (perf_hooks). Prints medians of wall and process CPU
// time (all threads) per call and the pool's counters over the run.
'use strict';
const path = require('node:path');
const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist', 'cjs');
const geo = require(path.join(dist, 'index.js'));
const native = require(path.join(dist, 'native', 'index.js')).loadNative();
const { makeTensor } = require(path.join(root, 'bench', 'tensor'));
const { PerformanceObserver, constants } = require('node:perf_hooks');
const [r, c] = (process.env.SHAPE || '4096,4096').split(',').map(Number);
const dtype = process.env.DT || 'f32';
const N = +(process.env.N || 15);
const mode = process.env.MODE || 'bench'; // bench | tight
const kinds = { [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major', [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incr', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb' };
let gcs = [];
new PerformanceObserver((l) => { for (const e of l.getEntries()) gcs.push(kinds[e.detail.kind] + ':' + e.duration.toFixed(1)); }).observe({ entryTypes: ['gc'] });
const inputs = { base: makeTensor(r, c, dtype, 1), old: makeTensor(r, c, dtype, 2), new: makeTensor(r, c, dtype, 3) };
const out = { dtype, shape: [r, c], data: dtype === 'f32' ? new Float32Array(r * c) : new Uint16Array(r * c) };
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
(async () => {
  let held = null;
  const t = { reused: [], fresh: [] }, cpu = { reused: [], fresh: [] };
  const p0 = native._outputPool();
  const log = [];
  for (let k = 0; k < N; k++) {
    const order = mode === 'tight' ? ['fresh'] : (k % 2 ? ['fresh', 'reused'] : ['reused', 'fresh']);
    for (const v of order) {
      const pa = native._outputPool();
      const c0 = process.cpuUsage(); const t0 = process.hrtime.bigint();
      const density = +(process.env.DENS || 1);
      if (v === 'reused') await geo.editTensor(inputs, { out, density });
      else { held = null; held = await geo.editTensor(inputs, { density }); }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6; const cu = process.cpuUsage(c0);
      const pb = native._outputPool();
      await new Promise((res) => setImmediate(res)); // let gc entries arrive
      if (k >= 3) { t[v].push(ms); cpu[v].push((cu.user + cu.system) / 1e3); }
      log.push(`${k} ${v.padEnd(6)} ${ms.toFixed(1).padStart(6)} ms cpu ${((cu.user + cu.system) / 1e3).toFixed(1).padStart(6)} hit${pb.hits - pa.hits} miss${pb.misses - pa.misses} forced${pb.forced - pa.forced} gcs[${gcs.join(' ')}]`);
      gcs = [];
    }
  }
  if (process.env.V) console.log(log.join('\n'));
  const p1 = native._outputPool();
  const d = Object.fromEntries(Object.keys(p1).map((k) => [k, +(p1[k] - (k === 'idleBytes' || k === 'cap' || k === 'gcMs' || k === 'faultMsPerMiB' ? 0 : p0[k])).toFixed(2)]));
  const s = mode === 'tight' ? `fresh ${med(t.fresh).toFixed(1)} ms cpu ${med(cpu.fresh).toFixed(1)}` :
    `reused ${med(t.reused).toFixed(1)} ms cpu ${med(cpu.reused).toFixed(1)} | fresh ${med(t.fresh).toFixed(1)} ms cpu ${med(cpu.fresh).toFixed(1)} | f/r speed ${(med(t.reused) / med(t.fresh)).toFixed(2)} cpu ratio ${(med(cpu.fresh) / med(cpu.reused)).toFixed(2)}`;
  console.log(`[${r},${c}] ${dtype} d${process.env.DENS || 1} ${mode}: ${s} | pool ${JSON.stringify(d)}`);
})();
