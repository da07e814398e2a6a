// Input hashes of the checkpoint pipeline (lib/job/hash.ts, issue 17): computed on native threads
// (the same digests as node:crypto), cached by (device, inode, size, mtime) so a repeated edit of
// the same inputs re-hashes nothing, the manifest saying where each hash came from; a changed file
// (new mtime) is hashed again; GEOEDIT_HASH_CACHE=off keeps no cache.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { editCheckpoint } from '../../lib/checkpoint';
import { hashInputs, sha256File } from '../../lib/job/hash';
import { llamaSpecs, makeTriple } from '../support/ckpt';
import { native } from '../../lib/native';

let root: string;
let tri: { base: string; old: string; new: string };
const prevEnv = process.env.GEOEDIT_HASH_CACHE;
let cacheFile: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-hash-cache-'));
  tri = await makeTriple(path.join(root, 'in'), llamaSpecs(2));
  cacheFile = path.join(root, 'cache.json');
  process.env.GEOEDIT_HASH_CACHE = cacheFile;
  // Inputs modified just now are never cached (racily clean, as git's index): age them.
  const old = new Date(Date.now() - 60_000);
  for (const dir of Object.values(tri)) for (const f of fs.readdirSync(dir)) fs.utimesSync(path.join(dir, f), old, old);
});
afterAll(() => {
  if (prevEnv === undefined) delete process.env.GEOEDIT_HASH_CACHE; else process.env.GEOEDIT_HASH_CACHE = prevEnv;
  fs.rmSync(root, { recursive: true, force: true });
});

const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
type Files = Array<{ path: string; sha256: string | null; sha256Source?: string }>;
const allFiles = (m: { inputs: Record<string, { files: Files } | undefined> }) => Object.values(m.inputs).flatMap((r) => r!.files);

describe('input hashes', () => {
  it('the node:crypto fallback (sha256File): an abort throws ERR_ABORTED instead of returning the digest of part of the file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-sha-'));
    const f = path.join(dir, 'x.bin');
    const data = crypto.randomBytes(9 << 20);
    fs.writeFileSync(f, data);
    try {
      expect(await sha256File(f)).toBe(crypto.createHash('sha256').update(data).digest('hex'));
      const ac = new AbortController();
      ac.abort();
      await expect(sha256File(f, ac.signal)).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the node:crypto fallback hashes through the descriptor it is given (the validated file, not a replacement) and leaves it open', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-sha-fd-'));
    const f = path.join(dir, 'x.bin');
    const data = crypto.randomBytes((9 << 20) + 123);
    fs.writeFileSync(f, data);
    const fd = fs.openSync(f, 'r');
    // hashInputs as it runs where native SHA-256 is unavailable
    const info = vi.spyOn(native, 'sha256Info').mockReturnValue({ available: false, provider: '', reason: 'test' });
    const prev = process.env.GEOEDIT_HASH_CACHE;
    process.env.GEOEDIT_HASH_CACHE = 'off';
    try {
      // the name now belongs to another file (renamed over): the open descriptor is still the original
      const other = path.join(dir, 'y.bin');
      fs.writeFileSync(other, crypto.randomBytes(1 << 20));
      fs.renameSync(other, f);
      const r = await hashInputs([f], undefined, new Map([[f, fd]]));
      expect(r.provider).toBe('node:crypto');
      expect(r.hashes.get(f)!.sha256).toBe(crypto.createHash('sha256').update(data).digest('hex'));
      expect(r.bytesHashed).toBe(data.length);
      // still the caller's: open, at the same file, usable (a stream that took it over would have closed it)
      expect(fs.fstatSync(fd).size).toBe(data.length);
      const b = Buffer.alloc(16);
      expect(fs.readSync(fd, b, 0, 16, 0)).toBe(16);
      expect(b.equals(data.subarray(0, 16))).toBe(true);
      // the first `size` bytes through the descriptor; a file shorter than that is ERR_IO
      expect(await sha256File(f, undefined, { fd, size: 1000 })).toBe(crypto.createHash('sha256').update(data.subarray(0, 1000)).digest('hex'));
      await expect(sha256File(f, undefined, { fd, size: data.length + 1 })).rejects.toMatchObject({ code: 'ERR_IO' });
      const ac = new AbortController();
      ac.abort();
      await expect(sha256File(f, ac.signal, { fd, size: data.length })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
      expect(fs.fstatSync(fd).size).toBe(data.length);
    } finally {
      info.mockRestore();
      if (prev === undefined) delete process.env.GEOEDIT_HASH_CACHE; else process.env.GEOEDIT_HASH_CACHE = prev;
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a cold edit computes every hash (node:crypto digests), a repeated one takes them all from the cache', async () => {
    fs.rmSync(cacheFile, { force: true });
    const a = await editCheckpoint({ ...tri, out: path.join(root, 'out-a') });
    const fa = allFiles(a).filter((f) => f.path.endsWith('.safetensors'));
    expect(fa.length).toBeGreaterThan(0);
    for (const f of fa) {
      expect(f.sha256).toBe(sha(f.path));
      expect(f.sha256Source).toBe('computed');
    }
    expect(fs.existsSync(cacheFile)).toBe(true);
    const b = await editCheckpoint({ ...tri, out: path.join(root, 'out-b') });
    const fb = allFiles(b).filter((f) => f.path.endsWith('.safetensors'));
    for (const f of fb) {
      expect(f.sha256).toBe(sha(f.path));
      expect(f.sha256Source).toBe('cache');
    }
  });

  it('a file whose mtime changed is hashed again; the others still come from the cache', async () => {
    const files = fs.readdirSync(tri.old).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(tri.old, f));
    const touched = files[0]!;
    const t = new Date(Date.now() - 30_000);
    fs.utimesSync(touched, t, t);
    const r = await hashInputs(files.concat(touched));
    expect(r.hashes.get(touched)).toEqual({ sha256: sha(touched), source: 'computed' });
    for (const f of files.slice(1)) expect(r.hashes.get(f)!.source).toBe('cache');
    expect(r.bytesHashed).toBe(fs.statSync(touched).size);
  });

  it('a file modified just now is hashed but not cached; GEOEDIT_HASH_CACHE=off keeps no cache', async () => {
    const f = path.join(root, 'fresh.bin');
    fs.writeFileSync(f, crypto.randomBytes(12345));
    expect((await hashInputs([f])).hashes.get(f)!.source).toBe('computed');
    expect((await hashInputs([f])).hashes.get(f)!.source).toBe('computed');
    process.env.GEOEDIT_HASH_CACHE = 'off';
    try {
      const g = path.join(root, 'g.bin');
      fs.writeFileSync(g, 'x');
      const old = new Date(Date.now() - 60_000);
      fs.utimesSync(g, old, old);
      const r = await hashInputs([g]);
      expect(r.cacheFile).toBeNull();
      expect((await hashInputs([g])).hashes.get(g)).toEqual({ sha256: sha(g), source: 'computed' });
    } finally {
      process.env.GEOEDIT_HASH_CACHE = cacheFile;
    }
  });
});

