#!/usr/bin/env node
// One merged-output run (editAdapters outFormat 'full'): a 4096x4096 BF16 base tensor, two rank-16
// F32 adapters (PEFT layout). Meant to be run under /usr/bin/time -v for wall time and peak RSS:
//   node bench/lora-merge.js [--dir DIR] [--n 4096] [--rank 16]
// The data is written once into DIR (kept; default a temp dir), then one merge is timed.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dist = path.join(__dirname, '..', 'dist', 'cjs');
const { writeSafetensors } = require(path.join(dist, 'safetensors.js'));
const { editAdapters } = require(path.join(dist, 'index.js'));
const { convert } = require(path.join(dist, 'native', 'index.js')).native;

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? process.argv[i + 1] : d; };
const n = Number(arg('--n', 4096)), rank = Number(arg('--rank', 16));
const dir = arg('--dir', fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-lora-merge-')));

let s = 12345;
const rnd = () => { s = (s * 1103515245 + 12345) >>> 0; return s / 2 ** 32 - 0.5; };
const randn = (len, sd) => { const a = new Float32Array(len); for (let i = 0; i < len; i++) a[i] = (rnd() + rnd() + rnd()) * sd; return a; };

async function adapter(d) {
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: 2 * rank, target_modules: ['proj'], fan_in_fan_out: false }));
  await writeSafetensors(path.join(d, 'adapter_model.safetensors'), [
    { name: 'base_model.model.model.proj.lora_A.weight', dtype: 'F32', shape: [rank, n], data: randn(rank * n, 0.05) },
    { name: 'base_model.model.model.proj.lora_B.weight', dtype: 'F32', shape: [n, rank], data: randn(n * rank, 0.05) },
  ], { format: 'pt' });
}

async function main() {
  const base = path.join(dir, 'base.safetensors');
  if (!fs.existsSync(base)) {
    const w = convert('f32', randn(n * n, 0.1), 'bf16');
    await writeSafetensors(base, [{ name: 'model.proj.weight', dtype: 'BF16', shape: [n, n], data: w }], { format: 'pt' });
    await adapter(path.join(dir, 'old'));
    await adapter(path.join(dir, 'new'));
  }
  const out = path.join(dir, 'out');
  fs.rmSync(out, { recursive: true, force: true });
  const t0 = process.hrtime.bigint();
  const m = await editAdapters({ old: path.join(dir, 'old'), new: path.join(dir, 'new'), base, out }, { outFormat: 'full' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(JSON.stringify({ n, rank, dir, editAdaptersMs: Math.round(ms), modules: m.modules.length, counts: m.totals && m.totals.counts, sha256: m.outputs[0].sha256 }));
}
main().catch((e) => { console.error(e); process.exit(1); });
