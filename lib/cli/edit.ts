// geoedit edit --base P --old P --new P --out DIR [options]
import { editCheckpoint, type CheckpointManifest } from '../checkpoint';
import { EXIT, UsageError, checkInputKind, fmtBytes, helpText, parse, preservationLine, progressPrinter, reportError, safeLines, splitPreservationWarnings, toOptions } from './common';
import { flagsFor } from './flags';
import { isAdapterRun, runEditAdapters } from './lora';

export const EDIT_ALL_FLAGS = flagsFor('edit');

export function summaryOf(m: CheckpointManifest): Record<string, unknown> {
  return { kind: m.kind, output: m.output, totals: m.totals, timings: m.timings, hashing: m.hashing ?? null, parameters: m.parameters, backend: m.backend, warnings: m.warnings, versions: m.versions };
}

export function printSummary(m: CheckpointManifest): void {
  const t = m.totals;
  const pct = (n: number) => (t.rows ? `${((100 * n) / t.rows).toFixed(1)}%` : '–');
  const lines = [
    m.output ? `wrote ${m.output.path} (${m.output.files.length} file${m.output.files.length === 1 ? '' : 's'}, ${fmtBytes(t.bytesWritten)}) and geoedit-manifest.json` : 'analysis only: no weights written',
    `tensors: ${t.edited} edited, ${t.copied} copied, ${t.converted} converted${t.tied ? `, ${t.tied} tied` : ''} (of ${t.tensors})`,
    `rows: ${t.rows}: orthogonal ${pct(t.counts.orthogonal)}, synergy ${pct(t.counts.synergy)}, conflict ${pct(t.counts.conflict)}`,
    `update energy kept: ${t.energyKept === null ? '–' : `${(100 * t.energyKept).toFixed(1)}%`}`,
    `time: ${(m.timings.totalMs / 1000).toFixed(2)} s (data ${(m.timings.dataMs / 1000).toFixed(2)} s, ${m.timings.gbPerSecond.toFixed(2)} GB/s of input) on ${m.backend.name === 'cuda' ? `the GPU (${m.backend.device ?? 'cuda'})` : 'the CPU'}`,
    ...layoutLines(m),
    ...preservationLine(m.tensors.filter((e) => e.action === 'edit'), m.parameters.preserve?.file),
  ];
  process.stdout.write(safeLines(lines));
  // Warnings (per tensor: degenerate thresholds, unmatched layout globs, ties that disagree, preservation) on stderr.
  if (m.warnings.length) process.stderr.write(safeLines(m.warnings.map((w) => `warning: ${w}`)));
}

/** The neuron layouts used (SPEC §2): counts per kind and why, and the model family of config.json. */
export function layoutLines(m: CheckpointManifest, perTensor = false): string[] {
  const by = new Map<string, number>();
  for (const t of m.tensors) if (t.layout && t.action !== 'copy') by.set(`${t.layout} (${t.layoutSource})`, (by.get(`${t.layout} (${t.layoutSource})`) ?? 0) + 1);
  const out: string[] = [];
  if (by.size) out.push(`layouts: ${[...by].map(([k, n]) => `${n} ${k}`).join(', ')}${m.model?.family ? `; model family ${m.model.family} (${m.model.layoutRule})` : m.model?.config ? `; config.json names no known family (${m.model.modelType ?? 'no model_type'})` : '; no config.json'}`);
  for (const t of m.model?.ties ?? []) out.push(`tied: ${t.with} = ${t.tensor} (${t.why})`);
  if (perTensor) for (const t of m.tensors) if (t.layout && t.layout !== 'rows') out.push(`  ${t.name}: ${t.layout}, ${t.rows} neurons of ${t.cols} (${t.layoutWhy})`);
  return out;
}

export async function runEdit(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, EDIT_ALL_FLAGS, false);
    if (values.help) {
      process.stdout.write(helpText('geoedit edit --base P --old P --new P --out DIR [options]',
        'Edits a checkpoint with GeoEdit: every float tensor present in base, old and new is combined per row\n(neuron) by the angle between τold and τnew; integer/bool and unselected tensors are copied from the base.\nWrites DIR/model.safetensors (or shards + index), geoedit-manifest.json and the base directory\'s other files.\nRuns on the CPU with --backend auto (a memory-bound job over host memory: the CPU was faster in every\nmeasurement; the manifest says why), on the GPU with --backend cuda.\n\nLoRA: geoedit edit --old-adapter DIR --new-adapter DIR --out DIR [--base P] [--out-format adapter|full]\nedits two PEFT adapters in factor space; the output is an exact adapter, or merged weights with --base.\nThe LoRA path runs on the CPU only (\'auto\' means the CPU there; --backend cuda is refused).', EDIT_ALL_FLAGS));
      return EXIT.OK;
    }
    if (isAdapterRun(values)) return await runEditAdapters(values, EDIT_ALL_FLAGS);
    checkInputKind(values, EDIT_ALL_FLAGS, false);
    for (const k of ['base', 'old', 'new', 'out']) if (typeof values[k] !== 'string') throw new UsageError(`missing --${k}`);
    const opts = toOptions(values, EDIT_ALL_FLAGS);
    const pp = values.quiet ? null : progressPrinter(process.stderr);
    if (pp) opts.onProgress = pp.onProgress;
    let m: CheckpointManifest;
    try {
      m = await editCheckpoint({ base: values.base as string, old: values.old as string, new: values.new as string, out: values.out as string }, opts);
    } finally {
      pp?.done();
    }
    if (values.json) {
      splitPreservationWarnings(m.warnings);
      process.stdout.write(JSON.stringify(summaryOf(m), null, 2) + '\n');
    } else printSummary(m);
    return EXIT.OK;
  } catch (e) {
    return reportError(e, 'edit');
  }
}
