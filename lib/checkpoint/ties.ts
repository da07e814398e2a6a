// Tied weights: an output head that is the input embedding (tie_word_embeddings). Either the head
// is not stored (transformers drops it: the edited embedding serves both), or both are stored as
// byte-identical copies: then the head is not edited again, it gets the embedding's output bytes
// ("edit once, write the same bytes"). Only the head/embedding name pairs below are compared.
import * as fs from 'node:fs';
import type { Checkpoint, CheckpointTensor } from './open';
import type { ModelFamily } from './layout';

export interface TieRecord {
  /** The tensor that is edited (the embedding). */
  tensor: string;
  /** The tensor tied to it (the head). */
  with: string;
  /** Whether `with` is stored in the base (false: absent, the model ties it at load). */
  stored: boolean;
  why: string;
}

const HEAD = /(^|\.)lm_head\.weight$/;
const EMBEDDING = /(^|\.)(wte|embed_tokens|word_embeddings|tok_embeddings|embed_in)\.weight$/;
const CHUNK = 1 << 20;

function sameBytes(a: CheckpointTensor, b: CheckpointTensor): boolean {
  const len = a.end - a.begin;
  if (len !== b.end - b.begin) return false;
  const fa = fs.openSync(a.file, 'r');
  const fb = fs.openSync(b.file, 'r');
  try {
    const ba = Buffer.allocUnsafe(Math.min(CHUNK, len)), bb = Buffer.allocUnsafe(Math.min(CHUNK, len));
    for (let off = 0; off < len; off += CHUNK) {
      const n = Math.min(CHUNK, len - off);
      if (fs.readSync(fa, ba, 0, n, a.begin + off) !== n || fs.readSync(fb, bb, 0, n, b.begin + off) !== n) return false;
      if (ba.compare(bb, 0, n, 0, n) !== 0) return false;
    }
    return true;
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}

const same = (c: Checkpoint, x: string, y: string): boolean => {
  const a = c.byName.get(x), b = c.byName.get(y);
  return !!a && !!b && sameBytes(a, b);
};

/** The ties of a base (and whether old and new keep them), with warnings where they disagree. */
export function findTies(ck: { base: Checkpoint; old: Checkpoint; new: Checkpoint }, fam: ModelFamily, warnings: string[]): TieRecord[] {
  const embs = ck.base.tensors.filter((t) => t.shape.length === 2 && EMBEDDING.test(t.name));
  const heads = ck.base.tensors.filter((t) => t.shape.length === 2 && HEAD.test(t.name));
  const cfgWhy = fam.tieWordEmbeddings === null ? '' : `tie_word_embeddings ${fam.tieWordEmbeddings}${fam.tieSource === 'default' ? " (absent from config.json: transformers' default)" : ' (config.json)'}`;
  const ties: TieRecord[] = [];
  if (heads.length === 0 && fam.tieWordEmbeddings === true && embs.length === 1) {
    ties.push({ tensor: embs[0]!.name, with: 'lm_head.weight', stored: false, why: `${cfgWhy}: lm_head.weight is not stored; the model uses the edited embedding as its output head too` });
    return ties;
  }
  for (const h of heads) {
    const e = embs.find((x) => x.dtype === h.dtype && x.shape.length === h.shape.length && x.shape.every((d, i) => d === h.shape[i]));
    if (!e) continue;
    const inBase = sameBytes(e, h);
    const kept = inBase && same(ck.old, e.name, h.name) && same(ck.new, e.name, h.name);
    if (kept) {
      ties.push({ tensor: e.name, with: h.name, stored: true, why: `byte-identical in base, old and new${cfgWhy ? ` (${cfgWhy})` : ''}: edited once, the same bytes written to both` });
    } else if (fam.tieWordEmbeddings === true) {
      ties.push({ tensor: e.name, with: h.name, stored: true, why: `${cfgWhy}: the model ties them at load, so '${h.name}' is written as the edited '${e.name}'` });
      warnings.push(`'${h.name}' and '${e.name}' are tied by ${cfgWhy} but differ in ${inBase ? 'old or new' : 'the base'}: '${h.name}' is written as the edited '${e.name}' (what the model loads)`);
    } else if (inBase) {
      warnings.push(`'${h.name}' and '${e.name}' are byte-identical in the base but differ in old or new: edited separately (untied)`);
    }
  }
  return ties;
}
