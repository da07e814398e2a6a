// Output hashing for lineage (lib/governance/hashing.ts): the native parallel path (hashFiles) and
// the node:crypto fallback give the same SHA-256 and size on files of 0 bytes, 1 byte and > 1 MiB
// (the native reader works in 1 MiB pieces), both equal to a hash of the whole file read at once;
// and verify still catches one flipped byte past the first MiB, changing nothing.
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { hashOutputFiles, outputHashProvider, sealManifest, sha256FilesNative, sha256FileStream } from '../../lib/governance/lineage';
import { verifyOutput } from '../../lib/governance/verify';
import { native } from '../../lib/native';

let nativeReason = '';
const nativeAvailable = (() => {
  try {
    const i = native.sha256Info();
    nativeReason = i.reason;
    return i.available;
  } catch (e) {
    nativeReason = (e as Error).message;
    return false;
  }
})();

let tmp: string;
beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-govhash-')); });
afterEach(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

const SIZES: Record<string, number> = { 'empty.bin': 0, 'one.bin': 1, 'big.safetensors': (1 << 20) * 2 + 12345 };

function writeFiles(dir: string): Record<string, Buffer> {
  fs.mkdirSync(dir, { recursive: true });
  const out: Record<string, Buffer> = {};
  for (const [n, size] of Object.entries(SIZES)) {
    out[n] = crypto.randomBytes(size);
    fs.writeFileSync(path.join(dir, n), out[n]!);
  }
  return out;
}
const whole = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('output hashing: native vs node:crypto', () => {
  it.skipIf(!nativeAvailable)(`gives identical hashes and sizes on 0 B, 1 B and > 1 MiB files${nativeAvailable ? '' : ` (skipped: native hashFiles unavailable: ${nativeReason})`}`, async () => {
    const dir = path.join(tmp, 'files');
    const bytes = writeFiles(dir);
    const names = Object.keys(SIZES);
    const nat = await sha256FilesNative(names.map((n) => path.join(dir, n)));
    for (const [i, n] of names.entries()) {
      const js = await sha256FileStream(path.join(dir, n));
      expect(nat[i]).toEqual(js);
      expect(js).toEqual({ sha256: whole(bytes[n]!), size: SIZES[n] });
    }
    expect(outputHashProvider()).not.toBe('node:crypto');
    // hashOutputFiles (the seal's call) takes the same path: sorted by name, same hashes.
    const listed = await hashOutputFiles(dir);
    expect(listed.map((f) => f.name)).toEqual([...names].sort());
    for (const f of listed) expect(f.sha256).toBe(whole(bytes[f.name]!));
  });

  it('verify catches one flipped byte past the first MiB of a sealed output, changing nothing', async () => {
    const dir = path.join(tmp, 'out');
    const bytes = writeFiles(dir);
    const m = await sealManifest(dir, { tool: 'geoedit', kind: 'checkpoint-edit', warnings: [] as string[] }, []);
    for (const f of m.outputFiles) expect(f.sha256).toBe(whole(bytes[f.name]!));
    const ok = await verifyOutput(dir);
    expect(ok.problems).toEqual([]);
    expect(ok.ok).toBe(true);

    const w = path.join(dir, 'big.safetensors');
    const buf = Buffer.from(bytes['big.safetensors']!);
    buf[(1 << 20) + 777] ^= 0x10;
    fs.writeFileSync(w, buf);
    const before = whole(fs.readFileSync(w));
    const r = await verifyOutput(dir);
    expect(whole(fs.readFileSync(w))).toBe(before);
    expect(r.ok).toBe(false);
    expect(r.files.checked).toBe(3);
    expect(r.files.changed.map((c) => c.name)).toEqual(['big.safetensors']);
    expect(r.files.changed[0]!.actual).toBe(whole(buf));
    expect(r.problems.map((p) => p.code)).toEqual(['ERR_OUTPUT_CHANGED']);
  });
});
