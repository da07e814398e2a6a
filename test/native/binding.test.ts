// The binding's contract (native/binding/EXPORTS.md): exactly the listed exports, test-only ones
// prefixed `_`, and one error path: every native failure throws or rejects with a `.code`, and
// carries the `details` (tensor, row, column, file, option) the core knows.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { editTensor, GeoEditError } from '../../lib/index';
import { loadNative, type NativeSpec } from '../../lib/native';

const addon = loadNative();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-binding-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function spec(rows: number, cols: number, over: Partial<NativeSpec> = {}): NativeSpec {
  const n = rows * cols;
  const base = new Float32Array(n).map((_, i) => Math.sin(i + 1) * 0.1);
  const old = base.map((v, i) => v + Math.cos(i) * 0.01);
  const nw = base.map((v, i) => v + Math.sin(3 * i) * 0.01);
  return {
    rows, cols, base, baseDtype: 'f32', old, oldDtype: 'f32', new: nw, newDtype: 'f32', outDtype: 'f32', wantOut: true, threads: 1,
    params: {}, ...over,
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

describe('exports', () => {
  it('are exactly the documented list; test and bench exports carry a `_` prefix', () => {
    const doc = fs.readFileSync(path.join(__dirname, '..', '..', 'native', 'binding', 'EXPORTS.md'), 'utf8');
    const documented = [...doc.matchAll(/^### `(\w+)\(/gm)].map((m) => m[1]!).sort();
    expect(Object.keys(addon).sort()).toEqual(documented);
    expect(Object.keys(addon)).not.toContain('setSimd');
    // A/B switches removed once their measurement was recorded (docs/performance.md)
    for (const k of ['_setFusedPrefetch', '_setOutputPoolLegacy']) expect(Object.keys(addon)).not.toContain(k);
    for (const k of ['_triad', '_cudaBench', '_cudaLoraGeometry']) expect(typeof (addon as unknown as Record<string, unknown>)[k]).toBe('function');
  });

  it('_triad resolves to a bandwidth', async () => {
    const gbps = await addon._triad(1 << 16, 1, 1);
    expect(gbps).toBeGreaterThan(0);
  });
});

describe('one error path', () => {
  it('a non-finite input names tensor, row and column in details (sync, async and the public API)', async () => {
    const s = spec(3, 4, { tensorName: 'layer.w', rowOffset: 10 });
    (s.new as Float32Array)[1 * 4 + 2] = NaN;
    const want = { tensor: 'layer.w', row: 11, column: 2 };
    const sync = await failure(() => addon.editSync(s));
    expect(sync.code).toBe('ERR_NON_FINITE');
    expect(sync.details).toEqual(want);
    const async = await failure(() => addon.edit(s));
    expect(async.code).toBe('ERR_NON_FINITE');
    expect(async.details).toEqual(want);
    const data = new Float32Array(12).fill(0.5);
    const bad = data.slice();
    bad[7] = Infinity;
    const pub = await failure(() => editTensor({
      base: { dtype: 'f32', shape: [3, 4], data }, old: { dtype: 'f32', shape: [3, 4], data }, new: { dtype: 'f32', shape: [3, 4], data: bad },
    }));
    expect(pub).toBeInstanceOf(GeoEditError);
    expect(pub.code).toBe('ERR_NON_FINITE');
    expect(pub.details).toMatchObject({ row: 1, column: 3 });
  });

  it('an invalid option names it', async () => {
    const e = await failure(() => addon.edit(spec(2, 2, { params: { density: 2 } })));
    expect(e.code).toBe('ERR_INVALID_OPTION');
    expect(e.details).toEqual({ option: 'density' });
    const u = await failure(() => addon.edit(spec(2, 2, { params: { strategy: 'nope' } })));
    expect(u.code).toBe('ERR_UNKNOWN_STRATEGY');
    expect(u.details).toEqual({ option: 'strategy' });
  });

  it('a stream read past the end of a file rejects with ERR_IO naming file and tensor', async () => {
    const file = path.join(tmp, 'short.bin');
    fs.writeFileSync(file, Buffer.alloc(33));
    const fd = fs.openSync(file, 'r');
    try {
      // An odd offset for bf16 takes the pread path; the file holds 16 of the 64 values.
      const src = { fd, offset: 1, dtype: 'bf16', file };
      const task = { kind: 0 as const, name: 'w.short', rows: 8, cols: 8, base: src, old: src, new: src, outFd: -1, stats: true };
      const e = await failure(() => addon.stream({ tasks: [task], params: {} }));
      expect(e.code).toBe('ERR_IO');
      expect(e.details).toEqual({ file, tensor: 'w.short' });
      expect(e.message).toContain(file);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a bad safetensors header names the file', () => {
    const bytes = new Uint8Array(16);
    new DataView(bytes.buffer).setBigUint64(0, 8n, true);
    bytes.set(Buffer.from('not json'), 8);
    const e = (() => { try { addon.stHeaderBytes(bytes, 'x.safetensors'); } catch (err) { return err as Error & { code?: string; details?: unknown }; } throw new Error('no error'); })();
    expect(e.code).toBe('ERR_BAD_SAFETENSORS');
    expect(e.details).toEqual({ file: 'x.safetensors' });
  });

  it('every async export rejects with a code', async () => {
    const rejections = [
      failure(() => addon.loraGeometry({ rows: 2, cols: 2, old: null, new: null, params: { density: 0.5 } })),
      failure(() => addon.loraMerge({
        rows: 2, cols: 2, old: { L: new Float32Array(2), R: new Float32Array(2), r: 1, scale: NaN }, new: null, cNew: new Float32Array(2),
        cOld: new Float32Array(2), transposed: false, s0: 0, s1: 2, base: new Float32Array(4), baseDtype: 'f32', outDtype: 'f32', tensorName: 't',
      })),
      failure(() => addon.stream({ tasks: [{ kind: 1, name: 'c', copyBytes: 8, base: { fd: 987654, offset: 0, dtype: 'f32', file: 'nofd' }, outFd: 987655 }], params: {} })),
      failure(() => addon.edit(spec(2, 2, { params: { strategy: 'custom' } }))),
    ];
    for (const e of await Promise.all(rejections)) {
      expect(typeof e.code, e.message).toBe('string');
      expect(e.code).toMatch(/^ERR_[A-Z_]+$/);
    }
  });
});
