// A/B of fresh vs reused editTensor outputs in a caller's loop (`res = null; res = await editTensor(...)`,
// fresh and reused calls alternating, 11 timed rounds after 2 warm-up rounds, medians), for the output
// pool's collection policy (native/binding/outpool.cc). Usage: node bench/fresh-loop.mjs [REPO]
// (a built checkout; default this one). For an A/B run it once per checkout, alternating, in separate
// processes (two addons in one process share V8's collections).
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
const repos = process.argv.length > 2 ? process.argv.slice(2) : [path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')];
for (const repo of repos) {
console.log('== ' + repo);
const { editTensor } = await import(path.join(repo, "dist/esm/index.mjs"));
const mk = (n, s) => { const a = new Uint16Array(n); let x = s; for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; a[i] = 0x3c00 + (x >>> 24); } return a; };
const mkf = (n, s) => { const a = new Float32Array(n); let x = s; for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; a[i] = (x / 4294967296) - 0.5; } return a; };
const out = [];
for (const [r, c, dt] of [[4096, 4096, 'f32'], [16384, 4096, 'f32'], [16384, 4096, 'bf16']]) {
  const n = r * c, g = dt === 'f32' ? mkf : mk;
  const t = (d) => ({ dtype: dt, shape: [r, c], data: d });
  const base = t(g(n, 1)), old = t(g(n, 2)), nw = t(g(n, 3));
  const ob = dt === 'f32' ? new Float32Array(n) : new Uint16Array(n);
  const tf = [], tr = [];
  let res = null;
  for (let k = 0; k < 13; k++) {
    for (const mode of (k % 2 ? ['fresh', 'reused'] : ['reused', 'fresh'])) {
      const t0 = process.hrtime.bigint();
      res = null;
      res = await editTensor({ base, old, new: nw }, mode === 'reused' ? { out: t(ob) } : {});
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (k >= 2) (mode === 'fresh' ? tf : tr).push(ms);
    }
  }
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  out.push(`[${r},${c}] ${dt}: reused ${med(tr).toFixed(1)} ms, fresh ${med(tf).toFixed(1)} ms, fresh/reused speed ${(med(tr) / med(tf)).toFixed(2)}`);
}
console.log(out.join('\n'));
}
