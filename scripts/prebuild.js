#!/usr/bin/env node
// Builds the release addon with cmake-js and writes it where node-gyp-build (and lib/native/loader.ts)
// look for prebuilds: prebuilds/<platform>-<arch>/geoedit.napi[.<libc>].node.
//
// prebuildify only drives node-gyp, so this small script does the same job over cmake-js:
//  - a separate build tree (build-prebuild/), so a developer's build/ is left alone;
//  - portable: GEOEDIT_NATIVE_ARCH=OFF (x86-64 baseline; the AVX2/AVX-512 kernels are per-file
//    and chosen at run time), Release;
//  - stripped (strip --strip-unneeded), then loaded in a fresh process as a check;
//  - with --cuda, the CUDA plugin (geoedit_cuda.so, needs nvcc) goes to prebuilds/<tuple>/cuda/,
//    never next to the addon, so no loader can take it for the addon.
//
// Usage: node scripts/prebuild.js [--cuda] [--no-strip]   (build-prebuild/ is kept for incremental rebuilds)
//        node scripts/prebuild.js --check       (prepack: a fitting prebuild exists and loads)
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const args = new Set(process.argv.slice(2));
const tuple = `${process.platform}-${process.arch}`;
const libc = process.platform === 'linux' ? (isMusl() ? 'musl' : 'glibc') : '';
const fileName = ['geoedit', 'napi', libc, 'node'].filter(Boolean).join('.');
const outDir = path.join(root, 'prebuilds', tuple);
const buildDir = path.join(root, 'build-prebuild');

function isMusl() {
  if (process.env.LIBC) return process.env.LIBC === 'musl';
  const report = process.report && process.report.getReport ? process.report.getReport() : null;
  const header = report && (typeof report === 'string' ? JSON.parse(report) : report).header;
  return !(header && header.glibcVersionRuntime);
}

function run(cmd, argv, opts = {}) {
  console.log(`$ ${cmd} ${argv.join(' ')}`);
  const r = spawnSync(cmd, argv, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(`prebuild: '${cmd}' exited with ${r.status}`);
    process.exit(r.status || 1);
  }
}

// --check (run by prepack): refuse to pack without a prebuild for this platform that loads and
// reports this package's version, so that a release can never ship as source-only by mistake.
if (args.has('--check')) {
  const pkgVersion = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  const file = path.join(outDir, fileName);
  const r = fs.existsSync(file)
    ? spawnSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(file)}).info().version)`], { encoding: 'utf8' })
    : null;
  if (!r || r.status !== 0 || r.stdout !== pkgVersion) {
    const why = !r ? 'is missing' : r.status !== 0 ? `does not load: ${r.stderr.trim().split('\n')[0]}` : `reports version ${r.stdout}, package.json says ${pkgVersion}`;
    // Strict for `npm pack` / `npm publish` (and by hand); a warning otherwise, e.g. when npm packs
    // a git dependency for an `npm install` (that install then builds from source).
    const cmd = process.env.npm_command;
    const strict = !cmd || cmd === 'pack' || cmd === 'publish';
    if (process.env.GEOEDIT_PACK_WITHOUT_PREBUILDS === '1' || !strict) {
      console.warn(`prebuild --check: ${path.relative(root, file)} ${why} (${strict ? 'GEOEDIT_PACK_WITHOUT_PREBUILDS=1' : `npm ${cmd}`}: packing anyway)`);
      process.exit(0);
    }
    console.error(`prebuild --check: ${path.relative(root, file)} ${why}. Run \`npm run build:prebuild\` first ` +
      '(or set GEOEDIT_PACK_WITHOUT_PREBUILDS=1 to pack a source-only package).');
    process.exit(1);
  }
  console.log(`prebuild --check: ${path.relative(root, file)} loads, version ${pkgVersion}`);
  process.exit(0);
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const t0 = Date.now();
// Only the addon target by default (no CUDA plugin, no CPU emulation of it, no C++ tests): the
// CUDA options are ignored (a CMake warning) by trees that do not have them.
const withCuda = args.has('--cuda');
run(process.execPath, [cmakeJs, 'compile', '--out', buildDir, '--config', 'Release',
  '--CDGEOEDIT_NATIVE_ARCH=OFF', '--CDCMAKE_BUILD_TYPE=Release', `--CDGEOEDIT_CUDA=${withCuda ? 'ON' : 'OFF'}`, '--CDGEOEDIT_CUDA_EMU=OFF',
  ...(withCuda ? [] : ['--target', 'geoedit'])]);

