// Fresh editTensor outputs come from a pool of recycled pages (native/binding/outpool.cc): the
// bytes equal an edit into a reused `out`, pages are reused after a collection, and
// GEOEDIT_OUTPUT_POOL_MB=0 turns the pool off; outputs come back early (when their ArrayBuffer object
// is collected) only where JS cannot move their memory elsewhere. In the loops callers write (no
// --expose-gc: the pool's own collections), no output is ever handed out while JS still holds it.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { REPO } from '../support/paths';

const child = path.join(REPO, 'test', 'support', 'fixtures', 'outpool-child.cjs');
const loopChild = path.join(REPO, 'test', 'support', 'fixtures', 'outpool-loop-child.cjs');
const child64 = path.join(REPO, 'test', 'support', 'fixtures', 'outpool-64-child.cjs');

interface PoolStats { hits: number; misses: number; idleBytes: number; cap: number; early: number; reclaimed: number; forced: number; futile: number; gcMs: number; faultMsPerMiB: number; uncounted: number; marking: number; uncountedAvailable: boolean; uncountedUnavailable: string }

// The caller's GEOEDIT_OUTPUT_POOL_* settings would change what the children measure: none of them, then env.
const childEnv = (env: Record<string, string> = {}) => ({ ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GEOEDIT_OUTPUT_POOL_'))), ...env });

function run(env: Record<string, string> = {}) {
  const out = execFileSync(process.execPath, ['--expose-gc', child, REPO], { encoding: 'utf8', env: childEnv(env), maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').pop()!) as {
    results: Array<{ dtype: string; rows: number; cols: number; round: number; same: boolean; type: string; length: number }>;
    pool: PoolStats;
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
    const { uncountedAvailable: _a, uncountedUnavailable: _b, ...counts } = r.pool;
    expect(counts).toEqual({ hits: 0, misses: 0, idleBytes: 0, cap: 0, early: 0, reclaimed: 0, forced: 0, futile: 0, gcMs: 0, faultMsPerMiB: 0, uncounted: 0, marking: 0 });
  }, 120_000);

  it('GEOEDIT_OUTPUT_POOL_GC=0: never a forced collection, every output still correct', () => {
    const out = execFileSync(process.execPath, [loopChild, REPO], { encoding: 'utf8', maxBuffer: 1 << 20, env: childEnv({ GEOEDIT_OUTPUT_POOL_GC: '0' }) });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { tight: { ok: boolean[]; pool: PoolStats }; held: { ok: boolean[]; distinct: number; pool: PoolStats }; after: { ok: boolean[]; pool: PoolStats } };
    expect(r.tight.ok).toEqual(Array(8).fill(true));
    expect(r.held.ok).toEqual(Array(10).fill(true));
    expect(r.held.distinct).toBe(10);
    expect(r.after.ok).toEqual(Array(4).fill(true));
    for (const s of [r.tight.pool, r.held.pool, r.after.pool]) expect(s.forced).toBe(0);
  }, 300_000);

  it('in loops without --expose-gc: every output correct as it arrives and while it is held; a worker\'s teardown is safe', () => {
    const out = execFileSync(process.execPath, [loopChild, REPO], { encoding: 'utf8', maxBuffer: 1 << 20, env: childEnv() });
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      tight: { ok: boolean[]; pool: PoolStats };
      held: { ok: boolean[]; distinct: number; pool: PoolStats };
      worker: { ok: boolean; code: number };
      after: { ok: boolean[]; pool: PoolStats };
    };
    // `last = null; last = await editTensor(...)`, new inputs each call: each output equals its reference
    expect(r.tight.ok).toEqual(Array(8).fill(true));
    expect(r.tight.pool.hits + r.tight.pool.misses).toBe(8);
    // outputs dropped in the loop come back: through the weak references or a forced collection
    expect(r.tight.pool.reclaimed + r.tight.pool.early).toBeGreaterThan(0);
    expect(r.tight.pool.forced).toBeGreaterThan(0);
    // ten outputs held: ten distinct buffers, each still equal to its reference after all ten calls;
    // nothing to reclaim, and the collections the pool asked for back off (1, 3, 7 chances skipped)
    expect(r.held.ok).toEqual(Array(10).fill(true));
    expect(r.held.distinct).toBe(10);
    expect(r.held.pool.reclaimed).toBe(0);
    expect(r.held.pool.forced).toBe(r.held.pool.futile);
    expect(r.held.pool.forced).toBeLessThanOrEqual(3);
    // a worker thread exits with fresh outputs out; the main thread's pool goes on
    expect(r.worker).toEqual({ ok: true, code: 0 });
    expect(r.after.ok).toEqual(Array(4).fill(true));
  }, 300_000);

  // 64 MiB outputs ([4096, 4096] f32): V8 counts an ArrayBuffer's bytes when it is made and checks them
  // against the lowest count since its last full collection plus 64 MiB, so every 64 MiB external
  // buffer started a collection of V8's own (one per call). Where the pool can, it makes them over
  // stores V8 does not count: the full collections are then the pool's (one per 3-4 calls) or follow
  // newly mapped memory (reported while that output is out), never one per call.
  interface Loop { ok: boolean[]; majors: number; pool: PoolStats; kept?: boolean[] }
  interface Run64 { calls: number; node: number; engineCanTransfer: boolean; available: boolean; unavailable: string; dropped: Loop; tight: Loop; held: Loop; worker: { ok: boolean; code: number; uncounted: number }; after: Loop }
  const run64 = (env: Record<string, string> = {}) => {
    const out = execFileSync(process.execPath, [child64, REPO], { encoding: 'utf8', maxBuffer: 1 << 20, env: childEnv(env) });
    return JSON.parse(out.trim().split('\n').pop()!) as Run64;
  };

  it('64 MiB outputs: no collection of V8\'s own per call; every output correct, held ones intact', () => {
    const r = run64();
    // The addon says whether it can make them uncounted (outpool.cc uncounted_unavailable). Node 20's
    // own binaries (no ArrayBuffer.prototype.transfer) export the five V8 functions and have no
    // sandbox: there it must be available, so this test cannot silently stop covering that path;
    // elsewhere the counted path (e.g. "node", "transfer").
    const uncounted = r.available;
    expect(r.available, r.unavailable).toBe(r.unavailable === '');
    if (r.node === 20 && !r.engineCanTransfer) expect(r.unavailable).toBe('');
    else expect(r.available).toBe(false);
    for (const [name, l] of Object.entries({ dropped: r.dropped, tight: r.tight, held: r.held, after: r.after })) {
      expect(l.ok, name).toEqual(Array(r.calls).fill(true));
      expect(l.pool.hits + l.pool.misses, name).toBe(r.calls);
      if (!uncounted) { expect(l.pool.uncounted, name).toBe(0); continue; }
      expect(l.pool.uncounted, name).toBe(r.calls);
      // each full collection is one the pool started or follows a new mapping (at most one more); the
      // pool never waits for one (no forced collection) and starts at most one per 3 uncounted
      // outputs (kMarkAt = 4: the first of a loop may start one, then every third)
      expect(l.majors, `${name}: ${JSON.stringify(l)}`).toBeLessThanOrEqual(l.pool.marking + l.pool.misses + 1);
      expect(l.pool.forced, name).toBe(0);
      expect(l.pool.marking, name).toBeLessThanOrEqual(Math.ceil(r.calls / 3));
    }
    expect(r.held.kept).toEqual([true, true, true, true]);
    // a worker thread exits with three uncounted outputs out; the main thread's pool goes on (after)
    expect(r.worker).toEqual({ ok: true, code: 0, uncounted: uncounted ? 3 : 0 });
    // with the pool warm (after the loops above), most outputs are recycled ones
    expect(r.after.pool.hits).toBeGreaterThanOrEqual(r.calls / 2);
  }, 300_000);

  it('GEOEDIT_OUTPUT_POOL_UNCOUNTED=0: 64 MiB outputs keep V8\'s count, every output still correct', () => {
    const r = run64({ GEOEDIT_OUTPUT_POOL_UNCOUNTED: '0' });
    expect([r.available, r.unavailable]).toEqual([false, 'off']);
    for (const l of [r.dropped, r.tight, r.held, r.after]) {
      expect(l.ok).toEqual(Array(r.calls).fill(true));
      expect(l.pool.uncounted).toBe(0);
    }
    expect(r.held.kept).toEqual([true, true, true, true]);
  }, 300_000);
});
