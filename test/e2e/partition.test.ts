// Partitioned edits (issue 16, docs/partitioned.md): `geoedit edit --part K/N` run as N concurrent
// CLI processes, then `geoedit assemble`, gives the same bytes as one `geoedit edit`; every bad part
// is refused with a coded error naming it, nothing appears at the target, the parts stay intact.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from '../support/paths';
import { llamaSpecs, makeTriple, tensorsFor, writeCheckpoint } from '../support/ckpt';
import { fingerprint } from '../hostile/support';
import { writeMergeFixture } from '../support/lora';
import { writeSafetensors } from '../../lib/safetensors';
import { assembleParts } from '../../lib/partition/assemble';
import { editAdapters } from '../../lib/lora';
import { loadManifest, resealManifestFile, MANIFEST_FILE } from '../../lib/governance/lineage';

const BIN = path.join(REPO, 'bin', 'geoedit.js');
// Off: every run computes every hash (a shared cache would make sha256Source differ between runs).
const ENV = { ...process.env, GEOEDIT_HASH_CACHE: 'off' };
const SHARD = '1500'; // bytes: the small fixture's output becomes 12 shards
let dir: string;
let tri: { base: string; old: string; new: string };
let ref: string;

function cli(args: string[], env: NodeJS.ProcessEnv = ENV): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir, timeout: 60_000, env });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The CLI as a child process, not waited for (parts run side by side). */
function cliAsync(args: string[], env: NodeJS.ProcessEnv = ENV): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

