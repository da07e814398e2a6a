// editTensor / editTensorSync / analyzeTensor against the f64 reference of the SPEC.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { analyzeTensor, editTensor, editTensorSync, DEFAULTS, PAPER_PRESET } from '../../lib/index';
import { loadNative } from '../../lib/native';
import type { DType, EditOptions, Strategy } from '../../lib/types';
import { makeTriple } from '../support/reference';
import { rng } from '../support/prng';
import { bytesOf, expectMatchesReference } from '../support/expect-reference';
import { REPO } from '../support/paths';

const DT: DType[] = ['f32', 'f16', 'bf16'];
const STRATS: Strategy[] = ['geoedit', 'forget-then-learn', 'task-arithmetic', 'custom'];

function customCoefs(rows: number, seed: number) {
  const r = rng(seed);
  const cNew = new Float32Array(rows), cOld = new Float32Array(rows);
  for (let i = 0; i < rows; i++) { cNew[i] = r() < 0.3 ? 0 : r() * 1.5; cOld[i] = r() < 0.5 ? 0 : r() - 0.5; }
  return { cNew, cOld };
}

const OPTION_SETS: Array<[string, EditOptions]> = [
  ['defaults', {}],
  ['scale 0.7', { scale: 0.7 }],
  ['kappa 0 / keepOrthogonal 0', { kappa: 0, keepOrthogonal: 0 }],
  ['bandDegrees 80', { bandDegrees: 80 }],
  ['fuse + forget + temperature', { fuseAligned: 0.8, forgetConflicting: 0.6, temperature: 0.3 }],
  ['lambda 0.4', { lambda: 0.4 }],
  ['density 0.3', { density: 0.3 }],
  ['density 0.5 + fuse/forget', { density: 0.5, fuseAligned: 1, forgetConflicting: 1 }],
  ['paper preset', { preset: 'paper' }],
  ['paper preset, kappa overridden', { preset: 'paper', kappa: 2 }],
];

describe('every strategy × dtype × option matches the f64 reference (SPEC §5)', () => {
  for (const strategy of STRATS) {
    for (const dt of DT) {
      it(`${strategy} / ${dt}`, () => {
        const rows = 24, cols = 37;
        const inputs = makeTriple(rows, cols, 7, [dt, dt, dt]);
        for (const [, o] of OPTION_SETS) {
          const opts: EditOptions = { ...o, strategy };
          if (strategy === 'custom') opts.coefficients = customCoefs(rows, 3);
          const { out, stats } = editTensorSync(inputs, opts);
          expect(out.dtype).toBe(dt);
          expect(out.shape).toEqual([rows, cols]);
          expectMatchesReference(inputs, opts, out, stats);
        }
      });
    }
  }
});

