// sweepFrontier's preservation families with a statistics file (editCheckpoint's `preserve: { file }`)
// and with the same statistics in memory (editTensor's `preserve`): the same edits, the same scores.
// A tiny fact-memory model, so this runs in seconds.
import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildSeed, makeSeedScorer, preservationStatistics, type SuiteConfig } from '../../lib/quality/suite';
import { sweepFrontier } from '../../lib/quality/frontier';
import { writeSafetensors } from '../../lib/safetensors';

const CFG: SuiteConfig = {
  world: { subjects: 120, relations: 2, objects: 12, templates: 3, relationWords: 3, fillers: 3, editShare: 0.05, localityPrompts: 150 },
  model: { d: 16, h: 48 },
  pretrain: { epochs: 4, batch: 32, lr: 5e-3 },
  regimes: ['adam-over'],
  seeds: [1],
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-quality-preserve-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('sweepFrontier with preservation statistics', () => {
  it('{ file } (editCheckpoint) and { layers } (editTensor) give the same points; the random-subspace control runs on the file\'s weights', async () => {
    const { models } = await buildSeed(CFG, dir, 1);
    const { score } = await makeSeedScorer(CFG, models);
    const st = await preservationStatistics(CFG, models);
    expect(st.facts).toBeGreaterThan(0);
    const file = path.join(dir, 'stats.safetensors');
    const tensors = [...st.layers].flatMap(([name, l]) => [
      { name: `${name}:cov`, dtype: 'F32' as const, shape: l.cov.shape, data: l.cov.data as Float32Array },
      { name: `${name}:edit_cov`, dtype: 'F32' as const, shape: l.editCov.shape, data: l.editCov.data as Float32Array },
    ]);
    await writeSafetensors(file, tensors, { format: 'pt' });
    const grids = { scale: [], preserve: { rho: [0.3, 3], mu: [0, 100], noC1Rho: [], geoRho: [], subspace: [0.25] } };
    const src = models.regimes['adam-over']!.source;
    const fams = ['task-arithmetic', 'preserve', 'random-subspace'] as const;
    const a = await sweepFrontier({ source: src, score: (w) => score(w), grids, families: [...fams], preserve: { file } });
    const b = await sweepFrontier({ source: src, score: (w) => score(w), grids, families: [...fams], preserve: st });
    const pa = a.points.filter((p) => p.family === 'preserve'), pb = b.points.filter((p) => p.family === 'preserve');
    expect(pa.map((p) => p.label)).toEqual(['rho=0.3 mu=0', 'rho=0.3 mu=100', 'rho=3 mu=0', 'rho=3 mu=100']);
    expect(pa.map((p) => p.label)).toEqual(pb.map((p) => p.label));
    for (let i = 0; i < pa.length; i++) {
      expect(pa[i]!.scores.reliability, pa[i]!.label).toBeCloseTo(pb[i]!.scores.reliability, 9);
      expect(pa[i]!.scores.locality, pa[i]!.label).toBeCloseTo(pb[i]!.scores.locality, 9);
    }
    // preservation changed the edit (Locality above plain fine-tuning's at some setting)
    expect(Math.max(...pa.map((p) => p.scores.locality))).toBeGreaterThan(a.reference.locality);
    expect(a.points.filter((p) => p.family === 'random-subspace')).toHaveLength(1);
    expect(b.points.filter((p) => p.family === 'random-subspace')[0]!.scores).toEqual(a.points.filter((p) => p.family === 'random-subspace')[0]!.scores);
  }, 120_000);
});
