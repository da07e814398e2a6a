import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { editCheckpoint, analyzeCheckpoint, inspectCheckpoint, openCheckpoint, parseSize } from '../../lib/checkpoint';
import { readSafetensorsHeader, readTensor, writeSafetensors, toTensor } from '../../lib/safetensors';
import { editTensorSync } from '../../lib/edit';
import { GeoEditError } from '../../lib/errors';
import { cudaStatus } from '../../lib/backend';
import fc from 'fast-check';
import { progressPrinter } from '../../lib/cli/common';
import { leftovers, llamaSpecs, makeTriple, readCheckpointTensor as tensorOf, tensorsFor, writeCheckpoint } from '../support/ckpt';
import { REAL, haveReal } from '../support/paths';
import { rnd } from '../support/prng';

let root: string;
let tri: { base: string; old: string; new: string };
const specs = llamaSpecs(3);

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-ckpt-'));
  tri = await makeTriple(path.join(root, 'in'), specs);
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function outDir(name: string): string {
  return path.join(root, name);
}

async function expectedEdit(name: string, opts: Record<string, unknown> = {}) {
  const [b, o, n] = await Promise.all([tensorOf(tri.base, name), tensorOf(tri.old, name), tensorOf(tri.new, name)]);
  return editTensorSync({ base: toTensor(b), old: toTensor(o), new: toTensor(n) }, opts);
}

function bytesOf(v: ArrayBufferView): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

