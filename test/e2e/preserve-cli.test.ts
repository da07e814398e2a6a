// `geoedit edit|analyze --preserve FILE --preserve-rho R --preserve-mu M` (issue 12), run as a child
// process over the built package: the statistics reach the manifest, the warnings go to stderr,
// the report shows preservation per layer, bad statistics exit 2 with the code and nothing written.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO as ROOT } from '../support/paths';
import { presStats, writePresModel, writeStats } from '../support/preserve-fixture';
import { linearModule, writeAdapter } from '../support/lora';
import { rng } from '../support/prng';
import { PRESERVE_DEFAULTS } from '../../lib/preserve/option';

const BIN = path.join(ROOT, 'bin', 'geoedit.js');
let dir: string;
let m: { base: string; old: string; new: string };
let stats: string;

function run(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir, timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'pipe' });
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'write-esm.js')], { cwd: ROOT, stdio: 'pipe' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-pres-cli-'));
  m = await writePresModel(path.join(dir, 'in'));
  const st = presStats();
  stats = await writeStats(path.join(dir, 'stats.safetensors'), st.tensors, st.shared);
}, 180_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('geoedit --preserve', () => {
  it('edit: statistics, rho and mu reach the manifest; the warning goes to stderr; the report shows it per layer', () => {
    const out = path.join(dir, 'out');
    const report = path.join(dir, 'r.html');
    const r = run(['edit', '--base', m.base, '--old', m.old, '--new', m.new, '--out', out, '--preserve', stats, '--preserve-rho', '0.5', '--preserve-mu', '2', '--quiet', '--report', report]);
    expect(r.stderr).toContain('warning: preservation: 1 edited tensor(s) have no statistics');
    expect(r.stderr).toContain('l0.norm.weight');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/preservation: 6 of 7 preserved with .*stats\.safetensors; update energy removed by the projection: new \d+\.\d%, old \d+\.\d%/);
    const man = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(man.parameters.preserve).toEqual({ file: stats, rho: 0.5, mu: 2 });
    expect(man.tensors.find((t: { name: string }) => t.name === 'l0.k.weight').preserve).toMatchObject({ statistics: 'l0.q.weight', shared: true, rho: 0.5, mu: 2 });
    expect(man.warnings.some((w: string) => w.includes('l0.norm.weight'))).toBe(true);
    const html = fs.readFileSync(report, 'utf8');
    expect(html).toContain('<h2>Preservation</h2>');
    expect(html).toMatch(/<tr><td>other<\/td><td>6 of 7<\/td><td>\d+\.\d%<\/td>/);
  });

  it('analyze --json: the per-tensor record; warnings on stderr, not in the JSON stream', () => {
    const r = run(['analyze', '--base', m.base, '--old', m.old, '--new', m.new, '--preserve', stats, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.tensors.find((t: { name: string }) => t.name === 'l0.fc.bias').preserve).toMatchObject({ withWeight: 'l0.fc.weight', rho: PRESERVE_DEFAULTS.rho, mu: PRESERVE_DEFAULTS.mu });
    expect(r.stderr).toContain('warning: preservation:');
  });

  it('bad statistics and knobs: exit 2 (bad input) or 1 (usage), the code on stderr, nothing written', async () => {
    const bad = await writeStats(path.join(dir, 'bad.safetensors'), [{ name: 'l0.q.weight:cov', dtype: 'F32', shape: [5, 5], data: new Float32Array(25) }], null);
    const out = path.join(dir, 'out-bad');
    let r = run(['edit', '--base', m.base, '--old', m.old, '--new', m.new, '--out', out, '--preserve', bad, '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ERR_SHAPE_MISMATCH');
    expect(r.stderr).toContain("l0.q.weight");
    expect(fs.existsSync(out)).toBe(false);
    r = run(['edit', '--base', m.base, '--old', m.old, '--new', m.new, '--out', out, '--preserve', stats, '--preserve-rho', '0', '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_INVALID_OPTION');
    r = run(['edit', '--base', m.base, '--old', m.old, '--new', m.new, '--out', out, '--preserve-mu', '3', '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--preserve FILE');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('the adapter forms take --preserve too (edit and analyze)', async () => {
    const r = rng(5);
    const mods = () => [linearModule(r, 'model.layers.0.self_attn.q_proj', 8, 6, 2), linearModule(r, 'model.layers.0.mlp.up_proj', 10, 6, 2)];
    await writeAdapter(path.join(dir, 'ao'), { r: 2, lora_alpha: 4, target_modules: ['q_proj', 'up_proj'] }, mods());
    await writeAdapter(path.join(dir, 'an'), { r: 2, lora_alpha: 4, target_modules: ['q_proj', 'up_proj'] }, mods());
    const st = presStats();
    const f = await writeStats(path.join(dir, 'ad-stats.safetensors'), [{ name: 'model.layers.0.self_attn.q_proj.weight:cov', dtype: 'F32', shape: [6, 6], data: st.cq }], null);
    const out = path.join(dir, 'ad-out');
    let res = run(['edit', '--old-adapter', path.join(dir, 'ao'), '--new-adapter', path.join(dir, 'an'), '--out', out, '--preserve', f, '--preserve-mu', '0']);
    expect(res.code).toBe(0);
    expect(res.stderr).toContain('warning: preservation: 1 module(s) have no statistics');
    const man = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(man.modules.find((x: { name: string }) => x.name === 'model.layers.0.self_attn.q_proj').preserve).toMatchObject({ mu: 0, rho: 0.3 });
    res = run(['analyze', '--old-adapter', path.join(dir, 'ao'), '--new-adapter', path.join(dir, 'an'), '--preserve', f, '--json']);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).modules[0].preserve === undefined).toBe(false);
  });
});
