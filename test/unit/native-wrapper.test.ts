// lib/native is the only way into the addon: nothing else in lib/ loads it, native errors are
// mapped once (code + details), and async failures carry the caller's stack.
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { writeSafetensors } from '../../lib/safetensors';
import { mapNativeError, callSite } from '../../lib/native';
import { GeoEditError } from '../../lib/errors';
import { editTensor } from '../../lib/edit';
import { analyzeCheckpoint } from '../../lib/checkpoint';

const LIB = path.resolve(__dirname, '..', '..', 'lib');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('lib/native', () => {
  it('is the only module that loads the addon or names loadNative', () => {
    const offenders = tsFiles(LIB).filter((f) => !f.startsWith(path.join(LIB, 'native') + path.sep))
      .filter((f) => /\bloadNative\b|\.node['"]|require\(\s*f\s*\)/.test(fs.readFileSync(f, 'utf8')));
    expect(offenders.map((f) => path.relative(LIB, f))).toEqual([]);
  });

  it('types exactly what native/binding/EXPORTS.md lists (the private interface of the .node)', () => {
    const md = fs.readFileSync(path.join(LIB, '..', 'native', 'binding', 'EXPORTS.md'), 'utf8');
    const documented = [...md.matchAll(/^### `([A-Za-z_][A-Za-z0-9_]*)\(/gm)].map((m) => m[1]!).sort();
    const src = fs.readFileSync(path.join(LIB, 'native', 'addon.ts'), 'utf8');
    const body = src.slice(src.indexOf('export interface NativeAddon {'), src.indexOf('\n}\n', src.indexOf('export interface NativeAddon {')));
    const typed = [...body.matchAll(/^  ([A-Za-z_][A-Za-z0-9_]*)\(/gm)].map((m) => m[1]!).sort();
    expect(documented.length).toBeGreaterThan(10);
    expect(typed).toEqual(documented);
  });

  it('maps a coded native error once: GeoEditError with code, message and details; TypeError stays TypeError', () => {
    const e = Object.assign(new Error('tensor x row 3: NaN'), { code: 'ERR_NON_FINITE', details: { tensor: 'x', row: 3 } });
    const m = mapNativeError(e);
    expect(m).toBeInstanceOf(GeoEditError);
    expect(m).toMatchObject({ code: 'ERR_NON_FINITE', message: 'tensor x row 3: NaN', details: { tensor: 'x', row: 3 } });
    const t = Object.assign(new TypeError('bad'), { code: 'ERR_INVALID_ARG_TYPE' });
    expect(mapNativeError(t)).toBe(t);
    const plain = new Error('plain');
    expect(mapNativeError(plain)).toBe(plain);
    const site = callSite();
    expect(mapNativeError(Object.assign(new Error('z'), { code: 'ERR_IO' }), site).stack).toContain('native-wrapper.test.ts');
  });

  it('an async native failure reports the stack of the caller line', async () => {
    const t = (v: number) => ({ dtype: 'f32' as const, shape: [2, 3], data: new Float32Array(6).fill(v) });
    const nan = t(1);
    nan.data[4] = NaN;
    const err = await editTensor({ base: t(0), old: t(1), new: nan }).catch((e) => e);
    expect(err).toBeInstanceOf(GeoEditError);
    expect(err.code).toBe('ERR_NON_FINITE');
    expect(err.stack.split('\n')[0]).toBe(`GeoEditError: ${err.message}`);
    expect(err.stack.split('\n')[1], 'the first frame is the caller').toContain('native-wrapper.test.ts');
  });

  it('a job whose native step fails after awaiting still points at the caller (the entry point captured the site)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-native-'));
    try {
      const write = async (name: string, v: number, nanAt = -1) => {
        const data = new Float32Array(6).fill(v);
        if (nanAt >= 0) data[nanAt] = NaN;
        const f = path.join(dir, `${name}.safetensors`);
        await writeSafetensors(f, [{ name: 'w', dtype: 'F32', shape: [2, 3], data }]);
        return f;
      };
      const io = { base: await write('base', 0), old: await write('old', 1), new: await write('new', 2, 4) };
      const err = await analyzeCheckpoint(io, { hash: false }).catch((e) => e);
      expect(err).toBeInstanceOf(GeoEditError);
      expect(err.code).toBe('ERR_NON_FINITE');
      expect(err.stack.split('\n')[1], 'the first frame is the caller').toContain('native-wrapper.test.ts');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