describe('the input hash and a failing data pass', () => {
  it("stops and settles before the job closes the descriptors it reads (it never reads a closed or reused descriptor)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-hash-settle-'));
    try {
      // Inputs large enough that their hash is still running when the data pass fails on its first
      // tensor (a NaN in `new`: ERR_NON_FINITE); a 16 MiB f32 tensor leads the plan.
      const specs = [{ name: 'model.layers.0.mlp.gate_proj.weight', dtype: 'F32' as const, shape: [2048, 2048] }, ...llamaSpecs(1)];
      const io = { base: path.join(dir, 'base'), old: path.join(dir, 'old'), new: path.join(dir, 'new') };
      const { writeCheckpoint, tensorsFor } = await import('../support/ckpt');
      await writeCheckpoint(io.base, tensorsFor(specs, 'base'));
      await writeCheckpoint(io.old, tensorsFor(specs, 'old'), 1, false);
      const nw = tensorsFor(specs, 'new');
      for (const t of nw) if (t.data instanceof Float32Array) t.data.fill(Number.NaN);
      await writeCheckpoint(io.new, nw, 1, false);
      // Each descriptor the hash is given, with its inode; when the hash settles, each must still be open on that file.
      const seen: Array<{ fd: number; ino: bigint; settledOpen?: boolean }> = [];
      const real = native.hashFiles.bind(native);
      const spy = vi.spyOn(native, 'hashFiles').mockImplementation((spec: Parameters<typeof native.hashFiles>[0]) => {
        const mine = spec.files.map((f) => ({ fd: f.fd, ino: fs.fstatSync(f.fd, { bigint: true }).ino }));
        seen.push(...mine);
        const check = () => { for (const m of mine) { try { m.settledOpen = fs.fstatSync(m.fd, { bigint: true }).ino === m.ino; } catch { m.settledOpen = false; } } };
        return real(spec).then((r) => { check(); return r; }, (e: unknown) => { check(); throw e; });
      });
      const prev = process.env.GEOEDIT_HASH_CACHE;
      process.env.GEOEDIT_HASH_CACHE = 'off';
      try {
        await expect(editCheckpoint({ ...io, out: path.join(dir, 'out') })).rejects.toMatchObject({ code: 'ERR_NON_FINITE' });
      } finally {
        spy.mockRestore();
        if (prev === undefined) delete process.env.GEOEDIT_HASH_CACHE; else process.env.GEOEDIT_HASH_CACHE = prev;
      }
      expect(seen.length).toBeGreaterThanOrEqual(3);
      expect(seen.map((s) => s.settledOpen)).toEqual(seen.map(() => true));
      expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
