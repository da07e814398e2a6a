// Issue 14 class 10, library side: every message the library throws is made safe like CLI output
// (lib/text.ts safeText), so a tensor or file name from an input cannot forge lines or rewrite a
// terminal in a log that prints `e.message`; the raw values stay in `details`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { editCheckpoint, inspectCheckpoint } from '../../lib';
import { GeoEditError } from '../../lib/errors';
import { safeText } from '../../lib/text';
import { writeSafetensors } from '../../lib/safetensors';
import { tmpDir } from './support';

const EVIL = 'model.w\u001b[31m\nERROR forged line\r\u202egnp.exe\u2066';
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|\n/;

async function caught(p: Promise<unknown>): Promise<GeoEditError> {
  try {
    await p;
  } catch (e) {
    return e as GeoEditError;
  }
  throw new Error('expected a rejection');
}

describe('hostile: library error messages are escaped (class 10)', () => {
  it('a tensor name with ESC, CR/LF and bidi controls: escaped in the message, raw in details (JS-side and core-side errors)', async () => {
    const root = tmpDir('h10m');
    const f32 = (name: string) => ({ name, dtype: 'F32' as const, shape: [2, 2], data: new Float32Array(4) });
    await writeSafetensors(path.join(root, 'evil.safetensors'), [f32(EVIL)]);
    await writeSafetensors(path.join(root, 'plain.safetensors'), [f32('model.w')]);
    // JS side: the tensor is missing from old.
    const e1 = await caught(editCheckpoint({ base: path.join(root, 'evil.safetensors'), old: path.join(root, 'plain.safetensors'), new: path.join(root, 'evil.safetensors'), out: path.join(root, 'o') }));
    expect(e1.code).toBe('ERR_MISSING_TENSOR');
    expect(e1.message).not.toMatch(UNSAFE);
    expect(e1.message).toContain(safeText(EVIL));
    expect(JSON.stringify(e1.details)).toContain(JSON.stringify(EVIL).slice(1, -1));
    // Core side (the native header parser): an unknown dtype in the evil tensor's entry.
    const hdr = Buffer.from(JSON.stringify({ [EVIL]: { dtype: 'Q9', shape: [1], data_offsets: [0, 4] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hdr.length));
    fs.writeFileSync(path.join(root, 'bad.safetensors'), Buffer.concat([len, hdr, Buffer.alloc(4)]));
    const e2 = await caught(inspectCheckpoint(path.join(root, 'bad.safetensors')));
    expect(e2.code).toBe('ERR_BAD_SAFETENSORS');
    expect(e2.message).not.toMatch(UNSAFE);
  });

  it('a shard name with a newline in an index: the message names it escaped', async () => {
    const root = tmpDir('h10n');
    const dir = path.join(root, 'ck');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.w': 'a\nERROR forged.safetensors' } }));
    const e = await caught(inspectCheckpoint(dir));
    expect(e.code).toBe('ERR_NOT_FOUND');
    expect(e.message).not.toMatch(UNSAFE);
    expect(e.message).toContain('a\\x0aERROR forged.safetensors');
  });

  it('GeoEditError and coded TypeErrors escape what they are given; escaping twice changes nothing', () => {
    const e = new GeoEditError('ERR_IO', `x ${EVIL}`);
    expect(e.message).not.toMatch(UNSAFE);
    expect(safeText(e.message)).toBe(e.message);
  });
});
