#!/usr/bin/env node
// Partitioned edit benchmark (issue 16, docs/partitioned.md) over the built package (dist/, build/Release):
// generates sharded bf16 base/old/new checkpoints (shard boundaries differing between the three),
// then measures in one run, on one machine and one file system:
//   - one `geoedit edit` process (wall time),
//   - N concurrent `geoedit edit --part K/N` processes (wall time from the first start to the last
//     exit) for each N, then `geoedit assemble` of those parts, with verification (every part file
//     re-hashed) and with --no-verify, and the bytes it copied (0 expected: hard links),
//   - each part alone (sequentially): a part's cost on a machine of its own,
//   - for scale, `cp` of the same output (what a copying assembly would cost),
// checks the assembled shards are byte-identical to the single edit's, and prints ratios to the
// single process. Input hashing runs in every edit (the default) with the hash cache off
// (GEOEDIT_HASH_CACHE=off), so every run hashes what it reads. Records `uptime` before and after
// (the machine is shared). Writes JSON to bench/results/partition-<date>[-TAG].json; deletes the
// generated files afterwards.
//
//   node bench/partition.js [--gib 1] [--parts 2,4] [--reps 2] [--dir /tmp] [--tag NAME]
//   (--gib: GiB per input; run only when /work/wt/QUIET does not exist)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn, spawnSync, execSync } = require('node:child_process');
const { parseArgs } = require('node:util');

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'geoedit.js');
const { planSafetensors } = require(path.join(ROOT, 'dist', 'cjs', 'safetensors.js'));

const { values } = parseArgs({
  options: {
    gib: { type: 'string', default: '1' }, parts: { type: 'string', default: '2,4' }, reps: { type: 'string', default: '2' },
    dir: { type: 'string', default: os.tmpdir() }, tag: { type: 'string' },
  },
});
const gib = Number(values.gib);
const partCounts = values.parts.split(',').map(Number);
const reps = Math.max(1, Number(values.reps));
const work = fs.mkdtempSync(path.join(values.dir, 'geoedit-bench-part-'));
const ENV = { ...process.env, GEOEDIT_HASH_CACHE: 'off' };

const ROWS = 2048, COLS = 4096; // 16 MiB bf16 tensors
const TBYTES = ROWS * COLS * 2;
const SHARD = 128 * 2 ** 20; // output shards of 128 MiB: 8 per GiB

/** A sharded checkpoint: `per` tensors per shard, index beside. */
function genRole(dir, specs, per, fill) {
  fs.mkdirSync(dir, { recursive: true });
  const nShards = Math.ceil(specs.length / per);
  const name = (s) => `model-${String(s + 1).padStart(5, '0')}-of-${String(nShards).padStart(5, '0')}.safetensors`;
  const wm = {};
  for (let s = 0; s < nShards; s++) {
    const group = specs.slice(s * per, (s + 1) * per);
    const plan = planSafetensors(group, { format: 'pt' });
    const fd = fs.openSync(path.join(dir, name(s)), 'w');
    fs.writeSync(fd, plan.header, 0, plan.header.length, 0);
    group.forEach((sp, k) => { fill(fd, plan.dataOffset + plan.entries[k].begin, specs.indexOf(sp)); wm[sp.name] = name(s); });
    fs.closeSync(fd);
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: specs.length * TBYTES }, weight_map: wm }));
}