describe('mixed dtypes, outDtype and importance tensors', () => {
  it('base bf16, fine-tunes f32, out f32 / f16 / bf16', () => {
    const inputs = makeTriple(30, 65, 11, ['bf16', 'f32', 'f32']);
    for (const outDtype of DT) {
      const opts: EditOptions = { outDtype, fuseAligned: 0.5, forgetConflicting: 0.5 };
      const { out, stats } = editTensorSync(inputs, opts);
      expect(out.dtype).toBe(outDtype);
      expectMatchesReference(inputs, opts, out, stats);
    }
  });
  it('f16 base, bf16 old, f32 new', () => {
    const inputs = makeTriple(18, 33, 12, ['f16', 'bf16', 'f32']);
    const opts: EditOptions = { density: 0.4, fuseAligned: 1 };
    const { out, stats } = editTensorSync(inputs, opts);
    expectMatchesReference(inputs, opts, out, stats);
  });
  it('importance tensors drive trimming and weights', () => {
    const rows = 20, cols = 41;
    const inputs = makeTriple(rows, cols, 13);
    const r = rng(5);
    const io = new Float32Array(rows * cols).map(() => (r() < 0.2 ? 0 : r()));
    const inw = new Uint16Array(rows * cols).map(() => 0x3f80 + Math.floor(r() * 100)); // bf16 around 1
    for (const density of [1, 0.25]) {
      const opts: EditOptions = {
        density, fuseAligned: 1, forgetConflicting: 1, temperature: 0.5,
        importanceOld: { dtype: 'f32', shape: [rows, cols], data: io },
        importanceNew: { dtype: 'bf16', shape: [rows, cols], data: inw },
      };
      const { out, stats } = editTensorSync(inputs, opts);
      expectMatchesReference(inputs, opts, out, stats);
    }
  });
  it('exact ties in top-k keep the lower column index', () => {
    // |a| is 1 everywhere in a row: top-k must keep the first k columns.
    const cols = 10;
    const base = new Float32Array(2 * cols);
    const old = new Float32Array(2 * cols).fill(1);
    const nw = new Float32Array(2 * cols).map((_, j) => (j % 2 ? 2 : -2));
    const inputs = {
      base: { dtype: 'f32' as const, shape: [2, cols], data: base },
      old: { dtype: 'f32' as const, shape: [2, cols], data: old },
      new: { dtype: 'f32' as const, shape: [2, cols], data: nw },
    };
    const opts: EditOptions = { strategy: 'forget-then-learn', lambda: 1, density: 0.3 };
    const { out, stats } = editTensorSync(inputs, opts);
    expectMatchesReference(inputs, opts, out, stats);
    // k = 3: columns 0..2 forget the old (−1), and keep the new; the rest stay 0
    expect(Array.from(out.data.slice(0, cols))).toEqual([-3, 1, -3, 0, 0, 0, 0, 0, 0, 0]);
  });
  it('denormal inputs are handled exactly', () => {
    const cols = 19;
    const tiny = 1.4e-45;
    const base = new Float32Array(3 * cols).map((_, j) => (j % 3) * tiny);
    const old = new Float32Array(3 * cols).map((_, j) => (j % 5) * tiny * 3);
    const nw = new Float32Array(3 * cols).map((_, j) => ((j * 7) % 11) * tiny);
    const inputs = {
      base: { dtype: 'f32' as const, shape: [3, cols], data: base },
      old: { dtype: 'f32' as const, shape: [3, cols], data: old },
      new: { dtype: 'f32' as const, shape: [3, cols], data: nw },
    };
    for (const strategy of STRATS.slice(0, 3)) {
      const opts: EditOptions = { strategy, fuseAligned: 1, forgetConflicting: 1 };
      const { out, stats } = editTensorSync(inputs, opts);
      expectMatchesReference(inputs, opts, out, stats);
    }
  });
});

describe('shapes', () => {
  it('[1], [1,1], 0-D, 1-D, 3-D, zero rows, odd and non-SIMD widths', async () => {
    for (const shape of [[1], [1, 1], [], [17], [3, 4, 5], [0, 8], [4, 0], [2, 3, 0], [5, 1], [4, 15], [4, 16], [4, 17], [3, 31], [3, 33], [2, 1000]]) {
      const n = shape.reduce((x, y) => x * y, 1);
      const rows = shape.length <= 1 ? 1 : shape[0]!;
      const cols = rows === 0 ? 1 : n / Math.max(rows, 1);
      const t = makeTriple(rows, shape.length <= 1 ? n : cols, 99);
      const inputs = {
        base: { ...t.base, shape }, old: { ...t.old, shape }, new: { ...t.new, shape },
      };
      const { out, stats } = await editTensor(inputs, { fuseAligned: 0.5 });
      expect(out.shape).toEqual(shape);
      expect(out.data.length).toBe(n);
      expectMatchesReference(inputs, { fuseAligned: 0.5 }, out, stats);
    }
  });
});

