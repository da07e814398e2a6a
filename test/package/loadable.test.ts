// Optional peer check: the official safetensors library (Python) loads what `geoedit edit` writes.
// Runs when a python with `safetensors` is found (GEOEDIT_PYTHON, else python3); skips otherwise.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { editCheckpoint, openCheckpoint } from '../../lib/checkpoint';
import { readTensor, parseSafetensorsBytes } from '../../lib/safetensors';
import { GeoEditError } from '../../lib/errors';
import fc from 'fast-check';
import { llamaSpecs, makeTriple } from '../support/ckpt';
import { REAL, haveReal } from '../support/paths';

const PY = process.env.GEOEDIT_PYTHON ?? 'python3';
const probe = spawnSync(PY, ['-c', 'import safetensors; print(safetensors.__version__)'], { encoding: 'utf8' });
const havePy = probe.status === 0;
if (!havePy) console.warn(`skipping the safetensors (Python) peer check: '${PY}' cannot import safetensors (set GEOEDIT_PYTHON)`);

const SCRIPT = `
import sys, json, os, hashlib, safetensors
out = {}
for f in sys.argv[1:]:
    for name, t in safetensors.deserialize(open(f, 'rb').read()):
        out[name] = {'dtype': t['dtype'], 'shape': t['shape'], 'sha': hashlib.sha256(bytes(t['data'])).hexdigest()}
print(json.dumps(out))
`;

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-py-')); });
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

describe.skipIf(!havePy)('the official safetensors library loads the output', () => {
  it('single file and sharded outputs: same tensors, dtypes, shapes and bytes as our reader', async () => {
    const tri = await makeTriple(path.join(dir, 'in'), llamaSpecs(2));
    for (const [name, opts] of [['one', {}], ['sharded', { maxShardSize: 2500 }]] as const) {
      const out = path.join(dir, name);
      await editCheckpoint({ ...tri, out }, { ...opts, hash: false });
      const ck = openCheckpoint(out);
      const r = spawnSync(PY, ['-c', SCRIPT, ...ck.files.map((f) => f.path)], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const ref = JSON.parse(r.stdout) as Record<string, { dtype: string; shape: number[]; sha: string }>;
      expect(Object.keys(ref).sort()).toEqual(ck.tensors.map((t) => t.name).sort());
      const { createHash } = await import('node:crypto');
      for (const t of ck.tensors) {
        const mine = await readTensor(t.file, t.name);
        const bytes = Buffer.from(mine.data.buffer, mine.data.byteOffset, mine.data.byteLength);
        expect(ref[t.name]!.dtype.toUpperCase()).toBe(t.dtype);
        expect(ref[t.name]!.shape).toEqual(t.shape);
        expect(ref[t.name]!.sha).toBe(createHash('sha256').update(bytes).digest('hex'));
      }
    }
  });
});

const ACCEPTS = `
import sys, json, safetensors
res = {}
for f in sys.argv[1:]:
    try:
        safetensors.deserialize(open(f, 'rb').read()); res[f] = True
    except Exception:
        res[f] = False
print(json.dumps(res))
`;

describe.skipIf(!havePy || !haveReal)('differential fuzzing against the official safetensors reader', () => {
  it('mutated headers: our validator accepts exactly what the reference accepts (duplicate names aside)', () => {
    const seeds = [
      fs.readFileSync(path.join(REAL, 'CoffeeVampir3__Model-Saving-Test-Repo', 'model.safetensors')),
      fs.readFileSync(path.join(REAL, 'FluxML__SafeTensors.jl', 'test', 'non_sharded', 'model.with_metadata.safetensors')),
    ];
    const alphabet = '{}[],:"0123456789-.eE \\u';
    const files: string[] = [];
    const ours = new Map<string, boolean | 'dup'>();
    const d = path.join(dir, 'diff');
    fs.mkdirSync(d);
    fc.assert(fc.property(fc.nat(), fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 3 }), (si, muts) => {
      let b = Buffer.from(seeds[si % seeds.length]!);
      for (const [pos0, v, kind] of muts) {
        const hl = Number(b.readBigUInt64LE(0));
        const pos = 8 + (pos0 % Math.max(1, Math.min(hl, b.length - 8)));
        if (kind === 0) b[pos] = v & 255;
        else if (kind === 1) b[pos] = alphabet.charCodeAt(v % alphabet.length);
        else if (kind === 2) b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + 1)]);
        else b = Buffer.concat([b.subarray(0, pos), Buffer.from([alphabet.charCodeAt(v % alphabet.length)]), b.subarray(pos)]);
      }
      const f = path.join(d, `m${files.length}.safetensors`);
      fs.writeFileSync(f, b);
      files.push(f);
      try {
        parseSafetensorsBytes(new Uint8Array(b));
        ours.set(f, true);
      } catch (e) {
        expect(e).toBeInstanceOf(GeoEditError);
        ours.set(f, /duplicate tensor name/.test((e as Error).message) ? 'dup' : false);
      }
    }), { numRuns: 1500, seed: 2026 });
    const r = spawnSync(PY, ['-c', ACCEPTS, ...files], { encoding: 'utf8', maxBuffer: 32 << 20 });
    expect(r.status, r.stderr).toBe(0);
    const ref = JSON.parse(r.stdout) as Record<string, boolean>;
    const mismatches = files.filter((f) => ours.get(f) !== 'dup' && ours.get(f) !== ref[f]);
    expect(mismatches).toEqual([]);
    expect(files.filter((f) => ref[f]).length).toBeGreaterThan(0);
    expect(files.filter((f) => !ref[f]).length).toBeGreaterThan(0);
  });
});
