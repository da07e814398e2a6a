import { run } from '../support/cli-run';
// The CLI's LoRA path end to end (in process, from the sources): edit to an adapter, edit to merged
// full weights with --base, analyze, and the usage / input errors with their exit codes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { runEdit } from '../../lib/cli/edit';
import { runAnalyze } from '../../lib/cli/analyze';
import { editAdapters } from '../../lib/lora';
import { readSafetensorsHeaderSync, writeSafetensors } from '../../lib/safetensors';
import { tmpDir, writeAdapter, linearModule } from '../support/lora';
import { rng, randn } from '../support/prng';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function setup() {
  const r = rng(77);
  const root = tmpDir('cli');
  dirs.push(root);
  const names = ['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.down_proj'];
  const mk = (seed: number) => names.map((n, i) => linearModule(rng(seed + i), n, i ? 16 : 24, i ? 40 : 24, 4));
  await writeAdapter(path.join(root, 'old'), { r: 4, lora_alpha: 8 }, mk(1));
  await writeAdapter(path.join(root, 'new'), { r: 4, lora_alpha: 8 }, mk(10));
  await writeSafetensors(path.join(root, 'base.safetensors'), [
    { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [24, 24], data: randn(r, 576) },
    { name: 'model.layers.0.mlp.down_proj.weight', dtype: 'F32', shape: [16, 40], data: randn(r, 640) },
    { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [5, 24], data: randn(r, 120) },
  ]);
  return root;
}


describe('geoedit CLI with adapters', () => {
  it('edit --out-format full --base: the same bytes as editAdapters; edit to an adapter; analyze', async () => {
    const root = await setup();
    const a = ['--old-adapter', path.join(root, 'old'), '--new-adapter', path.join(root, 'new')];
    const full = await run(runEdit, [...a, '--base', path.join(root, 'base.safetensors'), '--out', path.join(root, 'full'), '--out-format', 'full', '--fuse-aligned', '0.5']);
    expect(full.err).toBe('');
    expect(full.code).toBe(0);
    expect(full.out).toContain('merged weights');
    const api = path.join(root, 'full-api');
    await editAdapters({ old: path.join(root, 'old'), new: path.join(root, 'new'), out: api, base: path.join(root, 'base.safetensors') }, { fuseAligned: 0.5 });
    expect(fs.readFileSync(path.join(root, 'full', 'model.safetensors')).equals(fs.readFileSync(path.join(api, 'model.safetensors')))).toBe(true);
    expect(readSafetensorsHeaderSync(path.join(root, 'full', 'model.safetensors')).tensors.map((t) => t.name)).toContain('model.embed_tokens.weight');
    const man = JSON.parse(fs.readFileSync(path.join(root, 'full', 'geoedit-manifest.json'), 'utf8'));
    expect(man.outFormat).toBe('full');
    expect(man.options.fuseAligned).toBe(0.5);

    const ad = await run(runEdit, [...a, '--out', path.join(root, 'adapter'), '--json']);
    expect(ad.code).toBe(0);
    const j = JSON.parse(ad.out);
    expect(j.outFormat).toBe('adapter');
    expect(fs.existsSync(path.join(root, 'adapter', 'adapter_config.json'))).toBe(true);
    // Default options: c_old = 0 on every row, so only the new block is written (rank 4).
    expect(JSON.parse(fs.readFileSync(path.join(root, 'adapter', 'adapter_config.json'), 'utf8')).r).toBe(4);

    const an = await run(runAnalyze, [...a, '--json', '--report', path.join(root, 'r.html')]);
    expect(an.code).toBe(0);
    expect(JSON.parse(an.out).totals.rows).toBe(40);
    const html = fs.readFileSync(path.join(root, 'r.html'), 'utf8');
    expect(html).toContain('model.layers.0.mlp.down_proj.weight');
    expect(html).toContain('geoedit analyze report');
  });

  it('errors: exit 1 for usage, 2 for bad input, with the code and the reason', async () => {
    const root = await setup();
    const a = ['--old-adapter', path.join(root, 'old'), '--new-adapter', path.join(root, 'new')];
    let r = await run(runEdit, ['--old-adapter', path.join(root, 'old'), '--out', path.join(root, 'x')]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('--new-adapter');
    r = await run(runEdit, [...a, '--out', path.join(root, 'x'), '--out-format', 'lora']);
    expect(r.code).toBe(1);
    r = await run(runEdit, [...a, '--out', path.join(root, 'x'), '--include', 'q_proj']);
    expect(r.err).toContain('--include');
    expect(r.code).toBe(1);
    r = await run(runEdit, [...a, '--out', path.join(root, 'x'), '--cuda-memory-limit', '1GiB']); // the LoRA path runs on the CPU
    expect(r.err).toContain('--cuda-memory-limit');
    expect(r.code).toBe(1);
    r = await run(runEdit, [...a, '--out', path.join(root, 'x'), '--density', '0.5', '--out-format', 'adapter']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('ERR_UNSUPPORTED');
    r = await run(runEdit, [...a, '--out', path.join(root, 'x'), '--out-format', 'full']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('base');
    fs.writeFileSync(path.join(root, 'old', 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, use_dora: true }));
    r = await run(runAnalyze, a);
    expect(r.code).toBe(2);
    expect(r.err).toContain('use_dora');
    expect(fs.existsSync(path.join(root, 'x'))).toBe(false);
  });
});
