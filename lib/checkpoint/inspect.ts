// `inspect`: tensors, dtypes, shapes and bytes of a checkpoint (headers only).
import type { StDtype } from '../safetensors';
import { openCheckpoint, type Checkpoint } from './open';
import { readModelFamily, resolveLayouts, type LayoutKind, type ModelFamily } from './layout';

export interface InspectResult {
  path: string;
  kind: Checkpoint['kind'];
  files: Array<{ path: string; size: number; tensors: number }>;
  tensors: Array<{ name: string; dtype: StDtype; shape: number[]; bytes: number; file: string; layout: LayoutKind; layoutWhy: string }>;
  /** The model family of the directory's config.json (what layout detection uses). */
  model: ModelFamily;
  totalBytes: number;
  dtypes: Record<string, { tensors: number; bytes: number }>;
  metadata: Record<string, string> | null;
}

/** Tensors, dtypes, shapes and bytes of a checkpoint (reads headers only). */
export async function inspectCheckpoint(p: string): Promise<InspectResult> {
  const ck = openCheckpoint(p);
  const warnings: string[] = [];
  const model = readModelFamily(ck.dir, warnings);
  const layouts = resolveLayouts(ck.tensors, [], model, warnings);
  const dtypes: InspectResult['dtypes'] = {};
  let total = 0;
  const tensors = ck.tensors.map((t) => {
    const bytes = t.end - t.begin;
    total += bytes;
    const d = (dtypes[t.dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += bytes;
    const l = layouts.get(t.name)!;
    return { name: t.name, dtype: t.dtype, shape: t.shape, bytes, file: t.file, layout: l.kind, layoutWhy: l.why };
  });
  return {
    path: ck.path, kind: ck.kind,
    files: ck.files.map((f) => ({ path: f.path, size: f.size, tensors: f.header.tensors.length })),
    tensors, totalBytes: total, dtypes, metadata: ck.metadata, model,
  };
}
