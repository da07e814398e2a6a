#!/usr/bin/env node
// GPU bench of the CUDA backend (docs/cuda.md). Needs a usable GPU, the built addon + plugin
// (build/Release/) and the TS build (dist/). Runs:
//   1. the edit kernels on device-resident data (plugin entry geoedit_cuda_bench), with the
//      device-to-device copy bandwidth measured in the same process;
//   2. the PyTorch peer (bench/gpu/torch_peer.py) on the same shapes, same run;
//   3. end to end: editTensor from host memory, CPU vs CUDA backend; the LoRA Gram path; and
//      'auto' against both backends on host-memory cases (issue 17 item 4: auto <= 1.10x the faster).
// Prints a table and writes bench/results/gpu-<date>-<device>.{json,md}.
// Targets (H200): density 1 kernel >= 0.7x copy bandwidth and >= 3x PyTorch.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { spawnSync } = require('node:child_process');
const { rand } = require('./common');

const root = path.resolve(__dirname, '..', '..');
const quick = process.argv.includes('--quick');
// --tiny: small shapes, for a dry run of this script (e.g. on the CPU emulator of the plugin).
const tiny = process.argv.includes('--tiny');
const addon = require(path.join(root, 'build', 'Release', 'geoedit.node'));
const geo = require(path.join(root, 'dist', 'cjs', 'index.js'));
const { _cudaLoraGeometry } = require(path.join(root, 'dist', 'cjs', 'lora-geometry.js'));

const st = geo.cudaStatus();
if (!st.available) {
  console.error(`bench/gpu: no usable GPU: ${st.reason}`);
  process.exit(2);
}
const reps = quick || tiny ? 5 : 20;
const params = { strategy: 'geoedit', fuseAligned: 1, forgetConflicting: 1 };
const cases = [
  { name: 'density 1, f32 16384x4096', kind: 'edit', rows: 16384, cols: 4096, dtype: 'f32', density: 1 },
  { name: 'density 1, bf16 16384x4096', kind: 'edit', rows: 16384, cols: 4096, dtype: 'bf16', density: 1 },
  { name: 'density 1, bf16 8192x14336 (long rows)', kind: 'edit', rows: 8192, cols: 14336, dtype: 'bf16', density: 1 },
  { name: 'top-k 0.1, bf16 8192x4096', kind: 'edit', rows: 8192, cols: 4096, dtype: 'bf16', density: 0.1 },
  { name: 'top-k 0.1, bf16 1024x65536 (wide rows)', kind: 'edit', rows: 1024, cols: 65536, dtype: 'bf16', density: 0.1 },
  { name: 'importance + top-k 0.3, bf16 8192x4096', kind: 'edit', rows: 8192, cols: 4096, dtype: 'bf16', density: 0.3, importance: true },
  { name: 'LoRA Gram r=16, 4096x4096', kind: 'gram', m: 4096, n: 4096, rOld: 16, rNew: 16 },
  { name: 'LoRA Gram r=64, 8192x8192', kind: 'gram', m: 8192, n: 8192, rOld: 64, rNew: 64 },
];
if (tiny) {
  for (const c of cases) {
    if (c.kind === 'edit') { c.rows = Math.max(4, c.rows >> 9); c.cols = Math.max(64, c.cols >> 4); c.name += ' (tiny)'; }
    else { c.m >>= 6; c.n >>= 6; c.name += ' (tiny)'; }
  }
}

function median(xs) {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
}

async function timeIt(fn, n) {
  await fn();
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(t);
}

// editTensor from host memory: a bf16 tensor (base, old, new) and the CUDA backend's median time.
function endToEndInputs() {
  const rows = tiny ? 16 : quick ? 4096 : 8192, cols = tiny ? 256 : 4096;
  const mk = (seed) => ({ dtype: 'bf16', shape: [rows, cols], data: addon.convert('f32', rand(rows * cols, seed, 0.1), 'bf16') });
  return { rows, cols, inputs: { base: mk(1), old: mk(2), new: mk(3) } };
}
const timeEndToEndCuda = (inputs) => timeIt(() => geo.editTensor(inputs, { ...params, backend: 'cuda' }), 5);

