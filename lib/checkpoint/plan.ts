// Planning a checkpoint job: which tensors are edited, copied or converted (checked against each
// other and against the importance checkpoints), and the output's shard layout.
import { GeoEditError } from '../errors';
import { EDITABLE_ST_DTYPES, ST_DTYPE_SIZE, stDtypeOf, type StDtype } from '../safetensors';
import type { TensorAction } from '../job/manifest';
import { sameShape } from '../tensor';
import type { Checkpoint, CheckpointTensor } from './open';
import type { Resolved } from './options';
import { resolveLayouts, type ModelFamily, type TensorLayout } from './layout';
import type { TieRecord } from './ties';

export interface PlanItem {
  name: string;
  shape: number[];
  base: CheckpointTensor;
  old?: CheckpointTensor;
  new?: CheckpointTensor;
  impOld?: CheckpointTensor;
  impNew?: CheckpointTensor;
  action: TensorAction;
  outDtype: StDtype;
  outBytes: number;
  why?: string; // why it is not edited
  /** The neurons (SPEC §2 layout) and why that layout. */
  layout: TensorLayout;
  /** action 'tied': the tensor whose output bytes this one gets. */
  tiedTo?: string;
}

export interface CheckpointInputs {
  base: string;
  old: string;
  new: string;
}

