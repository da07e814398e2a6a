// safetensors files: read a header (validated by the native core), read one small tensor, and
// write a file atomically (temp file beside the target, then rename). Large files are streamed by
// lib/checkpoint.ts; these helpers are for adapters, tests and small models.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { GeoEditError, describe, typeError } from './errors';
import { native, type NativeStHeader } from './native';
import { tempPathBeside } from './job/cleanup';
import type { DType, Tensor } from './types';

/** Element types as safetensors writes them. */
export type StDtype =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'F8_E8M0' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64' | 'C64' | 'F4' | 'F6_E2M3' | 'F6_E3M2';

export const ST_DTYPE_SIZE: Readonly<Record<StDtype, number>> = Object.freeze({
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8, C64: 8,
  // Sub-byte types (packed; a tensor's bit count must be a multiple of 8).
  F4: 0.5, F6_E2M3: 0.75, F6_E3M2: 0.75,
});

/** The dtypes the edit kernels read and write; every other dtype is copied byte for byte. */
export const EDITABLE_ST_DTYPES: Readonly<Record<string, DType>> = Object.freeze({ F32: 'f32', F16: 'f16', BF16: 'bf16' });

export function stDtypeOf(d: DType): StDtype {
  return d === 'f32' ? 'F32' : d === 'f16' ? 'F16' : 'BF16';
}

export interface SafetensorsTensorInfo {
  name: string;
  dtype: StDtype;
  shape: number[];
  /** Absolute byte offsets of the tensor's data in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  /** File size in bytes. */
  size: number;
  /** Where the data section starts (8 + header length). */
  dataOffset: number;
  metadata: Record<string, string> | null;
  /** In data order. */
  tensors: SafetensorsTensorInfo[];
}

export type StTypedArray =
  | Float32Array | Float64Array | Uint16Array | Int16Array | Uint8Array | Int8Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

export interface RawTensor {
  dtype: StDtype;
  shape: number[];
  /** F32: Float32Array; F16/BF16: Uint16Array (raw bits); F64: Float64Array; I64: BigInt64Array; … */
  data: StTypedArray;
}

function fromNativeHeader(p: string, h: NativeStHeader): SafetensorsHeader {
  return {
    path: p,
    size: h.fileSize,
    dataOffset: h.dataOffset,
    metadata: h.metadata,
    tensors: h.tensors.map((t) => ({
      name: t.name,
      dtype: t.dtype as StDtype,
      shape: t.shape,
      begin: h.dataOffset + t.begin,
      end: h.dataOffset + t.end,
    })),
  };
}

function checkPath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p.length === 0) throw typeError(`Expected a file path for ${what} but received ${describe(p)}`);
  return p;
}

