// The CLI run in process with stdout/stderr captured: `run(runEdit, argv)` → { code, out, err }.
// Used by the hostile suite (test/hostile) and the e2e CLI tests.
import { vi } from 'vitest';

export async function run(fn: (a: string[]) => Promise<number>, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => { out += String(s); return true; });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { err += String(s); return true; });
  try {
    const code = await fn(args);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}