const releaseDir = path.join(buildDir, 'Release');
const built = path.join(releaseDir, 'geoedit.node');
if (!fs.existsSync(built)) {
  console.error(`prebuild: the build finished but ${path.relative(root, built)} is missing`);
  process.exit(1);
}

fs.mkdirSync(outDir, { recursive: true });
const dest = path.join(outDir, fileName);
// Copy and strip in the build tree, then rename (same file system): a reader (npm pack, a loader) sees the old file
// or the new one, never half of one.
const tmpFile = path.join(buildDir, `${fileName}.${process.pid}.tmp`);
fs.copyFileSync(built, tmpFile);
if (!args.has('--no-strip') && process.platform !== 'win32') {
  const s = spawnSync('strip', ['--strip-unneeded', tmpFile], { stdio: 'inherit' });
  if (s.error || s.status !== 0) console.warn('prebuild: strip failed or is missing; the binary is left unstripped');
}
// Remove stale addon flavours of ours (not other files), then move the new one in.
for (const f of fs.readdirSync(outDir)) {
  if (/^geoedit\..*node$/.test(f) && f !== fileName) fs.rmSync(path.join(outDir, f));
}
fs.renameSync(tmpFile, dest);

// The CUDA plugin (--cuda): a shared library the core dlopen()s from <addon dir>/cuda/ (also
// plugins/ and the addon dir itself). It is not a .node, and it lives in its own folder, so no
// loader can take it for the addon. The CPU emulation of the plugin (emu/) is never shipped.
const cudaDir = path.join(outDir, 'cuda');
if (withCuda) {
  const plugin = [path.join(releaseDir, 'plugins', 'geoedit_cuda.so'), path.join(releaseDir, 'geoedit_cuda.so')].find((f) => fs.existsSync(f));
  if (!plugin) {
    console.error(`prebuild: --cuda was given but the build wrote no geoedit_cuda.so (looked in ${path.relative(root, releaseDir)}/plugins/ and ${path.relative(root, releaseDir)}/)`);
    process.exit(1);
  }
  fs.mkdirSync(cudaDir, { recursive: true });
  const cudaTmp = path.join(buildDir, `geoedit_cuda.so.${process.pid}.tmp`);
  fs.copyFileSync(plugin, cudaTmp);
  fs.renameSync(cudaTmp, path.join(cudaDir, 'geoedit_cuda.so'));
  console.log(`prebuild: CUDA plugin ${path.relative(root, plugin)} -> ${path.relative(root, path.join(cudaDir, 'geoedit_cuda.so'))}`);
} else if (fs.existsSync(cudaDir)) {
  console.warn(`prebuild: ${path.relative(root, cudaDir)}/ is left as it is (not rebuilt without --cuda); remove it if it is stale`);
}

// Check: the stripped file loads in a fresh process and reports the package version.
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const check = spawnSync(process.execPath, ['-e', `const a = require(${JSON.stringify(dest)}); process.stdout.write(JSON.stringify(a.info()))`], { encoding: 'utf8' });
if (check.status !== 0) {
  console.error(`prebuild: ${dest} does not load:\n${check.stderr}`);
  process.exit(1);
}
const info = JSON.parse(check.stdout);
if (info.version !== pkg.version) {
  console.error(`prebuild: the addon reports version ${info.version} but package.json says ${pkg.version}`);
  process.exit(1);
}

// Report the glibc symbol versions it needs (the floor for "prebuilt platforms").
let glibc = '';
const od = spawnSync('objdump', ['-T', dest], { encoding: 'utf8' });
if (od.status === 0) {
  const vers = [...new Set((od.stdout.match(/GLIBC_[0-9.]+/g) || []).map((v) => v.slice(6)))];
  vers.sort((a, b) => a.split('.').map(Number).reduce((acc, x, i) => acc || x - (Number(b.split('.')[i]) || 0), 0));
  if (vers.length) glibc = `, needs glibc >= ${vers[vers.length - 1]}`;
}
const size = fs.statSync(dest).size;
console.log(`prebuild: ${path.relative(root, dest)} (${(size / 1024).toFixed(0)} KiB, version ${info.version}, simd ${info.simd}${glibc}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
