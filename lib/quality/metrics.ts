// Reliability, Generality, Locality as EasyEdit defines them (QUALITY.md).
import { makeBatch, type Prompt, type World } from './data';
import { predict, type ModelConfig, type Params } from './model';

export interface Scores {
  /** Share of edit prompts (training templates) that now give the new object. */
  reliability: number;
  /** Share of held-out paraphrases of the edit prompts that give the new object. */
  generality: number;
  /** Share of unrelated prompts whose prediction is the base model's. */
  locality: number;
}

export interface Scorer {
  score(p: Params): Scores;
  /** Base model accuracy on all facts (training templates) and on the held-out template. */
  baseAccuracy: { train: number; heldOut: number };
}

/** The base model's predictions on the Locality prompts (what Locality compares with). */
export function baseLocalityPredictions(w: World, mc: ModelConfig, base: Params): Int32Array {
  return predict(mc, base, makeBatch(w, w.locality, w.locality.map(() => 0)));
}

/** R/G/L of weights against recorded base predictions on the Locality prompts (geoedit demo-score). */
export function scoreAgainst(w: World, mc: ModelConfig, baseLoc: Int32Array): (p: Params) => Scores {
  const relP: Prompt[] = [], relT: number[] = [], genP: Prompt[] = [], genT: number[] = [];
  for (const e of w.edits) {
    for (const t of w.trainTemplates) { relP.push({ subject: e.subject, relation: e.relation, template: t }); relT.push(e.newObject); }
    genP.push({ subject: e.subject, relation: e.relation, template: w.heldOutTemplate });
    genT.push(e.newObject);
  }
  const rel = makeBatch(w, relP, relT), gen = makeBatch(w, genP, genT);
  const loc = makeBatch(w, w.locality, w.locality.map(() => 0));
  if (baseLoc.length !== w.locality.length) throw new Error(`scoreAgainst: ${baseLoc.length} base predictions for ${w.locality.length} Locality prompts`);
  return (p: Params): Scores => ({
    reliability: share(predict(mc, p, rel), relT),
    generality: share(predict(mc, p, gen), genT),
    locality: share(predict(mc, p, loc), baseLoc),
  });
}

function share(pred: Int32Array, want: ArrayLike<number>): number {
  let k = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === want[i]) k++;
  return pred.length ? k / pred.length : 1;
}

export function makeScorer(w: World, mc: ModelConfig, base: Params): Scorer {
  const locP = w.locality;
  const score = scoreAgainst(w, mc, baseLocalityPredictions(w, mc, base));
  // base accuracy (a check that pretraining memorised the facts and generalises to paraphrases)
  const R = w.config.relations;
  const accP: Prompt[] = [], accT: number[] = [], hoP: Prompt[] = [], hoT: number[] = [];
  for (const p of locP) {
    accP.push(p); accT.push(w.object[p.subject * R + p.relation]!);
    hoP.push({ ...p, template: w.heldOutTemplate }); hoT.push(w.object[p.subject * R + p.relation]!);
  }
  const baseAccuracy = {
    train: share(predict(mc, base, makeBatch(w, accP, accT)), accT),
    heldOut: share(predict(mc, base, makeBatch(w, hoP, hoT)), hoT),
  };
  return {
    baseAccuracy,
    score,
  };
}
