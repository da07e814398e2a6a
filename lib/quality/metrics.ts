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

export function makeScorer(w: World, mc: ModelConfig, base: Params): Scorer {
  const relP: Prompt[] = [], relT: number[] = [], genP: Prompt[] = [], genT: number[] = [];
  for (const e of w.edits) {
    for (const t of w.trainTemplates) { relP.push({ subject: e.subject, relation: e.relation, template: t }); relT.push(e.newObject); }
    genP.push({ subject: e.subject, relation: e.relation, template: w.heldOutTemplate });
    genT.push(e.newObject);
  }
  const rel = makeBatch(w, relP, relT), gen = makeBatch(w, genP, genT);
  const locP = w.locality;
  const loc = makeBatch(w, locP, locP.map(() => 0));
  const baseLoc = predict(mc, base, loc);
  const share = (pred: Int32Array, want: ArrayLike<number>): number => {
    let k = 0;
    for (let i = 0; i < pred.length; i++) if (pred[i] === want[i]) k++;
    return pred.length ? k / pred.length : 1;
  };
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
    score(p: Params): Scores {
      return {
        reliability: share(predict(mc, p, rel), relT),
        generality: share(predict(mc, p, gen), genT),
        locality: share(predict(mc, p, loc), baseLoc),
      };
    },
  };
}
