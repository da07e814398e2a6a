#!/usr/bin/env node
// End-to-end checkpoint edit benchmark over the built package (dist/ and build/Release):
// generates bf16 base/old/new checkpoints of each size, measures in the same run
//   - the time to merely read the three inputs (`cat base old new > /dev/null`, warm page cache),
//   - the time to write one output of the same size (copy one input through the page cache),
//   - the single-core SHA-256 rate of the platform's OpenSSL (native hashFiles, one thread),
//   - `geoedit edit` (a child process per run: wall time, peak RSS from getrusage): the default
//     (inputs hashed, cold hash cache), again with the cache warm (nothing re-hashed), and --no-hash,
// and prints each as a ratio to the job's hardware limit = max(read the inputs, write one output
// durably (copy + fsync: the job fsyncs its output before the commit), bytes hashed / (single-core
// SHA-256 rate x cores)) (issue 17: default edit <= 1.25x it), and to the same limit without the fsync.
// Every figure is the MEDIAN of --reps runs (each rep runs every measurement once, interleaved, so
// the load of the moment hits all of them alike): for the reads, writes and SHA-256 rates the median
// of each; for each edit the MEDIAN REP (the run with the median wall time; for an even count the
// faster of the two middle ones), whose CPU and phase columns are that same run's (not medians of
// each field, which would mix runs). The JSON keeps every run. Each edit's breakdown:
// its CPU time (user + system, getrusage of the child) and the wall time of its phases (the job's
// phase markers, GEOEDIT_TEST_STOP_AT=none: start = process start to validation, data = the data
// pass with the input hashing beside it, seal = output hashes + manifest, commit = the fsyncs + the
// rename; a phase whose marker did not come is printed '-', null in the JSON). The CPU line says what
// the cores allow: core-seconds of the default edit / cores.
// Writes JSON to bench/results/. Deletes the generated files afterwards.
//
//   node bench/checkpoint.js [--sizes 2,0.5] [--dir /tmp] [--reps 3]
//   (sizes in GiB per input; the issue's target: >= 3 x 2 GiB)
//   --backends cpu,cuda   compare backends (analyze and edit --no-hash with --backend each; no
//                         (add ,auto: 'auto' against the faster of the two, issue 17 item 4)
//                         hashed run); --density 0.1 adds that option to every run; --tag NAME
//                         names the results file (checkpoint-<date>-NAME.json). The GPU device
//                         check (bench/gpu/run.sh) runs it this way.
//   --ab                  also the default edit with the data path before issue 17's write path
//                         (GEOEDIT_WRITE_BEHIND=0 GEOEDIT_STREAM_HASH=0 GEOEDIT_DIRECT_WRITE=0: no write-behind, no direct writes, the seal re-reads the
//                         output), in every rep (A/B in one run). Until 2026-12-01 17:40 UTC it also hashed the
//                         inputs through pread (GEOEDIT_HASH_IO=pread, removed: docs/performance.md has its A/B).
//   --ab-env K=V[,K=V]    with --ab: the B side runs with these variables instead of the previous write
//                         path (e.g. --ab-env GEOEDIT_DIRECT_WRITE=0: the default edit without O_DIRECT writes).
//                         Each item must be K=V, and --ab is required (else exit 2 with why). The JSON's
//                         abEnv records the B side's variables (null without --ab).
//   --layouts             issue 13: the same checkpoint edited (--no-hash) with every weight in layout
//                         rows and again in layout columns (--layout '*.weight=columns': the tensors are
//                         square, so both are valid and read/write the same bytes); wall time, GB/s,
//                         peak RSS and the columns/rows ratio, in one run (combine with --backends).
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
    sizes: { type: 'string', default: '2,0.5' }, dir: { type: 'string', default: os.tmpdir() }, reps: { type: 'string', default: '3' },
    backends: { type: 'string' }, density: { type: 'string' }, tag: { type: 'string' }, layouts: { type: 'boolean' }, ab: { type: 'boolean' }, 'ab-env': { type: 'string' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const reps = Math.max(1, Number(values.reps));
const backends = values.backends ? values.backends.split(',') : null;
// --density: one value, or a list with --backends (each backend runs at each density).
const densities = values.density ? values.density.split(',') : [null];
const common = values.density && densities.length === 1 ? ['--density', densities[0]] : [];
const variants = backends ? backends.flatMap((b) => densities.map((d) => ({ key: d ? `${b} density ${d}` : b, args: ['--backend', b, ...(d ? ['--density', d] : [])] }))) : [];
// --ab: the write path before issue 17's change (same hashes, same bytes), or --ab-env's variables.
function parseAbEnv(spec) {
  if (!values.ab) throw new Error('--ab-env sets the B side of --ab: give --ab too');
  return Object.fromEntries(spec.split(',').map((kv) => {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--ab-env: '${kv}' is not K=V (expected K=V[,K=V], e.g. GEOEDIT_DIRECT_WRITE=0)`);
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  }));
}
let PREVIOUS_PATH;
try {
  PREVIOUS_PATH = values['ab-env'] !== undefined ? parseAbEnv(values['ab-env']) : { GEOEDIT_WRITE_BEHIND: '0', GEOEDIT_STREAM_HASH: '0', GEOEDIT_DIRECT_WRITE: '0' };
} catch (e) {
  console.error(`bench/checkpoint.js: ${e.message}`);
  process.exit(2);
}
const work = fs.mkdtempSync(path.join(values.dir, 'geoedit-bench-'));
const AB_LABEL = values['ab-env'] ? `B: ${values['ab-env']}` : 'previous write path';
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
// Copy one input (the write floor); `durable` adds `sync FILE` (fsync of it): what the edit's commit costs
// at least, since the job fsyncs every output file before its rename (docs/safety.md, Durability).
function timeWrite(dir, durable = false) {
  const dst = path.join(dir, 'copy.bin');
  execSync('sync');
  const t = process.hrtime.bigint();
  execSync(`cat ${JSON.stringify(path.join(dir, 'base', 'model.safetensors'))} > ${JSON.stringify(dst)}${durable ? ` && sync ${JSON.stringify(dst)}` : ''}`);
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  fs.rmSync(dst);
  return s;
}

// Single-core SHA-256 rate of the native hash over one input (page cache warm): bytes per second of
// wall time (the limit's rate) and per CPU-second (what the hash costs whatever the load).
function shaRate(dir) {
  const f = path.join(dir, 'base', 'model.safetensors');
  const script = `const n=require(${JSON.stringify(path.join(ROOT, 'dist', 'cjs', fs.existsSync(path.join(ROOT, 'dist', 'cjs', 'native', 'index.js')) ? 'native/index.js' : 'native.js'))}).loadNative();` +
    `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(f)},'r');const size=fs.fstatSync(fd).size;` +
    `(async()=>{let best=1e9,cpu=1e9;for(let i=0;i<2;i++){const c=process.cpuUsage();const t=process.hrtime.bigint();await n.hashFiles({files:[{fd,size,file:'x'}],threads:1});best=Math.min(best,Number(process.hrtime.bigint()-t)/1e9);const d=process.cpuUsage(c);cpu=Math.min(cpu,(d.user+d.system)/1e6);}` +
    `console.log(JSON.stringify({bytesPerS:size/best,bytesPerCpuS:size/cpu,provider:n.sha256Info().provider}));})();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sha256 rate failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim());
}

function runEdit(dir, extra, cmd = 'edit', env = {}) {
  const out = path.join(dir, 'out');
  fs.rmSync(out, { recursive: true, force: true });
  execSync('sync');
  // Phase markers stamped with the epoch time in ms as the child writes them.
  const script = `const w=process.stderr.write.bind(process.stderr);process.stderr.write=(s,...a)=>w(typeof s==='string'&&s.startsWith('geoedit-test: phase ')?s.replace(/\\n$/,' '+(performance.timeOrigin+performance.now())+'\\n'):s,...a);` +
    `const {main}=require(${JSON.stringify(path.join(ROOT, 'dist', 'cjs', 'cli', 'main.js'))});` +
    `main(process.argv.slice(1)).then((c)=>{process.stderr.write('geoedit-test: phase end\\n');process.stderr.write('\\nRUSAGE '+JSON.stringify(process.resourceUsage())+'\\n');process.exitCode=c;});`;
  const args = ['-e', script, cmd, '--base', path.join(dir, 'base'), '--old', path.join(dir, 'old'), '--new', path.join(dir, 'new'), ...(cmd === 'edit' ? ['--out', out] : []), '--quiet', '--json', ...extra];
  const t0 = Date.now();
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, GEOEDIT_TEST_STOP_AT: 'none', ...env } });
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`edit failed (${r.status}): ${r.stderr}`);
  const ru = JSON.parse(/RUSAGE (.*)/.exec(r.stderr)[1]);
  const at = {};
  for (const m of r.stderr.matchAll(/^geoedit-test: phase (\S+) ([\d.]+)$/gm)) at[m[1]] ??= Number(m[2]);
  // null: the phase's marker (or every later one) did not come
  const span = (a, ...b) => { const e = b.map((k) => at[k]).find((x) => x !== undefined); return at[a] !== undefined && e !== undefined ? (e - at[a]) / 1000 : null; };
  const phases = {
    startS: at.validation !== undefined ? (at.validation - t0) / 1000 : null,
    dataS: span('data', 'side-files', 'seal', 'report', 'commit', 'end'),
    sealS: span('seal', 'report', 'commit', 'end'),
    commitS: span('commit', 'end'),
  };
  const summary = JSON.parse(r.stdout);
  const outBytes = cmd !== 'edit' ? 0 : fs.readdirSync(out).filter((f) => f.endsWith('.safetensors')).reduce((a, f) => a + fs.statSync(path.join(out, f)).size, 0);
  fs.rmSync(out, { recursive: true, force: true });
  const hashFrom = [];
  const hs = summary.hashing; if (hs) { for (let i = 0; i < hs.fromCache; i++) hashFrom.push('cache'); for (let i = 0; i < hs.computed; i++) hashFrom.push('computed'); }
  return { backend: summary.backend?.name ?? null, wallS: wall, maxRssMiB: ru.maxRSS / 1024, userS: ru.userCPUTime / 1e6, systemS: ru.systemCPUTime / 1e6, cpuS: (ru.userCPUTime + ru.systemCPUTime) / 1e6, ...phases, hashS: summary.timings.hashMs / 1000, outputHash: summary.timings.outputHash ?? null, outBytes, hashFrom };
}

