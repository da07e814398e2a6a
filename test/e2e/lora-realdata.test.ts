// Real PEFT adapters from ../shared/realdata (see INDEX.md there): P1 H vs T500 (independent),
// P3 W125 vs W1000 (GPT-2, fan_in_fan_out, shared init), P4 T100 vs T500 (same run), D (PEFT 0.20).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { analyzeTensor, editTensor } from '../../lib/index';
import { readPeftAdapter, analyzeAdapters, editAdapters, loadModuleFactors } from '../../lib/lora';
import { analyzeLora, materializeLora } from '../../lib/lora-math';
import { readSafetensorsHeaderSync, readTensor, writeSafetensors } from '../../lib/safetensors';
import { loadNative } from '../../lib/native';
import { tmpDir, tauOf } from '../support/lora';
import { REAL as REALDATA, haveReal as HAVE_REALDATA } from '../support/paths';
import { rng, randn } from '../support/prng';

const H = path.join(REALDATA, 'Hareshjethani__BERT-GPT2-Multitask-Finetuning');
const T100 = path.join(REALDATA, 'T-Sharif__lightweight-fine-tuning/peft_results/checkpoint-100');
const T500 = path.join(REALDATA, 'T-Sharif__lightweight-fine-tuning/peft_results/checkpoint-500');
const W125 = path.join(REALDATA, 'winkitee__Lightweight-Fine-Tuning-Project/lora-gpt2-imdb/checkpoint-125');
const W1000 = path.join(REALDATA, 'winkitee__Lightweight-Fine-Tuning-Project/lora-gpt2-imdb/checkpoint-1000');
const D = path.join(REALDATA, 'dayanidhi04__emotion-classification-distilbert-lora');

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

