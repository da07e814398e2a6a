// The hand-written trainer: kernels against naive loops, gradients against finite differences,
// LoRA gradients, determinism, and that pretraining memorises the facts.
import { describe, it, expect } from 'vitest';
import { Rng } from '../../lib/quality/prng';
import { makeWorld, makeBatch, allFactPrompts, editSet } from '../../lib/quality/data';
import {
  initParams, lossAndGrad, matmulABt, matmulABacc, matmulAtBacc, zerosLike, loraMerged, loraGrads, cloneParams,
  type ModelConfig, type ParamName, type Params, type LoraFactor,
} from '../../lib/quality/model';
import { pretrain, fineTune, REGIMES } from '../../lib/quality/train';
import { makeScorer } from '../../lib/quality/metrics';

const WC = { subjects: 40, relations: 2, objects: 12, templates: 4, relationWords: 3, fillers: 4, editShare: 0.05, localityPrompts: 200 };

function rand(rng: Rng, n: number): Float32Array {
  return rng.fillNormal(new Float32Array(n), 1);
}

describe('quality model kernels', () => {
  it('matmul kernels equal naive loops (odd sizes, zeros in A)', () => {
    const rng = new Rng(5);
    for (const [M, N, K] of [[7, 5, 9], [8, 12, 4], [1, 3, 2], [13, 6, 11]] as const) {
      const A = rand(rng, M * K), B1 = rand(rng, N * K), B2 = rand(rng, K * N), A2 = rand(rng, M * K), B3 = rand(rng, M * N);
      for (let i = 0; i < A.length; i += 3) { A[i] = 0; A2[i] = 0; }
      const C1 = new Float32Array(M * N);
      matmulABt(A, B1, C1, M, N, K);
      const C2 = rand(rng, M * N), C2ref = C2.slice();
      matmulABacc(A, B2, C2, M, N, K);
      const C3 = rand(rng, K * N), C3ref = C3.slice();
      matmulAtBacc(A2, B3, C3, M, N, K);
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
        let s1 = 0, s2 = C2ref[i * N + j]!;
        for (let k = 0; k < K; k++) { s1 += A[i * K + k]! * B1[j * K + k]!; s2 += A[i * K + k]! * B2[k * N + j]!; }
        expect(C1[i * N + j]).toBeCloseTo(s1, 4);
        expect(C2[i * N + j]).toBeCloseTo(s2, 4);
      }
      for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) {
        let s = C3ref[k * N + j]!;
        for (let m = 0; m < M; m++) s += A2[m * K + k]! * B3[m * N + j]!;
        expect(C3[k * N + j]).toBeCloseTo(s, 4);
      }
    }
  });

  it('gradients match central finite differences for every parameter', () => {
    const w = makeWorld(WC, 3);
    const mc: ModelConfig = { vocab: w.vocab, objects: WC.objects, d: 6, h: 10 };
    const p = initParams(mc, new Rng(9));
    // f64-friendly: gradient check in f32 needs a moderate step and a relative tolerance
    const { prompts, targets } = allFactPrompts(w);
    const b = makeBatch(w, prompts.slice(0, 9), targets.slice(0, 9));
    const want = new Set<ParamName>(['embed', 'up', 'down', 'unembed']);
    const g = zerosLike(p);
    lossAndGrad(mc, p, b, g, want);
    const rng = new Rng(11);
    let checked = 0;
    for (const name of ['embed', 'up', 'down', 'unembed'] as ParamName[]) {
      // the embedding rows actually used by the batch, random entries elsewhere
      const idx: number[] = [];
      if (name === 'embed') for (let j = 0; j < b.len; j++) for (let k = 0; k < mc.d; k++) idx.push(b.tokens[j]! * mc.d + k);
      else for (let t = 0; t < 25; t++) idx.push(rng.int(p[name].length));
      for (const i of idx) {
        const eps = 1e-2;
        const q: Params = cloneParams(p);
        const v = q[name][i]!;
        q[name][i] = v + eps;
        const lp = lossAndGrad(mc, q, b, {}, new Set());
        q[name][i] = v - eps;
        const lm = lossAndGrad(mc, q, b, {}, new Set());
        const fd = (lp - lm) / (2 * eps);
        const an = g[name][i]!;
        expect(Math.abs(fd - an)).toBeLessThan(2e-3 + 2e-2 * Math.abs(an));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(90);
    // and the gradient is not trivially zero
    expect(g.up.some((x) => Math.abs(x) > 1e-4)).toBe(true);
    expect(g.down.some((x) => Math.abs(x) > 1e-4)).toBe(true);
  });

  it('LoRA gradients match finite differences through B·A', () => {
    const rng = new Rng(21);
    const out = 5, inn = 7, r = 3;
    const f: LoraFactor = { A: rand(rng, r * inn), B: rand(rng, out * r), r, out, in: inn, alpha: 6 };
    const W = rand(rng, out * inn), T = rand(rng, out * inn);
    // L = Σ T ⊙ (W + s B A): dL/dW = T
    const L = (): number => { const m = loraMerged(W, f); let s = 0; for (let i = 0; i < m.length; i++) s += T[i]! * m[i]!; return s; };
    const gA = new Float32Array(f.A.length), gB = new Float32Array(f.B.length);
    loraGrads(T, f, gA, gB);
    for (const [arr, g] of [[f.A, gA], [f.B, gB]] as const) {
      for (let i = 0; i < arr.length; i++) {
        const v = arr[i]!, eps = 1e-2;
        arr[i] = v + eps; const lp = L();
        arr[i] = v - eps; const lm = L();
        arr[i] = v;
        expect((lp - lm) / (2 * eps)).toBeCloseTo(g[i]!, 2);
      }
    }
  });

  it('is deterministic from the seed, and different seeds differ', () => {
    const a = makeWorld(WC, 1), b = makeWorld(WC, 1), c = makeWorld(WC, 2);
    expect(Array.from(a.object)).toEqual(Array.from(b.object));
    expect(a.edits).toEqual(b.edits);
    expect(Array.from(a.object)).not.toEqual(Array.from(c.object));
    const mc: ModelConfig = { vocab: a.vocab, objects: WC.objects, d: 8, h: 16 };
    const p1 = pretrain(a, mc, 1, { epochs: 2, batch: 16, lr: 3e-3 });
    const p2 = pretrain(b, mc, 1, { epochs: 2, batch: 16, lr: 3e-3 });
    expect(Buffer.from(p1.up.buffer).equals(Buffer.from(p2.up.buffer))).toBe(true);
    for (const e of a.edits) expect(e.newObject).not.toBe(e.oldObject);
    expect(editSet(a, 'new').prompts.length).toBe(a.edits.length * (WC.templates - 1));
  });

  it('pretraining memorises the facts; fine-tuning on D_new learns the edits and costs some Locality', () => {
    const w = makeWorld({ ...WC, subjects: 120, editShare: 0.03 }, 4);
    const mc: ModelConfig = { vocab: w.vocab, objects: WC.objects, d: 16, h: 64 };
    const base = pretrain(w, mc, 4, { epochs: 40, batch: 32, lr: 1e-2 });
    const sc = makeScorer(w, mc, base);
    expect(sc.baseAccuracy.train).toBeGreaterThan(0.95);
    const before = sc.score(base);
    expect(before.reliability).toBe(0);
    expect(before.locality).toBe(1);
    const ft = fineTune(w, mc, base, 'new', REGIMES[0]!, 4);
    const after = sc.score(ft.params);
    expect(after.reliability).toBe(1);
    expect(after.locality).toBeLessThan(1);
  });
});