/** The median of numbers (the mean of the two middle ones for an even count). */
function median(xs) {
  const a = [...xs].sort((x, y) => x - y), n = a.length;
  return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}
/** The median rep: the run with the median wall time (for an even count the faster of the two middle ones), all its fields its own. */
function medianRep(runs) {
  const a = [...runs].sort((x, y) => x.wallS - y.wallS);
  return a[Math.floor((a.length - 1) / 2)];
}
/** Seconds, or '-' for a phase that was not seen. */
const sec = (x) => (x === null || x === undefined ? '-' : x.toFixed(2));

// --layouts: rows vs columns edits of the same checkpoint, alternated rep by rep (same page cache, same load).
function layoutsRow(dir, g, row) {
  const bs = backends ?? [null];
  row.layouts = {};
  for (const b of bs) for (const kind of ['rows', 'columns']) row.layouts[`${b ?? 'default'} ${kind}`] = [];
  for (let i = 0; i < reps; i++) {
    row.cat.push(timeCat(dir));
    for (const b of bs) {
      for (const kind of ['rows', 'columns']) {
        const args = ['--no-hash', ...common, '--layout', `*.weight=${kind}`, ...(b ? ['--backend', b] : [])];
        row.layouts[`${b ?? 'default'} ${kind}`].push(runEdit(dir, args));
      }
    }
  }
  const cat = Math.min(...row.cat), inBytes = 3 * g.bytesPerInput;
  row.loadavgAfter = os.loadavg();
  row.summary = { catS: cat, catGBps: inBytes / 1e9 / cat, layouts: {} };
  console.log(`cat (read only, warm): ${cat.toFixed(2)} s  ${(inBytes / 1e9 / cat).toFixed(2)} GB/s`);
  console.log('| backend | layout | edit --no-hash s (best) | GB/s of input | peak RSS MiB | columns / rows |');
  console.log('|---|---|---|---|---|---|');
  for (const b of bs) {
    const k = (kind) => `${b ?? 'default'} ${kind}`;
    const best = (kind) => Math.min(...row.layouts[k(kind)].map((x) => x.wallS));
    const rss = (kind) => Math.max(...row.layouts[k(kind)].map((x) => x.maxRssMiB));
    const ratio = best('columns') / best('rows');
    row.summary.layouts[b ?? 'default'] = { rowsS: best('rows'), columnsS: best('columns'), columnsOverRows: ratio, rssRowsMiB: rss('rows'), rssColumnsMiB: rss('columns') };
    for (const kind of ['rows', 'columns']) {
      console.log(`| ${b ?? 'default'} | ${kind} | ${best(kind).toFixed(2)} | ${(inBytes / 1e9 / best(kind)).toFixed(2)} | ${rss(kind).toFixed(0)} | ${kind === 'columns' ? ratio.toFixed(2) : ''} |`);
    }
  }
  console.log(`load average after: ${row.loadavgAfter.map((x) => x.toFixed(1)).join(' ')}`);
  return row;
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
    const row = { gibPerInput: gib, bytesPerInput: g.bytesPerInput, tensors: g.tensors, loadavgBefore: os.loadavg(), cat: [], write: [], writeDurable: [], sha: [], analyze: [], noHash: [], hash: [], hashWarm: [], hashPrevious: [] };
    const cacheFile = path.join(work, 'sha256-cache.json');
    if (backends) {
      row.backends = {};
      for (const v of variants) row.backends[v.key] = { analyze: [], noHash: [] };
    }
    if (values.layouts) {
      results.push(layoutsRow(dir, g, row));
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    for (let i = 0; i < reps; i++) {
      execSync('sync'); // each run starts with no dirty pages of a previous one (not timed)
      row.cat.push(timeCat(dir));
      row.write.push(timeWrite(dir));
      if (!backends) row.writeDurable.push(timeWrite(dir, true));
      if (backends) {
        // the order rotates rep by rep, so that no variant always runs first or last
        for (let j = 0; j < variants.length; j++) {
          const v = variants[(i + j) % variants.length];
          row.backends[v.key].analyze.push(runEdit(dir, ['--no-hash', ...v.args], 'analyze'));
          row.backends[v.key].noHash.push(runEdit(dir, ['--no-hash', ...v.args]));
        }
        continue;
      }
      row.sha.push(shaRate(dir));
      row.analyze.push(runEdit(dir, ['--no-hash', ...common], 'analyze'));
      row.noHash.push(runEdit(dir, ['--no-hash', ...common]));
      fs.rmSync(cacheFile, { force: true }); // the default edit with a cold hash cache
      row.hash.push(runEdit(dir, [...common], 'edit', { GEOEDIT_HASH_CACHE: cacheFile }));
      row.hashWarm.push(runEdit(dir, [...common], 'edit', { GEOEDIT_HASH_CACHE: cacheFile }));
      if (values.ab) {
        fs.rmSync(cacheFile, { force: true });
        row.hashPrevious.push(runEdit(dir, [...common], 'edit', { GEOEDIT_HASH_CACHE: cacheFile, ...PREVIOUS_PATH }));
      }
    }
    if (backends) {
      const cat = Math.min(...row.cat);
      const inBytes = 3 * g.bytesPerInput;
      row.summary = { catS: cat, catGBps: inBytes / 1e9 / cat, writeOneS: Math.min(...row.write), backends: {} };
      console.log(`cat (read only, warm):      ${cat.toFixed(2)} s  ${(inBytes / 1e9 / cat).toFixed(2)} GB/s`);
      console.log(`copy one input (write floor): ${row.summary.writeOneS.toFixed(2)} s`);
      for (const b of variants.map((v) => v.key)) {
        const an = median(row.backends[b].analyze.map((x) => x.wallS)), ed = median(row.backends[b].noHash.map((x) => x.wallS));
        const rss = Math.max(...row.backends[b].noHash.map((x) => x.maxRssMiB));
        row.summary.backends[b] = { analyzeS: an, ratioAnalyze: an / cat, editNoHashS: ed, ratioNoHash: ed / cat, rssNoHashMiB: rss };
        console.log(`[${b}] analyze ${an.toFixed(2)} s (${(an / cat).toFixed(2)}x read time); edit --no-hash ${ed.toFixed(2)} s (${(ed / cat).toFixed(2)}x read time), peak RSS ${rss.toFixed(0)} MiB`);
      }
      // Issue 17 item 4: with `--backends cpu,cuda,auto`, 'auto' (as a user gets it) against the faster
      // of the two, per density: target <= 1.10x on every case.
      if (backends.includes('auto') && backends.includes('cpu') && backends.includes('cuda')) {
        row.summary.auto = [];
        for (const d of densities) {
          const k = (b) => (d ? `${b} density ${d}` : b);
          const s = (b) => row.summary.backends[k(b)];
          const picked = row.backends[k('auto')].noHash[0]?.backend ?? '?';
          const best = Math.min(s('cpu').editNoHashS, s('cuda').editNoHashS), bestAn = Math.min(s('cpu').analyzeS, s('cuda').analyzeS);
          const a = { density: d, picked, editVsBest: s('auto').editNoHashS / best, analyzeVsBest: s('auto').analyzeS / bestAn };
          row.summary.auto.push(a);
          console.log(`'auto'${d ? ` density ${d}` : ''} (picked ${picked}): edit --no-hash ${a.editVsBest.toFixed(2)}x the faster backend, analyze ${a.analyzeVsBest.toFixed(2)}x (target <= 1.10x: ${a.editVsBest <= 1.1 && a.analyzeVsBest <= 1.1 ? 'met' : 'NOT met'})`);
        }
      }
      results.push(row);
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    // Medians over the reps (every measurement of a rep ran back to back, interleaved with the others); each edit: its median rep.
    const cat = median(row.cat);
    const nh = medianRep(row.noHash), hh = medianRep(row.hash), hw = medianRep(row.hashWarm), an = medianRep(row.analyze);
    row.loadavgAfter = os.loadavg();
    const inBytes = 3 * g.bytesPerInput;
    const sha1 = median(row.sha.map((x) => x.bytesPerS)), cores = os.cpus().length;
    // The default job hashes its inputs (provenance) and its output files (the manifest's lineage
    // record, docs/governance.md): both count as bytes hashed.
    const outBytes = hh.outBytes ?? g.bytesPerInput;
    const writeOne = median(row.write), hashFloor = (inBytes + outBytes) / (sha1 * cores), hashInputsFloor = inBytes / (sha1 * cores);
    const writeDurable = median(row.writeDurable);
    // The job writes its output durably (fsync before the commit), so the write floor is the durable copy;
    // the page-cache-only limit (the floor if the job did not fsync) is reported beside it.
    const limit = Math.max(cat, writeDurable, hashFloor);
    const limitCache = Math.max(cat, writeOne, hashFloor);
    row.summary = {
      statistic: `median of ${reps} (each edit: the rep with the median wall time, all its fields that rep's)`,
      catS: cat, catGBps: inBytes / 1e9 / cat,
      writeOneS: writeOne, writeOneGBps: g.bytesPerInput / 1e9 / writeOne,
      writeDurableS: writeDurable, writeDurableGBps: g.bytesPerInput / 1e9 / writeDurable,
      limitPageCacheS: limitCache, editHashVsPageCacheLimit: hh.wallS / limitCache, editNoHashVsPageCacheLimit: nh.wallS / limitCache,
      analyzeS: an.wallS, analyzeGBps: inBytes / 1e9 / an.wallS, ratioAnalyze: an.wallS / cat,
      editNoHashS: nh.wallS, editNoHashGBps: inBytes / 1e9 / nh.wallS, ratioNoHash: nh.wallS / cat, rssNoHashMiB: Math.max(...row.noHash.map((x) => x.maxRssMiB)),
      editHashS: hh.wallS, editHashGBps: inBytes / 1e9 / hh.wallS, ratioHash: hh.wallS / cat, rssHashMiB: Math.max(...row.hash.map((x) => x.maxRssMiB)),
      sha256CoreGBps: sha1 / 1e9, sha256Provider: row.sha[0].provider, cores, hashFloorS: hashFloor, hashInputsOnlyFloorS: hashInputsFloor, bytesHashed: inBytes + outBytes,
      limitS: limit, limitIs: limit === cat ? 'read the inputs' : limit === writeDurable ? 'write one output durably' : 'hash the inputs and the output on every core',
      editHashVsLimit: hh.wallS / limit, editHashWarmS: hw.wallS, editHashWarmVsLimit: hw.wallS / limit, editNoHashVsLimit: nh.wallS / limit,
      hashFromCold: hh.hashFrom, hashFromWarm: hw.hashFrom,
      // What the cores allow: the default edit's CPU time spread over every core, and its parts.
      editHashCpuS: hh.cpuS, editHashUserS: hh.userS, editHashSystemS: hh.systemS, cpuFloorS: hh.cpuS / cores, cpuFloorVsLimit: hh.cpuS / cores / limit,
      sha256CoreGBpsCpu: median(row.sha.map((x) => x.bytesPerCpuS)) / 1e9, hashCoreS: (inBytes + outBytes) / median(row.sha.map((x) => x.bytesPerCpuS)), analyzeCpuS: an.cpuS,
      phases: Object.fromEntries(Object.entries({ hash: hh, hashWarm: hw, noHash: nh, analyze: an }).map(([k, x]) => [k, { startS: x.startS, dataS: x.dataS, sealS: x.sealS, commitS: x.commitS, cpuS: x.cpuS, userS: x.userS, systemS: x.systemS }])),
    };
    const s = row.summary;
    console.log(`(every figure: the median of ${reps} reps; each edit's row: its median rep, the run with the median wall time, CPU and phases of that run)`);
    console.log(`cat (read only, warm):      ${s.catS.toFixed(2)} s  ${s.catGBps.toFixed(2)} GB/s`);
    console.log(`copy one input (write floor): ${s.writeOneS.toFixed(2)} s  ${s.writeOneGBps.toFixed(2)} GB/s`);
    console.log(`copy one input + fsync:     ${s.writeDurableS.toFixed(2)} s  ${s.writeDurableGBps.toFixed(2)} GB/s (durable write floor)`);
    console.log(`analyze (read+compute):     ${s.analyzeS.toFixed(2)} s  ${s.analyzeGBps.toFixed(2)} GB/s of input  ${s.ratioAnalyze.toFixed(2)}x read time`);
    console.log(`edit --no-hash:             ${s.editNoHashS.toFixed(2)} s  ${s.editNoHashGBps.toFixed(2)} GB/s of input  ${s.ratioNoHash.toFixed(2)}x read time  peak RSS ${s.rssNoHashMiB.toFixed(0)} MiB`);
    console.log(`edit (SHA-256 of inputs):   ${s.editHashS.toFixed(2)} s  ${s.editHashGBps.toFixed(2)} GB/s of input  ${s.ratioHash.toFixed(2)}x read time  peak RSS ${s.rssHashMiB.toFixed(0)} MiB`);
    console.log(`SHA-256, one core:          ${s.sha256CoreGBps.toFixed(2)} GB/s of wall time, ${s.sha256CoreGBpsCpu.toFixed(2)} GB per CPU-second (${s.sha256Provider}); ${cores} cores -> hashing the inputs and the output needs >= ${s.hashFloorS.toFixed(2)} s (the inputs alone ${s.hashInputsOnlyFloorS.toFixed(2)} s; at the CPU-second rate ${(s.hashCoreS / cores).toFixed(2)} s)`);
    console.log(`\nhardware limit of the job: ${s.limitS.toFixed(2)} s (${s.limitIs}) = max(read ${s.catS.toFixed(2)}, write one durably ${s.writeDurableS.toFixed(2)}, hash ${s.hashFloorS.toFixed(2)}); without the fsync: ${s.limitPageCacheS.toFixed(2)} s`);
    console.log(`CPU: the default edit used ${s.editHashCpuS.toFixed(2)} core-s (user ${s.editHashUserS.toFixed(2)} + system ${s.editHashSystemS.toFixed(2)}; of it SHA-256 of ${((inBytes + outBytes) / 1e9).toFixed(2)} GB at ${s.sha256CoreGBpsCpu.toFixed(2)} GB per CPU-second >= ${s.hashCoreS.toFixed(2)}, analyze's read + compute ${s.analyzeCpuS.toFixed(2)}): on ${cores} cores >= ${s.cpuFloorS.toFixed(2)} s = ${s.cpuFloorVsLimit.toFixed(2)}x the limit`);
    console.log('| run | s | × limit | × limit without fsync | CPU s (user + sys) | start s | data s | seal s | commit s | hashes | target |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    const tally = (a) => (a.length ? Object.entries(a.reduce((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {})).map(([k, v]) => `${v} ${k}`).join(', ') : 'none');
    const cols = (x) => `${x.cpuS.toFixed(2)} (${x.userS.toFixed(2)} + ${x.systemS.toFixed(2)}) | ${sec(x.startS)} | ${sec(x.dataS)} | ${sec(x.sealS)} | ${sec(x.commitS)}`;
    console.log(`| edit (default: hashed, cold cache) | ${s.editHashS.toFixed(2)} | ${s.editHashVsLimit.toFixed(2)} | ${s.editHashVsPageCacheLimit.toFixed(2)} | ${cols(hh)} | ${tally(s.hashFromCold)} | ≤ 1.25×: ${s.editHashVsLimit <= 1.25 ? 'met' : 'NOT met'} |`);
    console.log(`| edit (hashed, warm cache) | ${s.editHashWarmS.toFixed(2)} | ${s.editHashWarmVsLimit.toFixed(2)} | ${(s.editHashWarmS / s.limitPageCacheS).toFixed(2)} | ${cols(hw)} | ${tally(s.hashFromWarm)} | |`);
    console.log(`| edit --no-hash | ${s.editNoHashS.toFixed(2)} | ${s.editNoHashVsLimit.toFixed(2)} | ${s.editNoHashVsPageCacheLimit.toFixed(2)} | ${cols(nh)} | none | |`);
    if (row.hashPrevious.length) {
      const hp = medianRep(row.hashPrevious);
      s.editHashPreviousS = hp.wallS; s.editHashPreviousVsLimit = hp.wallS / limit; s.phases.hashPrevious = { startS: hp.startS, dataS: hp.dataS, sealS: hp.sealS, commitS: hp.commitS, cpuS: hp.cpuS, userS: hp.userS, systemS: hp.systemS };
      console.log(`| edit (default, ${AB_LABEL}: --ab) | ${hp.wallS.toFixed(2)} | ${(hp.wallS / limit).toFixed(2)} | ${(hp.wallS / s.limitPageCacheS).toFixed(2)} | ${cols(hp)} | ${tally(hp.hashFrom)} | |`);
    }
    console.log(`| analyze --no-hash | ${s.analyzeS.toFixed(2)} | ${(s.analyzeS / limit).toFixed(2)} | ${(s.analyzeS / s.limitPageCacheS).toFixed(2)} | ${cols(an)} | none | |`);
    console.log(`load average after: ${row.loadavgAfter.map((x) => x.toFixed(1)).join(' ')}`);
    results.push(row);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const outDir = path.join(__dirname, 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `checkpoint-${new Date().toISOString().slice(0, 10)}${values.tag ? `-${values.tag.replace(/[^A-Za-z0-9_.-]+/g, '-')}` : ''}.json`);
  fs.writeFileSync(file, JSON.stringify({
    date: new Date().toISOString(), machine: { cpu: os.cpus()[0].model, cpus: os.cpus().length, memGiB: os.totalmem() / 2 ** 30, node: process.version },
    command: `node bench/checkpoint.js ${process.argv.slice(2).join(' ')}`, targets: { ratio: 1.5, rssMiB: 1024, editHashVsLimit: 1.25 },
    abEnv: values.ab ? PREVIOUS_PATH : null, // the B side's variables (--ab: hashPrevious)
    results,
  }, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(ROOT, file)}`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
