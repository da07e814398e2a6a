// Issue 14, a third round of hostile cases of the same kinds (not the same cases as rounds 1 and
// 2), over the entry points the first rounds touched least: report, log, assemble, demo --export,
// adapter outputs, merged adapters. Each test names its class; those that failed before the fix
// that came with them say so.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { runAnalyze } from '../../lib/cli/analyze';
import { runAssemble } from '../../lib/cli/assemble';
import { runReport } from '../../lib/cli/report';
import { runLog } from '../../lib/cli/log';
import { runReview } from '../../lib/cli/review';
import { runVerify } from '../../lib/cli/verify';
import { rollout } from '../../lib/governance/rollout';
import { resealManifestFile } from '../../lib/governance/lineage';
import { exportDemoModels } from '../../lib/governance/demo-model';
import { runDemo, checkDemoOut } from '../../lib/cli/demo';
import { readPeftAdapter } from '../../lib/lora/peft';
import { writeSafetensors } from '../../lib/safetensors';
import { linearModule, writeAdapter } from '../support/lora';
import { rng } from '../support/prng';
import { adapterSet, args, checkpointTriple, fingerprint, hidden, run, tmpDir, waitForPhase } from './support';


async function editedOutput(tag: string): Promise<{ s: Awaited<ReturnType<typeof checkpointTriple>>; out: string }> {
  const s = await checkpointTriple(tag);
  const out = path.join(s.root, 'out');
  const r = await run(runEdit, [...args(s), '--out', out]);
  expect(r.code, r.err).toBe(0);
  return { s, out };
}

async function parts(tag: string): Promise<{ s: Awaited<ReturnType<typeof checkpointTriple>>; parts: string[] }> {
  const s = await checkpointTriple(tag);
  const ps = [1, 2].map((k) => path.join(s.root, `part${k}`));
  for (const [k, p] of ps.entries()) expect((await run(runEdit, [...args(s), '--out', p, '--part', `${k + 1}/2`])).code).toBe(0);
  return { s, parts: ps };
}

describe('hostile, round 3: inputs overwritten (class 1)', () => {
  it("geoedit report DIR --out naming one of DIR's own files (its manifest, a shard) is refused; the output stays verifiable (failed before)", async () => {
    const { out } = await editedOutput('g1a');
    const before = fingerprint(out);
    for (const f of ['geoedit-manifest.json', 'model.safetensors', 'config.json']) {
      const r = await run(runReport, [out, '--out', path.join(out, f)]);
      expect(r.code, `${f}: ${r.err}${r.out}`).toBe(1);
      expect(r.err).toMatch(/ERR_OUTPUT_IS_INPUT/);
    }
    expect(fingerprint(out)).toEqual(before);
    // The default place (DIR/geoedit-report.html, not an output file) still works.
    expect((await run(runReport, [out])).code).toBe(0);
  });

  it('assemble --out = one of its parts (with --force) is refused before any work', async () => {
    const { s, parts: ps } = await parts('g1b');
    const before = fingerprint(s.root);
    const r = await run(runAssemble, ['--out', ps[0]!, '--force', '--parts', ...ps]);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/ERR_OUTPUT_IS_INPUT/);
    expect(fingerprint(s.root)).toEqual(before);
  });

  it("assemble --report naming a part's manifest is refused before any work", async () => {
    const { s, parts: ps } = await parts('g1c');
    const before = fingerprint(s.root);
    const r = await run(runAssemble, ['--out', path.join(s.root, 'asm'), '--report', path.join(ps[1]!, 'geoedit-manifest.json'), '--parts', ...ps]);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/ERR_OUTPUT_IS_INPUT/);
    expect(fingerprint(s.root)).toEqual(before);
  });
});

