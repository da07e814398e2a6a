// The quality benchmark, fast version (a smaller model; the full one is scripts/quality/sweep.js):
// builds the fact-memory models for 3 seeds, runs the QUALITY.md protocol through
// editCheckpoint / editAdapters, and asserts the orderings docs/quality.md claims.
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FAST_CONFIG, buildSeed, configHash, makeSeedScorer, preservationStatistics, type PreservationStatistics, type SeedModels } from '../../lib/quality/suite';
import { preservedSample, makeWorld } from '../../lib/quality/data';
import { REGIMES } from '../../lib/quality/train';
import { summarizeSweeps, sweepFrontier, type FrontierSummary, type SweepResult } from '../../lib/quality/frontier';
import { readSafetensorsHeaderSync } from '../../lib/safetensors';
import { runDemo } from '../../lib/cli/demo';

const GRIDS = { scale: [0.9, 0.8, 0.7], lambda: [0.25, 1], kappa: [0.5, 1, 2], keepOrthogonal: [0.5, 0.75, 0.9], paperKappa: [1], maskDraws: 1 };
let dir: string;
const models: SeedModels[] = [];
const sweeps: Record<string, SweepResult[]> = {};
const summary: Record<string, FrontierSummary> = {};
// preservation (SPEC §3 step 0): a small grid around the calibrated defaults, and the random-subspace control
const PGRIDS = { scale: [], preserve: { rho: [0.1, 0.3, 1, 3], mu: [10, 100], subspace: [1 / 8, 1 / 2] } };
const psweeps: Record<string, SweepResult[]> = {};
const pstats: PreservationStatistics[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-quality-test-'));
  // the layout geoedit demo uses, so the demo test below reuses these models
  const root = path.join(dir, `demo-${configHash(FAST_CONFIG)}`);
  for (const seed of FAST_CONFIG.seeds) models.push((await buildSeed(FAST_CONFIG, root, seed)).models);
  for (const m of models) {
    const { score } = await makeSeedScorer(FAST_CONFIG, m);
    for (const r of REGIMES) {
      (sweeps[r.name] ??= []).push(await sweepFrontier({ source: m.regimes[r.name]!.source, score: (w) => score(w), grids: GRIDS, seed: m.seed }));
    }
    const st = await preservationStatistics(FAST_CONFIG, m);
    pstats.push(st);
    for (const r of REGIMES) {
      (psweeps[r.name] ??= []).push(await sweepFrontier({ source: m.regimes[r.name]!.source, score: (w) => score(w), grids: PGRIDS, seed: m.seed, preserve: st, families: ['task-arithmetic', 'preserve', 'random-subspace'] }));
    }
  }
  for (const r of REGIMES) summary[r.name] = summarizeSweeps(sweeps[r.name]!);
}, 600_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('quality benchmark (fast model, 3 seeds, every regime)', () => {
  it('the base models know the facts and the paraphrases; fine-tuning learns the edits and costs Locality', async () => {
    for (const m of models) {
      const { scorer } = await makeSeedScorer(FAST_CONFIG, m);
      expect(scorer.baseAccuracy.train).toBeGreaterThan(0.95);
      expect(scorer.baseAccuracy.heldOut).toBeGreaterThan(0.8);
    }
    for (const r of REGIMES) {
      const s = summary[r.name]!;
      expect(s.reference.reliability.mean).toBeGreaterThan(0.97);
      expect(s.reference.locality.mean).toBeLessThan(0.95);
    }
  });

  it('the edits went through editCheckpoint and editAdapters; the LoRA regime is real PEFT adapters', () => {
    const m = models[0]!;
    const lora = m.regimes['lora-r8']!.source;
    expect(lora.kind).toBe('adapters');
    const cfg = JSON.parse(fs.readFileSync(path.join(lora.new, 'adapter_config.json'), 'utf8'));
    expect(cfg.r).toBe(8);
    expect(cfg.peft_type).toBe('LORA');
    const h = readSafetensorsHeaderSync(path.join(lora.new, 'adapter_model.safetensors'));
    const names = h.tensors.map((t) => t.name).sort();
    expect(names).toEqual(['base_model.model.ffn.down.lora_A.weight', 'base_model.model.ffn.down.lora_B.weight', 'base_model.model.ffn.up.lora_A.weight', 'base_model.model.ffn.up.lora_B.weight']);
    const A = h.tensors.find((t) => t.name === 'base_model.model.ffn.up.lora_A.weight')!;
    const B = h.tensors.find((t) => t.name === 'base_model.model.ffn.up.lora_B.weight')!;
    expect(A.shape).toEqual([8, FAST_CONFIG.model.d]);
    expect(B.shape).toEqual([FAST_CONFIG.model.h, 8]);
    const full = m.regimes['adam-over']!.source;
    expect(full.kind).toBe('checkpoints');
    expect(readSafetensorsHeaderSync(full.new).tensors.map((t) => t.name)).toContain('ffn.up.weight');
  });

  it('GeoEdit beats plain fine-tuning on Locality at Reliability >= 0.95x, in every regime', () => {
    for (const r of REGIMES) {
      const s = summary[r.name]!;
      const g = s.families.geoedit.at095;
      // the light regime leaves no Reliability margin: some seed may reach 0.95x with no setting
      expect(g.n, r.name).toBeGreaterThanOrEqual(r.name === 'adam-light' ? 2 : 3);
      expect(g.mean, r.name).toBeGreaterThan(s.reference.locality.mean + 0.02);
    }
  });

  it('forgetting first (F-Learning, any λ) never beats plain fine-tuning', () => {
    for (const r of REGIMES) {
      const s = summary[r.name]!;
      const f = s.families['forget-then-learn'].at095;
      if (f.n) expect(f.mean, r.name).toBeLessThanOrEqual(s.reference.locality.mean + 0.01);
    }
  });

  it('the controls: uniform shrinkage does at least as well as GeoEdit in every regime, and a random row mask comes close', () => {
    let diff = 0;
    for (const r of REGIMES) {
      const s = summary[r.name]!;
      const g = s.families.geoedit.at095.mean;
      expect(s.families.shrinkage.at095.mean, r.name).toBeGreaterThanOrEqual(g - 0.01);
      diff += s.families['random-mask'].at095.mean - g;
    }
    // mean over regimes: the random mask is within a few points of the angle (either way)
    expect(Math.abs(diff / REGIMES.length)).toBeLessThan(0.04);
  });

  it('the preserved sample is disjoint from the Locality prompts\' facts and from the edits; its size is reported', () => {
    for (const [i, m] of models.entries()) {
      const w = makeWorld(FAST_CONFIG.world, m.seed);
      const R = w.config.relations;
      const loc = new Set(w.locality.map((p) => p.subject * R + p.relation));
      const edited = new Set(w.edits.map((e) => e.subject));
      const s = preservedSample(w);
      expect(s.facts).toBeGreaterThan(50);
      expect(s.prompts.length).toBe(s.facts * w.trainTemplates.length);
      for (const p of s.prompts) {
        expect(loc.has(p.subject * R + p.relation)).toBe(false);
        expect(edited.has(p.subject)).toBe(false);
      }
      expect(pstats[i]!.prompts).toBe(s.prompts.length);
      expect(preservedSample(w, 10).facts).toBe(10);
      const up = pstats[i]!.layers.get('ffn.up.weight')!, down = pstats[i]!.layers.get('ffn.down.weight')!;
      expect(up.cov.shape).toEqual([FAST_CONFIG.model.d, FAST_CONFIG.model.d]);
      expect(down.editCov.shape).toEqual([FAST_CONFIG.model.h, FAST_CONFIG.model.h]);
    }
  });

  it('preservation (editTensor with preserve): per seed, beats uniform shrinkage by >= 0.10 Locality at R >= 0.99x in the full-FFN and FFN-value regimes, and at R >= 0.95x with LoRA', () => {
    const at = (r: SweepResult, fam: 'preserve' | 'shrinkage' | 'random-subspace', lvl: 'at099' | 'at095'): number => r.frontiers[fam][lvl]?.locality ?? -1;
    for (const rn of ['adam-over', 'sgd', 'ffn-value']) {
      psweeps[rn]!.forEach((p, i) => expect(at(p, 'preserve', 'at099'), `${rn} seed ${i + 1}`).toBeGreaterThanOrEqual(at(sweeps[rn]![i]!, 'shrinkage', 'at099') + 0.1));
    }
    psweeps['lora-r8']!.forEach((p, i) => expect(at(p, 'preserve', 'at095'), `lora-r8 seed ${i + 1}`).toBeGreaterThanOrEqual(at(sweeps['lora-r8']![i]!, 'shrinkage', 'at095') + 0.1));
    // the points really went through preservation: every preserve point differs from plain fine-tuning
    for (const p of psweeps['adam-over']![0]!.points.filter((x) => x.family === 'preserve')) expect(p.scores.locality).toBeGreaterThan(psweeps['adam-over']![0]!.reference.locality);
  });

  it('the control: a random subspace of the same basis form stays >= 0.10 Locality below preservation at R >= 0.95x, in every regime and seed', () => {
    for (const r of REGIMES) {
      psweeps[r.name]!.forEach((p, i) => {
        const pr = p.frontiers.preserve.at095, rs = p.frontiers['random-subspace'].at095;
        expect(pr, `${r.name} seed ${i + 1}`).not.toBeNull();
        if (rs) expect(pr!.locality, `${r.name} seed ${i + 1}`).toBeGreaterThanOrEqual(rs.locality + 0.1);
      });
    }
  });

  it('geoedit demo --json prints { strategy: { reliability, generality, locality } } and reuses the cache', async () => {
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => { out += String(c); return true; });
    let code: number;
    try {
      code = await runDemo(['--fast', '--seeds', '1', '--regime', 'adam-over,lora-r8', '--json', '--quiet', '--cache-dir', dir, '--out', path.join(dir, 'run')]);
    } finally {
      spy.mockRestore();
    }
    expect(code).toBe(0);
    const j = JSON.parse(out);
    for (const k of ['task-arithmetic', 'forget-then-learn', 'geoedit', 'geoedit-paper', 'random-mask', 'shrinkage', 'preserve', 'preserve-no-c1', 'preserve+geoedit', 'random-subspace']) {
      expect(Object.keys(j[k]).sort()).toEqual(['generality', 'locality', 'reliability']);
      for (const v of Object.values(j[k])) expect(v as number).toBeGreaterThanOrEqual(0);
    }
    const rep = JSON.parse(fs.readFileSync(path.join(dir, 'run', 'report.json'), 'utf8'));
    expect(rep.buildCached).toBe(true);
    expect(rep.preservedSample[0].prompts).toBe(pstats[0]!.prompts);
    expect(fs.existsSync(rep.outputs.checkpoint)).toBe(true);
    expect(JSON.parse(fs.readFileSync(rep.outputs.manifest, 'utf8')).parameters.strategy).toBe('geoedit');
  });

  it('bad demo options and a bad score callback give stable codes', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await runDemo(['--seeds', '0'])).toBe(1);
      expect(await runDemo(['--regime', 'nope'])).toBe(1);
      expect(await runDemo(['--frobnicate'])).toBe(1);
    } finally {
      err.mockRestore();
    }
    const m = models[0]!;
    await expect(sweepFrontier({ source: m.regimes['sgd']!.source, score: async () => ({ reliability: NaN, generality: 0, locality: 0 }), grids: GRIDS })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });
});
