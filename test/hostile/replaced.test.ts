// Issue 14, class 6: an input replaced (renamed over) between validation and the data pass, on
// every path that reads inputs (lib/job/inputs.ts). The child stops itself at a phase marker
// (GEOEDIT_TEST_STOP_AT), the test renames a different file over an input, the child continues:
// a coded ERR_IO naming the file, exit 3, nothing at the target, no report, nothing left.
import * as fs from 'node:fs';
import * as path from 'node:path';
import fsDefault from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { describe, it, expect } from 'vitest';
import { editCheckpoint } from '../../lib/checkpoint';
import { editAdapters } from '../../lib/lora';
import { adapterSet, checkpointTriple, expectReplaced } from './support';
import { presStats, writePresModel, writeStats } from '../support/preserve-fixture';
import { tmpDir } from '../support/lora';


describe('hostile: an input replaced after validation (class 6), every path that reads inputs', () => {
  it('adapter edit (adapter output): the new adapter replaced in the data phase', async () => {
    const s = await adapterSet('rp-ad');
    const out = path.join(s.root, 'out'), report = path.join(s.root, 'r.html');
    await expectReplaced(s.root, ['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--out', out, '--report', report], 'data',
      path.join(s.new, 'adapter_model.safetensors'), [out, report]);
  });

  it('adapter edit (adapter output): the old adapter replaced in the hashing phase', async () => {
    const s = await adapterSet('rp-ah');
    const out = path.join(s.root, 'out');
    await expectReplaced(s.root, ['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--out', out], 'hashing', path.join(s.old, 'adapter_model.safetensors'), [out]);
  });

  it('merged adapters (--base): the base replaced in the data phase', async () => {
    const s = await adapterSet('rp-mb');
    const out = path.join(s.root, 'out');
    await expectReplaced(s.root, ['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--base', s.base, '--out', out], 'data', s.base, [out]);
  });

  it('merged adapters (--base): an adapter replaced in the data phase', async () => {
    const s = await adapterSet('rp-ma');
    const out = path.join(s.root, 'out');
    await expectReplaced(s.root, ['edit', '--old-adapter', s.old, '--new-adapter', s.new, '--base', s.base, '--out', out], 'data', path.join(s.old, 'adapter_model.safetensors'), [out]);
  });

  it('adapter analysis with a report: an adapter replaced in the data phase', async () => {
    const s = await adapterSet('rp-an');
    const report = path.join(s.root, 'r.html');
    await expectReplaced(s.root, ['analyze', '--old-adapter', s.old, '--new-adapter', s.new, '--report', report], 'data', path.join(s.new, 'adapter_model.safetensors'), [report]);
  });

  it('checkpoint analysis with a report: a shard replaced in the data phase', async () => {
    const s = await checkpointTriple('rp-ca');
    const report = path.join(s.root, 'r.html');
    await expectReplaced(s.root, ['analyze', '--base', s.base, '--old', s.old, '--new', s.new, '--report', report], 'data', path.join(s.new, 'model-00002-of-00002.safetensors'), [report]);
  });

  it('checkpoint edit with preservation: the statistics file replaced after its values were validated', async () => {
    const root = tmpDir('rp-ps');
    const m = await writePresModel(path.join(root, 'in'));
    const st = presStats();
    const stats = await writeStats(path.join(root, 'stats.safetensors'), st.tensors, st.shared);
    const out = path.join(root, 'out');
    await expectReplaced(root, ['edit', '--base', m.base, '--old', m.old, '--new', m.new, '--out', out, '--preserve', stats, '--quiet'], 'data', stats, [out]);
  });

  it('each open input is fstat\'ed once for its identity (checked, then carried: hash key, sizes, the replaced check) and once after its hash', async () => {
    const s = await checkpointTriple('rp-st');
    const a = await adapterSet('rp-sta');
    const counts = new Map<string, number>();
    const orig = fsDefault.fstatSync;
    fsDefault.fstatSync = ((fd: number, o?: fs.StatSyncOptions) => {
      const p = fs.readlinkSync(`/proc/self/fd/${fd}`);
      counts.set(p, (counts.get(p) ?? 0) + 1);
      return orig(fd, o as never);
    }) as typeof fs.fstatSync;
    syncBuiltinESMExports();
    const prev = process.env.GEOEDIT_HASH_CACHE;
    process.env.GEOEDIT_HASH_CACHE = 'off';
    try {
      await editCheckpoint({ base: s.base, old: s.old, new: s.new, out: path.join(s.root, 'out') });
      await editAdapters({ old: a.old, new: a.new, base: a.base, out: path.join(a.root, 'out') }, { outFormat: 'full' });
    } finally {
      fsDefault.fstatSync = orig;
      syncBuiltinESMExports();
      if (prev === undefined) delete process.env.GEOEDIT_HASH_CACHE; else process.env.GEOEDIT_HASH_CACHE = prev;
    }
    const inputs = [s.base, s.old, s.new].flatMap((d) => fs.readdirSync(d).filter((n) => n.endsWith('.safetensors')).map((n) => path.join(d, n)));
    inputs.push(a.base, path.join(a.old, 'adapter_model.safetensors'), path.join(a.new, 'adapter_model.safetensors'));
    for (const f of inputs) expect(counts.get(f), f).toBe(2);
  });
});
