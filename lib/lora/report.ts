// The HTML report (lib/report.ts) of an adapter edit or analysis: the adapter manifest is mapped
// onto the report's input (one "tensor" per LoRA module).
import type { AdapterManifest, AdapterReport, CheckpointManifest, TensorManifestEntry } from '../job/manifest';
import { versionsBlock } from '../job/versions';
import { writeReport } from '../report';

export function adapterReportAsCheckpointManifest(r: AdapterReport | AdapterManifest, kind: 'edit' | 'analyze'): CheckpointManifest {
  const m = r as Partial<AdapterManifest>;
  const tensors: TensorManifestEntry[] = r.modules.map((mod) => ({
    name: `${mod.name}.weight`, shape: [mod.rows, mod.cols], dtype: 'F32', outDtype: 'F32', action: 'edit',
    note: `LoRA r_old ${mod.rOld}, r_new ${mod.rNew}${mod.rOut !== undefined ? `, r_out ${mod.rOut}` : ''}`,
    rows: mod.rows, cols: mod.cols, threshold: mod.threshold, counts: mod.counts, zeroRows: mod.zeroRows,
    angleHistogram: mod.angleHistogram, meanCos: mod.meanCos, energy: mod.energy, energyKept: mod.energyKept,
    ...(mod.preserve !== undefined ? { preserve: mod.preserve } : {}),
  }));
  const files = (role: 'old' | 'new' | 'base') => (m.inputs ?? []).filter((i) => i.role === role).map((i) => ({ path: i.path, size: i.bytes, sha256: i.sha256 }));
  const inputs: CheckpointManifest['inputs'] = {
    old: { path: r.old, kind: 'directory', files: files('old') },
    new: { path: r.new, kind: 'directory', files: files('new') },
  };
  if (files('base').length) inputs.base = { path: files('base')[0]!.path, kind: 'file', files: files('base') };
  return {
    tool: 'geoedit', kind: kind === 'edit' ? 'checkpoint-edit' : 'checkpoint-analyze', createdAt: m.createdAt ?? new Date().toISOString(),
    versions: m.versions ?? versionsBlock(),
    backend: { name: 'cpu', device: null }, // the LoRA path runs on the CPU
    inputs, output: null, parameters: r.parameters as unknown as CheckpointManifest['parameters'], tensors,
    totals: {
      tensors: tensors.length, edited: tensors.length, copied: 0, converted: 0, rows: r.totals.rows, counts: r.totals.counts,
      energy: r.totals.energy, energyKept: r.totals.energyKept, bytesRead: 0, bytesWritten: 0,
    },
    timings: { totalMs: m.timings?.totalMs ?? 0, validateMs: 0, dataMs: 0, hashMs: 0, gbPerSecond: 0 },
    warnings: r.warnings,
  };
}

/** Writes the HTML report of an adapter edit / analysis (atomically). */
export async function writeAdapterReport(file: string, r: AdapterReport | AdapterManifest, kind: 'edit' | 'analyze'): Promise<void> {
  await writeReport(file, adapterReportAsCheckpointManifest(r, kind));
}