describe('determinism and fast paths', () => {
  const native = loadNative();
  it('identical bytes for 1 and N threads, and from run to run', async () => {
    const inputs = makeTriple(600, 257, 21, ['bf16', 'bf16', 'bf16']);
    for (const opts of [{}, { density: 0.3, fuseAligned: 1, forgetConflicting: 1 }] as EditOptions[]) {
      const one = await editTensor(inputs, { ...opts, threads: 1 });
      const many = await editTensor(inputs, { ...opts, threads: 8 });
      const again = await editTensor(inputs, { ...opts });
      expect(bytesOf(many.out).equals(bytesOf(one.out))).toBe(true);
      expect(bytesOf(again.out).equals(bytesOf(one.out))).toBe(true);
      expect(Buffer.from(many.stats.cos.buffer).equals(Buffer.from(one.stats.cos.buffer))).toBe(true);
    }
  });
  it('every SIMD level this CPU has agrees with the scalar reference path (SPEC §5)', async () => {
    const { prepareEdit } = await import('../../lib/edit');
    const levels = native.info().simdSupported;
    expect(levels).toContain('scalar');
    const code: Record<string, number> = { scalar: 0, avx2: 1, avx512: 2 };
    for (const dts of [['f32', 'f32', 'f32'], ['bf16', 'bf16', 'bf16'], ['f16', 'f16', 'f16'], ['bf16', 'f32', 'f16']] as [DType, DType, DType][]) {
      for (const cols of [1, 7, 16, 33, 100, 1031]) {
        const inputs = makeTriple(12, cols, cols, dts);
        for (const opts of [{}, { density: 0.4, fuseAligned: 1, forgetConflicting: 1 }, { strategy: 'forget-then-learn', outDtype: 'f32' }] as EditOptions[]) {
          const ref = prepareEdit(inputs, opts, true);
          ref.spec.simd = 0;
          const r0 = native.editSync(ref.spec);
          for (const lv of levels) {
            const p = prepareEdit(inputs, opts, true);
            p.spec.simd = code[lv]!;
            const r1 = native.editSync(p.spec);
            for (let i = 0; i < 12; i++) expect(Math.abs(r1.cos[i]! - r0.cos[i]!)).toBeLessThan(1e-12);
            // with defaults the coefficients do not depend on the sums, so the bytes are identical
            expect(Buffer.from(r1.region).equals(Buffer.from(r0.region))).toBe(true);
            const a = r0.out!, b = r1.out!;
            for (let j = 0; j < a.length; j++) {
              if (a[j] !== b[j]) {
                if (a instanceof Float32Array) expect(Math.abs(a[j]! - b[j]!)).toBeLessThanOrEqual(1e-6 * Math.abs(a[j]!) + 1e-30);
                else expect(Math.abs(a[j]! - b[j]!)).toBeLessThanOrEqual(1);
              }
            }
            const fresh = prepareEdit(inputs, opts, true);
            fresh.spec.simd = code[lv]!;
            expectMatchesReference(inputs, opts, { dtype: p.spec.outDtype as DType, shape: [12, cols], data: r1.out! }, {
              rows: 12, cols, cos: r1.cos, region: r1.region, counts: { orthogonal: 0, synergy: 0, conflict: 0 }, threshold: 0,
              coefNew: r1.coefNew, coefOld: r1.coefOld, energy: { new: 0, old: 0, applied: 0 },
            });
          }
        }
      }
    }
  });
  it('orthogonal rows are bit-identical to the base when keepOrthogonal is 0', async () => {
    for (const dt of DT) {
      const inputs = makeTriple(60, 50, 31, [dt, dt, dt]);
      const { out, stats } = await editTensor(inputs, { keepOrthogonal: 0 });
      expect(stats.counts.orthogonal).toBeGreaterThan(5);
      for (let i = 0; i < 60; i++) {
        if (stats.region[i] !== 0) continue;
        const got = Buffer.from(out.data.buffer, i * 50 * out.data.BYTES_PER_ELEMENT, 50 * out.data.BYTES_PER_ELEMENT);
        const want = Buffer.from(inputs.base.data.buffer, i * 50 * out.data.BYTES_PER_ELEMENT, 50 * out.data.BYTES_PER_ELEMENT);
        expect(got.equals(want)).toBe(true);
      }
    }
  });
  it('inputs are never modified', async () => {
    const inputs = makeTriple(40, 40, 41, ['bf16', 'f32', 'f16']);
    const before = [bytesOf(inputs.base), bytesOf(inputs.old), bytesOf(inputs.new)].map((b) => Buffer.from(b));
    await editTensor(inputs, { density: 0.2, fuseAligned: 1, forgetConflicting: 1 });
    expect(bytesOf(inputs.base).equals(before[0]!)).toBe(true);
    expect(bytesOf(inputs.old).equals(before[1]!)).toBe(true);
    expect(bytesOf(inputs.new).equals(before[2]!)).toBe(true);
  });
});

