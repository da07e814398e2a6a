// Loads the addon. Search order (node-gyp-build's, with exact file names so that no other `.node`
// — a CUDA plugin, say — is ever taken for the addon):
//   1. $GEOEDIT_ADDON, when set: that file and nothing else;
//   2. build/Release/geoedit.node, build/Debug/geoedit.node (a source build), unless PREBUILDS_ONLY;
//   3. prebuilds/<platform>-<arch>/geoedit.*.node whose tags (napi, glibc/musl, abi…) fit this
//      process, ranked by node-gyp-build's own rules.
// Every candidate that exists is actually loaded; when one fails the next is tried. When nothing
// loads, the error lists every path tried and why, the platform, Node and N-API versions, and
// what to do next.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { markAsUntransferable } from 'node:worker_threads';
import { GeoEditError } from '../errors';
import { flagSet, readEnv, type Env } from '../env';
import type { NativeAddon } from './addon';

/** The package root (where package.json is), from lib/ in source or dist/cjs/ when built. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'geoedit') return dir;
      } catch {
        /* keep looking */
      }
    }
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..');
}

/** The N-API version the addon is built against (NAPI_VERSION in CMakeLists.txt). */
export const ADDON_NAPI_VERSION = 8;
const ADDON_NAME = 'geoedit';

export interface LoadAttempt {
  /** A file, or a folder when nothing in it could be tried. */
  path: string;
  /** Why it was not used: 'not found', 'no matching file (…)', or the load error. */
  reason: string;
}

export interface LoadOptions {
  /** Environment to read PREBUILDS_ONLY and GEOEDIT_ADDON from (default: process.env). */
  env?: Env;
}

interface NodeGypBuild {
  parseTuple(name: string): { name: string; platform: string; architectures: string[] } | undefined;
  matchTuple(platform: string, arch: string): (t: unknown) => boolean;
  compareTuples(a: { architectures: string[] }, b: { architectures: string[] }): number;
  parseTags(file: string): { file: string; specificity: number } | undefined;
  matchTags(runtime: string, abi: string | undefined): (t: unknown) => boolean;
  compareTags(runtime: string): (a: unknown, b: unknown) => number;
}


/** Prebuilt files in `root/prebuilds/` that fit this process, best first; notes say why none fit. */
function prebuildCandidates(root: string): { files: string[]; notes: LoadAttempt[] } {
  const dir = path.join(root, 'prebuilds');
  const tupleName = `${process.platform}-${process.arch}`;
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return { files: [], notes: [{ path: dir + path.sep, reason: 'not found (this install has no prebuilt binaries)' }] };
  }
  let ngb: NodeGypBuild | undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    ngb = require('node-gyp-build') as NodeGypBuild;
  } catch {
    ngb = undefined;
  }
  if (!ngb) {
    // Without node-gyp-build's tag rules, try the names this package ships.
    const libc = process.platform === 'linux' ? (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc') : '';
    const sub = path.join(dir, tupleName);
    const names = [libc ? `${ADDON_NAME}.napi.${libc}.node` : '', `${ADDON_NAME}.napi.node`].filter(Boolean);
    return { files: names.map((n) => path.join(sub, n)), notes: [] };
  }
  const tuples = entries
    .map((e) => ngb!.parseTuple(e))
    .filter(ngb.matchTuple(process.platform, process.arch))
    .sort(ngb.compareTuples as (a: unknown, b: unknown) => number) as { name: string }[];
  if (tuples.length === 0) {
    const has = entries.filter((e) => fs.statSync(path.join(dir, e)).isDirectory());
    return { files: [], notes: [{ path: dir + path.sep, reason: `no folder for ${tupleName} (has: ${has.join(', ') || 'nothing'})` }] };
  }
  const files: string[] = [];
  const notes: LoadAttempt[] = [];
  const runtime = process.versions.electron ? 'electron' : 'node';
  for (const t of tuples) {
    const sub = path.join(dir, t.name);
    const all = fs.readdirSync(sub);
    // Only files named after the addon: a CUDA plugin or anything else in the folder is never loaded here.
    const ours = all.filter((f) => f.startsWith(`${ADDON_NAME}.`) && f.endsWith('.node'));
    const fit = ours
      .map((f) => ngb!.parseTags(f) as { file: string; napi?: boolean } | undefined)
      // N-API builds only (tag 'napi'): a file without it is not an addon build of ours.
      .filter((t) => t !== undefined && t.napi === true)
      .filter(ngb.matchTags(runtime, process.versions.modules))
      .sort(ngb.compareTags(runtime)) as { file: string }[];
    for (const f of fit) files.push(path.join(sub, f.file));
    for (const f of ours) {
      if (!fit.some((x) => x.file === f)) notes.push({ path: path.join(sub, f), reason: 'does not fit this process (no napi tag, or its tags name another libc, ABI or runtime)' });
    }
    if (ours.length === 0) notes.push({ path: sub + path.sep, reason: `no ${ADDON_NAME}.*.node file (has: ${all.join(', ') || 'nothing'})` });
  }
  return { files, notes };
}

/**
 * What the loader looks at under `root`, in order: `files` are tried one by one; `notes` are places
 * that held nothing to try (listed in the error after the files, each with its reason).
 */
