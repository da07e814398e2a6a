// The governance walkthrough (docs/governance.md) through the CLI over the built package, from
// nothing: export the demo model, edit it, edit the edit, log, evaluate with gates passing and
// failing, sign a review and verify it, catch a flipped byte, roll out in stages; and every bad
// input of issue 15 gives its code and exit status and leaves the directory as it was.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { REPO } from '../support/paths';

const BIN = path.join(REPO, 'bin', 'geoedit.js');
const GEO = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}`;
const DEMO_SCORE = `${GEO} demo-score`;
let dir: string;
let env: NodeJS.ProcessEnv;

function run(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir, timeout: 240_000, env });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function snapshot(d: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of fs.readdirSync(d).sort()) {
    const p = path.join(d, n);
    if (fs.statSync(p).isFile()) out[n] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  }
  return out;
}

function manifest(d: string): Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return JSON.parse(fs.readFileSync(path.join(d, 'geoedit-manifest.json'), 'utf8'));
}

/** A scorer that reports the edit's strength from the manifest: rollout control flow without model numerics. */
function strengthScorer(): string {
  const f = path.join(dir, 'strength.js');
  fs.writeFileSync(f, `const m = require(require('path').join(process.argv[process.argv.length - 1], 'geoedit-manifest.json'));\nconsole.log(JSON.stringify({ strength: m.parameters.scale }));\n`);
  return `${JSON.stringify(process.execPath)} ${JSON.stringify(f)}`;
}

beforeAll(() => {
  execFileSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'pipe' });
  execFileSync(process.execPath, [path.join(REPO, 'scripts', 'write-esm.js')], { cwd: REPO, stdio: 'pipe' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-gov-e2e-'));
  env = { ...process.env, GEOEDIT_CACHE_DIR: path.join(dir, 'cache') }; // a fresh machine: nothing cached
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('governance walkthrough (CLI)', () => {
  it('exports the demo model, and demo-score prints Reliability / Generality / Locality as JSON', () => {
    const r = run(['demo', '--export', 'demo', '--fast', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    for (const d of ['base', 'old', 'new']) expect(fs.existsSync(path.join(dir, 'demo', d, 'model.safetensors'))).toBe(true);
    for (const d of ['old-adapter', 'new-adapter']) expect(fs.existsSync(path.join(dir, 'demo', d, 'adapter_config.json'))).toBe(true);
    const s = run(['demo-score', 'demo/base']);
    expect(s.code, s.stderr).toBe(0);
    const m = JSON.parse(s.stdout);
    expect(Object.keys(m).sort()).toEqual(['generality', 'locality', 'reliability']);
    expect(m.locality).toBe(1); // the base model agrees with itself on every Locality prompt
    const n = JSON.parse(run(['demo-score', 'demo/new']).stdout);
    expect(n.reliability).toBeGreaterThan(m.reliability); // fine-tuned on the new facts
    expect(run(['demo-score', 'demo/old-adapter']).code).toBe(2);
  });

  it('an edit and an edit of that edit chain: log shows both, newest first, with parent ids', () => {
    expect(run(['edit', '--base', 'demo/base', '--old', 'demo/old', '--new', 'demo/new', '--out', 'e1', '--quiet']).code).toBe(0);
    expect(run(['edit', '--base', 'e1', '--old', 'demo/old', '--new', 'demo/new', '--out', 'e2', '--scale', '0.5', '--quiet']).code).toBe(0);
    const m1 = manifest(path.join(dir, 'e1')), m2 = manifest(path.join(dir, 'e2'));
    expect(m1.id).toMatch(/^[0-9a-f]{64}$/);
    expect(m1.parent).toBeNull();
    expect(m2.parent).toMatchObject({ id: m1.id, role: 'base', path: path.join(dir, 'e1') });
    expect(m1.outputFiles.map((f: { name: string }) => f.name)).toEqual(['geoedit-demo.json', 'model.safetensors']);
    const j = run(['log', 'e2', '--json']);
    expect(j.code, j.stderr).toBe(0);
    const chain = JSON.parse(j.stdout);
    expect(chain.map((e: { id: string }) => e.id)).toEqual([m2.id, m1.id]);
    expect(chain.map((e: { parent: string | null }) => e.parent)).toEqual([m1.id, null]);
    expect(chain[0].parameters).toEqual({ scale: 0.5 });
    const t = run(['log', 'e2']);
    expect(t.stdout).toContain(`edit ${m2.id}`);
    expect(t.stdout).toContain(`parent ${m1.id}`);
    expect(t.stdout).toContain('scale=0.5');
  });

  it('adapter outputs take part the same way: an adapter edit has an id and hashes, and an edit with it as new-adapter names it as parent', () => {
    expect(run(['edit', '--old-adapter', 'demo/old-adapter', '--new-adapter', 'demo/new-adapter', '--out', 'a1']).code).toBe(0);
    const a1 = manifest(path.join(dir, 'a1'));
    expect(a1.id).toMatch(/^[0-9a-f]{64}$/);
    expect(a1.outputFiles.map((f: { name: string }) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(run(['verify', 'a1']).code).toBe(0);
    expect(run(['edit', '--old-adapter', 'demo/old-adapter', '--new-adapter', 'a1', '--base', 'demo/base', '--out', 'a2']).code).toBe(0);
    const a2 = manifest(path.join(dir, 'a2'));
    expect(a2.parent).toMatchObject({ id: a1.id, role: 'new-adapter' });
    const chain = JSON.parse(run(['log', 'a2', '--json']).stdout);
    expect(chain.map((e: { id: string; parent: string | null }) => [e.id, e.parent])).toEqual([[a2.id, a1.id], [a1.id, null]]);
    expect(run(['verify', 'a2']).code).toBe(0);
    expect(run(['report', 'a1']).code).toBe(0); // the adapter form of the page
    expect(fs.readFileSync(path.join(dir, 'a1', 'geoedit-report.html'), 'utf8')).toContain(a1.id);
    expect(run(['verify', 'a1']).code).toBe(0); // the report is not an output file
  });

  it('evaluate: gates passing exit 0, a failing gate exits 4 naming it with the value; both are in the manifest and the log', () => {
    const pass = run(['evaluate', 'e1', '--scorer', DEMO_SCORE, '--gate', 'reliability>=0.5', '--gate', 'locality>0']);
    expect(pass.code, pass.stderr).toBe(0);
    expect(pass.stdout).toMatch(/gate 'reliability>=0.5' passed: reliability = [\d.]+/);
    const loc = JSON.parse(run(['demo-score', 'e1']).stdout).locality as number;
    // a relative gate set just above what the edit reaches: base locality is 1, so 'locality>=F*base' with F > loc fails
    const f = Math.min(1, loc + 0.01).toFixed(3);
    const fail = run(['evaluate', 'e1', '--scorer', DEMO_SCORE, '--gate', `locality>=${f}*base`]);
    expect(fail.code).toBe(4);
    expect(fail.stderr).toContain(`ERR_GATE_FAILED: gate 'locality>=${f}*base' failed: locality = ${loc}`);
    const ev = manifest(path.join(dir, 'e1')).evaluations;
    expect(ev.map((e: { passed: boolean }) => e.passed)).toEqual([true, false]);
    expect(ev[1].baseline).toMatchObject({ source: 'scored', path: path.join(dir, 'demo', 'base'), metrics: { locality: 1 } });
    expect(ev[0]).toMatchObject({ scorer: DEMO_SCORE, exitCode: 0 });
    expect(ev[0].durationMs).toBeGreaterThan(0);
    // the edit of the edit: a relative gate reads the parent's evaluation by the same scorer
    const child = run(['evaluate', 'e2', '--scorer', DEMO_SCORE, '--gate', 'locality>=0.5*base']);
    expect([0, 4]).toContain(child.code);
    expect(manifest(path.join(dir, 'e2')).evaluations[0].baseline).toMatchObject({ source: 'parent', id: manifest(path.join(dir, 'e1')).id });
    expect(run(['log', 'e2']).stdout).toMatch(/evaluation 2: .*\(a gate FAILED\)/);
    expect(run(['verify', 'e1']).code).toBe(0); // evaluations are appended: the outputs and the id still check out
  });

  it('bad scorers and gates: NaN, a crash, a hang past --timeout, no JSON, a missing metric exit 2; a malformed gate exits 1; nothing is recorded', () => {
    const sh = (name: string, body: string) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      return p;
    };
    const before = snapshot(path.join(dir, 'e1'));
    const cases: Array<[string[], number, RegExp]> = [
      [['--scorer', sh('nan.sh', 'echo \'{"locality": NaN}\''), '--gate', 'locality>=0.9'], 2, /ERR_SCORER_OUTPUT: .*locality = NaN/],
      [['--scorer', sh('crash.sh', 'echo "Segmentation fault" >&2; exit 139'), '--gate', 'locality>=0.9'], 2, /ERR_SCORER_FAILED: .*status 139/],
      [['--scorer', sh('hang.sh', 'sleep 60'), '--timeout', '1', '--gate', 'locality>=0.9'], 2, /ERR_SCORER_TIMEOUT/],
      [['--scorer', sh('nojson.sh', 'echo done'), '--gate', 'locality>=0.9'], 2, /ERR_SCORER_OUTPUT: .*no JSON/],
      [['--scorer', DEMO_SCORE, '--gate', 'perplexity<=12'], 2, /ERR_METRIC_MISSING: gate 'perplexity<=12' names metric 'perplexity'/],
      [['--scorer', DEMO_SCORE, '--gate', 'locality=>0.9'], 1, /ERR_BAD_GATE/],
    ];
    for (const [args, code, msg] of cases) {
      const r = run(['evaluate', 'e1', ...args]);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
    expect(snapshot(path.join(dir, 'e1'))).toEqual(before);
  });

  it('review signed with an openssl-format key, verified against trusted keys; an untrusted signature exits 2', () => {
    fs.mkdirSync(path.join(dir, 'trusted'));
    expect(run(['keygen', 'alice']).code).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'alice.key.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(fs.statSync(path.join(dir, 'alice.key.pem')).mode & 0o077).toBe(0);
    fs.copyFileSync(path.join(dir, 'alice.pub.pem'), path.join(dir, 'trusted', 'alice.pem'));
    const r = run(['review', 'e1', '--reviewer', 'Alice', '--decision', 'approve', '--note', 'locality within budget', '--key', 'alice.key.pem']);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(path.join(dir, 'e1', 'geoedit-report.html'))).toBe(true); // the page approved, hashed into the record
    const v = run(['verify', 'e1', '--trusted-keys', 'trusted']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toContain('signed by trusted key alice: Alice (approve, record 1)');

    // openssl's own keys work the same way (when openssl is installed)
    if (spawnSync('openssl', ['version']).status === 0) {
      execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', path.join(dir, 'bob.pem')]);
      execFileSync('openssl', ['pkey', '-in', path.join(dir, 'bob.pem'), '-pubout', '-out', path.join(dir, 'trusted', 'bob.pem')]);
      expect(run(['review', 'e1', '--reviewer', 'Bob', '--decision', 'approve', '--key', 'bob.pem']).code).toBe(0);
      expect(run(['verify', 'e1', '--trusted-keys', 'trusted']).stdout).toContain('signed by trusted key bob: Bob');
    }
    expect(run(['keygen', 'mallory']).code).toBe(0);
    expect(run(['review', 'e2', '--reviewer', 'Mallory', '--decision', 'approve', '--key', 'mallory.key.pem']).code).toBe(0);
    const before = snapshot(path.join(dir, 'e2'));
    const u = run(['verify', 'e2', '--trusted-keys', 'trusted']);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/ERR_REVIEW_UNTRUSTED: .*record 1 \(Mallory, approve\) is signed by key [0-9a-f]{64}, which is not among the trusted keys/);
    expect(snapshot(path.join(dir, 'e2'))).toEqual(before);
    expect(run(['review', 'e1', '--reviewer', 'X', '--decision', 'ok']).code).toBe(1);
  });

  it('a forged or re-ordered review record exits 2 (ERR_REVIEW_INVALID), and review refuses to append to it', () => {
    const d = path.join(dir, 'e1');
    const log = path.join(d, 'geoedit-reviews.jsonl');
    const good = fs.readFileSync(log, 'utf8');
    const lines = good.trimEnd().split('\n');
    const first = JSON.parse(lines[0]!);
    const forged = good.replace(`"reviewer":"${first.reviewer}"`, '"reviewer":"The CEO"');
    const reordered = lines.length > 1 ? [lines[1], lines[0], ...lines.slice(2)].join('\n') + '\n' : null;
    for (const [name, text] of [['forged', forged], ['re-ordered', reordered]] as const) {
      if (text === null) continue;
      fs.writeFileSync(log, text);
      const before = snapshot(d);
      const v = run(['verify', 'e1', '--trusted-keys', 'trusted']);
      expect(v.code, name).toBe(2);
      expect(v.stderr, name).toMatch(/ERR_REVIEW_INVALID/);
      const r = run(['review', 'e1', '--reviewer', 'Y', '--decision', 'approve']);
      expect(r.code, name).toBe(2);
      expect(snapshot(d), name).toEqual(before);
    }
    fs.writeFileSync(log, good);
    expect(run(['verify', 'e1', '--trusted-keys', 'trusted']).code).toBe(0);
  });

  it('concurrent review processes on one directory never lose a record', async () => {
    expect(run(['edit', '--base', 'demo/base', '--old', 'demo/old', '--new', 'demo/new', '--out', 'c1', '--quiet']).code).toBe(0);
    const n = 8;
    const codes = await Promise.all(Array.from({ length: n }, (_, i) => new Promise<number>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'review', 'c1', '--reviewer', `r${i}`, '--decision', i % 2 ? 'reject' : 'approve', ...(i % 3 === 0 ? ['--key', 'alice.key.pem'] : [])], { cwd: dir, env, stdio: 'ignore' });
      p.on('close', (c) => resolve(c ?? -1));
    })));
    expect(codes).toEqual(new Array(n).fill(0));
    const v = run(['verify', 'c1', '--json']);
    expect(v.code, v.stdout).toBe(0);
    const res = JSON.parse(v.stdout);
    expect(res.reviews.records.map((r: { reviewer: string }) => r.reviewer).sort()).toEqual(Array.from({ length: n }, (_, i) => `r${i}`).sort());
    expect(fs.existsSync(path.join(dir, 'c1', 'geoedit-reviews.jsonl.lock'))).toBe(false);
  });

  it('verify catches a flipped byte, a hand-edited manifest and extra weights (exit 2), changing nothing', () => {
    execFileSync('cp', ['-r', path.join(dir, 'c1'), path.join(dir, 'c2')]);
    const w = path.join(dir, 'c1', 'model.safetensors');
    const b = fs.readFileSync(w);
    b[b.length >> 1] ^= 0x20;
    fs.writeFileSync(w, b);
    const before = snapshot(path.join(dir, 'c1'));
    const v = run(['verify', 'c1']);
    expect(v.code).toBe(2);
    expect(v.stderr).toContain(`ERR_OUTPUT_CHANGED: ${w} changed`);
    expect(snapshot(path.join(dir, 'c1'))).toEqual(before);

    const mf = path.join(dir, 'c2', 'geoedit-manifest.json');
    const m = JSON.parse(fs.readFileSync(mf, 'utf8'));
    m.parameters.scale = 0.1; // a hand edit
    fs.writeFileSync(mf, JSON.stringify(m, null, 2));
    const t = run(['verify', 'c2']);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/ERR_MANIFEST_TAMPERED: .*edited after it was written/);
    expect(run(['review', 'c2', '--reviewer', 'Z', '--decision', 'approve']).code).toBe(2);
    expect(run(['evaluate', 'c2', '--scorer', DEMO_SCORE]).code).toBe(2);

    fs.copyFileSync(path.join(dir, 'e2', 'model.safetensors'), path.join(dir, 'e1', 'model-00002-of-00002.safetensors'));
    const x = run(['verify', 'e1', '--inputs']);
    expect(x.code).toBe(2);
    expect(x.stderr).toMatch(/ERR_OUTPUT_EXTRA: .*model-00002-of-00002.safetensors is not in the manifest \(an extra weights file\)/);
    fs.rmSync(path.join(dir, 'e1', 'model-00002-of-00002.safetensors'));
    const i = run(['verify', 'e1', '--inputs']);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/inputs: 3 checked, 0 changed/);
  });

  it('report re-renders the page with lineage, evaluations and reviews', () => {
    const r = run(['report', 'e2', '--out', 'e2-report.html']);
    expect(r.code, r.stderr).toBe(0);
    const html = fs.readFileSync(path.join(dir, 'e2-report.html'), 'utf8');
    for (const s of ['<h2>Lineage</h2>', '<h2>Evaluations</h2>', '<h2>Reviews</h2>', manifest(path.join(dir, 'e2')).id, 'Mallory', 'locality&gt;=0.5*base']) expect(html).toContain(s);
  });

  it('rollout goes on while the gates pass and writes the last passing stage; stage records in its manifest, no temp dirs left', () => {
    const scorer = strengthScorer();
    const r = run(['rollout', '--base', 'demo/base', '--old', 'demo/old', '--new', 'demo/new', '--out', 'r1', '--stages', '0.25,0.5,0.75,1', '--scorer', scorer, '--gate', 'strength<=0.5']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[rollout stage 3\/4: scale 0.75\] gate 'strength<=0.5' failed: strength = 0.75/);
    expect(r.stderr).not.toContain('stage 4/4');
    const m = manifest(path.join(dir, 'r1'));
    expect(m.parameters.scale).toBe(0.5);
    expect(m.rollout).toMatchObject({ chosen: 1, stoppedAt: 2, gates: ['strength<=0.5'] });
    expect(m.rollout.stages.map((s: { options: { scale: number }; passed: boolean }) => [s.options.scale, s.passed])).toEqual([[0.25, true], [0.5, true], [0.75, false]]);
    expect(m.output.path).toBe(path.join(dir, 'r1'));
    expect(m.evaluations).toHaveLength(1);
    expect(run(['verify', 'r1']).code).toBe(0);
    // the same weights as a plain edit at the chosen stage
    expect(run(['edit', '--base', 'demo/base', '--old', 'demo/old', '--new', 'demo/new', '--out', 'plain05', '--scale', '0.5', '--quiet']).code).toBe(0);
    expect(snapshot(path.join(dir, 'r1'))['model.safetensors']).toBe(snapshot(path.join(dir, 'plain05'))['model.safetensors']);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.r1.') || n.startsWith('.r2.'))).toEqual([]);

    // the first stage failing: nothing at the target, exit 4
    const f = run(['rollout', '--base', 'demo/base', '--old', 'demo/old', '--new', 'demo/new', '--out', 'r2', '--stages', '0.75,1', '--scorer', scorer, '--gate', 'strength<=0.5']);
    expect(f.code).toBe(4);
    expect(f.stderr).toMatch(/ERR_GATE_FAILED: the first stage \(scale 0.75\) failed, nothing was written/);
    expect(fs.existsSync(path.join(dir, 'r2'))).toBe(false);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.r1.') || n.startsWith('.r2.'))).toEqual([]);
  });

  it('rollout with the demo scorer and a relative gate stops at the first stage whose gate fails; option-set stages and the adapter form', () => {
    const r = run(['rollout', '--base', 'demo/base', '--old', 'demo/old', '--new', 'demo/new', '--out', 'r3', '--stages', '0.25,0.5,0.75,1', '--scorer', DEMO_SCORE, '--gate', 'locality>=0.95*base', '--json']);
    expect([0, 4]).toContain(r.code);
    const rec = JSON.parse(r.stdout);
    const firstFail = rec.stages.findIndex((s: { passed: boolean }) => !s.passed);
    // the stages run in order until the first failure, each stage's recorded gate agrees with its recorded metric
    for (const s of rec.stages) expect(s.passed).toBe(s.metrics.locality >= 0.95 * rec.baseline.metrics.locality);
    expect(rec.stoppedAt).toBe(firstFail < 0 ? null : firstFail);
    expect(rec.stages.length).toBe(firstFail < 0 ? 4 : firstFail + 1);
    if (rec.chosen !== null) {
      expect(r.code).toBe(0);
      // the output scores what its stage recorded
      expect(JSON.parse(run(['demo-score', 'r3']).stdout)).toEqual(rec.stages[rec.chosen].metrics);
    } else {
      expect(fs.existsSync(path.join(dir, 'r3'))).toBe(false);
    }

    const scorer = strengthScorer();
    const js = run(['rollout', '--base', 'demo/base', '--old', 'demo/old', '--new', 'demo/new', '--out', 'r4', '--stages', '[{"scale":0.5,"include":["ffn.*"]},{"scale":1}]', '--scorer', scorer, '--gate', 'strength<=2']);
    expect(js.code, js.stderr).toBe(0);
    const m4 = manifest(path.join(dir, 'r4'));
    expect(m4.rollout.stages.map((s: { options: unknown }) => s.options)).toEqual([{ scale: 0.5, include: ['ffn.*'] }, { scale: 1 }]);

    const ad = run(['rollout', '--old-adapter', 'demo/old-adapter', '--new-adapter', 'demo/new-adapter', '--base', 'demo/base', '--out', 'r5', '--stages', '0.5,1', '--scorer', DEMO_SCORE, '--gate', 'locality>=0', '--json']);
    expect(ad.code, ad.stderr).toBe(0);
    const m5 = manifest(path.join(dir, 'r5'));
    expect(m5.kind).toBe('adapter-merge'); // the one manifest schema (lib/job/manifest.ts): merged adapter output
    expect(m5.rollout).toMatchObject({ form: 'adapter', chosen: 1, stoppedAt: null });
    expect(run(['verify', 'r5']).code).toBe(0);
  });
});
