#!/usr/bin/env node
// npm "install" lifecycle script. node-gyp-build's own install bin falls back to node-gyp, which
// needs a binding.gyp; this package builds with cmake-js, so this script does the same job:
//
//   1. load the addon exactly as at run time (lib/native/loader.ts: build/Release, then the prebuild
//      that fits), in a child process so that a bad binary cannot take npm down;
//   2. only when nothing loads, build from source with cmake-js, then check again.
//   Before either: OpenBLAS (optional at run time, ensureOpenblas), installed with apt-get when root.
//
// Environment:
//   PREBUILDS_ONLY=1              never build; fail with the loader's message if no prebuild loads
//   GEOEDIT_BUILD_FROM_SOURCE=1   build from source even when a prebuild loads
//                                 (also: npm install --build-from-source)
// In a development checkout the same rules apply (cmake-js is a devDependency there), so that
// `npm ci` leaves a working addon; `prepare` then compiles the TypeScript.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const env = process.env;
const flag = (v) => v !== undefined && v !== '' && v !== '0' && String(v).toLowerCase() !== 'false';
const prebuildsOnly = flag(env.PREBUILDS_ONLY);
const fromSource = flag(env.GEOEDIT_BUILD_FROM_SOURCE) || flag(env.npm_config_build_from_source);

function log(msg) {
  console.log(`geoedit: ${msg}`);
}

/** Loads the addon in a fresh process. Returns { ok, path?, version?, simd?, message? }. */
function probe() {
  const loader = path.join(root, 'dist', 'cjs', 'native', 'loader.js');
  const load = fs.existsSync(loader)
    ? `const r = require(${JSON.stringify(loader)}).loadNativeFrom(${JSON.stringify(root)}); const p = r.path, a = r.addon;`
    : `const p = require('node-gyp-build').path(${JSON.stringify(root)}), a = require(p);`;
  const code = `try { ${load} const i = a.info();
      process.stdout.write(JSON.stringify({ path: p, version: i.version, simd: i.simd }));
    } catch (e) { process.stderr.write((e && e.message || String(e)) + (e && e.code ? '\\n(error code ' + e.code + ')' : '') + '\\n'); process.exit(1); }`;
  const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', env });
  if (r.status === 0) {
    try {
      return { ok: true, ...JSON.parse(r.stdout) };
    } catch {
      /* fall through */
    }
  }
  const why = r.error ? r.error.message : r.signal ? `the process was killed by ${r.signal}` : (r.stderr || r.stdout).trim();
  return { ok: false, message: why };
}

function cleanStack(msg) {
  // Keep the loader's message, drop the stack frames Node prints after it.
  return msg
    .split('\n')
    .filter((l) => !/^\s+at /.test(l) && !/^Node\.js v/.test(l))
    .join('\n')
    .trim();
}

function resolveTool(id) {
  try {
    return require.resolve(id, { paths: [root] });
  } catch {
    return undefined;
  }
}

/** Root on a system with apt-get: installs `pkg` quietly (an `apt-get update` and a retry when the first
 * try fails). Returns whether it is installed now; false without root or apt-get. */
function aptInstall(pkg, why, stderr) {
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  const root_ = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!hasApt || !root_) return false;
  log(`${why}; installing ${pkg} with apt-get`);
  const opts = { stdio: ['ignore', 'ignore', stderr], env: { ...env, DEBIAN_FRONTEND: 'noninteractive' } };
  let r = spawnSync('apt-get', ['install', '-y', '-qq', pkg], opts);
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], opts);
    r = spawnSync('apt-get', ['install', '-y', '-qq', pkg], opts);
  }
  return r.status === 0;
}

/**
 * Eigen's headers (the preservation linear algebra, native/cpu/preserve_la_*.cc) are needed by a
 * source build only; prebuilds have them compiled in. Where they are missing and this is root on a
 * Debian-like system, installs libeigen3-dev with apt-get (quietly); otherwise says which package to
 * install. Returns false when the build cannot work.
 */
