// lib/partition/plan.ts hashAssignment: which input files a part hashes.
import { describe, expect, it } from 'vitest';
import { hashAssignment } from '../../lib/partition/plan';

describe('hashAssignment', () => {
  const files = ['a', 'b', 'c', 'index.json'];
  // a: read by parts 1 and 2 (a boundary shard); b: by part 2; c: by parts 2 and 3; index.json: by none
  const readsOf = new Map<string, Set<number>>([['a', new Set([1, 2])], ['b', new Set([2])], ['c', new Set([2, 3])], ['index.json', new Set()]]);

  it('each part hashes every file it reads; part 1 also the files no part reads', () => {
    expect(hashAssignment(files, readsOf, 1)).toEqual(['a', 'index.json']);
    expect(hashAssignment(files, readsOf, 2)).toEqual(['a', 'b', 'c']);
    expect(hashAssignment(files, readsOf, 3)).toEqual(['c']);
  });

  it('a part that reads nothing hashes nothing (unless it is part 1); every file is hashed by some part', () => {
    expect(hashAssignment(files, readsOf, 4)).toEqual([]);
    const all = new Set([1, 2, 3, 4].flatMap((p) => hashAssignment(files, readsOf, p)));
    expect([...all].sort()).toEqual([...files].sort());
    // a file missing from readsOf counts as read by no part
    expect(hashAssignment(['x'], new Map(), 1)).toEqual(['x']);
    expect(hashAssignment(['x'], new Map(), 2)).toEqual([]);
  });
});
