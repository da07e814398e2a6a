// The GPU suite, shared by test/cuda.test.ts (a real GPU, skipped without one) and
// test/cuda-emu.test.ts (the plugin's kernels run on the CPU emulator): every kernel and option
// on the CUDA backend against the CPU reference, with SPEC §5's tolerances.
import { describe, expect, it } from 'vitest';
import { analyzeLora, analyzeTensor, editTensor, info } from '../lib/index';
import { loadNative } from '../lib/native';
import { cudaLoraGeometry } from '../lib/lora-geometry';
import type { DType, EditOptions, Tensor, TensorStats } from '../lib/types';
import { rng } from './reference';

export { rng };

// ---- data ------------------------------------------------------------------------------------

function toDtype(f: Float32Array, d: DType): Float32Array | Uint16Array {
  return d === 'f32' ? f : (loadNative().convert('f32', f, d) as Uint16Array);
}

interface Case {
  base: Tensor;
  old: Tensor;
  new: Tensor;
  f32: { base: Float32Array; old: Float32Array; new: Float32Array };
}

/** Rows of every kind: aligned, opposed, unrelated, zero task vectors, quantised (tied) values. */
export function makeCase(rows: number, cols: number, seed: number, dt: DType | [DType, DType, DType] = 'f32'): Case {
  const r = rng(seed);
  const [bd, od, nd] = Array.isArray(dt) ? dt : [dt, dt, dt];
  const base = new Float32Array(rows * cols), old = new Float32Array(rows * cols), nw = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const kind = i % 6;
    for (let j = 0; j < cols; j++) {
      const k = i * cols + j;
      const b = (r() - 0.5) * 0.2;
      const a = (r() - 0.5) * 0.02;
      let n = (r() - 0.5) * 0.02;
      if (kind === 1) n = a * 0.8 + n * 0.3; // synergy
      if (kind === 2) n = -a * 0.8 + n * 0.3; // conflict
      base[k] = b;
      old[k] = kind === 3 ? b : b + a; // zero old task vector
      nw[k] = kind === 5 ? b + Math.round(n * 200) / 200 : b + n; // heavy ties after quantisation
    }
  }
  const t = (f: Float32Array, d: DType): Tensor => ({ dtype: d, shape: [rows, cols], data: toDtype(f, d) });
  const c: Case = { base: t(base, bd), old: t(old, od), new: t(nw, nd), f32: { base, old, new: nw } };
  // f32 views of what the kernels actually see (after rounding to the stored dtype).
  const dec = (x: Tensor) => (x.dtype === 'f32' ? (x.data as Float32Array) : (loadNative().convert(x.dtype, x.data, 'f32') as Float32Array));
  c.f32 = { base: dec(c.base), old: dec(c.old), new: dec(c.new) };
  return c;
}

export function importance(rows: number, cols: number, seed: number, d: DType): Tensor {
  const r = rng(seed);
  const f = new Float32Array(rows * cols);
  for (let k = 0; k < f.length; k++) f[k] = r() < 0.2 ? 0.5 : Math.floor(r() * 64) / 16; // many ties, zeros
  return { dtype: d, shape: [rows, cols], data: toDtype(f, d) };
}

// ---- comparison (SPEC §5) --------------------------------------------------------------------
function ord16(h: number): number {
  return h & 0x8000 ? -(h & 0x7fff) : h & 0x7fff;
}

function expectClose(c: Case, opts: EditOptions, cpu: Awaited<ReturnType<typeof editTensor>>, dev: Awaited<ReturnType<typeof editTensor>>): void {
  const rows = cpu.stats.rows, t = cpu.stats.threshold;
  expect(dev.stats.threshold).toBe(t);
  expect(dev.out.dtype).toBe(cpu.out.dtype);
  const skip = new Set<number>();
  for (let i = 0; i < rows; i++) {
    const cc = cpu.stats.cos[i]!, gc = dev.stats.cos[i]!;
    expect(Math.abs(cc - gc), `cos row ${i}`).toBeLessThanOrEqual(1e-9);
    if (cpu.stats.region[i] !== dev.stats.region[i]) {
      expect(Math.abs(Math.abs(cc) - t), `region row ${i} differs away from the threshold`).toBeLessThan(1e-9);
      skip.add(i);
      continue;
    }
    expect(dev.stats.coefNew[i], `coefNew row ${i}`).toBe(cpu.stats.coefNew[i]);
    const co = cpu.stats.coefOld[i]!, go = dev.stats.coefOld[i]!;
    expect(Math.abs(co - go), `coefOld row ${i}`).toBeLessThanOrEqual(2e-7 * Math.abs(co) + 1e-30);
  }
  expectOutClose(c.f32, cpu.stats, cpu.out, dev.out, skip);
}

