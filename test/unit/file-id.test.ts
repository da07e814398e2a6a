// lib/job/inputs.ts matchesId: an open input's exact (bigint) identity against the validated FileId,
// which comes from a number fs.Stats (its inode rounded above 2^53, as Lustre's and overlayfs xino's are).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileIdOf, matchesId, OpenInputs } from '../../lib/job/inputs';

describe('input identity (dev + inode)', () => {
  it('an inode above 2^53 matches the rounded number a number fs.Stats gives for it', () => {
    const ino = 2n ** 60n + 1n; // Number() rounds it to 2^60
    const id = { dev: 2049, ino: Number(ino) };
    expect(BigInt(id.ino)).not.toBe(ino); // widening the rounded value cannot give the exact one back
    expect(matchesId({ dev: 2049n, ino }, id)).toBe(true);
    expect(matchesId({ dev: 2049n, ino: 12345n }, id)).toBe(false);
    expect(matchesId({ dev: 2050n, ino }, id)).toBe(false);
  });

  it('OpenInputs accepts the validated file and refuses another one under its name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-file-id-'));
    try {
      const a = path.join(dir, 'a.bin'), b = path.join(dir, 'b.bin');
      fs.writeFileSync(a, 'a');
      fs.writeFileSync(b, 'b');
      const inputs = new OpenInputs();
      try {
        expect(typeof inputs.open(a, fileIdOf(fs.statSync(a)))).toBe('number');
        expect(() => inputs.open(b, fileIdOf(fs.statSync(a)))).toThrow(/was replaced since its header was validated/);
        inputs.checkNotReplaced();
        fs.renameSync(b, a);
        expect(() => inputs.checkNotReplaced()).toThrow(/was replaced during the edit/);
      } finally {
        inputs.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
