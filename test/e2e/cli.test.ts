// The `geoedit` CLI, run as a child process over the built package (npm run build:ts first).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from '../support/paths';
import { EDIT_ALL_FLAGS } from '../../lib/cli/edit';
import { ANALYZE_FLAGS } from '../../lib/cli/analyze';
import { DEFAULTS } from '../../lib/options';
import { writeSafetensors } from '../../lib/safetensors';
import { cudaStatus } from '../../lib/backend';
import { leftovers, llamaSpecs, makeTriple, tensorsFor, writeCheckpoint } from '../support/ckpt';
import { linearModule, writeAdapter } from '../support/lora';
import { rnd, rng as loraRng } from '../support/prng';
import { waitForPhase } from '../support/phase-child';

const ROOT = REPO;
const BIN = path.join(ROOT, 'bin', 'geoedit.js');
const EMU = path.join(ROOT, 'build', 'Release', 'emu', 'geoedit_cuda.so'); // the plugin's CPU emulator (test/gpu/cuda-emu.test.ts)
let dir: string;
let tri: { base: string; old: string; new: string };
const specs = llamaSpecs(2);

function run(args: string[], env: NodeJS.ProcessEnv = process.env): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir, timeout: 60_000, env });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  // npm run build:ts, without npm (the GPU device check carries node alone).
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'pipe' });
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'write-esm.js')], { cwd: ROOT, stdio: 'pipe' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-cli-'));
  tri = await makeTriple(path.join(dir, 'in'), specs);
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('geoedit CLI', () => {
  it('--version prints the package version; no command is a usage error', () => {
    const v = run(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    const none = run([]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/Commands:[\s\S]*edit[\s\S]*analyze[\s\S]*inspect/);
    expect(run(['frobnicate']).code).toBe(1);
  });

  it('--help for each command lists every option with its default', () => {
    for (const [cmd, flags] of [['edit', EDIT_ALL_FLAGS], ['analyze', ANALYZE_FLAGS]] as const) {
      const h = run([cmd, '--help']);
      expect(h.code).toBe(0);
      for (const f of flags) {
        expect(h.stdout, `${cmd} --${f.name}`).toContain(`--${f.name}`);
        if (f.default) expect(h.stdout).toContain(`(default: ${f.default})`);
      }
      for (const k of ['kappa', 'keepOrthogonal', 'scale', 'density', 'temperature', 'lambda'] as const) {
        const flag = k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
        expect(h.stdout).toMatch(new RegExp(`--${flag} \\S+ .*\\(default: ${DEFAULTS[k]}\\)`));
      }
    }
    const i = run(['inspect', '--help']);
    expect(i.code).toBe(0);
    expect(i.stdout).toContain('--json');
  });

  it('edit writes the output, manifest and report; --json prints the summary', () => {
    const out = path.join(dir, 'out1');
    const r = run(['edit', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--out', out, '--kappa', '1', '--report', path.join(dir, 'r.html'), '--json']);
    expect(r.stderr).toMatch(/edit: \d+%/); // plain progress lines when not on a TTY
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.parameters.kappa).toBe(1);
    expect(j.totals.edited).toBe(specs.length - 2);
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'geoedit-manifest.json'), 'utf8')).parameters.kappa).toBe(1);
    expect(fs.readFileSync(path.join(dir, 'r.html'), 'utf8')).toMatch(/^<!DOCTYPE html>[\s\S]*<svg/);
    // An existing target is refused (bad input: 2) and left untouched; --force replaces it.
    const again = run(['edit', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--out', out, '--quiet']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('ERR_OUTPUT_EXISTS');
    expect(run(['edit', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--out', out, '--quiet', '--force', '--strategy', 'task-arithmetic']).code).toBe(0);
  });

  it('analyze and inspect', () => {
    const a = run(['analyze', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--quiet']);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/analysis only: no weights written[\s\S]*orthogonal [\d.]+%, synergy [\d.]+%, conflict [\d.]+%/);
    const i = run(['inspect', tri.base]);
    expect(i.code).toBe(0);
    expect(i.stdout).toContain('model.layers.1.mlp.down_proj.weight');
    expect(i.stdout).toMatch(/BF16\s+\[16, 32\]\s+rows\s+1024/); // the layout column (issue 13)
    expect(i.stdout).toMatch(/model family: not known \(model_type llama\)/);
    const ij = JSON.parse(run(['inspect', tri.base, '--json']).stdout);
    expect(ij.tensors.length).toBe(specs.length);
  });

  it('--backend and --cuda-memory-limit: a bad value is a usage error; cuda without a GPU exits 3 naming the reason', () => {
    const io = ['--base', tri.base, '--old', tri.old, '--new', tri.new];
    const env = { ...process.env };
    delete env.GEOEDIT_BACKEND;
    for (const bad of [['--backend', 'gpu'], ['--cuda-memory-limit', 'lots'], ['--cuda-memory-limit', '-5']]) {
      const r = run(['analyze', ...io, '--quiet', ...bad], env);
      expect(r.code, bad.join(' ')).toBe(1);
      expect(r.stderr).toContain(bad[0]!.slice(2) === 'backend' ? 'backend' : '--cuda-memory-limit');
    }
    const st = cudaStatus();
    if (!st.available) {
      const r = run(['edit', ...io, '--out', path.join(dir, 'o-cuda'), '--quiet', '--backend', 'cuda'], env);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('ERR_CUDA_UNAVAILABLE');
      expect(r.stderr).toContain(st.reason);
      expect(fs.existsSync(path.join(dir, 'o-cuda'))).toBe(false);
      const a = run(['analyze', ...io, '--quiet', '--json', '--backend', 'auto'], env);
      expect(a.code).toBe(0);
      expect(JSON.parse(a.stdout).backend).toMatchObject({ name: 'cpu', device: null, requested: 'auto' });
    }
  });

  it.skipIf(!fs.existsSync(EMU))('--backend cuda runs edit on the GPU (the CPU emulator of the plugin here) and --cuda-memory-limit reaches it', () => {
    const io = ['--base', tri.base, '--old', tri.old, '--new', tri.new];
    const env: NodeJS.ProcessEnv = { ...process.env, GEOEDIT_CUDA_PLUGIN: EMU, GEOEDIT_CUDA_SKIP_DRIVER_CHECK: '1' };
    delete env.GEOEDIT_BACKEND;
    const out = path.join(dir, 'o-emu');
    const r = run(['edit', ...io, '--out', out, '--quiet', '--json', '--backend', 'cuda', '--cuda-memory-limit', '64KiB'], env);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.backend.name).toBe('cuda');
    expect(j.backend.device).toMatch(/emulator/);
    expect(j.totals.edited).toBe(specs.length - 2);
    const plain = run(['edit', ...io, '--out', path.join(dir, 'o-emu-text'), '--quiet', '--backend', 'cuda'], env);
    expect(plain.stdout).toMatch(/GB\/s of input\) on the GPU \(.*emulator.*\)/);
    // Too small for one row: refused by the device code, naming the tensor (a usage error: exit 1).
    const tiny = run(['edit', ...io, '--out', path.join(dir, 'o-emu-tiny'), '--quiet', '--backend', 'cuda', '--cuda-memory-limit', '1KiB'], env);
    expect(tiny.code).toBe(1);
    expect(tiny.stderr).toMatch(/ERR_INVALID_OPTION: cudaMemoryLimit 1024 bytes is too small.*tensor '/);
    expect(fs.existsSync(path.join(dir, 'o-emu-tiny'))).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  });

  it('usage errors exit 1', () => {
    expect(run(['edit', '--base', tri.base]).code).toBe(1);
    expect(run(['edit', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--out', 'x', '--kappa', 'abc']).code).toBe(1);
    expect(run(['edit', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--out', 'x', '--kappa', '-2']).code).toBe(1);
    expect(run(['edit', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--out', 'x', '--strategy', 'magic']).code).toBe(1);
    expect(run(['edit', '--what']).code).toBe(1);
    expect(run(['inspect']).code).toBe(1);
    expect(fs.existsSync(path.join(dir, 'x'))).toBe(false);
  });
});

// ---- the bad-input corpus: exit code 2, a message naming file and tensor, no output ---------------

function header(obj: unknown): Buffer {
  const h = Buffer.from(JSON.stringify(obj));
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([b, h]);
}

describe('geoedit edit: bad-input corpus', () => {
  const good = (p: string) => fs.readFileSync(path.join(p, 'model.safetensors'));
  const cases: Array<{ name: string; make: (d: string) => Promise<{ base?: string; old?: string; new?: string }>; expect: RegExp[] }> = [
    {
      name: 'truncated file',
      make: async (d) => { const b = fs.readFileSync(path.join(tri.old, 'model.safetensors')); fs.writeFileSync(path.join(d, 't.safetensors'), b.subarray(0, b.length - 100)); return { old: path.join(d, 't.safetensors') }; },
      expect: [/t\.safetensors/, /the data section holds/, /last tensor '/],
    },
    {
      name: 'header length past the end',
      make: async (d) => { const b = Buffer.from(good(tri.old)); b.writeBigUInt64LE(BigInt(b.length), 0); fs.writeFileSync(path.join(d, 'h.safetensors'), b); return { old: path.join(d, 'h.safetensors') }; },
      expect: [/h\.safetensors/, /runs past the end/],
    },
    {
      name: 'header over 100 MB',
      make: async (d) => { const b = Buffer.from(good(tri.old)); b.writeBigUInt64LE(200_000_000n, 0); fs.writeFileSync(path.join(d, 'big.safetensors'), b); return { old: path.join(d, 'big.safetensors') }; },
      expect: [/big\.safetensors/, /100 MB/],
    },
    {
      name: 'non-JSON header',
      make: async (d) => { fs.writeFileSync(path.join(d, 'j.safetensors'), Buffer.concat([header({}).subarray(0, 8).fill(0).fill(5, 0, 1), Buffer.from('{oops}')])); return { new: path.join(d, 'j.safetensors') }; },
      expect: [/j\.safetensors/, /not valid JSON/],
    },
    {
      name: 'overlapping offsets',
      make: async (d) => { fs.writeFileSync(path.join(d, 'o.safetensors'), Buffer.concat([header({ 'model.a': { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, 'model.b': { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), Buffer.alloc(12)])); return { new: path.join(d, 'o.safetensors') }; },
      expect: [/o\.safetensors/, /tensor 'model\.b'/, /overlap/],
    },
    {
      name: 'gapped offsets',
      make: async (d) => { fs.writeFileSync(path.join(d, 'g.safetensors'), Buffer.concat([header({ 'model.a': { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, 'model.b': { dtype: 'F32', shape: [1], data_offsets: [12, 16] } }), Buffer.alloc(16)])); return { base: path.join(d, 'g.safetensors') }; },
      expect: [/g\.safetensors/, /tensor 'model\.b'/, /gap/],
    },
    {
      name: 'unknown dtype',
      make: async (d) => { fs.writeFileSync(path.join(d, 'u.safetensors'), Buffer.concat([header({ 'model.w': { dtype: 'Q4', shape: [2], data_offsets: [0, 2] } }), Buffer.alloc(2)])); return { old: path.join(d, 'u.safetensors') }; },
      expect: [/u\.safetensors/, /tensor 'model\.w'/, /unknown dtype 'Q4'/],
    },
    {
      name: 'bytes != shape x dtype',
      make: async (d) => { fs.writeFileSync(path.join(d, 'n.safetensors'), Buffer.concat([header({ 'model.w': { dtype: 'BF16', shape: [3, 3], data_offsets: [0, 16] } }), Buffer.alloc(16)])); return { old: path.join(d, 'n.safetensors') }; },
      expect: [/n\.safetensors/, /tensor 'model\.w'/, /needs 18/],
    },
    {
      name: 'index entry ../escape.safetensors',
      make: async (d) => {
        await writeCheckpoint(path.join(d, 'ix'), tensorsFor(specs, 'old'), 2, false);
        const f = path.join(d, 'ix', 'model.safetensors.index.json');
        const j = JSON.parse(fs.readFileSync(f, 'utf8'));
        j.weight_map['model.layers.0.mlp.up_proj.weight'] = '../escape.safetensors';
        fs.copyFileSync(path.join(d, 'ix', 'model-00001-of-00002.safetensors'), path.join(d, 'escape.safetensors'));
        fs.writeFileSync(f, JSON.stringify(j));
        return { old: path.join(d, 'ix') };
      },
      expect: [/model\.safetensors\.index\.json/, /'\.\.\/escape\.safetensors'/, /model\.layers\.0\.mlp\.up_proj\.weight/, /leaves the directory/],
    },
    {
      name: 'missing shard',
      make: async (d) => {
        await writeCheckpoint(path.join(d, 'ms'), tensorsFor(specs, 'new'), 3, false);
        fs.rmSync(path.join(d, 'ms', 'model-00002-of-00003.safetensors'));
        return { new: path.join(d, 'ms') };
      },
      expect: [/model-00002-of-00003\.safetensors/, /is missing/, /tensor '/],
    },
    {
      name: 'NaN in a tensor',
      make: async (d) => {
        const t = tensorsFor(specs, 'old');
        (t.find((x) => x.name === 'model.layers.1.self_attn.v_proj.weight')!.data as Uint16Array)[16 * 9 + 2] = 0x7fc0;
        await writeCheckpoint(path.join(d, 'nan'), t, 1, false);
        return { old: path.join(d, 'nan') };
      },
      expect: [/ERR_NON_FINITE/, /tensor 'model\.layers\.1\.self_attn\.v_proj\.weight'/, /old weights at row 9, column 2/],
    },
    {
      name: 'shapes differ between base and old',
      make: async (d) => {
        const other = specs.map((s) => (s.name === 'model.layers.0.mlp.down_proj.weight' ? { ...s, shape: [32, 16] } : s));
        const t = tensorsFor(other, 'old');
        await writeCheckpoint(path.join(d, 'shape'), t, 1, false);
        return { old: path.join(d, 'shape') };
      },
      expect: [/ERR_SHAPE_MISMATCH/, /'model\.layers\.0\.mlp\.down_proj\.weight' \(base \[16, 32\], old \[32, 16\]\)/],
    },
  ];
  for (const c of cases) {
    it(`${c.name}: exit 2, named, no output directory`, async () => {
      const d = fs.mkdtempSync(path.join(dir, 'case-'));
      const io = { ...tri, ...(await c.make(d)) };
      const out = path.join(d, 'out');
      const r = run(['edit', '--base', io.base, '--old', io.old, '--new', io.new, '--out', out, '--quiet']);
      expect(r.code, r.stderr).toBe(2);
      for (const re of c.expect) expect(r.stderr).toMatch(re);
      expect(fs.existsSync(out)).toBe(false);
      expect(leftovers(d)).toEqual([]);
    });
  }
});

describe('geoedit edit: signals', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('%s mid-run leaves nothing at the target and no temporary directory', async (sig) => {
    const d = path.join(dir, `sig-${sig}`);
    // Small: the child stops itself in the data phase (no race against a fast edit).
    const big = Array.from({ length: 4 }, (_, i) => ({ name: `model.layers.${i}.mlp.up_proj.weight`, dtype: 'F32' as const, shape: [64, 128] }));
    for (const [role, seed] of [['base', 1], ['old', 2], ['new', 3]] as const) {
      fs.mkdirSync(path.join(d, role), { recursive: true });
      await writeSafetensors(path.join(d, role, 'model.safetensors'), big.map((s, k) => ({ ...s, data: rnd(64 * 128, seed * 100 + k) })));
    }
    const out = path.join(d, 'out');
    await expectSignalLeavesNothing(d, out, [BIN, 'edit', '--base', path.join(d, 'base'), '--old', path.join(d, 'old'), '--new', path.join(d, 'new'), '--out', out, '--threads', '1', '--density', '0.3'], sig);
    expect(leftovers(d)).toEqual([]);
  });
});

describe('geoedit edit --old-adapter/--new-adapter: signals', () => {
  it('SIGTERM mid-run leaves no adapter directory and no temporary directory', async () => {
    const d = path.join(dir, 'sig-adapter');
    const names = Array.from({ length: 4 }, (_, i) => `model.layers.${i}.mlp.up_proj`);
    const mk = (seed: number) => names.map((n, i) => linearModule(loraRng(seed + i), n, 64, 64, 16));
    await writeAdapter(path.join(d, 'old'), { r: 16, lora_alpha: 32 }, mk(1));
    await writeAdapter(path.join(d, 'new'), { r: 16, lora_alpha: 32 }, mk(100));
    const out = path.join(d, 'out');
    await expectSignalLeavesNothing(d, out, [BIN, 'edit', '--old-adapter', path.join(d, 'old'), '--new-adapter', path.join(d, 'new'), '--out', out, '--keep-zero-blocks'], 'SIGTERM', 'seal');
  });
});

/**
 * Runs the CLI stopped at a phase marker of its job (test/support/phase-child.ts: it stops itself
 * there, GEOEDIT_TEST_STOP_AT), where its temporary directory exists; signals it: the process ends
 * by the signal, nothing at the target, no temporary directory. No polling and no time limit: the
 * signal surely arrives mid-run however fast the kernels or loaded the machine.
 */
async function expectSignalLeavesNothing(d: string, out: string, argv: string[], sig: NodeJS.Signals, phase: 'data' | 'seal' = 'data'): Promise<void> {
  let sawTemp = false;
  const r = await waitForPhase(argv.slice(1), phase, sig, dir, argv[0], () => { sawTemp = fs.readdirSync(d).some((n) => n.includes('geoedit') && n.startsWith('.')); });
  expect(r.reached, r.stderr).toBe(true);
  expect(sawTemp).toBe(true);
  expect(r.signal, r.stderr).toBe(sig);
  expect(fs.existsSync(out)).toBe(false);
  expect(fs.readdirSync(d).filter((n) => n.startsWith('.'))).toEqual([]);
}

describe('geoedit edit --old-adapter/--new-adapter --base (merged output): signals', () => {
  it('SIGINT mid-run leaves no output directory and no temporary directory', async () => {
    const d = path.join(dir, 'sig-merge');
    const names = Array.from({ length: 4 }, (_, i) => `model.layers.${i}.mlp.up_proj`);
    const mk = (seed: number) => names.map((n, i) => linearModule(loraRng(seed + i), n, 64, 64, 8));
    await writeAdapter(path.join(d, 'old'), { r: 8, lora_alpha: 16 }, mk(1));
    await writeAdapter(path.join(d, 'new'), { r: 8, lora_alpha: 16 }, mk(100));
    await writeSafetensors(path.join(d, 'base.safetensors'), names.map((n, k) => ({ name: `${n}.weight`, dtype: 'F32', shape: [64, 64], data: rnd(64 * 64, 500 + k) })));
    const out = path.join(d, 'out');
    await expectSignalLeavesNothing(d, out, [BIN, 'edit', '--old-adapter', path.join(d, 'old'), '--new-adapter', path.join(d, 'new'), '--base', path.join(d, 'base.safetensors'), '--out', out, '--out-format', 'full', '--density', '0.5', '--threads', '1'], 'SIGINT');
  });
});
