#!/usr/bin/env node
// A small workload for compute-sanitizer (bench/gpu/run.sh --sanitize): every kernel path of the
// CUDA backend once on small shapes (fast path, long rows, per-row top-k on narrow and wide rows,
// importance tensors, strategy custom, analyse only, the LoRA Gram path), each result compared
// with the CPU backend. Exits non-zero on a mismatch or an error.
'use strict';
const path = require('node:path');
const root = path.resolve(__dirname, '..', '..');
const geo = require(path.join(root, 'dist', 'cjs', 'index.js'));
const { _cudaLoraGeometry } = require(path.join(root, 'dist', 'cjs', 'lora-geometry.js'));

const addon = require(path.join(root, 'build', 'Release', 'geoedit.node'));
const { rand } = require('./common');

const tensor = (dtype, rows, cols, seed, scale = 0.1) => {
  const f = rand(rows * cols, seed, scale);
  return { dtype, shape: [rows, cols], data: dtype === 'f32' ? f : addon.convert('f32', f, dtype) };
};

async function check(name, inputs, opts) {
  const a = await geo.editTensor(inputs, { ...opts, backend: 'cpu' });
  const b = await geo.editTensor(inputs, { ...opts, backend: 'cuda' });
  let bad = 0;
  for (let r = 0; r < a.stats.cos.length; r++) if (Math.abs(a.stats.cos[r] - b.stats.cos[r]) > 1e-9) bad++;
  console.log(`${name}: rows ${a.stats.cos.length}, cos mismatches ${bad}`);
  return bad;
}

async function main() {
  let bad = 0;
  for (const dt of ['f32', 'f16', 'bf16']) {
    const rows = 37, cols = 1000;
    const inp = { base: tensor(dt, rows, cols, 1), old: tensor(dt, rows, cols, 2), new: tensor(dt, rows, cols, 3) };
    bad += await check(`${dt} density 1`, inp, {});
    bad += await check(`${dt} density 0.3`, inp, { density: 0.3 });
  }
  {
    const rows = 5, cols = 40000;
    const inp = { base: tensor('bf16', rows, cols, 4), old: tensor('bf16', rows, cols, 5), new: tensor('bf16', rows, cols, 6) };
    bad += await check('bf16 40000 columns density 1', inp, {});
    bad += await check('bf16 40000 columns top-k 0.1', inp, { density: 0.1 });
  }
  {
    const rows = 9, cols = 777;
    const inp = { base: tensor('f32', rows, cols, 7), old: tensor('f32', rows, cols, 8), new: tensor('f32', rows, cols, 9) };
    const importanceOld = tensor('f32', rows, cols, 10, 1), importanceNew = tensor('f32', rows, cols, 11, 1);
    for (const t of [importanceOld, importanceNew]) for (let i = 0; i < t.data.length; i++) t.data[i] = Math.abs(t.data[i]);
    bad += await check('importance + density 0.5', inp, { importanceOld, importanceNew, density: 0.5 });
    const cNew = new Float32Array(rows).fill(0.5), cOld = new Float32Array(rows).fill(-0.25);
    bad += await check('custom', inp, { strategy: 'custom', coefficients: { cNew, cOld } });
    const an = await geo.analyzeTensor(inp, { backend: 'cuda' });
    console.log(`analyze: ${(an.stats ?? an).cos.length} rows`);
  }
  {
    const m = 300, n = 500;
    const old = { a: rand(8 * n, 1, 1), b: rand(m * 8, 2, 1), r: 8, scale: 2 };
    const nw = { a: rand(4 * n, 3, 1), b: rand(m * 4, 4, 1), r: 4, scale: 2 };
    const g1 = _cudaLoraGeometry(m, n, old, nw, { backend: 'cuda' });
    const g0 = _cudaLoraGeometry(m, n, old, nw, { backend: 'cpu' });
    let e = 0;
    for (let i = 0; i < m; i++) e = Math.max(e, Math.abs(g1.dot[i] - g0.dot[i]) / (1e-30 + Math.abs(g0.dot[i]) + Math.sqrt(g0.na[i] * g0.nb[i])));
    console.log(`LoRA Gram: max relative difference ${e.toExponential(2)}`);
    if (!(e < 1e-9)) bad++;
  }
  console.log(bad ? `sanitize workload: ${bad} mismatches` : 'sanitize workload: all paths match the CPU backend');
  process.exit(bad ? 1 : 0);
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
