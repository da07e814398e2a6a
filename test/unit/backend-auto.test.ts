// The 'auto' backend rule (lib/backend.ts chooseBackend, issue 17) with a mocked CUDA probe:
// host-memory streaming jobs run on the CPU (the H200 measurements), compute-bound work and
// device-resident data on the GPU, no usable GPU means the CPU; explicit choices are obeyed, and
// every choice says why. Not measured on a GPU here (none in this session).
import { describe, expect, it } from 'vitest';
import { chooseBackend, type CudaStatus } from '../../lib/backend';

const gpu: CudaStatus = { available: true, reason: '', kind: 'ok', pluginPath: '/x/geoedit_cuda.so', tried: [], device: { name: 'NVIDIA H200' } as CudaStatus['device'] };
const none: CudaStatus = { available: false, reason: 'no driver: libcuda.so.1 could not be loaded', kind: 'no-driver', pluginPath: '', tried: [] };

describe("chooseBackend ('auto')", () => {
  it('host-memory edits and checkpoints run on the CPU even with a usable GPU, and say why', () => {
    for (const kind of ['tensor', 'checkpoint'] as const) {
      const c = chooseBackend('auto', { kind, location: 'host' }, gpu);
      expect(c).toMatchObject({ name: 'cpu', requested: 'auto' });
      expect(c.reason).toMatch(/host-memory/);
      expect(c.reason).toMatch(/h200-2026-11-28/);
    }
  });
  it('compute-bound work and device-resident data go to the GPU', () => {
    expect(chooseBackend('auto', { kind: 'preserve', computeBound: true }, gpu)).toMatchObject({ name: 'cuda', requested: 'auto' });
    expect(chooseBackend('auto', { kind: 'tensor', location: 'device' }, gpu).name).toBe('cuda');
  });
  it('without a usable GPU everything runs on the CPU, the reason naming the probe', () => {
    const c = chooseBackend('auto', { kind: 'preserve', computeBound: true }, none);
    expect(c.name).toBe('cpu');
    expect(c.reason).toContain(none.reason);
  });
  it("explicit 'cpu' and 'cuda' are obeyed; 'cuda' without a GPU throws ERR_CUDA_UNAVAILABLE", () => {
    expect(chooseBackend('cpu', { kind: 'preserve', computeBound: true }, gpu)).toMatchObject({ name: 'cpu', requested: 'cpu' });
    expect(chooseBackend('cuda', { kind: 'tensor' }, gpu)).toMatchObject({ name: 'cuda', requested: 'cuda' });
    expect(() => chooseBackend('cuda', { kind: 'tensor' }, none)).toThrow(expect.objectContaining({ code: 'ERR_CUDA_UNAVAILABLE' }));
    expect(() => chooseBackend('gpu', { kind: 'tensor' }, gpu)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });
  it('$GEOEDIT_BACKEND applies when the option is absent', () => {
    const prev = process.env.GEOEDIT_BACKEND;
    process.env.GEOEDIT_BACKEND = 'cuda';
    try {
      const c = chooseBackend(undefined, { kind: 'tensor' }, gpu);
      expect(c).toMatchObject({ name: 'cuda', requested: 'cuda' });
      expect(c.reason).toContain('GEOEDIT_BACKEND');
    } finally {
      if (prev === undefined) delete process.env.GEOEDIT_BACKEND; else process.env.GEOEDIT_BACKEND = prev;
    }
  });
});
