// hashFiles (native/core/hash.cc): SHA-256 of whole files on native threads with the platform's
// OpenSSL, the same digests as node:crypto; a file shorter than its stated size fails with ERR_IO
// naming it.
import { afterAll, describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative } from '../../lib/native';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-hash-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const native = loadNative() as any;

describe('hashFiles', () => {
  it('is available here (Node exports its OpenSSL)', () => {
    const i = native.sha256Info();
    expect(i.reason).toBe('');
    expect(i.available).toBe(true);
    expect(i.provider).toMatch(/OpenSSL|BoringSSL/);
  });

  it('gives the digests node:crypto gives, for several files at once', async () => {
    const sizes = [0, 1, 63, 64, 65, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 12345];
    const files = sizes.map((n, i) => {
      const p = path.join(dir, `f${i}.bin`);
      fs.writeFileSync(p, crypto.randomBytes(n));
      return p;
    });
    const fds = files.map((f) => fs.openSync(f, 'r'));
    try {
      for (const threads of [1, 3, 0]) {
        const r = await native.hashFiles({ files: files.map((f, i) => ({ fd: fds[i], size: sizes[i], file: f })), threads });
        expect(r.sha256).toEqual(files.map((f) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex')));
        expect(r.seconds).toHaveLength(files.length);
      }
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  });

  it('a file shorter than its stated size: ERR_IO naming the file', async () => {
    const p = path.join(dir, 'short.bin');
    fs.writeFileSync(p, Buffer.alloc(1000, 7));
    const fd = fs.openSync(p, 'r');
    try {
      const e = await native.hashFiles({ files: [{ fd, size: 2000, file: p }] }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(Error);
      expect((e as { code: string }).code).toBe('ERR_IO');
      expect((e as Error).message).toContain(p);
      expect((e as { details: { file: string } }).details.file).toBe(p);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('ctl[1] non-zero aborts (ERR_ABORTED)', async () => {
    const p = path.join(dir, 'big.bin');
    fs.writeFileSync(p, Buffer.alloc(4 << 20, 1));
    const fd = fs.openSync(p, 'r');
    try {
      const ctl = new Float64Array([0, 1]);
      const e = await native.hashFiles({ files: [{ fd, size: 4 << 20, file: p }], ctl }).catch((x: unknown) => x);
      expect((e as { code: string }).code).toBe('ERR_ABORTED');
    } finally {
      fs.closeSync(fd);
    }
  });
});