describe('hostile, round 3: targets destroyed without consent (class 2)', () => {
  it('assemble --force --report inside the output being replaced is refused before any work, as edit does (failed before)', async () => {
    const { s, parts: ps } = await parts('g2a');
    const asm = path.join(s.root, 'asm');
    expect((await run(runAssemble, ['--out', asm, '--parts', ...ps])).code).toBe(0);
    const before = fingerprint(s.root);
    const r = await run(runAssemble, ['--out', asm, '--force', '--report', path.join(asm, 'r.html'), '--parts', ...ps]);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/ERR_INVALID_OPTION.*report/);
    expect(fingerprint(s.root)).toEqual(before);
  });

  it('exportDemoModels (demo --export) with force over the current directory, or over a directory that is not a previous export, is refused before any work (before: force removed whatever directory was there, read from the code)', async () => {
    const root = tmpDir('g2b');
    const mine = path.join(root, 'mine'), other = path.join(root, 'other');
    for (const d of [mine, other]) { fs.mkdirSync(d); fs.writeFileSync(path.join(d, 'thesis.tex'), 'years of work'); }
    const cwd = process.cwd();
    process.chdir(mine);
    try {
      await expect(exportDemoModels('.', { force: true, fast: true, cacheDir: path.join(root, 'cache') })).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS', message: expect.stringMatching(/current directory/) });
      await expect(exportDemoModels(other, { force: true, fast: true, cacheDir: path.join(root, 'cache') })).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS', message: expect.stringMatching(/not a previous demo export/) });
    } finally {
      process.chdir(cwd);
    }
    for (const d of [mine, other]) expect(fs.readFileSync(path.join(d, 'thesis.tex'), 'utf8')).toBe('years of work');
    expect(fs.existsSync(path.join(root, 'cache'))).toBe(false); // refused before any model was built
    expect(hidden(root)).toEqual([]);
  });

  it('geoedit demo --out a directory holding the user\'s files, or a file, is refused before any work (class 2; before: report.md, report.json and edit-report.html there were overwritten after the run)', async () => {
    const root = tmpDir('g2d');
    const mine = path.join(root, 'mine');
    fs.mkdirSync(mine);
    fs.writeFileSync(path.join(mine, 'report.md'), 'my notes');
    const other = path.join(root, 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'thesis.tex'), 'years of work');
    const file = path.join(root, 'afile');
    fs.writeFileSync(file, 'a file');
    const cache = path.join(root, 'cache');
    for (const [out, why] of [[mine, /no previous demo report/], [other, /files the demo did not write.*thesis\.tex/], [file, /not a directory/]] as const) {
      const r = await run(runDemo, ['--fast', '--quiet', '--cache-dir', cache, '--out', out]);
      expect(r.code, r.err).toBe(2); // ERR_OUTPUT_EXISTS is exit 2 everywhere (docs/errors.md)
      expect(r.err).toMatch(/ERR_OUTPUT_EXISTS/);
      expect(r.err).toMatch(why);
    }
    expect(fs.readFileSync(path.join(mine, 'report.md'), 'utf8')).toBe('my notes');
    expect(fs.readFileSync(path.join(other, 'thesis.tex'), 'utf8')).toBe('years of work');
    expect(fs.readFileSync(file, 'utf8')).toBe('a file');
    expect(fs.existsSync(cache)).toBe(false); // refused before any model was built
    // a previous demo output (its report.json is a demo report) and an empty directory are accepted
    const prev = path.join(root, 'prev');
    fs.mkdirSync(prev);
    fs.writeFileSync(path.join(prev, 'report.json'), JSON.stringify({ mode: 'quick', sweeps: {}, outputs: {} }));
    fs.writeFileSync(path.join(prev, 'report.md'), 'old demo');
    expect(() => checkDemoOut(prev)).not.toThrow();
    fs.mkdirSync(path.join(root, 'empty'));
    expect(() => checkDemoOut(path.join(root, 'empty'))).not.toThrow();
    expect(() => checkDemoOut(path.join(root, 'missing'))).not.toThrow();
  });

  it('geoedit report --out an existing directory is refused, the directory left as it was', async () => {
    const { s, out } = await editedOutput('g2c');
    const d = path.join(s.root, 'somedir');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'x'), 'x');
    const r = await run(runReport, [out, '--out', d]);
    expect([2, 3]).toContain(r.code);
    expect(r.err).toMatch(/ERR_(OUTPUT_EXISTS|IO)/);
    expect(fs.readdirSync(d)).toEqual(['x']);
    expect(hidden(s.root)).toEqual([]);
  });
});

