// The statistics file of option `preserve` (lib/preserve/file.ts) and the option's validation
// (lib/preserve/option.ts): names, forms, widths, shared entries, the augmented form, rho/mu, the
// CLI flags that fill preserve.file/.rho/.mu, and the one place the defaults live.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { planStatistics, loadSource, statisticNames, type WeightInfo } from '../../lib/preserve/file';
import { weightInfos } from '../../lib/preserve/plan';
import { PRESERVE_DEFAULTS, checkPreserveFileOption, checkPreserveTensorOption, checkRhoMu } from '../../lib/preserve/option';
import { optionSpec, OPTIONS } from '../../lib/options';
import { toOptions } from '../../lib/cli/common';
import { flagsFor } from '../../lib/cli/flags';
import { GeoEditError } from '../../lib/errors';
import { writeStats } from '../support/preserve-fixture';

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-pres-unit-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const eye = (d: number) => Float32Array.from({ length: d * d }, (_, k) => (k % (d + 1) === 0 ? 1 : 0));
const model = (): Map<string, WeightInfo> => weightInfos([
  { name: 'a.weight', shape: [4, 3] }, { name: 'a.bias', shape: [4] }, { name: 'b.weight', shape: [5, 3] }, { name: 'c.weight', shape: [2, 2, 2] },
]);
const opt = (file: string) => ({ file, rho: 0.3, mu: 10 });

describe('the statistics file', () => {
  it('plans own, shared and augmented statistics; the bias is found beside its weight', async () => {
    const f = await writeStats(path.join(dir, 'ok.safetensors'), [
      { name: 'a.weight:cov', dtype: 'F32', shape: [4, 4], data: eye(4) },
      { name: 'c.weight:basis', dtype: 'F32', shape: [1, 4], data: Float32Array.of(1, 0, 0, 0) },
    ], { 'b.weight': 'c.weight' });
    // b [5, 3] cannot share c's width 4 …
    expect(() => planStatistics(opt(f), model(), true)).toThrow(expect.objectContaining({ code: 'ERR_SHAPE_MISMATCH', details: expect.objectContaining({ tensor: 'b.weight' }) }));
    const f2 = await writeStats(path.join(dir, 'ok2.safetensors'), [
      { name: 'a.weight:cov', dtype: 'F32', shape: [4, 4], data: eye(4) },
      { name: 'a.weight:edit_keys', dtype: 'F32', shape: [7, 4], data: new Float32Array(28).fill(0.5) },
      { name: 'c.weight:basis', dtype: 'F32', shape: [1, 4], data: Float32Array.of(1, 0, 0, 0) },
    ], null);
    const p = planStatistics(opt(f2), model(), true);
    expect(p.byWeight.get('a.weight')).toMatchObject({ augmented: true, bias: 'a.bias', shared: false });
    expect(p.byWeight.get('c.weight')).toMatchObject({ augmented: false, source: { form: 'basis', dim: 4 } });
    expect([...statisticNames(f2)].sort()).toEqual(['a.weight', 'c.weight']);
    // Values are read one statistic at a time, as the binding takes them.
    const fd = fs.openSync(f2, 'r');
    const ns = loadSource(p, p.sources.get('a.weight')!, fd);
    fs.closeSync(fd);
    expect(ns.covShape).toEqual([4, 4]);
    expect(ns.editKeysShape).toEqual([7, 4]);
    expect(Array.from(ns.cov!)).toEqual(Array.from(eye(4)));
    expect(ns).toMatchObject({ rho: 0.3, mu: 10, source: f2 });
  });

  it('non-strict planning (adapters without a base): names not in the model are returned, not thrown', async () => {
    const f = await writeStats(path.join(dir, 'extra.safetensors'), [{ name: 'zz.weight:cov', dtype: 'F32', shape: [3, 3], data: eye(3) }], { 'yy.weight': 'zz.weight' });
    expect(planStatistics(opt(f), model(), false).unused.sort()).toEqual(['yy.weight', 'zz.weight']);
    expect(() => planStatistics(opt(f), model(), true)).toThrow(expect.objectContaining({ code: 'ERR_MISSING_TENSOR' }));
  });

  it('refuses non-F32, non-2-D and badly named statistics, naming the tensor', async () => {
    const bad = async (name: string, shape: number[], dtype: 'F32' | 'F16' = 'F32') => {
      const n = shape.reduce((a, b) => a * b, 1);
      const f = await writeStats(path.join(dir, `b-${name.replace(/\W/g, '_')}-${dtype}.safetensors`), [{ name, dtype, shape, data: dtype === 'F32' ? new Float32Array(n) : new Uint16Array(n) }], null);
      try { planStatistics(opt(f), model(), true); } catch (e) { return e as GeoEditError; }
      throw new Error('no error');
    };
    expect(await bad('a.weight:cov', [3, 3], 'F16')).toMatchObject({ code: 'ERR_BAD_STATISTICS', details: { tensor: 'a.weight:cov' } });
    expect(await bad('a.weight:cov', [9])).toMatchObject({ code: 'ERR_SHAPE_MISMATCH', details: { tensor: 'a.weight:cov' } });
    expect(await bad('a.weight', [3, 3])).toMatchObject({ code: 'ERR_BAD_STATISTICS', details: { tensor: 'a.weight' } });
    expect(await bad('a.weight:cov', [3, 4])).toMatchObject({ code: 'ERR_SHAPE_MISMATCH', details: { tensor: 'a.weight' } });
    expect(await bad('a.weight:edit_cov', [3, 3])).toMatchObject({ code: 'ERR_BAD_STATISTICS', details: { tensor: 'a.weight' } });
  });
});

