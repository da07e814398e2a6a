// The 'auto' backend rule (lib/backend.ts chooseBackend, issue 17) with a mocked CUDA probe:
// host-memory streaming jobs run on the CPU (the H200 measurements), preserved jobs by the
// preservation rule, device-resident data on the GPU, no usable GPU means the CPU; explicit choices are obeyed, and
// every choice says why. Not measured on a GPU here (none in this session).
import { describe, expect, it } from 'vitest';
import { PRESERVE_RULE, chooseBackend, describePreserveAuto, preserveRule, type CudaStatus, type GpuLinalgStatus, type PreserveWork } from '../../lib/backend';

const gpu: CudaStatus = { available: true, reason: '', kind: 'ok', pluginPath: '/x/geoedit_cuda.so', tried: [], device: { name: 'NVIDIA H200' } as CudaStatus['device'] };
const none: CudaStatus = { available: false, reason: 'no driver: libcuda.so.1 could not be loaded', kind: 'no-driver', pluginPath: '', tried: [] };
const blas: GpuLinalgStatus = { available: true, reason: '' };
const noBlas: GpuLinalgStatus = { available: false, reason: 'libcublas.so.13, .12, .11 not found' };

/** A checkpoint of `tensors` f32 [rows, d] tensors, every one with its own ridge statistic (3 input files of 4 bytes per element streamed). */
function work(tensors: number, rows: number, d: number, bytesPerElement = 12): PreserveWork {
  return { gemmFlops: tensors * 4 * rows * d * d, buildFlops: tensors * 2.67 * d ** 3, bytes: tensors * rows * d * bytesPerElement, maxDim: d };
}

describe("chooseBackend ('auto')", () => {
  it('host-memory edits and checkpoints run on the CPU even with a usable GPU, and say why', () => {
    for (const kind of ['tensor', 'checkpoint'] as const) {
      const c = chooseBackend('auto', { kind, location: 'host' }, gpu);
      expect(c).toMatchObject({ name: 'cpu', requested: 'auto' });
      expect(c.reason).toMatch(/host-memory/);
      expect(c.reason).toMatch(/h200-2026-11-28/);
    }
  });
  it('device-resident data goes to the GPU', () => {
    expect(chooseBackend('auto', { kind: 'tensor', location: 'device' }, gpu)).toMatchObject({ name: 'cuda', requested: 'auto' });
  });
  it('without a usable GPU everything runs on the CPU, the reason naming the probe', () => {
    const c = chooseBackend('auto', { kind: 'tensor', location: 'device' }, none);
    expect(c.name).toBe('cpu');
    expect(c.reason).toContain(none.reason);
  });
  it("explicit 'cpu' and 'cuda' are obeyed; 'cuda' without a GPU throws ERR_CUDA_UNAVAILABLE", () => {
    expect(chooseBackend('cpu', { kind: 'tensor', location: 'device' }, gpu)).toMatchObject({ name: 'cpu', requested: 'cpu' });
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

  it('a preserved job: the GPU when its projection outweighs the GPU\'s streaming penalty (a 4096-wide layer), the CPU for tiny widths (tiny-gpt2)', () => {
    const big = chooseBackend('auto', { kind: 'preserve', location: 'host', preserve: work(4, 4096, 4096) }, gpu, blas);
    expect(big).toMatchObject({ name: 'cuda', requested: 'auto' });
    expect(big.reason).toMatch(/^auto: preserved job: the projection .* d up to 4096\) is estimated at [\d.e+]+x the streaming time on the CPU, above the 2x/);
    expect(big.reason).toMatch(/not measured on a GPU/);
    const tiny = chooseBackend('auto', { kind: 'preserve', location: 'host', preserve: work(8, 6, 3) }, gpu, blas);
    expect(tiny.name).toBe('cpu');
    expect(tiny.reason).toMatch(/below the 2x/);
    expect(tiny.reason).toMatch(/host-memory/);
  });
  it('the preservation rule flips where the estimate says: projection CPU time vs (penalty − 1) × bytes streamed', () => {
    const R = PRESERVE_RULE;
    const bytes = 1e9, loss = (R.gpuStreamPenalty - 1) * bytes;
    const at = (gemmBytes: number): PreserveWork => ({ gemmFlops: gemmBytes * R.cpuGemmFlopPerByte, buildFlops: 0, bytes, maxDim: 1024 });
    expect(preserveRule(at(loss * 1.01), blas).gpu).toBe(true);
    expect(preserveRule(at(loss * 0.99), blas).gpu).toBe(false);
    // the f64 builds count at their own (slower) CPU rate
    expect(preserveRule({ gemmFlops: 0, buildFlops: loss * 1.01 * R.cpuBuildFlopPerByte, bytes, maxDim: 8192 }, blas).gpu).toBe(true);
    // widths: a fully preserved f32 layer of 4·d rows with its own statistic crosses over between d = 128 and d = 256
    expect(preserveRule(work(1, 4 * 128, 128), blas).gpu).toBe(false);
    expect(preserveRule(work(1, 4 * 256, 256), blas).gpu).toBe(true);
  });
  it('a preserved job without a usable cuBLAS/cuSOLVER, or without a GPU, runs on the CPU and says why', () => {
    const c = chooseBackend('auto', { kind: 'preserve', location: 'host', preserve: work(4, 4096, 4096) }, gpu, noBlas);
    expect(c.name).toBe('cpu');
    expect(c.reason).toContain(noBlas.reason);
    const n = chooseBackend('auto', { kind: 'preserve', location: 'host', preserve: work(4, 4096, 4096) }, none, blas);
    expect(n).toMatchObject({ name: 'cpu' });
    expect(n.reason).toContain(none.reason);
    // explicit choices are obeyed whatever the rule says
    expect(chooseBackend('cpu', { kind: 'preserve', preserve: work(4, 4096, 4096) }, gpu, blas).name).toBe('cpu');
    expect(chooseBackend('cuda', { kind: 'preserve', preserve: work(8, 6, 3) }, gpu, blas).name).toBe('cuda');
  });
  it('describePreserveAuto (info().preserveBackendReason) names the rule or what is missing', () => {
    expect(describePreserveAuto(none, blas)).toContain(none.reason);
    expect(describePreserveAuto(gpu, noBlas)).toContain(noBlas.reason);
    expect(describePreserveAuto(gpu, blas)).toMatch(/^per job: the GPU when .* exceeds 2x the input bytes/);
  });
});

