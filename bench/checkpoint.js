#!/usr/bin/env node
// End-to-end checkpoint edit benchmark over the built package (dist/ and build/Release):
// generates bf16 base/old/new checkpoints of each size, measures in the same run
//   - the time to merely read the three inputs (`cat base old new > /dev/null`, warm page cache),
//   - `geoedit edit` (a child process per run: wall time, peak RSS from getrusage), with and
//     without input hashing,
// and prints the ratios. Writes JSON to bench/results/. Deletes the generated files afterwards.
//
//   node bench/checkpoint.js [--sizes 2,0.5] [--dir /tmp] [--reps 2]
//   (sizes in GiB per input; the issue's target: >= 3 x 2 GiB)
//   --backends cpu,cuda   compare backends (analyze and edit --no-hash with --backend each; no
//                         hashed run); --density 0.1 adds that option to every run; --tag NAME
//                         names the results file (checkpoint-<date>-NAME.json). The GPU device
//                         check (bench/gpu/run.sh) runs it this way.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawnSync, execSync } = require('node:child_process');
const { parseArgs } = require('node:util');

const ROOT = path.resolve(__dirname, '..');
const { planSafetensors } = require(path.join(ROOT, 'dist', 'cjs', 'safetensors.js'));

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '2,0.5' }, dir: { type: 'string', default: os.tmpdir() }, reps: { type: 'string', default: '2' },
    backends: { type: 'string' }, density: { type: 'string' }, tag: { type: 'string' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const reps = Math.max(1, Number(values.reps));
const backends = values.backends ? values.backends.split(',') : null;
// --density: one value, or a list with --backends (each backend runs at each density).
const densities = values.density ? values.density.split(',') : [null];
const common = values.density && densities.length === 1 ? ['--density', densities[0]] : [];
const variants = backends ? backends.flatMap((b) => densities.map((d) => ({ key: d ? `${b} density ${d}` : b, args: ['--backend', b, ...(d ? ['--density', d] : [])] }))) : [];
const work = fs.mkdtempSync(path.join(values.dir, 'geoedit-bench-'));

const ROWS = 4096, COLS = 4096; // 32 MiB bf16 tensors, Llama-7B-like
const TBYTES = ROWS * COLS * 2;

function gen(dir, gib) {
  const n = Math.max(1, Math.round((gib * 2 ** 30) / TBYTES));
  const specs = [];
  for (let i = 0; i < n; i++) specs.push({ name: `model.layers.${Math.floor(i / 4)}.mlp.${['up', 'down', 'gate', 'o'][i % 4]}_proj.weight`, dtype: 'BF16', shape: [ROWS, COLS] });
  specs.push({ name: 'model.position_ids', dtype: 'I64', shape: [4096] });
  const plan = planSafetensors(specs, { format: 'pt' });
  const fds = {};
  for (const role of ['base', 'old', 'new']) {
    fs.mkdirSync(path.join(dir, role), { recursive: true });
    fds[role] = fs.openSync(path.join(dir, role, 'model.safetensors'), 'w');
    fs.writeSync(fds[role], plan.header, 0, plan.header.length, 0);
  }
  const chunk = 8 << 20; // bytes
  const b = new Uint16Array(chunk / 2), o = new Uint16Array(chunk / 2), w = new Uint16Array(chunk / 2);
  const r = new Uint16Array(chunk / 2);
  for (let k = 0; k < n; k++) {
    for (let off = 0; off < TBYTES; off += chunk) {
      crypto.randomFillSync(b);
      crypto.randomFillSync(r);
      for (let i = 0; i < b.length; i++) {
        const base = (b[i] & 0x807f) | 0x3c00; // finite bf16 of magnitude ~1e-2
        b[i] = base;
        o[i] = base ^ (r[i] & 0x000f);
        w[i] = base ^ ((r[i] >> 4) & 0x000f);
      }
      const pos = plan.dataOffset + k * TBYTES + off;
      fs.writeSync(fds.base, b, 0, chunk, pos);
      fs.writeSync(fds.old, o, 0, chunk, pos);
      fs.writeSync(fds.new, w, 0, chunk, pos);
    }
  }
  const ids = Buffer.alloc(4096 * 8);
  for (const role of ['base', 'old', 'new']) {
    fs.writeSync(fds[role], ids, 0, ids.length, plan.dataOffset + n * TBYTES);
    fs.closeSync(fds[role]);
  }
  return { tensors: n + 1, bytesPerInput: plan.size };
}

function timeCat(dir) {
  const files = ['base', 'old', 'new'].map((r) => path.join(dir, r, 'model.safetensors'));
  const t = process.hrtime.bigint();
  execSync(`cat ${files.map((f) => JSON.stringify(f)).join(' ')} > /dev/null`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

// The floor for writing the output: copy one input (same size as the output) through the page cache.
function timeWrite(dir) {
  const dst = path.join(dir, 'copy.bin');
  execSync('sync');
  const t = process.hrtime.bigint();
  execSync(`cat ${JSON.stringify(path.join(dir, 'base', 'model.safetensors'))} > ${JSON.stringify(dst)}`);
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  fs.rmSync(dst);
  return s;
}

function runEdit(dir, extra, cmd = 'edit') {
  const out = path.join(dir, 'out');
  fs.rmSync(out, { recursive: true, force: true });
  execSync('sync');
  const script = `const {main}=require(${JSON.stringify(path.join(ROOT, 'dist', 'cjs', 'cli', 'main.js'))});` +
    `main(process.argv.slice(1)).then((c)=>{process.stderr.write('\\nRUSAGE '+JSON.stringify(process.resourceUsage())+'\\n');process.exitCode=c;});`;
  const args = ['-e', script, cmd, '--base', path.join(dir, 'base'), '--old', path.join(dir, 'old'), '--new', path.join(dir, 'new'), ...(cmd === 'edit' ? ['--out', out] : []), '--quiet', '--json', ...extra];
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`edit failed (${r.status}): ${r.stderr}`);
  const ru = JSON.parse(/RUSAGE (.*)/.exec(r.stderr)[1]);
  const summary = JSON.parse(r.stdout);
  const outBytes = cmd !== 'edit' ? 0 : fs.readdirSync(out).filter((f) => f.endsWith('.safetensors')).reduce((a, f) => a + fs.statSync(path.join(out, f)).size, 0);
  fs.rmSync(out, { recursive: true, force: true });
  return { wallS: wall, maxRssMiB: ru.maxRSS / 1024, userS: ru.userCPUTime / 1e6, systemS: ru.systemCPUTime / 1e6, dataS: summary.timings.dataMs / 1000, hashS: summary.timings.hashMs / 1000, outBytes };
}

const results = [];
try {
  console.log(`machine: ${os.cpus()[0].model}, ${os.cpus().length} CPUs, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, node ${process.version}`);
  for (const gib of sizes) {
    const dir = path.join(work, `s${gib}`);
    const t0 = Date.now();
    const g = gen(dir, gib);
    console.log(`\n== ${gib} GiB per input (load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}): ${g.tensors} tensors, 3 x ${(g.bytesPerInput / 2 ** 30).toFixed(2)} GiB (generated in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    execSync('sync'); // flush the generated files, so their write-back does not throttle the runs
    timeCat(dir); // warm the page cache
    const row = { gibPerInput: gib, bytesPerInput: g.bytesPerInput, tensors: g.tensors, loadavgBefore: os.loadavg(), cat: [], write: [], analyze: [], noHash: [], hash: [] };
    if (backends) {
      row.backends = {};
      for (const v of variants) row.backends[v.key] = { analyze: [], noHash: [] };
    }
    for (let i = 0; i < reps; i++) {
      execSync('sync'); // each run starts with no dirty pages of a previous one (not timed)
      row.cat.push(timeCat(dir));
      row.write.push(timeWrite(dir));
      if (backends) {
        for (const v of variants) {
          row.backends[v.key].analyze.push(runEdit(dir, ['--no-hash', ...v.args], 'analyze'));
          row.backends[v.key].noHash.push(runEdit(dir, ['--no-hash', ...v.args]));
        }
        continue;
      }
      row.analyze.push(runEdit(dir, ['--no-hash', ...common], 'analyze'));
      row.noHash.push(runEdit(dir, ['--no-hash', ...common]));
      row.hash.push(runEdit(dir, [...common]));
    }
    if (backends) {
      const cat = Math.min(...row.cat);
      const inBytes = 3 * g.bytesPerInput;
      row.summary = { catS: cat, catGBps: inBytes / 1e9 / cat, writeOneS: Math.min(...row.write), backends: {} };
      console.log(`cat (read only, warm):      ${cat.toFixed(2)} s  ${(inBytes / 1e9 / cat).toFixed(2)} GB/s`);
      console.log(`copy one input (write floor): ${row.summary.writeOneS.toFixed(2)} s`);
      for (const b of variants.map((v) => v.key)) {
        const an = Math.min(...row.backends[b].analyze.map((x) => x.wallS)), ed = Math.min(...row.backends[b].noHash.map((x) => x.wallS));
        const rss = Math.max(...row.backends[b].noHash.map((x) => x.maxRssMiB));
        row.summary.backends[b] = { analyzeS: an, ratioAnalyze: an / cat, editNoHashS: ed, ratioNoHash: ed / cat, rssNoHashMiB: rss };
        console.log(`[${b}] analyze ${an.toFixed(2)} s (${(an / cat).toFixed(2)}x read time); edit --no-hash ${ed.toFixed(2)} s (${(ed / cat).toFixed(2)}x read time), peak RSS ${rss.toFixed(0)} MiB`);
      }
      results.push(row);
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    const best = (a, k) => a.reduce((m, x) => (k ? x[k] : x) < (k ? m[k] : m) ? x : m);
    const cat = Math.min(...row.cat);
    const nh = best(row.noHash, 'wallS'), hh = best(row.hash, 'wallS'), an = best(row.analyze, 'wallS');
    row.loadavgAfter = os.loadavg();
    const inBytes = 3 * g.bytesPerInput;
    row.summary = {
      catS: cat, catGBps: inBytes / 1e9 / cat,
      writeOneS: Math.min(...row.write), writeOneGBps: g.bytesPerInput / 1e9 / Math.min(...row.write),
      analyzeS: an.wallS, analyzeGBps: inBytes / 1e9 / an.wallS, ratioAnalyze: an.wallS / cat,
      editNoHashS: nh.wallS, editNoHashGBps: inBytes / 1e9 / nh.wallS, ratioNoHash: nh.wallS / cat, rssNoHashMiB: Math.max(...row.noHash.map((x) => x.maxRssMiB)),
      editHashS: hh.wallS, editHashGBps: inBytes / 1e9 / hh.wallS, ratioHash: hh.wallS / cat, rssHashMiB: Math.max(...row.hash.map((x) => x.maxRssMiB)),
    };
    const s = row.summary;
    console.log(`cat (read only, warm):      ${s.catS.toFixed(2)} s  ${s.catGBps.toFixed(2)} GB/s`);
    console.log(`copy one input (write floor): ${s.writeOneS.toFixed(2)} s  ${s.writeOneGBps.toFixed(2)} GB/s`);
    console.log(`analyze (read+compute):     ${s.analyzeS.toFixed(2)} s  ${s.analyzeGBps.toFixed(2)} GB/s of input  ${s.ratioAnalyze.toFixed(2)}x read time`);
    console.log(`edit --no-hash:             ${s.editNoHashS.toFixed(2)} s  ${s.editNoHashGBps.toFixed(2)} GB/s of input  ${s.ratioNoHash.toFixed(2)}x read time  peak RSS ${s.rssNoHashMiB.toFixed(0)} MiB`);
    console.log(`edit (SHA-256 of inputs):   ${s.editHashS.toFixed(2)} s  ${s.editHashGBps.toFixed(2)} GB/s of input  ${s.ratioHash.toFixed(2)}x read time  peak RSS ${s.rssHashMiB.toFixed(0)} MiB`);
    results.push(row);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const outDir = path.join(__dirname, 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `checkpoint-${new Date().toISOString().slice(0, 10)}${values.tag ? `-${values.tag.replace(/[^A-Za-z0-9_.-]+/g, '-')}` : ''}.json`);
  fs.writeFileSync(file, JSON.stringify({
    date: new Date().toISOString(), machine: { cpu: os.cpus()[0].model, cpus: os.cpus().length, memGiB: os.totalmem() / 2 ** 30, node: process.version },
    command: `node bench/checkpoint.js ${process.argv.slice(2).join(' ')}`, targets: { ratio: 1.5, rssMiB: 1024 }, results,
  }, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(ROOT, file)}`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
