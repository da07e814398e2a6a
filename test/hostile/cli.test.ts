// Issue 14 class 10: CLI hygiene. A bad glob is a usage error naming it (exit 1, not a raw
// SyntaxError), negative numbers work as option values, an --out the temporary suffix cannot fit
// beside or a dangling symlink fails before any work, and untrusted strings (tensor names with
// ESC, newlines, control characters) are escaped in messages and `inspect` output.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { runInspect } from '../../lib/cli/inspect';
import { safeText } from '../../lib/cli/common';
import { writeSafetensors } from '../../lib/safetensors';
import { checkpointTriple, fingerprint, run, tmpDir } from './support';

const EVIL = 'model.evil\u001b[2J\u001b]0;pwned\u0007\nforged: ok\r\u202eweight';

describe('hostile: CLI hygiene (class 10)', () => {
  it("--include '[z-a]' is exit 1 naming the glob; --scale -1 and --scale=-0.5 are values", async () => {
    const s = await checkpointTriple('h10a');
    const a = ['--base', s.base, '--old', s.old, '--new', s.new];
    const bad = await run(runEdit, [...a, '--out', path.join(s.root, 'o'), '--include', '[z-a]']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('ERR_INVALID_OPTION');
    expect(bad.err).toContain('[z-a]');
    expect(bad.err).not.toMatch(/SyntaxError|\n\s+at /);
    expect(fs.existsSync(path.join(s.root, 'o'))).toBe(false);
    for (const [args, v] of [[['--scale', '-1'], -1], [['--scale=-0.5'], -0.5]] as const) {
      const out = path.join(s.root, `neg${v}`);
      const r = await run(runEdit, [...a, '--out', out, ...args]);
      expect(r.err).not.toMatch(/ERR_|ambiguous/);
      expect(r.code).toBe(0);
      expect(JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8')).parameters.scale).toBe(v);
    }
  });

  it('an --out name too long for the temporary suffix, or a dangling symlink, fails before any work', async () => {
    const s = await checkpointTriple('h10b');
    const a = ['--base', s.base, '--old', s.old, '--new', s.new];
    const before = fingerprint(s.root);
    const long = path.join(s.root, 'x'.repeat(240));
    const r1 = await run(runEdit, [...a, '--out', long]);
    expect(r1.code).toBe(1);
    expect(r1.err).toMatch(/too long for the temporary directory/);
    fs.symlinkSync(path.join(s.root, 'nowhere'), path.join(s.root, 'dangling'));
    const r2 = await run(runEdit, [...a, '--out', path.join(s.root, 'dangling'), '--force']);
    expect(r2.code).toBe(2);
    expect(r2.err).toMatch(/dangling symbolic link/);
    expect(fs.readlinkSync(path.join(s.root, 'dangling'))).toBe(path.join(s.root, 'nowhere'));
    delete before['dangling'];
    const after = fingerprint(s.root);
    delete after['dangling'];
    expect(after).toEqual(before);
  });

  it('tensor names with ESC, newlines and bidi controls are escaped in inspect output and in error messages', async () => {
    const root = tmpDir('h10c');
    const f = path.join(root, 'evil.safetensors');
    await writeSafetensors(f, [{ name: EVIL, dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }]);
    await writeSafetensors(path.join(root, 'plain.safetensors'), [{ name: 'model.w', dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }]);
    const ins = await run(runInspect, [f]);
    expect(ins.code).toBe(0);
    const clean = (s: string) => {
      expect(s).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f\u202e]/);
      expect(s.split('\n').some((l) => l.startsWith('forged'))).toBe(false);
    };
    clean(ins.out);
    expect(ins.out).toContain(safeText(EVIL));
    const r = await run(runEdit, ['--base', f, '--old', path.join(root, 'plain.safetensors'), '--new', f, '--out', path.join(root, 'o')]);
    expect(r.code).toBe(2);
    clean(r.err);
    expect(r.err).toContain('\\x1b[2J');
    expect(safeText('a\u0000b\u009b\u2066')).toBe('a\\x00b\\x9b\\u2066');
  });
});
