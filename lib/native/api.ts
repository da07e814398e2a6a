// The wrapped addon: one typed method per export the library uses, each through the call wrapper
// (lib/native/call.ts). Test-only and internal exports are not here (tests reach them through
// loadNative()). Async methods take an optional CallSite, captured at the public entry point.
import { callAsync, callSync, type CallSite } from './call';
import type {
  NativeAddon, NativeCudaProbe, NativeLoraGeometry, NativeLoraSide, NativeLoraSpec, NativeParams, NativeResult, NativeSpec,
  NativeStHeader, NativeStreamSpec, NativeOutputHash,
} from './addon';

export interface LoraGeometrySpec {
  rows: number; cols: number; old: NativeLoraSide | null; new: NativeLoraSide | null;
  params: NativeParams; cNew?: Float32Array; cOld?: Float32Array; threads?: number; tensorName?: string;
}
export interface LoraMaterializeSpec { rows: number; cols: number; side: NativeLoraSide | null; r0: number; r1: number; threads?: number }
export interface LoraMergeSpec {
  rows: number; cols: number; old: NativeLoraSide | null; new: NativeLoraSide | null; cNew: Float32Array; cOld: Float32Array;
  transposed: boolean; s0: number; s1: number; base: Float32Array | Uint16Array; baseDtype: string; outDtype: string;
  threads?: number; tensorName?: string; allowNonFiniteOutput?: boolean;
}
export type NativeInfo = ReturnType<NativeAddon['info']>;

export const native = {
  info: (): NativeInfo => callSync((a) => a.info()),
  defaults: (): ReturnType<NativeAddon['defaults']> => callSync((a) => a.defaults()),
  convert: (from: string, data: Float32Array | Uint16Array, to: string): Float32Array | Uint16Array => callSync((a) => a.convert(from, data, to)),
  cudaProbe: (refresh?: boolean): NativeCudaProbe => callSync((a) => a.cudaProbe(refresh)),
  /** cuBLAS/cuSOLVER for preservation on the GPU (lib/backend.ts gpuLinalgStatus). */
  cudaPreserveStatus: (refresh?: boolean): ReturnType<NativeAddon['cudaPreserveStatus']> => callSync((a) => a.cudaPreserveStatus(refresh)),
  /** Tests only (lib/lora-geometry.ts). */
  _cudaLoraGeometry: (spec: NativeLoraSpec): { dot: Float64Array; na: Float64Array; nb: Float64Array } => callSync((a) => a._cudaLoraGeometry(spec)),
  stHeader: (file: string): NativeStHeader => callSync((a) => a.stHeader(file)),
  stHeaderBytes: (bytes: Uint8Array, name?: string): NativeStHeader => callSync((a) => a.stHeaderBytes(bytes, name)),
  editSync: (spec: NativeSpec): NativeResult => callSync((a) => a.editSync(spec)),
  loraMaterialize: (spec: LoraMaterializeSpec): Float32Array => callSync((a) => a.loraMaterialize(spec)),
  edit: (spec: NativeSpec, site?: CallSite): Promise<NativeResult> => callAsync((a) => a.edit(spec), site),
  loraGeometry: (spec: LoraGeometrySpec, site?: CallSite): Promise<NativeLoraGeometry> => callAsync((a) => a.loraGeometry(spec), site),
  loraMaterializeAsync: (spec: LoraMaterializeSpec, site?: CallSite): Promise<{ out: Float32Array }> => callAsync((a) => a.loraMaterializeAsync(spec), site),
  loraMerge: (spec: LoraMergeSpec, site?: CallSite): Promise<{ out: Float32Array | Uint16Array }> => callAsync((a) => a.loraMerge(spec), site),
  stream: (spec: NativeStreamSpec, site?: CallSite): Promise<(NativeResult | null)[]> => callAsync((a) => a.stream(spec), site),
  /** SHA-256 of open files on native threads (lib/job/hash.ts). */
  hashFiles: (spec: Parameters<NativeAddon['hashFiles']>[0], site?: CallSite): ReturnType<NativeAddon['hashFiles']> => callAsync((a) => a.hashFiles(spec), site),
  sha256Info: (): ReturnType<NativeAddon['sha256Info']> => callSync((a) => a.sha256Info()),
  /** An output file's SHA-256 as the stream writes it (lib/checkpoint/stream.ts). */
  outputHash: (prefix?: Uint8Array): NativeOutputHash => callSync((a) => a.outputHash(prefix)),
  outputHashFinish: (h: NativeOutputHash, spec: Parameters<NativeAddon['outputHashFinish']>[1], site?: CallSite): ReturnType<NativeAddon['outputHashFinish']> => callAsync((a) => a.outputHashFinish(h, spec), site),
  blasInfo: (): ReturnType<NativeAddon['blasInfo']> => callSync((a) => a.blasInfo()),
};
