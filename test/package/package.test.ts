// The tarball as users get it: build the prebuild, `npm pack`, install the .tgz into an empty
// project OFFLINE (npm cache only), with PREBUILDS_ONLY=1 and a PATH that holds no compiler,
// cmake or make; then use it from ESM, CJS and TypeScript (tsc --strict, several module modes).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { childEnv, makeSandboxBin, ok, packRepo, pkg, prebuildName, repo, run, supported, tscJs, tuple, writeConsumer } from '../support/pack';

let tmp = '';
let sandboxBin = '';
let consumer = '';
let tarball = '';
let packedFiles: string[] = [];
let installOut = '';

const ESM = `
import geoedit, { editTensor, editTensorSync, analyzeTensor, info, GeoEditError, DEFAULTS } from 'geoedit';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const f = (a) => ({ dtype: 'f32', shape: [2, 3], data: new Float32Array(a) });
const base = f([1, 2, 3, 4, 5, 6]);
const r = await editTensor({ base, old: f([1.1, 2, 3, 4, 5, 6.5]), new: f([0.9, 2, 3, 4, 5.2, 6]) }, { strategy: 'task-arithmetic' });
const s = editTensorSync({ base, old: base, new: f([2, 2, 3, 4, 5, 6]) }, { strategy: 'task-arithmetic' });
const a = await analyzeTensor({ base, old: f([1.1, 2, 3, 4, 5, 6.5]), new: f([0.9, 2, 3, 4, 5.2, 6]) });
let code = null;
try { await editTensor({ base, old: f([1, 2, 3, 4, 5, 6]), new: { dtype: 'f32', shape: [3, 2], data: new Float32Array(6) } }); }
catch (e) { code = e instanceof GeoEditError ? e.code : 'not a GeoEditError: ' + e; }
const cjs = require('geoedit');
console.log(JSON.stringify({
  out: Array.from(r.out.data), sync0: s.out.data[0], rows: a.rows, code, version: info().version,
  sameClass: cjs.GeoEditError === GeoEditError, defaultHasEdit: typeof geoedit.editTensor, kappa: DEFAULTS.kappa,
}));
`;

const CJS = `
const { editTensor, info, GeoEditError } = require('geoedit');
const f = (a) => ({ dtype: 'f32', shape: [2, 3], data: new Float32Array(a) });
(async () => {
  const r = await editTensor({ base: f([1, 2, 3, 4, 5, 6]), old: f([1.1, 2, 3, 4, 5, 6.5]), new: f([0.9, 2, 3, 4, 5.2, 6]) }, { strategy: 'task-arithmetic' });
  let code = null;
  try { await editTensor({ base: f([1, 2, 3, 4, 5, 6]), old: f([1, 2, 3, 4, 5, 6]), new: f([1, 2, 3, 4, 5, 6]) }, { strategi: 'x' }); }
  catch (e) { code = e instanceof GeoEditError ? e.code : 'not a GeoEditError'; }
  console.log(JSON.stringify({ out: Array.from(r.out.data), code, version: info().version, resolved: require.resolve('geoedit') }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// Typed consumer: every export's result lands in a precisely typed variable; wrong calls must be
// rejected (an unused @ts-expect-error is itself an error, so `any` in the surface fails the build).
const TS_BODY = (importLine: string) => `${importLine}


