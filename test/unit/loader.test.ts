// The addon loader: search order, exact names (a CUDA plugin is never taken for the addon), and
// an ERR_NATIVE_LOAD message that lists every path tried and says what to do next.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADDON_NAPI_VERSION, addonCandidates, loadNativeFrom, packageRoot } from '../../lib/native';
import { GeoEditError } from '../../lib/errors';

const tuple = `${process.platform}-${process.arch}`;
let tmp: string;
let realAddon: string | undefined;

function mk(...parts: string[]): string {
  const d = path.join(tmp, ...parts);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

function loadError(root: string, env: Record<string, string | undefined> = {}): GeoEditError {
  try {
    loadNativeFrom(root, { env });
  } catch (e) {
    expect(e).toBeInstanceOf(GeoEditError);
    return e as GeoEditError;
  }
  throw new Error(`expected loading from ${root} to fail`);
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-loader-'));
  const built = path.join(packageRoot(), 'build', 'Release', 'geoedit.node');
  if (fs.existsSync(built)) realAddon = built;
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('loader errors', () => {
  it('an empty folder: every path tried, platform, versions, what to do next', () => {
    const root = mk('empty');
    const e = loadError(root);
    expect(e.code).toBe('ERR_NATIVE_LOAD');
    const m = e.message;
    expect(m).toContain(`${path.join(root, 'build', 'Release', 'geoedit.node')}: not found`);
    expect(m).toContain(`${path.join(root, 'build', 'Debug', 'geoedit.node')}: not found`);
    expect(m).toContain(`${path.join(root, 'prebuilds')}${path.sep}: not found`);
    expect(m).toContain(`Platform ${tuple}`);
    expect(m).toContain(`Node ${process.version}`);
    expect(m).toContain(`N-API ${process.versions.napi}`);
    expect(m).toContain('What to do next');
    expect(m).toContain('GEOEDIT_BUILD_FROM_SOURCE=1 npm rebuild geoedit');
    expect(m).toContain(`No binary for ${tuple}`);
    expect(e.details?.tried).toHaveLength(3);
  });

  it('PREBUILDS_ONLY skips build/ and says so', () => {
    const root = mk('prebuilds-only');
    const e = loadError(root, { PREBUILDS_ONLY: '1' });
    expect(e.message).toContain(`${path.join(root, 'build')}${path.sep}: skipped: PREBUILDS_ONLY is set`);
    expect(e.message).not.toContain('Release');
    expect(e.message).toContain('PREBUILDS_ONLY=1.');
    // Listed in search order: build/ (skipped) before prebuilds/.
    expect(e.message.indexOf('skipped: PREBUILDS_ONLY')).toBeLessThan(e.message.indexOf(`${path.join(root, 'prebuilds')}${path.sep}: not found`));
  });

  it('a corrupt binary: its load error is quoted, and the hint says a binary was found', () => {
    const root = mk('corrupt');
    const dir = mk('corrupt', 'prebuilds', tuple);
    fs.writeFileSync(path.join(dir, 'geoedit.napi.glibc.node'), 'not an ELF file');
    fs.writeFileSync(path.join(dir, 'geoedit.napi.node'), 'not an ELF file either');
    const e = loadError(root, { PREBUILDS_ONLY: '1' });
    expect(e.message).toMatch(/geoedit\.napi\.(glibc\.)?node: failed to load: .*(invalid ELF header|file too short|not a valid)/);
    expect(e.message).toContain('A binary was found but did not load');
  });

  it('a folder for another platform only: says which folders exist', () => {
    const root = mk('other-platform');
    mk('other-platform', 'prebuilds', 'sunos-mips');
    const e = loadError(root, { PREBUILDS_ONLY: '1' });
    expect(e.message).toContain(`no folder for ${tuple} (has: sunos-mips)`);
  });

  it('files that are not ours, or not for this libc, are never tried', () => {
    const root = mk('not-ours');
    const dir = mk('not-ours', 'prebuilds', tuple);
    const other = process.platform === 'linux' && !fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc';
    for (const f of [`geoedit.napi.${other}.node`, 'geoedit_cuda.node', 'geoedit-cuda.napi.glibc.node', 'geoedit.cuda.node']) {
      fs.writeFileSync(path.join(dir, f), 'x');
    }
    mk('not-ours', 'prebuilds', tuple, 'cuda');
    fs.writeFileSync(path.join(dir, 'cuda', 'geoedit.napi.glibc.node'), 'x');
    const c = addonCandidates(root, { env: { PREBUILDS_ONLY: '1' } });
    expect(c.files).toEqual([]);
    const e = loadError(root, { PREBUILDS_ONLY: '1' });
    if (process.platform === 'linux') expect(e.message).toContain(`geoedit.napi.${other}.node: does not fit this process`);
    expect(e.message).toContain('geoedit.cuda.node: does not fit this process');
    expect(e.message).not.toContain('geoedit_cuda.node');
    expect(e.message).not.toContain('A binary was found but did not load');
  });

  it('GEOEDIT_ADDON: only that file is tried, and the hint names the variable', () => {
    const root = mk('env');
    const e = loadError(root, { GEOEDIT_ADDON: path.join(tmp, 'nowhere', 'geoedit.node') });
    expect(e.message).toContain(`${path.join(tmp, 'nowhere', 'geoedit.node')}: not found`);
    expect(e.message).toContain('GEOEDIT_ADDON is set');
    expect(e.details?.tried).toHaveLength(1);
  });
});

describe('loader search', () => {
  it('skips a broken build/Release and loads the prebuild, ignoring a CUDA plugin beside it', (ctx) => {
    if (!realAddon) ctx.skip('build/Release/geoedit.node is missing: run `npm run build:native` first');
    const root = mk('fallthrough');
    mk('fallthrough', 'build', 'Release');
    fs.writeFileSync(path.join(root, 'build', 'Release', 'geoedit.node'), 'broken');
    const dir = mk('fallthrough', 'prebuilds', tuple);
    const want = path.join(dir, 'geoedit.napi.node');
    fs.copyFileSync(realAddon!, want);
    fs.writeFileSync(path.join(dir, 'geoedit_cuda.node'), 'a CUDA plugin would live here');
    const r = loadNativeFrom(root, { env: {} });
    expect(r.path).toBe(want);
    expect(typeof r.addon.info().version).toBe('string');
  });

  it('prefers the libc-tagged prebuild over the untagged one (node-gyp-build specificity)', () => {
    if (process.platform !== 'linux') return;
    const root = mk('rank');
    const dir = mk('rank', 'prebuilds', tuple);
    const libc = fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc';
    fs.writeFileSync(path.join(dir, 'geoedit.napi.node'), 'x');
    fs.writeFileSync(path.join(dir, `geoedit.napi.${libc}.node`), 'x');
    const c = addonCandidates(root, { env: {} });
    expect(c.files.slice(2).map((f) => path.basename(f))).toEqual([`geoedit.napi.${libc}.node`, 'geoedit.napi.node']);
  });
});

describe('N-API version', () => {
  it('the loader, CMakeLists.txt and package.json (cmake-js) name the same N-API version', () => {
    const root = packageRoot();
    const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
    expect(cmake).toContain(`NAPI_VERSION=${ADDON_NAPI_VERSION}`);
    const pj = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { binary?: { napi_versions?: number[] } };
    expect(pj.binary?.napi_versions).toEqual([ADDON_NAPI_VERSION]);
    expect(Number(process.versions.napi)).toBeGreaterThanOrEqual(ADDON_NAPI_VERSION);
  });
});
