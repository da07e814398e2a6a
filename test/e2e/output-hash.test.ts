// Output files hashed as the data path writes them (issue 17: native outputHash fed by the stream's
// writer, whatever was not written in file order read back once at the end) and written back as it
// goes (write-behind: sync_file_range behind the writer, hashed pages dropped from the page cache).
// The manifest's outputFiles must be the SHA-256 of the bytes on disk, exactly as when the seal
// read the files back (GEOEDIT_STREAM_HASH=0), for every way a shard's bytes get written: edited,
// copied, converted, tied (copied after the stream), augmented biases (written out of order),
// columns layouts (strided writes), many shards, and the parts of a partitioned edit; and the shards
// of a merged adapter (no shard read again: native.hashFiles watched).
// Write-behind where sync_file_range is unsupported falls back to plain writes (same bytes); a
// failing one, or a failing write, is ERR_IO with nothing at the target. Direct (O_DIRECT) writes of
// the aligned middles give the same bytes as buffered ones, also where O_DIRECT is refused (at open,
// at a write) and on tmpfs; a failing direct write is ERR_IO naming the tensor.
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { editCheckpoint, type CheckpointManifest } from '../../lib/checkpoint';
import { writeSafetensors, type TensorToWrite } from '../../lib/safetensors';
import { MANIFEST_FILE } from '../../lib/governance/lineage';
import { verifyOutput } from '../../lib/governance/verify';
import { loadNative, native } from '../../lib/native';
import { editAdapters } from '../../lib/lora';
import { writeMergeFixture } from '../support/lora';
import { REPO } from '../support/paths';
import { leftovers, llamaSpecs, makeTriple } from '../support/ckpt';
import { presStats, writePresModel, writeStats } from '../support/preserve-fixture';
import { rnd } from '../support/prng';

const BIN = path.join(REPO, 'bin', 'geoedit.js');
let root: string;
let llama: { base: string; old: string; new: string };

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-outhash-'));
  llama = await makeTriple(path.join(root, 'llama'), llamaSpecs(3));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
let k = 0;
const outDir = (tag: string) => path.join(root, `out-${tag}-${k++}`);

/** Every output file's recorded hash is the hash of its bytes on disk; returns name → sha256. */
function expectHashesOnDisk(out: string): Map<string, string> {
  const m = JSON.parse(fs.readFileSync(path.join(out, MANIFEST_FILE), 'utf8')) as { outputFiles: Array<{ name: string; size: number; sha256: string }> };
  const names = fs.readdirSync(out).filter((n) => n !== MANIFEST_FILE).sort();
  expect(m.outputFiles.map((f) => f.name).sort()).toEqual(names);
  for (const f of m.outputFiles) {
    expect(f.sha256, f.name).toBe(sha(path.join(out, f.name)));
    expect(f.size, f.name).toBe(fs.statSync(path.join(out, f.name)).size);
  }
  return new Map(m.outputFiles.map((f) => [f.name, f.sha256]));
}

/** The same job with the seal reading the files back (the behaviour before issue 17): same files, same hashes. */
async function expectSameAsReadBack(inputs: { base: string; old: string; new: string }, opts: Parameters<typeof editCheckpoint>[1], streamed: Map<string, string>): Promise<void> {
  const out = outDir('readback');
  process.env.GEOEDIT_STREAM_HASH = '0';
  try {
    const m = await editCheckpoint({ ...inputs, out }, opts);
    expect(m.timings.outputHash).toBeUndefined();
  } finally {
    delete process.env.GEOEDIT_STREAM_HASH;
  }
  expect(expectHashesOnDisk(out)).toEqual(streamed);
}

async function editAndCheck(tag: string, inputs: { base: string; old: string; new: string }, opts: Parameters<typeof editCheckpoint>[1] = {}): Promise<CheckpointManifest> {
  const out = outDir(tag);
  const m = await editCheckpoint({ ...inputs, out }, opts);
  const hashes = expectHashesOnDisk(out);
  const v = await verifyOutput(out);
  expect(v.ok, JSON.stringify(v.problems)).toBe(true);
  await expectSameAsReadBack(inputs, opts, hashes);
  return m;
}

