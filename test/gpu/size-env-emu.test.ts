// One meaning of a size: $GEOEDIT_CUDA_MEMORY reads '1KB' as 1000 bytes and '1KiB' as 1024, both
// where lib/ resolves it (editTensor) and where the core reads it itself (a direct native call
// without cudaMemoryLimit), on the CPU emulator of the CUDA plugin.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cudaStatus, editTensor } from '../../lib/index';
import { loadNative, packageRoot } from '../../lib/native';
import { nativeParams, resolveParams } from '../../lib/options';

const plugin = path.join(packageRoot(), 'build', 'Release', 'emu', 'geoedit_cuda.so');
const have = fs.existsSync(plugin);
if (have) {
  process.env.GEOEDIT_CUDA_PLUGIN = plugin;
  process.env.GEOEDIT_CUDA_SKIP_DRIVER_CHECK = '1';
  delete process.env.GEOEDIT_BACKEND;
}
const saved = process.env.GEOEDIT_CUDA_MEMORY;

const t = (v: number) => ({ dtype: 'f32' as const, shape: [64, 256], data: Float32Array.from({ length: 64 * 256 }, (_, i) => Math.sin(i * 0.37 + v)) });

describe.skipIf(!have)('$GEOEDIT_CUDA_MEMORY sizes (emulator)', () => {
  afterEach(() => {
    if (saved === undefined) delete process.env.GEOEDIT_CUDA_MEMORY;
    else process.env.GEOEDIT_CUDA_MEMORY = saved;
  });

  it('lib/ and the core read 1KB as 1000 bytes and 1KiB as 1024', async () => {
    expect(cudaStatus(true).available).toBe(true);
    for (const [v, bytes] of [['1KB', 1000], ['1KiB', 1024], ['1k', 1000]] as const) {
      process.env.GEOEDIT_CUDA_MEMORY = v;
      const viaLib = await editTensor({ base: t(0), old: t(1), new: t(2) }, { backend: 'cuda' }).catch((e) => e);
      expect(viaLib.message, `lib: ${v}`).toContain(`cudaMemoryLimit ${bytes} bytes is too small`);
      const spec = {
        rows: 64, cols: 256, base: t(0).data, baseDtype: 'f32', old: t(1).data, oldDtype: 'f32', new: t(2).data, newDtype: 'f32',
        outDtype: 'f32', wantOut: true, threads: 0, backend: 'cuda' as const, params: nativeParams(resolveParams({})),
      };
      const viaCore = await loadNative().edit(spec).catch((e) => e);
      expect(viaCore.message, `core: ${v}`).toContain(`cudaMemoryLimit ${bytes} bytes is too small`);
    }
  });
});