/**
 * SPEC §5 on the weights: f32 outputs within 1e-6 of the row's magnitudes, f16/bf16 within one
 * ulp. `f32` holds the inputs as the kernels see them, `cpu` the CPU's per-row coefficients;
 * rows in `skip` (a region that may differ at the threshold) are not compared.
 */
function expectOutClose(f32: Case['f32'], cpu: Pick<TensorStats, 'rows' | 'cols' | 'coefNew' | 'coefOld'>, cpuOut: Tensor, devOut: Tensor, skip: Set<number>, what = 'out'): void {
  const { rows, cols } = cpu;
  const { base, old, new: nw } = f32;
  const od = cpuOut.data, gd = devOut.data;
  expect(gd.length).toBe(od.length);
  let worst = 0;
  for (let i = 0; i < rows; i++) {
    if (skip.has(i)) continue;
    const cn = Math.abs(cpu.coefNew[i]!), co = Math.abs(cpu.coefOld[i]!);
    for (let j = 0; j < cols; j++) {
      const k = i * cols + j;
      if (cpuOut.dtype === 'f32') {
        const x = od[k]!, y = gd[k]!;
        if (Number.isNaN(x)) { expect(Number.isNaN(y)).toBe(true); continue; }
        const b = base[k]!, tol = 1e-6 * (Math.abs(b) + cn * Math.abs(nw[k]! - b) + co * Math.abs(old[k]! - b));
        const err = Math.abs(x - y);
        if (err > tol) expect(err, `${what}[${i}, ${j}] cpu ${x} gpu ${y}`).toBeLessThanOrEqual(tol);
        worst = Math.max(worst, err);
      } else {
        const d = Math.abs(ord16(od[k]!) - ord16(gd[k]!));
        if (d > 1) expect(d, `${what}[${i}, ${j}] cpu 0x${od[k]!.toString(16)} gpu 0x${gd[k]!.toString(16)} (ulps)`).toBeLessThanOrEqual(1);
      }
    }
  }
  expect(worst).toBeLessThan(1);
}

async function both(c: Case, opts: EditOptions) {
  const cpu = await editTensor({ base: c.base, old: c.old, new: c.new }, { ...opts, backend: 'cpu' });
  const dev = await editTensor({ base: c.base, old: c.old, new: c.new }, { ...opts, backend: 'cuda' });
  return { cpu, dev };
}