type IsAny<T> = 0 extends 1 & T ? true : false;
type AnyKeys<T> = { [K in keyof T]-?: IsAny<T[K]> extends true ? K : never }[keyof T];
type NoAny<T> = [AnyKeys<T>] extends [never] ? true : false;
const noAnyInModule: NoAny<typeof g> = true;
// Every exported function: no parameter and no (awaited) return type is \`any\`.
type AnyIn<T extends readonly unknown[]> = true extends { [I in keyof T]: IsAny<T[I]> }[number] ? true : false;
type FnAny<F> = F extends (...a: infer P) => infer R ? (IsAny<Awaited<R>> extends true ? 'returns any' : AnyIn<P> extends true ? 'takes any' : never) : never;
type FnsWithAny = { [K in keyof typeof g]: FnAny<(typeof g)[K]> extends never ? never : [K, FnAny<(typeof g)[K]>] }[keyof typeof g];
const noAnyInFunctions: [FnsWithAny] extends [never] ? true : FnsWithAny = true;
const noAnyInResult: NoAny<EditResult> & NoAny<TensorStats> & NoAny<InfoResult> & NoAny<EditOptions> & NoAny<Tensor> & NoAny<EditInputs> & NoAny<RegionCounts> & NoAny<GeoEditError> = true;
const noAnyInParams: IsAny<Parameters<typeof editTensor>[0]> | IsAny<Parameters<typeof editTensor>[1]> | IsAny<Awaited<ReturnType<typeof analyzeTensor>>> = false;

const t = (data: number[]): Tensor => ({ dtype: 'f32', shape: [2, 2], data: new Float32Array(data) });
const inputs: EditInputs = { base: t([1, 2, 3, 4]), old: t([1.5, 2, 3, 4]), new: t([1, 2.5, 3, 4]) };
const opts: EditOptions = { strategy: 'geoedit', kappa: DEFAULTS.kappa, outDtype: 'f32', backend: 'cpu', threads: 1 };

async function main(): Promise<string> {
  const r: EditResult = await editTensor(inputs, opts);
  const out: Float32Array | Uint16Array = r.out.data;
  const dt: DType = r.out.dtype;
  const cos: Float64Array = r.stats.cos;
  const region: Uint8Array = r.stats.region;
  const counts: RegionCounts = r.stats.counts;
  const s: EditResult = editTensorSync(inputs);
  const st: TensorStats = await analyzeTensor(inputs, { preset: 'paper' });
  const i: InfoResult = info();
  const v: string = i.version;
  const addonPath: string = i.addonPath;
  const strat: Strategy = DEFAULTS.strategy;
  const paperKappa: number = PAPER_PRESET.kappa;
  const b: Backend = 'auto';
  let code: GeoEditErrorCode | 'none' = 'none';
  try {
    editTensorSync({ ...inputs, new: { dtype: 'f32', shape: [4], data: new Float32Array(4) } });
  } catch (e) {
    if (e instanceof GeoEditError) code = e.code;
  }

  return JSON.stringify({ out: Array.from(out), dt, cosLen: cos.length, regionLen: region.length, total: counts.orthogonal + counts.synergy + counts.conflict,
    sync: s.out.data.length, rows: st.rows, v, addonPath, strat, paperKappa, b, code });
}

