// The option table drives validation, the CLI flags and the docs: these check that it agrees with
// the core, that each entry point accepts exactly its options, and the one size parser.
import { describe, it, expect, afterEach } from 'vitest';
import {
  OPTIONS, PARAM_SPECS, keysFor, parseSize, resolveParams, sizeBytes, validateOptions, type OptionSpec,
} from '../../lib/options';
import { flagsFor } from '../../lib/cli/flags';
import { resolveCudaMemoryLimit } from '../../lib/backend';
import { loadNative } from '../../lib/native';
import { editLora, analyzeLora } from '../../lib/lora-math';
import { editTensor } from '../../lib/edit';
import { checkLoraOptions } from '../../lib/lora-math';

const f32 = (shape: number[], fill = (i: number) => Math.sin(i + 1)) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'f32' as const, shape, data: Float32Array.from({ length: n }, (_, i) => fill(i)) };
};

describe('the option table', () => {
  it('param entries agree with the core: every default and paper value the binding reports', () => {
    const d = loadNative().defaults() as unknown as Record<string, number> & { paper: Record<string, number> };
    let compared = 0;
    for (const s of PARAM_SPECS) {
      if (typeof d[s.name] === 'number') { expect(s.default, s.name).toBe(d[s.name]); compared++; }
      if (s.paper !== undefined) expect(s.paper, `paper.${s.name}`).toBe(d.paper[s.name]);
    }
    expect(compared).toBeGreaterThanOrEqual(8);
    for (const k of Object.keys(d.paper)) expect(PARAM_SPECS.find((s) => s.name === k)?.paper, `paper.${k} is in the table`).toBe(d.paper[k]);
  });

  it('every entry names its entry points, a doc and a default in words; flags are unique', () => {
    const flags = new Set<string>();
    for (const o of OPTIONS as readonly OptionSpec[]) {
      expect(o.doc.length, o.name || o.cli?.flag).toBeGreaterThan(3);
      expect(typeof o.defaultDoc).toBe('string');
      if (!o.name) expect(o.cli, 'a CLI-only entry has a flag').toBeDefined();
      if (o.cli) { expect(flags.has(o.cli.flag), o.cli.flag).toBe(false); flags.add(o.cli.flag); }
      if (o.type === 'enum') expect(o.values!.length).toBeGreaterThan(0);
    }
  });

  it('entry points accept what they accepted before the table (no option gained or lost)', () => {
    const edit = ['strategy', 'preset', 'scale', 'kappa', 'bandDegrees', 'keepOrthogonal', 'fuseAligned', 'forgetConflicting',
      'lambda', 'density', 'temperature', 'importanceOld', 'importanceNew', 'coefficients', 'outDtype', 'out', 'threads',
      'backend', 'allowNonFinite', 'allowNonFiniteOutput', 'cudaMemoryLimit'];
    // Gained since: preserve (issue 12) on the tensor, LoRA, checkpoint and adapter entry points;
    // issue 13 added `layout` and `coefficients` (strategy 'custom' from a safetensors file) to checkpoints;
    // issue 16 `part` to checkpoints and adapters (merged output), `maxShardSize` to adapters, and assembleParts' options.
    expect([...keysFor('tensor')].sort()).toEqual([...edit, 'preserve'].sort());
    expect([...keysFor('lora')].sort()).toEqual([...edit.filter((k) => !['importanceOld', 'importanceNew', 'cudaMemoryLimit'].includes(k)), 'preserve'].sort());
    expect([...keysFor('checkpoint')].sort()).toEqual([...edit.filter((k) => k !== 'out'), 'preserve',
      'include', 'exclude', 'maxShardSize', 'report', 'force', 'hash', 'copyFiles', 'onProgress', 'signal', 'blockBytes', 'layout', 'part'].sort());
    expect([...keysFor('adapters')].sort()).toEqual([...keysFor('lora'), 'outFormat', 'force', 'perRow', 'blockRows', 'keepZeroBlocks', 'copyFiles', 'report', 'part', 'maxShardSize'].sort());
    expect([...keysFor('assemble')].sort()).toEqual(['force', 'move', 'report', 'verify']);
  });

  it('validates types and ranges from the table, naming the option', () => {
    expect(() => validateOptions({ density: 0 }, 'tensor', 'x')).not.toThrow(); // params: resolveParams checks them
    expect(() => resolveParams({ density: 0 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining("'density'") }));
    expect(() => resolveParams({ bandDegrees: 91 })).toThrow(/a number in \[0, 90\]/);
    expect(() => resolveParams({ kappa: '1' })).toThrow(TypeError);
    expect(() => resolveParams({ strategy: 'nope' })).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_STRATEGY' }));
    expect(() => validateOptions({ blockBytes: 0 }, 'checkpoint', 'x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => validateOptions({ include: [''] }, 'checkpoint', 'x')).toThrow(TypeError);
    expect(() => validateOptions({ outDtype: 'f8' }, 'tensor', 'x')).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_DTYPE' }));
    expect(() => validateOptions({ include: 'a' }, 'tensor', 'editTensor')).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_OPTION' }));
    expect(resolveParams({ preset: 'paper', kappa: 3 })).toMatchObject({ kappa: 3, keepOrthogonal: 0, fuseAligned: 1, forgetConflicting: 1 });
  });

  it('LoRA options are checked from the table with no tensor at all', () => {
    expect(() => checkLoraOptions({ density: 2 }, 'editAdapters')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => checkLoraOptions({ cudaMemoryLimit: 1 }, 'editAdapters')).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_OPTION' }));
    expect(checkLoraOptions({ kappa: 1 }, 'editAdapters').kappa).toBe(1);
  });

  it('custom coefficients must be finite on every path (editTensor and the LoRA API)', async () => {
    const t = f32([3, 4]);
    const bad = { cNew: new Float32Array([1, NaN, 1]), cOld: new Float32Array(3) };
    await expect(editTensor({ base: t, old: f32([3, 4], (i) => i), new: f32([3, 4], (i) => -i) }, { strategy: 'custom', coefficients: bad }))
      .rejects.toMatchObject({ code: 'ERR_COEFFICIENTS', details: { row: 1 } });
    const side = { A: f32([2, 4]), B: f32([3, 2]), scale: 1 };
    await expect(editLora({ old: side, new: side }, { strategy: 'custom', coefficients: bad })).rejects.toMatchObject({ code: 'ERR_COEFFICIENTS', details: { row: 1 } });
    await expect(analyzeLora({ old: side, new: side }, { strategy: 'custom', coefficients: { cNew: new Float32Array(3), cOld: new Float32Array([0, 0, Infinity]) } }))
      .rejects.toMatchObject({ code: 'ERR_COEFFICIENTS' });
  });

  it('the CLI flags are the table: every flag with an option sets that option', () => {
    const edit = flagsFor('edit');
    for (const f of edit) {
      const o = (OPTIONS as readonly OptionSpec[]).find((x) => x.cli?.flag === f.name)!;
      // CLI-only entries that fill a key of an API option (--preserve-rho: preserve.rho) name it in cli.of.
      expect(f.key ?? '', f.name).toBe(o.name || o.cli!.of || '');
    }
    expect(edit.map((f) => f.name)).toContain('kappa');
    expect(flagsFor('analyze').map((f) => f.name)).not.toContain('out-dtype');
  });
});

describe('sizes: one parser', () => {
  const saved = process.env.GEOEDIT_CUDA_MEMORY;
  afterEach(() => {
    if (saved === undefined) delete process.env.GEOEDIT_CUDA_MEMORY;
    else process.env.GEOEDIT_CUDA_MEMORY = saved;
  });

  it('decimal units are powers of 1000, binary units powers of 1024, bare letters decimal', () => {
    expect(parseSize('2GB')).toBe(2e9);
    expect(parseSize('2G')).toBe(2e9);
    expect(parseSize('2gb')).toBe(2e9);
    expect(parseSize('2GiB')).toBe(2 * 2 ** 30);
    expect(parseSize('2Gi')).toBe(2 * 2 ** 30);
    expect(parseSize('512MiB')).toBe(512 * 2 ** 20);
    expect(parseSize('1.5KB')).toBe(1500);
    expect(parseSize(' 7 ')).toBe(7);
    expect(parseSize(4096)).toBe(4096);
    for (const bad of ['lots', '', '2XB', '-1GB', 0, -5, 1.5, '0']) expect(sizeBytes(bad), String(bad)).toBeUndefined();
    expect(() => parseSize('lots', 'maxShardSize')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining("'maxShardSize'") }));
  });

  it('$GEOEDIT_CUDA_MEMORY goes through the same parser ("2GB" = 2e9, as --cuda-memory-limit 2GB), only for CUDA calls', () => {
    process.env.GEOEDIT_CUDA_MEMORY = '2GB';
    expect(resolveCudaMemoryLimit(undefined, 'cuda')).toBe(2e9);
    process.env.GEOEDIT_CUDA_MEMORY = '2GiB';
    expect(resolveCudaMemoryLimit(undefined, 'cuda')).toBe(2 ** 31);
    expect(resolveCudaMemoryLimit(undefined, 'cpu')).toBe(0);
    expect(resolveCudaMemoryLimit(1234, 'cuda')).toBe(1234);
    process.env.GEOEDIT_CUDA_MEMORY = 'lots';
    expect(() => resolveCudaMemoryLimit(undefined, 'cuda')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('$GEOEDIT_CUDA_MEMORY') }));
  });
});
