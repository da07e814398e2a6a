// Fresh editTensor outputs come from a pool of recycled pages (native/binding/outpool.cc): the
// bytes equal an edit into a reused `out`, pages are reused after a collection, and
// GEOEDIT_OUTPUT_POOL_MB=0 turns the pool off; outputs come back early (when their ArrayBuffer object
// is collected) only where JS cannot move their memory elsewhere.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { REPO } from '../support/paths';

const child = path.join(REPO, 'test', 'support', 'fixtures', 'outpool-child.cjs');

function run(env: Record<string, string> = {}) {
  const out = execFileSync(process.execPath, ['--expose-gc', child, REPO], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').pop()!) as {
    results: Array<{ dtype: string; rows: number; cols: number; round: number; same: boolean; type: string; length: number }>;
    pool: { hits: number; misses: number; idleBytes: number; cap: number; early: number };
    transfer: { attached: boolean; sameBytes: boolean };
    engineCanTransfer: boolean;
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
    // outputs come back when their ArrayBuffer object is collected, where JS cannot move the memory
    // elsewhere (untransferable, no ArrayBuffer.prototype.transfer); else only when V8 frees it
    if (r.engineCanTransfer) {
      expect(r.pool.early).toBe(0);
    } else {
      expect(r.pool.early).toBeGreaterThan(0);
      expect(r.transfer).toEqual({ attached: true, sameBytes: true });  // a transfer cannot take it away
    }
  }, 120_000);

  it('GEOEDIT_OUTPUT_POOL_MB=0 turns it off (same bytes, ordinary arrays)', () => {
    const r = run({ GEOEDIT_OUTPUT_POOL_MB: '0' });
    for (const x of r.results) expect(x.same).toBe(true);
    expect(r.pool).toEqual({ hits: 0, misses: 0, idleBytes: 0, cap: 0, early: 0 });
  }, 120_000);
});
