// Issue 14 class 9: scale. Everything is linear in the number of tensors and shards, nothing
// spreads a per-tensor list into call arguments (Math.max(...x), push(...x): 'Maximum call stack
// size exceeded' past ~100k) and the report never fails an edit that succeeded. The inputs are
// cheap: tiny tensors, header-heavy files. The assertions are on counts and outcomes, never on
// timings: a quadratic step at these sizes would run for minutes, past the test's timeout.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { inspectCheckpoint } from '../../lib';
import { renderReport } from '../../lib/report';
import { runEdit } from '../../lib/cli/edit';
import { run, tmpDir } from './support';

/** A safetensors file of n tiny F32 tensors (`name(i)`, shape [2]), written directly (header-heavy). */
export function tinyTensorsFile(file: string, n: number, name: (i: number) => string, value: (i: number) => number): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  for (let i = 0; i < n; i++) header[name(i)] = { dtype: 'F32', shape: [2], data_offsets: [8 * i, 8 * i + 8] };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const data = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) { data[2 * i] = value(i); data[2 * i + 1] = 1 - value(i); }
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), Buffer.from(data.buffer)]));
}

describe('hostile: scale (class 9)', () => {
  it('inspect: an index with 100,000 shard names lists every shard and tensor', async () => {
    const N = 100_000;
    const dir = path.join(tmpDir('h9-shards'), 'ck');
    fs.mkdirSync(dir);
    const wm: Record<string, string> = {};
    for (let i = 0; i < N; i++) {
      const shard = `s-${i}.safetensors`;
      tinyTensorsFile(path.join(dir, shard), 1, () => `t.${i}`, () => 0.5);
      wm[`t.${i}`] = shard;
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: wm }));
    const r = await inspectCheckpoint(dir);
    expect(r.files.length).toBe(N);
    expect(r.tensors.length).toBe(N);
    expect(new Set(r.tensors.map((t) => t.file)).size).toBe(N);
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  });

  it('an edit of 200,000 tensors (every one its own module) with --report succeeds; the report is bounded and says what it leaves out', async () => {
    const N = 200_000;
    const root = tmpDir('h9-edit');
    // Names without a layer number: each tensor is its own module in the report's charts.
    const name = (i: number) => `w${i.toString(36)}`;
    for (const [role, k] of [['base', 0], ['old', 1], ['new', 2]] as const) {
      fs.mkdirSync(path.join(root, role));
      tinyTensorsFile(path.join(root, role, 'model.safetensors'), N, name, (i) => ((i * 7 + k * 13) % 17) / 17);
    }
    const out = path.join(root, 'out');
    const report = path.join(root, 'report.html');
    const r = await run(runEdit, ['--base', path.join(root, 'base'), '--old', path.join(root, 'old'), '--new', path.join(root, 'new'), '--out', out, '--report', report, '--threads', '1']);
    expect(r.err).not.toMatch(/call stack|RangeError/);
    expect(r.code).toBe(0);
    const m = JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8'));
    expect(m.tensors.length).toBe(N);
    expect(m.totals.edited).toBe(N);
    const html = fs.readFileSync(report, 'utf8');
    expect(html).toContain(`The first 20000 of ${N} tensors`);
    expect(html).toMatch(/64 modules with the most rows; 0 more layers and 199936 more modules are left out/);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('renderReport: 150,000 edited tensors in 150,000 layers and modules render without a stack overflow', () => {
    const N = 150_000;
    const tensors = Array.from({ length: N }, (_, i) => ({
      name: `x.${i}.m${i}.weight`, shape: [2], dtype: 'F32', outDtype: 'F32', action: 'edit', rows: 1, cols: 2,
      counts: { orthogonal: 1, synergy: 0, conflict: 0 }, angleHistogram: new Array(36).fill(0), meanCos: 0, energy: { new: 1, old: 1, applied: 1 }, energyKept: 1,
    }));
    const m = {
      tool: 'geoedit', kind: 'checkpoint-edit', createdAt: '', versions: { geoedit: '0', platform: 'x', node: 'x', simd: 'x' }, inputs: {}, output: null,
      parameters: { strategy: 'geoedit' }, tensors, warnings: [],
      totals: { tensors: N, edited: N, copied: 0, converted: 0, rows: N, counts: { orthogonal: N, synergy: 0, conflict: 0 }, energy: { new: N, old: N, applied: N }, energyKept: 1, bytesRead: 0, bytesWritten: 0 },
      timings: { totalMs: 0, validateMs: 0, dataMs: 0, hashMs: 0, gbPerSecond: 0 },
    };
    const html = renderReport(m as never);
    expect(html).toContain('256 layers and 64 modules with the most rows');
    expect((html.match(/class="chart hist"/g) ?? []).length).toBe(256 + 1);
  });
});
