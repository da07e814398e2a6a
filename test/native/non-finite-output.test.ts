// SPEC §5 (issue 14 class 7): an output that overflows its dtype (a huge scale, a narrow outDtype)
// is ERR_NON_FINITE_OUTPUT naming the tensor, row and column, on every SIMD level, in memory, in
// the checkpoint stream and in the LoRA merge, unless the caller opts in (allowNonFiniteOutput).
// The CUDA kernels are held to the same in test/support/cuda-suite.ts (emulator and GPU).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { editTensor, GeoEditError } from '../../lib/index';
import { loadNative, type NativeSpec } from '../../lib/native';

const addon = loadNative();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-nfo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const made = new Map<string, { base: Float32Array; old: Float32Array; nw: Float32Array }>();
function inputs(rows: number, cols: number, at: [number, number] | null) {
  const key = `${rows}x${cols}@${at}`;
  if (!made.has(key)) made.set(key, makeInputs(rows, cols, at));
  return made.get(key)!;
}

function makeInputs(rows: number, cols: number, at: [number, number] | null) {
  const n = rows * cols;
  const base = new Float32Array(n), old = new Float32Array(n), nw = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    base[i] = ((i * 7919) % 2000) / 10000 - 0.1;
    old[i] = base[i]! + (((i * 104729) % 200) - 100) / 10000;
    nw[i] = base[i]! + (((i * 1299709) % 200) - 100) / 10000;
  }
  if (at) {
    const k = at[0] * cols + at[1];
    base[k] = 1e6; old[k] = 1e6 + 0.5; nw[k] = 1e6 + 1;
  }
  return { base, old, nw };
}

function spec(rows: number, cols: number, at: [number, number] | null, over: Partial<NativeSpec> = {}): NativeSpec {
  const { base, old, nw } = inputs(rows, cols, at);
  return {
    rows, cols, base, baseDtype: 'f32', old, oldDtype: 'f32', new: nw, newDtype: 'f32', outDtype: 'f16', wantOut: true, threads: 0,
    params: {}, tensorName: 'model.w', ...over,
  };
}

async function failure(fn: () => unknown): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  try {
    await fn();
  } catch (e) {
    return e as Error & { code?: string; details?: Record<string, unknown> };
  }
  throw new Error('expected a failure');
}

const levels = addon.info().simdSupported.map((s) => ['scalar', 'avx2', 'avx512'].indexOf(s));

describe('in memory, every SIMD level against the scalar reference', () => {
  for (const [label, rows, cols, at, over] of [
    ['f32 1e6 -> f16', 17, 33, [11, 30], {}],
    ['scale 1e40, f32 -> f32', 9, 20, null, { outDtype: 'f32', params: { scale: 1e40 } }],
    ['scale 1e40, f32 -> bf16', 9, 20, null, { outDtype: 'bf16', params: { scale: 1e40 } }],
    ['f32 1e6 -> f16 with coefficients 0 (task arithmetic, scale 0)', 5, 8, [3, 2], { params: { strategy: 'task-arithmetic', scale: 0 } }],
    ['f32 1e6 -> f16, 32 MiB (streaming stores)', 512, 32768, [400, 32000], {}],
  ] as Array<[string, number, number, [number, number] | null, Partial<NativeSpec>]>) {
    it(label, async () => {
      const errs = [];
      for (const simd of levels) {
        const e = await failure(() => addon.editSync(spec(rows, cols, at, { ...over, simd })));
        expect(e.code, `simd ${simd}`).toBe('ERR_NON_FINITE_OUTPUT');
        errs.push({ message: e.message, details: e.details });
      }
      for (const e of errs) expect(e).toEqual(errs[0]);
      expect(errs[0]!.details).toMatchObject({ tensor: 'model.w', ...(at ? { row: at[0], column: at[1] } : { row: 0 }) });
      expect(errs[0]!.message).toMatch(/model\.w.*overflows.*row/);
      // Async too, and opted in: written as it rounds (an infinity in the output).
      expect((await failure(() => addon.edit(spec(rows, cols, at, over)))).code).toBe('ERR_NON_FINITE_OUTPUT');
      const ok = addon.editSync(spec(rows, cols, at, { ...over, params: { ...(over.params ?? {}), allowNonFiniteOutput: true } }));
      const out = ok.out!;
      const inf = out instanceof Float32Array ? out.some((v) => !Number.isFinite(v)) : (out as Uint16Array).some((h) => (h & 0x7fff) >= (over.outDtype === 'bf16' ? 0x7f80 : 0x7c00));
      expect(inf).toBe(true);
    });
  }

  it('allowNonFinite (non-finite inputs accepted) also accepts the outputs they lead to', () => {
    expect(() => addon.editSync(spec(4, 4, [1, 1], { params: { allowNonFinite: true } }))).not.toThrow();
  });

  it('the public API: GeoEditError with the code and details', async () => {
    const { base, old, nw } = inputs(3, 4, null);
    const t = (d: Float32Array) => ({ dtype: 'f32' as const, shape: [3, 4], data: d });
    const e = await failure(() => editTensor({ base: t(base), old: t(old), new: t(nw) }, { scale: 1e40 }));
    expect(e).toBeInstanceOf(GeoEditError);
    expect(e.code).toBe('ERR_NON_FINITE_OUTPUT');
    expect(e.details).toMatchObject({ row: 0 });
  });
});

