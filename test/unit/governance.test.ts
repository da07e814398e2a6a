// Governance units (lib/governance): canonical JSON and ids, sealing and parents, verifyOutput,
// the review log (signatures, chain, trusted keys), evaluate() with score functions and scorer
// commands, gates. No native addon: output directories are written by hand and sealed.
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { APPENDED_SECTIONS, MANIFEST_FILE, REVIEW_LOG, canonicalJson, loadManifest, manifestId, readLineage, sealManifest } from '../../lib/governance/lineage';
import { verifyOutput } from '../../lib/governance/verify';
import { review, loadTrustedKeys } from '../../lib/governance/review';
import { checkGates, evaluate, parseGate, parseMetrics } from '../../lib/governance/evaluate';
import { withLock } from '../../lib/governance/lock';

let tmp: string;
beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-gov-')); });
afterEach(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

/** An output directory as an edit leaves it: weights, a config, a sealed manifest. */
async function fakeOutput(name: string, opts: { parentDir?: string; scale?: number } = {}): Promise<string> {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'model.safetensors'), crypto.randomBytes(4096));
  fs.writeFileSync(path.join(dir, 'config.json'), '{"hidden": 16}\n');
  const m = {
    tool: 'geoedit', kind: 'edit', createdAt: new Date().toISOString(),
    parameters: { strategy: 'geoedit', scale: opts.scale ?? 1, kappa: 2 },
    inputs: { base: { path: opts.parentDir ?? '/nowhere/base', kind: 'directory', files: [] } },
    totals: { tensors: 1, edited: 1, rows: 4 }, warnings: [] as string[],
  };
  await sealManifest(dir, m, opts.parentDir ? [{ role: 'base', dir: opts.parentDir }] : []);
  return dir;
}