function ensureEigen() {
  const dirs = [env.EIGEN3_INCLUDE_DIR, '/usr/include/eigen3', '/usr/local/include/eigen3', '/opt/homebrew/include/eigen3'];
  if (dirs.some((d) => d && fs.existsSync(path.join(d, 'Eigen', 'Cholesky')))) return true;
  if (aptInstall('libeigen3-dev', 'Eigen 3 headers not found', 'inherit')) return true;
  console.error(
    [
      'geoedit: cannot build from source: the Eigen 3 headers (header-only linear algebra) are not installed.',
      '  Debian/Ubuntu: apt-get install libeigen3-dev   Fedora: dnf install eigen3-devel   macOS: brew install eigen',
      '  or point EIGEN3_INCLUDE_DIR at a directory holding Eigen/Core.',
    ].join('\n'),
  );
  return false;
}

/**
 * OpenBLAS (optional at run time: preservation's GEMM and f64 solve, dlopen'd by native/core/blas.cc;
 * without it the compiled-in Eigen runs). Where libopenblas.so.0 is missing and this is root on a
 * Debian-like system, installs libopenblas0-pthread with apt-get (quietly), for prebuilt and source
 * installs alike; otherwise says which package gives the faster path. Never fails the install.
 */
function ensureOpenblas() {
  const ld = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const dirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/lib/x86_64-linux-gnu'];
  const present = () => (ld.status === 0 && /libopenblas(64_)?\.so\.0\b/.test(ld.stdout)) || dirs.some((d) => fs.existsSync(path.join(d, 'libopenblas.so.0')));
  if (present()) return true;
  if (aptInstall('libopenblas0-pthread', 'OpenBLAS not found (optional: preservation\'s linear algebra)', 'ignore')) return true;
  log('OpenBLAS (libopenblas.so.0) not found: preservation uses the built-in Eigen; for its faster path install ' +
      'libopenblas0-pthread (Debian/Ubuntu) or openblas (Fedora). Optional.');
  return false;
}

function buildFromSource() {
  if (!ensureEigen()) return false;
  const cmakeJs = resolveTool('cmake-js/bin/cmake-js');
  const napi = resolveTool('node-addon-api');
  if (!cmakeJs || !napi) {
    const missingList = [!cmakeJs && 'cmake-js', !napi && 'node-addon-api'].filter(Boolean);
    const missing = missingList.join(' and ');
    console.error(
      [
        `geoedit: cannot build from source: ${missing} not installed.`,
        '  The build tools are optional peer dependencies (so that installs from a prebuilt binary stay small).',
        `  Add them to your project and rebuild:  npm install --save-dev ${missingList.join(' ')}`,
        '                                         GEOEDIT_BUILD_FROM_SOURCE=1 npm rebuild geoedit --foreground-scripts',
        '  Prerequisites: cmake >= 3.18 and a C++17 compiler (g++ or clang++; tested with g++ 12) on PATH.',
      ].join('\n'),
    );
    return false;
  }
  log(`building from source with ${path.relative(root, cmakeJs) || cmakeJs} (cmake >= 3.18 and a C++17 compiler are needed)`);
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', path.join(root, 'build'), '--config', 'Release'], {
    cwd: root,
    stdio: 'inherit',
    env,
  });
  if (r.error || r.status !== 0) {
    console.error(
      [
        `geoedit: the source build failed (${r.error ? r.error.message : `cmake-js exited with ${r.status}`}).`,
        '  Check that cmake >= 3.18 and a C++17 compiler (g++ or clang++; tested with g++ 12) are on PATH; the output above says what failed.',
      ].join('\n'),
    );
    return false;
  }
  return true;
}

function main() {
  if (process.platform === 'linux') ensureOpenblas();
  if (!fromSource) {
    const p = probe();
    if (p.ok) {
      log(`using ${path.relative(root, p.path)} (version ${p.version}, ${p.simd})`);
      return 0;
    }
    if (prebuildsOnly) {
      console.error(cleanStack(p.message));
      console.error('geoedit: PREBUILDS_ONLY is set, so no source build was attempted; the install fails.');
      return 1;
    }
    log('no prebuilt binary loads here; building from source.');
    console.log('  ' + cleanStack(p.message).split('\n').join('\n  '));
  } else if (prebuildsOnly) {
    console.error('geoedit: both PREBUILDS_ONLY and GEOEDIT_BUILD_FROM_SOURCE are set; unset one.');
    return 1;
  }
  if (!buildFromSource()) return 1;
  const p = probe();
  if (!p.ok) {
    console.error(cleanStack(p.message));
    console.error('geoedit: the source build finished but the addon still does not load (message above).');
    return 1;
  }
  log(`built ${path.relative(root, p.path)} (version ${p.version}, ${p.simd})`);
  return 0;
}

process.exitCode = main();
