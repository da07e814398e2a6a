// LoRA in factor space (SPEC §4) against materialised task vectors (SPEC §3, §5).
import { describe, it, expect } from 'vitest';
import { analyzeTensor, editTensor } from '../../lib/index';
import {
  analyzeLora, editLora, materializeLora, prepareLora, loraGeometry, mergeLoraRows, denseLoraRows, type LoraFactors,
} from '../../lib/lora-math';
import { loadNative } from '../../lib/native';
import type { Tensor } from '../../lib/types';
import { randn, rng } from '../support/prng';

const f32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'f32', shape, data });

/** Linear factors tau = s B A, A [r, n], B [m, r]. `share` mixes a shared component into A (correlated rows). */
function linear(r: () => number, m: number, n: number, rank: number, scale: number, A0?: Float32Array, mix = 0): LoraFactors {
  const A = randn(r, rank * n, 0.1);
  if (A0) for (let i = 0; i < A.length; i++) A[i] = mix * A0[i % A0.length]! + (1 - mix) * A[i]!;
  return { A: f32([rank, n], A), B: f32([m, rank], randn(r, m * rank, 0.05)), scale };
}

/** tau in f64, straight from the definition. */
function tau64(f: LoraFactors): { rows: number; cols: number; t: Float64Array } {
  const A = f.A.data as Float32Array, B = f.B.data as Float32Array;
  const rank = f.A.shape[0]!;
  if (!f.embedding) {
    const m = f.B.shape[0]!, n = f.A.shape[1]!;
    const t = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let k = 0; k < rank; k++) {
      const b = B[i * rank + k]!;
      for (let j = 0; j < n; j++) t[i * n + j]! += b * A[k * n + j]!;
    }
    for (let q = 0; q < t.length; q++) t[q]! *= f.scale;
    return { rows: m, cols: n, t };
  }
  // Embedding: tau = s (B A)^T, A [r, V], B [D, r] -> [V, D]
  const V = f.A.shape[1]!, D = f.B.shape[0]!;
  const t = new Float64Array(V * D);
  for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) {
    let s = 0;
    for (let k = 0; k < rank; k++) s += B[d * rank + k]! * A[k * V + v]!;
    t[v * D + d] = f.scale * s;
  }
  return { rows: V, cols: D, t };
}

function cosRef(a: Float64Array, b: Float64Array, m: number, n: number): Float64Array {
  const c = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let d = 0, x = 0, y = 0;
    for (let j = 0; j < n; j++) {
      const p = a[i * n + j]!, q = b[i * n + j]!;
      d += p * q; x += p * p; y += q * q;
    }
    c[i] = x > 0 && y > 0 ? d / Math.sqrt(x * y) : 0;
  }
  return c;
}