const editArgs = (out: string, more: string[] = []) => ['edit', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--out', out, '--max-shard-size', SHARD, '--quiet', ...more];

/** Runs the N parts concurrently (separate processes); returns their directories. */
async function runParts(tag: string, n: number, more: string[] = []): Promise<string[]> {
  const root = path.join(dir, tag);
  fs.mkdirSync(root, { recursive: true });
  const dirs = Array.from({ length: n }, (_, k) => path.join(root, `part-${k + 1}`));
  const res = await Promise.all(dirs.map((d, k) => cliAsync(editArgs(d, ['--part', `${k + 1}/${n}`, ...more]))));
  res.forEach((r, k) => expect(r.code, `part ${k + 1}/${n}: ${r.stderr}`).toBe(0));
  return dirs;
}

/** Leaf paths (a.b.c) where two JSON values differ. */
function diffPaths(a: unknown, b: unknown, at = ''): string[] {
  if (a === b) return [];
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
    return [...keys].flatMap((k) => diffPaths((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k));
  }
  return [at];
}

const manifestOf = (d: string) => JSON.parse(fs.readFileSync(path.join(d, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;

/** Every output file but the manifest is byte-identical; the manifests differ only where a partitioned run must. */
function expectSameOutput(asm: string, single: string, allowed: RegExp): void {
  const names = (d: string) => fs.readdirSync(d).sort();
  expect(names(asm)).toEqual(names(single));
  for (const n of names(single)) {
    if (n === MANIFEST_FILE) continue;
    expect(fs.readFileSync(path.join(asm, n)).equals(fs.readFileSync(path.join(single, n))), n).toBe(true);
  }
  const a = manifestOf(asm), s = manifestOf(single);
  const diff = diffPaths(a, s);
  const unexpected = diff.filter((p) => !allowed.test(p));
  expect(unexpected, 'manifest fields that differ from the single edit').toEqual([]);
  expect(diff).toContain('partition');
  expect(s.partition).toBeUndefined();
}

// What a partitioned run changes in the checkpoint manifest: when and how long (createdAt, timings), the
// id (a hash over everything), the output path, the input bytes hashed (a file two parts read is hashed
// by both), and the part records.
const CKPT_DIFF = /^(id|createdAt|timings\.[a-zA-Z]+|output\.path|hashing\.bytesHashed|partition)$/;

/** Every input is hashed by some part, and a part records a hash for exactly the files it hashed. */
function expectHashedByReaders(parts: string[], inputsOf: (m: Record<string, unknown>) => Array<{ path: string; sha256: string | null }>): void {
  const ms = parts.map(manifestOf) as Array<Record<string, unknown> & { partition: { hashed: string[] } }>;
  const all = inputsOf(ms[0]!).map((f) => f.path);
  const hashed = new Set(ms.flatMap((m) => m.partition.hashed));
  expect([...hashed].sort()).toEqual([...all].sort());
  for (const m of ms) expect(inputsOf(m).filter((f) => f.sha256 !== null).map((f) => f.path).sort()).toEqual([...m.partition.hashed].sort());
}
const ckptInputs = (m: Record<string, unknown>) => Object.values(m.inputs as Record<string, { files: Array<{ path: string; sha256: string | null }> }>).flatMap((r) => r.files);

beforeAll(async () => {
  execFileSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'pipe' });
  execFileSync(process.execPath, [path.join(REPO, 'scripts', 'write-esm.js')], { cwd: REPO, stdio: 'pipe' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-part-'));
  // Shard boundaries differ between base (3 files), old (4) and new (2).
  tri = await makeTriple(path.join(dir, 'in'), llamaSpecs(3), [3, 4, 2]);
  ref = path.join(dir, 'single');
  const r = cli(editArgs(ref));
  expect(r.code, r.stderr).toBe(0);
}, 120_000);
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('partitioned checkpoint edit', () => {
  let three: string[];

  it.each([3, 1, 2, 7])('N = %i: concurrent parts, assembled, give the bytes of one edit', async (n) => {
    const parts = await runParts(`n${n}`, n);
    if (n === 3) three = parts;
    const shards = fs.readdirSync(ref).filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThanOrEqual(7);
    // Parts never write the same file, and together write every shard.
    const written = parts.flatMap((d) => fs.readdirSync(d).filter((f) => f.endsWith('.safetensors')));
    expect(new Set(written).size).toBe(written.length);
    expect([...written].sort()).toEqual([...shards].sort());
    for (const d of parts) expect(fs.existsSync(path.join(d, 'model.safetensors.index.json'))).toBe(false);
    const out = path.join(dir, `asm-${n}`);
    const before = parts.map(fingerprint);
    const r = cli(['assemble', '--out', out, '--parts', ...parts]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/0 copied \(0 B copied\)/);
    expectSameOutput(out, ref, CKPT_DIFF);
    expectHashedByReaders(parts, ckptInputs);
    if (n === 7) {
      // more parts than base shards: a base shard is read, and hashed, by two parts
      const counts = new Map<string, number>();
      for (const d of parts) for (const f of (manifestOf(d) as { partition: { hashed: string[] } }).partition.hashed) counts.set(f, (counts.get(f) ?? 0) + 1);
      expect(Math.max(...counts.values())).toBeGreaterThanOrEqual(2);
    }
    expect(parts.map(fingerprint)).toEqual(before); // parts intact (hard links: the same inodes)
    const m = manifestOf(out) as { partition: { count: number; parts: Array<{ index: number; timings: { totalMs: number } }>; assemble: { filesLinked: number; bytesCopied: number } } };
    expect(m.partition.count).toBe(n);
    expect(m.partition.parts.map((p) => p.index)).toEqual(Array.from({ length: n }, (_, k) => k + 1));
    expect(m.partition.assemble.bytesCopied).toBe(0);
    expect(m.partition.assemble.filesLinked).toBe(written.length + 2); // + config.json, tokenizer.json (part 1)
    const shard = path.join(out, shards[0]!);
    expect(fs.statSync(shard).nlink).toBe(2);
    // The output checks as any edit output does.
    const v = cli(['verify', out]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  }, 120_000);

  it('--part auto/N takes the index from JOB_COMPLETION_INDEX (0-based), and names it', async () => {
    const out = path.join(dir, 'auto-2');
    const r = cli(editArgs(out, ['--part', 'auto/3']), { ...ENV, JOB_COMPLETION_INDEX: '1' });
    expect(r.code, r.stderr).toBe(0);
    const m = manifestOf(out) as { partition: { index: number; source: string }; outputFiles: Array<{ name: string; sha256: string }> };
    expect(m.partition).toMatchObject({ index: 2, source: 'JOB_COMPLETION_INDEX' });
    // The same files as part 2 given as 2/3.
    const want = manifestOf(three[1]!) as typeof m;
    expect(m.outputFiles).toEqual(want.outputFiles);
    const none = cli(editArgs(path.join(dir, 'auto-x'), ['--part', 'auto/3']), { ...ENV, JOB_COMPLETION_INDEX: '', SLURM_ARRAY_TASK_ID: '', AWS_BATCH_JOB_ARRAY_INDEX: '' });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/ERR_PART_INDEX.*none of JOB_COMPLETION_INDEX/);
    const out3 = cli(editArgs(path.join(dir, 'auto-y'), ['--part', 'auto/3']), { ...ENV, JOB_COMPLETION_INDEX: '3' });
    expect(out3.stderr).toMatch(/ERR_PART_INDEX.*outside 1\.\.3/);
    expect(fs.existsSync(path.join(dir, 'auto-x')) || fs.existsSync(path.join(dir, 'auto-y'))).toBe(false);
  }, 60_000);

  describe('bad parts: a coded error naming the part, nothing at the target, the parts intact', () => {
    let n = 0;
    /** assembleParts must fail with `code` and a message matching `msg`; nothing appears at the target; the parts are unchanged. */
    async function refused(parts: string[], code: string, msg: RegExp): Promise<void> {
      const out = path.join(dir, `refused-${++n}`);
      const before = parts.map((p) => (fs.existsSync(p) ? fingerprint(p) : null));
      await expect(assembleParts({ parts, out })).rejects.toMatchObject({ code, message: expect.stringMatching(msg) });
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.readdirSync(dir).filter((f) => f.includes(`refused-${n}`))).toEqual([]); // no temp dir, no lock left
      expect(parts.map((p) => (fs.existsSync(p) ? fingerprint(p) : null))).toEqual(before);
    }
    const copyPart = (src: string, tag: string) => { const d = path.join(dir, 'bad', tag); fs.mkdirSync(path.dirname(d), { recursive: true }); fs.cpSync(src, d, { recursive: true }); return d; };

    it('a missing part', async () => {
      await refused([three[0]!, three[2]!], 'ERR_PART_MISSING', /part 2\/3 \(model-000\d\d-of-000\d\d\.safetensors/);
    });
    it('a part given twice, or two copies of one part', async () => {
      await refused([three[0]!, three[1]!, three[1]!, three[2]!], 'ERR_PART_DUPLICATE', new RegExp(`${three[1]!.replace(/[/.]/g, '\\$&')} is given twice`));
      const copy = copyPart(three[1]!, 'dup');
      await refused([...three, copy], 'ERR_PART_DUPLICATE', /part 2\/3 is given twice: .*part-2 and .*bad\/dup/);
    });
    it('a foreign part: other options, other inputs, another part count, another version', async () => {
      const scaled = path.join(dir, 'bad', 'scaled');
      expect(cli(editArgs(scaled, ['--part', '2/3', '--scale', '0.5'])).code).toBe(0);
      await refused([three[0]!, scaled, three[2]!], 'ERR_PART_FOREIGN', /bad\/scaled \(part 2\/3\) is from another job .*parameters \(scale: 0\.5 vs 1\)/);
      // Other inputs: the same shapes and paths, new weights (the new checkpoint rewritten).
      const tri2 = await makeTriple(path.join(dir, 'in2'), llamaSpecs(3), [3, 4, 2]);
      await writeCheckpoint(tri2.new, tensorsFor(llamaSpecs(3), 'new', 0.08), 2, false);
      const other = path.join(dir, 'bad', 'other-inputs');
      expect(cli(['edit', '--base', tri2.base, '--old', tri2.old, '--new', tri2.new, '--out', other, '--max-shard-size', SHARD, '--quiet', '--part', '3/3']).code).toBe(0);
      await refused([three[0]!, three[1]!, other], 'ERR_PART_FOREIGN', /other-inputs \(part 3\/3\) is from another job .*input files/);
      const n2 = path.join(dir, 'n2', 'part-2');
      await refused([three[0]!, three[1]!, three[2]!, n2], 'ERR_PART_FOREIGN', /n2\/part-2 \(part 2\/2\) is from another job .*part count 2 vs 3/);
      // Another geoedit version (a manifest re-sealed as another version would write it).
      const ver = copyPart(three[2]!, 'version');
      const m = loadManifest(ver).manifest as Record<string, any>;
      m.versions.geoedit = '0.0.1';
      m.partition.key = 'f'.repeat(64);
      resealManifestFile(path.join(ver, MANIFEST_FILE), m);
      await refused([three[0]!, three[1]!, ver], 'ERR_PART_FOREIGN', /bad\/version \(part 3\/3\) is from another job .*geoedit version 0\.0\.1/);
    }, 60_000);
    it('a corrupted part: a changed byte, a truncated or missing shard, an edited manifest', async () => {
      const shardOf = (d: string) => fs.readdirSync(d).find((f) => f.endsWith('.safetensors'))!;
      // A part manifest (re-sealed) without the hash of an input no other part hashes (an index file: part 1's alone).
      const unhashed = copyPart(three[0]!, 'unhashed');
      const um = loadManifest(unhashed).manifest as Record<string, any>;
      const idx = Object.values(um.inputs as Record<string, { files: Array<{ path: string; sha256: string | null; sha256Source?: string | null }> }>).flatMap((r) => r.files).find((x) => x.path.endsWith('.index.json'))!;
      expect(idx.sha256).toMatch(/^[0-9a-f]{64}$/);
      idx.sha256 = null;
      idx.sha256Source = null;
      resealManifestFile(path.join(unhashed, MANIFEST_FILE), um);
      await refused([unhashed, three[1]!, three[2]!], 'ERR_PART_CORRUPT', new RegExp(`no part recorded a hash for the input ${idx.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      // Two parts read (and hash) the same base shard: a part whose hash of it differs (re-sealed) is foreign.
      const hashedBy = three.map((d) => new Set((manifestOf(d) as { partition: { hashed: string[] } }).partition.hashed));
      const shared = [...hashedBy[1]!].find((f) => hashedBy[0]!.has(f) || hashedBy[2]!.has(f));
      if (shared) {
        const other = copyPart(three[1]!, 'other-bytes');
        const om = loadManifest(other).manifest as Record<string, any>;
        const rec = Object.values(om.inputs as Record<string, { files: Array<{ path: string; sha256: string | null }> }>).flatMap((r) => r.files).find((x) => x.path === shared)!;
        rec.sha256 = 'e'.repeat(64);
        resealManifestFile(path.join(other, MANIFEST_FILE), om);
        await refused([three[0]!, other, three[2]!], 'ERR_PART_FOREIGN', /changed between the parts/);
      }
      expect(shared, 'a base shard read by two of the three parts').toBeDefined();
      const flipped = copyPart(three[1]!, 'flipped');
      const f = path.join(flipped, shardOf(flipped));
      const b = fs.readFileSync(f);
      b[b.length - 3] ^= 0x40;
      fs.writeFileSync(f, b);
      await refused([three[0]!, flipped, three[2]!], 'ERR_PART_CORRUPT', new RegExp(`bad/flipped \\(part 2/3\\): ${shardOf(flipped)} does not match its manifest`));
      const short = copyPart(three[2]!, 'short');
      fs.truncateSync(path.join(short, shardOf(short)), 100);
      await refused([three[0]!, three[1]!, short], 'ERR_PART_CORRUPT', new RegExp(`bad/short \\(part 3/3\\): ${shardOf(short)} is 100 bytes`));
      const gone = copyPart(three[2]!, 'gone');
      const goneName = shardOf(gone);
      fs.rmSync(path.join(gone, goneName));
      await refused([three[0]!, three[1]!, gone], 'ERR_PART_CORRUPT', new RegExp(`bad/gone \\(part 3/3\\): ${goneName} is missing`));
      const edited = copyPart(three[0]!, 'edited');
      const mf = path.join(edited, MANIFEST_FILE);
      fs.writeFileSync(mf, fs.readFileSync(mf, 'utf8').replace('"edited": ', '"edited": 1'));
      await refused([edited, three[1]!, three[2]!], 'ERR_PART_CORRUPT', /bad\/edited: its manifest does not match its id/);
    });
    it('a directory that is not a part', async () => {
      await refused([three[0]!, ref, three[2]!], 'ERR_NOT_A_PART', /single is a geoedit output of kind 'checkpoint-edit', not a part/);
      await refused([three[0]!, tri.base, three[2]!], 'ERR_NOT_A_PART', /in\/base holds no geoedit-manifest\.json/);
    });
    it('the CLI says the code and exits 2', () => {
      const r = cli(['assemble', '--out', path.join(dir, 'cli-missing'), '--parts', three[0]!, three[1]!]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/ERR_PART_MISSING: 1 of the 3 parts is missing: part 3\/3/);
    });
  });

  it('the target rules of edit: an existing output needs --force; --move removes the parts after the commit', async () => {
    const parts = await runParts('move', 2);
    const out = path.join(dir, 'asm-2'); // written by the N = 2 case
    const r = cli(['assemble', '--out', out, '--parts', ...parts]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/ERR_OUTPUT_EXISTS/);
    const report = path.join(dir, 'move-report.html');
    const f = cli(['assemble', '--out', out, '--force', '--move', '--report', report, '--parts', ...parts]);
    expect(f.code, f.stderr).toBe(0);
    expect(fs.readFileSync(report, 'utf8')).toMatch(/<html[\s\S]*model\.layers\.2\.mlp\.down_proj\.weight/);
    for (const p of parts) expect(fs.existsSync(p)).toBe(false);
    expectSameOutput(out, ref, CKPT_DIFF);
    const first = fs.readdirSync(ref).find((x) => x.endsWith('.safetensors'))!;
    expect(fs.statSync(path.join(out, first)).nlink).toBe(1);
  }, 60_000);

  it('--part with analyze or with --report is refused with a coded error (a plain adapter output: the adapter block below)', async () => {
    const a = cli(['analyze', '--base', tri.base, '--old', tri.old, '--new', tri.new, '--part', '1/2']);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/Unknown option '--part'/);
    const r = cli(editArgs(path.join(dir, 'rep'), ['--part', '1/2', '--report', path.join(dir, 'r.html')]));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_INVALID_OPTION.*'report' is not taken with 'part'.*geoedit assemble --report/);
  });
});

describe('partitioned edit of a tied checkpoint (API)', () => {
  it('a tied head and its embedding in different shards go to one part; assembled = one edit', async () => {
    const specs = [...llamaSpecs(3, 'F32').filter((t) => t.dtype === 'F32'), { name: 'lm_head.weight', dtype: 'F32' as const, shape: [40, 16] }];
    const root = path.join(dir, 'tied');
    for (const role of ['base', 'old', 'new'] as const) {
      const ts = tensorsFor(specs, role);
      ts[ts.length - 1]!.data = ts[0]!.data; // lm_head stored as a byte-identical copy of the embedding
      await writeCheckpoint(path.join(root, role), ts, role === 'base' ? 2 : 3, role === 'base');
      if (role === 'base') fs.writeFileSync(path.join(root, role, 'config.json'), JSON.stringify({ model_type: 'llama', tie_word_embeddings: true }));
    }
    const io = { base: path.join(root, 'base'), old: path.join(root, 'old'), new: path.join(root, 'new') };
    const opts = { maxShardSize: 3000, hash: false };
    const single = path.join(root, 'single');
    const { editCheckpoint } = await import('../../lib/checkpoint');
    const m = await editCheckpoint({ ...io, out: single }, opts);
    expect(m.totals.tied).toBe(1);
    const parts = [1, 2, 3].map((k) => path.join(root, `part-${k}`));
    await Promise.all(parts.map((out, k) => editCheckpoint({ ...io, out }, { ...opts, part: { index: k + 1, count: 3 } })));
    const plan = (manifestOf(parts[0]!) as { partition: { plan: { files: Array<{ name: string; tensors: string[]; part: number }> } } }).partition.plan;
    const partOf = (t: string) => plan.files.find((f) => f.tensors.includes(t))!;
    expect(partOf('lm_head.weight').name).not.toBe(partOf('model.embed_tokens.weight').name);
    expect(partOf('lm_head.weight').part).toBe(partOf('model.embed_tokens.weight').part);
    const out = path.join(root, 'asm');
    await assembleParts({ parts, out });
    expectSameOutput(out, single, /^(id|createdAt|timings\.[a-zA-Z]+|output\.path|partition)$/);
  }, 60_000);
});

describe('partitioned adapter merge', () => {
  let root: string;
  let io: { old: string; new: string; base: string };
  beforeAll(async () => {
    root = path.join(dir, 'lora');
    io = await writeMergeFixture(root);
  });

  it('a plain adapter output is refused (ERR_UNSUPPORTED, with why)', async () => {
    await expect(editAdapters({ old: io.old, new: io.new, out: path.join(root, 'plain') }, { part: '1/2' })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED', message: expect.stringMatching(/an adapter output is the edited rank.*small enough for one process/) });
  });

  // One merge and its 3 parts (made concurrently), made once for the tests below, whichever runs first.
  let made: Promise<{ single: string; parts: string[] }> | undefined;
  const mergeAndParts = () => (made ??= (async () => {
    const single = path.join(root, 'single');
    const args = (out: string, more: string[] = []) => ['edit', '--old-adapter', io.old, '--new-adapter', io.new, '--base', io.base, '--out', out, '--max-shard-size', '2600', ...more];
    const s = cli(args(single));
    expect(s.code, s.stderr).toBe(0);
    const parts = [1, 2, 3].map((k) => path.join(root, `part-${k}`));
    const res = await Promise.all(parts.map((p, k) => cliAsync(args(p, ['--part', `${k + 1}/3`]))));
    res.forEach((r) => expect(r.code, r.stderr).toBe(0));
    return { single, parts };
  })());

  it('3 concurrent parts of a sharded merge, assembled, give the bytes of one merge', async () => {
    const { single, parts } = await mergeAndParts();
    expect(fs.readdirSync(single).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThanOrEqual(3);
    // Each part hashes the inputs it reads (the adapters, its shards' base files), not the whole base.
    expectHashedByReaders(parts, (m) => m.inputs as Array<{ path: string; sha256: string | null }>);
    const hashedBy = parts.map((p) => (manifestOf(p) as { partition: { hashed: string[] } }).partition.hashed);
    expect(hashedBy.some((h) => h.length < 4)).toBe(true); // 2 adapters + 2 base shards: a part with one shard skips a base file
    const out = path.join(root, 'asm');
    const r = cli(['assemble', '--out', out, '--parts', ...parts]);
    expect(r.code, r.stderr).toBe(0);
    // the assembled inputs: every hash, as one merge records them
    expectSameOutput(out, single, /^(id|createdAt|timings\.totalMs|outputs\.\d+\.path|partition)$/);
  }, 60_000);

  it('a part (re-sealed) that read an input with another hash or size than another part: refused, nothing at the target', async () => {
    const { parts } = await mergeAndParts();
    // A part whose hash of an input another part also hashed differs: refused, naming both parts and the file.
    const copy = (src: string, tag: string) => { const d = path.join(root, 'bad', tag); fs.mkdirSync(path.dirname(d), { recursive: true }); fs.cpSync(src, d, { recursive: true }); return d; };
    const other = copy(parts[1]!, 'other-hash');
    const om = loadManifest(other).manifest as Record<string, any>;
    const adapter = (om.inputs as Array<{ path: string; sha256: string | null }>).find((i) => i.path.endsWith('.safetensors') && i.sha256 && (manifestOf(parts[0]!).inputs as Array<{ path: string; sha256: string | null }>).some((j) => j.path === i.path && j.sha256))!;
    expect(adapter, 'an input hashed by parts 1 and 2').toBeDefined();
    adapter.sha256 = 'e'.repeat(64);
    resealManifestFile(path.join(other, MANIFEST_FILE), om);
    const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const bad = path.join(root, 'asm-bad');
    await expect(assembleParts({ parts: [parts[0]!, other, parts[2]!], out: bad })).rejects.toMatchObject({
      code: 'ERR_PART_FOREIGN',
      message: expect.stringMatching(new RegExp(`the input ${esc(adapter.path)} changed between the parts: .*part 1/3.* read SHA-256 [0-9a-f]{64}, .*other-hash \\(part 2/3\\) read e{64}`)),
    });
    expect(fs.existsSync(bad)).toBe(false);
    // A part that read an input of another size: refused as reading other inputs (its job key, stored
    // in the part, is unchanged: not "from another job").
    const sized = copy(parts[2]!, 'other-size');
    const sm = loadManifest(sized).manifest as Record<string, any>;
    (sm.inputs as Array<{ bytes: number }>)[0]!.bytes += 1;
    resealManifestFile(path.join(sized, MANIFEST_FILE), sm);
    await expect(assembleParts({ parts: [parts[0]!, parts[1]!, sized], out: bad })).rejects.toMatchObject({ code: 'ERR_PART_FOREIGN', message: expect.stringMatching(/other-size \(part 3\/3\) read other inputs than /) });
    expect(fs.existsSync(bad)).toBe(false);
  }, 60_000);
});