describe('output files hashed as they are written', () => {
  it('edited, copied (excluded) and converted tensors, one file: every byte hashed from memory, none read back', async () => {
    const m = await editAndCheck('llama', llama, { exclude: ['*.v_proj.weight'] });
    expect(m.tensors.some((t) => t.action === 'copy')).toBe(true);
    const size = m.output!.files.reduce((a, f) => a + f.size, 0);
    expect(m.timings.outputHash).toEqual({ fromMemory: size, reread: 0 });
    const m2 = await editAndCheck('llama-f32', llama, { outDtype: 'f32', exclude: ['*.v_proj.weight'] });
    expect(m2.tensors.some((t) => t.action === 'convert')).toBe(true);
    expect(m2.timings.outputHash!.reread).toBe(0);
  });

  it('many shards (an index file beside them)', async () => {
    const m = await editAndCheck('shards', llama, { maxShardSize: 1500 });
    expect(m.output!.files.length).toBeGreaterThan(5);
    expect(m.timings.outputHash!.fromMemory).toBe(m.output!.files.reduce((a, f) => a + f.size, 0));
  });

  it('a tied tensor (copied after the stream: read back once) and a columns layout (strided writes)', async () => {
    const specs = [{ name: 'model.embed_tokens.weight', shape: [50, 8] }, { name: 'model.layers.0.q_proj.weight', shape: [8, 8] }, { name: 'lm_head.weight', shape: [50, 8] }, { name: 'model.norm.weight', shape: [8] }];
    const dirs = { base: path.join(root, 'tied', 'base'), old: path.join(root, 'tied', 'old'), new: path.join(root, 'tied', 'new') };
    for (const [role, dir] of Object.entries(dirs)) {
      fs.mkdirSync(dir, { recursive: true });
      const ts: TensorToWrite[] = specs.map((s, i) => ({ name: s.name, dtype: 'F32', shape: s.shape, data: rnd(s.shape.reduce((a, b) => a * b, 1), 10 * i + (role === 'base' ? 0 : role === 'old' ? 1 : 2)) }));
      ts[2]!.data = Float32Array.from(ts[0]!.data as Float32Array); // lm_head stored as the embedding's bytes
      await writeSafetensors(path.join(dir, 'model.safetensors'), ts, { format: 'pt' });
      if (role === 'base') fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', tie_word_embeddings: true }));
    }
    const m = await editAndCheck('tied', dirs);
    expect(m.totals.tied).toBe(1);
    // lm_head's bytes and everything after it in the file are read back
    expect(m.timings.outputHash!.reread).toBeGreaterThanOrEqual(50 * 8 * 4);
    expect(m.timings.outputHash!.fromMemory).toBeGreaterThan(0);
    const c = await editAndCheck('columns', llama, { layout: { '*_proj.weight': 'columns' }, blockBytes: 256 });
    expect(c.tensors.some((t) => t.layout === 'columns')).toBe(true);
    expect(c.timings.outputHash!.reread).toBeGreaterThan(0);
  });

  it('augmented biases (written right after their weight, out of file order), in one file and one shard per tensor', async () => {
    const m = await writePresModel(path.join(root, 'pres'));
    const st = presStats();
    const file = await writeStats(path.join(root, 'pres-stats.safetensors'), st.tensors, st.shared);
    const a = await editAndCheck('pres', m, { preserve: { file } });
    expect(a.tensors.find((t) => t.name === 'l0.fc.bias')!.preserve).toMatchObject({ withWeight: 'l0.fc.weight' });
    await editAndCheck('pres-shards', m, { preserve: { file }, maxShardSize: 1 });
  });

  it('the parts of a partitioned edit hash their own shards', async () => {
    const hashes = new Map<string, string>();
    for (const part of ['1/3', '2/3', '3/3']) {
      const out = outDir('part');
      const m = await editCheckpoint({ ...llama, out }, { maxShardSize: 1500, part });
      for (const [n, h] of expectHashesOnDisk(out)) if (n.endsWith('.safetensors')) hashes.set(n, h);
      expect(m.timings.outputHash!.fromMemory).toBeGreaterThan(0);
    }
    const whole = outDir('whole');
    await editCheckpoint({ ...llama, out: whole }, { maxShardSize: 1500 });
    const all = expectHashesOnDisk(whole);
    for (const [n, h] of hashes) expect(h, n).toBe(all.get(n));
    expect(hashes.size).toBe([...all.keys()].filter((n) => n.endsWith('.safetensors')).length);
  });
});