function gen(dir) {
  const n = Math.max(2, Math.round((gib * 2 ** 30) / TBYTES));
  const specs = Array.from({ length: n }, (_, i) => ({ name: `model.layers.${String(Math.floor(i / 4)).padStart(3, '0')}.mlp.${['up', 'down', 'gate', 'o'][i % 4]}_proj.weight`, dtype: 'BF16', shape: [ROWS, COLS] }));
  // Deterministic data: the base of tensor k from a xorshift stream seeded by k (finite bf16 ~1e-2);
  // old and new flip its low mantissa bits from their own streams.
  const stream = (seed, len) => { const out = new Uint16Array(len); let x = (seed * 2654435761) >>> 0 || 1; for (let i = 0; i < len; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; out[i] = x & 0xffff; } return out; };
  const data = (k, role) => {
    const b = stream(k + 1, TBYTES / 2);
    for (let i = 0; i < b.length; i++) b[i] = (b[i] & 0x807f) | 0x3c00;
    if (role === 'base') return b;
    const r = stream((k + 1) * 7919 + (role === 'old' ? 1 : 2), b.length);
    for (let i = 0; i < b.length; i++) b[i] ^= r[i] & 0x000f;
    return b;
  };
  const fills = {};
  for (const role of ['base', 'old', 'new']) fills[role] = (fd, pos, k) => { const d = data(k, role); fs.writeSync(fd, d, 0, TBYTES, pos); };
  genRole(path.join(dir, 'base'), specs, 3, fills.base);
  genRole(path.join(dir, 'old'), specs, 5, fills.old);
  genRole(path.join(dir, 'new'), specs, 4, fills.new);
  fs.writeFileSync(path.join(dir, 'base', 'config.json'), JSON.stringify({ model_type: 'llama' }));
  return { n, bytes: n * TBYTES };
}

function editArgs(dir, out, more = []) {
  return ['edit', '--base', path.join(dir, 'base'), '--old', path.join(dir, 'old'), '--new', path.join(dir, 'new'), '--out', out, '--max-shard-size', String(SHARD), '--quiet', ...more];
}