/** Every file of a directory with its bytes' hash: a directory "never altered" keeps this. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of fs.readdirSync(dir).sort()) out[n] = crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, n))).digest('hex');
  return out;
}

function keyPair(): { privPem: string; pubPem: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  return { privPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, pubPem: publicKey.export({ type: 'spki', format: 'pem' }) as string };
}

function reportFile(): string {
  const f = path.join(tmp, 'report.html');
  if (!fs.existsSync(f)) fs.writeFileSync(f, '<html>the page reviewed</html>');
  return f;
}

describe('canonical JSON and manifest ids', () => {
  it('sorts keys at every level, writes non-finite numbers as null, and the id ignores appended sections', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'x', null], c: true } })).toBe('{"a":{"c":true,"d":[1,"x",null]},"b":1}');
    expect(canonicalJson({ x: NaN, y: undefined, z: [undefined, Infinity] })).toBe('{"x":null,"z":[null,null]}');
    const m = { tool: 'geoedit', kind: 'edit', parameters: { scale: 0.5, kappa: 2 } };
    const reordered = { parameters: { kappa: 2, scale: 0.5 }, kind: 'edit', tool: 'geoedit' };
    expect(manifestId(m)).toBe(manifestId(reordered));
    const appended: Record<string, unknown> = { ...m, id: 'whatever' };
    for (const k of APPENDED_SECTIONS) appended[k] = [{ any: 1 }];
    expect(manifestId(appended)).toBe(manifestId(m));
    expect(manifestId({ ...m, parameters: { scale: 0.51, kappa: 2 } })).not.toBe(manifestId(m));
  });
});

describe('sealManifest and readLineage', () => {
  it('hashes every output file (not the governance files), writes the id first, and records a parent found in an input directory', async () => {
    const a = await fakeOutput('a');
    const ma = loadManifest(a);
    expect(ma.idOk).toBe(true);
    expect(Object.keys(JSON.parse(fs.readFileSync(path.join(a, MANIFEST_FILE), 'utf8')))[0]).toBe('id');
    expect(ma.manifest.outputFiles!.map((f) => f.name)).toEqual(['config.json', 'model.safetensors']);
    const sha = crypto.createHash('sha256').update(fs.readFileSync(path.join(a, 'model.safetensors'))).digest('hex');
    expect(ma.manifest.outputFiles!.find((f) => f.name === 'model.safetensors')!.sha256).toBe(sha);
    expect(ma.manifest.parent).toBeNull();

    const b = await fakeOutput('b', { parentDir: a, scale: 0.5 });
    const mb = loadManifest(b).manifest;
    expect(mb.parent!.id).toBe(ma.storedId);
    expect(mb.parent!.role).toBe('base');
    expect(mb.parent!.idMatches).toBe(true);
    const chain = readLineage(b);
    expect(chain.map((e) => e.id)).toEqual([mb.id, ma.storedId]);
    expect(chain.map((e) => e.parent)).toEqual([ma.storedId, null]);
    expect(chain[0]!.parameters).toEqual({ scale: 0.5 });

    // the parent directory gone: the child's record of it stands in
    fs.rmSync(a, { recursive: true });
    const gone = readLineage(b);
    expect(gone[1]).toMatchObject({ id: ma.storedId, available: false, dir: null });
  });

  it('a parent from before lineage (no id) is recorded by its content hash, with a note', async () => {
    const a = path.join(tmp, 'legacy');
    fs.mkdirSync(a);
    const legacy = { tool: 'geoedit', kind: 'edit', createdAt: '2026-11-01T00:00:00.000Z', parameters: { strategy: 'geoedit', scale: 1 } };
    fs.writeFileSync(path.join(a, MANIFEST_FILE), JSON.stringify(legacy));
    const warnings: string[] = [];
    const dir = path.join(tmp, 'b');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), 'x');
    const m = await sealManifest(dir, { tool: 'geoedit', kind: 'edit', warnings }, [{ role: 'base', dir: a }]);
    expect(m.parent).toMatchObject({ id: manifestId(legacy), idMatches: true, legacy: true });
    expect(warnings.join('\n')).toMatch(/written before lineage/);
    const chain = readLineage(dir);
    expect(chain[1]).toMatchObject({ id: manifestId(legacy), idMatches: null, available: true });
  });

  it('a parent whose manifest was edited by hand is recorded with idMatches false and a warning', async () => {
    const a = await fakeOutput('a');
    const f = path.join(a, MANIFEST_FILE);
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace('"scale": 1', '"scale": 2'));
    const warnings: string[] = [];
    const dir = path.join(tmp, 'b');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), 'x');
    const m = await sealManifest(dir, { tool: 'geoedit', kind: 'edit', warnings }, [{ role: 'base', dir: a }]);
    expect(m.parent!.idMatches).toBe(false);
    expect(warnings.join('\n')).toMatch(/edited after it was written/);
  });
});

describe('verifyOutput', () => {
  it('passes an untouched output, and names a changed byte, a missing file, an extra weights file and a hand-edited manifest, changing nothing', async () => {
    const d = await fakeOutput('out');
    const ok = await verifyOutput(d);
    expect(ok.ok).toBe(true);
    expect(ok.files.checked).toBe(2);

    const w = path.join(d, 'model.safetensors');
    const buf = fs.readFileSync(w);
    buf[100] ^= 0x01;
    fs.writeFileSync(w, buf);
    fs.writeFileSync(path.join(d, 'extra.safetensors'), 'more weights');
    fs.rmSync(path.join(d, 'config.json'));
    const before = snapshot(d);
    const r = await verifyOutput(d);
    expect(snapshot(d)).toEqual(before);
    expect(r.ok).toBe(false);
    expect(r.files.changed.map((c) => c.name)).toEqual(['model.safetensors']);
    expect(r.files.missing).toEqual(['config.json']);
    expect(r.files.extra).toEqual(['extra.safetensors']);
    expect(r.problems.map((p) => p.code).sort()).toEqual(['ERR_OUTPUT_CHANGED', 'ERR_OUTPUT_EXTRA', 'ERR_OUTPUT_MISSING']);
    expect(r.problems.find((p) => p.code === 'ERR_OUTPUT_CHANGED')!.message).toContain(w);

    const d2 = await fakeOutput('out2');
    const mf = path.join(d2, MANIFEST_FILE);
    fs.writeFileSync(mf, fs.readFileSync(mf, 'utf8').replace('"scale": 1', '"scale": 0.5'));
    const r2 = await verifyOutput(d2);
    expect(r2.ok).toBe(false);
    expect(r2.problems[0]!.code).toBe('ERR_MANIFEST_TAMPERED');
  });

  it('--inputs re-hashes recorded inputs that still exist', async () => {
    const inp = path.join(tmp, 'input.bin');
    fs.writeFileSync(inp, 'input bytes');
    const dir = path.join(tmp, 'o');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), 'w');
    const sha = crypto.createHash('sha256').update('input bytes').digest('hex');
    await sealManifest(dir, { tool: 'geoedit', kind: 'edit', inputs: { base: { path: inp, kind: 'file', files: [{ path: inp, size: 11, sha256: sha }, { path: '/gone/x', size: 1, sha256: sha }] } } }, []);
    expect((await verifyOutput(dir, { inputs: true })).ok).toBe(true);
    fs.writeFileSync(inp, 'input bytez');
    const r = await verifyOutput(dir, { inputs: true });
    expect(r.problems.map((p) => p.code)).toEqual(['ERR_INPUT_CHANGED']);
    expect(r.inputs!.absent).toEqual(['/gone/x']);
    expect((await verifyOutput(dir)).ok).toBe(true); // without --inputs the inputs are not read
  });
});

describe('review log', () => {
  it('appends signed and unsigned records; verify names who signed with a trusted key', async () => {
    const d = await fakeOutput('out');
    const alice = keyPair(), mallory = keyPair();
    const keys = path.join(tmp, 'keys');
    fs.mkdirSync(keys);
    fs.writeFileSync(path.join(keys, 'alice.pem'), alice.pubPem);
    fs.writeFileSync(path.join(tmp, 'alice.key.pem'), alice.privPem);
    const r1 = await review(d, { reviewer: 'Alice', decision: 'approve', note: 'ok to ship', key: path.join(tmp, 'alice.key.pem'), report: reportFile() });
    expect(r1).toMatchObject({ seq: 1, prev: null, reviewer: 'Alice', decision: 'approve', manifestId: loadManifest(d).storedId });
    expect(r1.report!.sha256).toBe(crypto.createHash('sha256').update(fs.readFileSync(reportFile())).digest('hex'));
    const v = await verifyOutput(d, { trustedKeys: keys });
    expect(v.ok).toBe(true);
    expect(v.reviews.signedBy).toEqual([expect.objectContaining({ reviewer: 'Alice', key: 'alice', decision: 'approve' })]);

    // signed by a key that is not trusted
    await review(d, { reviewer: 'Mallory', decision: 'approve', key: mallory.privPem, report: reportFile() });
    const v2 = await verifyOutput(d, { trustedKeys: keys });
    expect(v2.ok).toBe(false);
    expect(v2.problems.map((p) => p.code)).toEqual(['ERR_REVIEW_UNTRUSTED']);
    expect(v2.problems[0]!.message).toMatch(/record 2 \(Mallory/);
    expect((await verifyOutput(d)).ok).toBe(true); // without trusted keys: valid signatures, not trust

    // unsigned: fine without trusted keys, an error with them unless allowed
    await review(d, { reviewer: 'Bob', decision: 'reject', report: reportFile() });
    const v3 = await verifyOutput(d, { trustedKeys: [...loadTrustedKeys(keys)] });
    expect(v3.problems.map((p) => p.code)).toEqual(['ERR_REVIEW_UNTRUSTED', 'ERR_REVIEW_UNSIGNED']);
    expect((await verifyOutput(d, { trustedKeys: keys, allowUnsigned: true })).problems.map((p) => p.code)).toEqual(['ERR_REVIEW_UNTRUSTED']);
  });

  it('a forged, edited, re-ordered or removed record, or one for another manifest, is ERR_REVIEW_INVALID; review then refuses to append', async () => {
    const d = await fakeOutput('out');
    const k = keyPair();
    for (const who of ['A', 'B', 'C']) await review(d, { reviewer: who, decision: 'approve', key: k.privPem, report: reportFile() });
    const log = path.join(d, REVIEW_LOG);
    const good = fs.readFileSync(log, 'utf8');
    const lines = good.trimEnd().split('\n');
    expect((await verifyOutput(d)).ok).toBe(true);

    const cases: Record<string, string> = {
      edited: good.replace('"reviewer":"B"', '"reviewer":"Z"'),
      reordered: [lines[0], lines[2], lines[1]].join('\n') + '\n',
      removed: [lines[0], lines[2]].join('\n') + '\n',
      forged: good + JSON.stringify({ ...JSON.parse(lines[2]!), seq: 4, reviewer: 'Boss', prev: crypto.createHash('sha256').update(lines[2]!).digest('hex') }) + '\n',
    };
    for (const [name, text] of Object.entries(cases)) {
      fs.writeFileSync(log, text);
      const before = snapshot(d);
      const r = await verifyOutput(d);
      expect(r.ok, name).toBe(false);
      expect(r.problems.every((p) => p.code === 'ERR_REVIEW_INVALID'), name).toBe(true);
      await expect(review(d, { reviewer: 'D', decision: 'approve', report: reportFile() }), name).rejects.toMatchObject({ code: 'ERR_REVIEW_INVALID' });
      expect(snapshot(d), name).toEqual(before);
    }
    expect(cases.forged && (await (async () => { fs.writeFileSync(log, cases.forged!); return (await verifyOutput(d)).problems[0]!.message; })())).toMatch(/bad signature/);

    // a log copied from another output: every record names the other manifest
    fs.writeFileSync(log, good);
    const other = await fakeOutput('other');
    fs.copyFileSync(log, path.join(other, REVIEW_LOG));
    const r = await verifyOutput(other);
    expect(r.problems.map((p) => p.code)).toEqual(['ERR_REVIEW_INVALID', 'ERR_REVIEW_INVALID', 'ERR_REVIEW_INVALID']);
    expect(r.problems[0]!.message).toMatch(/reviews manifest [0-9a-f]{64}, not this directory's/);
  });

  it('refuses a hand-edited manifest, a bad decision and a key that is not Ed25519, writing nothing', async () => {
    const d = await fakeOutput('out');
    const mf = path.join(d, MANIFEST_FILE);
    const before = snapshot(d);
    await expect(review(d, { reviewer: 'A', decision: 'maybe' as never, report: reportFile() })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await expect(review(d, { reviewer: 'A', decision: 'approve', key: rsa, report: reportFile() })).rejects.toMatchObject({ code: 'ERR_BAD_KEY' });
    fs.writeFileSync(mf, fs.readFileSync(mf, 'utf8').replace('"kappa": 2', '"kappa": 3'));
    const edited = snapshot(d);
    await expect(review(d, { reviewer: 'A', decision: 'approve', report: reportFile() })).rejects.toMatchObject({ code: 'ERR_MANIFEST_TAMPERED' });
    expect(snapshot(d)).toEqual(edited);
    expect(Object.keys(before)).toEqual(Object.keys(edited));
  });

  it('concurrent reviews in one process keep every record, in one chain', async () => {
    const d = await fakeOutput('out');
    const rep = reportFile();
    await Promise.all(Array.from({ length: 12 }, (_, i) => review(d, { reviewer: `r${i}`, decision: i % 2 ? 'reject' : 'approve', report: rep })));
    const v = await verifyOutput(d);
    expect(v.ok).toBe(true);
    expect(v.reviews.records.map((r) => r.reviewer).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `r${i}`).sort());
  });

  it('a stale lock (its process gone) is taken over', async () => {
    const target = path.join(tmp, 'x');
    fs.writeFileSync(`${target}.lock`, '999999999 2000-01-01T00:00:00Z\n');
    expect(await withLock(target, () => 42, { timeoutMs: 2000 })).toBe(42);
    expect(fs.existsSync(`${target}.lock`)).toBe(false);
  });
});

describe('gates', () => {
  it('parses absolute and relative forms, and rejects malformed ones with ERR_BAD_GATE', () => {
    expect(parseGate('locality>=0.95')).toMatchObject({ metric: 'locality', op: '>=', value: 0.95, relative: null });
    expect(parseGate(' loss <= base*1.05 ')).toMatchObject({ metric: 'loss', op: '<=', relative: { factor: 1.05, offset: 0 } });
    expect(parseGate('locality>=0.98*base')).toMatchObject({ relative: { factor: 0.98, offset: 0 } });
    expect(parseGate('acc>base-0.01')).toMatchObject({ op: '>', relative: { factor: 1, offset: -0.01 } });
    expect(parseGate('acc<base')).toMatchObject({ op: '<', relative: { factor: 1, offset: 0 } });
    for (const bad of ['locality', 'locality=>0.9', 'locality>=', 'locality>=high', '>=0.9', 'a>=0.9*bas']) {
      expect(() => parseGate(bad), bad).toThrow(expect.objectContaining({ code: 'ERR_BAD_GATE' }));
    }
  });

  it('compares, reads the baseline for relative gates, and names a missing metric', () => {
    const r = checkGates(['locality>=0.98*base', 'reliability>0.5', 'Loss<1'].map(parseGate), { locality: 0.97, reliability: 0.9, loss: 2 }, { locality: 1 });
    expect(r.map((g) => g.pass)).toEqual([false, true, false]);
    expect(r[0]).toMatchObject({ value: 0.97, threshold: 0.98, base: 1 });
    expect(r[2]!.metric).toBe('loss'); // case-insensitive match when unique
    expect(() => checkGates([parseGate('gen>=0.5')], { locality: 1 }, null)).toThrow(expect.objectContaining({ code: 'ERR_METRIC_MISSING', message: expect.stringContaining("'gen'") }));
    expect(() => checkGates([parseGate('locality>=base')], { locality: 1 }, null)).toThrow(expect.objectContaining({ code: 'ERR_NO_BASELINE' }));
  });

  it('parses scorer stdout: one JSON object (or its last line); NaN, strings, arrays and nothing are ERR_SCORER_OUTPUT', () => {
    expect(parseMetrics('{"a": 1, "b": 0.5}\n', 's')).toEqual({ a: 1, b: 0.5 });
    expect(parseMetrics('loading...\nstep 3\n{"a": 1}\n', 's')).toEqual({ a: 1 });
    for (const [out, why] of [['{"a": NaN}', /a = NaN/], ['{"a": -Infinity, "b": 1}', /a = -Infinity/], ['{"a": null}', /'a' = null/], ['{"a": "0.9"}', /'a'/], ['[1,2]', /array/], ['', /nothing/], ['accuracy 0.9', /no JSON/], ['{}', /no metrics/]] as const) {
      expect(() => parseMetrics(out, 'the scorer'), out).toThrow(expect.objectContaining({ code: 'ERR_SCORER_OUTPUT', message: expect.stringMatching(why) }));
    }
  });
});

describe('evaluate', () => {
  it('appends each evaluation (metrics, scorer, gates) to the manifest log; a failed gate is recorded, passed false', async () => {
    const d = await fakeOutput('out');
    const id = loadManifest(d).storedId;
    const seen: string[] = [];
    const r1 = await evaluate(d, { score: async (dir) => { seen.push(dir); return { locality: 0.97, reliability: 1 }; }, scorerName: 'unit', gates: ['locality>=0.95', 'reliability>=0.99'] });
    expect(seen).toEqual([d]);
    expect(r1).toMatchObject({ seq: 1, passed: true, recorded: true, manifestId: id, scorer: 'unit', prev: null });
    const r2 = await evaluate(d, { score: () => ({ locality: 0.97 }), gates: ['locality>=0.99*base'], baseline: { locality: 1 } });
    expect(r2.passed).toBe(false);
    expect(r2.failed.map((g) => g.expr)).toEqual(['locality>=0.99*base']);
    const lm = loadManifest(d);
    expect(lm.idOk).toBe(true); // appended sections leave the id alone
    expect(lm.storedId).toBe(id);
    expect((lm.manifest.evaluations as unknown[]).length).toBe(2);
    expect((await verifyOutput(d)).ok).toBe(true);
    // the log is chained: a hand edit of an earlier entry is caught
    const mf = path.join(d, MANIFEST_FILE);
    fs.writeFileSync(mf, fs.readFileSync(mf, 'utf8').replace('"locality": 0.97', '"locality": 0.99'));
    const v = await verifyOutput(d);
    expect(v.problems.map((p) => p.code)).toContain('ERR_EVALUATION_INVALID');
  });

  it('concurrent evaluations of one directory keep every entry, in one chain', async () => {
    const d = await fakeOutput('out');
    await Promise.all(Array.from({ length: 10 }, (_, i) => evaluate(d, { score: async () => { await new Promise((r) => setTimeout(r, (i * 7) % 13)); return { k: i }; }, gates: [] })));
    const ev = loadManifest(d).manifest.evaluations as Array<{ seq: number; metrics: { k: number } }>;
    expect(ev.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(ev.map((e) => e.metrics.k).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect((await verifyOutput(d)).ok).toBe(true);
  });

  it('a gate on a missing metric, a NaN, a throwing score function: coded errors and the directory untouched', async () => {
    const d = await fakeOutput('out');
    const before = snapshot(d);
    await expect(evaluate(d, { score: () => ({ locality: 1 }), gates: ['generality>=0.5'] })).rejects.toMatchObject({ code: 'ERR_METRIC_MISSING' });
    await expect(evaluate(d, { score: () => ({ locality: NaN }), gates: [] })).rejects.toMatchObject({ code: 'ERR_SCORER_OUTPUT' });
    await expect(evaluate(d, { score: () => { throw new Error('CUDA out of memory'); }, gates: [] })).rejects.toMatchObject({ code: 'ERR_SCORER_FAILED', message: expect.stringContaining('CUDA out of memory') });
    await expect(evaluate(d, { score: () => ({ a: 1 }), gates: ['a>=base'] })).rejects.toMatchObject({ code: 'ERR_NO_BASELINE' });
    expect(snapshot(d)).toEqual(before);
  });

  it('runs scorer commands with the model directory as the last argument; crash, hang (timeout), no JSON and NaN are coded errors', async () => {
    const d = await fakeOutput('out');
    const sh = (name: string, body: string) => {
      const f = path.join(tmp, name);
      fs.writeFileSync(f, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      return f;
    };
    const args = sh('args.sh', 'echo "log line on stdout"; echo "{\\"argc\\": $#, \\"last_is_dir\\": $( [ -f "$3/model.safetensors" ] && echo 1 || echo 0 )}"');
    const r = await evaluate(d, { scorer: `${args} --flag value`, gates: ['last_is_dir>=1'] });
    expect(r.metrics).toEqual({ argc: 3, last_is_dir: 1 });
    expect(r.exitCode).toBe(0);
    expect(r.scorer).toBe(`${args} --flag value`);
    const before = snapshot(d);
    const cases: Array<[string, string, number | undefined, string, RegExp]> = [
      ['crash.sh', 'echo "Traceback: boom" >&2; exit 3', undefined, 'ERR_SCORER_FAILED', /status 3.*boom/],
      ['hang.sh', 'sleep 30; echo "{\\"a\\": 1}"', 1, 'ERR_SCORER_TIMEOUT', /timeout of 1 s/],
      ['nojson.sh', 'echo "accuracy: 0.93"', undefined, 'ERR_SCORER_OUTPUT', /no JSON/],
      ['nan.sh', 'echo "{\\"locality\\": NaN, \\"reliability\\": 1.0}"', undefined, 'ERR_SCORER_OUTPUT', /locality = NaN/],
      ['missing.sh', 'echo "{\\"reliability\\": 1.0}"', undefined, 'ERR_METRIC_MISSING', /'locality'/],
    ];
    for (const [name, body, timeout, code, msg] of cases) {
      const t0 = Date.now();
      await expect(evaluate(d, { scorer: sh(name, body), gates: ['locality>=0.9'], ...(timeout ? { timeout } : {}) }), name).rejects.toMatchObject({ code, message: expect.stringMatching(msg) });
      if (timeout) expect(Date.now() - t0).toBeLessThan(20_000); // killed, not waited for
    }
    expect(snapshot(d)).toEqual(before);
  });
});
