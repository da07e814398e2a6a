import { defineConfig } from 'vitest/config';
import * as os from 'node:os';
import * as path from 'node:path';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // The input-hash cache of the checkpoint pipeline: one file per test run, never the user's.
    env: { GEOEDIT_HASH_CACHE: process.env.GEOEDIT_HASH_CACHE ?? path.join(os.tmpdir(), `geoedit-test-hash-cache-${process.pid}.json`) },
  },
});
