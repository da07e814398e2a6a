// The pure planning of partitioned edits (lib/partition/plan.ts): which part a process is (--part
// K/N, or a job-array scheduler's index from the environment), and which output files each part writes.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { assignFiles, resolvePart } from '../../lib/partition/plan';

const code = (f: () => unknown): string | undefined => {
  try { f(); } catch (e) { return (e as { code?: string }).code; }
  return undefined;
};
const message = (f: () => unknown): string => {
  try { f(); } catch (e) { return (e as Error).message; }
  return '';
};

describe('resolvePart', () => {
  it("'K/N' and { index, count } (K from 1)", () => {
    expect(resolvePart('2/3', {})).toEqual({ index: 2, count: 3, source: 'option' });
    expect(resolvePart(' 1 / 1 ', {})).toEqual({ index: 1, count: 1, source: 'option' });
    expect(resolvePart({ index: 3, count: 3 }, {})).toEqual({ index: 3, count: 3, source: 'option' });
  });
  it('malformed values are ERR_INVALID_OPTION naming the option', () => {
    for (const v of ['0/3', '4/3', '3', 'a/b', '1/0', '1.5/3', '1/3/4', '-1/3', '', { index: 1 }, { index: 0, count: 2 }, { index: 1, count: 2, x: 1 }, 7, null, ['1', '2']]) {
      expect(code(() => resolvePart(v, {})), JSON.stringify(v)).toBe('ERR_INVALID_OPTION');
    }
    expect(message(() => resolvePart('0/3', {}))).toMatch(/option 'part'.*K must be an integer in 1\.\.3.*numbered from 1/);
  });
  it('auto/N: Kubernetes (JOB_COMPLETION_INDEX) and AWS Batch (AWS_BATCH_JOB_ARRAY_INDEX) are 0-based', () => {
    expect(resolvePart('auto/4', { JOB_COMPLETION_INDEX: '0' })).toEqual({ index: 1, count: 4, source: 'JOB_COMPLETION_INDEX' });
    expect(resolvePart({ index: 'auto', count: 4 }, { JOB_COMPLETION_INDEX: '3' })).toEqual({ index: 4, count: 4, source: 'JOB_COMPLETION_INDEX' });
    expect(resolvePart('AUTO/3', { AWS_BATCH_JOB_ARRAY_INDEX: '2' })).toEqual({ index: 3, count: 3, source: 'AWS_BATCH_JOB_ARRAY_INDEX' });
  });
  it('auto/N: Slurm ids are normalised by SLURM_ARRAY_TASK_MIN (--array=1-N or 0-N-1), else read as 0-based', () => {
    expect(resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_MIN: '1' }).index).toBe(1);
    expect(resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_MIN: '1' }).index).toBe(3);
    expect(resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_MIN: '0' }).index).toBe(1);
    expect(resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '2' })).toEqual({ index: 3, count: 3, source: 'SLURM_ARRAY_TASK_ID' });
    expect(code(() => resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '3' }))).toBe('ERR_PART_INDEX');
    expect(message(() => resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '3' }))).toMatch(/SLURM_ARRAY_TASK_MIN unset: read as 0-based.*part 4, outside 1\.\.3/);
    expect(message(() => resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '4', SLURM_ARRAY_TASK_MIN: '1' }))).toMatch(/SLURM_ARRAY_TASK_ID=4 - SLURM_ARRAY_TASK_MIN=1 gives part 4/);
    expect(message(() => resolvePart('auto/3', { SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_MIN: '1' }))).toMatch(/below SLURM_ARRAY_TASK_MIN=1/);
  });
  it('auto/N: no variable, two variables, a bad or out-of-range index: ERR_PART_INDEX naming the variable', () => {
    expect(message(() => resolvePart('auto/2', {}))).toMatch(/none of JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX is set/);
    expect(code(() => resolvePart('auto/2', { JOB_COMPLETION_INDEX: '' }))).toBe('ERR_PART_INDEX'); // empty = unset
    expect(message(() => resolvePart('auto/2', { JOB_COMPLETION_INDEX: '0', SLURM_ARRAY_TASK_ID: '0' }))).toMatch(/JOB_COMPLETION_INDEX and SLURM_ARRAY_TASK_ID are all set.*ambiguous/);
    for (const v of ['-1', 'x', '1.0', '0x1']) {
      expect(code(() => resolvePart('auto/2', { JOB_COMPLETION_INDEX: v })), v).toBe('ERR_PART_INDEX');
      expect(message(() => resolvePart('auto/2', { JOB_COMPLETION_INDEX: v }))).toMatch(/JOB_COMPLETION_INDEX=.* is not a non-negative integer/);
    }
    expect(message(() => resolvePart('auto/2', { AWS_BATCH_JOB_ARRAY_INDEX: '2' }))).toMatch(/AWS_BATCH_JOB_ARRAY_INDEX=2 \(0-based\) gives part 3, outside 1\.\.2/);
  });
});

describe('assignFiles', () => {
  const files = (sizes: number[]) => sizes.map((bytes, i) => ({ name: `f${String(i).padStart(3, '0')}`, bytes }));
  const loads = (sizes: number[], a: number[], n: number) => { const l = new Array<number>(n).fill(0); a.forEach((p, i) => { l[p]! += sizes[i]!; }); return l; };

  it('contiguous runs, every file once, each part within one file of total/N', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 9 }), (sizes, n) => {
      const a = assignFiles(files(sizes), n);
      expect(a.length).toBe(sizes.length);
      for (let i = 0; i < a.length; i++) {
        expect(a[i]).toBeGreaterThanOrEqual(0);
        expect(a[i]).toBeLessThan(n);
        if (i) expect(a[i]).toBeGreaterThanOrEqual(a[i - 1]!);
      }
      const total = sizes.reduce((x, y) => x + y, 0), big = Math.max(...sizes);
      for (const l of loads(sizes, a, n)) expect(l).toBeLessThanOrEqual(total / n + big);
      // Deterministic: the same inputs, the same assignment.
      expect(assignFiles(files(sizes), n)).toEqual(a);
    }), { numRuns: 300, seed: 16 });
  });
  it('equal files split evenly; one part takes all; more parts than files leaves parts empty', () => {
    expect(assignFiles(files([5, 5, 5, 5, 5, 5]), 3)).toEqual([0, 0, 1, 1, 2, 2]);
    expect(assignFiles(files([5, 5, 5]), 1)).toEqual([0, 0, 0]);
    const a = assignFiles(files([5, 5]), 4);
    expect(new Set(a).size).toBe(2);
    expect(a[0]).toBeLessThan(a[1]!);
  });
  it('a large file is a part of its own; bytes, not file counts, are balanced', () => {
    expect(assignFiles(files([100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]), 2)).toEqual([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(assignFiles(files([10, 10, 10, 10, 100]), 2)).toEqual([0, 0, 0, 0, 1]);
  });
  it('grouped files (a tied tensor and its primary) go to one part', () => {
    const sizes = [10, 10, 10, 10, 10, 10];
    const a = assignFiles(files(sizes), 3, [[0, 5]]);
    expect(a[0]).toBe(a[5]);
    expect(new Set(a).size).toBe(3);
    // The order inside a group does not matter.
    expect(assignFiles(files(sizes), 3, [[5, 0]])).toEqual(a);
  });
});