// 'auto' against both backends: each case's median time on 'cpu', 'cuda' and 'auto' (one call of each per
// round, the order rotating), what 'auto' picked and why (chooseBackend for the job editTensor builds).
async function autoVsBest() {
  const { chooseBackend } = require(path.join(root, 'dist', 'cjs', 'backend.js'));
  const { tensorPreserveJob } = require(path.join(root, 'dist', 'cjs', 'edit.js'));
  const shrink = (r, c) => (tiny ? [Math.max(4, r >> 9), Math.max(64, c >> 4)] : quick ? [r >> 1, c] : [r, c]);
  const list = [
    { name: 'f32 4096x4096, density 1', rows: 4096, cols: 4096, dtype: 'f32', density: 1 },
    { name: 'bf16 8192x4096, density 1', rows: 8192, cols: 4096, dtype: 'bf16', density: 1 },
    { name: 'bf16 8192x4096, density 0.1', rows: 8192, cols: 4096, dtype: 'bf16', density: 0.1 },
    ...(quick || tiny ? [] : [{ name: 'bf16 8192x14336, density 1 (long rows)', rows: 8192, cols: 14336, dtype: 'bf16', density: 1 }]),
    { name: 'bf16 8192x2048, preserved (ridge cov, d = cols)', rows: 8192, cols: 2048, dtype: 'bf16', density: 1, preserve: true },
  ];
  const rounds = tiny || quick ? 3 : 5;
  const out = [];
  for (const c of list) {
    const [rows, cols] = shrink(c.rows, c.cols);
    const mk = (seed) => {
      const f = rand(rows * cols, seed, 0.1);
      return { dtype: c.dtype, shape: [rows, cols], data: c.dtype === 'f32' ? f : addon.convert('f32', f, 'bf16') };
    };
    const inputs = { base: mk(11), old: mk(12), new: mk(13) };
    const opts = { ...params, density: c.density };
    let job;
    if (c.preserve) {
      // cov = I + 0.01 v v^T: dense, symmetric positive definite.
      const v = rand(cols, 14, 1), cov = new Float32Array(cols * cols);
      for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) cov[i * cols + j] = (i === j ? 1 : 0) + 0.01 * v[i] * v[j];
      opts.preserve = { cov: { dtype: 'f32', shape: [cols, cols], data: cov } };
      // the job editTensor gives chooseBackend for this call (lib/edit.ts)
      job = tensorPreserveJob({ cov }, rows, cols, [c.dtype, c.dtype, c.dtype]);
    }
    const choice = chooseBackend('auto', job);
    const t = { cpu: [], cuda: [], auto: [] };
    const order = ['cpu', 'cuda', 'auto'];
    let failed = null;
    for (let k = 0; k <= rounds && !failed; k++) {  // round 0 warms up
      for (let i = 0; i < 3; i++) {
        const b = order[(i + k) % 3];
        const t0 = process.hrtime.bigint();
        try {
          await geo.editTensor(inputs, { ...opts, backend: b });
        } catch (e) {
          failed = `${b}: ${e.message}`;
          break;
        }
        if (k > 0) t[b].push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }
    if (failed) {
      console.error(`auto ${c.name}: FAILED: ${failed}`);
      autoFailures.push({ name: `auto ${c.name}`, error: failed });
      continue;
    }
    const cpuMs = median(t.cpu), cudaMs = median(t.cuda), autoMs = median(t.auto);
    const entry = { name: tiny || quick ? `${c.name.replace(/\d+x\d+/, `${rows}x${cols}`)}` : c.name, shape: [rows, cols], dtype: c.dtype, density: c.density, preserve: !!c.preserve, cpuMs, cudaMs, autoMs,
      picked: choice.name, reason: choice.reason, autoVsBest: autoMs / Math.min(cpuMs, cudaMs), faster: cpuMs <= cudaMs ? 'cpu' : 'cuda' };
    out.push(entry);
    console.error(`auto ${entry.name}: cpu ${cpuMs.toFixed(2)} ms, cuda ${cudaMs.toFixed(2)} ms, auto (${choice.name}) ${autoMs.toFixed(2)} ms = ${entry.autoVsBest.toFixed(2)}x the faster`);
  }
  return out;
}
const autoFailures = [];