/** Reads and validates a safetensors header (only the header bytes are read). Synchronous. */
export function readSafetensorsHeaderSync(file: string): SafetensorsHeader {
  checkPath(file, 'path');
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new GeoEditError('ERR_NOT_FOUND', `${file}: no such file (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { file });
  }
  if (!st.isFile()) throw new GeoEditError('ERR_BAD_SAFETENSORS', `${file}: not a regular file`, { file });
  try {
    return fromNativeHeader(file, native.stHeader(file));
  } catch (err) {
    if (err instanceof GeoEditError && !err.details) (err as { details?: Record<string, unknown> }).details = { file };
    throw err;
  }
}

/** Reads and validates a safetensors header (only the header bytes are read). */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  return readSafetensorsHeaderSync(file);
}

/** Validates a whole safetensors file held in memory; offsets are into `bytes`. */
export function parseSafetensorsBytes(bytes: Uint8Array, name = '<bytes>'): SafetensorsHeader {
  if (!(bytes instanceof Uint8Array)) throw typeError(`Expected a Uint8Array but received ${describe(bytes)}`);
  return fromNativeHeader(name, native.stHeaderBytes(bytes, name));
}

export function typedArrayFor(dtype: StDtype, buf: ArrayBuffer, byteOffset: number, byteLength: number): StTypedArray {
  const n = byteLength / ST_DTYPE_SIZE[dtype];
  switch (dtype) {
    case 'F32': return new Float32Array(buf, byteOffset, n);
    case 'F64': return new Float64Array(buf, byteOffset, n);
    case 'F16': case 'BF16': case 'U16': return new Uint16Array(buf, byteOffset, n);
    case 'I16': return new Int16Array(buf, byteOffset, n);
    case 'I8': return new Int8Array(buf, byteOffset, n);
    case 'I32': return new Int32Array(buf, byteOffset, n);
    case 'U32': return new Uint32Array(buf, byteOffset, n);
    case 'I64': return new BigInt64Array(buf, byteOffset, n);
    case 'U64': return new BigUint64Array(buf, byteOffset, n);
    case 'C64': return new Float32Array(buf, byteOffset, n * 2);
    default: return new Uint8Array(buf, byteOffset, byteLength); // U8, BOOL, F8_*, F4, F6_* (packed)
  }
}

const byNameOf = new WeakMap<SafetensorsHeader, Map<string, SafetensorsHeader['tensors'][number]>>();

/** A header's tensors by name (built once per header: reading every tensor of a file stays linear). */
function tensorByName(h: SafetensorsHeader, name: string): SafetensorsHeader['tensors'][number] | undefined {
  let m = byNameOf.get(h);
  if (!m) { m = new Map(h.tensors.map((x) => [x.name, x])); byNameOf.set(h, m); }
  return m.get(name);
}

/**
 * One tensor read into memory (for small tensors; checkpoints are streamed). `fd`: read through this
 * open descriptor of `file` (a job's input, checked to be the file validated), else `file` is opened.
 */
export async function readTensor(file: string, name: string, header?: SafetensorsHeader, fd?: number): Promise<RawTensor> {
  const h = header ?? readSafetensorsHeaderSync(file);
  const t = tensorByName(h, name);
  if (!t) throw new GeoEditError('ERR_MISSING_TENSOR', `${file}: no tensor '${name}'`, { file, tensor: name });
  const len = t.end - t.begin;
  const buf = new ArrayBuffer(len);
  const fh = fd === undefined ? await fs.promises.open(file, 'r') : null;
  const read = (into: Uint8Array, pos: number) => (fh
    ? fh.read(into, 0, into.length, pos).then((r) => r.bytesRead)
    : new Promise<number>((resolve, reject) => fs.read(fd!, into, 0, into.length, pos, (e, n) => (e ? reject(e) : resolve(n)))));
  try {
    let got = 0;
    while (got < len) {
      const bytesRead = await read(new Uint8Array(buf, got, len - got), t.begin + got);
      if (bytesRead === 0) throw new GeoEditError('ERR_BAD_SAFETENSORS', `${file}, tensor '${name}': unexpected end of file`, { file, tensor: name });
      got += bytesRead;
    }
  } finally {
    await fh?.close();
  }
  return { dtype: t.dtype, shape: [...t.shape], data: typedArrayFor(t.dtype, buf, 0, len) };
}

/** A geoedit Tensor (f32/f16/bf16) from a raw tensor; ERR_UNSUPPORTED for other dtypes. */
export function toTensor(raw: RawTensor, name = 'tensor'): Tensor {
  const d = EDITABLE_ST_DTYPES[raw.dtype];
  if (!d) throw new GeoEditError('ERR_UNSUPPORTED', `${name}: dtype ${raw.dtype} cannot be edited (only F32, F16, BF16)`, { tensor: name });
  return { dtype: d, shape: [...raw.shape], data: raw.data as Float32Array | Uint16Array };
}

export interface TensorToWrite {
  name: string;
  /** 'F32' | 'BF16' | … (the geoedit names 'f32' | 'f16' | 'bf16' are accepted too). */
  dtype: StDtype | DType;
  shape: number[];
  data: ArrayBufferView;
}

export interface PlannedEntry {
  name: string;
  dtype: StDtype;
  shape: number[];
  /** Relative to the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsPlan {
  header: Buffer;
  dataOffset: number;
  entries: PlannedEntry[];
  size: number;
}

function normDtype(d: unknown, name: string): StDtype {
  if (d === 'f32' || d === 'f16' || d === 'bf16') return stDtypeOf(d);
  if (typeof d === 'string' && Object.prototype.hasOwnProperty.call(ST_DTYPE_SIZE, d)) return d as StDtype;
  throw new GeoEditError('ERR_UNKNOWN_DTYPE', `Expected a safetensors dtype (F32, F16, BF16, I64, …) for tensor '${name}' but received ${describe(d)}`, { tensor: name });
}

/** Lays out a file: the header (padded with spaces to 8 bytes, as the reference does) and offsets. */
export function planSafetensors(
  tensors: Array<{ name: string; dtype: StDtype | DType; shape: number[] }>,
  metadata?: Record<string, string> | null,
): SafetensorsPlan {
  const obj: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw typeError(`Expected string metadata values but '${k}' is ${describe(v)}`);
    }
    obj.__metadata__ = metadata;
  }
  const seen = new Set<string>();
  const entries: PlannedEntry[] = [];
  let off = 0;
  for (const t of tensors) {
    if (typeof t.name !== 'string' || t.name.length === 0 || t.name === '__metadata__') {
      throw typeError(`Expected a non-empty tensor name (not '__metadata__') but received ${describe(t.name)}`);
    }
    if (seen.has(t.name)) throw new GeoEditError('ERR_INVALID_OPTION', `duplicate tensor name '${t.name}'`, { tensor: t.name });
    seen.add(t.name);
    const dtype = normDtype(t.dtype, t.name);
    if (!Array.isArray(t.shape) || !t.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      throw typeError(`Expected an array of non-negative integers for the shape of '${t.name}' but received ${describe(t.shape)}`);
    }
    let n = 1;
    for (const s of t.shape) n *= s;
    const bytes = n * ST_DTYPE_SIZE[dtype];
    if (!Number.isInteger(bytes)) throw new GeoEditError('ERR_DATA_LENGTH', `tensor '${t.name}': ${n} elements of ${dtype} are not a whole number of bytes`, { tensor: t.name });
    entries.push({ name: t.name, dtype, shape: [...t.shape], begin: off, end: off + bytes });
    obj[t.name] = { dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(obj);
  const raw = Buffer.byteLength(json, 'utf8');
  const padded = Math.ceil(raw / 8) * 8;
  json += ' '.repeat(padded - raw);
  const header = Buffer.alloc(8 + padded);
  header.writeBigUInt64LE(BigInt(padded), 0);
  header.write(json, 8, 'utf8');
  return { header, dataOffset: 8 + padded, entries, size: 8 + padded + off };
}

export { tempPathBeside };

/** Writes a safetensors file atomically: a temp file beside `file`, renamed into place when complete. */
export async function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string> | null): Promise<void> {
  checkPath(file, 'path');
  if (!Array.isArray(tensors)) throw typeError(`Expected an array of tensors but received ${describe(tensors)}`);
  const plan = planSafetensors(tensors, metadata);
  tensors.forEach((t, i) => {
    if (!ArrayBuffer.isView(t.data)) throw typeError(`Expected an ArrayBufferView for the data of '${t.name}' but received ${describe(t.data)}`);
    const e = plan.entries[i]!;
    if (t.data.byteLength !== e.end - e.begin) {
      throw new GeoEditError('ERR_DATA_LENGTH', `tensor '${t.name}': shape [${t.shape.join(', ')}] × ${e.dtype} needs ${e.end - e.begin} bytes but data holds ${t.data.byteLength}`, { tensor: t.name });
    }
  });
  const tmp = tempPathBeside(file);
  const fh = await fs.promises.open(tmp, 'wx');
  try {
    try {
      await fh.write(plan.header, 0, plan.header.length, 0);
      let pos = plan.dataOffset;
      for (const t of tensors) {
        const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        let done = 0;
        while (done < b.length) {
          const { bytesWritten } = await fh.write(b, done, b.length - done, pos + done);
          done += bytesWritten;
        }
        pos += b.length;
      }
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    if (e instanceof GeoEditError || e instanceof TypeError) throw e;
    throw new GeoEditError('ERR_IO', `${file}: write failed: ${(e as Error).message}`, { file });
  }
}
