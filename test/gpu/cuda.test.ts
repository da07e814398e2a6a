// The CUDA backend: what runs everywhere (probe, reasons, backend choice, plugin loading without a
// driver), and the GPU suite that holds every kernel and option to the CPU reference (SPEC §5),
// skipped with the probe's reason where no usable GPU is present.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { analyzeTensor, cudaStatus, editTensor, editTensorSync, info, GeoEditError } from '../../lib/index';
import { loadNative, packageRoot } from '../../lib/native';
import { _cudaLoraGeometry } from '../../lib/lora-geometry';
import { gpuSuite, makeCase } from '../support/cuda-suite';
import { rng } from '../support/prng';

const root = packageRoot();
const status = cudaStatus();
const gpu = status.available;
const skipReason = gpu ? '' : `no usable CUDA GPU: ${status.reason}`;
if (!gpu) console.log(`[cuda.test] GPU suite skipped — ${skipReason}`);

// ---- everywhere ------------------------------------------------------------------------------
describe('CUDA backend: probe and choice (any machine)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ['GEOEDIT_BACKEND', 'GEOEDIT_CUDA_PLUGIN', 'GEOEDIT_CUDA_SKIP_DRIVER_CHECK']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    cudaStatus(true);
  });

  it('the probe answers with a known kind and, when unavailable, a readable reason', () => {
    const s = cudaStatus();
    expect(['ok', 'plugin-missing', 'no-driver', 'plugin-load', 'no-device', 'too-old', 'error']).toContain(s.kind);
    expect(s.available).toBe(s.kind === 'ok');
    if (!s.available) expect(s.reason.length).toBeGreaterThan(20);
    else expect(s.device?.name.length).toBeGreaterThan(0);
  });

  it('the plugin file exists after a CUDA-enabled build', (ctx) => {
    const cache = path.join(root, 'build', 'CMakeCache.txt');
    const text = fs.existsSync(cache) ? fs.readFileSync(cache, 'utf8') : '';
    const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' }).status === 0;
    const off = /^GEOEDIT_CUDA:STRING=OFF$/m.test(text);
    if (!nvcc || off || !text) ctx.skip(`not a CUDA-enabled build (nvcc ${nvcc ? 'found' : 'not found'}, GEOEDIT_CUDA ${off ? 'OFF' : 'AUTO/ON'}, build cache ${text ? 'present' : 'absent'})`);
    const plugin = path.join(root, 'build', 'Release', 'plugins', 'geoedit_cuda.so');
    expect(fs.existsSync(plugin), plugin).toBe(true);
    if (!process.env.GEOEDIT_CUDA_PLUGIN) expect(status.tried).toContain(plugin);
    // It is not a .node, so node-gyp-build never mistakes it for the addon.
    expect(fs.readdirSync(path.join(root, 'build', 'Release')).filter((f) => f.endsWith('.node'))).toEqual(['geoedit.node']);
  });

  it.skipIf(gpu)("backend 'cuda' throws ERR_CUDA_UNAVAILABLE naming the reason", async () => {
    const c = makeCase(4, 8, 1);
    const err = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda' }).catch((e) => e);
    expect(err).toBeInstanceOf(GeoEditError);
    expect(err.code).toBe('ERR_CUDA_UNAVAILABLE');
    expect(err.message).toContain(status.reason);
    expect(() => editTensorSync({ base: c.base, old: c.old, new: c.new }, { backend: 'cuda' })).toThrow(/CUDA is unavailable/);
    process.env.GEOEDIT_BACKEND = 'cuda';
    const e2 = await analyzeTensor({ base: c.base, old: c.old, new: c.new }).catch((e) => e);
    expect(e2.code).toBe('ERR_CUDA_UNAVAILABLE');
    expect(e2.message).toContain('GEOEDIT_BACKEND');
  });

  it.skipIf(gpu)("'auto' (option, default and GEOEDIT_BACKEND) runs on the CPU with the CPU's bytes", async () => {
    const c = makeCase(12, 33, 2);
    const cpu = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'cpu' });
    const auto = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'auto' });
    const dflt = await editTensor({ base: c.base, old: c.old, new: c.new });
    process.env.GEOEDIT_BACKEND = 'auto';
    const env = editTensorSync({ base: c.base, old: c.old, new: c.new });
    for (const r of [auto, dflt, env]) expect(Buffer.from(r.out.data.buffer).equals(Buffer.from(cpu.out.data.buffer))).toBe(true);
    expect(info().backend).toBe('cpu');
  });

  it('info() reports the CUDA status', () => {
    const i = info();
    if (gpu) {
      expect(i.backends).toContain('cuda');
      expect(i.cudaStatus).toBe('available');
      expect(i.cuda).toMatchObject({ name: expect.any(String), computeCapability: expect.stringMatching(/^\d+\.\d$/), driverVersion: expect.any(String), runtimeVersion: expect.any(String), memory: expect.any(Number) });
    } else {
      expect(i.backends).toEqual(['cpu']);
      expect(i.cuda).toBeNull();
      expect(i.cudaStatus).toBe(status.reason);
      expect(i.cudaStatus).toMatch(/^(plugin missing|no driver|plugin failed to load|no device|too old|error):/);
    }
  });

  it('bad backend values are rejected with a stable code', async () => {
    const c = makeCase(2, 4, 3);
    const e = await editTensor({ base: c.base, old: c.old, new: c.new }, { backend: 'gpu' as never }).catch((x) => x);
    expect(e.code).toBe('ERR_INVALID_OPTION');
    process.env.GEOEDIT_BACKEND = 'metal';
    const e2 = await editTensor({ base: c.base, old: c.old, new: c.new }).catch((x) => x);
    expect(e2.code).toBe('ERR_INVALID_OPTION');
    expect(e2.message).toContain('GEOEDIT_BACKEND');
    delete process.env.GEOEDIT_BACKEND;
    const e3 = await editTensor({ base: c.base, old: c.old, new: c.new }, { cudaMemoryLimit: -1 }).catch((x) => x);
    expect(e3.code).toBe('ERR_INVALID_OPTION');
    const e4 = await editTensor({ base: c.base, old: c.old, new: c.new }, { cudaMemoryLimit: '1G' as never }).catch((x) => x);
    expect(e4.code).toBe('ERR_INVALID_ARG_TYPE');
  });

  it('a missing plugin is its own reason, listing the path looked at', () => {
    process.env.GEOEDIT_CUDA_PLUGIN = path.join(os.tmpdir(), 'geoedit-no-such-plugin', 'geoedit_cuda.so');
    const s = cudaStatus(true);
    expect(s.available).toBe(false);
    expect(s.kind).toBe('plugin-missing');
    expect(s.reason).toContain(process.env.GEOEDIT_CUDA_PLUGIN);
    expect(info().cudaStatus).toBe(s.reason);
  });

  it('a plugin file that is not a shared library fails to load with the dlopen error (no crash)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-cuda-'));
    const bad = path.join(dir, 'geoedit_cuda.so');
    fs.writeFileSync(bad, 'not an ELF file');
    process.env.GEOEDIT_CUDA_PLUGIN = bad;
    process.env.GEOEDIT_CUDA_SKIP_DRIVER_CHECK = '1';
    const s = cudaStatus(true);
    expect(s.kind).toBe('plugin-load');
    expect(s.reason).toMatch(/^plugin failed to load: dlopen\(.*geoedit_cuda\.so\) failed: /);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('loading the real plugin without a driver fails gracefully in a fresh process', (ctx) => {
    const plugin = path.join(root, 'build', 'Release', 'plugins', 'geoedit_cuda.so');
    if (!fs.existsSync(plugin)) ctx.skip('the plugin is not built here');
    if (gpu) ctx.skip('a driver and a GPU are present');
    const addon = loadNative() as unknown as { __path?: string };
    void addon;
    const script = `const a = require(${JSON.stringify(path.join(root, 'build', 'Release', 'geoedit.node'))});
      const s1 = a.cudaProbe();
      process.env.GEOEDIT_CUDA_SKIP_DRIVER_CHECK = '1';
      const s2 = a.cudaProbe(true);
      process.stdout.write(JSON.stringify([s1, s2]));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, GEOEDIT_CUDA_PLUGIN: '' } });
    expect(r.status, r.stderr).toBe(0);
    const [s1, s2] = JSON.parse(r.stdout);
    // First the core's own check (libcuda.so.1), then the plugin's static runtime finding no driver.
    for (const s of [s1, s2]) {
      expect(s.available).toBe(false);
      expect(['no-driver', 'no-device']).toContain(s.kind);
    }
    if (s1.kind === 'no-driver') expect(s1.reason).toContain('libcuda.so.1');
    expect(s2.pluginPath).toBe(plugin);
  });

  it('LoRA geometry (CPU reference) matches the materialised B·A rows', () => {
    const m = 7, n = 19, ro = 3, rn = 5;
    const r = rng(9);
    const f = (k: number) => Float32Array.from({ length: k }, () => r() - 0.5);
    const old = { a: f(ro * n), b: f(m * ro), r: ro, scale: 2 };
    const nw = { a: f(rn * n), b: f(m * rn), r: rn, scale: 0.5 };
    const g = _cudaLoraGeometry(m, n, old, nw, { backend: 'cpu' });
    for (let i = 0; i < m; i++) {
      let dot = 0, na = 0, nb = 0;
      for (let j = 0; j < n; j++) {
        let x = 0, y = 0;
        for (let p = 0; p < ro; p++) x += old.b[i * ro + p]! * old.a[p * n + j]!;
        for (let p = 0; p < rn; p++) y += nw.b[i * rn + p]! * nw.a[p * n + j]!;
        x *= old.scale;
        y *= nw.scale;
        dot += x * y; na += x * x; nb += y * y;
      }
      expect(g.dot[i]).toBeCloseTo(dot, 10);
      expect(g.na[i]).toBeCloseTo(na, 10);
      expect(g.nb[i]).toBeCloseTo(nb, 10);
    }
    expect(() => _cudaLoraGeometry(m, n, { ...old, a: f(3) }, nw, { backend: 'cpu' })).toThrow(/Expected old.a/);
  });
});

// ---- on a GPU ----------------------------------------------------------------------------------
gpuSuite(`CUDA backend vs the CPU reference (SPEC §5)${gpu ? '' : ` — skipped: ${skipReason}`}`, gpu);