describe('hostile, round 3: leftovers and signals (classes 4, 5)', () => {
  it('geoedit report into a missing directory is ERR_IO and leaves no temporary file', async () => {
    const { s, out } = await editedOutput('g4a');
    const r = await run(runReport, [out, '--out', path.join(s.root, 'nope', 'r.html')]);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/ERR_IO/);
    expect(hidden(s.root)).toEqual([]);
    expect(hidden(out)).toEqual([]);
  });

  it.each(['seal', 'commit'] as const)('assemble: SIGTERM in the %s phase ends by the signal, nothing at the target, nothing left (failed before: the parts\' locks stayed)', async (phase) => {
    const { s, parts: ps } = await parts(`g5-${phase}`);
    const asm = path.join(s.root, 'asm');
    const r = await waitForPhase(['assemble', '--out', asm, '--parts', ...ps], phase, 'SIGTERM', s.root);
    expect(r.reached, r.stderr).toBe(true);
    expect(r.signal).toBe('SIGTERM');
    expect(fs.existsSync(asm)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
  });

  it('merged adapters: SIGHUP in the side-files phase (a base directory with side files) ends by the signal, nothing left', async () => {
    const s = await adapterSet('g5m');
    const bdir = path.join(s.root, 'basedir');
    fs.mkdirSync(bdir);
    fs.renameSync(s.base, path.join(bdir, 'model.safetensors'));
    for (const n of ['config.json', 'tokenizer.json', 'generation_config.json']) fs.writeFileSync(path.join(bdir, n), '{}');
    const out = path.join(s.root, 'out');
    const r = await waitForPhase(['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--base', bdir, '--out', out], 'side-files', 'SIGHUP', s.root);
    expect(r.reached, r.stderr).toBe(true);
    expect(r.signal).toBe('SIGHUP');
    expect(r.phases).not.toContain('seal');
    expect(fs.existsSync(out)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
  });
});

describe('hostile, round 3: non-finite outputs (class 7)', () => {
  it('merged adapters with --out-dtype f16: an adapted row that overflows f16 is ERR_NON_FINITE_OUTPUT (exit 2), nothing written', async () => {
    const root = tmpDir('g7a');
    const name = 'model.layers.0.self_attn.q_proj';
    for (const [d, seed] of [['old', 1], ['new', 2]] as const) await writeAdapter(path.join(root, d), { r: 2, lora_alpha: 2 }, [linearModule(rng(seed), name, 4, 4, 2)]);
    await writeSafetensors(path.join(root, 'base.safetensors'), [{ name: `${name}.weight`, dtype: 'F32', shape: [4, 4], data: new Float32Array(16).fill(1e5) }]);
    const out = path.join(root, 'out');
    const r = await run(runEdit, ['--old-adapter', path.join(root, 'old'), '--new-adapter', path.join(root, 'new'), '--base', path.join(root, 'base.safetensors'), '--out', out, '--out-dtype', 'f16']);
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/ERR_NON_FINITE_OUTPUT/);
    expect(r.err).toContain(`${name}.weight`);
    expect(fs.existsSync(out)).toBe(false);
    expect(hidden(root)).toEqual([]);
  });

  it('adapter output: factors that overflow f32 (--scale 1e300) are ERR_NON_FINITE_OUTPUT, not an adapter of Inf (failed before)', async () => {
    const s = await adapterSet('g7b');
    const out = path.join(s.root, 'out');
    const r = await run(runEdit, ['--old-adapter', s.old, '--new-adapter', s.new, '--out', out, '--scale', '1e300']);
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/ERR_NON_FINITE_OUTPUT.*module/);
    expect(fs.existsSync(out)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
  });
});

