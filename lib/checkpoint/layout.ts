// Tensor layouts (SPEC §2): which axis of a stored tensor holds the neurons. The rule, in order:
//   1. the `layout` option: { glob: kind }, the first glob (in the object's order) that matches a name;
//   2. the model family named by the base's config.json (`model_type`, else `architectures`):
//      GPT-2 and the models built on transformers' Conv1D store those layers [in, out] -> `columns`;
//      fused expert tensors (`*.experts.gate_up_proj` / `*.experts.down_proj`, 3-D) -> `experts`
//      ([E, out, in], transformers 5), or `experts-columns` ([E, in, out]) for gpt_oss and llama4;
//   3. `rows` ([out, in], and [out, in, k…] for convolutions).
// A pure function of the names, shapes, config and options: the plan (and every partition of it)
// sees the same layouts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError, describe } from '../errors';
import { globToRegExp, type GlobMatcher } from './globs';

export const LAYOUT_KINDS = ['rows', 'columns', 'experts', 'experts-columns'] as const;
export type LayoutKind = (typeof LAYOUT_KINDS)[number];
export type LayoutSource = 'option' | 'detected' | 'default';

/** The neurons of one tensor: `rows` neurons of length `cols`; columns kinds are `groups` stored matrices [cols, rows/groups]. */
export interface TensorLayout {
  kind: LayoutKind;
  source: LayoutSource;
  /** Why, in words ("option 'h.*.c_fc.weight=columns'", "gpt2 family: Conv1D weight [in, out]", …). */
  why: string;
  rows: number;
  cols: number;
  /** Stored matrices (experts-columns: E; else 1). */
  groups: number;
  /** The neurons are columns of the stored matrices (columns, experts-columns). */
  columns: boolean;
}

/** What the base's config.json says about the model (null fields: not said, or no config). */
export interface ModelFamily {
  /** config.json beside the base weights, or null when there is none. */
  config: string | null;
  modelType: string | null;
  architectures: string[];
  /** The family whose layout rules apply ('gpt2', 'openai-gpt', …), null: none known. */
  family: string | null;
  /** Which tensors of that family are detected as columns (words, for inspect and the manifest). */
  rule: string | null;
  tieWordEmbeddings: boolean | null;
  /** 'config': said by config.json; 'default': absent there (transformers' default, true). */
  tieSource: 'config' | 'default' | null;
}

interface FamilyRule {
  family: string;
  modelTypes: string[];
  /** Architecture class names start with one of these. */
  archPrefixes: string[];
  columns: RegExp;
  columnsDoc: string;
  expertsColumns?: boolean;
}

// The models whose transformers implementation uses pytorch_utils.Conv1D (weight [in, out]):
// gpt2 (attn and crossattention c_attn/q_attn/c_proj, mlp c_fc/c_proj), openai-gpt, imagegpt,
// decision_transformer (its GPT-2 blocks), clvp (the decoder's GPT-2 MLP only).
const GPT2_CONV1D = /(^|\.)(attn|crossattention)\.(c_attn|q_attn|c_proj)\.weight$|(^|\.)mlp\.(c_fc|c_proj)\.weight$/;
const GPT2_DOC = '*.attn.{c_attn,q_attn,c_proj}.weight, *.crossattention.{c_attn,q_attn,c_proj}.weight, *.mlp.{c_fc,c_proj}.weight';
const NEVER = /$^/;
const FAMILIES: FamilyRule[] = [
  { family: 'gpt2', modelTypes: ['gpt2'], archPrefixes: ['GPT2'], columns: GPT2_CONV1D, columnsDoc: GPT2_DOC },
  { family: 'openai-gpt', modelTypes: ['openai-gpt'], archPrefixes: ['OpenAIGPT'], columns: GPT2_CONV1D, columnsDoc: GPT2_DOC },
  { family: 'imagegpt', modelTypes: ['imagegpt'], archPrefixes: ['ImageGPT'], columns: GPT2_CONV1D, columnsDoc: GPT2_DOC },
  { family: 'decision_transformer', modelTypes: ['decision_transformer'], archPrefixes: ['DecisionTransformer'], columns: GPT2_CONV1D, columnsDoc: GPT2_DOC },
  { family: 'clvp', modelTypes: ['clvp'], archPrefixes: ['Clvp'], columns: /(^|\.)mlp\.(c_fc|c_proj)\.weight$/, columnsDoc: '*.mlp.{c_fc,c_proj}.weight (the decoder\'s GPT-2 MLP)' },
  // Fused experts stored [E, in, out] (x @ W per expert).
  { family: 'gpt_oss', modelTypes: ['gpt_oss'], archPrefixes: ['GptOss'], columns: NEVER, columnsDoc: '', expertsColumns: true },
  { family: 'llama4', modelTypes: ['llama4', 'llama4_text'], archPrefixes: ['Llama4'], columns: NEVER, columnsDoc: '', expertsColumns: true },
];
const FUSED_EXPERTS = /(^|\.)experts\.(gate_up_proj|down_proj)$/;

function ruleOf(modelType: string | null, archs: string[]): FamilyRule | null {
  if (modelType) {
    const r = FAMILIES.find((f) => f.modelTypes.includes(modelType));
    if (r) return r;
  }
  return FAMILIES.find((f) => archs.some((a) => f.archPrefixes.some((p) => a.startsWith(p)))) ?? null;
}

