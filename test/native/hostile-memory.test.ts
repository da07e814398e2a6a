// Inputs that change or vanish under an edit (issue 14 class 6): a coded error or a correct
// result, never a signal. Each case runs in a child process (test/support/fixtures/hostile-child.cjs),
// so a crash shows up as a failed test, not as a dead test runner.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { editTensor, editTensorSync } from '../../lib/index';
import { loadNative, loadNativeFrom, packageRoot, type NativeSpec } from '../../lib/native';

const child = path.join(__dirname, '..', 'support', 'fixtures', 'hostile-child.cjs');
let addonPath = '';
let tmp = '';
beforeAll(() => {
  addonPath = loadNativeFrom(packageRoot()).path;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-hostile-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string> = {}, nodeArgs: string[] = []): { status: number | null; signal: string | null; out: Record<string, unknown> } {
  const dir = fs.mkdtempSync(path.join(tmp, 'case-'));
  const r = spawnSync(process.execPath, [...nodeArgs, child, ...args.map((a) => (a === 'DIR' ? dir : a))], {
    env: { ...process.env, GEOEDIT_ADDON: addonPath, ...env }, encoding: 'utf8', timeout: 120_000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return { status: r.status, signal: r.signal, out: line ? JSON.parse(line) : { stderr: r.stderr } };
}

describe('an input file that changes under the default (mmap) path', () => {
  it('shrunk after it was opened: ERR_IO naming file and tensor', () => {
    const r = run(['truncate-before', 'DIR']);
    expect(r.signal).toBeNull();
    expect(r.out).toMatchObject({ outcome: 'error', code: 'ERR_IO', details: { tensor: 'model.w', file: expect.stringMatching(/old\.bin$/) } });
  });

  it('shrunk while a block of it is mapped (SIGBUS in the reading thread): ERR_IO, not a signal', () => {
    const r = run(['truncate-mapped', 'DIR'], { GEOEDIT_TEST_TRUNCATE_MAPPED: '1' });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.out).toMatchObject({ outcome: 'error', code: 'ERR_IO', message: expect.stringContaining('shrank while being read'), details: { tensor: 'model.w' } });
  });

  it('hashFiles (mapped windows): a file shrunk while a window of it is mapped, or shorter than asked, is ERR_IO naming it', () => {
    const a = run(['hash-truncate-mapped', 'DIR'], { GEOEDIT_TEST_TRUNCATE_MAPPED: '1' });
    expect(a.signal).toBeNull();
    expect(a.out).toMatchObject({ outcome: 'error', code: 'ERR_IO', message: expect.stringContaining('shrank while being hashed'), details: { file: expect.stringMatching(/base\.bin$/) } });
    const b = run(['hash-truncated', 'DIR']);
    expect(b.out).toMatchObject({ outcome: 'error', code: 'ERR_IO', message: expect.stringContaining('unexpected end of file while hashing'), details: { file: expect.stringMatching(/base\.bin$/) } });
  });

  it.each(['truncate-during', 'rewrite-during'])('%s the stream: ERR_IO naming the file', (mode) => {
    const r = run([mode, 'DIR']);
    expect(r.signal).toBeNull();
    // The change lands after the first block (changedAt > 0) and before the last.
    expect(r.out.changedAt as number).toBeGreaterThan(0);
    expect(r.out).toMatchObject({ outcome: 'error', code: 'ERR_IO', details: { tensor: 'model.w', file: expect.stringMatching(/new\.bin$/) } });
  });
});

describe('an async edit whose buffers are transferred away and collected (--expose-gc)', () => {
  it('with the transfer guard lib/ installs: the same bytes as editSync, written to outData', () => {
    const r = run(['detach', 'guard'], {}, ['--expose-gc']);
    expect(r.signal).toBeNull();
    expect(r.out).toMatchObject({ fresh: { outcome: 'ok', same: true }, outData: { outcome: 'ok', same: true, outIsOutData: true } });
  });

  it('without it (the addon used directly): inputs copied, same bytes; a detached outData is a coded error', () => {
    const r = run(['detach'], {}, ['--expose-gc']);
    expect(r.signal).toBeNull();
    expect(r.out).toMatchObject({ fresh: { outcome: 'ok', same: true }, outData: { outcome: 'error', code: 'ERR_DATA_LENGTH' } });
  });
});

describe('SharedArrayBuffer-backed inputs and outputs', () => {
  const rows = 8, cols = 16, n = rows * cols;
  const fill = (a: Float32Array, k: number) => { for (let i = 0; i < n; i++) a[i] = Math.sin(i * k + 1) * 0.1; return a; };
  const shared = (k: number) => fill(new Float32Array(new SharedArrayBuffer(n * 4)), k);
  const plain = (k: number) => fill(new Float32Array(n), k);
  const spec = (base: Float32Array, old: Float32Array, nw: Float32Array): NativeSpec => ({
    rows, cols, base, baseDtype: 'f32', old, oldDtype: 'f32', new: nw, newDtype: 'f32', outDtype: 'f32', wantOut: true, threads: 1, params: {},
  });

  it('edit the same bytes as plain buffers, sync and async, in place into a shared outData', async () => {
    const ref = loadNative().editSync(spec(plain(1), plain(2), plain(3)));
    const a = loadNative().editSync(spec(shared(1), shared(2), shared(3)));
    expect(Buffer.from(a.out!.buffer)).toEqual(Buffer.from(ref.out!.buffer));
    const out = new Float32Array(new SharedArrayBuffer(n * 4));
    const b = await loadNative().edit({ ...spec(shared(1), shared(2), shared(3)), outData: out });
    expect(b.out).toBe(out);
    expect(Buffer.from(out.buffer as ArrayBuffer)).toEqual(Buffer.from(ref.out!.buffer));
    const t = (d: Float32Array) => ({ dtype: 'f32' as const, shape: [rows, cols], data: d });
    const pub = await editTensor({ base: t(shared(1)), old: t(shared(2)), new: t(shared(3)) });
    expect(Buffer.from(pub.out.data.buffer, pub.out.data.byteOffset, pub.out.data.byteLength)).toEqual(Buffer.from(ref.out!.buffer));
    expect(() => editTensorSync({ base: t(shared(1)), old: t(shared(2)), new: t(shared(3)) })).not.toThrow();
  });
});
