import { describe, it, expect } from 'vitest';
import { editTensor, info } from '../lib/index';

describe('smoke', () => {
  it('edits', async () => {
    const base = { dtype: 'f32' as const, shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) };
    const old = { dtype: 'f32' as const, shape: [2, 3], data: new Float32Array([1.1, 2, 3, 4, 5, 6.5]) };
    const nw = { dtype: 'f32' as const, shape: [2, 3], data: new Float32Array([0.9, 2, 3, 4, 5.2, 6]) };
    const r = await editTensor({ base, old, new: nw }, { strategy: 'task-arithmetic' });
    console.log(info(), r);
    expect(r.out.data[0]).toBeCloseTo(0.9);
  });
});
