// Issue 14 class 1: no file a job writes (output directory, temporary directory, manifest, report)
// is, holds or lies inside an input, compared by real path and by device + inode (symlinks, hard
// links). Refused before any work: exit 1, ERR_OUTPUT_IS_INPUT, both paths named, inputs untouched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { runAnalyze } from '../../lib/cli/analyze';
import { editCheckpoint } from '../../lib/checkpoint';
import { adapterSet, checkpointTriple, fingerprint, run } from './support';

function expectRefused(r: { code: number; err: string }, ...paths: string[]): void {
  expect(r.code).toBe(1);
  expect(r.err).toContain('ERR_OUTPUT_IS_INPUT');
  for (const p of paths) expect(r.err).toContain(p);
}

describe('hostile: inputs are never written (class 1)', () => {
  it('adapters: --out equal to an adapter input, with --force', async () => {
    const s = await adapterSet('h1a');
    const before = fingerprint(s.root);
    for (const target of [s.old, s.new]) {
      const r = await run(runEdit, ['--old-adapter', s.old, '--new-adapter', s.new, '--out', target, '--force']);
      expectRefused(r, target);
    }
    expect(fingerprint(s.root)).toEqual(before);
  });

  it('adapters with --base: --out = the base file, --report = an adapter file or config, via a symlink, via a hard link', async () => {
    const s = await adapterSet('h1b');
    fs.symlinkSync(s.old, path.join(s.root, 'link-to-old'));
    fs.linkSync(path.join(s.new, 'adapter_model.safetensors'), path.join(s.root, 'hard.safetensors'));
    const before = fingerprint(s.root);
    const a = ['--old-adapter', s.old, '--new-adapter', s.new, '--base', s.base];
    expectRefused(await run(runEdit, [...a, '--out', s.base, '--force']), s.base);
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'o1'), '--report', path.join(s.new, 'adapter_model.safetensors')]), path.join(s.new, 'adapter_model.safetensors'));
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'o2'), '--report', path.join(s.old, 'adapter_config.json')]), path.join(s.old, 'adapter_config.json'));
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'link-to-old'), '--force']), path.join(s.root, 'link-to-old'));
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'o3'), '--report', path.join(s.root, 'hard.safetensors')]), path.join(s.root, 'hard.safetensors'), s.new);
    expectRefused(await run(runAnalyze, ['--old-adapter', s.old, '--new-adapter', s.new, '--report', path.join(s.root, 'link-to-old', 'adapter_config.json')]), s.old);
    expect(fingerprint(s.root)).toEqual(before);
    expect(fs.readdirSync(s.root).filter((n) => n.startsWith('o') && n !== 'old')).toEqual([]);
  });

  it('checkpoints: --report = the base config.json / index.json, --out inside an input, via symlink and hard link', async () => {
    const s = await checkpointTriple('h1c');
    fs.symlinkSync(s.base, path.join(s.root, 'base-link'));
    const shard = fs.readdirSync(s.new).find((n) => n.endsWith('.safetensors'))!;
    fs.linkSync(path.join(s.new, shard), path.join(s.root, 'hard-shard'));
    const before = fingerprint(s.root);
    const a = ['--base', s.base, '--old', s.old, '--new', s.new];
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'o'), '--report', path.join(s.base, 'config.json')]), path.join(s.base, 'config.json'));
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'o'), '--report', path.join(s.new, 'model.safetensors.index.json')]), 'model.safetensors.index.json');
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'base-link', 'sub')]), path.join(s.root, 'base-link', 'sub'), s.base);
    expectRefused(await run(runEdit, [...a, '--out', s.root, '--force']), s.root);
    expectRefused(await run(runEdit, [...a, '--out', path.join(s.root, 'o'), '--report', path.join(s.root, 'hard-shard')]), path.join(s.root, 'hard-shard'));
    expectRefused(await run(runAnalyze, [...a, '--report', path.join(s.root, 'base-link', 'tokenizer.json')]), s.base);
    await expect(editCheckpoint({ base: s.base, old: s.old, new: s.new, out: path.join(s.base, 'out') })).rejects.toMatchObject({ code: 'ERR_OUTPUT_IS_INPUT' });
    expect(fingerprint(s.root)).toEqual(before);
  });

  it('a report beside the inputs (not one of them) and an output beside them still work', async () => {
    const s = await checkpointTriple('h1d');
    const r = await run(runEdit, ['--base', s.base, '--old', s.old, '--new', s.new, '--out', path.join(s.root, 'out'), '--report', path.join(s.root, 'r.html')]);
    expect(r.err).not.toContain('ERR_');
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(s.root, 'r.html'))).toBe(true);
  });
});