describe('the checkpoint stream and the LoRA merge', () => {
  it('stream: an f32 tensor near 1e6 written as f16 rejects naming tensor and row', async () => {
    const rows = 64, cols = 32;
    const { base, old, nw } = inputs(rows, cols, [50, 7]);
    const fds = [base, old, nw].map((a, i) => {
      const f = path.join(tmp, `in${i}.bin`);
      fs.writeFileSync(f, Buffer.from(a.buffer));
      return { fd: fs.openSync(f, 'r'), file: f };
    });
    const outFile = path.join(tmp, 'out.bin');
    const outFd = fs.openSync(outFile, 'w');
    try {
      const s = (k: number) => ({ fd: fds[k]!.fd, offset: 0, dtype: 'f32', file: fds[k]!.file });
      const task = { kind: 0 as const, name: 'layers.3.w', rows, cols, base: s(0), old: s(1), new: s(2), outFd, outOffset: 0, outDtype: 'f16', stats: true };
      const e = await failure(() => addon.stream({ tasks: [task], params: {}, blockBytes: 1024 }));
      expect(e.code).toBe('ERR_NON_FINITE_OUTPUT');
      expect(e.details).toEqual({ tensor: 'layers.3.w', row: 50, column: 7 });
      await expect(addon.stream({ tasks: [task], params: { allowNonFiniteOutput: true }, blockBytes: 1024 })).resolves.toHaveLength(1);
    } finally {
      for (const f of fds) fs.closeSync(f.fd);
      fs.closeSync(outFd);
    }
  });

  it('loraMerge: a huge coefficient overflows, naming stored row and column; opted in it writes', async () => {
    const rows = 6, cols = 5, r = 2;
    const L = new Float32Array(rows * r).fill(1), R = new Float32Array(r * cols).fill(1);
    for (const transposed of [false, true]) {
      const stored = transposed ? cols : rows, storedCols = transposed ? rows : cols;
      const cNew = new Float32Array(rows).fill(0.5);
      cNew[4] = 3e38;
      const m = {
        rows, cols, old: null, new: { L, R, r, scale: 1 }, cNew, cOld: new Float32Array(rows), transposed, s0: 0, s1: stored,
        base: new Float32Array(stored * storedCols), baseDtype: 'f32', outDtype: 'f32', tensorName: 'lora.w',
      };
      const e = await failure(() => addon.loraMerge(m));
      expect(e.code).toBe('ERR_NON_FINITE_OUTPUT');
      expect(e.details).toEqual(transposed ? { tensor: 'lora.w', row: 0, column: 4 } : { tensor: 'lora.w', row: 4, column: 0 });
      const ok = await addon.loraMerge({ ...m, allowNonFiniteOutput: true });
      expect(Array.from(ok.out as Float32Array).some((v) => !Number.isFinite(v))).toBe(true);
    }
  });
});