async function main() {
  const results = { date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model,
    node: process.version, device: st.device, info: geo.info(), reps, cases: [] };
  // 1. geoedit kernels, device-resident.
  for (const c of cases.filter((x) => x.kind === 'edit')) {
    let r;
    try {
      r = addon._cudaBench({ rows: c.rows, cols: c.cols, dtype: c.dtype, reps, params: { ...params, density: c.density }, withImportance: !!c.importance });
    } catch (e) {
      // Recorded, and the run goes on: one failing case must not hide the others' figures.
      console.error(`geoedit ${c.name}: FAILED: ${e.message}`);
      results.failures = (results.failures || []).concat({ name: c.name, error: String(e.message) });
      continue;
    }
    const entry = { ...c, geoedit: r };
    if (c.density === 1 && !c.importance) {
      // The same kernel reading rows twice instead of caching them in shared memory.
      process.env.GEOEDIT_CUDA_NO_SMEM_CACHE = '1';
      entry.readTwice = addon._cudaBench({ rows: c.rows, cols: c.cols, dtype: c.dtype, reps, params: { ...params, density: c.density } });
      delete process.env.GEOEDIT_CUDA_NO_SMEM_CACHE;
      if (c.dtype !== 'f32') {
        // 16-bit inputs: the f32-cache kernel instead of the raw-cache one.
        process.env.GEOEDIT_CUDA_NO_FAST16 = '1';
        entry.f32Cache = addon._cudaBench({ rows: c.rows, cols: c.cols, dtype: c.dtype, reps, params: { ...params, density: c.density } });
        delete process.env.GEOEDIT_CUDA_NO_FAST16;
      }
    }
    results.cases.push(entry);
    console.error(`geoedit ${c.name}: ${r.kernelMs.toFixed(3)} ms, ${r.kernelGBps.toFixed(0)} GB/s (copy ${r.copyGBps.toFixed(0)} GB/s)` +
      (entry.readTwice ? `; read-twice variant ${entry.readTwice.kernelMs.toFixed(3)} ms` : '') +
      (entry.f32Cache ? `; f32-cache kernel ${entry.f32Cache.kernelMs.toFixed(3)} ms` : ''));
  }
  // 2. The PyTorch peer, same shapes.
  const peerSpec = { reps, cases: cases.map(({ name, ...c }) => c) };
  const py = spawnSync(process.env.PYTHON || 'python3', [path.join(__dirname, 'torch_peer.py'), JSON.stringify(peerSpec)], { encoding: 'utf8', maxBuffer: 1 << 26 });
  let peer = null;
  if (py.status === 0) {
    peer = JSON.parse(py.stdout.trim().split('\n').pop());
    results.torch = { version: peer.torch, copyGBps: peer.copy_gbps };
  } else {
    results.torchError = (py.stderr || '').slice(-2000);
    console.error(`torch peer failed: ${results.torchError}`);
  }
  const editCases = results.cases;
  if (peer) {
    // peer.cases follows `cases` one for one; match by name (a failed geoedit case has no entry).
    peer.cases.forEach((pc, i) => {
      const e = pc.kind === 'edit' ? editCases.find((x) => x.name === cases[i].name) : null;
      if (e) e.torch = { ms: pc.ms, gbps: pc.gbps };
    });
  }
  // 3a. LoRA Gram path, end to end (host factors in, host geometry out) vs CPU; torch is device-resident.
  const gramCases = cases.filter((x) => x.kind === 'gram');
  let gi = 0;
  for (const c of gramCases) {
    const old = { a: rand(c.rOld * c.n, 1, 1), b: rand(c.m * c.rOld, 2, 1), r: c.rOld, scale: 2 };
    const nw = { a: rand(c.rNew * c.n, 3, 1), b: rand(c.m * c.rNew, 4, 1), r: c.rNew, scale: 2 };
    const cudaMs = await timeIt(() => _cudaLoraGeometry(c.m, c.n, old, nw, { backend: 'cuda' }), quick ? 3 : 10);
    const cpuMs = await timeIt(() => _cudaLoraGeometry(c.m, c.n, old, nw, { backend: 'cpu' }), 1);
    const entry = { ...c, geoedit: { endToEndMs: cudaMs }, cpu: { ms: cpuMs } };
    const pg = peer ? peer.cases.filter((x) => x.kind === 'gram')[gi] : null;
    if (pg) entry.torch = { ms: pg.ms };
    results.cases.push(entry);
    gi++;
  }
  // 3b. editTensor end to end from host memory: CPU backend vs CUDA backend.
  {
    const { rows, cols, inputs } = endToEndInputs();
    const cpuMs = await timeIt(() => geo.editTensor(inputs, { ...params, backend: 'cpu' }), 3);
    const cudaMs = await timeEndToEndCuda(inputs);
    // The same with serial staging copies (GEOEDIT_CUDA_COPY_THREADS=1), in a child process (the
    // plugin reads the variable once): this script again, in its --e2e-cuda-ms mode.
    let cudaSerialMs = null;
    {
      const r = spawnSync(process.execPath, [__filename, '--e2e-cuda-ms', ...process.argv.slice(2)], { encoding: 'utf8', env: { ...process.env, GEOEDIT_CUDA_COPY_THREADS: '1' } });
      if (r.status === 0) cudaSerialMs = Number(r.stdout.trim());
    }
    const a = await geo.editTensor(inputs, { ...params, backend: 'cpu' });
    const b = await geo.editTensor(inputs, { ...params, backend: 'cuda' });
    let maxUlp = 0;
    for (let i = 0; i < a.out.data.length; i++) {
      const o = (h) => (h & 0x8000 ? -(h & 0x7fff) : h & 0x7fff);
      maxUlp = Math.max(maxUlp, Math.abs(o(a.out.data[i]) - o(b.out.data[i])));
    }
    results.endToEnd = { shape: [rows, cols], dtype: 'bf16', cpuMs, cudaMs, cudaSerialCopyMs: cudaSerialMs, bytes: rows * cols * 2 * 4, maxUlpVsCpu: maxUlp, simd: geo.info().simd };
  }
  // 3c. 'auto' against both backends (issue 17 item 4): host-memory editTensor cases, each backend timed
  // in turn within every round (medians), 'auto' as a user gets it. Its pick is chooseBackend's for the
  // job (lib/backend.ts; the preserved case's job from lib/edit.ts tensorPreserveJob, as editTensor builds it).
  results.auto = await autoVsBest();
  if (autoFailures.length) results.failures = (results.failures || []).concat(autoFailures);
  // Summary.
  const lines = [];
  lines.push(`# geoedit CUDA bench — ${results.date}`);
  lines.push('');
  lines.push(`Device: ${st.device.name} (cc ${st.device.computeCapability}, ${(st.device.memory / 2 ** 30).toFixed(0)} GiB, driver ${st.device.driverVersion}, runtime ${st.device.runtimeVersion}); torch ${peer ? peer.torch : 'n/a'}; node ${process.version}; ${results.cpus} CPUs (${results.cpuModel}).`);
  lines.push(`Command: bash bench/gpu/run.sh${quick ? ' --quick' : ''}${tiny ? ' --tiny' : ''}. Medians of ${reps} timed runs after a warm-up, CUDA events, device-resident data.`);
  lines.push('');
  const copy = editCases[0]?.geoedit.copyGBps;
  lines.push(`Device-to-device copy (read + write): ${copy ? copy.toFixed(0) : '?'} GB/s (cudaMemcpy), ${peer ? peer.copy_gbps.toFixed(0) : '?'} GB/s (torch copy_).`);
  lines.push('');
  lines.push('| case | geoedit ms | GB/s | × copy bw | torch ms | × torch | read-twice variant ms | f32-cache kernel ms |');
  lines.push('|---|---|---|---|---|---|---|---|');
  for (const c of editCases.filter((x) => x.kind === 'edit')) {
    const g = c.geoedit;
    const t = c.torch;
    lines.push(`| ${c.name} | ${g.kernelMs.toFixed(3)} | ${g.kernelGBps.toFixed(0)} | ${(g.kernelGBps / g.copyGBps).toFixed(2)} | ${t ? t.ms.toFixed(3) : 'n/a'} | ${t ? (t.ms / g.kernelMs).toFixed(2) : 'n/a'} | ${c.readTwice ? c.readTwice.kernelMs.toFixed(3) : ''} | ${c.f32Cache ? c.f32Cache.kernelMs.toFixed(3) : ''} |`);
  }
  lines.push('');
  lines.push('| LoRA geometry | geoedit CUDA end to end ms (H2D included) | CPU ms | torch ms (device-resident) |');
  lines.push('|---|---|---|---|');
  for (const c of results.cases.filter((x) => x.kind === 'gram')) {
    lines.push(`| ${c.name} | ${c.geoedit.endToEndMs.toFixed(2)} | ${c.cpu.ms.toFixed(1)} | ${c.torch ? c.torch.ms.toFixed(3) : 'n/a'} |`);
  }
  const e = results.endToEnd;
  lines.push('');
  lines.push(`editTensor end to end (host memory, bf16 ${e.shape.join('x')}): CPU (${e.simd}, ${results.cpus} threads) ${e.cpuMs.toFixed(1)} ms, CUDA ${e.cudaMs.toFixed(1)} ms (${e.cudaSerialCopyMs != null ? e.cudaSerialCopyMs.toFixed(1) : '?'} ms with serial staging copies); max difference vs CPU ${e.maxUlpVsCpu} ulp.`);
  const d1 = editCases.filter((x) => x.kind === 'edit' && x.density === 1 && !x.importance);
  const bw = d1.map((c) => c.geoedit.kernelGBps / c.geoedit.copyGBps);
  const vt = d1.filter((c) => c.torch).map((c) => c.torch.ms / c.geoedit.kernelMs);
  lines.push('');
  lines.push(`Targets (density 1): >= 0.7x copy bandwidth: ${bw.map((x) => x.toFixed(2)).join(', ')} -> ${bw.every((x) => x >= 0.7) ? 'met' : 'NOT met'}; >= 3x PyTorch: ${vt.map((x) => x.toFixed(2)).join(', ')} -> ${vt.length && vt.every((x) => x >= 3) ? 'met' : 'NOT met'}.`);
  lines.push('');
  lines.push("'auto' against both backends (host memory, editTensor; medians of interleaved rounds; target: auto ≤ 1.10× the faster backend on every case):");
  lines.push('');
  lines.push('| case | CPU ms | CUDA ms | auto ms | auto picked | auto ÷ faster | target |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const a of results.auto) {
    lines.push(`| ${a.name} | ${a.cpuMs.toFixed(2)} | ${a.cudaMs.toFixed(2)} | ${a.autoMs.toFixed(2)} | ${a.picked} | ${a.autoVsBest.toFixed(2)} | ${a.autoVsBest <= 1.1 ? 'met' : 'NOT met'} |`);
  }
  lines.push('');
  const autoMet = results.auto.length === 0 || autoFailures.length ? 'NOT met (cases failed or none ran)' : results.auto.every((a) => a.autoVsBest <= 1.1) ? 'met' : 'NOT met';
  lines.push(`'auto' within 10% of the faster backend on every case: ${autoMet}. Why it picks what it picks: ${[...new Set(results.auto.map((a) => a.reason))].join(' / ')}`);
  const md = lines.join('\n') + '\n';
  const dir = path.join(root, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const slug = `${results.date.slice(0, 10)}-${String(st.device.name).replace(/[^A-Za-z0-9]+/g, '-')}`;
  fs.writeFileSync(path.join(dir, `gpu-${slug}.json`), JSON.stringify(results, null, 2));
  fs.writeFileSync(path.join(dir, `gpu-${slug}.md`), md);
  process.stdout.write(md);
}

(process.argv.includes('--e2e-cuda-ms') ? timeEndToEndCuda(endToEndInputs().inputs).then((ms) => console.log(ms)) : main()).catch((e) => {
  console.error(e);
  process.exit(1);
});
