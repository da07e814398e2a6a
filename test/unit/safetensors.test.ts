import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import {
  readSafetensorsHeader, readSafetensorsHeaderSync, readTensor, writeSafetensors, parseSafetensorsBytes,
  planSafetensors, ST_DTYPE_SIZE, type SafetensorsHeader,
} from '../../lib/safetensors';
import { GeoEditError } from '../../lib/errors';
import { REAL, haveReal } from '../support/paths';

if (!haveReal) console.warn(`skipping real-data safetensors tests: ${REAL} is absent`);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-st-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Builds a file from a header object and a data section (no validation: for the bad-input corpus). */
function rawFile(header: unknown, dataBytes: number, opts: { lenOverride?: bigint; headerText?: string } = {}): Uint8Array {
  const text = opts.headerText ?? JSON.stringify(header);
  const hb = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(8 + hb.length + dataBytes);
  b.writeBigUInt64LE(opts.lenOverride ?? BigInt(hb.length), 0);
  hb.copy(b, 8);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

function expectBad(bytes: Uint8Array, pattern: RegExp): GeoEditError {
  let err: unknown;
  try {
    parseSafetensorsBytes(bytes, 'bad.safetensors');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(GeoEditError);
  const g = err as GeoEditError;
  expect(g.code).toBe('ERR_BAD_SAFETENSORS');
  expect(g.message).toMatch(/bad\.safetensors/);
  expect(g.message).toMatch(pattern);
  return g;
}

function checkInvariants(h: SafetensorsHeader): void {
  let pos = h.dataOffset;
  for (const t of h.tensors) {
    expect(t.begin).toBe(pos);
    const n = t.shape.reduce((a, b) => a * b, 1);
    expect(t.end - t.begin).toBe(n * ST_DTYPE_SIZE[t.dtype]);
    pos = t.end;
  }
  expect(pos).toBe(h.size);
}

describe('safetensors: write and read back', () => {
  it('round-trips every dtype, metadata and odd shapes, and is byte-identical to the planned layout', async () => {
    const f = path.join(dir, 'rt.safetensors');
    const tensors = [
      { name: 'w', dtype: 'BF16' as const, shape: [3, 5], data: new Uint16Array(15).map((_, i) => 0x3f80 + i) },
      { name: 'b', dtype: 'f32' as const, shape: [5], data: new Float32Array([1, -2, 3.5, 0, 1e-8]) },
      { name: 'ids', dtype: 'I64' as const, shape: [2], data: new BigInt64Array([-1n, 7n]) },
      { name: 'mask', dtype: 'BOOL' as const, shape: [3], data: new Uint8Array([1, 0, 1]) },
      { name: 'empty', dtype: 'F16' as const, shape: [0, 4], data: new Uint16Array(0) },
      { name: 'scalar', dtype: 'F64' as const, shape: [], data: new Float64Array([Math.PI]) },
      { name: 'ünï/cödé', dtype: 'I8' as const, shape: [1], data: new Int8Array([-5]) },
    ];
    await writeSafetensors(f, tensors, { format: 'pt', note: 'x"y' });
    const h = await readSafetensorsHeader(f);
    expect(h.metadata).toEqual({ format: 'pt', note: 'x"y' });
    expect(h.dataOffset % 8).toBe(0);
    expect(h.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    checkInvariants(h);
    for (const t of tensors) {
      const r = await readTensor(f, t.name, h);
      expect(r.shape).toEqual(t.shape);
      expect(Array.from(r.data as ArrayLike<number | bigint>)).toEqual(Array.from(t.data as ArrayLike<number | bigint>));
    }
    expect(fs.readdirSync(dir).filter((n) => n.includes('geoedit-tmp'))).toEqual([]);
  });

  it('refuses bad data lengths without leaving anything behind', async () => {
    const f = path.join(dir, 'bad-len.safetensors');
    await expect(writeSafetensors(f, [{ name: 'x', dtype: 'F32', shape: [4], data: new Float32Array(3) }])).rejects.toMatchObject({ code: 'ERR_DATA_LENGTH' });
    expect(fs.existsSync(f)).toBe(false);
    expect(fs.readdirSync(dir).filter((n) => n.includes('geoedit-tmp'))).toEqual([]);
  });

  it('names a missing file with ERR_NOT_FOUND and a missing tensor with ERR_MISSING_TENSOR', async () => {
    await expect(readSafetensorsHeader(path.join(dir, 'nope.safetensors'))).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    const f = path.join(dir, 'one.safetensors');
    await writeSafetensors(f, [{ name: 'a', dtype: 'F32', shape: [1], data: new Float32Array([1]) }]);
    await expect(readTensor(f, 'zzz')).rejects.toMatchObject({ code: 'ERR_MISSING_TENSOR', message: expect.stringMatching(/zzz/) });
  });

  it('reads tensors that are not aligned to their element size (older writers)', async () => {
    // Header of odd length (no padding), so the F32 data starts at an odd offset.
    const hdr = { a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } };
    let text = JSON.stringify(hdr);
    if ((8 + text.length) % 2 === 0) text += ' ';
    const bytes = rawFile(null, 20, { headerText: text });
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const off = 8 + text.length;
    [1.5, -2, 3].forEach((v, i) => view.writeFloatLE(v, off + 4 * i));
    [7, 8].forEach((v, i) => view.writeFloatLE(v, off + 12 + 4 * i));
    const f = path.join(dir, 'unaligned.safetensors');
    fs.writeFileSync(f, bytes);
    const h = readSafetensorsHeaderSync(f);
    expect(h.dataOffset % 4).not.toBe(0);
    expect(Array.from((await readTensor(f, 'a')).data as Float32Array)).toEqual([1.5, -2, 3]);
    expect(Array.from((await readTensor(f, 'b')).data as Float32Array)).toEqual([7, 8]);
  });
});

describe.skipIf(!haveReal)('safetensors: real files written by the official library', () => {
  const flux = path.join(REAL, 'FluxML__SafeTensors.jl', 'test');
  it('reads every FluxML file (all dtypes, metadata) and matches an independent JSON parse', async () => {
    for (const f of [
      path.join(flux, 'non_sharded', 'model.safetensors'),
      path.join(flux, 'non_sharded', 'model.with_metadata.safetensors'),
      path.join(flux, 'non_sharded', 'model.numpy.safetensors'),
      ...fs.readdirSync(path.join(flux, 'sharded')).filter((n) => n.endsWith('.safetensors')).map((n) => path.join(flux, 'sharded', n)),
    ]) {
      const h = await readSafetensorsHeader(f);
      const buf = fs.readFileSync(f);
      const n = Number(buf.readBigUInt64LE(0));
      const ref = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
      const { __metadata__: meta, ...rest } = ref as Record<string, unknown>;
      expect(h.metadata).toEqual(meta ?? null);
      expect(h.tensors.length).toBe(Object.keys(rest).length);
      for (const t of h.tensors) {
        const r = ref[t.name]!;
        expect(t.dtype).toBe(r.dtype);
        expect(t.shape).toEqual(r.shape);
        expect(t.begin).toBe(8 + n + r.data_offsets[0]);
      }
      checkInvariants(h);
    }
    const meta = await readSafetensorsHeader(path.join(flux, 'non_sharded', 'model.with_metadata.safetensors'));
    expect(meta.metadata).toEqual({ test: 'metadata', version: '2.2' });
  });

  it('reads values: CoffeeVampir3 fc1.bias equals a direct decode of the bytes; FluxML bf16/i64 too', async () => {
    const f = path.join(REAL, 'CoffeeVampir3__Model-Saving-Test-Repo', 'model.safetensors');
    const h = await readSafetensorsHeader(f);
    expect(h.metadata).toEqual({ version: '1.0', git_tag: 'v1.45' });
    const t = h.tensors.find((x) => x.name === 'fc1.bias')!;
    const buf = fs.readFileSync(f);
    const want = Array.from({ length: 20 }, (_, i) => buf.readFloatLE(t.begin + 4 * i));
    const r = await readTensor(f, 'fc1.bias');
    expect(r.dtype).toBe('F32');
    expect(Array.from(r.data as Float32Array)).toEqual(want);
    const fl = path.join(flux, 'non_sharded', 'model.safetensors');
    const i64 = await readTensor(fl, 'int64_35');
    expect(i64.data).toBeInstanceOf(BigInt64Array);
    expect(i64.data.length).toBe(15);
    const bf = await readTensor(fl, 'bfloat16_357');
    expect(bf.data).toBeInstanceOf(Uint16Array);
    expect(bf.data.length).toBe(105);
  });
});

describe('safetensors: bad-input corpus (each a coded error naming file and tensor)', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'BF16', shape: [2, 2], data_offsets: [8, 16] } };
  it('accepts the well-formed control', () => {
    const h = parseSafetensorsBytes(rawFile(ok, 16), 'ok.safetensors');
    expect(h.tensors.map((t) => t.name)).toEqual(['a', 'b']);
  });
  it('truncated file', () => expectBad(new Uint8Array([1, 2, 3]), /shorter than the 8-byte/));
  it('truncated data', () => expectBad(rawFile(ok, 12), /cover 16 bytes but the data section holds 12/));
  it('header length past the end', () => expectBad(rawFile(ok, 16, { lenOverride: 10_000n }), /runs past the end/));
  it('header length over 100 MB', () => expectBad(rawFile(ok, 16, { lenOverride: 100_000_001n }), /exceeds the 100 MB limit/));
  it('non-JSON header', () => expectBad(rawFile(null, 0, { headerText: '{"a": nope}' }), /not valid JSON/));
  it('non-UTF-8 header', () => {
    const b = rawFile(null, 0, { headerText: '{"a":1}' });
    b[10] = 0xff;
    expectBad(b, /not valid UTF-8/);
  });
  it('not an object', () => expectBad(rawFile(null, 0, { headerText: '[1,2]' }), /not a JSON object/));
  it('as the reference: leading whitespace and a null __metadata__ are accepted', () => {
    expect(parseSafetensorsBytes(rawFile(null, 4, { headerText: ' \n{"__metadata__":null,"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' })).metadata).toBeNull();
  });
  it('sub-byte dtypes (F4, F6_*): accepted when the bits make whole bytes, else refused', () => {
    const h = parseSafetensorsBytes(rawFile({ a: { dtype: 'F4', shape: [4], data_offsets: [0, 2] }, b: { dtype: 'F6_E2M3', shape: [4], data_offsets: [2, 5] } }, 5));
    expect(h.tensors.map((t) => t.end - t.begin)).toEqual([2, 3]);
    expectBad(rawFile({ a: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2), /tensor 'a'.*not a whole number of bytes/);
  });
  it('overlapping offsets', () =>
    expectBad(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), /tensor 'b'.*overlap/));
  it('gapped offsets', () =>
    expectBad(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }, 20), /tensor 'b'.*gap/));
  it('offsets not starting at 0', () => expectBad(rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /tensor 'a'.*gap/));
  it('unknown dtype', () => expectBad(rawFile({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, 16), /tensor 'w'.*unknown dtype 'F128'/));
  it('bytes != shape x dtype', () => expectBad(rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /tensor 'w'.*needs 12/));
  it('duplicate names', () =>
    expectBad(rawFile(null, 8, { headerText: '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' }), /duplicate tensor name 'a'/));
  it('duplicate field in a tensor entry', () =>
    expectBad(rawFile(null, 4, { headerText: '{"w":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}' }), /tensor 'w'.*duplicate field 'dtype'/));
  it('non-string metadata', () => expectBad(rawFile({ __metadata__: { v: 2 } }, 0), /__metadata__/));
  it('negative or fractional shape and offsets', () => {
    expectBad(rawFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /tensor 'w'.*shape/);
    expectBad(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4.5] } }, 4), /tensor 'w'.*data_offsets/);
  });
  it('end before begin, and element-count overflow', () => {
    expectBad(rawFile({ w: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, 4), /tensor 'w'/);
    expectBad(rawFile({ w: { dtype: 'F32', shape: [4294967296, 4294967296, 16], data_offsets: [0, 4] } }, 4), /tensor 'w'.*overflow/);
  });
  it('deep nesting is an error, not a stack overflow', () => {
    expectBad(rawFile(null, 0, { headerText: '{"a":' + '['.repeat(100000) + ']'.repeat(100000) + '}' }), /nesting/);
  });
});