// ---- the suite ---------------------------------------------------------------------------------
/** Defines the GPU comparison suite; `enabled` false skips it (counted, with `title` naming why). */
export function gpuSuite(title: string, enabled: boolean, opts: { emulator?: boolean } = {}): void {
  const emulator = !!opts.emulator;
  describe.skipIf(!enabled)(title, () => {
  const dtypes: Array<[string, DType | [DType, DType, DType], DType | undefined]> = [
    ['f32', 'f32', undefined],
    ['f16', 'f16', undefined],
    ['bf16', 'bf16', undefined],
    ['f16 -> f32', 'f16', 'f32'],
    ['bf16 -> f32', 'bf16', 'f32'],
    ['f32 -> bf16', 'f32', 'bf16'],
    ['f32 -> f16', 'f32', 'f16'],
    ['mixed f32/bf16/f16 -> bf16', ['f32', 'bf16', 'f16'], 'bf16'],
  ];
  for (const [name, dt, out] of dtypes) {
    it(`dtype ${name}: default options, 8-wide, 4-wide and scalar paths`, async () => {
      for (const [rows, cols] of [[96, 256], [37, 123], [7, 20], [5, 1], [3, 4]] as const) {
        const c = makeCase(rows, cols, rows * 31 + cols, dt);
        const { cpu, dev } = await both(c, out ? { outDtype: out } : {});
        expectClose(c, {}, cpu, dev);
      }
    });
  }

  const options: Array<[string, EditOptions]> = [
    ['paper preset', { preset: 'paper' }],
    ['forget-then-learn', { strategy: 'forget-then-learn', lambda: 0.7 }],
    ['task-arithmetic, scale 0.8', { strategy: 'task-arithmetic', scale: 0.8 }],
    ['fuse/forget with temperature 0.3', { fuseAligned: 0.7, forgetConflicting: 0.4, temperature: 0.3 }],
    ['bandDegrees 5', { bandDegrees: 5, keepOrthogonal: 0.25 }],
    ['kappa 0', { kappa: 0 }],
    ['scale 0 (rows are the base, bit for bit)', { scale: 0 }],
    ['density 0.5', { density: 0.5, fuseAligned: 1, forgetConflicting: 1 }],
    ['density 0.05', { density: 0.05 }],
    ['density 1e-9 (k = 1)', { density: 1e-9, preset: 'paper' }],
  ];
  for (const [name, opts] of options) {
    it(`option ${name}`, async () => {
      for (const dt of ['f32', 'bf16'] as DType[]) {
        const c = makeCase(60, 301, 7, dt);
        const { cpu, dev } = await both(c, opts);
        expectClose(c, opts, cpu, dev);
        if (opts.scale === 0) expect(Buffer.from(dev.out.data.buffer).equals(Buffer.from(c.base.data.buffer))).toBe(true);
      }
    });
  }

  it('importance tensors (f32 and bf16), with and without trimming', async () => {
    for (const d of ['f32', 'bf16'] as DType[]) {
      const c = makeCase(40, 257, 11, 'f16');
      for (const density of [1, 0.3]) {
        const opts: EditOptions = { density, fuseAligned: 1, forgetConflicting: 1, importanceOld: importance(40, 257, 1, d), importanceNew: importance(40, 257, 2, d) };
        const { cpu, dev } = await both(c, opts);
        expectClose(c, opts, cpu, dev);
      }
    }
  });

  it('strategy custom', async () => {
    const c = makeCase(33, 64, 13);
    const r = rng(5);
    const coefficients = { cNew: Float32Array.from({ length: 33 }, () => r() * 2 - 0.5), cOld: Float32Array.from({ length: 33 }, (_, i) => (i % 3 === 0 ? 0 : r() - 0.5)) };
    const opts: EditOptions = { strategy: 'custom', coefficients, density: 0.6 };
    const { cpu, dev } = await both(c, opts);
    expectClose(c, opts, cpu, dev);
    const o2: EditOptions = { strategy: 'custom', coefficients };
    const b = await both(c, o2);
    expectClose(c, o2, b.cpu, b.dev);
  });

  it('per-row top-k on rows of 32768 and 40000 columns (ties by the lower column index)', async () => {
    for (const cols of [32768, 40000]) {
      const c = makeCase(6, cols, cols, 'bf16');
      for (const density of [0.5, 0.01]) {
        const opts: EditOptions = { density, fuseAligned: 1, forgetConflicting: 1 };
        const { cpu, dev } = await both(c, opts);
        expectClose(c, opts, cpu, dev);
      }
    }
  });

  it('rows at the shared-memory limits of the fast path (48 KiB default, 100 KiB opt-in)', async () => {
    // 12 bytes of cache per column plus the kernel's static shared memory: 4096 columns need the
    // opt-in (a launch without it fails on a GPU), 8448 is the largest cached row, 8449 is read twice.
    for (const cols of [4000, 4010, 4096, 8448, 8449]) {
      const c = makeCase(3, cols, 29, 'f32');
      const { cpu, dev } = await both(c, {});
      expectClose(c, {}, cpu, dev);
    }
  });

  it('long rows on the fast path (not cached in shared memory)', async () => {
    const c = makeCase(8, 20000, 17, 'f32');
    const { cpu, dev } = await both(c, { fuseAligned: 0.5 });
    expectClose(c, {}, cpu, dev);
  });

  it('analyzeTensor gives the same geometry', async () => {
    const c = makeCase(50, 129, 19, 'bf16');
    const a = await analyzeTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cpu' });
    const g = await analyzeTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda' });
    for (let i = 0; i < 50; i++) expect(Math.abs(a.cos[i]! - g.cos[i]!)).toBeLessThan(1e-9);
    expect(g.counts).toEqual(a.counts);
    expect(Math.abs(g.energy.applied - a.energy.applied)).toBeLessThanOrEqual(1e-9 * Math.abs(a.energy.applied));
  });

  it('streams in chunks under a small memory limit with the same bytes, run to run', async () => {
    const c = makeCase(300, 515, 23, 'f16');
    for (const opts of [{}, { density: 0.4 }] as EditOptions[]) {
      const big = await editTensor({ base: c.base, old: c.old, new: c.new }, { ...opts, backend: 'cuda' });
      const small = await editTensor({ base: c.base, old: c.old, new: c.new }, { ...opts, backend: 'cuda', cudaMemoryLimit: 2 * 1024 * 1024 });
      const again = await editTensor({ base: c.base, old: c.old, new: c.new }, { ...opts, backend: 'cuda', cudaMemoryLimit: 2 * 1024 * 1024 });
      expect(Buffer.from(small.out.data.buffer).equals(Buffer.from(big.out.data.buffer))).toBe(true);
      expect(Buffer.from(again.out.data.buffer).equals(Buffer.from(small.out.data.buffer))).toBe(true);
      expect(Buffer.from(small.stats.cos.buffer).equals(Buffer.from(big.stats.cos.buffer))).toBe(true);
    }
    const tiny = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda', cudaMemoryLimit: 1024 }).catch((e) => e);
    expect(tiny.code).toBe('ERR_INVALID_OPTION');
    expect(tiny.message).toContain('cudaMemoryLimit');
  });

  it('leaves its inputs unmodified', async () => {
    const c = makeCase(20, 64, 29, 'bf16');
    const before = [c.base, c.old, c.new].map((t) => Buffer.from(t.data.buffer).toString('base64'));
    await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda', density: 0.5 });
    expect([c.base, c.old, c.new].map((t) => Buffer.from(t.data.buffer).toString('base64'))).toEqual(before);
  });

  it('non-finite inputs and bad importance give the CPU error, naming the same row', async () => {
    const c = makeCase(30, 40, 31, 'f32');
    (c.new.data as Float32Array)[17 * 40 + 3] = Infinity;
    (c.old.data as Float32Array)[25 * 40 + 1] = NaN;
    const ec = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cpu' }).catch((e) => e);
    const eg = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda' }).catch((e) => e);
    expect(eg.code).toBe('ERR_NON_FINITE');
    expect(eg.message).toBe(ec.message);
    const ok = await both(c, { allowNonFinite: true });
    expect(Array.from(ok.dev.stats.region)).toEqual(Array.from(ok.cpu.stats.region));
    const c2 = makeCase(30, 40, 37, 'f32');
    const io = importance(30, 40, 3, 'f32'), inw = importance(30, 40, 4, 'f32');
    (inw.data as Float32Array)[12 * 40 + 7] = -1;
    const ic = await editTensor({ base: c2.base, old: c2.old, new: c2.new }, { backend: 'cpu', importanceOld: io, importanceNew: inw }).catch((e) => e);
    const ig = await editTensor({ base: c2.base, old: c2.old, new: c2.new }, { backend: 'cuda', importanceOld: io, importanceNew: inw }).catch((e) => e);
    expect(ig.code).toBe('ERR_BAD_IMPORTANCE');
    expect(ig.message).toBe(ic.message);
  });

  it('empty tensors', async () => {
    for (const shape of [[0, 8], [4, 0], [2, 3, 0]]) {
      const n = shape.reduce((x, y) => x * y, 1);
      const t = (): Tensor => ({ dtype: 'f32', shape, data: new Float32Array(n) });
      const g = await editTensor({ base: t(), old: t(), new: t() }, { backend: 'cuda' });
      const cpu = await editTensor({ base: t(), old: t(), new: t() }, { backend: 'cpu' });
      expect(Array.from(g.stats.region)).toEqual(Array.from(cpu.stats.region));
      expect(Array.from(g.stats.coefNew)).toEqual(Array.from(cpu.stats.coefNew));
      expect(g.out.data.length).toBe(n);
    }
  });

  it("'auto' runs on the GPU and info() names the device", async () => {
    expect(info().backend).toBe('cuda');
    expect(info().cuda).not.toBeNull();
  });

  it('LoRA Gram path matches the CPU reference', () => {
    const m = 300, n = 1000, ro = 8, rn = 16;
    const r = rng(41);
    const f = (k: number) => Float32Array.from({ length: k }, () => r() - 0.5);
    const old = { a: f(ro * n), b: f(m * ro), r: ro, scale: 2 };
    const nw = { a: f(rn * n), b: f(m * rn), r: rn, scale: 0.25 };
    const c = cudaLoraGeometry(m, n, old, nw, { backend: 'cpu' });
    const g = cudaLoraGeometry(m, n, old, nw, { backend: 'cuda' });
    for (let i = 0; i < m; i++) {
      for (const k of ['dot', 'na', 'nb'] as const) {
        expect(Math.abs(g[k][i]! - c[k][i]!)).toBeLessThanOrEqual(1e-12 * (Math.abs(c.na[i]!) + Math.abs(c.nb[i]!)) + 1e-300);
      }
    }
  });

  it("option 'out' (caller-provided output) is written by the CUDA backend", async () => {
    for (const [dt, od] of [['f32', 'f32'], ['bf16', 'bf16'], ['f16', 'f32']] as const) {
      const c = makeCase(37, 123, 7, dt);
      const fresh = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda', outDtype: od });
      const n = 37 * 123;
      const buf = od === 'f32' ? new Float32Array(n).fill(123) : new Uint16Array(n).fill(0x7777);
      const out: Tensor = { dtype: od, shape: [37, 123], data: buf };
      const r = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda', out });
      expect(r.out.data).toBe(buf);
      expect(Array.from(r.out.data)).toEqual(Array.from(fresh.out.data));
      const cpu = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cpu', outDtype: od });
      expectClose(c, {}, cpu, r);
    }
  });

  it('task-vector jobs (tauGiven) are refused by the CUDA backend, not computed as weights', () => {
    const c = makeCase(4, 8, 3, 'f32');
    const spec = {
      rows: 4, cols: 8, base: c.base.data, baseDtype: 'f32', old: c.old.data, oldDtype: 'f32', new: c.new.data, newDtype: 'f32',
      outDtype: 'f32', wantOut: true, threads: 1, params: { strategy: 'geoedit' }, tauGiven: true, backend: 'cuda' as const,
    };
    expect(() => loadNative().editSync(spec as never)).toThrow(/does not take task vectors/);
    expect(() => loadNative().editSync({ ...spec, backend: 'cpu' } as never)).not.toThrow();
  });

  it("the LoRA API runs on the CPU: 'auto' works, an explicit 'cuda' is refused (ERR_UNSUPPORTED)", async () => {
    const r = rng(5);
    const f = (rows: number, cols: number): Tensor => ({ dtype: 'f32', shape: [rows, cols], data: Float32Array.from({ length: rows * cols }, () => r() - 0.5) });
    const pair = { old: { A: f(4, 24), B: f(16, 4), scale: 1 }, new: { A: f(8, 24), B: f(16, 8), scale: 0.5 } };
    const st = await analyzeLora(pair);
    expect(st.cos.length).toBe(16);
    const cpu = await analyzeLora(pair, { backend: 'cpu' });
    expect(Array.from(st.cos)).toEqual(Array.from(cpu.cos));
    await expect(analyzeLora(pair, { backend: 'cuda' })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
  });
  });
}
