// Fresh editTensor outputs come from a pool of recycled pages (native/binding/outpool.cc): the
// bytes equal an edit into a reused `out`, pages are reused after a collection, and
// GEOEDIT_OUTPUT_POOL_MB=0 turns the pool off.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { REPO } from '../support/paths';

const child = path.join(REPO, 'test', 'support', 'fixtures', 'outpool-child.cjs');

function run(env: Record<string, string> = {}) {
  const out = execFileSync(process.execPath, ['--expose-gc', child, REPO], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').pop()!) as {
    results: Array<{ dtype: string; rows: number; cols: number; round: number; same: boolean; type: string; length: number }>;
    pool: { hits: number; misses: number; idleBytes: number; cap: number };
  };
}

describe('fresh outputs from the output pool', () => {
  it('equal the reused-out bytes, and reuse collected outputs\' pages', () => {
    const r = run();
    for (const x of r.results) {
      expect(x.same, `${x.dtype} [${x.rows},${x.cols}] round ${x.round}`).toBe(true);
      expect(x.type).toBe(x.dtype === 'f32' ? 'Float32Array' : 'Uint16Array');
      expect(x.length).toBe(x.rows * x.cols);
    }
    expect(r.pool.cap).toBeGreaterThan(0);
    expect(r.pool.misses).toBeGreaterThan(0);
    expect(r.pool.hits).toBeGreaterThan(0);  // a later output of the same size got a collected one's pages
  }, 120_000);

  it('GEOEDIT_OUTPUT_POOL_MB=0 turns it off (same bytes, ordinary arrays)', () => {
    const r = run({ GEOEDIT_OUTPUT_POOL_MB: '0' });
    for (const x of r.results) expect(x.same).toBe(true);
    expect(r.pool).toEqual({ hits: 0, misses: 0, idleBytes: 0, cap: 0 });
  }, 120_000);
});
