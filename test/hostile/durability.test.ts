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
import { writeReport } from '../../lib/report';
import { writeDirReport } from '../../lib/governance/render';
import { leftovers } from '../support/ckpt';
import { loadManifest, MANIFEST_FILE, writeManifestAppended } from '../../lib/governance/lineage';
import { checkpointTriple } from './support';

describe('hostile: durability (class 3)', () => {
  it('a manifest rewritten in place (writeManifestAppended: evaluate\'s record) is fsync\'ed as a temp before the rename, its directory after', async () => {
    const s = await checkpointTriple('h3m');
    const out = path.join(s.root, 'out');
    await editCheckpoint({ base: s.base, old: s.old, new: s.new, out });
    const file = path.join(out, MANIFEST_FILE);
    const synced: string[] = [];
    const orig = fsDefault.fsyncSync;
    fsDefault.fsyncSync = (fd: number) => { synced.push(fs.readlinkSync(`/proc/self/fd/${fd}`)); return orig(fd); };
    syncBuiltinESMExports();
    try {
      writeManifestAppended(file, loadManifest(file).manifest);
    } finally {
      fsDefault.fsyncSync = orig;
      syncBuiltinESMExports();
    }
    expect(synced.some((p) => new RegExp(`/\\.${MANIFEST_FILE.replace('.', '\\.')}\\.geoedit-tmp-`).test(p))).toBe(true);
    expect(synced).toContain(fs.realpathSync(out));
    expect(leftovers(out)).toEqual([]);
  });

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

  it('the report writers (writeReport, geoedit report): the temporary file fsync\'ed before the rename, the directory after; a failed rename leaves nothing behind', async () => {
    const s = await checkpointTriple('h3r');
    const out = path.join(s.root, 'out');
    const m = await editCheckpoint({ base: s.base, old: s.old, new: s.new, out });
    const dir = fs.mkdtempSync(path.join(s.root, 'reports-'));
    const synced: string[] = [];
    const record = (fd: number) => synced.push(fs.readlinkSync(`/proc/self/fd/${fd}`));
    const orig = { sync: fsDefault.fsyncSync, async: fsDefault.fsync };
    fsDefault.fsyncSync = (fd: number) => { record(fd); return orig.sync(fd); };
    fsDefault.fsync = ((fd: number, cb: (e: NodeJS.ErrnoException | null) => void) => { record(fd); return orig.async(fd, cb); }) as typeof fs.fsync;
    syncBuiltinESMExports();
    try {
      for (const [what, write, file] of [
        ['writeReport', (f: string) => writeReport(f, m), path.join(dir, 'a.html')],
        ['writeDirReport', (f: string) => writeDirReport(out, f), path.join(dir, 'b.html')],
      ] as const) {
        synced.length = 0;
        await write(file);
        expect(fs.readFileSync(file, 'utf8'), what).toMatch(/<html/i);
        // the temporary file beside it (renamed since: its name is the one the fd had), then the directory
        const tmp = synced.findIndex((p) => path.basename(p).startsWith(`.${path.basename(file)}.geoedit-tmp-`));
        expect(tmp, `${what}: ${synced.join(', ')}`).toBeGreaterThanOrEqual(0);
        expect(synced.indexOf(fs.realpathSync(dir), tmp), `${what}: ${synced.join(', ')}`).toBeGreaterThan(tmp);
        // a target that cannot be replaced (a non-empty directory): an error, the target as it was, no temporary file left
        const blocked = path.join(dir, `${what}-blocked`);
        fs.mkdirSync(blocked);
        fs.writeFileSync(path.join(blocked, 'keep'), 'x');
        await expect(write(blocked), what).rejects.toThrow();
        expect(fs.readdirSync(blocked)).toEqual(['keep']);
      }
    } finally {
      fsDefault.fsyncSync = orig.sync;
      fsDefault.fsync = orig.async;
      syncBuiltinESMExports();
    }
    expect(leftovers(dir)).toEqual([]);
  });
});