function runSync(args) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: ENV, maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`geoedit ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { ms, stdout: r.stdout };
}

function runParallel(list) {
  const t = process.hrtime.bigint();
  return Promise.all(list.map((args) => new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => { err += d; });
    c.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t) / 1e6) : reject(new Error(`geoedit ${args.join(' ')}: ${code}: ${err}`))));
  }))).then((each) => ({ ms: Number(process.hrtime.bigint() - t) / 1e6, each }));
}

const rm = (p) => fs.rmSync(p, { recursive: true, force: true });
const uptime = () => execSync('uptime', { encoding: 'utf8' }).trim();
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
const shardsOf = (d) => fs.readdirSync(d).filter((f) => f.endsWith('.safetensors')).sort();
function sameShards(a, b) {
  const sa = shardsOf(a);
  if (sa.join() !== shardsOf(b).join()) return false;
  return sa.every((f) => execSync(`cmp -s '${path.join(a, f)}' '${path.join(b, f)}' && echo same || echo differ`, { encoding: 'utf8' }).trim() === 'same');
}

async function main() {
  const result = { date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, uptimeBefore: uptime(), fs: execSync(`df -T '${work}' | tail -1`, { encoding: 'utf8' }).trim() };
  const g = gen(work);
  result.input = { tensors: g.n, bytesPerInput: g.bytes, outputShardBytes: SHARD, inputShards: { base: Math.ceil(g.n / 3), old: Math.ceil(g.n / 5), new: Math.ceil(g.n / 4) } };
  // Warm the page cache once (every run then reads from memory, as the repeated runs do).
  execSync(`cat '${work}'/base/* '${work}'/old/* '${work}'/new/* > /dev/null`);
  const single = path.join(work, 'single');
  const singleMs = [];
  for (let i = 0; i < reps; i++) { rm(single); singleMs.push(runSync(editArgs(work, single)).ms); }
  result.single = { ms: singleMs, medianMs: median(singleMs), shards: shardsOf(single).length };
  const cp = [];
  for (let i = 0; i < reps; i++) {
    rm(path.join(work, 'copy'));
    const t = process.hrtime.bigint();
    execSync(`cp -r '${single}' '${path.join(work, 'copy')}' && sync`);
    cp.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  rm(path.join(work, 'copy'));
  result.copyOutputMs = { ms: cp, medianMs: median(cp) };
  result.partitioned = [];
  for (const n of partCounts) {
    const row = { parts: n, ms: [], perPartMs: [], assembleVerifyMs: [], assembleNoVerifyMs: [], assembleInsideMs: [], bytesCopied: [], bytesVerified: [], identical: [] };
    for (let i = 0; i < reps; i++) {
      const dirs = Array.from({ length: n }, (_, k) => path.join(work, `p${n}-${k + 1}`));
      dirs.forEach(rm);
      const r = await runParallel(dirs.map((d, k) => editArgs(work, d, ['--part', `${k + 1}/${n}`])));
      row.ms.push(r.ms);
      row.perPartMs.push(r.each);
      for (const [key, extra] of [['assembleVerifyMs', []], ['assembleNoVerifyMs', ['--no-verify']]]) {
        const out = path.join(work, `asm${n}`);
        rm(out);
        const a = runSync(['assemble', '--out', out, '--json', ...extra, '--parts', ...dirs]);
        const j = JSON.parse(a.stdout);
        row[key].push(a.ms);
        row.assembleInsideMs.push({ verify: key === 'assembleVerifyMs', ms: j.assemble.ms });
        if (key === 'assembleVerifyMs') { row.bytesCopied.push(j.assemble.bytesCopied); row.bytesVerified.push(j.assemble.bytesVerified); row.identical.push(sameShards(out, single)); }
        else row.bytesCopied.push(j.assemble.bytesCopied);
        rm(out);
      }
      dirs.forEach(rm);
    }
    // Each part alone, one after the other: what a part costs on a machine of its own (the cluster case;
    // the slowest part + the assembly is that case's wall time, shared storage bandwidth permitting).
    {
      const dirs = Array.from({ length: n }, (_, k) => path.join(work, `a${n}-${k + 1}`));
      row.aloneMs = dirs.map((d, k) => { rm(d); return runSync(editArgs(work, d, ['--part', `${k + 1}/${n}`])).ms; });
      dirs.forEach(rm);
      row.slowestAloneMs = Math.max(...row.aloneMs);
      row.projectedSpeedup = +(result.single.medianMs / row.slowestAloneMs).toFixed(3);
    }
    row.medianMs = median(row.ms);
    row.speedup = +(result.single.medianMs / row.medianMs).toFixed(3);
    row.assembleVerifyMedianMs = median(row.assembleVerifyMs);
    row.assembleNoVerifyMedianMs = median(row.assembleNoVerifyMs);
    result.partitioned.push(row);
    process.stdout.write(`N=${n}: ${(row.medianMs / 1000).toFixed(2)} s vs one process ${(result.single.medianMs / 1000).toFixed(2)} s (${row.speedup}x); each part alone ${row.aloneMs.map((x) => (x / 1000).toFixed(2)).join(', ')} s (one machine per part: ${row.projectedSpeedup}x); assemble ${(row.assembleVerifyMedianMs / 1000).toFixed(2)} s verified, ${(row.assembleNoVerifyMedianMs / 1000).toFixed(3)} s --no-verify; bytes copied ${row.bytesCopied.join(',')}; identical ${row.identical.join(',')}\n`);
  }
  rm(single);
  result.uptimeAfter = uptime();
  process.stdout.write(`one process: ${(result.single.medianMs / 1000).toFixed(2)} s; cp -r of the output: ${(result.copyOutputMs.medianMs / 1000).toFixed(2)} s\n${result.uptimeBefore}\n${result.uptimeAfter}\n`);
  const file = path.join(ROOT, 'bench', 'results', `partition-${result.date.slice(0, 10)}${values.tag ? `-${values.tag}` : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`wrote ${path.relative(ROOT, file)}\n`);
}

main().catch((e) => { process.stderr.write(`${e.stack ?? e}\n`); process.exitCode = 1; }).finally(() => rm(work));