describe('merged adapters: shards hashed as they are written', () => {
  let io: { old: string; new: string; base: string };
  beforeAll(async () => {
    const at = path.join(root, 'lora');
    io = await writeMergeFixture(at);
  });

  /** Runs the merge with native.hashFiles watched: returns the output files it was asked to read (a re-read). */
  async function mergeWatched(out: string, opts: Parameters<typeof editAdapters>[1]): Promise<{ reread: string[]; finished: number; finishReread: number[] }> {
    const hf = vi.spyOn(native, 'hashFiles');
    const fin = vi.spyOn(native, 'outputHashFinish');
    try {
      await editAdapters({ ...io, out }, opts);
      const named = hf.mock.calls.flatMap(([spec]) => spec.files.map((f) => f.file ?? ''));
      // the job's files are in its temporary directory beside out until the commit
      // the bytes each shard's hash had to read back from disk (written out of order): 0 when the stream wrote them in order
      const finishReread = await Promise.all(fin.mock.results.map(async (r) => (await (r.value as ReturnType<typeof native.outputHashFinish>)).reread));
      return { reread: named.filter((f) => path.basename(path.dirname(f)).startsWith(`.${path.basename(out)}.geoedit-tmp-`) && f.endsWith('.safetensors')), finished: fin.mock.calls.length, finishReread };
    } finally {
      hf.mockRestore();
      fin.mockRestore();
    }
  }

  it.each([
    ['density 1, sharded', { maxShardSize: 2600 }],
    ['density 0.5, bf16, one file', { density: 0.5, outDtype: 'bf16' as const }],
  ])('%s: the manifest records the SHA-256 of the bytes on disk, and no shard is read again', async (_label, opts) => {
    const out = outDir('merge');
    const w = await mergeWatched(out, { ...opts, outFormat: 'full' });
    const shards = fs.readdirSync(out).filter((n) => n.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThanOrEqual(opts.maxShardSize ? 3 : 1);
    expect(w.finished).toBe(shards.length);
    expect(w.finishReread).toEqual(shards.map(() => 0));
    expect(w.reread).toEqual([]);
    const hashes = expectHashesOnDisk(out);
    const m = JSON.parse(fs.readFileSync(path.join(out, MANIFEST_FILE), 'utf8')) as { outputs: Array<{ path: string; sha256: string; bytes: number }> };
    expect(m.outputs.map((o) => path.basename(o.path)).sort()).toEqual([...shards].sort());
    for (const o of m.outputs) {
      expect(o.sha256).toBe(sha(path.join(out, path.basename(o.path))));
      expect(o.bytes).toBe(fs.statSync(path.join(out, path.basename(o.path))).size);
    }
    expect((await verifyOutput(out)).ok).toBe(true);
    // Where the stream does not hash (GEOEDIT_STREAM_HASH=0) the shards are read back once: the same bytes and hashes.
    const back = outDir('merge-readback');
    process.env.GEOEDIT_STREAM_HASH = '0';
    let wb: Awaited<ReturnType<typeof mergeWatched>>;
    try {
      wb = await mergeWatched(back, { ...opts, outFormat: 'full' });
    } finally {
      delete process.env.GEOEDIT_STREAM_HASH;
    }
    expect(wb.finished).toBe(0);
    expect(wb.reread.map((f) => path.basename(f)).sort()).toEqual([...shards].sort());
    expect(expectHashesOnDisk(back)).toEqual(hashes);
  });

  it('a failing read-back of the shards stops the input hash and waits for it before the descriptors close', async () => {
    const out = outDir('merge-fail');
    // The input hash is held back 300 ms (so it still runs when the job fails); the shards' read-back fails.
    const seen: Array<{ fd: number; ino: bigint; settledOpen?: boolean }> = [];
    const real = native.hashFiles.bind(native);
    const spy = vi.spyOn(native, 'hashFiles').mockImplementation(async (spec: Parameters<typeof native.hashFiles>[0]) => {
      const names = spec.files.map((f) => f.file ?? '');
      if (names.some((f) => path.basename(path.dirname(f)).startsWith(`.${path.basename(out)}.geoedit-tmp-`))) throw Object.assign(new Error('read-back failed (test)'), { code: 'ERR_IO' });
      const mine = spec.files.map((f) => ({ fd: f.fd, ino: fs.fstatSync(f.fd, { bigint: true }).ino }));
      seen.push(...mine);
      const check = () => { for (const m of mine) { try { m.settledOpen = fs.fstatSync(m.fd, { bigint: true }).ino === m.ino; } catch { m.settledOpen = false; } } };
      await new Promise((r) => setTimeout(r, 300));
      try { return await real(spec); } finally { check(); }
    });
    const prevCache = process.env.GEOEDIT_HASH_CACHE;
    process.env.GEOEDIT_STREAM_HASH = '0';
    process.env.GEOEDIT_HASH_CACHE = 'off';
    try {
      await expect(editAdapters({ ...io, out }, { outFormat: 'full' })).rejects.toThrow(/read-back failed/);
    } finally {
      spy.mockRestore();
      delete process.env.GEOEDIT_STREAM_HASH;
      if (prevCache === undefined) delete process.env.GEOEDIT_HASH_CACHE; else process.env.GEOEDIT_HASH_CACHE = prevCache;
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.map((x) => x.settledOpen)).toEqual(seen.map(() => true));
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('write-behind', () => {
  let big: { base: string; old: string; new: string };
  beforeAll(async () => {
    // ~3 MiB per input in 8 tensors: with a 1 MiB window, ranges are waited for and dropped during the stream.
    big = await makeTriple(path.join(root, 'big'), Array.from({ length: 8 }, (_, i) => ({ name: `model.layers.${i}.mlp.up_proj.weight`, dtype: 'F32' as const, shape: [384, 256] })), [1, 1, 1]);
  });
  const cli = (out: string, env: Record<string, string>) => spawnSync(process.execPath, [BIN, 'edit', '--base', big.base, '--old', big.old, '--new', big.new, '--out', out, '--quiet', '--json'], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, GEOEDIT_HASH_CACHE: 'off', ...env },
  });
  const safetensors = (out: string) => fs.readFileSync(path.join(out, 'model.safetensors'));

  it('the same bytes and hashes with a small window, off, and where sync_file_range is unsupported', () => {
    const runs = [{ GEOEDIT_WRITE_BEHIND: '1' }, { GEOEDIT_WRITE_BEHIND: '0' }, { GEOEDIT_WRITE_BEHIND: '1', GEOEDIT_TEST_SYNC_FILE_RANGE: 'unsupported' }, { GEOEDIT_WRITE_BEHIND: '1', GEOEDIT_STREAM_HASH: '0' }];
    const outs = runs.map((env) => {
      const out = outDir('wb');
      const r = cli(out, env);
      expect(r.status, `${JSON.stringify(env)}: ${r.stderr}`).toBe(0);
      expectHashesOnDisk(out);
      // Blocks written by two writer threads at once still reach the hash in file order: nothing read back.
      const t = (JSON.parse(r.stdout) as { timings: CheckpointManifest['timings'] }).timings;
      if (env.GEOEDIT_STREAM_HASH !== '0') expect(t.outputHash).toEqual({ fromMemory: fs.statSync(path.join(out, 'model.safetensors')).size, reread: 0 });
      return out;
    });
    for (const o of outs.slice(1)) expect(safetensors(o).equals(safetensors(outs[0]!))).toBe(true);
  });

  it('a failing write-back (EIO) is ERR_IO naming the tensor, and nothing is written at the target', () => {
    const out = outDir('eio');
    const r = cli(out, { GEOEDIT_TEST_SYNC_FILE_RANGE: 'eio' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/ERR_IO/);
    expect(r.stderr).toMatch(/write failed \(write-back\): Input\/output error \(tensor 'model\.layers\.\d\.mlp\.up_proj\.weight'\)/);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(path.dirname(out))).toEqual([]);
  });

  it('a write that fails (a full disk: /dev/full) is ERR_IO naming the tensor', async () => {
    const n = loadNative();
    const src = path.join(big.base, 'model.safetensors');
    const inFd = fs.openSync(src, 'r');
    const outFd = fs.openSync('/dev/full', 'w');
    try {
      const base = { fd: inFd, offset: 0, dtype: 'f32', file: src };
      for (const [size, what] of [[1 << 20, 'a block written on a thread'], [4096, 'a small block written inline']] as const) {
        const task = { kind: 1, name: 'x', copyBytes: size, base, outFd, outOffset: 0, outHash: n.outputHash() };
        const err = await n.stream({ tasks: [task], params: {}, threads: 1 }).then(() => null, (e: Error & { code?: string; details?: { tensor?: string } }) => e);
        expect(err, what).not.toBeNull();
        expect(err!.code, what).toBe('ERR_IO');
        expect(err!.message, what).toMatch(/write failed: No space left on device/);
        expect(err!.details?.tensor, what).toBe('x');
      }
    } finally {
      fs.closeSync(inFd);
      fs.closeSync(outFd);
    }
  });

  it('outputHash: a foreign handle is refused; a finished hash equals the file\'s', async () => {
    const n = loadNative();
    expect(() => n.stream({ tasks: [{ kind: 1, name: 'x', copyBytes: 1, base: { fd: 0, offset: 0, dtype: 'f32' }, outFd: 1, outHash: {} }], params: {} })).toThrow(/outputHash/);
    // Pieces fed out of order are read back: the digest is the file's whatever the order.
    const f = path.join(root, 'pieces.bin');
    const data = crypto.randomBytes(3 << 20);
    fs.writeFileSync(f, data);
    const fd = fs.openSync(f, 'r');
    try {
      const h = n.outputHash(data.subarray(0, 100));
      const r = await n.outputHashFinish(h, { fd, size: data.length, file: f });
      expect(r).toEqual({ sha256: crypto.createHash('sha256').update(data).digest('hex'), fromMemory: 100, reread: data.length - 100 });
      await expect(n.outputHashFinish(h, { fd, size: data.length, file: f })).rejects.toThrow(/twice/);
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('direct writes (O_DIRECT, core/directwrite.h)', () => {
  // Tensors whose output blocks have more than 1 MiB aligned on 4 KiB (written direct) at offsets and
  // sizes off the alignment (rows of 2800 and 2050 bytes, an odd header), a copied tensor (I64, hashed
  // copy through memory), and tensors too small for a direct write (buffered).
  let odd: { base: string; old: string; new: string };
  beforeAll(async () => {
    odd = await makeTriple(path.join(root, 'odd'), [
      { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'F32', shape: [1000, 700] },
      { name: 'model.layers.0.mlp.down_proj.weight', dtype: 'BF16', shape: [1537, 1025] },
      { name: 'model.layers.0.input_layernorm.weight', dtype: 'F32', shape: [17] },
      { name: 'model.layers.1.mlp.up_proj.weight', dtype: 'F32', shape: [3, 5] },
      { name: 'model.position_ids', dtype: 'I64', shape: [300_001] },
      { name: 'model.layers.1.mlp.down_proj.weight', dtype: 'F16', shape: [700, 999] },
    ], [1, 1, 1]);
  });
  const counters = () => loadNative()._directWrites();
  const modes: Array<Record<string, string>> = [{}, { GEOEDIT_DIRECT_WRITE: '0' }, { GEOEDIT_TEST_DIRECT_WRITE: 'refuse-open' }, { GEOEDIT_TEST_DIRECT_WRITE: 'refuse-write' }];
  // Runs f with the direct-write switches as in env only (the caller's GEOEDIT_DIRECT_WRITE or
  // GEOEDIT_TEST_DIRECT_WRITE would change every mode), process.env restored afterwards.
  const DIRECT_KEYS = ['GEOEDIT_DIRECT_WRITE', 'GEOEDIT_TEST_DIRECT_WRITE'];
  async function withDirectEnv<T>(env: Record<string, string>, f: () => Promise<T>): Promise<T> {
    const keys = [...new Set([...DIRECT_KEYS, ...Object.keys(env)])];
    const prev = Object.fromEntries(keys.map((key) => [key, process.env[key]]));
    for (const key of DIRECT_KEYS) delete process.env[key];
    Object.assign(process.env, env);
    try {
      return await f();
    } finally {
      for (const [key, v] of Object.entries(prev)) if (v === undefined) delete process.env[key]; else process.env[key] = v;
    }
  }
  async function run(env: Record<string, string>, opts: Parameters<typeof editCheckpoint>[1], dir = root): Promise<{ out: string; direct: number; refused: number; buffered: number }> {
    const out = path.join(dir, `out-direct-${k++}`);
    const c0 = counters();
    await withDirectEnv(env, () => editCheckpoint({ ...odd, out }, opts));
    const c1 = counters();
    return { out, direct: c1.direct - c0.direct, refused: c1.refused - c0.refused, buffered: c1.buffered - c0.buffered };
  }

  for (const [what, opts] of [
    ['default blocks', {}],
    ['small blocks (several per tensor), columns layout for one tensor', { blockBytes: 1.5 * 2 ** 20, layout: { 'model.layers.0.mlp.down_proj.weight': 'columns' as const } }],
  ] as const) {
    it(`${what}: the same bytes and hashes direct, buffered (off), and where O_DIRECT is refused at open or at a write`, async () => {
      const runs = [];
      for (const env of modes) runs.push({ env, ...(await run(env, opts)) });
      const [direct, ...others] = runs;
      const files = fs.readdirSync(direct!.out).filter((n) => n.endsWith('.safetensors'));
      expect(files.length).toBeGreaterThan(0);
      const hashes = expectHashesOnDisk(direct!.out);
      for (const r of others) {
        expect(expectHashesOnDisk(r.out), JSON.stringify(r.env)).toEqual(hashes);
        for (const f of files) expect(fs.readFileSync(path.join(r.out, f)).equals(fs.readFileSync(path.join(direct!.out, f))), `${JSON.stringify(r.env)} ${f}`).toBe(true);
        expect(r.direct, JSON.stringify(r.env)).toBe(0);
      }
      // Where the temporary directory's file system takes O_DIRECT (ext4, xfs, tmpfs since Linux 6.6),
      // the big blocks went direct; else it refused the open or a write (some blocks may have gone
      // direct before that): the same bytes and hashes are all that is promised then.
      if (direct!.refused === 0) expect(direct!.direct).toBeGreaterThan(2 ** 20);
      expect(direct!.buffered).toBeGreaterThan(0); // the headers' ends, the tensors' unaligned edges, small tensors
      expect(others[0]!.refused).toBe(0); // off: never tried
      if (direct!.refused === 0) {
        expect(others[1]!.refused).toBeGreaterThan(0);
        expect(others[2]!.refused).toBeGreaterThan(0);
      }
    });
  }

  it('a block written out of file order (read back by the hash) goes through the page cache, one in order goes direct', async () => {
    const n = loadNative();
    const src = path.join(root, 'direct-src.bin'), dst = path.join(root, 'direct-dst.bin');
    const data = crypto.randomBytes(4 << 20);
    fs.writeFileSync(src, data);
    const inFd = fs.openSync(src, 'r');
    const outFd = fs.openSync(dst, 'w+');
    try {
      fs.ftruncateSync(outFd, data.length);
      const h = n.outputHash();
      const base = (offset: number) => ({ fd: inFd, offset, dtype: 'f32', file: src });
      const half = 2 << 20;
      // The second half first: off the hash's frontier (0), so finish() reads it back; then the first half, in order.
      const tasks = [{ kind: 1, name: 'second', copyBytes: half, base: base(half), outFd, outOffset: half, outHash: h }, { kind: 1, name: 'first', copyBytes: half, base: base(0), outFd, outOffset: 0, outHash: h }];
      const c0 = counters();
      await withDirectEnv({}, () => n.stream({ tasks, params: {}, threads: 1 }));
      const c1 = counters();
      const r = await n.outputHashFinish(h, { fd: outFd, size: data.length, file: dst });
      expect(r).toEqual({ sha256: crypto.createHash('sha256').update(data).digest('hex'), fromMemory: half, reread: half });
      expect(fs.readFileSync(dst).equals(data)).toBe(true);
      // Every byte written once, direct or buffered. Where O_DIRECT is taken: the block in order direct
      // (its whole 2 MiB: offset, size and buffer on 4 KiB), the other through the page cache.
      const direct = c1.direct - c0.direct, buffered = c1.buffered - c0.buffered;
      expect(direct + buffered).toBe(data.length);
      if (c1.refused === c0.refused) expect([direct, buffered]).toEqual([half, half]);
    } finally {
      fs.closeSync(inFd);
      fs.closeSync(outFd);
    }
  });

  it('an output on tmpfs (/dev/shm) has the same bytes', async (ctx) => {
    if (!fs.existsSync('/dev/shm')) ctx.skip();
    const shm = fs.mkdtempSync(path.join('/dev/shm', 'geoedit-direct-'));
    try {
      const a = await run({}, {});
      const b = await run({}, {}, shm);
      expect(expectHashesOnDisk(b.out)).toEqual(expectHashesOnDisk(a.out));
    } finally {
      fs.rmSync(shm, { recursive: true, force: true });
    }
  });

  it('a failing direct write (EIO) is ERR_IO naming the tensor, and nothing is written at the target', async (ctx) => {
    // The failure is injected at a direct write: where this file system refuses O_DIRECT none happens.
    const probe = await run({}, {});
    if (probe.refused > 0) ctx.skip(`the temporary directory's file system refuses O_DIRECT (${os.tmpdir()}): no direct write to fail`);
    const out = outDir('direct-eio');
    const env: NodeJS.ProcessEnv = { ...process.env, GEOEDIT_HASH_CACHE: 'off', GEOEDIT_TEST_DIRECT_WRITE: 'eio' };
    delete env.GEOEDIT_DIRECT_WRITE;
    const r = spawnSync(process.execPath, [BIN, 'edit', '--base', odd.base, '--old', odd.old, '--new', odd.new, '--out', out, '--quiet'], {
      encoding: 'utf8', timeout: 60_000, env,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/ERR_IO/);
    expect(r.stderr).toMatch(/write failed: Input\/output error \(tensor 'model\.(layers\.\d\.mlp\.(up|down)_proj\.weight|position_ids)'\)/);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(path.dirname(out))).toEqual([]);
  });
});