describe('async behaviour', () => {
  it('16+ concurrent async calls all return correct results', async () => {
    const jobs = Array.from({ length: 20 }, (_, k) => ({ inputs: makeTriple(40 + k, 64 + k, 100 + k, DT[k % 3] ? [DT[k % 3]!, DT[k % 3]!, DT[k % 3]!] : undefined), opts: { density: k % 2 ? 0.5 : 1, fuseAligned: 0.5 } as EditOptions }));
    const results = await Promise.all(jobs.map((j) => editTensor(j.inputs, j.opts)));
    results.forEach((r, k) => expectMatchesReference(jobs[k]!.inputs, jobs[k]!.opts, r.out, r.stats));
    const analyses = await Promise.all(jobs.map((j) => analyzeTensor(j.inputs, j.opts)));
    analyses.forEach((s, k) => expect(Buffer.from(s.cos.buffer).equals(Buffer.from(results[k]!.stats.cos.buffer))).toBe(true));
  });
  // retry: OS scheduling on a loaded 2-core machine can add a spike; a blocking edit fails every try.
  it('the event loop keeps turning (< 50 ms lag) during a large async edit', { retry: 2 }, async (ctx) => {
    // The shape comes from one timed edit on this machine: rows enough for an edit to take about 4x
    // the 50 ms budget (a blocking edit would then show as >= 200 ms of lag), at most 16384 rows
    // (256 MiB an array). Rows repeat a 1024-row unit (the edit's cost does not depend on the values).
    const budget = 50, cols = 4096, unit = 1024, maxRows = 16384;
    const mk = (seed: number) => { const r = rng(seed); return new Float32Array(unit * cols).map(() => r() - 0.5); };
    const units = [mk(1), mk(2), mk(3)];
    const tile = (u: Float32Array, rows: number) => { const d = new Float32Array(rows * cols); for (let o = 0; o < d.length; o += u.length) d.set(u, o); return d; };
    const T = (data: Float32Array, rows: number) => ({ dtype: 'f32' as const, shape: [rows, cols], data });
    const edit = (rows: number, [base, old, nw]: Float32Array[]) =>
      editTensor({ base: T(base!, rows), old: T(old!, rows), new: T(nw!, rows) }, { density: 0.5, threads: 1, backend: 'cpu' });
    let unitMs = Infinity;
    for (let k = 0; k < 2; k++) {
      const t0 = performance.now();
      await edit(unit, units);
      unitMs = Math.min(unitMs, performance.now() - t0);
    }
    const rows = Math.min(maxRows, unit * Math.ceil((4 * budget) / unitMs));
    if ((unitMs * rows) / unit < 2 * budget) ctx.skip(`an edit of [${maxRows},${cols}] would take ~${((unitMs * rows) / unit).toFixed(0)} ms here: too fast to tell a blocking edit from lag`);
    const data = rows === unit ? units : units.map((u) => tile(u, rows));
    // Lag = how late a 5 ms interval fires. Measured once idle (what the OS alone costs on a
    // shared machine) and once while edits run; a blocking edit would show its whole duration.
    const measure = async (work: () => Promise<void>) => {
      let maxLag = 0;
      let last = performance.now();
      const timer = setInterval(() => {
        const t = performance.now();
        maxLag = Math.max(maxLag, t - last - 5);
        last = t;
      }, 5);
      await work();
      clearInterval(timer);
      return maxLag;
    };
    const idle = await measure(() => new Promise((r) => setTimeout(r, 300)));
    let busy = 0;
    let edits = 0;
    const lag = await measure(async () => {
      const t0 = performance.now();
      while (edits < 2 || performance.now() - t0 < 300) {
        const r = await edit(rows, data);
        edits += r.stats.rows === rows ? 1 : 0;
      }
      busy = performance.now() - t0;
    });
    expect(edits).toBeGreaterThanOrEqual(2);
    // the premise (each edit alone would block longer than the budget), from the run itself: a
    // machine that got faster since the timed edit cannot make this test pass or fail
    if (busy / edits <= 2 * budget) ctx.skip(`edits of [${rows},${cols}] took ${(busy / edits).toFixed(0)} ms each: too fast to tell a blocking edit from lag`);
    expect(lag).toBeLessThan(budget + idle);
  });
});

