// Issue 14 classes 1, 2, 4 for `rollout` (lib/governance/rollout.ts): its target follows the job
// layer's rules — checked against the inputs before any work, --force only over a previous geoedit
// output or a file, the target's lock for the whole rollout, no replace of what appeared meanwhile.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { rollout } from '../../lib/governance/rollout';
import { acquireTargetLock } from '../../lib/job/lock';
import { checkpointTriple, fingerprint, hidden } from './support';


function opts(s: { base: string; old: string; new: string }, out: string, extra: Record<string, unknown> = {}) {
  return { base: s.base, old: s.old, new: s.new, out, stages: [0.5, 1], score: () => ({ m: 1 }), gates: ['m>=0'], options: { threads: 1 }, ...extra };
}

describe('hostile: rollout commits through the job layer', () => {
  it('--out = the base directory (with force) or a directory inside an input is refused before any work', async () => {
    const s = await checkpointTriple('hr-input');
    const before = fingerprint(s.root);
    for (const out of [s.base, path.join(s.new, 'sub')]) {
      await expect(rollout(opts(s, out, { force: true }))).rejects.toMatchObject({ code: 'ERR_OUTPUT_IS_INPUT' });
    }
    expect(fingerprint(s.root)).toEqual(before);
  });

  it('--force will not replace a directory that is not a previous geoedit output; a previous rollout output it does replace', async () => {
    const s = await checkpointTriple('hr-force');
    const mine = path.join(s.root, 'mine');
    fs.mkdirSync(mine);
    fs.writeFileSync(path.join(mine, 'notes.txt'), 'keep me');
    await expect(rollout(opts(s, mine, { force: true }))).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS', message: expect.stringMatching(/not a previous geoedit output/) });
    expect(fs.readFileSync(path.join(mine, 'notes.txt'), 'utf8')).toBe('keep me');
    const out = path.join(s.root, 'out');
    expect((await rollout(opts(s, out))).passed).toBe(true);
    const r2 = await rollout(opts(s, out, { force: true, stages: [1] }));
    expect(r2.passed).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8')).id).toBe(r2.id);
    expect(hidden(s.root)).toEqual([]);
  });

  it('a rollout on a target another job holds is ERR_TARGET_BUSY; a target that appears during the rollout is left as it is', async () => {
    const s = await checkpointTriple('hr-busy');
    const out = path.join(s.root, 'out');
    const unlock = acquireTargetLock(out);
    try {
      await expect(rollout(opts(s, out))).rejects.toMatchObject({ code: 'ERR_TARGET_BUSY' });
    } finally {
      unlock();
    }
    // Something appears at the target while the stages run (here: from the scorer).
    const r = rollout(opts(s, out, { score: () => { fs.mkdirSync(out, { recursive: true }); fs.writeFileSync(path.join(out, 'theirs.txt'), 'x'); return { m: 1 }; } }));
    await expect(r).rejects.toMatchObject({ code: 'ERR_OUTPUT_EXISTS' });
    expect(fs.readdirSync(out)).toEqual(['theirs.txt']);
    expect(hidden(s.root)).toEqual([]);
  });

  it('a stage that fails mid-rollout (its scorer throws) leaves nothing at the target and no temporary directory, and releases the lock', async () => {
    const s = await checkpointTriple('hr-throw');
    const out = path.join(s.root, 'out');
    let calls = 0;
    const r = rollout(opts(s, out, { score: () => { if (++calls === 2) throw new Error('scorer broke'); return { m: 1 }; } }));
    await expect(r).rejects.toThrow(/scorer broke/);
    expect(calls).toBe(2);
    expect(fs.existsSync(out)).toBe(false);
    expect(hidden(s.root)).toEqual([]);
    acquireTargetLock(out)();
    // the passing stage of a rollout is committed whole: one stage's output, its manifest naming out
    const ok = await rollout(opts(s, out));
    expect(ok.chosen).toBe(1);
    expect(fs.readdirSync(out).some((n) => n.startsWith('stage-'))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8')).output.path).toBe(out);
    expect(hidden(s.root)).toEqual([]);
  });
});