if (!HAVE_REALDATA) {
  describe('real PEFT adapters', () => {
    it.skip(`skipped: ${REALDATA} is absent (the shared real-data folder is not part of the package)`, () => undefined);
  });
} else {
  describe('real PEFT adapters: read, analyse, edit', () => {
    it('reads every config generation (PEFT 0.5 without rslora keys, 0.14, 0.20 with many extra keys)', () => {
      const t = readPeftAdapter(T100), h = readPeftAdapter(H), w = readPeftAdapter(W125), d = readPeftAdapter(D);
      expect(t.modules.size).toBe(24);
      expect(h.modules.size).toBe(24);
      expect(w.modules.size).toBe(12);
      expect(d.modules.size).toBe(12);
      expect(t.modules.get('bert.encoder.layer.0.attention.self.query')!.scale).toBe(1); // alpha 8 / r 8
      expect(h.modules.get('bert.encoder.layer.0.attention.self.query')!.scale).toBe(4); // 32 / 8
      expect(w.modules.get('transformer.h.0.attn.c_attn')!.scale).toBe(2); // 16 / 8
      expect(w.fanInFanOut).toBe(true);
      expect(w.modules.get('transformer.h.0.attn.c_attn')!.rows).toBe(2304); // B [2304, 8]: rows = output units
      expect(w.modules.get('transformer.h.0.attn.c_attn')!.cols).toBe(768);
      expect(d.extras.map((x) => x.name).sort()).toEqual([
        'base_model.model.classifier.bias', 'base_model.model.classifier.weight',
        'base_model.model.pre_classifier.bias', 'base_model.model.pre_classifier.weight',
      ]);
      expect(t.extras.map((x) => x.name).sort()).toEqual(['base_model.model.classifier.bias', 'base_model.model.classifier.weight']);
    });

    const pairs: Array<[string, string, string, number, (meanCos: number) => void]> = [
      ['P1 H vs T500 (independent)', H, T500, 24, (c) => expect(Math.abs(c)).toBeLessThan(0.05)],
      ['P3 W125 vs W1000 (shared init)', W125, W1000, 12, (c) => expect(c).toBeGreaterThan(0.02)],
      ['P4 T100 vs T500 (same run)', T100, T500, 24, (c) => expect(c).toBeGreaterThan(0.8)],
    ];
    for (const [label, oldDir, newDir, nmod, checkCos] of pairs) {
      it(`${label}: factor geometry = materialised geometry, and the edited adapter is exact`, async () => {
        const rep = await analyzeAdapters({ old: oldDir, new: newDir });
        expect(rep.modules.length).toBe(nmod);
        let s = 0;
        for (const m of rep.modules) s += m.meanCos;
        checkCos(s / rep.modules.length);
        // One module in detail: factor geometry vs analyzeTensor on materialised tau.
        const oa = readPeftAdapter(oldDir), na = readPeftAdapter(newDir);
        const name = [...na.modules.keys()][3]!;
        const fo = await loadModuleFactors(oa, name), fn = await loadModuleFactors(na, name);
        const st = await analyzeLora({ old: fo, new: fn });
        const mo = materializeLora(fo), mn = materializeLora(fn);
        const zeros = { dtype: 'f32' as const, shape: mo.shape, data: new Float32Array(mo.data.length) };
        const dense = await analyzeTensor({ base: zeros, old: mo, new: mn });
        for (let i = 0; i < st.rows; i++) {
          expect(Math.abs(st.cos[i]! - dense.cos[i]!)).toBeLessThan(1e-6);
          if (Math.abs(Math.abs(dense.cos[i]!) - dense.threshold) > 1e-6) expect(st.region[i]).toBe(dense.region[i]);
        }
        // And against the f64 definition, on the first rows (SPEC §5: 1e-9).
        const sm = (f: typeof fo) => ({ name, A: f.A.data as Float32Array, B: f.B.data as Float32Array, r: f.A.shape[0]!, rows: st.rows, cols: st.cols });
        const tO = tauOf(sm(fo), fo.scale), tN = tauOf(sm(fn), fn.scale);
        for (let i = 0; i < Math.min(64, st.rows); i++) {
          let d = 0, x = 0, y = 0;
          for (let j = 0; j < st.cols; j++) {
            const a = tO[i * st.cols + j]!, b = tN[i * st.cols + j]!;
            d += a * b; x += a * a; y += b * b;
          }
          expect(Math.abs(st.cos[i]! - d / Math.sqrt(x * y))).toBeLessThan(1e-9);
        }
        // The edited adapter: rank 16, scale 1, and s'B'A' = c_new tau_new + c_old tau_old.
        const out = path.join(tmpDir('real'), 'edited');
        dirs.push(path.dirname(out));
        const man = await editAdapters({ old: oldDir, new: newDir, out }, { fuseAligned: 0.5, forgetConflicting: 0.5, kappa: 1.5, perRow: true } /* kappa pinned: at the default 2 every row of this independent pair is orthogonal, c_old = 0 and the old block is dropped */);
        const ed = readPeftAdapter(out);
        expect(ed.modules.size).toBe(nmod);
        const em = ed.modules.get(name)!;
        expect(em.r).toBe(16);
        expect(em.scale).toBe(1);
        expect(ed.fanInFanOut).toBe(oa.fanInFanOut);
        const fe = await loadModuleFactors(ed, name);
        const tE = tauOf(sm(fe), 1);
        // The only error is each factor entry's rounding to f32: bounded by 2^-23 sum_k |B'_ik A'_kj|.
        const abs = (f: typeof fe) => ({ ...sm(f), A: (f.A.data as Float32Array).map(Math.abs), B: (f.B.data as Float32Array).map(Math.abs) });
        const tAbs = tauOf(abs(fe), 1);
        const stE = man.perRow![name]!;
        for (let i = 0; i < Math.min(32, st.rows); i++) for (let j = 0; j < st.cols; j++) {
          const q = i * st.cols + j;
          const want = stE.coefNew[i]! * tN[q]! + stE.coefOld[i]! * tO[q]!;
          expect(Math.abs(tE[q]! - want)).toBeLessThanOrEqual(2 ** -23 * tAbs[q]! + 1e-30);
        }
        // The new adapter's head is kept (P1: [5, 768] from T500, not H's [2, 768]).
        for (const t of na.extras) expect(ed.extras.find((x) => x.name === t.name)!.shape).toEqual(t.shape);
        // The written config loads as PEFT expects: r = lora_alpha, no rslora, target modules kept.
        expect(ed.config.r).toBe(16);
        expect(ed.config.lora_alpha).toBe(16);
        expect(ed.config.target_modules).toEqual(na.config.target_modules);
      });
    }

    it('P3 (GPT-2 Conv1D, fan_in_fan_out) merged into a bf16 base [in, out]: equal to editTensor within one bf16 ulp', async () => {
      const r = rng(99);
      const w = readPeftAdapter(W125);
      const dir = tmpDir('gpt2');
      dirs.push(dir);
      // A GPT-2-shaped base holding the c_attn weights ([768, 2304], Conv1D) and one other tensor.
      const base: Array<{ name: string; dtype: 'BF16'; shape: number[]; data: Uint16Array }> = [];
      for (const name of w.modules.keys()) {
        base.push({ name: `${name.replace(/^transformer\./, '')}.weight`, dtype: 'BF16', shape: [768, 2304], data: loadNative().convert('f32', randn(r, 768 * 2304, 0.02), 'bf16') as Uint16Array });
      }
      base.push({ name: 'ln_f.weight', dtype: 'BF16', shape: [768], data: loadNative().convert('f32', randn(r, 768), 'bf16') as Uint16Array });
      const bpath = path.join(dir, 'model.safetensors');
      await writeSafetensors(bpath, base);
      const outDir = path.join(dir, 'merged');
      const out = path.join(outDir, 'model.safetensors');
      const man = await editAdapters({ old: W125, new: W1000, out: outDir, base: bpath }, { perRow: true });
      expect(man.modules.every((m) => m.transposed === true)).toBe(true);
      expect(man.modules[0]!.baseTensor).toBe('h.0.attn.c_attn.weight');
      expect(man.extras).toEqual([{ tensor: 'base_model.model.score.weight', from: 'new', action: 'added-to-base' }]);
      // One module against editTensor on full weights in neuron layout.
      const name = 'transformer.h.5.attn.c_attn';
      const fo = await loadModuleFactors(readPeftAdapter(W125), name), fn = await loadModuleFactors(readPeftAdapter(W1000), name);
      const mo = materializeLora(fo).data as Float32Array, mn = materializeLora(fn).data as Float32Array;
      const bt = base.find((b) => b.name === 'h.5.attn.c_attn.weight')!;
      const bF = loadNative().convert('bf16', bt.data, 'f32') as Float32Array;
      const m = 2304, n = 768;
      const baseN = new Uint16Array(m * n), oldW = new Float32Array(m * n), newW = new Float32Array(m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
        baseN[i * n + j] = bt.data[j * m + i]!;
        oldW[i * n + j] = bF[j * m + i]! + mo[i * n + j]!;
        newW[i * n + j] = bF[j * m + i]! + mn[i * n + j]!;
      }
      const ref = await editTensor({ base: { dtype: 'bf16', shape: [m, n], data: baseN }, old: { dtype: 'f32', shape: [m, n], data: oldW }, new: { dtype: 'f32', shape: [m, n], data: newW } });
      const got = (await readTensor(out, 'h.5.attn.c_attn.weight', readSafetensorsHeaderSync(out))).data as Uint16Array;
      const st = man.perRow![name]!;
      let ulps = 0, rowsCompared = 0;
      for (let i = 0; i < m; i++) {
        if (st.region[i] !== ref.stats.region[i]) continue;
        rowsCompared++;
        for (let j = 0; j < n; j++) {
          const a = got[j * m + i]!, b = ref.out.data[i * n + j]!;
          // Same sign: the bit patterns of bf16 differ by the number of ulps between them.
          const d = (a & 0x8000) === (b & 0x8000) ? Math.abs(a - b) : (a & 0x7fff) + (b & 0x7fff);
          ulps = Math.max(ulps, d);
        }
      }
      expect(rowsCompared).toBeGreaterThan(m - 5);
      expect(ulps).toBeLessThanOrEqual(1);
      const ln = await readTensor(out, 'ln_f.weight');
      expect(Array.from(ln.data as Uint16Array)).toEqual(Array.from(base.at(-1)!.data));
    });
  });
}
