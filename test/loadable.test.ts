// Optional peer check: the official safetensors library (Python) loads what `geoedit edit` writes.
// Runs when a python with `safetensors` is found (GEOEDIT_PYTHON, else python3); skips otherwise.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { editCheckpoint, openCheckpoint } from '../lib/checkpoint';
import { readTensor } from '../lib/safetensors';
import { llamaSpecs, makeTriple } from './helpers/ckpt';

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
