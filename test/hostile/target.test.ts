// Issue 14 class 2: a target is never destroyed without consent. One lock per target (a second
// job fails with ERR_TARGET_BUSY; a dead holder's lock is removed), a target that appeared during
// the run is left alone (with or without --force), and --force replaces only a previous geoedit
// output or a regular file — never `.`, the home folder, a symlink or another directory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { editCheckpoint } from '../../lib/checkpoint';
import { lockPathFor } from '../../lib/job/lock';
import { checkpointTriple, fingerprint, run } from './support';

describe('hostile: a target is never destroyed without consent (class 2)', () => {
  it('a second job on a locked target fails with ERR_TARGET_BUSY; a stale lock is removed, saying so', async () => {
    const s = await checkpointTriple('h2a');
    const out = path.join(s.root, 'out');
    const lock = lockPathFor(out);
    fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, start: null, host: os.hostname() }));
    const busy = await run(runEdit, ['--base', s.base, '--old', s.old, '--new', s.new, '--out', out]);
    expect(busy.err).toContain('ERR_TARGET_BUSY');
    expect(busy.code).not.toBe(0);
    expect(fs.existsSync(out)).toBe(false);
    fs.unlinkSync(lock);
    // Two jobs at once on one target: exactly one succeeds; the other fails with a code, and the winner's output is whole.
    const io = { base: s.base, old: s.old, new: s.new, out };
    const res = await Promise.allSettled([editCheckpoint(io), editCheckpoint(io)]);
    expect(res.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failed = res.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(['ERR_TARGET_BUSY', 'ERR_OUTPUT_EXISTS']).toContain(failed.reason.code);
    expect(fs.existsSync(path.join(out, 'geoedit-manifest.json'))).toBe(true);
    expect(fs.existsSync(lock)).toBe(false);
    // A lock left by a dead process (a child that has exited) is removed with a note on stderr.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    fs.writeFileSync(lockPathFor(path.join(s.root, 'out2')), JSON.stringify({ pid: Number(dead), start: '1', host: os.hostname() }));
    const ok = await run(runEdit, ['--base', s.base, '--old', s.old, '--new', s.new, '--out', path.join(s.root, 'out2')]);
    expect(ok.code).toBe(0);
    expect(ok.err).toContain('stale lock');
    expect(fs.existsSync(lockPathFor(path.join(s.root, 'out2')))).toBe(false);
  });

  it('a target that appears during the run is left alone, with and without --force', async () => {
    const s = await checkpointTriple('h2b');
    for (const force of [false, true]) {
      const out = path.join(s.root, `late-${force}`);
      let made = false;
      const onProgress = () => {
        if (made) return;
        made = true;
        fs.mkdirSync(out);
        fs.writeFileSync(path.join(out, 'precious.txt'), 'mine');
        fs.writeFileSync(path.join(out, 'geoedit-manifest.json'), '{}');
      };
      await expect(editCheckpoint({ base: s.base, old: s.old, new: s.new, out }, { onProgress, force })).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS' });
      expect(made).toBe(true);
      expect(fs.readFileSync(path.join(out, 'precious.txt'), 'utf8')).toBe('mine');
      expect(fs.readdirSync(out).sort()).toEqual(['geoedit-manifest.json', 'precious.txt']);
    }
    expect(fs.readdirSync(s.root).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('--force replaces a previous geoedit output and a regular file, nothing else', async () => {
    const s = await checkpointTriple('h2c');
    const a = ['--base', s.base, '--old', s.old, '--new', s.new];
    const out = path.join(s.root, 'out');
    expect((await run(runEdit, [...a, '--out', out])).code).toBe(0);
    expect((await run(runEdit, [...a, '--out', out, '--force', '--scale', '0.5'])).code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8')).parameters.scale).toBe(0.5);
    const file = path.join(s.root, 'file-target');
    fs.writeFileSync(file, 'x');
    expect((await run(runEdit, [...a, '--out', file, '--force'])).code).toBe(0);
    expect(fs.statSync(file).isDirectory()).toBe(true);

    const plain = path.join(s.root, 'plain');
    fs.mkdirSync(plain);
    fs.writeFileSync(path.join(plain, 'thesis.tex'), 'years of work');
    fs.symlinkSync(out, path.join(s.root, 'link-to-out'));
    const home = path.join(s.root, 'home');
    fs.mkdirSync(home);
    fs.writeFileSync(path.join(home, 'geoedit-manifest.json'), '{}');
    const before = fingerprint(s.root);
    const refused = async (target: string, why: RegExp) => {
      const r = await run(runEdit, [...a, '--out', target, '--force']);
      expect(r.code).toBe(2);
      expect(r.err).toContain('ERR_OUTPUT_EXISTS');
      expect(r.err).toMatch(why);
    };
    await refused(plain, /not a previous geoedit output/);
    await refused(path.join(s.root, 'link-to-out'), /symbolic link/);
    const cwd = process.cwd();
    const oldHome = process.env.HOME;
    try {
      process.chdir(home);
      await refused('.', /current directory/);
      process.chdir(cwd);
      process.env.HOME = home;
      await refused(home, /home directory/);
    } finally {
      process.chdir(cwd);
      process.env.HOME = oldHome;
    }
    expect(fingerprint(s.root)).toEqual(before);
  });
});