describe('option preserve', () => {
  it('one table entry, the defaults in one place (the --preserve-rho / --preserve-mu entries)', () => {
    expect(optionSpec('preserve')).toMatchObject({ type: 'structured', cli: { flag: 'preserve', sets: 'file' } });
    const cli = (OPTIONS as readonly { cli?: { flag: string; of?: string; sets?: string }; default?: unknown }[]).filter((o) => o.cli?.of === 'preserve');
    expect(cli.map((o) => [o.cli!.flag, o.cli!.sets, o.default])).toEqual([['preserve-rho', 'rho', PRESERVE_DEFAULTS.rho], ['preserve-mu', 'mu', PRESERVE_DEFAULTS.mu]]);
  });

  it('the file form: rho > 0, mu >= 0, known keys only', () => {
    expect(checkPreserveFileOption({ file: 'x' }, 'f')).toEqual({ file: 'x', ...PRESERVE_DEFAULTS });
    expect(checkPreserveFileOption(undefined, 'f')).toBeNull();
    for (const [v, code] of [[{ file: 'x', rho: 0 }, 'ERR_INVALID_OPTION'], [{ file: 'x', rho: -1 }, 'ERR_INVALID_OPTION'], [{ file: 'x', mu: -0.1 }, 'ERR_INVALID_OPTION'], [{ file: 'x', rho: Infinity }, 'ERR_INVALID_OPTION'], [{ file: 'x', rho: '1' }, 'ERR_INVALID_ARG_TYPE'], [{ file: '' }, 'ERR_INVALID_ARG_TYPE'], ['x', 'ERR_INVALID_ARG_TYPE'], [{ file: 'x', cov: 1 }, 'ERR_UNKNOWN_OPTION']] as const) {
      expect(() => checkPreserveFileOption(v, 'f')).toThrow(expect.objectContaining({ code }));
    }
    expect(checkRhoMu({ mu: 0 }, 'f')).toEqual({ rho: PRESERVE_DEFAULTS.rho, mu: 0 });
  });

  it('the tensor form: f32 2-D tensors, to the binding\'s shape', () => {
    const t = (shape: number[]) => ({ dtype: 'f32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    expect(checkPreserveTensorOption({ cov: t([3, 3]), editCov: t([3, 3]), mu: 2 }, 'f', 'w')).toMatchObject({ covShape: [3, 3], editCovShape: [3, 3], rho: PRESERVE_DEFAULTS.rho, mu: 2, tensor: 'w' });
    expect(checkPreserveTensorOption({ basis: t([1, 3]) }, 'f')).toMatchObject({ basisShape: [1, 3] });
    expect(() => checkPreserveTensorOption({ basis: t([1, 3]), rho: 1 }, 'f')).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_OPTION' }));
    expect(() => checkPreserveTensorOption({ cov: { dtype: 'f16', shape: [3, 3], data: new Uint16Array(9) } }, 'f')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => checkPreserveTensorOption({ cov: { dtype: 'f32', shape: [3, 3], data: new Float32Array(8) } }, 'f')).toThrow(expect.objectContaining({ code: 'ERR_DATA_LENGTH' }));
  });

  it('CLI: --preserve, --preserve-rho, --preserve-mu fill one option; the knobs need the file', () => {
    const flags = flagsFor('edit');
    expect(toOptions({ preserve: 's.safetensors', 'preserve-rho': '0.5', 'preserve-mu': '0' }, flags)).toMatchObject({ preserve: { file: 's.safetensors', rho: 0.5, mu: 0 } });
    expect(() => toOptions({ 'preserve-rho': '0.5' }, flags)).toThrow(/--preserve FILE/);
    expect(() => toOptions({ preserve: 's', 'preserve-mu': 'x' }, flags)).toThrow(/Expected a number for --preserve-mu/);
    expect(flagsFor('analyze').some((f) => f.name === 'preserve-rho')).toBe(true);
  });
});