// Compiled, never called: each line must be a type error.
function wrongCalls(): void {
  // @ts-expect-error: 'f64' is not a DType
  const badDtype: Tensor = { dtype: 'f64', shape: [1], data: new Float32Array(1) };
  // @ts-expect-error: inputs need base, old and new
  void editTensor({ base: inputs.base, old: inputs.old });
  // @ts-expect-error: unknown option
  void editTensor(inputs, { strategi: 'geoedit' });
  // @ts-expect-error: unknown strategy
  void editTensor(inputs, { strategy: 'ties' });
  // @ts-expect-error: editTensorSync is not a Promise
  const notPromise: Promise<EditResult> = editTensorSync(inputs);
  // @ts-expect-error: version is a string
  const badVersion: number = info().version;
  // @ts-expect-error: not an error code of the package
  const badCode: GeoEditErrorCode = 'ERR_NOPE';
  // @ts-expect-error: data must be a typed array
  const badData: Tensor = { dtype: 'f32', shape: [1], data: [1] };
  void [badDtype, notPromise, badVersion, badCode, badData];
}
void [wrongCalls, noAnyInModule, noAnyInFunctions, noAnyInResult, noAnyInParams];
main().then((s) => console.log(s), (e: unknown) => { console.error(e); process.exit(1); });
`;

const TS_NAMES = 'editTensor, editTensorSync, analyzeTensor, info, GeoEditError, DEFAULTS, PAPER_PRESET';
const TS_TYPES = 'Tensor, DType, EditInputs, EditOptions, EditResult, TensorStats, InfoResult, RegionCounts, Strategy, Backend, GeoEditErrorCode';

function tsconfig(module: string, moduleResolution: string, outDir: string, files: string[], skipLibCheck = false): string {
  return JSON.stringify({
    compilerOptions: { target: 'ES2022', module, moduleResolution, strict: true, lib: ['ES2022'], types: ['node'], typeRoots: [path.join(repo, 'node_modules', '@types')], outDir, skipLibCheck, noEmitOnError: true },
    files,
  }, null, 2);
}

beforeAll(() => {
  if (!supported) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-pack-'));
  sandboxBin = path.join(tmp, 'bin');
  makeSandboxBin(sandboxBin);

  // 1. The prebuild (incremental: a few seconds when build-prebuild/ is warm).
  ok(spawnSync(process.execPath, [path.join(repo, 'scripts', 'prebuild.js')], { cwd: repo, encoding: 'utf8', timeout: 240_000 }), 'scripts/prebuild.js');
  // 2. npm pack (of what `npm run build` left in dist/; see packRepo).
  ({ tarball, files: packedFiles } = packRepo(tmp, true));
  // 3. An empty project; the tarball installed offline, prebuilds only, no compiler on PATH.
  consumer = path.join(tmp, 'consumer');
  writeConsumer(consumer, tarball);
  const r = run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], consumer, childEnv({ PREBUILDS_ONLY: '1' }));
  installOut = ok(r, 'npm ci --offline (the tarball)') + r.stderr;
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!supported)('the tarball', () => {
  it('the sandbox PATH has node and npm but no compiler, cmake or make', () => {
    const r = run('sh', ['-c', 'for t in cc c++ gcc g++ clang clang++ cmake make ninja; do command -v $t && exit 1; done; command -v node && command -v npm'], tmp, childEnv());
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('holds the compiled JS, types, prebuild, native sources and the docs the README links to, and no tests, bench or build trees', () => {
    for (const f of ['package.json', 'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/esm/index.mjs', 'dist/esm/index.d.mts',
      `prebuilds/${tuple}/${prebuildName}`, 'native/binding/addon.cc', 'native/include/geoedit/geoedit.h', 'native/core/edit.cc',
      'CMakeLists.txt', 'scripts/install.js']) {
      expect(packedFiles, f).toContain(f);
    }
    if (fs.existsSync(path.join(repo, 'README.md'))) {
      expect(packedFiles).toContain('README.md');
      // Every docs/ page the README links to ships, so its links resolve in node_modules/geoedit too.
      const linked = [...fs.readFileSync(path.join(repo, 'README.md'), 'utf8').matchAll(/\]\((docs\/[^)#\s]+)/g)].map((m) => m[1]!);
      expect(linked.length).toBeGreaterThan(0);
      for (const d of new Set(linked)) expect(packedFiles, d).toContain(d);
    }
    const bad = packedFiles.filter((f) => /^(test|bench|build|build-[^/]*|node_modules|\.ci|lib|native\/test)\//.test(f) || f.endsWith('.tgz'));
    expect(bad).toEqual([]);
    // Every .node in the tarball is our addon under prebuilds/<tuple>/, or a CUDA plugin in a cuda/ subfolder.
    for (const f of packedFiles.filter((x) => x.endsWith('.node'))) expect(f).toMatch(/^prebuilds\/[^/]+\/(geoedit\.napi(\.[a-z0-9]+)*\.node|cuda\/.+)$/);
    if (packedFiles.some((f) => f.startsWith('bin/'))) expect(packedFiles).toContain('bin/geoedit.js');
  });

  it('the prebuild is stripped and portable (built with GEOEDIT_NATIVE_ARCH=OFF)', (ctx) => {
    const cache = fs.readFileSync(path.join(repo, 'build-prebuild', 'CMakeCache.txt'), 'utf8');
    expect(cache).toMatch(/GEOEDIT_NATIVE_ARCH:[A-Z]*=OFF/);
    const so = path.join(consumer, 'node_modules', 'geoedit', 'prebuilds', tuple, prebuildName);
    const r = spawnSync('readelf', ['-S', '-W', so], { encoding: 'utf8' });
    if (r.error) ctx.skip('readelf is not installed');
    expect(r.stdout).toContain('.dynsym');
    expect(r.stdout).not.toContain('.symtab');
    // Portable: only the per-ISA kernel objects hold AVX (VEX/EVEX) instructions, and none of
    // their AVX code is in a weak (COMDAT) symbol that the linker could pick for baseline callers.
    const objs: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (e.name.endsWith('.o')) objs.push(path.join(d, e.name));
      }
    };
    walk(path.join(repo, 'build-prebuild', 'CMakeFiles'));
    expect(objs.length).toBeGreaterThan(3);
    const avxFunctions = (o: string): Set<string> => {
      const d = spawnSync('objdump', ['-d', '--no-show-raw-insn', o], { encoding: 'utf8', maxBuffer: 256 << 20 });
      if (d.error) ctx.skip('objdump is not installed');
      const out = new Set<string>();
      let fn = '';
      for (const line of d.stdout.split('\n')) {
        const m = /^[0-9a-f]+ <(.*)>:$/.exec(line);
        if (m) fn = m[1]!;
        else if (/\tv[a-z0-9]+ |%[yz]mm|%k[0-7]\b/.test(line)) out.add(fn);
      }
      return out;
    };
    let kernelAvx = 0;
    for (const o of objs) {
      const f = avxFunctions(o);
      const isaObj = /(kernels|preserve_la)_(avx2|avx512)\.cc\.o$/.exec(o);
      if (!isaObj) {
        // Baseline objects may hold AVX only in GCC function-multiversioning clones
        // (target_clones: `name.avx2`, `name.avx512f`, … chosen at load time by the ifunc `name`).
        const syms = spawnSync('nm', [o], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.trim().split(/\s+/)).filter((p) => p.length === 3);
        const ifuncs = new Set(syms.filter((p) => p[1] === 'i').map((p) => p[2]!));
        const notDispatched = [...f].filter((fn) => {
          const dot = fn.lastIndexOf('.');
          return dot <= 0 || !ifuncs.has(fn.slice(0, dot)) || fn.endsWith('.default') || fn.includes('.resolver');
        });
        expect(notDispatched, `AVX instructions in ${path.basename(o)} (compiled for the baseline) outside run-time dispatched clones`).toEqual([]);
        continue;
      }
      kernelAvx += f.size;
      const weak = spawnSync('nm', [o], { encoding: 'utf8' }).stdout.split('\n')
        .map((l) => l.trim().split(/\s+/)).filter((p) => p.length === 3 && /^[WVuw]$/.test(p[1]!)).map((p) => p[2]!);
      // The Eigen copies (preserve_la_*.cc) are template instantiations, hence weak, but each ISA's copy
      // lives in its own namespace (geoedit_eigen_<isa>, native/cpu/preserve_la_impl.h): no baseline
      // object defines those names, so the linker has no other copy to confuse them with.
      const own = `${isaObj[2] === 'avx2' ? 18 : 20}geoedit_eigen_${isaObj[2]}`;
      expect(weak.filter((w) => f.has(w) && !(isaObj[1] === 'preserve_la' && w.includes(own))), `weak symbols with AVX code in ${path.basename(o)}`).toEqual([]);
    }
    expect(kernelAvx).toBeGreaterThan(0); // the SIMD kernels are there
  });

  it('installs offline (npm ci --offline) from the prebuild alone (PREBUILDS_ONLY=1, no compiler)', () => {
    expect(installOut).toContain(`geoedit: using prebuilds/${tuple}/${prebuildName}`);
    const installed = path.join(consumer, 'node_modules', 'geoedit');
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
    const ipkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')) as { version: string };
    expect(ipkg.version).toBe(pkg.version);
  });

  it('works without the install script too (npm ci --ignore-scripts): the loader finds the prebuild at run time', () => {
    const dir = path.join(tmp, 'consumer-no-scripts');
    writeConsumer(dir, tarball);
    ok(run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], dir, childEnv()), 'npm ci --ignore-scripts');
    fs.writeFileSync(path.join(dir, 'cjs.cjs'), CJS);
    const r = JSON.parse(ok(run('node', ['cjs.cjs'], dir, childEnv({ PREBUILDS_ONLY: '1' })), 'node cjs.cjs'));
    expect(r.version).toBe(pkg.version);
    expect(r.code).toBe('ERR_UNKNOWN_OPTION');
  });

  it('works from an ESM script', () => {
    fs.writeFileSync(path.join(consumer, 'esm.mjs'), ESM);
    const r = JSON.parse(ok(run('node', ['esm.mjs'], consumer, childEnv()), 'node esm.mjs'));
    // task-arithmetic: θ0 + τnew = θnew.
    [0.9, 2, 3, 4, 5.2, 6].forEach((v, i) => expect(r.out[i]).toBeCloseTo(v, 6));
    expect(r.sync0).toBeCloseTo(2, 6);
    expect(r.rows).toBe(2);
    expect(r.code).toBe('ERR_SHAPE_MISMATCH');
    expect(r.version).toBe(pkg.version);
    expect(r.sameClass).toBe(true);
    expect(r.defaultHasEdit).toBe('function');
    expect(r.kappa).toBe(2); // the calibrated default (docs/quality.md)
  });

  it('works from a CJS script', () => {
    fs.writeFileSync(path.join(consumer, 'cjs.cjs'), CJS);
    const r = JSON.parse(ok(run('node', ['cjs.cjs'], consumer, childEnv()), 'node cjs.cjs'));
    expect(r.out[0]).toBeCloseTo(0.9, 6);
    expect(r.code).toBe('ERR_UNKNOWN_OPTION');
    expect(r.version).toBe(pkg.version);
    expect(r.resolved).toBe(path.join(fs.realpathSync(consumer), 'node_modules', 'geoedit', 'dist', 'cjs', 'index.js'));
  });

  for (const mode of [
    // skipLibCheck false where the package's .d.ts files themselves must check cleanly; the other
    // modes only add resolution paths (and take less time).
    { name: 'ESM, module nodenext', module: 'nodenext', res: 'nodenext', file: 'ts-esm.mts', out: 'ts-esm.mjs', imp: 'esm', skipLib: false },
    { name: 'CJS, module nodenext', module: 'nodenext', res: 'nodenext', file: 'ts-cjs.cts', out: 'ts-cjs.cjs', imp: 'cjs', skipLib: false },
    { name: 'ESM, module node16', module: 'node16', res: 'node16', file: 'ts-n16.mts', out: 'ts-n16.mjs', imp: 'esm', skipLib: true },
    { name: 'bundler resolution', module: 'esnext', res: 'bundler', file: 'ts-bundler.mts', out: 'ts-bundler.mjs', imp: 'esm', skipLib: true },
    { name: 'CJS, classic node10 resolution (main/types)', module: 'commonjs', res: 'node10', file: 'ts-node10.ts', out: 'ts-node10.js', imp: 'cjs', skipLib: true },
  ] as const) {
    it(`TypeScript (${mode.name}): tsc --strict passes, no any in the public surface, wrong calls rejected, output runs`, () => {
      const dir = path.join(consumer, `ts-${mode.res}-${mode.imp}-${mode.module}`);
      fs.mkdirSync(dir, { recursive: true });
      const imp = mode.imp === 'esm' || mode.res === 'node10'
        ? `import * as g from 'geoedit';\nimport { ${TS_NAMES} } from 'geoedit';\nimport type { ${TS_TYPES} } from 'geoedit';`
        : `import g = require('geoedit');\nimport { ${TS_NAMES} } from 'geoedit';\nimport type { ${TS_TYPES} } from 'geoedit';`;
      fs.writeFileSync(path.join(dir, mode.file), TS_BODY(imp));
      fs.writeFileSync(path.join(dir, 'tsconfig.json'), tsconfig(mode.module, mode.res, 'out', [mode.file], mode.skipLib));
      const tsc = run('node', [tscJs, '-p', 'tsconfig.json'], dir, childEnv());
      expect(tsc.status, `tsc failed:\n${tsc.stdout}${tsc.stderr}`).toBe(0);
      if (mode.res === 'bundler') return; // bundler output is for a bundler, not for node
      const r = JSON.parse(ok(run('node', [path.join('out', mode.out)], dir, childEnv()), `node out/${mode.out}`));
      expect(r.dt).toBe('f32');
      expect(r.cosLen).toBe(2);
      expect(r.total).toBe(2);
      expect(r.v).toBe(pkg.version);
      expect(r.code).toBe('ERR_SHAPE_MISMATCH');
      expect(r.paperKappa).toBe(1);
      expect(r.addonPath).toBe(path.join(fs.realpathSync(consumer), 'node_modules', 'geoedit', 'prebuilds', tuple, prebuildName));
    });
  }

  it('the type checks above can fail: an `any` export is caught', () => {
    // Guard against a vacuous test: the same checks against a module whose export is `any`.
    const dir = path.join(consumer, 'ts-any');
    fs.mkdirSync(path.join(dir, 'node_modules', 'fake'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'node_modules', 'fake', 'package.json'), JSON.stringify({ name: 'fake', types: 'index.d.ts' }));
    fs.writeFileSync(path.join(dir, 'node_modules', 'fake', 'index.d.ts'), 'export declare const editTensor: any;\nexport declare function info(a: any): number;\n');
    fs.writeFileSync(path.join(dir, 'a.ts'), `import * as g from 'fake';