/** Reads the config.json of the base's directory (headers only; no config: every field null). */
export function readModelFamily(dir: string | null, warnings?: string[]): ModelFamily {
  const none: ModelFamily = { config: null, modelType: null, architectures: [], family: null, rule: null, tieWordEmbeddings: null, tieSource: null };
  if (!dir) return none;
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return none;
  }
  let cfg: Record<string, unknown>;
  try {
    const j = JSON.parse(text) as unknown;
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error(`not a JSON object (${describe(j)})`);
    cfg = j as Record<string, unknown>;
  } catch (e) {
    warnings?.push(`${file}: not read (${(e as Error).message}); every tensor uses the layout 'rows' unless the layout option says otherwise`);
    return { ...none, config: file };
  }
  const modelType = typeof cfg.model_type === 'string' ? cfg.model_type : null;
  const architectures = Array.isArray(cfg.architectures) ? cfg.architectures.filter((a): a is string => typeof a === 'string') : [];
  const r = ruleOf(modelType, architectures);
  const tie = typeof cfg.tie_word_embeddings === 'boolean' ? cfg.tie_word_embeddings : null;
  return {
    config: file, modelType, architectures, family: r?.family ?? null,
    rule: r ? (r.expertsColumns ? 'fused experts [E, in, out] -> experts-columns' : `Conv1D weights [in, out] -> columns: ${r.columnsDoc}`) : null,
    // Absent: transformers' PretrainedConfig default, true (save_pretrained omits values equal to it).
    tieWordEmbeddings: tie ?? true, tieSource: tie === null ? 'default' : 'config',
  };
}

/** The `layout` option checked: { glob: kind } in the given order. */
export function parseLayoutOption(v: unknown): Array<{ glob: string; re: GlobMatcher; kind: LayoutKind }> {
  if (v === undefined) return [];
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    throw new GeoEditError('ERR_INVALID_OPTION', `Expected an object { glob: kind } for option 'layout' but received ${describe(v)}`, { option: 'layout' });
  }
  return Object.entries(v as Record<string, unknown>).map(([glob, kind]) => {
    if (!glob) throw new GeoEditError('ERR_INVALID_OPTION', "option 'layout': an empty glob", { option: 'layout' });
    if (typeof kind !== 'string' || !(LAYOUT_KINDS as readonly string[]).includes(kind)) {
      throw new GeoEditError('ERR_INVALID_OPTION', `option 'layout': '${glob}' maps to ${describe(kind)}; expected one of ${LAYOUT_KINDS.join(', ')}`, { option: 'layout' });
    }
    return { glob, re: globToRegExp(glob, 'layout'), kind: kind as LayoutKind };
  });
}

const RANK: Record<LayoutKind, number | null> = { rows: null, columns: 2, experts: 3, 'experts-columns': 3 };
const SHAPE_DOC: Record<LayoutKind, string> = { rows: '[out, in, …]', columns: '[in, out]', experts: '[E, out, in]', 'experts-columns': '[E, in, out]' };

/** rows × cols of the neuron view, and the stored matrices, for a kind and a shape. */
export function layoutView(kind: LayoutKind, shape: number[]): Pick<TensorLayout, 'rows' | 'cols' | 'groups' | 'columns'> {
  switch (kind) {
    case 'columns': return { rows: shape[1]!, cols: shape[0]!, groups: 1, columns: true };
    case 'experts': return { rows: shape[0]! * shape[1]!, cols: shape[2]!, groups: 1, columns: false };
    case 'experts-columns': return { rows: shape[0]! * shape[2]!, cols: shape[1]!, groups: shape[0]!, columns: true };
    default: {
      if (shape.length === 0) return { rows: 1, cols: 1, groups: 1, columns: false };
      if (shape.length === 1) return { rows: 1, cols: shape[0]!, groups: 1, columns: false };
      let cols = 1;
      for (let i = 1; i < shape.length; i++) cols *= shape[i]!;
      return { rows: shape[0]!, cols, groups: 1, columns: false };
    }
  }
}

/** The layout of every float tensor: option, else family, else rows (see the top of this file). */
export function resolveLayouts(
  tensors: Array<{ name: string; shape: number[] }>, option: ReturnType<typeof parseLayoutOption>, fam: ModelFamily, warnings: string[],
): Map<string, TensorLayout> {
  const rule = fam.family ? FAMILIES.find((f) => f.family === fam.family)! : null;
  const used = new Set<string>();
  const out = new Map<string, TensorLayout>();
  for (const t of tensors) {
    const o = option.find((e) => e.re.test(t.name));
    let kind: LayoutKind = 'rows', source: LayoutSource = 'default', why = 'default: [out, in]';
    if (o) {
      used.add(o.glob);
      const rank = RANK[o.kind];
      if (rank !== null && t.shape.length !== rank) {
        throw new GeoEditError('ERR_INVALID_OPTION', `option 'layout': '${o.glob}=${o.kind}' matches tensor '${t.name}' of shape [${t.shape.join(', ')}], but ${o.kind} needs ${SHAPE_DOC[o.kind]} (${rank}-D)`, { option: 'layout', tensor: t.name });
      }
      kind = o.kind; source = 'option'; why = `option '${o.glob}=${o.kind}'`;
    } else if (rule && t.shape.length === 2 && rule.columns.test(t.name)) {
      kind = 'columns'; source = 'detected'; why = `${rule.family} family (${path.basename(fam.config ?? 'config.json')}): Conv1D weight stored [in, out]`;
    } else if (fam.config && t.shape.length === 3 && FUSED_EXPERTS.test(t.name)) {
      kind = rule?.expertsColumns ? 'experts-columns' : 'experts'; source = 'detected';
      why = rule?.expertsColumns ? `${rule.family} family: fused experts stored [E, in, out]` : 'fused experts [E, out, in] (transformers layout)';
    }
    out.set(t.name, { kind, source, why, ...layoutView(kind, t.shape) });
  }
  for (const e of option) if (!used.has(e.glob)) warnings.push(`option 'layout': '${e.glob}=${e.kind}' matches no tensor`);
  return out;
}
