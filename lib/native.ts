// Loads the addon with node-gyp-build: prebuilds/<platform>-<arch>/ first, then build/Release.
// When nothing loads, the error lists every place tried and why, and what to do next.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError } from './errors';

export interface NativeResult {
  out?: Float32Array | Uint16Array;
  cos: Float64Array;
  region: Uint8Array;
  coefNew: Float32Array;
  coefOld: Float32Array;
  deltaSq: Float64Array;
  na: Float64Array;
  nb: Float64Array;
}

export interface NativeSpec {
  rows: number;
  cols: number;
  base: Float32Array | Uint16Array;
  baseDtype: string;
  old: Float32Array | Uint16Array;
  oldDtype: string;
  new: Float32Array | Uint16Array;
  newDtype: string;
  impOld?: Float32Array | Uint16Array;
  impOldDtype?: string;
  impNew?: Float32Array | Uint16Array;
  impNewDtype?: string;
  cNew?: Float32Array;
  cOld?: Float32Array;
  outDtype: string;
  outData?: Float32Array | Uint16Array;
  wantOut: boolean;
  threads: number;
  simd?: number;
  tensorName?: string;
  rowOffset?: number;
  params: Record<string, number | string | boolean>;
  /** old/new hold task vectors (f32), not weights (materialised LoRA rows). */
  tauGiven?: boolean;
}

/** One side of a LoRA module in the core's canonical form: tau = scale * L * R, L [rows, r], R [r, cols]. */
export interface NativeLoraSide {
  L: Float32Array;
  R: Float32Array;
  r: number;
  scale: number;
}

export interface NativeLoraGeometry {
  cos: Float64Array;
  region: Uint8Array;
  coefNew: Float32Array;
  coefOld: Float32Array;
  na: Float64Array;
  nb: Float64Array;
  dot: Float64Array;
  deltaSq: Float64Array;
}

/** Exactly what the .node exports. */
export interface NativeAddon {
  edit(spec: NativeSpec): Promise<NativeResult>;
  editSync(spec: NativeSpec): NativeResult;
  info(): { version: string; simd: string; simdDetected: string; threads: number; simdSupported: string[] };
  setSimd(level: string): boolean;
  defaults(): Record<string, number> & { paper: Record<string, number> };
  convert(from: string, data: Float32Array | Uint16Array, to: string): Float32Array | Uint16Array;
  triad(n: number, threads: number, reps: number): Promise<number>;
  loraGeometry(spec: {
    rows: number; cols: number; old: NativeLoraSide | null; new: NativeLoraSide | null;
    params: Record<string, number | string | boolean>; cNew?: Float32Array; cOld?: Float32Array; threads?: number; tensorName?: string;
  }): Promise<NativeLoraGeometry>;
  loraMaterialize(spec: { rows: number; cols: number; side: NativeLoraSide | null; r0: number; r1: number; threads?: number }): Float32Array;
  loraMaterializeAsync(spec: { rows: number; cols: number; side: NativeLoraSide | null; r0: number; r1: number; threads?: number }): Promise<{ out: Float32Array }>;
  loraMerge(spec: {
    rows: number; cols: number; old: NativeLoraSide | null; new: NativeLoraSide | null; cNew: Float32Array; cOld: Float32Array;
    transposed: boolean; s0: number; s1: number; base: Float32Array | Uint16Array; baseDtype: string; outDtype: string;
    threads?: number; tensorName?: string;
  }): Promise<{ out: Float32Array | Uint16Array }>;
  /** safetensors header of a file (pread, validated); offsets relative to the data section. */
  stHeader(path: string): NativeStHeader;
  /** The same for a whole file held in memory. */
  stHeaderBytes(bytes: Uint8Array, name?: string): NativeStHeader;
  /** The checkpoint data path: edit / copy / convert tensors file to file in row blocks. */
  stream(spec: NativeStreamSpec): Promise<(NativeResult | null)[]>;
}

export interface NativeStHeader {
  fileSize: number;
  headerLen: number;
  dataOffset: number;
  metadata: Record<string, string> | null;
  tensors: Array<{ name: string; dtype: string; shape: number[]; begin: number; end: number }>;
}

export interface NativeStreamSrc {
  fd: number;
  offset: number;
  dtype: string;
  file?: string;
}

export interface NativeStreamTask {
  kind: 0 | 1 | 2; // edit | copy | convert
  name: string;
  rows?: number;
  cols?: number;
  copyBytes?: number;
  base: NativeStreamSrc;
  old?: NativeStreamSrc;
  new?: NativeStreamSrc;
  impOld?: NativeStreamSrc;
  impNew?: NativeStreamSrc;
  cNew?: Float32Array;
  cOld?: Float32Array;
  outFd?: number;
  outOffset?: number;
  outDtype?: string;
  stats?: boolean;
}

export interface NativeStreamSpec {
  tasks: NativeStreamTask[];
  params: Record<string, number | string | boolean>;
  threads?: number;
  blockBytes?: number;
  /** [bytesDone (written by the worker), cancel (set non-zero to stop)] */
  ctl?: Float64Array;
}

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
  return path.resolve(__dirname, '..');
}

let cached: NativeAddon | undefined;

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  const tried: string[] = [];
  // node-gyp-build's own search (prebuilds, then build/Release and build/Debug).
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ngb = require('node-gyp-build') as ((dir: string) => NativeAddon) & { path(dir: string): string };
    let p: string | undefined;
    try {
      p = ngb.path(root);
    } catch (e) {
      tried.push(`node-gyp-build found no binary under ${root} (prebuilds/${process.platform}-${process.arch}/, build/Release/): ${(e as Error).message.split('\n')[0]}`);
    }
    if (p) {
      try {
        cached = require(p) as NativeAddon;
        return cached;
      } catch (e) {
        tried.push(`${p}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  } catch (e) {
    tried.push(`node-gyp-build could not be loaded: ${(e as Error).message}`);
  }
  const napi = process.versions.napi ?? 'unknown';
  throw new GeoEditError(
    'ERR_NATIVE_LOAD',
    [
      'geoedit: the native addon could not be loaded.',
      ...tried.map((t) => `  - ${t}`),
      `Platform ${process.platform}-${process.arch}, Node ${process.version}, N-API ${napi}.`,
      'What to do: reinstall to fetch the prebuilt binary for this platform (npm rebuild geoedit),',
      'or build from source: install cmake >= 3.18 and a C++17 compiler, then run `npx cmake-js compile --out build` in the package folder.',
    ].join('\n'),
    { tried },
  );
}
