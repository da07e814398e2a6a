// The benches' input tensors: an LCG in [-0.5, 0.5), as f32 or truncated to bf16 (the same values
// from run to run and between bench/run.js and bench/fused-ab.js).
'use strict';

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

module.exports = { makeTensor };
