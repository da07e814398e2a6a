// Shared by the GPU bench scripts (bench.js, sanitize.js): deterministic inputs.
'use strict';

/** n floats uniform in [-scale/2, scale/2) from a 32-bit LCG seeded with `seed`. */
function rand(n, seed, scale) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s >>> 8) / 16777216 - 0.5) * scale;
  }
  return a;
}

module.exports = { rand };