describe('safetensors: fuzzing the native reader', () => {
  const seeds: Uint8Array[] = [];
  beforeAll(() => {
    const plan = planSafetensors(
      [
        { name: 'w', dtype: 'BF16', shape: [4, 3] },
        { name: 'b', dtype: 'F32', shape: [3] },
        { name: 'i', dtype: 'I64', shape: [2] },
      ],
      { format: 'pt' },
    );
    const full = new Uint8Array(plan.size);
    full.set(plan.header, 0);
    seeds.push(full);
    if (haveReal) {
      seeds.push(new Uint8Array(fs.readFileSync(path.join(REAL, 'CoffeeVampir3__Model-Saving-Test-Repo', 'model.safetensors'))));
      seeds.push(new Uint8Array(fs.readFileSync(path.join(REAL, 'FluxML__SafeTensors.jl', 'test', 'non_sharded', 'model.with_metadata.safetensors'))));
    }
  });

  function outcome(bytes: Uint8Array): 'ok' | 'coded' {
    try {
      const h = parseSafetensorsBytes(bytes, 'fuzz.safetensors');
      checkInvariants(h);
      return 'ok';
    } catch (e) {
      if (e instanceof GeoEditError && e.code === 'ERR_BAD_SAFETENSORS' && e.message.startsWith('fuzz.safetensors: ')) return 'coded';
      throw e;
    }
  }

  it('random bytes end in success or ERR_BAD_SAFETENSORS', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => { outcome(b); }), { numRuns: 3000, seed: 42 });
  });

  it('random header text after a correct length ends in success or ERR_BAD_SAFETENSORS', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.nat(64), (s, extra) => {
        outcome(rawFile(null, extra, { headerText: '{' + s }));
      }),
      { numRuns: 3000, seed: 7 },
    );
  });

  it('mutations of valid files (byte flips, truncation, splices) never crash the reader', () => {
    let ok = 0, coded = 0;
    fc.assert(
      fc.property(
        fc.nat(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 8 }),
        (si, muts) => {
          let b = Uint8Array.from(seeds[si % seeds.length]!);
          for (const [pos, val, kind] of muts) {
            if (b.length === 0) break;
            const p = pos % b.length;
            if (kind === 0) b[p] = val;
            else if (kind === 1) b = b.slice(0, p);
            else if (kind === 2) { const c = new Uint8Array(b.length + 1); c.set(b.subarray(0, p)); c[p] = val; c.set(b.subarray(p), p + 1); b = c; }
            else b[Math.min(7, p)] = val; // the length prefix
          }
          if (outcome(b) === 'ok') ok++;
          else coded++;
        },
      ),
      { numRuns: 4000, seed: 1234 },
    );
    expect(ok + coded).toBe(4000);
    expect(coded).toBeGreaterThan(0);
  });

  it('the file reader (pread) agrees with the in-memory reader on mutated files', () => {
    const f = path.join(dir, 'fuzz-file.safetensors');
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (si, pos, val) => {
        const b = Uint8Array.from(seeds[si % seeds.length]!);
        b[pos % b.length] = val;
        fs.writeFileSync(f, b);
        let mem: string, file: string;
        try { parseSafetensorsBytes(b, f); mem = 'ok'; } catch (e) { mem = (e as GeoEditError).code + ':' + (e as Error).message; }
        try { readSafetensorsHeaderSync(f); file = 'ok'; } catch (e) { file = (e as GeoEditError).code + ':' + (e as Error).message; }
        expect(file).toBe(mem);
      }),
      { numRuns: 300, seed: 99 },
    );
  });
});