describe('editCheckpoint', () => {
  it('edits base/old/new sharded differently; every tensor equals editTensor bit for bit; ints copied; files copied', async () => {
    const out = outDir('out-basic');
    const events: number[] = [];
    const m = await editCheckpoint({ ...tri, out }, { onProgress: (e) => events.push(e.bytesDone / e.bytesTotal) });
    expect(fs.readdirSync(out).sort()).toEqual(['config.json', 'geoedit-manifest.json', 'model.safetensors', 'tokenizer.json']);
    expect(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).toBe(fs.readFileSync(path.join(tri.base, 'config.json'), 'utf8'));
    const h = await readSafetensorsHeader(path.join(out, 'model.safetensors'));
    expect(h.metadata!.format).toBe('pt');
    expect(h.metadata!['geoedit.version']).toMatch(/^\d+\.\d+\.\d+/);
    expect(JSON.parse(h.metadata!['geoedit.parameters']!).kappa).toBe(2); // the calibrated default (docs/quality.md)
    expect(h.tensors.map((t) => t.name).sort()).toEqual(specs.map((s) => s.name).sort());
    for (const sp of specs) {
      const got = await readTensor(path.join(out, 'model.safetensors'), sp.name, h);
      if (sp.dtype === 'I64' || sp.dtype === 'BOOL') {
        const base = await tensorOf(tri.base, sp.name);
        expect(bytesOf(got.data).equals(bytesOf(base.data))).toBe(true);
        continue;
      }
      expect(got.dtype).toBe('BF16');
      const ref = await expectedEdit(sp.name);
      expect(bytesOf(got.data).equals(bytesOf(ref.out.data)), sp.name).toBe(true);
      const e = m.tensors.find((t) => t.name === sp.name)!;
      expect(e.counts).toEqual(ref.stats.counts);
      expect(e.energy!.applied).toBeCloseTo(ref.stats.energy.applied, 12);
      expect(e.angleHistogram!.reduce((a, b) => a + b, 0)).toBe(ref.stats.rows);
    }
    expect(m.totals.edited).toBe(specs.length - 2);
    expect(m.totals.copied).toBe(2);
    expect(m.totals.counts.orthogonal + m.totals.counts.synergy + m.totals.counts.conflict).toBe(m.totals.rows);
    expect(m.totals.counts.synergy).toBeGreaterThan(0);
    expect(m.totals.counts.conflict).toBeGreaterThan(0);
    // The manifest on disk is the resolved value, with SHA-256 of every input file.
    const disk = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(disk.totals).toEqual(JSON.parse(JSON.stringify(m.totals)));
    expect(disk.inputs.base.files.length).toBe(4); // 3 shards + index
    for (const role of ['base', 'old', 'new']) {
      for (const f of disk.inputs[role].files) {
        expect(f.sha256).toBe(crypto.createHash('sha256').update(fs.readFileSync(f.path)).digest('hex'));
        expect(f.size).toBe(fs.statSync(f.path).size);
      }
    }
    expect(events.length).toBeGreaterThan(0);
    expect(events[events.length - 1]).toBe(1);
    expect(leftovers(root)).toEqual([]);
  });

  it('shards the output with Hugging Face names and an index when over maxShardSize; same bytes as one file', async () => {
    const out = outDir('out-sharded');
    const m = await editCheckpoint({ ...tri, out }, { maxShardSize: 3000, hash: false });
    const files = fs.readdirSync(out).filter((n) => n.endsWith('.safetensors')).sort();
    expect(files.length).toBeGreaterThan(2);
    files.forEach((f, i) => expect(f).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(files.length).padStart(5, '0')}.safetensors`));
    const idx = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
    const totalData = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1) * (s.dtype === 'I64' ? 8 : s.dtype === 'BOOL' ? 1 : 2), 0);
    expect(idx.metadata.total_size).toBe(totalData);
    expect(Object.keys(idx.weight_map).sort()).toEqual(specs.map((s) => s.name).sort());
    expect(m.output!.files.length).toBe(files.length);
    const one = outDir('out-basic');
    for (const sp of specs) {
      const a = await tensorOf(out, sp.name);
      const b = await tensorOf(one, sp.name);
      expect(bytesOf(a.data).equals(bytesOf(b.data))).toBe(true);
    }
    expect(m.inputs.base!.files.every((f) => f.sha256 === null)).toBe(true);
  });

  it('gives the same bytes and statistics with tiny row blocks (block processing is row-local)', async () => {
    const a = outDir('out-blocks');
    const m = await editCheckpoint({ ...tri, out: a }, { blockBytes: 64, hash: false, threads: 1 });
    const one = outDir('out-basic');
    expect(fs.readFileSync(path.join(a, 'model.safetensors')).subarray(0, 8).equals(fs.readFileSync(path.join(one, 'model.safetensors')).subarray(0, 8))).toBe(true);
    for (const sp of specs) {
      const x = await tensorOf(a, sp.name);
      const y = await tensorOf(one, sp.name);
      expect(bytesOf(x.data).equals(bytesOf(y.data)), sp.name).toBe(true);
    }
    const ref = JSON.parse(fs.readFileSync(path.join(one, 'geoedit-manifest.json'), 'utf8'));
    expect(m.tensors.map((t) => t.counts)).toEqual(ref.tensors.map((t: { counts?: unknown }) => t.counts));
  });

  it('include/exclude: unselected tensors are copied from the base byte for byte', async () => {
    const out = outDir('out-select');
    const m = await editCheckpoint({ ...tri, out }, { include: ['model.layers.*.mlp.*'], exclude: 'model.layers.1.*', hash: false });
    for (const sp of specs) {
      const got = await tensorOf(out, sp.name);
      const base = await tensorOf(tri.base, sp.name);
      const selected = /^model\.layers\.\d+\.mlp\./.test(sp.name) && !sp.name.startsWith('model.layers.1.');
      const e = m.tensors.find((t) => t.name === sp.name)!;
      expect(e.action).toBe(selected ? 'edit' : 'copy');
      if (!selected) expect(bytesOf(got.data).equals(bytesOf(base.data))).toBe(true);
      else expect(bytesOf(got.data).equals(bytesOf((await expectedEdit(sp.name)).out.data))).toBe(true);
    }
  });

  it('outDtype f32 writes every float tensor as F32 (edited and converted) and leaves ints alone', async () => {
    const out = outDir('out-f32');
    const m = await editCheckpoint({ ...tri, out }, { outDtype: 'f32', exclude: 'model.embed_tokens.*', hash: false, strategy: 'task-arithmetic', scale: 0.5 });
    const h = await readSafetensorsHeader(path.join(out, 'model.safetensors'));
    for (const t of h.tensors) {
      const sp = specs.find((s) => s.name === t.name)!;
      expect(t.dtype).toBe(sp.dtype === 'BF16' ? 'F32' : sp.dtype);
    }
    const emb = await tensorOf(out, 'model.embed_tokens.weight');
    const base = toTensor(await tensorOf(tri.base, 'model.embed_tokens.weight'));
    const bf = base.data as Uint16Array;
    expect(Array.from(emb.data as Float32Array)).toEqual(Array.from(bf, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]));
    expect(m.tensors.find((t) => t.name === 'model.embed_tokens.weight')!.action).toBe('convert');
    const q = 'model.layers.0.self_attn.q_proj.weight';
    const ref = await expectedEdit(q, { outDtype: 'f32', strategy: 'task-arithmetic', scale: 0.5 });
    expect(bytesOf((await tensorOf(out, q)).data).equals(bytesOf(ref.out.data))).toBe(true);
  });

  it('analyzeCheckpoint gives the edit statistics and writes nothing', async () => {
    const before = fs.readdirSync(root).sort();
    const m = await analyzeCheckpoint(tri, { hash: false });
    expect(fs.readdirSync(root).sort()).toEqual(before);
    expect(m.output).toBeNull();
    const ref = JSON.parse(fs.readFileSync(path.join(outDir('out-basic'), 'geoedit-manifest.json'), 'utf8'));
    expect(m.totals.counts).toEqual(ref.totals.counts);
    expect(m.totals.energyKept).toBeCloseTo(ref.totals.energyKept, 12);
  });

  it('inspectCheckpoint lists tensors, dtypes, shapes and bytes', async () => {
    const r = await inspectCheckpoint(tri.base);
    expect(r.kind).toBe('sharded');
    expect(r.files.length).toBe(3);
    expect(r.tensors.length).toBe(specs.length);
    expect(r.dtypes.I64).toEqual({ tensors: 1, bytes: 64 });
    expect(r.totalBytes).toBe(r.tensors.reduce((a, t) => a + t.bytes, 0));
  });

  it('refuses an existing target unless force, and a target equal to an input', async () => {
    const out = outDir('out-basic');
    const stamp = fs.statSync(path.join(out, 'model.safetensors')).mtimeMs;
    await expect(editCheckpoint({ ...tri, out }, {})).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS' });
    expect(fs.statSync(path.join(out, 'model.safetensors')).mtimeMs).toBe(stamp);
    await expect(editCheckpoint({ ...tri, out: tri.old }, { force: true })).rejects.toMatchObject({ code: 'ERR_OUTPUT_IS_INPUT', message: expect.stringMatching(/(is|holds) the input/) });
    fs.symlinkSync(tri.new, outDir('link-to-new'));
    await expect(editCheckpoint({ ...tri, out: outDir('link-to-new') }, { force: true })).rejects.toMatchObject({ code: 'ERR_OUTPUT_IS_INPUT' });
    expect(fs.readdirSync(tri.new).sort()).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    const forced = outDir('out-force');
    fs.mkdirSync(forced);
    fs.writeFileSync(path.join(forced, 'stale.txt'), 'x');
    // --force replaces only a previous geoedit output (a directory holding a manifest): refused without one.
    await expect(editCheckpoint({ ...tri, out: forced }, { force: true, hash: false })).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS', message: expect.stringMatching(/not a previous geoedit output/) });
    fs.writeFileSync(path.join(forced, 'geoedit-manifest.json'), '{}');
    await editCheckpoint({ ...tri, out: forced }, { force: true, hash: false });
    expect(fs.existsSync(path.join(forced, 'stale.txt'))).toBe(false);
    expect(fs.existsSync(path.join(forced, 'model.safetensors'))).toBe(true);
    expect(leftovers(root)).toEqual([]);
  });

  it('an aborted signal stops the job: ERR_ABORTED, nothing at the target, no temp left', async () => {
    const out = outDir('out-abort');
    const ac = new AbortController();
    await expect(editCheckpoint({ ...tri, out }, { signal: ac.signal, blockBytes: 64, onProgress: () => ac.abort() })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(root)).toEqual([]);
    const pre = new AbortController();
    pre.abort();
    await expect(editCheckpoint({ ...tri, out }, { signal: pre.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('the core stops at the next block when the cancel flag is set (ERR_ABORTED), and reports bytes done', async () => {
    const { loadNative } = await import('../../lib/native');
    const ck = openCheckpoint(tri.base);
    const t = ck.byName.get('model.layers.0.mlp.up_proj.weight')!;
    const fd = fs.openSync(t.file, 'r');
    try {
      const src = { fd, offset: t.begin, dtype: 'bf16', file: t.file };
      const task = { kind: 0 as const, name: t.name, rows: 32, cols: 16, base: src, old: src, new: src, outFd: -1, stats: true };
      const ctl = new Float64Array([0, 1, 0]);
      await expect(loadNative().stream({ tasks: [task], params: {}, blockBytes: 64, ctl })).rejects.toMatchObject({ code: 'ERR_ABORTED', message: expect.stringContaining(t.name) });
      ctl[1] = 0;
      const res = await loadNative().stream({ tasks: [task, { ...task }], params: {}, blockBytes: 64, ctl });
      expect(ctl[0]).toBe(2 * 3 * 32 * 16 * 2);
      expect(ctl[2]).toBe(1);
      expect(Array.from(res[0]!.region)).toEqual(new Array(32).fill(0)); // identical inputs: zero task vectors
    } finally {
      fs.closeSync(fd);
    }
  });

  it('validation before any work: one error listing every missing and mis-shaped tensor', async () => {
    const d = path.join(root, 'mismatch');
    const other = specs.map((s) => (s.name.endsWith('q_proj.weight') ? { ...s, shape: [16, 8] } : s)).filter((s) => !s.name.includes('layers.2.mlp.down'));
    await writeCheckpoint(path.join(d, 'old'), tensorsFor(other, 'old'));
    const out = outDir('out-mismatch');
    let err: GeoEditError | undefined;
    try { await editCheckpoint({ base: tri.base, old: path.join(d, 'old'), new: tri.new, out }, {}); } catch (e) { err = e as GeoEditError; }
    expect(err?.code).toBe('ERR_SHAPE_MISMATCH');
    for (let l = 0; l < 3; l++) expect(err!.message).toContain(`'model.layers.${l}.self_attn.q_proj.weight' (base [16, 16], old [16, 8])`);
    expect(err!.message).toContain(`'model.layers.2.mlp.down_proj.weight' (missing from old`);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(root)).toEqual([]);
  });

  it('non-finite values fail naming the tensor and the real row (also in a later block); nothing written', async () => {
    const d = path.join(root, 'nan');
    const t = tensorsFor(specs, 'new');
    const up = t.find((x) => x.name === 'model.layers.1.mlp.up_proj.weight')!;
    (up.data as Uint16Array)[16 * 27 + 5] = 0x7fc0; // NaN at row 27, column 5
    await writeCheckpoint(path.join(d, 'new'), t);
    const out = outDir('out-nan');
    await expect(editCheckpoint({ base: tri.base, old: tri.old, new: path.join(d, 'new'), out }, { blockBytes: 64 })).rejects.toMatchObject({
      code: 'ERR_NON_FINITE', message: expect.stringMatching(/tensor 'model\.layers\.1\.mlp\.up_proj\.weight'.*new weights at row 27, column 5/),
    });
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(root)).toEqual([]);
    const ok = await editCheckpoint({ base: tri.base, old: tri.old, new: path.join(d, 'new'), out }, { allowNonFinite: true, hash: false });
    expect(ok.totals.edited).toBe(specs.length - 2);
  });

  it('shard names in an index are untrusted: absolute and escaping names are refused, a missing shard is named', async () => {
    const d = path.join(root, 'evil');
    await writeCheckpoint(path.join(d, 'x'), tensorsFor(specs, 'old'), 2, false);
    const idxFile = path.join(d, 'x', 'model.safetensors.index.json');
    const idx = JSON.parse(fs.readFileSync(idxFile, 'utf8'));
    const first = Object.keys(idx.weight_map)[0]!;
    for (const [shard, code, re] of [
      ['../escape.safetensors', 'ERR_BAD_SAFETENSORS', /'\.\.\/escape\.safetensors'.*leaves the directory/],
      ['/etc/passwd', 'ERR_BAD_SAFETENSORS', /absolute path/],
      ['sub/../../x.safetensors', 'ERR_BAD_SAFETENSORS', /leaves the directory/],
      ['model-00009-of-00009.safetensors', 'ERR_NOT_FOUND', /shard 'model-00009-of-00009\.safetensors'.*is missing/],
    ] as const) {
      fs.writeFileSync(idxFile, JSON.stringify({ ...idx, weight_map: { ...idx.weight_map, [first]: shard } }));
      let err: GeoEditError | undefined;
      try { openCheckpoint(path.join(d, 'x')); } catch (e) { err = e as GeoEditError; }
      expect(err?.code, shard).toBe(code);
      expect(err!.message).toMatch(re);
      expect(err!.message).toContain(first);
    }
    // A symlinked shard pointing outside the directory is refused too.
    fs.writeFileSync(path.join(d, 'outside.safetensors'), fs.readFileSync(path.join(tri.old, 'model.safetensors')));
    fs.symlinkSync(path.join(d, 'outside.safetensors'), path.join(d, 'x', 'link.safetensors'));
    fs.writeFileSync(idxFile, JSON.stringify({ ...idx, weight_map: { ...idx.weight_map, [first]: 'link.safetensors' } }));
    expect(() => openCheckpoint(path.join(d, 'x'))).toThrow(/resolves outside/);
  });

  it('reads tensors that are not aligned to their element size (older writers) through the data path', async () => {
    const d = path.join(root, 'unaligned');
    const mk = (role: 'base' | 'old' | 'new') => {
      const ts = tensorsFor([{ name: 'w', dtype: 'F32', shape: [8, 12] }, { name: 'h', dtype: 'BF16', shape: [5, 7] }], role);
      let off = 0;
      const hdr: Record<string, unknown> = {};
      for (const t of ts) { hdr[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] }; off += t.data.byteLength; }
      let text = JSON.stringify(hdr);
      if ((8 + text.length) % 2 === 0) text += ' '; // odd data offset: misaligned for F32 and BF16
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(text.length));
      fs.mkdirSync(path.join(d, role), { recursive: true });
      fs.writeFileSync(path.join(d, role, 'model.safetensors'), Buffer.concat([len, Buffer.from(text), ...ts.map((t) => bytesOf(t.data))]));
      return ts;
    };
    const [b, o, n] = [mk('base'), mk('old'), mk('new')];
    const out = outDir('out-unaligned');
    await editCheckpoint({ base: path.join(d, 'base'), old: path.join(d, 'old'), new: path.join(d, 'new'), out }, { hash: false, blockBytes: 100 });
    for (let k = 0; k < 2; k++) {
      const dt = k === 0 ? ('f32' as const) : ('bf16' as const);
      const as = (t: typeof b[number]) => ({ dtype: dt, shape: t.shape, data: t.data as Float32Array | Uint16Array });
      const ref = editTensorSync({ base: as(b[k]!), old: as(o[k]!), new: as(n[k]!) });
      expect(bytesOf((await tensorOf(out, b[k]!.name)).data).equals(bytesOf(ref.out.data)), b[k]!.name).toBe(true);
    }
  });

  it('fuzzed index files end in success or a coded error naming the index', async () => {
    const d = path.join(root, 'fuzz-index');
    await writeCheckpoint(path.join(d, 'x'), tensorsFor(specs, 'old'), 2, false);
    const idxFile = path.join(d, 'x', 'model.safetensors.index.json');
    const idx = JSON.parse(fs.readFileSync(idxFile, 'utf8'));
    const names = Object.keys(idx.weight_map);
    const shardName = fc.oneof(
      fc.constantFrom('model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', '../x.safetensors', '/abs.safetensors', '', '.', '..', 'a\\b', 'sub/../model-00001-of-00002.safetensors', 'nul\u0000x'),
      fc.string({ maxLength: 20 }),
      fc.constant(null), fc.integer(), fc.constant({}),
    );
    let ok = 0;
    fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom(...names), shardName), { maxLength: 4 }), fc.boolean(), (edits, breakJson) => {
      const wm = { ...idx.weight_map };
      for (const [k, v] of edits) wm[k] = v;
      const text = JSON.stringify({ ...idx, weight_map: wm });
      fs.writeFileSync(idxFile, breakJson ? text.slice(0, text.length >> 1) : text);
      try {
        openCheckpoint(path.join(d, 'x'));
        ok++;
      } catch (e) {
        expect(e).toBeInstanceOf(GeoEditError);
        expect(['ERR_BAD_SAFETENSORS', 'ERR_NOT_FOUND', 'ERR_MISSING_TENSOR']).toContain((e as GeoEditError).code);
        expect((e as Error).message).toMatch(/model\.safetensors\.index\.json|model-0000/);
      }
    }), { numRuns: 300, seed: 5 });
    expect(ok).toBeGreaterThan(0);
  });

  it('the CLI progress display: a bar with bytes, GB/s and ETA on a TTY, plain lines per 10% otherwise', () => {
    const mk = (tty: boolean) => { const out: string[] = []; return { out, s: { isTTY: tty, columns: 100, write: (x: string) => { out.push(x); return true; } } as unknown as NodeJS.WriteStream }; };
    const ev = (done: number) => ({ phase: 'edit' as const, bytesDone: done, bytesTotal: 4e9, tensor: 'model.layers.3.mlp.up_proj.weight', tensorsDone: 1, tensorsTotal: 9, elapsedMs: 2000 });
    const t = mk(true);
    const p = progressPrinter(t.s);
    p.onProgress(ev(1e9));
    p.onProgress(ev(2e9));
    p.done();
    expect(t.out[0]).toMatch(/^\r\[#{7}-{21}\]  25% 1\.00 GB\/4\.00 GB 0\.50 GB\/s ETA 6s \S*layers\.3\.mlp\.up_proj\.weight$/);
    expect(t.out[0]!.length).toBe(100);
    const narrow = mk(true);
    (narrow.s as { columns: number }).columns = 80;
    progressPrinter(narrow.s).onProgress(ev(1e9));
    expect(narrow.out[0]!.length).toBe(80); // '\\r' + 79 columns
    expect(narrow.out[0]).toMatch(/ETA 6s …\S+\.weight$/);
    expect(t.out[t.out.length - 1]).toBe('\n');
    const plain = mk(false);
    const q = progressPrinter(plain.s);
    for (let i = 0; i <= 40; i++) q.onProgress(ev(i * 1e8));
    expect(plain.out.length).toBe(11);
    expect(plain.out.every((l) => /^edit: \d+% .* GB\/s, ETA/.test(l) && l.endsWith('\n') && !l.includes('\r'))).toBe(true);
  });

  it('option errors are coded', async () => {
    const out = outDir('out-opt');
    await expect(editCheckpoint({ ...tri, out }, { kappa: -1 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(editCheckpoint({ ...tri, out }, { nope: 1 } as never)).rejects.toMatchObject({ code: 'ERR_UNKNOWN_OPTION' });
    await expect(editCheckpoint({ ...tri, out }, { maxShardSize: 'lots' })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(editCheckpoint({ ...tri, out }, { strategy: 'custom' })).rejects.toMatchObject({ code: 'ERR_COEFFICIENTS' }); // custom needs the coefficients file (issue 13)
    await expect(editCheckpoint({ ...tri, out }, { backend: 'gpu' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(editCheckpoint({ ...tri, out }, { cudaMemoryLimit: -1 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(editCheckpoint({ ...tri, out }, { cudaMemoryLimit: '1G' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(parseSize('5GB')).toBe(5e9);
    expect(parseSize('2GiB')).toBe(2 ** 31);
    expect(parseSize(1234)).toBe(1234);
    expect(fs.existsSync(out)).toBe(false);
  });

  describe('backend choice (the GPU path itself: test/support/cuda-suite.ts)', () => {
    const gpu = cudaStatus().available;
    const saved = process.env.GEOEDIT_BACKEND;
    afterEach(() => {
      if (saved === undefined) delete process.env.GEOEDIT_BACKEND;
      else process.env.GEOEDIT_BACKEND = saved;
    });

    it.skipIf(gpu)("without a usable GPU an explicit 'cuda' (option or GEOEDIT_BACKEND) is ERR_CUDA_UNAVAILABLE with the reason; nothing written", async () => {
      delete process.env.GEOEDIT_BACKEND;
      const out = outDir('out-cuda');
      for (const run of [() => editCheckpoint({ ...tri, out }, { backend: 'cuda' }), () => analyzeCheckpoint(tri, { backend: 'cuda' })]) {
        const e = await run().then(() => null, (x) => x);
        expect(e).toBeInstanceOf(GeoEditError);
        expect(e.code).toBe('ERR_CUDA_UNAVAILABLE');
        expect(e.message).toContain(cudaStatus().reason);
      }
      process.env.GEOEDIT_BACKEND = 'cuda';
      const e = await editCheckpoint({ ...tri, out }, { hash: false }).then(() => null, (x) => x);
      expect(e?.code).toBe('ERR_CUDA_UNAVAILABLE');
      expect(e.message).toContain('GEOEDIT_BACKEND');
      expect(fs.existsSync(out)).toBe(false);
      expect(leftovers(root)).toEqual([]);
    });

    it.skipIf(gpu)("without a usable GPU 'auto' (option, default, GEOEDIT_BACKEND) runs on the CPU with the CPU's bytes", async () => {
      delete process.env.GEOEDIT_BACKEND;
      const cpu = await editCheckpoint({ ...tri, out: outDir('out-be-cpu') }, { backend: 'cpu', hash: false });
      const auto = await editCheckpoint({ ...tri, out: outDir('out-be-auto') }, { backend: 'auto', hash: false });
      process.env.GEOEDIT_BACKEND = 'auto';
      const env = await editCheckpoint({ ...tri, out: outDir('out-be-env') }, { hash: false });
      const file = (d: string) => fs.readFileSync(path.join(outDir(d), 'model.safetensors'));
      for (const [d, m] of [['out-be-auto', auto], ['out-be-env', env]] as const) {
        expect(file(d).equals(file('out-be-cpu')), d).toBe(true);
        expect(m.backend).toMatchObject({ name: 'cpu', device: null, requested: 'auto' });
        expect(m.backend.reason).toMatch(/^auto: no usable GPU/);
      }
      expect(cpu.backend).toEqual({ name: 'cpu', device: null, requested: 'cpu', reason: "backend 'cpu' was requested" });
    });

    it("GEOEDIT_BACKEND=cpu is honoured and the manifest says where the edit ran", async () => {
      process.env.GEOEDIT_BACKEND = 'cpu';
      const m = await analyzeCheckpoint(tri, { hash: false });
      expect(m.backend).toEqual({ name: 'cpu', device: null, requested: 'cpu', reason: "backend 'cpu' was requested (GEOEDIT_BACKEND)" });
      process.env.GEOEDIT_BACKEND = 'metal';
      await expect(analyzeCheckpoint(tri, { hash: false })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('GEOEDIT_BACKEND') });
    });
  });

  it('importance checkpoints are used per tensor and checked against the base', async () => {
    const d = path.join(root, 'imp');
    const impSpecs = specs.map((s) => ({ ...s, dtype: s.dtype === 'BF16' ? ('F32' as const) : s.dtype }));
    const mk = (seed: number) => impSpecs.map((s, k) => {
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (s.dtype === 'I64') return { ...s, data: new BigInt64Array(n) };
      if (s.dtype === 'BOOL') return { ...s, data: new Uint8Array(n) };
      return { ...s, data: rnd(n, seed + k).map((v) => Math.abs(v)) };
    });
    await writeCheckpoint(path.join(d, 'io'), mk(10));
    await writeCheckpoint(path.join(d, 'in'), mk(20));
    const out = outDir('out-imp');
    await editCheckpoint({ ...tri, out }, { importanceOld: path.join(d, 'io'), importanceNew: path.join(d, 'in'), density: 0.5, hash: false });
    const name = 'model.layers.0.mlp.up_proj.weight';
    const io = toTensor(await tensorOf(path.join(d, 'io'), name));
    const inw = toTensor(await tensorOf(path.join(d, 'in'), name));
    const ref = await expectedEdit(name, { importanceOld: io, importanceNew: inw, density: 0.5 });
    expect(bytesOf((await tensorOf(out, name)).data).equals(bytesOf(ref.out.data))).toBe(true);
    await expect(editCheckpoint({ ...tri, out: outDir('out-imp2') }, { importanceOld: path.join(d, 'io'), importanceNew: tri.base })).rejects.toMatchObject({ code: 'ERR_BAD_IMPORTANCE' });
  });
});

describe.skipIf(!haveReal)('editCheckpoint on real files written by the official library', () => {
  const flux = path.join(REAL, 'FluxML__SafeTensors.jl', 'test');
  it('FluxML: sharded base, non-sharded old/new: floats edited, F8/F64 copied with a warning, BOOL/I* copied', async () => {
    // old = the real non-sharded file; new = a perturbed copy of it written by our writer.
    const h = await readSafetensorsHeader(path.join(flux, 'non_sharded', 'model.safetensors'));
    const d = path.join(root, 'flux');
    fs.mkdirSync(d);
    const tensors = [];
    for (const t of h.tensors) {
      const r = await readTensor(h.path, t.name, h);
      let data = r.data as ArrayBufferView;
      if (t.dtype === 'F32') data = (r.data as Float32Array).map((v, i) => v + (i % 2 ? 0.25 : -0.5));
      if (t.dtype === 'BF16' || t.dtype === 'F16') data = (r.data as Uint16Array).map((v, i) => v ^ (i % 3 === 0 ? 1 : 0));
      tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data });
    }
    await writeSafetensors(path.join(d, 'new.safetensors'), tensors);
    const out = outDir('out-flux');
    const m = await editCheckpoint({ base: path.join(flux, 'sharded'), old: path.join(flux, 'non_sharded', 'model.safetensors'), new: path.join(d, 'new.safetensors'), out }, { hash: false });
    const byName = new Map(m.tensors.map((t) => [t.name, t]));
    for (const t of h.tensors) {
      const e = byName.get(t.name)!;
      if (['F32', 'F16', 'BF16'].includes(t.dtype)) expect(e.action, t.name).toBe('edit');
      else expect(e.action, t.name).toBe('copy');
      const got = await tensorOf(out, t.name);
      const base = await tensorOf(path.join(flux, 'sharded'), t.name);
      expect(got.dtype).toBe(t.dtype);
      if (e.action === 'copy') expect(bytesOf(got.data).equals(bytesOf(base.data)), t.name).toBe(true);
    }
    expect(m.warnings.filter((w) => /F8_E4M3|F8_E5M2|F64/.test(w)).length).toBe(9);
    const f32 = await tensorOf(out, 'float32_357');
    const ref = editTensorSync({
      base: toTensor(await tensorOf(path.join(flux, 'sharded'), 'float32_357')),
      old: toTensor(await readTensor(h.path, 'float32_357', h)),
      new: toTensor(await readTensor(path.join(d, 'new.safetensors'), 'float32_357')),
    });
    expect(bytesOf(f32.data).equals(bytesOf(ref.out.data))).toBe(true);
    // Asking to edit an F8 tensor explicitly is refused cleanly.
    await expect(editCheckpoint({ base: path.join(flux, 'sharded'), old: h.path, new: path.join(d, 'new.safetensors'), out: outDir('out-flux-f8') }, { include: 'float8_*' }))
      .rejects.toMatchObject({ code: 'ERR_UNSUPPORTED', message: expect.stringMatching(/float8_e\w+_3\w*'.*F8_E/) });
    expect(fs.existsSync(outDir('out-flux-f8'))).toBe(false);
  });

  it('CoffeeVampir3: identical base/old/new give zero task vectors and an output equal to the base bit for bit', async () => {
    const f = path.join(REAL, 'CoffeeVampir3__Model-Saving-Test-Repo', 'model.safetensors');
    const out = outDir('out-coffee');
    const m = await editCheckpoint({ base: f, old: f, new: f, out }, {});
    const base = await readSafetensorsHeader(f);
    for (const t of base.tensors) {
      const a = await readTensor(f, t.name, base);
      const b = await readTensor(path.join(out, 'model.safetensors'), t.name);
      expect(bytesOf(b.data).equals(bytesOf(a.data))).toBe(true);
    }
    expect(m.totals.energy.new).toBe(0);
    expect(m.tensors.every((t) => t.zeroRows === t.rows)).toBe(true);
    expect(fs.readdirSync(out).sort()).toEqual(['geoedit-manifest.json', 'model.safetensors']);
    expect((await readSafetensorsHeader(path.join(out, 'model.safetensors'))).metadata).toMatchObject({ version: '1.0', git_tag: 'v1.45', format: 'pt' });
  });
});
