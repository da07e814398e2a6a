// Issue 14 class 5: a signal is acted on in every phase of a job. The CLI runs with
// GEOEDIT_TEST_STOP_AT=PHASE (lib/job/phase.ts): it prints each phase marker on stderr and stops
// itself at the one named; the test then sends the signal and SIGCONT, so the signal surely lands
// in that phase. Each case asserts: the process ends by the signal (a shell reports 128 + n: 129
// HUP, 130 INT, 131 QUIT, 143 TERM), nothing at the target, no report, no temporary file or
// directory, no lock; and the job did not get past the phase — the marker that only a job which
// finished that phase (without acting on the signal) could print never appears. The fixtures make
// each phase more than one asynchronous step long (several output shards, more than one side
// file, a report after the seal), so that an asynchronous phase cannot finish in the one event
// loop turn a signal may wait for, while a synchronous loop would.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { llamaSpecs, makeTriple } from '../support/ckpt';
import { adapterSet, checkpointTriple, hidden, tmpDir, waitForPhase } from './support';

type Phase = 'validation' | 'hashing' | 'data' | 'side-files' | 'seal' | 'report' | 'commit';

interface Case { phase: Phase; sig: NodeJS.Signals; notReached: Phase | 'the commit' }


async function expectAbortedAt(root: string, argv: string[], c: Case, produced: string[]): Promise<void> {
  const r = await waitForPhase(argv, c.phase, c.sig, root);
  expect(r.reached, r.stderr).toBe(true);
  expect(r.signal, r.stderr).toBe(c.sig);
  expect(r.code).toBe(null);
  if (c.notReached !== 'the commit') expect(r.phases).not.toContain(c.notReached);
  for (const p of produced) expect(fs.existsSync(p), p).toBe(false);
  expect(hidden(root)).toEqual([]);
}

describe('hostile: a signal in every phase of a checkpoint edit (class 5)', () => {
  const cases: Case[] = [
    { phase: 'validation', sig: 'SIGINT', notReached: 'hashing' },
    { phase: 'hashing', sig: 'SIGTERM', notReached: 'side-files' },
    { phase: 'data', sig: 'SIGHUP', notReached: 'side-files' },
    { phase: 'side-files', sig: 'SIGQUIT', notReached: 'seal' },
    { phase: 'seal', sig: 'SIGINT', notReached: 'commit' },
    { phase: 'report', sig: 'SIGTERM', notReached: 'commit' },
    { phase: 'commit', sig: 'SIGHUP', notReached: 'the commit' },
  ];
  it.each(cases)('$sig in the $phase phase: ends by the signal, nothing committed, no report, nothing left', async (c) => {
    const s = await checkpointTriple(`h5-${c.phase}`);
    // More side files than one step copies, several output shards (one native call each).
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(s.base, `vocab-${i}.txt`), 'x'.repeat(100_000));
    const out = path.join(s.root, 'out');
    const report = path.join(s.root, 'report.html');
    await expectAbortedAt(s.root, ['edit', '--base', s.base, '--old', s.old, '--new', s.new, '--out', out, '--report', report, '--max-shard-size', '4KB', '--threads', '1'], c, [out, report]);
  });
});

describe('hostile: a signal in the distinctive phases of adapter jobs and analyses (class 5)', () => {
  it.each([
    { phase: 'data', sig: 'SIGTERM', notReached: 'seal' },
    { phase: 'report', sig: 'SIGINT', notReached: 'commit' },
    { phase: 'commit', sig: 'SIGQUIT', notReached: 'the commit' },
  ] as Case[])('adapter edit: $sig in the $phase phase', async (c) => {
    const s = await adapterSet(`h5a-${c.phase}`);
    const out = path.join(s.root, 'out');
    const report = path.join(s.root, 'report.html');
    await expectAbortedAt(s.root, ['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--out', out, '--report', report, '--keep-zero-blocks'], c, [out, report]);
  });

  it.each([
    { phase: 'hashing', sig: 'SIGHUP', notReached: 'side-files' },
    { phase: 'data', sig: 'SIGINT', notReached: 'side-files' },
    { phase: 'side-files', sig: 'SIGTERM', notReached: 'seal' },
    { phase: 'commit', sig: 'SIGINT', notReached: 'the commit' },
  ] as Case[])('merged adapter: $sig in the $phase phase', async (c) => {
    const s = await adapterSet(`h5m-${c.phase}`);
    // The base as a directory with side files (copied into merged outputs).
    const baseDir = path.join(s.root, 'basedir');
    fs.mkdirSync(baseDir);
    fs.renameSync(s.base, path.join(baseDir, 'model.safetensors'));
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(baseDir, `vocab-${i}.txt`), 'x'.repeat(100_000));
    const out = path.join(s.root, 'out');
    await expectAbortedAt(s.root, ['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--base', baseDir, '--out', out, '--out-format', 'full', '--threads', '1'], c, [out]);
  });

  it.each([
    { phase: 'data', sig: 'SIGQUIT', notReached: 'report' },
    { phase: 'report', sig: 'SIGHUP', notReached: 'commit' },
    { phase: 'commit', sig: 'SIGTERM', notReached: 'the commit' },
  ] as Case[])('analyze --report: $sig in the $phase phase: no report', async (c) => {
    // Enough tensors for two native calls (256 tensors a call), so the data phase is two steps.
    const root = tmpDir(`h5r-${c.phase}`);
    const s = { root, ...(await makeTriple(root, llamaSpecs(60, 'F32'), [1, 1, 1])) };
    const report = path.join(s.root, 'report.html');
    await expectAbortedAt(s.root, ['analyze', '--base', s.base, '--old', s.old, '--new', s.new, '--report', report, '--threads', '1'], c, [report]);
  });
});
