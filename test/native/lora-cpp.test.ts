// The LoRA core as plain C++ (no Node headers): cmake with GEOEDIT_BUILD_TESTS=ON, then
// native/test/lora_test checks factor-space geometry, thread determinism and the merge.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { REPO } from '../support/paths';

const root = REPO;
const hasCmake = spawnSync('cmake', ['--version']).status === 0;

describe('plain C++ LoRA core', () => {
  it.skipIf(!hasCmake)('builds without Node headers and passes its own tests', () => {
    const dir = path.join(root, 'build-lora-test');
    execFileSync('cmake', ['-S', root, '-B', dir, '-DGEOEDIT_BUILD_TESTS=ON', '-DCMAKE_BUILD_TYPE=Release'], { stdio: 'pipe' });
    execFileSync('cmake', ['--build', dir, '--target', 'geoedit_lora_test', '-j', '2'], { stdio: 'pipe' });
    const out = execFileSync(path.join(dir, 'geoedit_lora_test'), { encoding: 'utf8' });
    expect(out).toMatch(/lora_test: \d+ checks, \d+ passed, 0 failed/);
  }, 300_000);
});