describe('defaults', () => {
  it('the TS defaults mirror the core (one source of truth, checked)', () => {
    const d = loadNative().defaults();
    for (const k of ['scale', 'kappa', 'keepOrthogonal', 'fuseAligned', 'forgetConflicting', 'lambda', 'density', 'temperature'] as const) {
      expect(DEFAULTS[k], k).toBe(d[k]);
    }
    for (const k of ['kappa', 'keepOrthogonal', 'fuseAligned', 'forgetConflicting'] as const) expect(PAPER_PRESET[k]).toBe(d.paper[k]);
  });
  it('analyzeTensor reports counts that sum to rows and writes no weights', async () => {
    const inputs = makeTriple(33, 40, 5);
    const s = await analyzeTensor(inputs);
    expect(s.counts.orthogonal + s.counts.synergy + s.counts.conflict).toBe(33);
    expect(s.counts.synergy).toBeGreaterThan(0);
    expect(s.counts.conflict).toBeGreaterThan(0);
    expect(s.counts.orthogonal).toBeGreaterThan(0);
    expectMatchesReference(inputs, {}, null, s);
  });
});

describe("option 'out': a caller-provided output", () => {
  it('writes into the given tensor, equal to a fresh output, and refuses aliasing an input', async () => {
    const inputs = makeTriple(50, 70, 61, ['bf16', 'bf16', 'bf16']);
    const fresh = await editTensor(inputs, { density: 0.5 });
    const out = { dtype: 'bf16' as const, shape: [50, 70], data: new Uint16Array(50 * 70) };
    const r = await editTensor(inputs, { density: 0.5, out });
    expect(r.out.data).toBe(out.data);
    expect(bytesOf(out).equals(bytesOf(fresh.out))).toBe(true);
    await expect(editTensor(inputs, { out: inputs.old })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(editTensor(inputs, { out: { dtype: 'f32', shape: [50, 70], data: new Float32Array(3500) }, outDtype: 'bf16' })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const f32 = { dtype: 'f32' as const, shape: [50, 70], data: new Float32Array(3500) };
    const r32 = editTensorSync(inputs, { out: f32 });
    expect(r32.out.dtype).toBe('f32');
    expectMatchesReference(inputs, { outDtype: 'f32' }, r32.out, r32.stats);
  });
});

describe('large outputs (streaming stores above 32 MiB)', () => {
  it('give the same bytes as the same rows edited in small pieces', async () => {
    for (const [dtype, cols] of [['f32', 4100], ['bf16', 8208], ['f16', 8192]] as const) {
      const rows = 2100;
      // fast data: an LCG in f32, converted to the dtype by the addon (makeTriple is too slow here)
      const mk = (seed: number, like?: Float32Array) => {
        let x = seed >>> 0;
        const v = new Float32Array(rows * cols);
        for (let i = 0; i < v.length; i++) {
          x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
          v[i] = (like ? like[i]! : 0) + (x / 4294967296 - 0.5) * (like ? 0.1 : 1);
        }
        return v;
      };
      const conv = (v: Float32Array) => ({ dtype, shape: [rows, cols], data: dtype === 'f32' ? v : loadNative().convert('f32', v, dtype) });
      const b0 = mk(1);
      const t = { base: conv(b0), old: conv(mk(2, b0)), new: conv(mk(3, b0)) };
      const whole = await editTensor(t, { fuseAligned: 0.5 });
      expect(whole.out.data.byteLength).toBeGreaterThanOrEqual(32 << 20);
      const bytes = bytesOf(whole.out);
      const per = cols * (dtype === 'f32' ? 4 : 2);
      for (const [r0, r1] of [[0, 700], [700, 1401], [1401, 2100]]) {
        const slice = (x: typeof t.base) => ({ dtype: x.dtype, shape: [r1 - r0, cols], data: x.data.subarray(r0 * cols, r1 * cols) as typeof x.data });
        const part = await editTensor({ base: slice(t.base), old: slice(t.old), new: slice(t.new) }, { fuseAligned: 0.5 });
        expect(bytesOf(part.out).equals(bytes.subarray(r0 * per, r1 * per))).toBe(true);
      }
    }
  });
});

describe('the fused row path (raw rows read in place: native/core/kernels.h FusedRowKernels)', () => {
  it('gives the unfused bytes and stats: bf16/f16/f32, densities 1 and 0.2, ties, odd widths, streaming stores', async () => {
    const native = loadNative();
    const lcg = (seed: number) => { let x = seed >>> 0; return () => { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; return x / 4294967296 - 0.5; }; };
    try {
      for (const [dtype, rows, cols] of [['bf16', 2048, 8208], ['f16', 64, 4099], ['f32', 40, 1031], ['bf16', 33, 77]] as const) {
        for (const ties of [false, true]) {
          const r = lcg(rows + cols + (ties ? 1 : 0));
          const v = (base?: Float32Array) => {
            const a = new Float32Array(rows * cols);
            for (let i = 0; i < a.length; i++) a[i] = ties ? (base ? 0.5 + 0.125 * Math.round(4 * r()) : 0.5) : (base ? base[i]! + 0.1 * r() : r());
            return a;
          };
          const b0 = v();
          const conv = (x: Float32Array) => ({ dtype, shape: [rows, cols], data: dtype === 'f32' ? x : native.convert('f32', x, dtype) });
          const t = { base: conv(b0), old: conv(v(b0)), new: conv(v(b0)) };
          for (const opts of [{}, { density: 0.2 }, { density: 0.2, strategy: 'forget-then-learn' as const, outDtype: 'f32' as const }]) {
            native._setFused(false);
            const want = await editTensor(t, opts);
            native._setFused(true);
            const got = await editTensor(t, opts);
            const what = `${dtype} [${rows},${cols}] ties ${ties} ${JSON.stringify(opts)}`;
            expect(bytesOf(got.out).equals(bytesOf(want.out)), what).toBe(true);
            expect(Buffer.from(got.stats.region).equals(Buffer.from(want.stats.region)), what).toBe(true);
            for (let i = 0; i < rows; i++) expect(Math.abs(got.stats.cos[i]! - want.stats.cos[i]!), what).toBeLessThan(1e-12);
            expect(Math.abs(got.stats.energy.applied - want.stats.energy.applied), what).toBeLessThanOrEqual(1e-9 * Math.abs(want.stats.energy.applied));
          }
        }
      }
    } finally {
      native._setFused(true);
    }
  });
});

// The row pipeline's three forms (geoedit.h RowPipeline: the next row summed between this row's output blocks,
// prefetched and summed at the end, or not prepared at all) must give the same bytes and stats; the default
// depends on the CPU, so each is set explicitly (native/test/core_test.cc checks each with streaming stores too).
describe('the row pipeline (GEOEDIT_ROW_PIPELINE, _setRowPipeline)', () => {
  // the forms differ only in the AVX2 / AVX-512 fused path: nothing to compare on a scalar-only CPU
  it.skipIf(loadNative().info().simd === 'scalar')('gives the same bytes and stats in each form, bf16 and f32, densities 1 and 0.2', async () => {
    const native = loadNative();
    const fusedWas = native._setFused(true);
    const was = native._setRowPipeline();
    expect(['sums', 'prefetch', 'off']).toContain(was);
    expect(() => (native._setRowPipeline as (m: string) => string)('fast')).toThrow(/sums.*prefetch.*off/);
    expect(native._setRowPipeline()).toBe(was);
    expect(native._setRowPipeline(undefined)).toBe(was);
    try {
      for (const [dtype, rows, cols] of [['bf16', 512, 8208], ['f32', 96, 1031]] as const) {
        const t = makeTriple(rows, cols, 7 + cols, [dtype, dtype, dtype]);
        // backend 'cpu': the suite may run with 'auto' resolving to CUDA (GEOEDIT_BACKEND), which has no row pipeline
        const sets: EditOptions[] = [{}, { density: 0.2 }, ...(dtype === 'f32' ? [{ density: 0.2, strategy: 'forget-then-learn' as const }] : [])]
          .map((o) => ({ ...o, backend: 'cpu' as const }));
        for (const opts of sets) {
          const res: Record<string, Awaited<ReturnType<typeof editTensor>>> = {};
          for (const mode of ['off', 'sums', 'prefetch'] as const) {
            expect(native._setRowPipeline(mode)).toBeTypeOf('string');
            res[mode] = await editTensor(t, opts);
          }
          for (const mode of ['sums', 'prefetch'] as const) {
            const what = `${dtype} [${rows},${cols}] ${JSON.stringify(opts)} ${mode} vs off`;
            expect(bytesOf(res[mode]!.out).equals(bytesOf(res.off!.out)), what).toBe(true);
            expect(Buffer.from(res[mode]!.stats.cos.buffer).equals(Buffer.from(res.off!.stats.cos.buffer)), what).toBe(true);
            expect(Buffer.from(res[mode]!.stats.region).equals(Buffer.from(res.off!.stats.region)), what).toBe(true);
            expect(res[mode]!.stats.energy.applied, what).toBe(res.off!.stats.energy.applied);
          }
        }
      }
    } finally {
      native._setRowPipeline(was);
      native._setFused(fusedWas);
    }
  });
});

// The AVX2 kernels have their own fused row path (native/cpu/kernels_avx2.cc); on a machine with AVX-512
// it only runs with GEOEDIT_SIMD=avx2, which takes a process (test/support/fixtures/fused-simd-child.cjs).
// Fused on and off in the AVX2 child give the same bytes; where the coefficients do not come from the
// f64 sums (every strategy but geoedit's weights) they equal the scalar reference's bytes too.
describe('the fused row path under GEOEDIT_SIMD=avx2', () => {
  const supported = loadNative().info().simdSupported;
  const child = path.join(REPO, 'test', 'support', 'fixtures', 'fused-simd-child.cjs');
  type Run = { simd: string; cases: Array<{ what: string; same: boolean; sha256: string; custom: boolean; big?: boolean }> };
  const run = (simd: string): Run => {
    const out = execFileSync(process.execPath, [child, REPO], { encoding: 'utf8', env: { ...process.env, GEOEDIT_SIMD: simd }, maxBuffer: 16 << 20 });
    return JSON.parse(out.trim().split('\n').pop()!) as Run;
  };
  it.skipIf(!supported.includes('avx2'))('gives the unfused bytes (and the scalar bytes): f32/bf16/f16, densities 1 and < 1, ties, -0, non-finite rows, odd widths', () => {
    const avx2 = run('avx2');
    expect(avx2.simd).toBe('avx2');
    expect(avx2.cases.length).toBeGreaterThan(1000);
    expect(avx2.cases.filter((c) => c.big).length).toBe(4);
    expect(avx2.cases.filter((c) => !c.same).map((c) => c.what)).toEqual([]);
    const scalar = run('scalar');
    expect(scalar.simd).toBe('scalar');
    expect(scalar.cases.map((c) => c.what)).toEqual(avx2.cases.map((c) => c.what));
    const differ = avx2.cases.filter((c, i) => c.custom && c.sha256 !== scalar.cases[i]!.sha256).map((c) => c.what);
    expect(differ).toEqual([]);
    expect(avx2.cases.filter((c) => c.custom).length).toBeGreaterThan(500);
  }, 600_000);
});

describe('top-k selection on wide rows (sampled bracket and its fallback)', () => {
  it('matches the reference when the strided sample misleads, on ties, and on ordinary rows', () => {
    const cols = 4096, rows = 6;
    const base = new Float32Array(rows * cols);
    const old = new Float32Array(rows * cols);
    const nw = new Float32Array(rows * cols);
    const r = rng(9);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const k = i * cols + j;
        base[k] = r() - 0.5;
        // row 0: the sampled columns (every 32nd) are huge, the rest small — the bracket misses
        // row 1: every |τ| equal — all ties, kept by lowest column
        // row 2: two magnitude levels; rows 3-5: ordinary noise
        const t = i === 0 ? (j % 32 === 0 ? 100 : r() * 0.01) : i === 1 ? 0.25 : i === 2 ? (j % 3 ? 0.5 : 0.125) : r() - 0.5;
        old[k] = base[k] + t;
        nw[k] = base[k] + (i === 1 ? -0.25 : r() - 0.5);
      }
    }
    const T = (data: Float32Array) => ({ dtype: 'f32' as const, shape: [rows, cols], data });
    const inputs = { base: T(base), old: T(old), new: T(nw) };
    for (const density of [0.2, 0.01, 0.5, 0.999]) {
      const opts: EditOptions = { density, strategy: 'forget-then-learn', lambda: 1 };
      const { out, stats } = editTensorSync(inputs, opts);
      expectMatchesReference(inputs, opts, out, stats);
    }
  });
});
