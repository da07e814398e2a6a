// The merged-adapter stream task (kind 3, native/core/stream.h LoraMerge): a base tensor in a file
// merged with two LoRA task vectors formed inside the core block by block gives the same bytes and
// row statistics as lib/'s in-memory LoRA path (loraGeometry + mergeLoraRows at density 1,
// denseLoraRows below it, i.e. what editAdapters' merged output runs today), in both layouts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { denseLoraRows, loraGeometry, mergeLoraRows, prepareLora, type LoraFactors } from '../../lib/lora-math';
import { loadNative } from '../../lib/native';
import type { DType } from '../../lib/types';
import { rng } from '../support/prng';

const addon = loadNative();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-lora-stream-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function randn(r: () => number, n: number, s: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() + r() + r() - 1.5) * s;
  return a;
}

function factors(r: () => number, out: number, inp: number, rank: number, scale: number): LoraFactors {
  return { A: { dtype: 'f32', shape: [rank, inp], data: randn(r, rank * inp, 0.2) }, B: { dtype: 'f32', shape: [out, rank], data: randn(r, out * rank, 0.2) }, scale };
}

const side = (s: { L: Float32Array; R: Float32Array; r: number; scale: number } | null) => (s && s.r > 0 ? { L: s.L, R: s.R, r: s.r, scale: s.scale } : null);