type IsAny<T> = 0 extends 1 & T ? true : false;
type AnyKeys<T> = { [K in keyof T]-?: IsAny<T[K]> extends true ? K : never }[keyof T];
type NoAny<T> = [AnyKeys<T>] extends [never] ? true : false;
export const noAnyInModule: NoAny<typeof g> = true;
type AnyIn<T extends readonly unknown[]> = true extends { [I in keyof T]: IsAny<T[I]> }[number] ? true : false;
type FnAny<F> = F extends (...a: infer P) => infer R ? (IsAny<Awaited<R>> extends true ? 'returns any' : AnyIn<P> extends true ? 'takes any' : never) : never;
type FnsWithAny = { [K in keyof typeof g]: FnAny<(typeof g)[K]> extends never ? never : [K, FnAny<(typeof g)[K]>] }[keyof typeof g];
export const noAnyInFunctions: [FnsWithAny] extends [never] ? true : FnsWithAny = true;
`);
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), tsconfig('commonjs', 'node10', 'out', ['a.ts'], true));
    const tsc = run('node', [tscJs, '-p', 'tsconfig.json', '--noEmit'], dir, childEnv());
    expect(tsc.status).not.toBe(0);
    expect(tsc.stdout).toContain("Type 'true' is not assignable to type 'false'");
    expect(tsc.stdout).toContain('"info", "takes any"');
  });

  it('the CLI: `geoedit --version`, and a small `geoedit edit` that matches editTensor', (ctx) => {
    const bin = path.join(consumer, 'node_modules', '.bin', 'geoedit');
    if (!fs.existsSync(path.join(repo, 'bin', 'geoedit.js'))) {
      expect(fs.existsSync(bin)).toBe(false);
      ctx.skip('bin/geoedit.js is not in this branch (the CLI comes with branch ckpt)');
    }
    expect(packedFiles).toContain('bin/geoedit.js');
    expect(packedFiles).toContain('dist/cjs/cli/main.js');
    const v = ok(run('npx', ['--offline', '--no-install', 'geoedit', '--version'], consumer, childEnv()), 'npx geoedit --version');
    expect(v.trim()).toBe(pkg.version);
    // Three small checkpoints written with the package's own writer, then the CLI, then the result
    // compared with editTensor on the same tensors.
    fs.writeFileSync(path.join(consumer, 'cli-prep.mjs'), `
      import { writeSafetensors } from 'geoedit';
      const t = (seed) => { const a = new Float32Array(6 * 10); for (let i = 0; i < a.length; i++) a[i] = Math.sin(seed * 7.1 + i * 0.37); return a; };
      for (const [name, seed] of [['base', 1], ['old', 2], ['new', 3]]) {
        await writeSafetensors(name + '.safetensors', [{ name: 'layer.weight', dtype: 'F32', shape: [6, 10], data: t(seed) }]);
      }`);
    ok(run('node', ['cli-prep.mjs'], consumer, childEnv()), 'write the checkpoints');
    const e = run('npx', ['--offline', '--no-install', 'geoedit', 'edit', '--base', 'base.safetensors', '--old', 'old.safetensors', '--new', 'new.safetensors',
      '--out', 'edited', '--json', '--quiet'], consumer, childEnv());
    expect(e.status, e.stdout + e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).totals.edited).toBe(1);
    fs.writeFileSync(path.join(consumer, 'cli-check.mjs'), `
      import { readTensor, toTensor, editTensor } from 'geoedit';
      const read = async (f) => toTensor(await readTensor(f, 'layer.weight'));
      const [base, old, nw, cli] = await Promise.all(['base.safetensors', 'old.safetensors', 'new.safetensors', 'edited/model.safetensors'].map(read));
      const api = await editTensor({ base, old, new: nw });
      console.log(JSON.stringify({ same: Buffer.from(api.out.data.buffer).equals(Buffer.from(cli.data.buffer)), changed: !Buffer.from(base.data.buffer).equals(Buffer.from(cli.data.buffer)) }));`);
    const c = JSON.parse(ok(run('node', ['cli-check.mjs'], consumer, childEnv()), 'compare the CLI output'));
    expect(c).toEqual({ same: true, changed: true });
  });

  it('PREBUILDS_ONLY=1 without a fitting prebuild fails the install with the loader message', () => {
    const copy = path.join(tmp, 'no-prebuild', 'node_modules', 'geoedit');
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    fs.cpSync(path.join(consumer, 'node_modules', 'geoedit'), copy, { recursive: true });
    fs.rmSync(path.join(copy, 'prebuilds'), { recursive: true });
    const r = run('node', [path.join(copy, 'scripts', 'install.js')], copy, childEnv({ PREBUILDS_ONLY: '1' }));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERR_NATIVE_LOAD');
    expect(r.stderr).toContain(`${path.join(copy, 'prebuilds')}${path.sep}: not found`);
    expect(r.stderr).toContain('PREBUILDS_ONLY is set, so no source build was attempted');
    // Without PREBUILDS_ONLY it would build from source, but the build tools are not installed.
    const r2 = run('node', [path.join(copy, 'scripts', 'install.js')], copy, childEnv());
    expect(r2.status).toBe(1);
    expect(r2.stdout).toContain('no prebuilt binary loads here; building from source');
    expect(r2.stderr).toMatch(/cannot build from source: cmake-js( and node-addon-api)? not installed/);
  });
});
