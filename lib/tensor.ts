import { GeoEditError, describe, typeError } from './errors';
import { checkDtype } from './options';
import type { DType, Tensor } from './types';

export function bytesPerElement(d: DType): number {
  return d === 'f32' ? 4 : 2;
}

/** SPEC §2: [m, n] with m = shape[0], n = product(shape[1:]); 1-D is [1, n]; 0-D is [1, 1]. */
export function matrixView(shape: readonly number[]): { rows: number; cols: number } {
  if (shape.length === 0) return { rows: 1, cols: 1 };
  if (shape.length === 1) return { rows: 1, cols: shape[0]! };
  let cols = 1;
  for (let i = 1; i < shape.length; i++) cols *= shape[i]!;
  return { rows: shape[0]!, cols };
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Checks one tensor argument; returns its dtype. */
export function checkTensor(t: unknown, name: string): DType {
  if (t === null || typeof t !== 'object') throw typeError(`Expected a tensor { dtype, shape, data } for ${name} but received ${describe(t)}`);
  const { dtype, shape, data } = t as Tensor;
  const d = checkDtype(dtype, `${name}.dtype`);
  if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) {
    throw typeError(`Expected an array of non-negative integers for ${name}.shape but received ${describe(shape)}`);
  }
  const want = d === 'f32' ? Float32Array : Uint16Array;
  if (!(data instanceof want)) {
    throw typeError(`Expected a ${want.name} for ${name}.data (dtype '${d}'${d === 'f32' ? '' : ', raw bits'}) but received ${describe(data)}`);
  }
  const n = elementCount(shape);
  if (data.length !== n) {
    throw new GeoEditError('ERR_DATA_LENGTH', `Expected ${n} elements in ${name}.data for shape [${shape.join(', ')}] but received ${data.length}`, { argument: name });
  }
  return d;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function checkSameShape(ref: Tensor, refName: string, t: Tensor, name: string): void {
  if (!sameShape(ref.shape, t.shape)) {
    throw new GeoEditError('ERR_SHAPE_MISMATCH', `Expected ${name}.shape to equal ${refName}.shape [${ref.shape.join(', ')}] but received [${t.shape.join(', ')}]`, { argument: name });
  }
}
