// Issue 14 class 3: durability. Before the rename into place every written file and the temporary
// directory are fsync'ed, and the parent directory after it (so a power loss after the commit
// cannot leave empty or short files at the target). Checked by recording every fsync the job makes
// (node:fs's fsyncSync wrapped, module.syncBuiltinESMExports carrying it to the lib's imports; and
// FileHandle.prototype.sync, the thread-pool fsync the commit step uses).
import * as fs from 'node:fs';
import fsDefault from 'node:fs';
import * as path from 'node:path';
import { syncBuiltinESMExports } from 'node:module';
import { describe, it, expect } from 'vitest';
import { editCheckpoint } from '../../lib/checkpoint';
import { checkpointTriple } from './support';

describe('hostile: durability (class 3)', () => {
  it('fsyncs every output file and the temporary directory before the rename, the parent directory after', async () => {
    const s = await checkpointTriple('h3');
    const out = path.join(s.root, 'out');
    const synced: string[] = [];
    const record = (fd: number) => synced.push(fs.readlinkSync(`/proc/self/fd/${fd}`) + (fs.existsSync(out) ? ' after' : ' before'));
    const orig = fsDefault.fsyncSync;
    fsDefault.fsyncSync = (fd: number) => { record(fd); return orig(fd); };
    syncBuiltinESMExports();
    const probe = await fs.promises.open(s.root, 'r');
    const proto = Object.getPrototypeOf(probe) as { sync: (this: { fd: number }) => Promise<void> };
    await probe.close();
    const origSync = proto.sync;
    proto.sync = function (this: { fd: number }) { record(this.fd); return origSync.call(this); };
    try {
      await editCheckpoint({ base: s.base, old: s.old, new: s.new, out });
    } finally {
      fsDefault.fsyncSync = orig;
      syncBuiltinESMExports();
      proto.sync = origSync;
    }
    const tmpDirSync = synced.find((p) => /\/\.out\.geoedit-tmp-[^/]+ before$/.test(p));
    expect(tmpDirSync).toBeDefined();
    const tmp = tmpDirSync!.replace(/ before$/, '');
    for (const n of fs.readdirSync(out)) expect(synced).toContain(`${path.join(tmp, n)} before`);
    expect(synced.indexOf(tmpDirSync!)).toBeGreaterThan(synced.indexOf(`${path.join(tmp, 'geoedit-manifest.json')} before`));
    expect(synced).toContain(`${fs.realpathSync(s.root)} after`);
  });
});