describe('stream task kind 3 (merged LoRA output)', () => {
  const cases: Array<[string, boolean, DType, DType, number]> = [
    ['rows, f32, density 1', false, 'f32', 'f32', 1],
    ['rows, bf16 -> f32, density 1', false, 'bf16', 'f32', 1],
    ['fan_in_fan_out (transposed), bf16, density 1', true, 'bf16', 'bf16', 1],
    ['rows, f16, density 0.4', false, 'f16', 'f16', 0.4],
    ['fan_in_fan_out (transposed), f32 -> bf16, density 0.4', true, 'f32', 'bf16', 0.4],
  ];
  for (const [label, transposed, bdt, odt, density] of cases) {
    it(`${label}: the same bytes and statistics as the in-memory path`, async () => {
      const r = rng(label.length * 7 + (transposed ? 1 : 0));
      const m = 70, n = 48; // tau [m, n]: m neurons (out features), n inputs
      const prep = prepareLora({ old: factors(r, m, n, 6, 0.5), new: factors(r, m, n, 4, 2) }, { density, fuseAligned: 0.5, forgetConflicting: 0.3 });
      const storedRows = transposed ? n : m, storedCols = transposed ? m : n;
      const baseF = randn(r, m * n, 0.5);
      const base = bdt === 'f32' ? baseF : (addon.convert('f32', baseF, bdt) as Uint16Array);
      // In memory (lib/lora-math.ts), in blocks as lib/lora.ts mergeIntoBase does.
      let want: Buffer;
      let stats: { cos: Float64Array; coefNew: Float32Array; coefOld: Float32Array; region: Uint8Array };
      if (density === 1) {
        const st = await loraGeometry(prep, 'model.w');
        const parts: Buffer[] = [];
        for (let s0 = 0; s0 < storedRows; s0 += 16) {
          const s1 = Math.min(storedRows, s0 + 16);
          const blk = base.subarray(s0 * storedCols, s1 * storedCols);
          const o = await mergeLoraRows(prep, st.coefNew, st.coefOld, transposed, { dtype: bdt, data: blk.slice() }, s0, s1, odt, 'model.w');
          parts.push(Buffer.from(o.buffer, o.byteOffset, o.byteLength));
        }
        want = Buffer.concat(parts);
        stats = st;
      } else {
        const d = await denseLoraRows(prep, transposed, { dtype: bdt, data: base }, 0, storedRows, odt, 'model.w');
        want = Buffer.from(d.out.buffer, d.out.byteOffset, d.out.byteLength);
        stats = d.stats;
      }
      // The stream task: base read from a file at an offset, output written at an offset, small blocks.
      const inFile = path.join(tmp, `${label.replace(/\W+/g, '_')}.in`), outFile = inFile.replace(/\.in$/, '.out');
      const off = 8;
      fs.writeFileSync(inFile, Buffer.concat([Buffer.alloc(off), Buffer.from(base.buffer, base.byteOffset, base.byteLength)]));
      const inFd = fs.openSync(inFile, 'r'), outFd = fs.openSync(outFile, 'w');
      let res;
      try {
        res = await addon.stream({
          tasks: [{
            kind: 3, name: 'model.w', rows: m, cols: n, base: { fd: inFd, offset: off, dtype: bdt, file: inFile },
            loraOld: side(prep.old), loraNew: side(prep.new), transposed, outFd, outOffset: 4, outDtype: odt, stats: true,
          }],
          params: prep.params as unknown as Record<string, number | string | boolean>, blockBytes: 1000,
        });
      } finally {
        fs.closeSync(inFd);
        fs.closeSync(outFd);
      }
      const got = fs.readFileSync(outFile).subarray(4);
      expect(got.length).toBe(want.length);
      expect(Buffer.compare(got, want)).toBe(0);
      expect(Buffer.compare(got, Buffer.from(base.buffer, base.byteOffset, base.byteLength))).not.toBe(0);
      const s = res[0]!;
      expect(Array.from(s.region)).toEqual(Array.from(stats.region));
      expect(Array.from(s.cos)).toEqual(Array.from(stats.cos));
      expect(Array.from(s.coefNew)).toEqual(Array.from(stats.coefNew));
      expect(Array.from(s.coefOld)).toEqual(Array.from(stats.coefOld));
      if (density === 1) expect((s as unknown as { dot: Float64Array }).dot).toHaveLength(m);
    });
  }

  it('the control block: bytes done counts the base, a cancel before the run is ERR_ABORTED', async () => {
    const r = rng(5);
    const prep = prepareLora({ old: factors(r, 40, 24, 3, 1), new: factors(r, 40, 24, 2, 1) }, {});
    const f = path.join(tmp, 'ctl.in');
    fs.writeFileSync(f, Buffer.from(randn(r, 40 * 24, 0.5).buffer));
    const fd = fs.openSync(f, 'r');
    try {
      const task = { kind: 3 as const, name: 'w', rows: 40, cols: 24, base: { fd, offset: 0, dtype: 'f32', file: f }, loraOld: side(prep.old), loraNew: side(prep.new), outFd: -1 };
      const ctl = new Float64Array(3);
      await addon.stream({ tasks: [task], params: prep.params as unknown as Record<string, number | string | boolean>, blockBytes: 500, ctl });
      expect(ctl[0]).toBe(40 * 24 * 4);
      const stop = new Float64Array([0, 1, 0]);
      await expect(addon.stream({ tasks: [task], params: prep.params as unknown as Record<string, number | string | boolean>, blockBytes: 500, ctl: stop })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a factor of the wrong size is ERR_DATA_LENGTH, a base file that is too short ERR_IO', async () => {
    const r = rng(3);
    const prep = prepareLora({ old: factors(r, 8, 6, 2, 1), new: factors(r, 8, 6, 2, 1) }, {});
    const f = path.join(tmp, 'short.in');
    fs.writeFileSync(f, Buffer.alloc(8 * 6 * 4 - 4));
    const fd = fs.openSync(f, 'r');
    try {
      const task = { kind: 3 as const, name: 'w', rows: 8, cols: 6, base: { fd, offset: 0, dtype: 'f32', file: f }, loraOld: side(prep.old), loraNew: side(prep.new), outFd: -1 };
      expect(() => addon.stream({ tasks: [{ ...task, loraNew: { ...side(prep.new)!, R: new Float32Array(3) } }], params: {} })).toThrow(expect.objectContaining({ code: 'ERR_DATA_LENGTH' }));
      await expect(addon.stream({ tasks: [task], params: {} })).rejects.toMatchObject({ code: 'ERR_IO', details: { file: f, tensor: 'w' } });
    } finally {
      fs.closeSync(fd);
    }
  });
});
