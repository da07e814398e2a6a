#!/usr/bin/env node
// LoRA benchmark (issue 4): geometry in factor space vs the materialised path, and a whole
// 7B-shaped adapter pair. Needs the built package (npm run build). Usage:
//   node bench/lora.js [--reps N] [--skip-7b] [--skip-numpy] [--out FILE.json]
// 1. one [4096, 4096] module, r = 16:
//    factor:        analyzeLora (Gram matrices + O(r^2) per row; SPEC §4)
//    materialised:  tau = s*B*A formed for both sides (our core, f64 sums, all threads) and then
//                   the dense per-row geometry (analyzeTensor), i.e. what a materialising tool does
//    numpy peer:    the same with numpy (BLAS sgemm for B@A, einsum for the row sums), when python3
//                   with numpy is present; a peer for reference, never a dependency
// 2. 7B-shaped pair: 32 layers x 7 modules (q,k,v,o [4096,4096], gate/up [11008,4096],
//    down [4096,11008]), r = 16, written as PEFT directories, then editAdapters to an adapter
//    (read + geometry + write) and analyzeAdapters.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist', 'cjs');
if (!fs.existsSync(path.join(dist, 'lora', 'index.js'))) {
  console.error('bench/lora.js: the built package is missing; run `npm run build` first');
  process.exit(1);
}
const { analyzeLora, materializeLora } = require(path.join(dist, 'lora-math.js'));
const { editAdapters, analyzeAdapters } = require(path.join(dist, 'lora', 'index.js'));
const { analyzeTensor, info } = require(path.join(dist, 'index.js'));
const { writeSafetensors } = require(path.join(dist, 'safetensors.js'));

const args = process.argv.slice(2);
const flag = (n) => args.includes(n);
const val = (n, d) => { const i = args.indexOf(n); return i >= 0 ? args[i + 1] : d; };
const REPS = Number(val('--reps', '3'));

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function randn(r, n, sd) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = sd * Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}
const f32 = (shape, data) => ({ dtype: 'f32', shape, data });
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function best(fn, reps) {
  let b = Infinity, last;
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    last = await fn();
    b = Math.min(b, now() - t0);
  }
  return { ms: b, last };
}

async function singleModule() {
  const m = 4096, n = 4096, r = 16, s = 2;
  const g = rng(1);
  const mk = () => ({ A: f32([r, n], randn(g, r * n, 0.02)), B: f32([m, r], randn(g, m * r, 0.02)), scale: s });
  const o = mk(), nw = mk();
  const factor = await best(() => analyzeLora({ old: o, new: nw }), Math.max(REPS, 5));
  const zeros = f32([m, n], new Float32Array(m * n));
  const mat = await best(async () => {
    const to = materializeLora(o), tn = materializeLora(nw);
    return analyzeTensor({ base: zeros, old: to, new: tn });
  }, REPS);
  // Same answer (the materialised tau is rounded to f32, so cos agrees to ~1e-7).
  let maxd = 0;
  for (let i = 0; i < m; i++) maxd = Math.max(maxd, Math.abs(factor.last.cos[i] - mat.last.cos[i]));
  let numpy = null;
  if (!flag('--skip-numpy')) {
    try {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-bench-np-'));
      for (const [k, v] of [['Ao', o.A], ['Bo', o.B], ['An', nw.A], ['Bn', nw.B]]) fs.writeFileSync(path.join(dir, k), Buffer.from(v.data.buffer));
      const py = `
import numpy as np, time, os
d=${JSON.stringify(dir)}; m=${m}; n=${n}; r=${r}; s=${s}
L=lambda k,sh: np.fromfile(os.path.join(d,k),dtype=np.float32).reshape(sh)
Ao,Bo,An,Bn=L('Ao',(r,n)),L('Bo',(m,r)),L('An',(r,n)),L('Bn',(m,r))
best=1e9
for _ in range(${REPS}):
    t=time.perf_counter()
    to=np.float32(s)*(Bo@Ao); tn=np.float32(s)*(Bn@An)
    dot=np.einsum('ij,ij->i',to,tn,dtype=np.float64); na=np.einsum('ij,ij->i',to,to,dtype=np.float64); nb=np.einsum('ij,ij->i',tn,tn,dtype=np.float64)
    c=dot/np.sqrt(na*nb)
    best=min(best,time.perf_counter()-t)
print(best*1000)
`;
      const out = execFileSync('python3', ['-c', py], { encoding: 'utf8' });
      numpy = Number(out.trim().split('\n').pop());
      fs.rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      numpy = null;
      console.error(`numpy peer skipped: ${String(e.message).split('\n')[0]}`);
    }
  }
  // Full-output compute for the same module: tau rows formed block by block and merged into a base.
  const { prepareLora, mergeLoraRows } = require(path.join(dist, 'lora-math.js'));
  const prep = prepareLora({ old: o, new: nw }, {});
  const base = { dtype: 'bf16', data: new Uint16Array(m * n).fill(0x3c00) };
  const merge = await best(() => mergeLoraRows(prep, factor.last.coefNew, factor.last.coefOld, false, base, 0, m, 'bf16'), REPS);
  const mergeT = await best(() => mergeLoraRows(prep, factor.last.coefNew, factor.last.coefOld, true, base, 0, n, 'bf16'), REPS);
  return { shape: [m, n], r, factorMs: factor.ms, mergeMs: merge.ms, mergeTransposedMs: mergeT.ms, materialisedMs: mat.ms, numpyMs: numpy, speedup: mat.ms / factor.ms, speedupVsNumpy: numpy ? numpy / factor.ms : null, maxCosDiff: maxd };
}

