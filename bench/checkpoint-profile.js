#!/usr/bin/env node
// Where the time of one `geoedit edit` goes (issue 17, the checkpoint pipeline): runs the edit as a
// child process with the job's phase markers on (GEOEDIT_TEST_STOP_AT=none: each phase is written to
// stderr, nothing stops) and, every 50 ms, samples /proc/meminfo (Dirty, Writeback) and the child's
// CPU time (user + system, /proc/PID/stat). Prints one line per phase: wall time, CPU seconds of the
// child in it (of 2 cores: cpu/wall = cores busy), and the peak Dirty/Writeback seen.
//
//   node bench/checkpoint-profile.js --dir DIR [--args '--no-hash'] [--strace]
//   DIR holds base/ old/ new/ (bench/checkpoint.js's layout; --gen GIB makes them there first).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execSync } = require('node:child_process');
const { parseArgs } = require('node:util');

const ROOT = process.env.GEOEDIT_BENCH_ROOT ? path.resolve(process.env.GEOEDIT_BENCH_ROOT) : path.resolve(__dirname, '..');
const { values } = parseArgs({ options: { dir: { type: 'string' }, args: { type: 'string', default: '' }, env: { type: 'string', default: '' }, strace: { type: 'boolean' }, cmd: { type: 'string', default: 'edit' } } });
const dir = path.resolve(values.dir);
const HZ = 100; // USER_HZ

function meminfo() {
  const t = fs.readFileSync('/proc/meminfo', 'utf8');
  const v = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)[1]) / 1024; // MiB
  return { dirty: v('Dirty'), wb: v('Writeback') };
}
function sysCpu() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / HZ, iowait: f[4] / HZ, idle: f[3] / HZ };
}
function cpuOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / HZ, sys: Number(f[12]) / HZ };
  } catch { return null; }
}

async function profile() {
  const out = path.join(dir, 'out');
  fs.rmSync(out, { recursive: true, force: true });
  execSync('sync');
  const script = `const {main}=require(${JSON.stringify(path.join(ROOT, 'dist', 'cjs', 'cli', 'main.js'))});main(process.argv.slice(1)).then((c)=>{process.stderr.write('geoedit-test: phase end\\n');process.exitCode=c;});`;
  const extra = values.args ? values.args.split(' ').filter(Boolean) : [];
  const argv = ['-e', script, values.cmd, '--base', path.join(dir, 'base'), '--old', path.join(dir, 'old'), '--new', path.join(dir, 'new'), ...(values.cmd === 'edit' ? ['--out', out] : []), '--quiet', '--json', ...extra];
  const env = { ...process.env, GEOEDIT_TEST_STOP_AT: 'none' };
  for (const kv of values.env.split(' ').filter(Boolean)) { const [k, v] = kv.split('='); env[k] = v; }
  const cmd = values.strace ? 'strace' : process.execPath;
  const args = values.strace ? ['-f', '-c', '-S', 'time', '-o', path.join(dir, 'strace.txt'), process.execPath, ...argv] : argv;
  const t0 = process.hrtime.bigint();
  const now = () => Number(process.hrtime.bigint() - t0) / 1e9;
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const phases = [{ name: 'start', at: 0 }];
  let stdout = '';
  child.stdout.on('data', (d) => { stdout += d; });
  let buf = '';
  child.stderr.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      const m = /^geoedit-test: phase (\S+)/.exec(line);
      if (m) phases.push({ name: m[1], at: now() });
      else if (line.trim()) process.stderr.write(line + '\n');
    }
  });
  const samples = [];
  const timer = setInterval(() => {
    const c = cpuOf(child.pid);
    samples.push({ at: now(), ...meminfo(), ...sysCpu(), cpu: c ? c.user + c.sys : null, user: c?.user, sys: c?.sys });
  }, 50);
  const code = await new Promise((r) => child.on('close', r));
  clearInterval(timer);
  const wall = now();
  phases.push({ name: 'exit', at: wall });
  if (code !== 0) throw new Error(`edit failed: ${code}`);
  const summary = JSON.parse(stdout);
  console.log(`load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; wall ${wall.toFixed(2)} s; timings ${JSON.stringify(summary.timings)}`);
  console.log('| phase | from s | wall s | child CPU s (user+sys) | machine busy core-s | iowait s | peak Dirty MiB | peak Writeback MiB |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (let k = 0; k + 1 < phases.length; k++) {
    const a = phases[k].at, b = phases[k + 1].at;
    const inside = samples.filter((s) => s.at >= a && s.at <= b);
    const cpuAt = (t) => { let best = null; for (const s of samples) if (s.cpu !== null && s.at <= t) best = s; return best; };
    const ca = cpuAt(a), cb = cpuAt(b);
    const cpu = ca && cb ? `${(cb.cpu - ca.cpu).toFixed(2)} (${(cb.user - ca.user).toFixed(2)}+${(cb.sys - ca.sys).toFixed(2)})` : '';
    const pd = inside.length ? Math.max(...inside.map((s) => s.dirty)).toFixed(0) : '';
    const pw = inside.length ? Math.max(...inside.map((s) => s.wb)).toFixed(0) : '';
    const sa = inside[0], sb = inside[inside.length - 1];
    const busy = sa && sb ? (sb.busy - sa.busy).toFixed(2) : '', iow = sa && sb ? (sb.iowait - sa.iowait).toFixed(2) : '';
    console.log(`| ${phases[k].name} | ${a.toFixed(2)} | ${(b - a).toFixed(2)} | ${cpu} | ${busy} | ${iow} | ${pd} | ${pw} |`);
  }
  if (values.strace) console.log(fs.readFileSync(path.join(dir, 'strace.txt'), 'utf8').split('\n').slice(0, 25).join('\n'));
  fs.rmSync(out, { recursive: true, force: true });
}

profile().catch((e) => { console.error(e); process.exitCode = 1; });