async function checkGeometry(o: LoraFactors | null, nw: LoraFactors | null, opts: Record<string, unknown> = {}) {
  const st = await analyzeLora({ old: o, new: nw }, opts);
  const ref = (o ? tau64(o) : null), refN = (nw ? tau64(nw) : null);
  const m = (ref ?? refN)!.rows, n = (ref ?? refN)!.cols;
  const zero = new Float64Array(m * n);
  const c64 = cosRef(ref ? ref.t : zero, refN ? refN.t : zero, m, n);
  // 1. f64 reference: cos within 1e-9 (SPEC §5).
  let maxErr = 0;
  for (let i = 0; i < m; i++) maxErr = Math.max(maxErr, Math.abs(st.cos[i]! - c64[i]!));
  expect(maxErr).toBeLessThan(1e-9);
  // 2. analyzeTensor on the materialised tau (f32): the same regions and coefficients, except rows
  //    whose |cos| lies within the f32 materialisation error of the threshold.
  const zeros = f32([m, n], new Float32Array(m * n));
  const mo = o ? materializeLora(o) : zeros, mn = nw ? materializeLora(nw) : zeros;
  const dense = await analyzeTensor({ base: zeros, old: mo, new: mn }, opts);
  let differ = 0;
  for (let i = 0; i < m; i++) {
    expect(Math.abs(st.cos[i]! - dense.cos[i]!)).toBeLessThan(1e-6);
    const near = Math.abs(Math.abs(dense.cos[i]!) - dense.threshold) < 1e-6;
    if (st.region[i] !== dense.region[i]) {
      expect(near).toBe(true);
      differ++;
      continue;
    }
    expect(st.coefNew[i]).toBe(dense.coefNew[i]);
    expect(Math.abs(st.coefOld[i]! - dense.coefOld[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(dense.coefOld[i]!) + 1e-12);
  }
  expect(differ).toBeLessThanOrEqual(1);
  expect(st.threshold).toBe(dense.threshold);
  return { st, dense, m, n };
}

describe('LoRA geometry in factor space equals the materialised geometry', () => {
  for (const rank of [1, 8, 64]) {
    it(`r = ${rank}, correlated and independent adapters`, async () => {
      const r = rng(100 + rank);
      const m = 96, n = 80;
      const o = linear(r, m, n, rank, 16 / rank);
      // new shares part of old's A (like adapters from one init): a mix of all three regions.
      const nw = linear(r, m, n, rank, 16 / rank, o.A.data as Float32Array, 0.7);
      const B0 = o.B.data as Float32Array, B1 = nw.B.data as Float32Array;
      for (let i = 0; i < m; i++) {
        const sgn = i % 3 === 0 ? 1 : i % 3 === 1 ? -1 : 0;
        for (let k = 0; k < rank; k++) B1[i * rank + k] = sgn * B0[i * rank + k]! + (1 - Math.abs(sgn) * 0.5) * B1[i * rank + k]!;
      }
      const { st } = await checkGeometry(o, nw, { fuseAligned: 0.5, forgetConflicting: 0.5 });
      if (rank > 1) {
        expect(st.counts.synergy).toBeGreaterThan(0);
        expect(st.counts.conflict).toBeGreaterThan(0);
        expect(st.counts.orthogonal).toBeGreaterThan(0);
      }
    });
  }

  it('different ranks and scales per side (rank_pattern / alpha_pattern, rsLoRA)', async () => {
    const r = rng(7);
    const o = linear(r, 50, 120, 4, 8 / 4);
    const nw = linear(r, 50, 120, 16, 32 / Math.sqrt(16)); // rsLoRA: alpha / sqrt(r)
    await checkGeometry(o, nw);
    await checkGeometry(o, nw, { strategy: 'forget-then-learn', lambda: 0.3 });
  });

  it('embeddings (lora_embedding_A [r, V], lora_embedding_B [D, r], tau = s (B A)^T)', async () => {
    const r = rng(11);
    const V = 70, D = 40, rank = 8;
    const mk = (): LoraFactors => ({ A: f32([rank, V], randn(r, rank * V, 0.1)), B: f32([D, rank], randn(r, D * rank, 0.1)), scale: 2, embedding: true });
    const o = mk(), nw = mk();
    const { st } = await checkGeometry(o, nw, { kappa: 0.5 });
    expect(st.rows).toBe(V);
    expect(st.cols).toBe(D);
  });

  it('a module present in only one adapter: cos 0, every row orthogonal', async () => {
    const r = rng(12);
    const nw = linear(r, 30, 20, 4, 1);
    const { st } = await checkGeometry(null, nw);
    expect(st.counts.orthogonal).toBe(30);
    for (const c of st.cos) expect(c).toBe(0);
    for (const c of st.coefNew) expect(c).toBe(0.75); // keepOrthogonal default (calibrated, docs/quality.md)
    const o = linear(r, 30, 20, 4, 1);
    const st2 = await analyzeLora({ old: o }, {});
    expect(st2.counts.orthogonal).toBe(30);
    expect(st2.energy.applied).toBe(0); // c_old = 0 on orthogonal rows: nothing applied
  });

  it('bf16 factors decode exactly before the Gram matrices', async () => {
    const r = rng(13);
    const o = linear(r, 40, 32, 8, 1), nw = linear(r, 40, 32, 8, 1);
    const toBf16 = (t: Tensor): Tensor => ({ dtype: 'bf16', shape: t.shape, data: loadNative().convert('f32', t.data, 'bf16') });
    const bo = { ...o, A: toBf16(o.A), B: toBf16(o.B) }, bn = { ...nw, A: toBf16(nw.A), B: toBf16(nw.B) };
    const st = await analyzeLora({ old: bo, new: bn });
    // Same as the f32 factors holding the bf16 values.
    const back = (t: Tensor): Tensor => ({ dtype: 'f32', shape: t.shape, data: loadNative().convert('bf16', t.data, 'f32') });
    const st2 = await analyzeLora({ old: { ...o, A: back(bo.A), B: back(bo.B) }, new: { ...nw, A: back(bn.A), B: back(bn.B) } });
    expect(Array.from(st.cos)).toEqual(Array.from(st2.cos));
  });

  it('the same bytes for 1 and N threads', async () => {
    const r = rng(14);
    const o = linear(r, 700, 300, 16, 1), nw = linear(r, 700, 300, 16, 1);
    const a = await analyzeLora({ old: o, new: nw }, { threads: 1 });
    const b = await analyzeLora({ old: o, new: nw }, { threads: 0 });
    expect(Buffer.from(a.cos.buffer).equals(Buffer.from(b.cos.buffer))).toBe(true);
    expect(Buffer.from(a.coefOld.buffer).equals(Buffer.from(b.coefOld.buffer))).toBe(true);
  });

  it('refuses density < 1, importance tensors and mismatched shapes with stable codes', async () => {
    const r = rng(15);
    const o = linear(r, 10, 12, 2, 1), nw = linear(r, 10, 12, 2, 1);
    await expect(analyzeLora({ old: o, new: nw }, { density: 0.5 })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
    await expect(analyzeLora({ old: o, new: nw }, { importanceOld: o.A } as never)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
    await expect(analyzeLora({ old: o, new: linear(r, 11, 12, 2, 1) })).rejects.toMatchObject({ code: 'ERR_SHAPE_MISMATCH' });
    await expect(analyzeLora({ old: { ...o, B: f32([10, 3], new Float32Array(30)) }, new: nw })).rejects.toMatchObject({ code: 'ERR_SHAPE_MISMATCH' });
    await expect(analyzeLora({})).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });
});

describe('the edited adapter equals the edit on full weights', () => {
  for (const [name, emb] of [['Linear', false], ['Embedding', true]] as const) {
    it(`${name}: s'B'A' = c_new tau_new + c_old tau_old, and base + B'A' = editTensor`, async () => {
      const r = rng(emb ? 21 : 22);
      const m = 64, n = 48;
      const mk = (rank: number, scale: number): LoraFactors => emb
        ? { A: f32([rank, m], randn(r, rank * m, 0.1)), B: f32([n, rank], randn(r, n * rank, 0.1)), scale, embedding: true }
        : linear(r, m, n, rank, scale);
      const o = mk(8, 2), nw = mk(4, 4);
      const opts = { fuseAligned: 0.7, forgetConflicting: 0.4, kappa: 1, keepOrthogonal: 0.5 }; // pinned: the f32 bound below was set with γ 0.5 (the default before calibration)
      const { adapter, stats } = await editLora({ old: o, new: nw }, opts);
      expect(adapter.rank).toBe(12);
      expect(adapter.embedding).toBe(emb);
      const t = tau64(adapter as unknown as LoraFactors & { scale: number });
      const to = tau64(o), tn = tau64(nw);
      // (a) the adapter's product, against c_new tau_new + c_old tau_old in f64; the only error is
      //     each factor entry's rounding to f32.
      //     Bound: 2^-23 * sum_k |B'_ik A'_kj| (the product of the absolute factors).
      const absT = (x: Tensor): Tensor => ({ ...x, data: (x.data as Float32Array).map(Math.abs) });
      const tAbs = tau64({ ...(adapter as unknown as LoraFactors), A: absT(adapter.A), B: absT(adapter.B), scale: 1 });
      let worst = 0;
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
        const want = stats.coefNew[i]! * tn.t[i * n + j]! + stats.coefOld[i]! * to.t[i * n + j]!;
        const err = Math.abs(t.t[i * n + j]! - want);
        expect(err).toBeLessThanOrEqual(2 ** -23 * tAbs.t[i * n + j]! + 1e-30);
        worst = Math.max(worst, err);
      }
      expect(worst).toBeGreaterThan(0); // the rounding is real, and bounded above
      // (b) base + B'A' against editTensor on full weights (old = base + tau_old, new = base + tau_new).
      const base = randn(r, m * n, 0.5);
      const old = new Float32Array(m * n), nwW = new Float32Array(m * n);
      const mo = materializeLora(o).data as Float32Array, mn = materializeLora(nw).data as Float32Array;
      for (let q = 0; q < m * n; q++) { old[q] = base[q]! + mo[q]!; nwW[q] = base[q]! + mn[q]!; }
      const full = await editTensor({ base: f32([m, n], base), old: f32([m, n], old), new: f32([m, n], nwW) }, opts);
      let checked = 0;
      for (let i = 0; i < m; i++) {
        if (full.stats.region[i] !== stats.region[i]) continue; // only rows at the threshold may differ
        checked++;
        for (let j = 0; j < n; j++) {
          const q = i * n + j;
          const got = Math.fround(base[q]! + t.t[q]!);
          const tol = 1e-6 * (Math.abs(base[q]!) + Math.abs(stats.coefNew[i]! * tn.t[q]!) + Math.abs(stats.coefOld[i]! * to.t[q]!))
            + 2 ** -23 * Math.abs(base[q]!); // old/new rounded to f32 as weights
          expect(Math.abs(got - full.out.data[q]!)).toBeLessThanOrEqual(tol);
        }
      }
      expect(checked).toBeGreaterThan(m - 3);
    });
  }
});

describe('merged full weights from the factors', () => {
  for (const transposed of [false, true]) {
    for (const dt of ['f32', 'bf16', 'f16'] as const) {
      it(`${transposed ? 'fan_in_fan_out (base [in, out])' : 'base [out, in]'}, ${dt}: bit-identical to the dense core on materialised rows`, async () => {
        const r = rng(transposed ? 31 : 32);
        const m = 37, n = 29;
        const o = linear(r, m, n, 8, 2), nw = linear(r, m, n, 5, 1.5);
        const prep = prepareLora({ old: o, new: nw }, { fuseAligned: 0.5, forgetConflicting: 0.5 });
        const g = await loraGeometry(prep);
        const baseNeuron = randn(r, m * n, 0.3);
        let baseData: Float32Array | Uint16Array = baseNeuron;
        if (dt !== 'f32') baseData = loadNative().convert('f32', baseNeuron, dt) as Uint16Array;
        // Stored layout.
        let stored: Float32Array | Uint16Array = baseData;
        if (transposed) {
          const T = baseData instanceof Float32Array ? Float32Array : Uint16Array;
          stored = new T(m * n);
          for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) stored[j * m + i] = baseData[i * n + j]!;
        }
        const storedRows = transposed ? n : m;
        // Two blocks, to exercise s0 > 0.
        const cut = Math.floor(storedRows / 2), w = transposed ? m : n;
        const p1 = await mergeLoraRows(prep, g.coefNew, g.coefOld, transposed, { dtype: dt, data: stored.subarray(0, cut * w) }, 0, cut, dt);
        const p2 = await mergeLoraRows(prep, g.coefNew, g.coefOld, transposed, { dtype: dt, data: stored.subarray(cut * w) }, cut, storedRows, dt);
        // Reference: the dense core with the same coefficients (strategy custom) on materialised rows.
        const ref = await loadNative().edit({
          rows: m, cols: n, base: baseData, baseDtype: dt, old: materializeLora(o).data as Float32Array, oldDtype: 'f32',
          new: materializeLora(nw).data as Float32Array, newDtype: 'f32', outDtype: dt, wantOut: true, threads: 0, tauGiven: true,
          cNew: g.coefNew, cOld: g.coefOld, params: { strategy: 'custom' },
        });
        const got = new (p1 instanceof Float32Array ? Float32Array : Uint16Array)(m * n);
        got.set(p1 as never, 0);
        got.set(p2 as never, cut * w);
        for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
          const s = transposed ? j * m + i : i * n + j;
          if (got[s] !== ref.out![i * n + j]) throw new Error(`mismatch at neuron ${i}, col ${j}: ${got[s]} vs ${ref.out![i * n + j]}`);
        }
      });
    }
  }

  it('density < 1 (materialised rows) equals editTensor on the task vectors, both layouts', async () => {
    const r = rng(41);
    const m = 33, n = 50;
    const o = linear(r, m, n, 8, 2), nw = linear(r, m, n, 8, 2);
    const opts = { density: 0.3, fuseAligned: 0.5 };
    const prep = prepareLora({ old: o, new: nw }, opts, 'test');
    const base = randn(r, m * n, 0.3);
    const mo = materializeLora(o).data as Float32Array, mn = materializeLora(nw).data as Float32Array;
    const ref = await loadNative().edit({
      rows: m, cols: n, base, baseDtype: 'f32', old: mo, oldDtype: 'f32', new: mn, newDtype: 'f32', outDtype: 'f32',
      wantOut: true, threads: 0, tauGiven: true, params: { strategy: 'geoedit', density: 0.3, fuseAligned: 0.5 },
    });
    const d = await denseLoraRows(prep, false, { dtype: 'f32', data: base }, 0, m, 'f32');
    expect(Array.from(d.out)).toEqual(Array.from(ref.out!));
    const bt = new Float32Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) bt[j * m + i] = base[i * n + j]!;
    const dt = await denseLoraRows(prep, true, { dtype: 'f32', data: bt }, 0, n, 'f32');
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) expect(dt.out[j * m + i]).toBe(ref.out![i * n + j]);
    // And tauGiven really edits task vectors: editTensor on weights old = base + tau agrees within f32 rounding.
    const old = new Float32Array(m * n), nwW = new Float32Array(m * n);
    for (let q = 0; q < m * n; q++) { old[q] = base[q]! + mo[q]!; nwW[q] = base[q]! + mn[q]!; }
    const full = await editTensor({ base: f32([m, n], base), old: f32([m, n], old), new: f32([m, n], nwW) }, opts);
    let maxd = 0;
    for (let q = 0; q < m * n; q++) maxd = Math.max(maxd, Math.abs(full.out.data[q]! - ref.out![q]!));
    expect(maxd).toBeLessThan(1e-5);
  });
});