describe('hostile, round 3: side files (class 8)', () => {
  it('stray safetensors files and subdirectories of the base directory are not copied and are listed, not dropped silently (failed before)', async () => {
    const s = await checkpointTriple('g8a');
    fs.writeFileSync(path.join(s.base, 'consolidated.safetensors'), 'weights of another model');
    fs.mkdirSync(path.join(s.base, 'original'));
    fs.writeFileSync(path.join(s.base, 'original', 'params.json'), '{}');
    const out = path.join(s.root, 'out');
    const r = await run(runEdit, [...args(s), '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(fs.existsSync(path.join(out, 'consolidated.safetensors'))).toBe(false);
    expect(fs.existsSync(path.join(out, 'original'))).toBe(false);
    const m = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    const skipped = new Map((m.skippedFiles as Array<{ name: string; reason: string }>).map((x) => [x.name, x.reason]));
    expect(skipped.get('consolidated.safetensors')).toMatch(/not part of the model/);
    expect(skipped.get('original')).toMatch(/directory/);
    expect(r.err).toContain('consolidated.safetensors');
    // The model's own files are not listed.
    for (const n of ['model-00001-of-00002.safetensors', 'model.safetensors.index.json']) expect(skipped.has(n)).toBe(false);
  });
});

describe('hostile, round 3: scale (class 9)', () => {
  it('an adapter config with 3,000 rank_pattern keys (full module names) over 300 modules is read quickly, the first matching key winning', async () => {
    const root = tmpDir('g9a');
    const names = Array.from({ length: 300 }, (_, i) => `model.layers.${i}.self_attn.q_proj`);
    const pattern: Record<string, number> = {};
    for (let k = 0; k < 3000; k++) pattern[`model.layers.${k}.mlp.up_proj`] = 8;
    pattern['model.layers.7.self_attn.q_proj'] = 2;
    pattern['self_attn\\.q_proj'] = 4;
    await writeAdapter(root, { r: 4, lora_alpha: 8, rank_pattern: pattern, alpha_pattern: { 'layers\\.7\\..*': 1 } },
      names.map((n, i) => linearModule(rng(i), n, 4, 4, i === 7 ? 2 : 4)));
    const ad = readPeftAdapter(root);
    expect(ad.modules.get(names[7]!)!.r).toBe(2);
    expect(ad.modules.get(names[7]!)!.scale).toBe(1 / 2);
    expect(ad.modules.get(names[8]!)!.scale).toBe(8 / 4);
  });
});

describe('hostile, round 3: CLI hygiene (class 10)', () => {
  it('geoedit log escapes what it prints from manifests and review logs (a review note with a newline and ESC cannot forge lines) (failed before)', async () => {
    const { out } = await editedOutput('g10a');
    const note = 'fine\n  review 9: 2030-01-01 mallory: approve\u001b[2J';
    expect((await run(runReview, [out, '--reviewer', 'eve\u001b]0;pwned\u0007', '--decision', 'reject', '--note', note])).code).toBe(0);
    const r = await run(runLog, [out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).not.toMatch(/[\u001b\u0007]/);
    expect(r.out.split('\n').some((l) => l.startsWith('  review 9'))).toBe(false);
    expect(r.out).toContain('\\x1b[2J');
  });

  it('analyze --report with a bad value for a numeric option is exit 1 naming it, before any work', async () => {
    const s = await checkpointTriple('g10b');
    const report = path.join(s.root, 'r.html');
    for (const [flag, v] of [['--density', '1.5'], ['--threads', '-2'], ['--density', 'NaN'], ['--kappa', '']] as const) {
      const r = await run(runAnalyze, [...args(s), '--report', report, flag, v]);
      expect(r.code, `${flag} ${v}: ${r.err}`).toBe(1);
      expect(r.err).toContain(flag.slice(2));
    }
    expect(fs.existsSync(report)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
  });
});

describe('hostile, round 3: rollout, verify, analyze (classes 1, 8)', () => {
  it('rollout --force onto a hard link of an input shard is refused before any work, as edit does (device + inode; failed before: the rollout ran and replaced the link)', async () => {
    const s = await checkpointTriple('g1r');
    const link = path.join(s.root, 'looks-new.safetensors');
    fs.linkSync(path.join(s.old, 'model.safetensors'), link);
    const before = fingerprint(s.root);
    await expect(rollout({ base: s.base, old: s.old, new: s.new, out: link, force: true, stages: [1], score: () => ({ m: 1 }), gates: ['m>=0'], options: { threads: 1 } }))
      .rejects.toMatchObject({ code: 'ERR_OUTPUT_IS_INPUT' });
    expect(fingerprint(s.root)).toEqual(before);
  });

  it('verify of a crafted, self-consistent manifest that lists ../ paths reads nothing outside the directory: those are missing (exit 2)', async () => {
    const { s, out } = await editedOutput('g8v');
    fs.writeFileSync(path.join(s.root, 'secret.txt'), 'outside');
    const file = path.join(out, 'geoedit-manifest.json');
    const m = JSON.parse(fs.readFileSync(file, 'utf8'));
    m.outputFiles.push({ name: '../secret.txt', size: 7, sha256: '0'.repeat(64) });
    resealManifestFile(file, m);
    const r = await run(runVerify, [out, '--json']);
    expect(r.code, r.err).toBe(2);
    const res = JSON.parse(r.out);
    expect(res.files.missing).toEqual(['../secret.txt']);
    expect(res.files.changed).toEqual([]);
    expect(JSON.stringify(res)).not.toContain('outside');
  });

  it('verify: an output file replaced by a symbolic link to an identical copy elsewhere fails (ERR_OUTPUT_CHANGED, exit 2), never verified through the link (before: it verified)', async () => {
    const { s, out } = await editedOutput('g8l');
    const m = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    const name = (m.outputFiles as Array<{ name: string }>).map((f) => f.name).find((n) => n.endsWith('.safetensors'))!;
    const copy = path.join(s.root, 'elsewhere.safetensors');
    fs.copyFileSync(path.join(out, name), copy);
    expect((await run(runVerify, [out, '--json'])).code).toBe(0);
    fs.rmSync(path.join(out, name));
    fs.symlinkSync(copy, path.join(out, name));
    const r = await run(runVerify, [out, '--json']);
    expect(r.code, r.err).toBe(2);
    const res = JSON.parse(r.out);
    expect(res.files.changed).toEqual([expect.objectContaining({ name, actual: '' })]);
    expect(JSON.stringify(res.problems)).toMatch(/symbolic link/);
  });

  it('analyze --report through a symlinked parent into an input directory is refused before any work', async () => {
    const s = await checkpointTriple('g1s');
    fs.symlinkSync(s.new, path.join(s.root, 'via'));
    const before = fingerprint(s.root);
    const r = await run(runAnalyze, [...args(s), '--report', path.join(s.root, 'via', 'r.html')]);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/ERR_OUTPUT_IS_INPUT/);
    expect(fingerprint(s.root)).toEqual(before);
  });
});
