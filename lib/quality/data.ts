// The fact world: subjects × relations → objects, paraphrase templates per relation (one held
// out for Generality), ~1% of facts edited to a new object. Deterministic from a seed.
import { Rng } from './prng';

export interface WorldConfig {
  subjects: number;
  relations: number;
  objects: number;
  /** Paraphrase templates per relation; the last one is held out (never trained on). */
  templates: number;
  /** Words that name each relation (templates combine them with filler words). */
  relationWords: number;
  fillers: number;
  /** Share of facts edited (each on a distinct subject). */
  editShare: number;
  /** Unrelated prompts scored for Locality (capped by what exists). */
  localityPrompts: number;
}

export interface Prompt {
  subject: number;
  relation: number;
  template: number;
}

export interface Edit {
  subject: number;
  relation: number;
  oldObject: number;
  newObject: number;
}

export interface World {
  config: WorldConfig;
  seed: number;
  /** Token vocabulary: subjects first, then relation words, then fillers. */
  vocab: number;
  /** object[s * relations + r] */
  object: Int32Array;
  /** templateTokens[r][t]: token ids (not counting the subject) */
  templateTokens: number[][][];
  trainTemplates: number[];
  heldOutTemplate: number;
  edits: Edit[];
  /** Prompts for Locality: subjects not edited, every relation, a random template each. */
  locality: Prompt[];
}

export function makeWorld(config: WorldConfig, seed: number): World {
  const rng = new Rng(seed * 7919 + 17);
  const { subjects: S, relations: R, objects: O, templates: T, relationWords: W, fillers: F } = config;
  if (T < 2) throw new Error('makeWorld: need at least 2 templates (one is held out)');
  const object = new Int32Array(S * R);
  for (let i = 0; i < object.length; i++) object[i] = rng.int(O);
  const relBase = S;
  const fillBase = S + R * W;
  const vocab = fillBase + F;
  const templateTokens: number[][][] = [];
  for (let r = 0; r < R; r++) {
    // every template: two distinct relation words of r + one filler; all templates distinct
    const combos: number[][] = [];
    for (let a = 0; a < W; a++) for (let b = a + 1; b < W; b++) for (let f = 0; f < F; f++) combos.push([relBase + r * W + a, relBase + r * W + b, fillBase + f]);
    rng.shuffle(combos);
    if (combos.length < T) throw new Error('makeWorld: not enough word combinations for the templates');
    templateTokens.push(combos.slice(0, T));
  }
  const trainTemplates = Array.from({ length: T - 1 }, (_, i) => i);
  const heldOutTemplate = T - 1;
  const nEdits = Math.max(1, Math.round(config.editShare * S * R));
  const subs = Array.from({ length: S }, (_, i) => i);
  rng.shuffle(subs);
  const edits: Edit[] = [];
  const edited = new Uint8Array(S);
  for (let e = 0; e < nEdits; e++) {
    const s = subs[e % S]!;
    edited[s] = 1;
    const r = rng.int(R);
    const oldObject = object[s * R + r]!;
    let newObject = rng.int(O - 1);
    if (newObject >= oldObject) newObject++;
    edits.push({ subject: s, relation: r, oldObject, newObject });
  }
  const locality: Prompt[] = [];
  for (let s = 0; s < S; s++) {
    if (edited[s]) continue;
    for (let r = 0; r < R; r++) locality.push({ subject: s, relation: r, template: trainTemplates[rng.int(trainTemplates.length)]! });
  }
  rng.shuffle(locality);
  locality.length = Math.min(locality.length, config.localityPrompts);
  return { config, seed, vocab, object, templateTokens, trainTemplates, heldOutTemplate, edits, locality };
}

/** Token ids of a prompt: [subject, ...template words]. */
export function promptTokens(w: World, p: Prompt): number[] {
  return [p.subject, ...w.templateTokens[p.relation]![p.template]!];
}

export interface Batch {
  /** tokens[b * L + j] (all prompts have the same length L) */
  tokens: Int32Array;
  targets: Int32Array;
  size: number;
  len: number;
}

export function makeBatch(w: World, prompts: Prompt[], targets: ArrayLike<number>): Batch {
  const L = 1 + w.templateTokens[0]![0]!.length;
  const tokens = new Int32Array(prompts.length * L);
  prompts.forEach((p, b) => promptTokens(w, p).forEach((t, j) => (tokens[b * L + j] = t)));
  return { tokens, targets: Int32Array.from(targets), size: prompts.length, len: L };
}

/** All facts with every training template (the pretraining set). */
export function allFactPrompts(w: World): { prompts: Prompt[]; targets: number[] } {
  const prompts: Prompt[] = [];
  const targets: number[] = [];
  const R = w.config.relations;
  for (let s = 0; s < w.config.subjects; s++) {
    for (let r = 0; r < R; r++) {
      for (const t of w.trainTemplates) {
        prompts.push({ subject: s, relation: r, template: t });
        targets.push(w.object[s * R + r]!);
      }
    }
  }
  return { prompts, targets };
}

/** The edit prompts (training templates) with their old or new objects: D_old / D_new. */
export function editSet(w: World, which: 'old' | 'new'): { prompts: Prompt[]; targets: number[] } {
  const prompts: Prompt[] = [];
  const targets: number[] = [];
  for (const e of w.edits) {
    for (const t of w.trainTemplates) {
      prompts.push({ subject: e.subject, relation: e.relation, template: t });
      targets.push(which === 'old' ? e.oldObject : e.newObject);
    }
  }
  return { prompts, targets };
}

/**
 * The preserved sample (QUALITY.md step 4): unrelated facts (subjects not edited) that are NOT among
 * the Locality prompts' facts, each with every training template. `maxFacts` draws a smaller sample
 * (deterministic from the world's seed). Locality is never measured on these facts.
 */
export function preservedSample(w: World, maxFacts?: number): { prompts: Prompt[]; facts: number } {
  const R = w.config.relations;
  const edited = new Uint8Array(w.config.subjects);
  for (const e of w.edits) edited[e.subject] = 1;
  const inLocality = new Uint8Array(w.config.subjects * R);
  for (const p of w.locality) inLocality[p.subject * R + p.relation] = 1;
  const facts: number[] = [];
  for (let s = 0; s < w.config.subjects; s++) {
    if (edited[s]) continue;
    for (let r = 0; r < R; r++) if (!inLocality[s * R + r]) facts.push(s * R + r);
  }
  if (maxFacts !== undefined && maxFacts < facts.length) {
    new Rng(w.seed * 6007 + 29).shuffle(facts);
    facts.length = Math.max(1, maxFacts);
    facts.sort((a, b) => a - b);
  }
  const prompts: Prompt[] = [];
  for (const f of facts) for (const t of w.trainTemplates) prompts.push({ subject: Math.floor(f / R), relation: f % R, template: t });
  return { prompts, facts: facts.length };
}
