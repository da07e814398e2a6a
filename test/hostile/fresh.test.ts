// Issue 14, a second round of hostile cases of the same kinds as the first (not the same cases):
// each test names its class. Those that failed before the fixes that came with them say so.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { runAnalyze } from '../../lib/cli/analyze';
import { runInspect } from '../../lib/cli/inspect';
import { writeSafetensors } from '../../lib/safetensors';
import { adapterSet, args, checkpointTriple, expectReplaced, fingerprint, hidden, run, tmpDir, waitForPhase } from './support';

describe('hostile, round 2: inputs and targets (classes 1, 2)', () => {
  it('a report path that is a hard link to an input shard is refused before any work', async () => {
    const s = await checkpointTriple('f1a');
    const link = path.join(s.root, 'report.html');
    fs.linkSync(path.join(s.new, 'model-00001-of-00002.safetensors'), link);
    const before = fingerprint(s.root);
    const r = await run(runEdit, [...args(s), '--out', path.join(s.root, 'o'), '--report', link]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('ERR_OUTPUT_IS_INPUT');
    expect(fingerprint(s.root)).toEqual(before);
  });

  it('--out inside the base directory through a symlinked parent is refused', async () => {
    const s = await checkpointTriple('f1b');
    fs.symlinkSync(s.base, path.join(s.root, 'via'));
    const r = await run(runEdit, [...args(s), '--out', path.join(s.root, 'via', 'edited')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ERR_OUTPUT_IS_INPUT.*lies inside the input/);
    expect(fs.existsSync(path.join(s.base, 'edited'))).toBe(false);
  });

  it('a report inside the output directory, or at the output path, is refused before any work (the commit would replace it)', async () => {
    const s = await checkpointTriple('f1c');
    const out = path.join(s.root, 'out');
    expect((await run(runEdit, [...args(s), '--out', out])).code).toBe(0);
    const before = fingerprint(s.root);
    for (const report of [path.join(out, 'report.html'), out]) {
      const r = await run(runEdit, [...args(s), '--out', out, '--force', '--report', report]);
      expect(r.code, r.err).toBe(1);
      expect(r.err).toMatch(/ERR_INVALID_OPTION.*report/);
    }
    expect(fingerprint(s.root)).toEqual(before);
  });

  it("a report named like the output's lock or temporary directory is refused before any work", async () => {
    const s = await checkpointTriple('f1e');
    for (const name of ['.o.geoedit-lock', '.o.geoedit-tmp-1-2-abcdef01']) {
      const r = await run(runEdit, [...args(s), '--out', path.join(s.root, 'o'), '--report', path.join(s.root, name)]);
      expect(r.code, r.err).toBe(1);
      expect(r.err).toMatch(/ERR_INVALID_OPTION.*temporary file or lock/);
    }
    expect(hidden(s.root)).toEqual([]);
  });

  it('a report path that is a directory is refused before any work', async () => {
    const s = await checkpointTriple('f1d');
    fs.mkdirSync(path.join(s.root, 'r.html'));
    const r = await run(runEdit, [...args(s), '--out', path.join(s.root, 'o'), '--report', path.join(s.root, 'r.html')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/ERR_OUTPUT_EXISTS.*not a regular file/);
    expect(fs.existsSync(path.join(s.root, 'o'))).toBe(false);
  });
});

describe('hostile, round 2: leftovers (class 4)', () => {
  it("a report's temporary file left by a dead process (SIGKILL mid-report) is removed by the next job writing that report, saying so", async () => {
    const s = await checkpointTriple('f4a');
    const report = path.join(s.root, 'r.html');
    const dead = path.join(s.root, `.r.html.geoedit-tmp-999999999-x-deadbeef`);
    fs.writeFileSync(dead, '<html>half');
    const r = await run(runEdit, [...args(s), '--out', path.join(s.root, 'o'), '--report', report]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/removed .*\.r\.html\.geoedit-tmp-999999999-x-deadbeef.*no longer running/);
    expect(hidden(s.root)).toEqual([]);
    expect(fs.readFileSync(report, 'utf8')).toContain('<html');
  });
});

describe('hostile, round 2: files changing under the job (class 6)', () => {
  it('an adapter truncated mid-run (after validation) is a coded error (exit 2 or 3), nothing at the target, nothing left', async () => {
    const s = await adapterSet('f6a');
    const out = path.join(s.root, 'out');
    const model = path.join(s.new, 'adapter_model.safetensors');
    const r = await waitForPhase(['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--out', out], 'data', 'SIGCONT', s.root, undefined,
      () => fs.truncateSync(model, Math.floor(fs.statSync(model).size / 2)));
    expect(r.reached).toBe(true);
    expect([2, 3], r.stderr).toContain(r.code);
    expect(r.stderr).toMatch(/ERR_(BAD_SAFETENSORS|IO)/);
    expect(fs.existsSync(out)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
  });

  it('an input replaced (renamed over) after validation is a coded error, not an edit of one file recorded with the hash of another', async () => {
    const s = await checkpointTriple('f6b');
    const out = path.join(s.root, 'out');
    const shard = path.join(s.new, 'model-00001-of-00002.safetensors');
    await expectReplaced(s.root, ['edit', ...args(s), '--out', out], 'data', shard, [out]);
  });
});

describe('hostile, round 2: non-finite outputs (class 7)', () => {
  it('a tensor only converted (not edited) to f16 that overflows is ERR_NON_FINITE_OUTPUT (exit 2) naming it, nothing written; allowNonFiniteOutput writes it', async () => {
    const root = tmpDir('f7a');
    const mk = (f: string, v: number) => writeSafetensors(path.join(root, f), [
      { name: 'a.weight', dtype: 'F32', shape: [2, 2], data: new Float32Array(4).fill(v) },
      { name: 'big.weight', dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 1e6, 3]) },
    ]);
    await mk('base.safetensors', 1); await mk('old.safetensors', 1.5); await mk('new.safetensors', 2);
    const a = ['--base', path.join(root, 'base.safetensors'), '--old', path.join(root, 'old.safetensors'), '--new', path.join(root, 'new.safetensors'), '--exclude', 'big.*', '--out-dtype', 'f16'];
    const r = await run(runEdit, [...a, '--out', path.join(root, 'o')]);
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/ERR_NON_FINITE_OUTPUT: tensor 'big\.weight' \(converted, not edited\): the value 1e\+06 at element 2 overflows f16/);
    expect(fs.existsSync(path.join(root, 'o'))).toBe(false);
    expect(hidden(root)).toEqual([]);
    expect((await run(runEdit, [...a, '--out', path.join(root, 'o2'), '--allow-non-finite-output'])).code).toBe(0);
  });
});

describe('hostile, round 2: side files (class 8)', () => {
  it('a FIFO in the base directory is skipped (never opened: the job does not block), and said', async () => {
    const s = await checkpointTriple('f8a');
    execFileSync('mkfifo', [path.join(s.base, 'tokenizer.model')]);
    const out = path.join(s.root, 'out');
    const r = await run(runEdit, [...args(s), '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/not copied .*tokenizer\.model: not a regular file/);
    expect(fs.existsSync(path.join(out, 'tokenizer.model'))).toBe(false);
    const m = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(m.skippedFiles).toContainEqual({ name: 'tokenizer.model', reason: 'not a regular file' });
  });
});

describe('hostile, round 2: CLI hygiene (class 10)', () => {
  it('a glob with a trailing backslash is a literal backslash, not a crash; an --include that matches nothing says so', async () => {
    const s = await checkpointTriple('f10a');
    const r = await run(runEdit, [...args(s), '--out', path.join(s.root, 'o'), '--include', 'model.layers.0.\\']);
    expect(r.err).not.toMatch(/SyntaxError|\n\s+at /);
    expect([0, 1, 2]).toContain(r.code);
  });

  it('a backtracking glob on a crafted 20,000-character tensor name finishes (matched without a backtracking RegExp)', async () => {
    const root = tmpDir('f10b');
    const long = 'a'.repeat(20_000);
    for (const n of ['base', 'old', 'new']) await writeSafetensors(path.join(root, `${n}.safetensors`), [{ name: long, dtype: 'F32', shape: [2, 2], data: new Float32Array(4).fill(n === 'base' ? 0 : n === 'old' ? 1 : 2) }]);
    const r = await run(runAnalyze, ['--base', path.join(root, 'base.safetensors'), '--old', path.join(root, 'old.safetensors'), '--new', path.join(root, 'new.safetensors'), '--include', '*a*a*a*a*a*a*a*a*a*a*a*a*b', '--json']);
    expect(r.err).not.toMatch(/SyntaxError|\n\s+at /);
    expect([0, 1, 2]).toContain(r.code);
  });

  it('names with RTL/bidi isolates, LRM/RLM and ALM are escaped in inspect output', async () => {
    const root = tmpDir('f10c');
    const name = 'model.\u2067txt.exe\u2069.\u200f\u061c\u200eweight';
    await writeSafetensors(path.join(root, 'x.safetensors'), [{ name, dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    const r = await run(runInspect, [path.join(root, 'x.safetensors')]);
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/[\u2067\u2069\u200f\u061c\u200e]/);
    expect(r.out).toContain('model.\\u2067txt.exe\\u2069.\\u200f\\u061c\\u200eweight');
  });

  it.each([['--threads', '-1'], ['--max-shard-size', '-5'], ['--scale', 'NaN'], ['--include', '']])('%s %s is a usage error naming it (exit 1), nothing written', async (flag, v) => {
    const s = await checkpointTriple(`f10d${flag}`);
    const r = await run(runEdit, [...args(s), '--out', path.join(s.root, 'o'), flag, v]);
    expect(r.code, r.err).toBe(1);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(fs.existsSync(path.join(s.root, 'o'))).toBe(false);
  });
});
