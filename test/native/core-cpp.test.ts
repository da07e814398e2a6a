// The core builds and tests as plain C++ (no Node headers): cmake with GEOEDIT_BUILD_TESTS=ON,
// then native/test/core_test holds every SIMD level to the scalar reference, and
// native/test/preserve_test checks SPEC §3 step 0 (preservation) against its own f64 reference.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO } from '../support/paths';

const root = REPO;
const hasCmake = spawnSync('cmake', ['--version']).status === 0;
const hasNm = spawnSync('nm', ['--version']).status === 0;
const dir = path.join(root, 'build-core-test');

function configure(): void {
  execFileSync('cmake', ['-S', root, '-B', dir, '-DGEOEDIT_BUILD_TESTS=ON', '-DGEOEDIT_CUDA=OFF', '-DCMAKE_BUILD_TYPE=Release'], { stdio: 'pipe' });
}

describe('plain C++ core', () => {
  it.skipIf(!hasCmake)('builds without Node headers and passes its own tests', () => {
    configure();
    execFileSync('cmake', ['--build', dir, '--target', 'geoedit_core_test', '-j', '2'], { stdio: 'pipe' });
    const out = execFileSync(path.join(dir, 'geoedit_core_test'), { encoding: 'utf8' });
    expect(out).toMatch(/core_test: \d+ checks, \d+ passed, 0 failed/);
  }, 300_000);

  it.skipIf(!hasCmake)('preservation (SPEC §3 step 0): f64 reference, minimiser, basis, augmented, threads, errors', () => {
    configure();
    execFileSync('cmake', ['--build', dir, '--target', 'geoedit_preserve_test', '-j', '2'], { stdio: 'pipe' });
    const out = execFileSync(path.join(dir, 'geoedit_preserve_test'), { encoding: 'utf8' });
    expect(out).toMatch(/preserve_test: \d+ checks, \d+ passed, 0 failed/);
  }, 300_000);

  // The ISA translation units (AVX2, AVX-512 row kernels and Eigen copies) must not define any code
  // symbol that a baseline object also defines: the linker keeps one copy of a weak symbol, and an
  // AVX-512 copy would then run on the baseline path. Eigen is renamed per ISA (preserve_la_impl.h).
  it.skipIf(!hasCmake || !hasNm || process.arch !== 'x64')('no AVX2/AVX-512 code is reachable from the baseline objects (nm)', () => {
    configure();
    execFileSync('cmake', ['--build', dir, '--target', 'geoedit_core', '-j', '2'], { stdio: 'pipe' });
    const objDir = path.join(dir, 'CMakeFiles', 'geoedit_core.dir', 'native');
    const objs: string[] = [];
    for (const sub of ['core', 'cpu']) for (const f of fs.readdirSync(path.join(objDir, sub))) if (f.endsWith('.o')) objs.push(path.join(objDir, sub, f));
    const isa = objs.filter((o) => /(avx2|avx512)\.cc\.o$/.test(o));
    expect(isa.length).toBe(4);
    const defined = (o: string): Map<string, string> => {
      const m = new Map<string, string>();
      for (const line of execFileSync('nm', ['--defined-only', o], { encoding: 'utf8' }).split('\n')) {
        const p = line.trim().split(/\s+/);
        if (p.length >= 3) m.set(p[2], p[1]);
      }
      return m;
    };
    const base = new Set<string>();
    for (const o of objs.filter((x) => !isa.includes(x))) for (const s of defined(o).keys()) base.add(s);
    const clashes: string[] = [];
    for (const o of isa) {
      const syms = defined(o);
      let eigenSyms = 0;
      for (const [s, t] of syms) {
        if (/geoedit_eigen_(avx2|avx512)/.test(s)) eigenSyms++;
        if (s === 'DW.ref.__gxx_personality_v0') continue;  // data (the unwinder's personality pointer), not code
        // local symbols (lower-case types: anonymous namespaces, statics) cannot stand in for another object's
        if (base.has(s) && /^[TWVuDRB]$/.test(t)) clashes.push(`${path.basename(o)}: ${s} (${t})`);
      }
      if (/preserve_la/.test(o)) expect(eigenSyms).toBeGreaterThan(0);  // the renamed copy is really there
    }
    expect(clashes).toEqual([]);
  }, 300_000);
});