export function addonCandidates(root: string, options: LoadOptions = {}): { files: string[]; notes: LoadAttempt[] } {
  const env = options.env;
  const explicit = readEnv('GEOEDIT_ADDON', env);
  if (explicit) return { files: [path.resolve(explicit)], notes: [] };
  const files: string[] = [];
  const notes: LoadAttempt[] = [];
  if (!flagSet('PREBUILDS_ONLY', env)) {
    files.push(path.join(root, 'build', 'Release', `${ADDON_NAME}.node`), path.join(root, 'build', 'Debug', `${ADDON_NAME}.node`));
  } else {
    notes.push({ path: path.join(root, 'build') + path.sep, reason: 'skipped: PREBUILDS_ONLY is set' });
  }
  const pre = prebuildCandidates(root);
  return { files: [...files, ...pre.files], notes: [...notes, ...pre.notes] };
}

function firstLines(msg: string): string {
  return msg.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Require stack') && !l.startsWith('- ')).slice(0, 2).join(' ').trim();
}

function glibcRuntime(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const r = process.report?.getReport() as unknown as { header?: { glibcVersionRuntime?: string } };
    return r?.header?.glibcVersionRuntime;
  } catch {
    return undefined;
  }
}

/** The message of ERR_NATIVE_LOAD (exported for tests and for the install script). */
export function loadErrorMessage(root: string, attempts: LoadAttempt[], env?: Env): string {
  const napi = process.versions.napi ?? 'unknown';
  const glibc = glibcRuntime();
  const platform = `${process.platform}-${process.arch}` + (process.platform === 'linux' ? (glibc ? ` (glibc ${glibc})` : ' (musl or unknown libc)') : '');
  const anyFound = attempts.some((a) => a.reason.startsWith('failed to load') || a.reason.startsWith('loaded, but'));
  const next: string[] = [];
  if (napi !== 'unknown' && Number(napi) < ADDON_NAPI_VERSION) {
    next.push(`Upgrade Node.js: this Node offers N-API ${napi}, the addon needs N-API >= ${ADDON_NAPI_VERSION} (Node >= 20 is supported).`);
  }
  const explicit = readEnv('GEOEDIT_ADDON', env) !== undefined;
  if (explicit) next.push('GEOEDIT_ADDON is set: unset it to let geoedit search its own folders, or point it at a working geoedit.node.');
  if (explicit) {
    /* the hint above says it all */
  } else if (anyFound) {
    next.push('A binary was found but did not load (see the reason above: "GLIBC_x.y not found" means this system\'s C library is older than the one the prebuild was made for; "invalid ELF header" or "wrong ELF class" means another platform).');
  } else {
    next.push(`No binary for ${process.platform}-${process.arch} is in this install (prebuilt: linux-x64 with glibc).`);
  }
  next.push(
    'Build from source: install cmake >= 3.18 and a C++17 compiler (g++ or clang++; tested with g++ 12), add the build tools to your project',
    '  (npm install --save-dev cmake-js), then run: GEOEDIT_BUILD_FROM_SOURCE=1 npm rebuild geoedit --foreground-scripts',
    `Or set GEOEDIT_ADDON=/path/to/geoedit.node to use a binary built elsewhere. Report bugs with this whole message.`,
  );
  return [
    `geoedit: the native addon could not be loaded from ${root}`,
    'Tried:',
    ...attempts.map((a) => `  - ${a.path}: ${a.reason}`),
    `Platform ${platform}, Node ${process.version}, N-API ${napi} (the addon needs N-API >= ${ADDON_NAPI_VERSION})` +
      (flagSet('PREBUILDS_ONLY', env) ? ', PREBUILDS_ONLY=1' : '') + '.',
    'What to do next:',
    ...next.map((l) => (l.startsWith('  ') ? `  ${l}` : `  * ${l}`)),
  ].join('\n');
}

/** Loads the addon from `root` (no cache). Throws GeoEditError ERR_NATIVE_LOAD listing every path tried. */
export function loadNativeFrom(root: string, options: LoadOptions = {}): { addon: NativeAddon; path: string } {
  const env = options.env;
  const { files, notes } = addonCandidates(root, options);
  // Skipped places first (they come first in the search order), then the files tried, then the rest.
  const attempts: LoadAttempt[] = notes.filter((n) => n.reason.startsWith('skipped'));
  for (const f of files) {
    if (!fs.existsSync(f)) {
      attempts.push({ path: f, reason: 'not found' });
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const addon = require(f) as NativeAddon;
      if (typeof addon?.edit !== 'function' || typeof addon?.info !== 'function') {
        attempts.push({ path: f, reason: 'loaded, but it is not the geoedit addon (no edit()/info() exports)' });
        continue;
      }
      // Async calls use their typed-array inputs in place only when Node can keep them attached
      // (native/binding/common.h, Keep); without this they copy them.
      addon._setTransferGuard?.(markAsUntransferable);
      return { addon, path: f };
    } catch (e) {
      attempts.push({ path: f, reason: `failed to load: ${firstLines((e as Error).message)}` });
    }
  }
  attempts.push(...notes.filter((n) => !n.reason.startsWith('skipped')));
  throw new GeoEditError('ERR_NATIVE_LOAD', loadErrorMessage(root, attempts, env), {
    tried: attempts.map((a) => `${a.path}: ${a.reason}`),
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
    napi: process.versions.napi ?? 'unknown',
  });
}

let cached: NativeAddon | undefined;
let cachedPath: string | undefined;

/** The addon of this package (loaded once per thread). */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const r = loadNativeFrom(packageRoot());
  cached = r.addon;
  cachedPath = r.path;
  return cached;
}

/** Which file the addon was loaded from (undefined until loaded). */
export function nativePath(): string | undefined {
  return cachedPath;
}
