// One list of environment variables (lib/env.ts): lib/ reads none except through it, and every
// variable the C++ core, the CUDA plugin and the scripts read is in it.
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ENV_VARS, flagSet, readEnv } from '../../lib/env';

const ROOT = path.resolve(__dirname, '..', '..');

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) { if (e.name !== 'test' && e.name !== 'emu') out.push(...files(p, ext)); } else if (ext.test(e.name)) out.push(p);
  }
  return out;
}

describe('environment variables', () => {
  const listed = new Set<string>(ENV_VARS.map((v) => v.name));

  it('lib/ reads process.env only in lib/env.ts', () => {
    const offenders: string[] = [];
    for (const f of files(path.join(ROOT, 'lib'), /\.ts$/)) {
      if (path.relative(ROOT, f) === path.join('lib', 'env.ts')) continue;
      const src = fs.readFileSync(f, 'utf8');
      src.split('\n').forEach((l, i) => { if (/process\.env\b/.test(l) && !/^\s*(\/\/|\/\*|\*)/.test(l)) offenders.push(`${path.relative(ROOT, f)}:${i + 1}`); });
    }
    expect(offenders).toEqual([]);
  });

  it('every GEOEDIT_* variable read by the core, the plugin or the scripts is listed', () => {
    const read = new Set<string>();
    for (const f of [...files(path.join(ROOT, 'native'), /\.(cc|h|cu)$/)]) {
      for (const m of fs.readFileSync(f, 'utf8').matchAll(/getenv\("([A-Z_0-9]+)"\)/g)) read.add(m[1]!);
    }
    for (const f of files(path.join(ROOT, 'scripts'), /\.js$/)) {
      for (const m of fs.readFileSync(f, 'utf8').matchAll(/env\.((?:GEOEDIT_|PREBUILDS_)[A-Z_0-9]*)/g)) read.add(m[1]!);
    }
    expect(read.size).toBeGreaterThan(5);
    expect([...read].filter((v) => !listed.has(v))).toEqual([]);
  });

  it('every variable listed as read by the core, the binding or the plugin is named in native/ (no stale entries)', () => {
    const src = [...files(path.join(ROOT, 'native'), /\.(cc|h|cu)$/)].map((f) => fs.readFileSync(f, 'utf8')).join('\n');
    const native = ENV_VARS.filter((v) => (v.readBy as readonly string[]).some((r) => r === 'core' || r === 'binding' || r === 'cuda-plugin'));
    expect(native.length).toBeGreaterThan(5);
    expect(native.map((v) => v.name).filter((n) => !src.includes(`"${n}"`))).toEqual([]);
  });

  it('readEnv: empty is unset; flagSet: 0/false are off; unknown names are a programming error', () => {
    expect(readEnv('GEOEDIT_BACKEND', { GEOEDIT_BACKEND: '' })).toBeUndefined();
    expect(readEnv('GEOEDIT_BACKEND', { GEOEDIT_BACKEND: 'cpu' })).toBe('cpu');
    expect(flagSet('PREBUILDS_ONLY', { PREBUILDS_ONLY: '0' })).toBe(false);
    expect(flagSet('PREBUILDS_ONLY', { PREBUILDS_ONLY: 'FALSE' })).toBe(false);
    expect(flagSet('PREBUILDS_ONLY', { PREBUILDS_ONLY: '1' })).toBe(true);
    expect(() => readEnv('GEOEDIT_NOPE' as never)).toThrow(/not in ENV_VARS/);
  });
});
