// The fallback path of the tarball: its native sources build with cmake-js on a machine without
// a fitting prebuild. Own file (and own tarball), so that it runs beside test/package/package.test.ts.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { childEnv, makeSandboxBin, ok, packRepo, pkg, run, supported, writeConsumer } from '../support/pack';

let tmp = '';
let consumer = '';

beforeAll(() => {
  if (!supported) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-src-'));
  makeSandboxBin(path.join(tmp, 'bin'));
  const { tarball } = packRepo(tmp, false);
  // An empty project with the tarball and cmake-js (the optional peer a source build needs), offline.
  consumer = path.join(tmp, 'consumer');
  writeConsumer(consumer, tarball, ['cmake-js']);
  ok(run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], consumer, childEnv()), 'npm ci --offline (with cmake-js)');
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!supported)('the tarball, built from source', () => {
  it('GEOEDIT_BUILD_FROM_SOURCE=1: fails clearly without a compiler, builds and loads with one', () => {
    expect(fs.existsSync(path.join(consumer, 'node_modules', 'cmake-js', 'bin', 'cmake-js'))).toBe(true);
    const rebuild = ['rebuild', 'geoedit', '--foreground-scripts'];
    const bare = run('npm', rebuild, consumer, childEnv({ GEOEDIT_BUILD_FROM_SOURCE: '1' }));
    expect(bare.status).not.toBe(0);
    expect(bare.stdout + bare.stderr).toContain('geoedit: the source build failed');
    // The whole source build (core with three Eigen copies, addon, CUDA plugin when nvcc is there): minutes on a busy machine.
    const full = run('npm', rebuild, consumer, { ...childEnv({ GEOEDIT_BUILD_FROM_SOURCE: '1' }), PATH: process.env.PATH ?? '' }, 900_000);
    expect(full.status, full.stdout + full.stderr).toBe(0);
    expect(full.stdout).toContain('geoedit: built build/Release/geoedit.node');
    // The loader now takes the source build (build/Release before prebuilds/), and it works.
    const r = JSON.parse(ok(run('node', ['-e', `const g = require('geoedit');
      const t = (a) => ({ dtype: 'f32', shape: [1, 2], data: new Float32Array(a) });
      const out = g.editTensorSync({ base: t([1, 2]), old: t([1, 2]), new: t([3, 2]) }, { strategy: 'task-arithmetic' }).out.data;
      const i = g.info();
      console.log(JSON.stringify({ path: i.addonPath, version: i.version, out: Array.from(out) }));`], consumer, childEnv()), 'load the source build'));
    expect(r.out).toEqual([3, 2]);
    expect(r.path).toBe(path.join(fs.realpathSync(consumer), 'node_modules', 'geoedit', 'build', 'Release', 'geoedit.node'));
    expect(r.version).toBe(pkg.version);
  }, 1_200_000); // a whole source build (core with three Eigen copies, addon, and the CUDA plugin where nvcc is found): minutes on a loaded 2-core machine
});
