// Shared by the tarball tests (test/package/package*.test.ts): pack the repo, make a sandboxed PATH
// without compilers, write an offline-installable consumer project.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';

import { REPO } from './paths';

export const repo = REPO;
export const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string; name: string };
export const tuple = `${process.platform}-${process.arch}`;
export const prebuildName = process.platform === 'linux' ? 'geoedit.napi.glibc.node' : 'geoedit.napi.node';
export const tscJs = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
/** The platform the package has a prebuild for (the tarball tests run only there). */
// npm must be on PATH (the GPU device check carries node alone: these tests then skip, saying so).
const hasNpm = (process.env.PATH ?? '').split(path.delimiter).some((d) => d !== '' && fs.existsSync(path.join(d, 'npm')));
export const supported = process.platform === 'linux' && process.arch === 'x64' && !fs.existsSync('/etc/alpine-release') && hasNpm;
if (!hasNpm) console.log('[package tests] skipped — npm is not on PATH (they pack and install the package with npm)');

let sandboxBin = '';

/** Environment for child processes: no npm_* variables from the outer `npm test`, sandboxed PATH. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((k.toLowerCase().startsWith('npm_') && k.toLowerCase() !== 'npm_config_cache') || k === 'INIT_CWD' || k === 'NODE_OPTIONS' || k.startsWith('VITEST')) continue;
    env[k] = v;
  }
  env.PATH = sandboxBin;
  return { ...env, ...extra };
}

// 540 s: a source build compiles the CUDA plugin for four architectures; on the shared 2-core
// machine under load (load average ~13) it took over 180 s (test/package/package-source.test.ts
// allows 600 s for the whole test).
export function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 540_000): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
}

export function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.error || r.status !== 0) {
    throw new Error(`${what} failed (status ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/** A bin dir holding only node, npm, npx, a shell and basic tools (symlinks): no cc, c++, cmake, make. */
export function makeSandboxBin(dir: string): void {
  sandboxBin = dir;
  fs.mkdirSync(dir, { recursive: true });
  const tools = ['sh', 'bash', 'env', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'ln', 'chmod', 'dirname', 'basename', 'uname',
    'sed', 'grep', 'head', 'tail', 'tr', 'cut', 'sort', 'true', 'false', 'readlink', 'realpath', 'id'];
  const pathDirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const find = (t: string): string | undefined => pathDirs.map((d) => path.join(d, t)).find((p) => fs.existsSync(p));
  fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  const npmCli = fs.realpathSync(find('npm') ?? 'npm');
  fs.symlinkSync(npmCli, path.join(dir, 'npm'));
  fs.symlinkSync(path.join(path.dirname(npmCli), 'npx-cli.js'), path.join(dir, 'npx'));
  for (const t of tools) {
    const p = find(t);
    if (p) fs.symlinkSync(p, path.join(dir, t));
  }
}

type LockEntry = { version: string; dependencies?: Record<string, string>; [k: string]: unknown };

/**
 * An empty project that depends on the tarball, with a package-lock.json, so that `npm ci --offline`
 * needs only tarballs from the npm cache. (`npm ci` caches tarballs but not registry metadata, so
 * on a fresh machine a lockfile-less `npm install --offline` of the tarball fails with ENOTCACHED.)
 * Registry entries are copied from this repo's lockfile; `extra` adds dev dependencies (with
 * everything they pull in).
 */
export function writeConsumer(dir: string, tarball: string, extra: string[] = []): void {
  fs.mkdirSync(dir, { recursive: true });
  const repoPkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as {
    license: string; dependencies: Record<string, string>; devDependencies: Record<string, string>;
    engines: unknown; peerDependencies: unknown; peerDependenciesMeta: unknown; bin?: unknown;
  };
  const repoLock = JSON.parse(fs.readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const rel = path.relative(dir, tarball).split(path.sep).join('/');
  const integrity = 'sha512-' + createHash('sha512').update(fs.readFileSync(tarball)).digest('base64');
  const devDependencies: Record<string, string> = {};
  for (const d of extra) devDependencies[d] = repoPkg.devDependencies[d]!;
  const name = path.basename(dir);
  const packages: Record<string, unknown> = {
    '': { name, version: '1.0.0', dependencies: { geoedit: `file:${rel}` }, devDependencies },
    'node_modules/geoedit': {
      version: pkg.version, resolved: `file:${rel}`, integrity, hasInstallScript: true, license: repoPkg.license,
      dependencies: repoPkg.dependencies, engines: repoPkg.engines, peerDependencies: repoPkg.peerDependencies, peerDependenciesMeta: repoPkg.peerDependenciesMeta,
      ...(fs.existsSync(path.join(repo, 'bin', 'geoedit.js')) ? { bin: { geoedit: 'bin/geoedit.js' } } : {}),
    },
  };
  // The closure of the registry dependencies, at the same node_modules paths as in the repo.
  const find = (from: string, dep: string): string => {
    for (let base = from; ; base = base.slice(0, Math.max(0, base.lastIndexOf('/node_modules/')))) {
      const p = `${base ? base + '/' : ''}node_modules/${dep}`;
      if (repoLock.packages[p]) return p;
      if (!base) throw new Error(`package-lock.json has no entry for ${dep} (needed by ${from || 'the root'})`);
    }
  };
  const queue = [...Object.keys(repoPkg.dependencies).map((d) => find('', d)), ...extra.map((d) => find('', d))];
  while (queue.length) {
    const p = queue.pop()!;
    if (packages[p]) continue;
    const e = { ...repoLock.packages[p]! };
    delete e.dev; delete e.peer; delete e.devOptional;
    if (extra.length && !Object.keys(repoPkg.dependencies).some((d) => p === `node_modules/${d}`)) e.dev = true;
    packages[p] = e;
    for (const d of Object.keys(e.dependencies ?? {})) queue.push(find(p, d));
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, dependencies: { geoedit: `file:${rel}` }, devDependencies }, null, 2));
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name, version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));
}

export function distIsStale(): boolean {
  const esm = path.join(repo, 'dist', 'esm', 'index.mjs');
  if (!fs.existsSync(esm) || !fs.existsSync(path.join(repo, 'dist', 'cjs', 'index.js'))) return true;
  const built = fs.statSync(esm).mtimeMs;
  return fs.readdirSync(path.join(repo, 'lib'), { recursive: true }).some((f) => String(f).endsWith('.ts') && fs.statSync(path.join(repo, 'lib', String(f))).mtimeMs > built);
}


/**
 * npm pack of the repo into `dest` (with --ignore-scripts, so prepack does not rewrite dist/ while
 * other test files read it). Rebuilds dist/ first only when it is missing or older than lib/ and
 * `mayBuildTs` (one test file only, so two files never run tsc into dist/ at once).
 */
export function packRepo(dest: string, mayBuildTs: boolean): { tarball: string; files: string[] } {
  const packEnv = { ...childEnv(), PATH: process.env.PATH ?? '' };
  if (distIsStale()) {
    if (!mayBuildTs) throw new Error('dist/ is missing or older than lib/: run `npm run build:ts` first');
    ok(run('npm', ['run', 'build:ts'], repo, packEnv), 'npm run build:ts');
  }
  const packJson = ok(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], repo, packEnv), 'npm pack');
  const meta = JSON.parse(packJson.slice(packJson.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  return { tarball: path.join(dest, meta[0]!.filename), files: meta[0]!.files.map((f) => f.path) };
}
