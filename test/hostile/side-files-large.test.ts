// Issue 14, class 8: side files larger than 2 GiB (and 4 GiB). The side-file copy works in 4 MiB
// pieces by byte position; a 32-bit position (signed or not) would wrap past 2^31 / 2^32. Writing a
// 2+ GiB copy took 13-24 s here (load 5-6), too slow for every CI run, so the copy routine itself
// (copyHandle) is run from a start position a few MiB before 2^31 and before 2^32 on sparse files:
// the pieces that cross each boundary are read at their real positions, and sampled ranges
// (written with distinct bytes around each boundary and at the end) must come back in place. The
// whole path (copySideFiles of a 2 GiB + 5 MiB sparse file) runs with GEOEDIT_TEST_LARGE=1.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { copyHandle, copySideFiles } from '../../lib/job/side-files';
import { tmpDir } from './support';

const MIB = 1 << 20;

/** A sparse file of `size` bytes with distinct bytes written at `marks` (offset -> length); returns those bytes. */
function sparse(file: string, size: number, marks: Array<[number, number]>): Map<number, Buffer> {
  const fd = fs.openSync(file, 'w');
  const out = new Map<number, Buffer>();
  try {
    fs.ftruncateSync(fd, size);
    for (const [k, [at, len]] of marks.entries()) {
      if (at + len > size) throw new Error(`mark ${at}+${len} past the file's size ${size}`);
      const b = Buffer.alloc(len, 0);
      for (let i = 0; i < len; i++) b[i] = (i * 31 + k * 7 + 1) & 0xff || 1;
      fs.writeSync(fd, b, 0, len, at);
      out.set(at, b);
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

function expectSamples(dest: string, start: number, want: Map<number, Buffer>): void {
  const fd = fs.openSync(dest, 'r');
  try {
    for (const [at, b] of want) {
      if (at < start) continue;
      const got = Buffer.alloc(b.length);
      expect(fs.readSync(fd, got, 0, b.length, at - start)).toBe(b.length);
      expect(got.equals(b), `bytes at ${at}`).toBe(true);
    }
    // A hole between the marks reads as zeros in the copy too.
    const z = Buffer.alloc(4096);
    fs.readSync(fd, z, 0, z.length, 2 * MIB + 12345);
    expect(z.every((v) => v === 0)).toBe(true);
  } finally {
    fs.closeSync(fd);
  }
}

describe('hostile: side files over 2 GiB (class 8), positions past 2^31 and 2^32', () => {
  for (const [label, boundary] of [['2^31', 2 ** 31], ['2^32', 2 ** 32]] as const) {
    it(`copyHandle from a few MiB before ${label}: every piece at its real position`, async () => {
      const root = tmpDir('big-side');
      const src = path.join(root, 'src.bin'), dest = path.join(root, 'dest.bin');
      const size = boundary + 5 * MIB + 7;
      const start = boundary - 3 * MIB - 1; // the 4 MiB pieces straddle the boundary
      const marks: Array<[number, number]> = [
        [start, 64], [boundary - 5, 11], [boundary + 4 * MIB - 3, 9], [start + 4 * MIB - 2, 5], [size - 100, 100],
      ];
      const want = sparse(src, size, marks);
      const fh = await fs.promises.open(src, 'r');
      let pieces = 0;
      try {
        await copyHandle(fh, dest, src, () => { pieces++; }, start);
      } finally {
        await fh.close();
      }
      expect(fs.statSync(dest).size).toBe(size - start);
      expect(pieces).toBe(Math.ceil((size - start) / (4 * MIB)) + 1); // one check per piece, one at the end
      expectSamples(dest, start, want);
      fs.rmSync(root, { recursive: true, force: true });
    });
  }

  it.skipIf(process.env.GEOEDIT_TEST_LARGE !== '1')('copySideFiles of a 2 GiB + 5 MiB sparse side file (GEOEDIT_TEST_LARGE=1: writes 2 GiB)', async () => {
    const root = tmpDir('big-side-full');
    const dir = path.join(root, 'base'), to = path.join(root, 'out');
    fs.mkdirSync(dir); fs.mkdirSync(to);
    const size = 2 ** 31 + 5 * MIB + 12345;
    const want = sparse(path.join(dir, 'tokenizer.model'), size, [[0, 16], [2 ** 31 - 5, 11], [2 ** 31 + 4 * MIB - 3, 9], [size - 100, 100]]);
    const r = await copySideFiles(dir, to, new Set());
    expect(r.copied).toEqual(['tokenizer.model']);
    expect(fs.statSync(path.join(to, 'tokenizer.model')).size).toBe(size);
    expectSamples(path.join(to, 'tokenizer.model'), 0, want);
    fs.rmSync(root, { recursive: true, force: true });
  }, 300_000);
});
