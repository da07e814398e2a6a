// Issue 14 class 8: side files. Only regular files that live in the base directory are copied:
// no symlink is followed (a tokenizer.json pointing at a secret), no special file is read, and no
// weights in other formats or training states are copied; what was skipped is listed in the
// manifest and on stderr.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { runAssemble } from '../../lib/cli/assemble';
import { adapterSet, checkpointTriple, run } from './support';

const OTHER = ['pytorch_model.bin', 'pytorch_model-00001-of-00002.bin', 'optimizer.pt', 'scheduler.pt', 'rng_state_0.pth', 'model.ckpt',
  'flax_model.msgpack', 'tf_model.h5', 'model.gguf'];

function hostileBaseDir(dir: string, secret: string): void {
  fs.writeFileSync(secret, 'aws_secret_access_key = hunter2');
  fs.rmSync(path.join(dir, 'tokenizer.json'), { force: true });
  fs.symlinkSync(secret, path.join(dir, 'tokenizer.json'));
  for (const n of OTHER) fs.writeFileSync(path.join(dir, n), 'weights');
  execFileSync('mkfifo', [path.join(dir, 'pipe')]);
  fs.writeFileSync(path.join(dir, 'generation_config.json'), '{}');
}

function expectSkipped(out: string, err: string): void {
  const names = fs.readdirSync(out).sort();
  expect(names).toContain('config.json');
  expect(names).toContain('generation_config.json');
  for (const n of [...OTHER, 'tokenizer.json', 'pipe']) {
    expect(names).not.toContain(n);
    expect(err).toContain(n);
  }
  for (const n of names) expect(fs.readFileSync(path.join(out, n)).includes('hunter2')).toBe(false);
  const m = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
  const skipped = new Map((m.skippedFiles as Array<{ name: string; reason: string }>).map((x) => [x.name, x.reason]));
  expect(skipped.get('tokenizer.json')).toMatch(/symbolic link/);
  expect(skipped.get('pipe')).toMatch(/not a regular file/);
  for (const n of OTHER) expect(skipped.has(n)).toBe(true);
  expect(m.warnings.some((w: string) => w.includes("'tokenizer.json' not copied"))).toBe(true);
}

describe('hostile: side files (class 8)', () => {
  it('checkpoint edit: symlinks, FIFOs and other weight formats stay behind, listed', async () => {
    const s = await checkpointTriple('h8a');
    hostileBaseDir(s.base, path.join(s.root, 'credentials'));
    const out = path.join(s.root, 'out');
    const r = await run(runEdit, ['--base', s.base, '--old', s.old, '--new', s.new, '--out', out]);
    expect(r.code).toBe(0);
    expectSkipped(out, r.err);
  });

  it('merged adapters (--base DIR): the same rule', async () => {
    const s = await adapterSet('h8b');
    const bdir = path.join(s.root, 'basedir');
    fs.mkdirSync(bdir);
    fs.renameSync(s.base, path.join(bdir, 'model.safetensors'));
    fs.writeFileSync(path.join(bdir, 'config.json'), '{}');
    hostileBaseDir(bdir, path.join(s.root, 'credentials'));
    const out = path.join(s.root, 'out');
    const r = await run(runEdit, ['--old-adapter', s.old, '--new-adapter', s.new, '--base', bdir, '--out', out]);
    expect(r.code).toBe(0);
    expectSkipped(out, r.err);
  });
});

describe('hostile: side files with more than one hard link (class 8)', () => {
  it('a side file hard-linked to a file outside the base directory is copied, and reported (manifest hardLinkedFiles, stderr)', async () => {
    const s = await checkpointTriple('h8h');
    const outside = path.join(s.root, 'outside.json');
    fs.writeFileSync(outside, '{"outside": true}');
    fs.rmSync(path.join(s.base, 'tokenizer.json'));
    fs.linkSync(outside, path.join(s.base, 'tokenizer.json'));
    const out = path.join(s.root, 'out');
    const r = await run(runEdit, ['--base', s.base, '--old', s.old, '--new', s.new, '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8')).toBe('{"outside": true}');
    expect(fs.statSync(path.join(out, 'tokenizer.json')).nlink).toBe(1); // a copy, not another link
    const m = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(m.hardLinkedFiles).toEqual([{ name: 'tokenizer.json', hardLinks: 2 }]);
    expect(m.skippedFiles ?? []).toEqual([]);
    expect(r.err).toMatch(/note: copied from .*: tokenizer\.json has 2 hard links/);
    expect(r.err).not.toMatch(/config\.json has/);
  });

  it('editing an assembled output (its side files are hard links to the parts\') copies every side file, each reported', async () => {
    const s = await checkpointTriple('h8p');
    const parts = [1, 2].map((k) => path.join(s.root, `part${k}`));
    for (const [k, p] of parts.entries()) expect((await run(runEdit, ['--base', s.base, '--old', s.old, '--new', s.new, '--out', p, '--part', `${k + 1}/2`])).code).toBe(0);
    const asm = path.join(s.root, 'assembled');
    expect((await run(runAssemble, ['--out', asm, '--parts', ...parts])).code).toBe(0);
    expect(fs.statSync(path.join(asm, 'config.json')).nlink).toBe(2);
    const out = path.join(s.root, 'again');
    const r = await run(runEdit, ['--base', asm, '--old', s.old, '--new', s.new, '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(fs.readFileSync(path.join(out, 'config.json'))).toEqual(fs.readFileSync(path.join(s.base, 'config.json')));
    expect(fs.readFileSync(path.join(out, 'tokenizer.json'))).toEqual(fs.readFileSync(path.join(s.base, 'tokenizer.json')));
    const m = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(m.hardLinkedFiles).toEqual(expect.arrayContaining([{ name: 'config.json', hardLinks: 2 }, { name: 'tokenizer.json', hardLinks: 2 }]));
  });
});