async function sevenB() {
  const H = 4096, F = 11008, r = 16, L = 32;
  const shapes = [
    ['self_attn.q_proj', H, H], ['self_attn.k_proj', H, H], ['self_attn.v_proj', H, H], ['self_attn.o_proj', H, H],
    ['mlp.gate_proj', F, H], ['mlp.up_proj', F, H], ['mlp.down_proj', H, F],
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-bench-7b-'));
  try {
    const tw0 = now();
    for (const [side, seed] of [['old', 11], ['new', 12]]) {
      const g = rng(seed);
      const tensors = [];
      for (let l = 0; l < L; l++) {
        for (const [mod, out, inn] of shapes) {
          const k = `base_model.model.model.layers.${l}.${mod}`;
          tensors.push({ name: `${k}.lora_A.weight`, dtype: 'F32', shape: [r, inn], data: randn(g, r * inn, 0.02) });
          tensors.push({ name: `${k}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: randn(g, out * r, 0.02) });
        }
      }
      const d = path.join(dir, side);
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, 'adapter_config.json'), JSON.stringify({
        peft_type: 'LORA', r, lora_alpha: 32, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
        bias: 'none', fan_in_fan_out: false, use_rslora: false, use_dora: false, task_type: 'CAUSAL_LM',
      }));
      await writeSafetensors(path.join(d, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    }
    const genMs = now() - tw0;
    const bytes = fs.statSync(path.join(dir, 'old', 'adapter_model.safetensors')).size;
    let editMs = Infinity, analyzeMs = Infinity, man;
    for (let i = 0; i < REPS; i++) {
      const out = path.join(dir, `out${i}`);
      const t0 = now();
      man = await editAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new'), out });
      editMs = Math.min(editMs, now() - t0);
      fs.rmSync(out, { recursive: true, force: true });
      const t1 = now();
      await analyzeAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new') });
      analyzeMs = Math.min(analyzeMs, now() - t1);
    }
    const rows = man.totals.rows;
    return { layers: L, modulesPerLayer: 7, r, adapterBytes: bytes, generateMs: genMs, editToAdapterMs: editMs, analyzeMs, rows, counts: man.totals.counts };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

(async () => {
  const inf = info();
  const machine = `${os.cpus()[0].model.trim()}, ${os.cpus().length} logical CPUs visible, ${inf.threads} pool threads, SIMD ${inf.simd}, Node ${process.version}`;
  const res = { date: new Date().toISOString(), machine, reps: REPS };
  console.log(`geoedit LoRA bench — ${res.date}\n${machine}\n`);
  res.single = await singleModule();
  const s = res.single;
  console.log(`1. one [4096, 4096] module, r = 16 (best of ${REPS}+)`);
  console.log(`   factor space (analyzeLora):                ${s.factorMs.toFixed(2)} ms`);
  console.log(`   materialised (s*B*A both sides + rows):    ${s.materialisedMs.toFixed(1)} ms   -> ${s.speedup.toFixed(0)}x`);
  if (s.numpyMs !== null) console.log(`   numpy peer (BLAS B@A + einsum row sums):   ${s.numpyMs.toFixed(1)} ms   -> ${s.speedupVsNumpy.toFixed(0)}x`);
  console.log(`   max |cos_factor - cos_materialised| = ${s.maxCosDiff.toExponential(2)}`);
  console.log(`   full output, merge into a bf16 base:       ${s.mergeMs.toFixed(1)} ms ([out, in]), ${s.mergeTransposedMs.toFixed(1)} ms (fan_in_fan_out [in, out])`);
  if (!flag('--skip-7b')) {
    res.sevenB = await sevenB();
    const b = res.sevenB;
    console.log(`\n2. 7B-shaped pair: ${b.layers} layers x ${b.modulesPerLayer} modules, r = ${b.r} (${(b.adapterBytes / 1e6).toFixed(0)} MB per adapter, ${b.rows} rows)`);
    console.log(`   editAdapters -> adapter (read, geometry, write): ${(b.editToAdapterMs / 1000).toFixed(2)} s`);
    console.log(`   analyzeAdapters (read, geometry):                ${(b.analyzeMs / 1000).toFixed(2)} s`);
  }
  const out = val('--out', null);
  if (out) fs.writeFileSync(out, JSON.stringify(res, null, 2) + '\n');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
