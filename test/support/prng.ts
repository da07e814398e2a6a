// The one PRNG of the tests: the package's own seeded generator (lib/quality/prng.ts, splitmix32
// seeding + a mulberry32 stream), so test data is the same on every machine.
import { Rng } from '../../lib/quality/prng';

export { Rng };

/** Uniform floats in [0, 1) from a seed. */
export function rng(seed: number): () => number {
  const g = new Rng(seed);
  return () => g.next();
}

/** One standard normal draw (Box–Muller) from a uniform stream. */
export function normal(r: () => number): number {
  const u = Math.max(r(), 1e-12), v = r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** n normal draws with standard deviation sd. */
export function randn(r: () => number, n: number, sd = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = sd * normal(r);
  return out;
}

/** n uniform floats in [-0.5, 0.5) from a seed. */
export function rnd(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() - 0.5;
  return a;
}
