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
  wantOut: boolean;
  threads: number;
  simd?: number;
  tensorName?: string;
  rowOffset?: number;
  /** 'cuda' runs on the CUDA plugin; anything else on the CPU core. */
  backend?: 'cpu' | 'cuda';
  /** Device bytes a CUDA call may use (0: $GEOEDIT_CUDA_MEMORY or the plugin's default). */
  cudaMemoryLimit?: number;
  params: Record<string, number | string | boolean>;
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
  cudaProbe(refresh?: boolean): NativeCudaProbe;
  loraGeometry(spec: NativeLoraSpec): { dot: Float64Array; na: Float64Array; nb: Float64Array };
  cudaBench(spec: NativeCudaBenchSpec): { kernelMs: number; kernelGBps: number; copyGBps: number; checksum: number };
}

export interface NativeCudaDevice {
  name: string;
  memory: number;
  computeCapability: string;
  driverVersion: string;
  runtimeVersion: string;
  multiprocessors: number;
  deviceCount: number;
  index: number;
}

export interface NativeCudaProbe {
  available: boolean;
  reason: string;
  kind: string;
  pluginPath: string;
  tried: string[];
  device: NativeCudaDevice | null;
  versions?: { driverVersion: string; runtimeVersion: string };
}

export interface NativeLoraSpec {
  m: number;
  n: number;
  rOld: number;
  rNew: number;
  aOld: Float32Array;
  bOld: Float32Array;
  aNew: Float32Array;
  bNew: Float32Array;
  sOld: number;
  sNew: number;
  backend?: 'cpu' | 'cuda';
}

export interface NativeCudaBenchSpec {
  rows: number;
  cols: number;
  dtype: string;
  reps: number;
  params: Record<string, number | string | boolean>;
  withImportance?: boolean;
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
