// The GPU suite, shared by test/gpu/cuda.test.ts (a real GPU, skipped without one) and
// test/gpu/cuda-emu.test.ts (the plugin's kernels run on the CPU emulator): every kernel and option
// on the CUDA backend against the CPU reference, with SPEC §5's tolerances.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeCheckpoint, analyzeLora, analyzeTensor, cudaStatus, editCheckpoint, editTensor, info, openCheckpoint } from '../../lib/index';
import type { CheckpointOptions, TensorManifestEntry } from '../../lib/checkpoint';
import { toTensor, writeSafetensors } from '../../lib/safetensors';
import { loadNative } from '../../lib/native';
import { _cudaLoraGeometry } from '../../lib/lora-geometry';
import type { DType, EditOptions, Tensor, TensorStats } from '../../lib/types';
import { leftovers, makeTriple, readCheckpointTensor, tensorsFor, writeCheckpoint, type Spec } from './ckpt';
import { rng } from './prng';
import { expectLayoutOutput, layoutReference } from './layouts';
import { COS_ABS, F32_REL, HALF_ULPS } from './tolerances';
import { gram, maxRelError, ridgeP } from './preserve-reference';
import { referencePreservedEdit } from './reference';
import { expectPreservedClose } from './expect-reference';

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
    expect(Math.abs(cc - gc), `cos row ${i}`).toBeLessThanOrEqual(COS_ABS);
    if (cpu.stats.region[i] !== dev.stats.region[i]) {
      expect(Math.abs(Math.abs(cc) - t), `region row ${i} differs away from the threshold`).toBeLessThan(COS_ABS);
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
        const b = base[k]!, tol = F32_REL * (Math.abs(b) + cn * Math.abs(nw[k]! - b) + co * Math.abs(old[k]! - b));
        const err = Math.abs(x - y);
        if (err > tol) expect(err, `${what}[${i}, ${j}] cpu ${x} gpu ${y}`).toBeLessThanOrEqual(tol);
        worst = Math.max(worst, err);
      } else {
        const d = Math.abs(ord16(od[k]!) - ord16(gd[k]!));
        if (d > HALF_ULPS) expect(d, `${what}[${i}, ${j}] cpu 0x${od[k]!.toString(16)} gpu 0x${gd[k]!.toString(16)} (ulps)`).toBeLessThanOrEqual(HALF_ULPS);
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

  it('16-bit rows on the raw-cache kernel, at its shared-memory limit and past it', async () => {
    // bf16/f16 inputs with cols % 8 == 0 take the 16-bit kernel (6 bytes of cache per column, up to
    // 19024 columns on sm_90); 19032 falls back to the read-twice kernel; 4100 (not % 8) to the f32 cache.
    for (const [cols, dt] of [[4096, 'bf16'], [14336, 'bf16'], [19024, 'f16'], [19032, 'bf16'], [4100, 'bf16']] as const) {
      const c = makeCase(2, cols, 31, dt);
      for (const opts of [{}, { outDtype: 'f32' as const }]) {
        const { cpu, dev } = await both(c, opts);
        expectClose(c, opts, cpu, dev);
      }
    }
    const mixed = makeCase(3, 4096, 37, ['bf16', 'f16', 'bf16']);
    const { cpu, dev } = await both(mixed, {});
    expectClose(mixed, {}, cpu, dev);
  });

  it.skipIf(emulator)('a 96 MiB block: several chunks, staging copies on several threads, same bytes as the CPU', async () => {
    // 2048 x 8192 bf16 (32 MiB per input): chunks above 4 MiB are staged by several threads.
    const c = makeCase(2048, 8192, 41, 'bf16');
    const { cpu, dev } = await both(c, {});
    expectClose(c, {}, cpu, dev);
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

  it("'auto' runs host-memory edits on the CPU (the faster backend measured) and says why; info() names the device", async () => {
    const i = info();
    const forced = process.env.GEOEDIT_AUTO_BACKEND === 'cuda'; // the whole suite on the GPU (bench/gpu/run.sh)
    expect(i.backend).toBe(forced ? 'cuda' : 'cpu');
    expect(i.backendReason).toMatch(forced ? /GEOEDIT_AUTO_BACKEND/ : /host-memory/);
    // preserved jobs: the rule, or why the GPU's linear algebra cannot take them
    const ps = loadNative().cudaPreserveStatus();
    expect(i.preserveBackendReason).toMatch(ps.available ? /^per job: the GPU when/ : /cuBLAS\/cuSOLVER/);
    expect(i.cuda).not.toBeNull();
    expect(i.backends).toEqual(['cpu', 'cuda']);
  });

  it('LoRA Gram path matches the CPU reference', () => {
    const m = 300, n = 1000, ro = 8, rn = 16;
    const r = rng(41);
    const f = (k: number) => Float32Array.from({ length: k }, () => r() - 0.5);
    const old = { a: f(ro * n), b: f(m * ro), r: ro, scale: 2 };
    const nw = { a: f(rn * n), b: f(m * rn), r: rn, scale: 0.25 };
    const c = _cudaLoraGeometry(m, n, old, nw, { backend: 'cpu' });
    const g = _cudaLoraGeometry(m, n, old, nw, { backend: 'cuda' });
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

  it('preservation (SPEC §3 step 0): the projection and the factorisation on the GPU (cuBLAS/cuSOLVER) vs the f64 reference and the CPU', () => {
    const m = 300, n = 40;
    const r = rng(21);
    const K = new Float32Array(400 * n);
    const mu = Array.from({ length: n }, () => 2 * (r() - 0.5));
    for (let i = 0; i < 400; i++) for (let j = 0; j < n; j++) K[i * n + j] = 2 * (r() - 0.5) + mu[j]!;
    const C0 = Float32Array.from(gram(K, 400, n));
    const tau = Float32Array.from({ length: m * n }, () => 0.1 * (r() - 0.5));
    const zero = new Float32Array(m * n);
    const spec = (backend: 'cpu' | 'cuda') => ({
      rows: m, cols: n, base: zero, baseDtype: 'f32', old: zero, oldDtype: 'f32', new: tau, newDtype: 'f32', outDtype: 'f32',
      wantOut: true, threads: 2, params: { strategy: 'task-arithmetic' }, tensorName: 'w', backend, preserve: { cov: C0, rho: 0.3 },
    });
    // The emulator has stand-ins for cuBLAS/cuSOLVER; a GPU machine without the libraries projects on the CPU (and says why).
    const ps = loadNative().cudaPreserveStatus();
    if (emulator) expect(ps.available, ps.reason).toBe(true);
    else if (!ps.available) console.log(`[cuda suite] preservation on the CPU: ${ps.reason}`);
    const dev = loadNative().editSync(spec('cuda') as never) as unknown as { out: Float32Array; preserveEnergy: Float64Array };
    const cpu = loadNative().editSync(spec('cpu') as never) as unknown as { out: Float32Array; preserveEnergy: Float64Array };
    expect(dev.preserveEnergy[9], 'rows projected on the GPU').toBe(ps.available ? m : 0);
    expect(cpu.preserveEnergy[9]).toBe(0);
    const P = ridgeP(C0, null, n, 0.3, 0);
    const tau64 = Float64Array.from(tau);
    expect(maxRelError(dev.out, tau64, P, m, n)).toBeLessThanOrEqual(1e-5);
    expect(maxRelError(cpu.out, tau64, P, m, n)).toBeLessThanOrEqual(1e-5);
    // run to run: the same bytes
    const again = loadNative().editSync(spec('cuda') as never) as unknown as { out: Float32Array };
    expect(Buffer.from(again.out.buffer).equals(Buffer.from(dev.out.buffer))).toBe(true);
    // a statistic that is not PSD is refused by the GPU factorisation too
    const bad = Float32Array.from(C0, (v, i) => (i % (n + 1) === 0 ? -v : v));
    expect(() => loadNative().editSync({ ...spec('cuda'), preserve: { cov: bad } } as never)).toThrow(/positive semi-definite/);
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

  it('an output that overflows its dtype is the CPU error (ERR_NON_FINITE_OUTPUT: message, row, column) on every kernel', async () => {
    // [label, input dtype, cols, params, where 1e6 sits (row, col) or null for a huge scale]
    const cases: Array<[string, DType, number, Record<string, number | string | boolean>, [number, number] | null, string]> = [
      ['fast, f32 -> f16', 'f32', 40, {}, [13, 5], 'f16'],
      ['raw-cache 16-bit, bf16 -> f16', 'bf16', 64, {}, [7, 60], 'f16'],
      ['general (density 0.5), f32 -> f16', 'f32', 48, { density: 0.5 }, [18, 0], 'f16'],
      ['scale 1e40, f32 -> f32', 'f32', 24, { scale: 1e40 }, null, 'f32'],
      ['scale 1e40, bf16 -> bf16', 'bf16', 32, { scale: 1e40 }, null, 'bf16'],
    ];
    for (const [label, dt, cols, params, at, outDtype] of cases) {
      const rows = 20;
      const c = makeCase(rows, cols, 43, 'f32');
      if (at) {
        const k = at[0] * cols + at[1];
        c.f32.base[k] = 1e6; c.f32.old[k] = 1e6 + 0.5; c.f32.new[k] = 1e6 + 1;
      }
      const spec = (backend: 'cpu' | 'cuda', extra: Record<string, boolean> = {}) => ({
        rows, cols, base: toDtype(c.f32.base, dt), baseDtype: dt, old: toDtype(c.f32.old, dt), oldDtype: dt, new: toDtype(c.f32.new, dt), newDtype: dt,
        outDtype, wantOut: true, threads: 1, params: { ...params, ...extra }, tensorName: 'layer.w', backend,
      });
      const ec = await loadNative().edit(spec('cpu') as never).then(() => null, (e) => e);
      const eg = await loadNative().edit(spec('cuda') as never).then(() => null, (e) => e);
      expect(ec?.code, label).toBe('ERR_NON_FINITE_OUTPUT');
      expect(eg?.code, label).toBe('ERR_NON_FINITE_OUTPUT');
      expect(eg.message, label).toBe(ec.message);
      expect(eg.details, label).toEqual(ec.details);
      if (at) expect(ec.details, label).toMatchObject({ tensor: 'layer.w', row: at[0], column: at[1] });
      // Opted in: both write the same (non-finite) output.
      const oc = await loadNative().edit(spec('cpu', { allowNonFiniteOutput: true }) as never);
      const og = await loadNative().edit(spec('cuda', { allowNonFiniteOutput: true }) as never);
      expect(Array.from(og.region), label).toEqual(Array.from(oc.region));
    }
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

  checkpointSuite();
  });
}

// ---- the checkpoint pipeline on the GPU ----------------------------------------------------------

/** Small tensors of every kind the pipeline meets (the emulator runs each CUDA thread as a fiber). */
const CKPT_SPECS: Spec[] = [
  { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [64, 296] },       // 8-wide rows
  { name: 'model.layers.0.mlp.down_proj.weight', dtype: 'F16', shape: [48, 131] },      // cols not a multiple of 8 (or 4)
  { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [40, 260] },   // 4-wide rows
  { name: 'model.layers.0.self_attn.k_proj.weight', dtype: 'BF16', shape: [1, 200] },   // a single row
  { name: 'model.layers.0.input_layernorm.weight', dtype: 'F32', shape: [300] },        // 1-D: one row
  { name: 'model.position_ids', dtype: 'I64', shape: [8] },                              // copied unchanged
];
// 8 KiB blocks: 13, 31 and 7 rows of the three large tensors (several blocks each); 32 KiB of
// device memory: 16 KiB per stream, 5, 11 and 2 rows per chunk (several chunks per block).
const SMALL: CheckpointOptions = { blockBytes: 8 << 10, cudaMemoryLimit: 32 << 10, hash: false };

const toF32 = (t: Tensor) => (t.dtype === 'f32' ? (t.data as Float32Array) : (loadNative().convert(t.dtype, t.data, 'f32') as Float32Array));

/** A manifest's per-tensor statistics against the CPU's, within SPEC §5 (f64 sums in another order). */
function expectSameStats(cpu: TensorManifestEntry, dev: TensorManifestEntry, nearThreshold: number): void {
  const at = `tensor ${cpu.name}`;
  for (const k of ['name', 'shape', 'dtype', 'outDtype', 'action', 'rows', 'cols', 'threshold', 'zeroRows'] as const) expect(dev[k], `${at}: ${k}`).toEqual(cpu[k]);
  if (cpu.action !== 'edit') return;
  // A region may differ only on a row within 1e-9 of the threshold (SPEC §5).
  let moved = 0;
  for (const r of ['orthogonal', 'synergy', 'conflict'] as const) moved += Math.abs(dev.counts![r] - cpu.counts![r]);
  expect(moved, `${at}: region counts`).toBeLessThanOrEqual(2 * nearThreshold);
  expect(dev.angleHistogram, `${at}: angle histogram`).toEqual(cpu.angleHistogram);
  expect(Math.abs(dev.meanCos! - cpu.meanCos!), `${at}: mean cos`).toBeLessThanOrEqual(1e-9);
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), 1e-300);
  expect(rel(dev.energy!.new, cpu.energy!.new), `${at}: energy new`).toBeLessThanOrEqual(1e-9);
  expect(rel(dev.energy!.old, cpu.energy!.old), `${at}: energy old`).toBeLessThanOrEqual(1e-9);
  // Applied energy follows the coefficients (c_old may differ by an f32 ulp).
  expect(rel(dev.energy!.applied, cpu.energy!.applied), `${at}: energy applied`).toBeLessThanOrEqual(1e-6);
}

function checkpointSuite(): void {
  describe('the checkpoint pipeline on the CUDA backend', () => {
    let root: string;
    let tri: { base: string; old: string; new: string };
    beforeAll(async () => {
      root = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-ckgpu-'));
      tri = await makeTriple(path.join(root, 'in'), CKPT_SPECS); // sharded 3 / 1 / 2
    });
    afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

    /** The CPU reference of one tensor (editTensor, whose bytes the CPU pipeline reproduces), with the inputs as f32. */
    async function reference(name: string, opts: EditOptions) {
      const [b, o, n] = await Promise.all([tri.base, tri.old, tri.new].map(async (c) => toTensor(await readCheckpointTensor(c, name))));
      const ref = await editTensor({ base: b!, old: o!, new: n! }, { ...opts, backend: 'cpu' });
      const near = new Set<number>();
      for (let i = 0; i < ref.stats.rows; i++) if (Math.abs(Math.abs(ref.stats.cos[i]!) - ref.stats.threshold) < COS_ABS) near.add(i);
      return { ref, f32: { base: toF32(b!), old: toF32(o!), new: toF32(n!) }, near };
    }

    const variants: Array<[string, Pick<EditOptions, 'density' | 'fuseAligned' | 'forgetConflicting'>]> = [
      ['default options', {}],
      ['density 0.5 with fuse/forget (the top-k path)', { density: 0.5, fuseAligned: 1, forgetConflicting: 1 }],
    ];
    variants.forEach(([label, opts], v) => {
      it(`editCheckpoint, ${label}: 'cuda' (several blocks and device chunks) matches 'cpu' tensor by tensor; the manifest names the backend`, async () => {
        const cpuDir = path.join(root, `cpu-${v}`), devDir = path.join(root, `cuda-${v}`);
        const mc = await editCheckpoint({ ...tri, out: cpuDir }, { ...opts, ...SMALL, backend: 'cpu' });
        const mg = await editCheckpoint({ ...tri, out: devDir }, { ...opts, ...SMALL, backend: 'cuda' });
        expect(mc.backend).toEqual({ name: 'cpu', device: null, requested: 'cpu', reason: "backend 'cpu' was requested" });
        expect(mg.backend).toEqual({ name: 'cuda', device: cudaStatus().device!.name, requested: 'cuda', reason: "backend 'cuda' was requested" });
        expect(JSON.parse(fs.readFileSync(path.join(devDir, 'geoedit-manifest.json'), 'utf8')).backend.name).toBe('cuda');
        expect(fs.readdirSync(devDir).sort()).toEqual(fs.readdirSync(cpuDir).sort());
        let identical = 0, compared = 0;
        for (const sp of CKPT_SPECS) {
          const a = await readCheckpointTensor(cpuDir, sp.name), g = await readCheckpointTensor(devDir, sp.name);
          expect(g.dtype, sp.name).toBe(sp.dtype);
          expect(g.shape, sp.name).toEqual(sp.shape);
          const ia = mc.tensors.findIndex((e) => e.name === sp.name);
          expect(mg.tensors[ia]!.name).toBe(sp.name);
          if (sp.dtype === 'I64') {
            expect(mg.tensors[ia]!.action).toBe('copy');
            expect(Buffer.from(g.data.buffer, g.data.byteOffset, g.data.byteLength).equals(Buffer.from((await readCheckpointTensor(tri.base, sp.name)).data.buffer))).toBe(true);
            continue;
          }
          const { ref, f32, near } = await reference(sp.name, opts);
          const cpuOut = toTensor(a), devOut = toTensor(g);
          // The CPU pipeline is editTensor's bytes; the GPU's are within SPEC §5 of them.
          expect(Buffer.from(cpuOut.data.buffer).equals(Buffer.from(ref.out.data.buffer)), sp.name).toBe(true);
          expectOutClose(f32, ref.stats, cpuOut, devOut, near, sp.name);
          expectSameStats(mc.tensors[ia]!, mg.tensors[ia]!, near.size);
          for (let k = 0; k < cpuOut.data.length; k++) if (cpuOut.data[k] === devOut.data[k]) identical++;
          compared += cpuOut.data.length;
        }
        // Most values are the same bits (same coefficients: the same rounding on both backends).
        expect(identical / compared).toBeGreaterThan(0.9);
        for (const k of ['rows', 'edited', 'copied', 'converted', 'bytesRead', 'bytesWritten'] as const) expect(mg.totals[k]).toBe(mc.totals[k]);
      });
    });

    it('columns (GPT-2 Conv1D [in, out], detected from config.json) on cuda: the f64 reference on columns, several column blocks and device chunks', async () => {
      const d = path.join(root, 'cols'), specs = [{ name: 'h.0.mlp.c_fc.weight', shape: [96, 200] }, { name: 'h.0.attn.c_attn.weight', shape: [40, 120] }];
      const io = { base: path.join(d, 'base'), old: path.join(d, 'old'), new: path.join(d, 'new') };
      for (const [role, dir] of Object.entries(io)) {
        fs.mkdirSync(dir, { recursive: true });
        await writeSafetensors(path.join(dir, 'model.safetensors'), tensorsFor(specs.map((x) => ({ ...x, dtype: 'F32' as const })), role as 'base' | 'old' | 'new'));
      }
      fs.writeFileSync(path.join(io.base, 'config.json'), JSON.stringify({ model_type: 'gpt2' }));
      for (const opts of [{}, { kappa: 0.5, density: 0.5 }]) {
        const out = path.join(d, `out-${Object.keys(opts).length}`);
        const m = await editCheckpoint({ ...io, out }, { ...opts, ...SMALL, backend: 'cuda' });
        expect(m.backend.name).toBe('cuda');
        for (const sp of specs) {
          const e = m.tensors.find((t) => t.name === sp.name)!;
          expect(e).toMatchObject({ layout: 'columns', rows: sp.shape[1], cols: sp.shape[0] });
          const [b, o, n] = await Promise.all([io.base, io.old, io.new].map(async (c) => toTensor(await readCheckpointTensor(c, sp.name))));
          const ref = layoutReference('columns', b!, o!, n!, opts);
          const got = toTensor(await readCheckpointTensor(out, sp.name)).data as Float32Array;
          expect(expectLayoutOutput('columns', sp.shape, got, ref)).toBeGreaterThan(0.9 * got.length);
        }
      }
    });

    it('preservation on columns (Conv1D [in, out] + its bias, augmented statistics) on cuda: the f64 reference on the neurons, and the bytes of the rows edit of the transposed checkpoint', async () => {
      const IN = 24, OUT = 1700; // more than one GPU projection block (kPreserveCudaBlockRows = 1536 neurons)
      const d = path.join(root, 'cols-pres'), r = rng(41);
      const vals = (n: number, s = 1) => Float32Array.from({ length: n }, () => s * 2 * (r() - 0.5));
      const w = { base: vals(IN * OUT), dOld: vals(IN * OUT, 0.1), dNew: vals(IN * OUT, 0.1) }, b = { base: vals(OUT), dOld: vals(OUT, 0.1), dNew: vals(OUT, 0.1) };
      const tr = (x: Float32Array) => { const y = new Float32Array(x.length); for (let i = 0; i < IN; i++) for (let j = 0; j < OUT; j++) y[j * IN + i] = x[i * OUT + j]!; return y; };
      const dirs = (kind: string) => ({ base: path.join(d, kind, 'base'), old: path.join(d, kind, 'old'), new: path.join(d, kind, 'new') });
      const cols = dirs('cols'), rowsIo = dirs('rows');
      for (const role of ['base', 'old', 'new'] as const) {
        const wv = role === 'base' ? w.base : w.base.map((v, i) => v + (role === 'old' ? w.dOld : w.dNew)[i]!);
        const bv = role === 'base' ? b.base : b.base.map((v, i) => v + (role === 'old' ? b.dOld : b.dNew)[i]!);
        for (const [io, shape, data] of [[cols, [IN, OUT], wv], [rowsIo, [OUT, IN], tr(wv)]] as const) {
          fs.mkdirSync(io[role], { recursive: true });
          await writeSafetensors(path.join(io[role], 'model.safetensors'), [{ name: 'h.0.mlp.c_fc.weight', dtype: 'F32', shape: [...shape], data }, { name: 'h.0.mlp.c_fc.bias', dtype: 'F32', shape: [OUT], data: bv }]);
        }
      }
      fs.writeFileSync(path.join(cols.base, 'config.json'), JSON.stringify({ model_type: 'gpt2' }));
      const K = new Float32Array(300 * (IN + 1));
      for (let i = 0; i < 300; i++) { for (let j = 0; j < IN; j++) K[i * (IN + 1) + j] = 2 * (r() - 0.5) + (j % 3); K[i * (IN + 1) + IN] = 1; }
      const file = path.join(d, 'stats.safetensors');
      await writeSafetensors(file, [{ name: 'h.0.mlp.c_fc.weight:keys', dtype: 'F32', shape: [300, IN + 1], data: K }]);
      const mc = await editCheckpoint({ ...cols, out: path.join(d, 'out-cols') }, { ...SMALL, backend: 'cuda', preserve: { file } });
      const mr = await editCheckpoint({ ...rowsIo, out: path.join(d, 'out-rows') }, { ...SMALL, backend: 'cuda', preserve: { file } });
      expect(mc.backend.name).toBe('cuda');
      expect(mc.tensors[0]).toMatchObject({ layout: 'columns', rows: OUT, cols: IN, preserve: { bias: 'h.0.mlp.c_fc.bias' } });
      const got = toTensor(await readCheckpointTensor(path.join(d, 'out-cols'), 'h.0.mlp.c_fc.weight')).data as Float32Array;
      const twin = toTensor(await readCheckpointTensor(path.join(d, 'out-rows'), 'h.0.mlp.c_fc.weight')).data as Float32Array;
      expect(Buffer.from(tr(got).buffer).equals(Buffer.from(twin.buffer))).toBe(true);
      for (const name of ['h.0.mlp.c_fc.bias']) {
        const [x, y] = await Promise.all(['out-cols', 'out-rows'].map(async (o) => toTensor(await readCheckpointTensor(path.join(d, o), name)).data as Float32Array));
        expect(Buffer.from(x!.buffer).equals(Buffer.from(y!.buffer))).toBe(true);
      }
      expect(mc.tensors.map((t) => t.preserve)).toEqual(mr.tensors.map((t) => t.preserve));
      const ten = async (io: typeof rowsIo, name: string) => ({ base: toTensor(await readCheckpointTensor(io.base, name)), old: toTensor(await readCheckpointTensor(io.old, name)), new: toTensor(await readCheckpointTensor(io.new, name)) });
      const tw = await ten(rowsIo, 'h.0.mlp.c_fc.weight'), tb = await ten(rowsIo, 'h.0.mlp.c_fc.bias');
      const ref = referencePreservedEdit(tw.base, tw.old, tw.new, ridgeP(gram(K, 300, IN + 1), null, IN + 1, 0.3, 0), {}, tb);
      expectPreservedClose(tr(got), ref.weight, ref.xNorm);
      // The columns blocks' projection ran on the device (cuBLAS, or the emulator's stand-in): gpuRows = every neuron.
      const ps = loadNative().cudaPreserveStatus();
      const fds: number[] = [];
      const src = (role: 'base' | 'old' | 'new', name: string) => {
        const t = openCheckpoint(cols[role]).byName.get(name)!;
        const fd = fs.openSync(t.file, 'r');
        fds.push(fd);
        return { fd, offset: t.begin, dtype: 'f32', file: t.file };
      };
      try {
        const W = 'h.0.mlp.c_fc.weight', B = 'h.0.mlp.c_fc.bias';
        const res = await (loadNative().stream as (s: unknown) => Promise<Array<{ preserveEnergy?: Float64Array } | null>>)({
          params: { strategy: 'geoedit' }, backend: 'cuda', preserves: [{ keys: K, keysShape: [300, IN + 1], tensor: W }],
          tasks: [{ kind: 0, name: W, rows: OUT, cols: IN, layout: 1, groups: 1, base: src('base', W), old: src('old', W), new: src('new', W), preserve: 0, biasBase: src('base', B), biasOld: src('old', B), biasNew: src('new', B) }],
        });
        expect(res[0]!.preserveEnergy![9], 'neurons projected on the device').toBe(ps.available ? OUT : 0);
        expect(res[0]!.preserveEnergy![8]).toBe(OUT);
      } finally {
        for (const fd of fds) fs.closeSync(fd);
      }
    });

    it('analyzeCheckpoint on cuda gives the per-tensor statistics of the CPU and writes nothing', async () => {
      const before = fs.readdirSync(root).sort();
      const mc = await analyzeCheckpoint(tri, { ...SMALL, backend: 'cpu' });
      const mg = await analyzeCheckpoint(tri, { ...SMALL, backend: 'cuda' });
      expect(fs.readdirSync(root).sort()).toEqual(before);
      expect(mg.output).toBeNull();
      expect(mg.backend.name).toBe('cuda');
      expect(mg.tensors.map((e) => e.name)).toEqual(mc.tensors.map((e) => e.name));
      expect(mg.tensors.length).toBe(CKPT_SPECS.length - 1); // analysis lists the edited tensors
      for (let i = 0; i < mc.tensors.length; i++) {
        const { near } = await reference(mc.tensors[i]!.name, {});
        expectSameStats(mc.tensors[i]!, mg.tensors[i]!, near.size);
      }
      // The GPU's default block size (64 MiB: every tensor in one block) gives the same statistics.
      const big = await analyzeCheckpoint(tri, { backend: 'cuda', hash: false });
      expect(big.tensors.map((e) => e.counts)).toEqual(mg.tensors.map((e) => e.counts));
      expect(big.tensors.map((e) => e.energy)).toEqual(mg.tensors.map((e) => e.energy));
    });

    it.skipIf(process.env.GEOEDIT_AUTO_BACKEND === 'cuda')("'auto' with preservation: a 1024-wide preserved layer on the GPU, a 16-wide one on the CPU, the manifest saying why (lib/backend.ts preserveRule)", async () => {
      const ps = loadNative().cudaPreserveStatus();
      for (const [d, rows] of [[1024, 4096], [16, 64]] as const) {
        const dd = path.join(root, `auto-pres-${d}`), r = rng(d);
        const io = { base: path.join(dd, 'base'), old: path.join(dd, 'old'), new: path.join(dd, 'new') };
        const base = Float32Array.from({ length: rows * d }, () => r() - 0.5);
        for (const [role, dir] of Object.entries(io)) {
          fs.mkdirSync(dir, { recursive: true });
          const data = role === 'base' ? base : base.map((v) => v + 0.01 * (r() - 0.5));
          await writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'l0.up.weight', dtype: 'F32', shape: [rows, d], data }]);
        }
        const cov = new Float32Array(d * d);
        for (let j = 0; j < d; j++) cov[j * d + j] = 0.5 + r(); // diagonal second moment: PSD
        const file = path.join(dd, 'stats.safetensors');
        await writeSafetensors(file, [{ name: 'l0.up.weight:cov', dtype: 'F32', shape: [d, d], data: cov }]);
        const m = await analyzeCheckpoint(io, { hash: false, preserve: { file } });
        const gpu = d === 1024 && ps.available;
        expect(m.backend, `d ${d}`).toMatchObject({ name: gpu ? 'cuda' : 'cpu', requested: 'auto' });
        expect(m.backend.reason).toMatch(ps.available ? (gpu ? /preserved job: .* above the 2x/ : /preserved job: .* below the 2x/) : /linear algebra is unusable/);
      }
    });

    it("'auto' runs the checkpoint pipeline on the CPU, the manifest saying why (same bytes as 'cuda')", async () => {
      const dir = path.join(root, 'auto');
      const m = await editCheckpoint({ ...tri, out: dir }, { ...SMALL });
      const forced = process.env.GEOEDIT_AUTO_BACKEND === 'cuda';
      expect(m.backend).toMatchObject({ name: forced ? 'cuda' : 'cpu', requested: 'auto' });
      expect(m.backend.reason).toMatch(forced ? /GEOEDIT_AUTO_BACKEND/ : /host-memory/);
      const explicit = path.join(root, 'cuda-0');
      for (const sp of CKPT_SPECS) {
        const a = await readCheckpointTensor(dir, sp.name), b = await readCheckpointTensor(explicit, sp.name);
        expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer)), sp.name).toBe(true);
      }
    });

    it('a non-finite value gives the CPU error (code, tensor, row, column) on cuda and leaves no output', async () => {
      const d = path.join(root, 'nan');
      const t = tensorsFor(CKPT_SPECS, 'new');
      (t.find((x) => x.name === 'model.layers.0.mlp.up_proj.weight')!.data as Uint16Array)[37 * 296 + 5] = 0x7fc0; // NaN: row 37 (the 3rd block), column 5
      (t.find((x) => x.name === 'model.layers.0.self_attn.q_proj.weight')!.data as Float32Array)[3 * 260] = Infinity; // a later tensor
      await writeCheckpoint(path.join(d, 'new'), t, 2, false);
      const io = { ...tri, new: path.join(d, 'new') };
      const run = (out: string, o: CheckpointOptions) => editCheckpoint({ ...io, out: path.join(d, out) }, o).then(() => null, (e) => e);
      const ec = await run('out-cpu', { ...SMALL, backend: 'cpu' });
      expect(ec?.code).toBe('ERR_NON_FINITE');
      expect(ec.message).toMatch(/tensor 'model\.layers\.0\.mlp\.up_proj\.weight'.*new weights at row 37, column 5/);
      for (const [out, o] of [['out-cuda', { ...SMALL, backend: 'cuda' }], ['out-cuda-big', { backend: 'cuda', hash: false }]] as const) {
        const eg = await run(out, o);
        expect(eg?.code, out).toBe('ERR_NON_FINITE');
        expect(eg.message, out).toBe(ec.message);
        expect(fs.existsSync(path.join(d, out))).toBe(false);
      }
      expect(fs.existsSync(path.join(d, 'out-cpu'))).toBe(false);
      expect(leftovers(d)).toEqual([]);
      const ok = await editCheckpoint({ ...io, out: path.join(d, 'allowed') }, { ...SMALL, backend: 'cuda', allowNonFinite: true });
      expect(ok.totals.edited).toBe(CKPT_SPECS.length - 1);
    });

    it('cudaMemoryLimit reaches the device: too small for one row is ERR_INVALID_OPTION naming the tensor; nothing written', async () => {
      const out = path.join(root, 'tiny');
      const e = await editCheckpoint({ ...tri, out }, { ...SMALL, backend: 'cuda', cudaMemoryLimit: 1024 }).then(() => null, (x) => x);
      expect(e?.code).toBe('ERR_INVALID_OPTION');
      expect(e.message).toMatch(/cudaMemoryLimit 1024 bytes is too small.*tensor 'model\.layers\.0\.mlp\.up_proj\.weight'/);
      expect(fs.existsSync(out)).toBe(false);
      expect(leftovers(root)).toEqual([]);
    });

    it('an AbortSignal stops a cuda run between shards: ERR_ABORTED, nothing at the target, no temp left', async () => {
      const out = path.join(root, 'abort');
      const ac = new AbortController();
      const seen: number[] = [];
      const e = await editCheckpoint({ ...tri, out }, {
        ...SMALL, backend: 'cuda', maxShardSize: 30_000, // a shard per large tensor: several native calls
        signal: ac.signal, onProgress: (p) => { seen.push(p.bytesDone / p.bytesTotal); ac.abort(); },
      }).then(() => null, (x) => x);
      expect(e?.code).toBe('ERR_ABORTED');
      expect(seen[0]).toBeLessThan(1); // aborted part-way, not after the last tensor
      expect(fs.existsSync(out)).toBe(false);
      expect(leftovers(root)).toEqual([]);
      // The core's cancel flag stops a cuda stream at the next block too.
      const t = openCheckpoint(tri.base).byName.get('model.layers.0.mlp.up_proj.weight')!;
      const fd = fs.openSync(t.file, 'r');
      try {
        const src = { fd, offset: t.begin, dtype: 'bf16', file: t.file };
        const task = { kind: 0 as const, name: t.name, rows: 64, cols: 296, base: src, old: src, new: src, outFd: -1, stats: true };
        const ctl = new Float64Array([0, 1, 0]);
        await expect(loadNative().stream({ tasks: [task], params: {}, blockBytes: 8 << 10, backend: 'cuda', ctl })).rejects.toMatchObject({ code: 'ERR_ABORTED', message: expect.stringContaining(t.name) });
        ctl[1] = 0;
        const res = await loadNative().stream({ tasks: [task], params: {}, blockBytes: 8 << 10, backend: 'cuda', cudaMemoryLimit: 32 << 10, ctl });
        expect(ctl[0]).toBe(3 * 64 * 296 * 2);
        expect(Array.from(res[0]!.region)).toEqual(new Array(64).fill(0)); // identical inputs: zero task vectors
      } finally {
        fs.closeSync(fd);
      }
    });
  });
}
