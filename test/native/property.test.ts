// Property-based: random shapes, dtypes, strategies and options against the f64 reference.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { editTensor, editTensorSync } from '../../lib/index';
import type { DType, EditOptions, Strategy } from '../../lib/types';
import { encode } from '../support/reference';
import { expectMatchesReference } from '../support/expect-reference';

const dtype = fc.constantFrom<DType>('f32', 'f16', 'bf16');
const strategy = fc.constantFrom<Strategy>('geoedit', 'forget-then-learn', 'task-arithmetic', 'custom');
const shape = fc.oneof(
  fc.constant<number[]>([]),
  fc.tuple(fc.integer({ min: 1, max: 70 })).map((s) => [...s]),
  fc.tuple(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 1, max: 70 })).map((s) => [...s]),
  fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 9 })).map((s) => [...s]),
);
// Values include exact zeros, repeated magnitudes (ties) and denormals.
const value = fc.oneof(
  { weight: 6, arbitrary: fc.double({ min: -4, max: 4, noNaN: true, noDefaultInfinity: true }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, -1, 0.5, -0.5, 1.4e-45, -2.8e-45, 1e-40) },
);
const options = fc.record(
  {
    // coefficients are applied in f32 (SPEC §3.6): a scale below the f32 normal range loses its
    // relative precision by design, so scales are 0 or at least 1e-30 in magnitude here
    scale: fc.double({ min: -2, max: 2, noNaN: true }).map((x) => (Math.abs(x) < 1e-30 ? 0 : x)),
    kappa: fc.double({ min: 0, max: 4, noNaN: true }),
    keepOrthogonal: fc.double({ min: 0, max: 1, noNaN: true }),
    fuseAligned: fc.double({ min: 0, max: 1.5, noNaN: true }),
    forgetConflicting: fc.double({ min: 0, max: 1.5, noNaN: true }),
    lambda: fc.double({ min: 0, max: 2, noNaN: true }),
    density: fc.oneof(fc.constant(1), fc.double({ min: 0.01, max: 1, noNaN: true })),
    temperature: fc.double({ min: 0.05, max: 5, noNaN: true }),
  },
  { requiredKeys: [] },
);

describe('property: random tensors and options match the reference', () => {
  it('edit = reference (SPEC §5) for arbitrary shapes, dtypes, strategies, options', async () => {
    await fc.assert(
      fc.asyncProperty(
        shape, fc.tuple(dtype, dtype, dtype), dtype, strategy, options, fc.integer({ min: 0, max: 1 << 30 }), fc.boolean(),
        async (sh, dts, outDtype, strat, opts, seed, sync) => {
          const n = sh.reduce((x, y) => x * y, 1);
          const rows = sh.length <= 1 ? 1 : sh[0]!;
          // values: a deterministic stream from fast-check's seed
          let s = seed >>> 0;
          const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32; };
          const pick = (k: number) => (k < 0.05 ? 0 : k < 0.1 ? 1.4e-45 : (next() - 0.5) * 4);
          const b = Array.from({ length: n }, () => pick(next()));
          const o = b.map((x, j) => (j % 7 === 0 ? x : x + pick(next()) * 0.3));
          const w = b.map((x, j) => (j % 5 === 0 ? x : x + pick(next()) * 0.3));
          const inputs = { base: encode(b, dts[0], sh), old: encode(o, dts[1], sh), new: encode(w, dts[2], sh) };
          const eo: EditOptions = { ...opts, strategy: strat, outDtype };
          if (strat === 'custom') eo.coefficients = { cNew: new Float32Array(rows).map(() => next() * 2 - 0.5), cOld: new Float32Array(rows).map(() => next() - 0.5) };
          const r = sync ? editTensorSync(inputs, eo) : await editTensor(inputs, eo);
          expect(r.out.data.length).toBe(n);
          expectMatchesReference(inputs, eo, r.out, r.stats);
        },
      ),
      { numRuns: 300, seed: 20261128 },
    );
  });
  it('values with exact ties and denormals (fast-check values)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 40 }), fc.array(value, { minLength: 3 * 240, maxLength: 3 * 240 }), options, (rows, cols, vals, opts) => {
        const n = rows * cols;
        const sh = [rows, cols];
        const inputs = { base: encode(vals.slice(0, n), 'f32', sh), old: encode(vals.slice(240, 240 + n), 'f32', sh), new: encode(vals.slice(480, 480 + n), 'f32', sh) };
        const r = editTensorSync(inputs, opts);
        expectMatchesReference(inputs, opts, r.out, r.stats);
      }),
      { numRuns: 200, seed: 7 },
    );
  });
});
