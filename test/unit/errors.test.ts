// One test per bad input: a GeoEditError (or TypeError) with a stable code and a message that
// names the argument and what was expected. Nothing crashes the process.
import { describe, expect, it } from 'vitest';
import { analyzeTensor, editTensor, editTensorSync, GeoEditError, info } from '../../lib/index';
import type { EditOptions, Tensor } from '../../lib/types';
import { makeTriple } from '../support/reference';

const ok = () => makeTriple(4, 6, 1);

async function expectCode(p: () => unknown, code: string, ...parts: (string | RegExp)[]) {
  let err: unknown;
  try {
    await p();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(Error);
  const e = err as Error & { code?: string };
  expect(e.code).toBe(code);
  for (const part of parts) expect(e.message).toMatch(part);
  return e;
}

describe('bad inputs', () => {
  it('shapes that differ', async () => {
    const i = ok();
    const e = await expectCode(() => editTensor({ ...i, old: { ...makeTriple(4, 5, 1).old } }), 'ERR_SHAPE_MISMATCH', 'old.shape', '[4, 6]', '[4, 5]');
    expect(e).toBeInstanceOf(GeoEditError);
    await expectCode(() => editTensorSync({ ...i, new: { ...makeTriple(6, 4, 1).new } }), 'ERR_SHAPE_MISMATCH', 'new.shape');
  });
  it('a data length that does not match shape and dtype', async () => {
    const i = ok();
    await expectCode(() => editTensor({ ...i, base: { dtype: 'f32', shape: [4, 6], data: new Float32Array(23) } }), 'ERR_DATA_LENGTH', 'base.data', '24', '23');
  });
  it('f16 data that is not a Uint16Array is a TypeError', async () => {
    const i = ok();
    const e = await expectCode(() => editTensor({ ...i, base: { dtype: 'f16', shape: [4, 6], data: new Float32Array(24) } }), 'ERR_INVALID_ARG_TYPE', 'Uint16Array', 'base.data');
    expect(e).toBeInstanceOf(TypeError);
  });
  it('an unknown dtype', async () => {
    const i = ok();
    await expectCode(() => editTensor({ ...i, base: { ...i.base, dtype: 'f64' as Tensor['dtype'] } }), 'ERR_UNKNOWN_DTYPE', 'base.dtype', "'f64'");
    await expectCode(() => editTensor(i, { outDtype: 'int8' as Tensor['dtype'] }), 'ERR_UNKNOWN_DTYPE', 'outDtype');
  });
  it('an unknown strategy', async () => {
    await expectCode(() => editTensor(ok(), { strategy: 'ties' as EditOptions['strategy'] }), 'ERR_UNKNOWN_STRATEGY', "'ties'", 'geoedit');
  });
  it('density outside (0, 1]', async () => {
    for (const density of [0, -0.5, 1.5]) await expectCode(() => editTensor(ok(), { density }), 'ERR_INVALID_OPTION', 'density', '(0, 1]', String(density));
    await expectCode(() => editTensor(ok(), { density: NaN }), 'ERR_INVALID_OPTION', 'density');
  });
  it('temperature <= 0', async () => {
    for (const temperature of [0, -1]) await expectCode(() => editTensor(ok(), { temperature }), 'ERR_INVALID_OPTION', 'temperature', '> 0');
  });
  it('a negative kappa', async () => {
    await expectCode(() => analyzeTensor(ok(), { kappa: -0.1 }), 'ERR_INVALID_OPTION', 'kappa', '>= 0', '-0.1');
  });
  it('bandDegrees outside [0, 90]', async () => {
    await expectCode(() => editTensor(ok(), { bandDegrees: 91 }), 'ERR_INVALID_OPTION', 'bandDegrees');
  });
  it("custom without coefficients, or with the wrong length", async () => {
    await expectCode(() => editTensor(ok(), { strategy: 'custom' }), 'ERR_COEFFICIENTS', 'cNew', '4 values');
    await expectCode(() => editTensor(ok(), { strategy: 'custom', coefficients: { cNew: new Float32Array(3), cOld: new Float32Array(4) } }), 'ERR_COEFFICIENTS', 'one per row', '3');
    await expectCode(() => editTensor(ok(), { strategy: 'custom', coefficients: { cNew: new Float32Array(4).fill(NaN), cOld: new Float32Array(4) } }), 'ERR_COEFFICIENTS', 'row 0');
  });
  it('a NaN in an input names the tensor and the row', async () => {
    for (const which of ['base', 'old', 'new'] as const) {
      const i = ok();
      const data = new Float32Array(i[which].data as Float32Array);
      data[2 * 6 + 3] = NaN;
      const e = await expectCode(() => editTensor({ ...i, [which]: { ...i[which], data } }), 'ERR_NON_FINITE', which, 'row 2', 'column 3', 'allowNonFinite');
      expect(e).toBeInstanceOf(GeoEditError);
    }
  });
  it('an Infinity in a bf16 input, and allowNonFinite lets it through', async () => {
    const i = makeTriple(4, 6, 2, ['bf16', 'bf16', 'bf16']);
    const data = new Uint16Array(i.old.data);
    data[1 * 6] = 0x7f80;
    await expectCode(() => editTensor({ ...i, old: { ...i.old, data } }), 'ERR_NON_FINITE', 'old', 'row 1', 'column 0');
    const r = await editTensor({ ...i, old: { ...i.old, data } }, { allowNonFinite: true });
    expect(r.stats.region[1]).toBe(0); // a non-finite row has cos 0: orthogonal
  });
  it('negative or NaN importance', async () => {
    const i = ok();
    const imp = new Float32Array(24).fill(1);
    imp[7] = -1;
    await expectCode(
      () => editTensor(i, { importanceOld: { dtype: 'f32', shape: [4, 6], data: imp }, importanceNew: { dtype: 'f32', shape: [4, 6], data: new Float32Array(24) } }),
      'ERR_BAD_IMPORTANCE', 'importanceOld', 'row 1', 'column 1',
    );
    await expectCode(() => editTensor(i, { importanceOld: { dtype: 'f32', shape: [4, 6], data: imp } }), 'ERR_INVALID_OPTION', 'importanceNew');
  });
  it('wrong argument types are TypeErrors with a code', async () => {
    const e = await expectCode(() => editTensor(ok(), { scale: '2' as unknown as number }), 'ERR_INVALID_ARG_TYPE', 'scale', "'2'");
    expect(e).toBeInstanceOf(TypeError);
    await expectCode(() => editTensor(null as never), 'ERR_INVALID_ARG_TYPE', 'inputs');
    await expectCode(() => editTensor({ ...ok(), base: 5 as never }), 'ERR_INVALID_ARG_TYPE', 'base');
    await expectCode(() => editTensor({ ...ok(), base: { dtype: 'f32', shape: [4, -6], data: new Float32Array(24) } }), 'ERR_INVALID_ARG_TYPE', 'base.shape');
    await expectCode(() => editTensor(ok(), { threads: 1.5 }), 'ERR_INVALID_OPTION', 'threads');
  });
  it('unknown options are rejected (typo protection)', async () => {
    await expectCode(() => editTensor(ok(), { densty: 0.5 } as EditOptions), 'ERR_UNKNOWN_OPTION', "'densty'");
  });
  it.skipIf(info().backends.includes('cuda'))("backend 'cuda' without CUDA throws ERR_CUDA_UNAVAILABLE with the reason", async () => {
    await expectCode(() => editTensor(ok(), { backend: 'cuda' }), 'ERR_CUDA_UNAVAILABLE', 'CUDA');
    await expectCode(() => editTensor(ok(), { backend: 'gpu' as never }), 'ERR_INVALID_OPTION', 'backend');
  });
  it('async errors are rejections, not synchronous throws', () => {
    const p = editTensor(ok(), { density: 2 });
    expect(p).toBeInstanceOf(Promise);
    return expect(p).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });
});