export function listNames(names: string[], max = 40): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, … and ${names.length - max} more` : shown;
}

export function plan(ck: { base: Checkpoint; old: Checkpoint; new: Checkpoint; impOld?: Checkpoint; impNew?: Checkpoint }, r: Resolved, warnings: string[],
  model: { family: ModelFamily; ties: TieRecord[] }): PlanItem[] {
  const missing: string[] = [];
  const shapes: string[] = [];
  for (const t of ck.base.tensors) {
    for (const [role, c] of [['old', ck.old], ['new', ck.new]] as const) {
      const o = c.byName.get(t.name);
      if (!o) missing.push(`'${t.name}' (missing from ${role}: ${c.path})`);
      else if (!sameShape(o.shape, t.shape)) shapes.push(`'${t.name}' (base [${t.shape.join(', ')}], ${role} [${o.shape.join(', ')}])`);
    }
  }
  for (const [role, c] of [['old', ck.old], ['new', ck.new]] as const) {
    for (const t of c.tensors) if (!ck.base.byName.has(t.name)) missing.push(`'${t.name}' (in ${role} but not in base: ${ck.base.path})`);
  }
  if (shapes.length || missing.length) {
    const parts: string[] = [];
    if (shapes.length) parts.push(`${shapes.length} tensor(s) differ in shape: ${listNames(shapes)}`);
    if (missing.length) parts.push(`${missing.length} tensor(s) are not in all three checkpoints: ${listNames(missing)}`);
    throw new GeoEditError(shapes.length ? 'ERR_SHAPE_MISMATCH' : 'ERR_MISSING_TENSOR', `base, old and new do not match: ${parts.join('; ')}`, {
      shapeMismatch: shapes, missing,
    });
  }
  const selected = (name: string): boolean =>
    (!r.include || r.include.some((re) => re.test(name))) && !(r.exclude && r.exclude.some((re) => re.test(name)));
  const items: PlanItem[] = [];
  const impProblems: string[] = [];
  const layouts = resolveLayouts(ck.base.tensors, r.layout, model.family, warnings);
  const tiedTo = new Map(model.ties.filter((x) => x.stored).map((x) => [x.with, x.tensor]));
  for (const t of ck.base.tensors) {
    const old = ck.old.byName.get(t.name)!;
    const nw = ck.new.byName.get(t.name)!;
    const editable = EDITABLE_ST_DTYPES[t.dtype];
    let action: TensorAction = 'edit';
    let why: string | undefined;
    if (!selected(t.name)) { action = 'copy'; why = 'not selected'; }
    else if (!editable) {
      action = 'copy';
      const isInt = /^(BOOL|U8|I8|I16|U16|I32|U32|I64|U64)$/.test(t.dtype);
      why = isInt ? `integer/bool dtype ${t.dtype}: copied from the base` : `dtype ${t.dtype} is not edited (only F32, F16, BF16): copied from the base`;
      if (!isInt) {
        if (r.include) {
          throw new GeoEditError('ERR_UNSUPPORTED', `tensor '${t.name}' (${ck.base.path}) has dtype ${t.dtype}, which cannot be edited (only F32, F16, BF16); exclude it or narrow --include`, { tensor: t.name, dtype: t.dtype });
        }
        warnings.push(`tensor '${t.name}': ${why}`);
      }
    } else if (!EDITABLE_ST_DTYPES[old.dtype] || !EDITABLE_ST_DTYPES[nw.dtype]) {
      throw new GeoEditError('ERR_UNSUPPORTED', `tensor '${t.name}': base is ${t.dtype} but old is ${old.dtype} and new is ${nw.dtype}; only F32, F16, BF16 can be edited`, { tensor: t.name });
    }
    const item: PlanItem = { name: t.name, shape: t.shape, base: t, action, outDtype: t.dtype, outBytes: t.end - t.begin, why, layout: layouts.get(t.name)! };
    if (editable && r.outDtype) item.outDtype = stDtypeOf(r.outDtype);
    if (action === 'copy' && editable && item.outDtype !== t.dtype) item.action = 'convert';
    let n = 1;
    for (const s of t.shape) n *= s;
    item.outBytes = n * ST_DTYPE_SIZE[item.outDtype];
    const primary = tiedTo.get(t.name);
    if (primary !== undefined) {
      // Tied: the primary's output bytes (its edit, copy or conversion), written once more.
      item.action = 'tied';
      item.tiedTo = primary;
      item.why = `tied to '${primary}': the same bytes as its output`;
    }
    if (item.action === 'edit') {
      item.old = old;
      item.new = nw;
      if (ck.impOld && ck.impNew) {
        for (const [role, c] of [['importanceOld', ck.impOld], ['importanceNew', ck.impNew]] as const) {
          const it = c.byName.get(t.name);
          if (!it) impProblems.push(`'${t.name}' missing from ${role} (${c.path})`);
          else if (!sameShape(it.shape, t.shape)) impProblems.push(`'${t.name}' has shape [${it.shape.join(', ')}] in ${role}, base [${t.shape.join(', ')}]`);
          else if (!EDITABLE_ST_DTYPES[it.dtype]) impProblems.push(`'${t.name}' has dtype ${it.dtype} in ${role}`);
          else if (role === 'importanceOld') item.impOld = it;
          else item.impNew = it;
        }
      }
    }
    items.push(item);
  }
  if (impProblems.length) throw new GeoEditError('ERR_BAD_IMPORTANCE', `importance checkpoints do not match the base: ${listNames(impProblems)}`, { problems: impProblems });
  return items;
}

/** Tensors in output order, cut into shards of at most maxShardSize bytes (a larger tensor gets a shard of its own). */
export function shardLayout(items: PlanItem[], maxShardSize: number): PlanItem[][] {
  const shards: PlanItem[][] = [];
  let cur: PlanItem[] = [], size = 0;
  for (const it of items) {
    if (cur.length && size + it.outBytes > maxShardSize) { shards.push(cur); cur = []; size = 0; }
    cur.push(it);
    size += it.outBytes;
  }
  shards.push(cur);
  return shards;
}

/** Hugging Face's shard names: model.safetensors, or model-0000k-of-0000n.safetensors. */
export function shardNames(n: number): string[] {
  if (n === 1) return ['model.safetensors'];
  const w = 5;
  const pad = (k: number) => String(k).padStart(w, '0');
  return Array.from({ length: n }, (_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
}

/** Bytes of input the job reads for an item (edit: base, old and new; copy/convert: the base). */
export function inputBytes(it: PlanItem): number {
  if (it.action === 'edit') return (it.base.end - it.base.begin) + (it.old!.end - it.old!.begin) + (it.new!.end - it.new!.begin);
  if (it.action === 'tied') return 0;
  return it.base.end - it.base.begin;
}
