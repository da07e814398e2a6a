// The GPU suite on the CPU emulator of the CUDA plugin (build/Release/emu/geoedit_cuda.so: the
// plugin's own .cu sources compiled as C++, one fiber per CUDA thread, 64 threads per block).
// It checks the kernels' logic — reductions, barriers, warp shuffles, radix select and its tie
// rule, streaming in chunks, the C ABI and the error paths — on machines with no GPU. It says
// nothing about speed or the GPU's memory model: test/gpu/cuda.test.ts on a GPU does that.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cudaStatus } from '../../lib/index';
import { packageRoot } from '../../lib/native';
import { gpuSuite } from '../support/cuda-suite';

const plugin = path.join(packageRoot(), 'build', 'Release', 'emu', 'geoedit_cuda.so');
const have = fs.existsSync(plugin);
if (have) {
  // Before the first probe of this process (the status is cached).
  process.env.GEOEDIT_CUDA_PLUGIN = plugin;
  process.env.GEOEDIT_CUDA_SKIP_DRIVER_CHECK = '1';
  delete process.env.GEOEDIT_BACKEND;
}
const reason = have ? '' : `the emulated plugin is not built (${plugin}; CMake option GEOEDIT_CUDA_EMU)`;
if (!have) console.log(`[cuda-emu.test] skipped — ${reason}`);

describe.skipIf(!have)('the CPU emulator of the CUDA plugin', () => {
  it('loads through the same probe as the real plugin', () => {
    const s = cudaStatus(true);
    expect(s.kind).toBe('ok');
    expect(s.pluginPath).toBe(plugin);
    expect(s.device?.name).toMatch(/emulator/);
  });
});

gpuSuite(`CUDA kernels on the CPU emulator vs the CPU reference (SPEC §5)${have ? '' : ` — skipped: ${reason}`}`, have, { emulator: true });
