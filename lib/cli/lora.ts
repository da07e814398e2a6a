// `geoedit edit|analyze --old-adapter DIR --new-adapter DIR ...`: the LoRA path of the CLI.
// edit.ts / analyze.ts hand over here when an adapter flag is present.
import { analyzeAdapters, editAdapters, type AdapterReport, type EditAdaptersOptions } from '../lora';
import { EXIT, UsageError, checkInputKind, type OptSpec, preservationLine, reportError, safeLines, splitPreservationWarnings, toOptions } from './common';
import { LORA_FLAGS, flagsFor } from './flags';

export { LORA_FLAGS };

export function isAdapterRun(values: Record<string, unknown>): boolean {
  return values['old-adapter'] !== undefined || values['new-adapter'] !== undefined;
}

/** The adapter options from parsed flags (`flags`: the command's, default `geoedit edit`'s). */
export function adapterOptions(values: Record<string, unknown>, flags: OptSpec[] = flagsFor('edit')): EditAdaptersOptions {
  for (const k of ['old-adapter', 'new-adapter']) if (typeof values[k] !== 'string') throw new UsageError(`missing --${k} (adapters come in pairs: --old-adapter DIR --new-adapter DIR)`);
  checkInputKind(values, flags, true);
  const o = toOptions(values, flags) as Record<string, unknown>;
  delete o.hash;
  const f = values['out-format'];
  if (f !== undefined && f !== 'adapter' && f !== 'full') throw new UsageError(`Expected 'adapter' or 'full' for --out-format but received '${String(f)}'`);
  if (o.force === false) delete o.force;
  if (o.keepZeroBlocks === false) delete o.keepZeroBlocks;
  return o as EditAdaptersOptions;
}

function printReport(r: AdapterReport, head: string): void {
  const t = r.totals;
  const pct = (n: number) => (t.rows ? `${((100 * n) / t.rows).toFixed(1)}%` : '–');
  const kept = t.energyKept === null ? '–' : `${(100 * t.energyKept).toFixed(1)}%`;
  const lines = [
    head,
    `modules: ${t.modules} (${r.modules.filter((m) => m.rOld === 0 || m.rNew === 0).length} present in only one adapter)`,
    `rows: ${t.rows}: orthogonal ${pct(t.counts.orthogonal)}, synergy ${pct(t.counts.synergy)}, conflict ${pct(t.counts.conflict)}`,
    `update energy applied / offered by the new adapter: ${kept}`,
    ...r.extras.map((e) => `non-LoRA tensor ${e.tensor} (${e.from}): ${e.action}`),
    ...preservationLine(r.modules, (r.parameters.preserve as { file?: string } | undefined)?.file),
    ...splitPreservationWarnings(r.warnings).map((w) => `warning: ${w}`),
  ];
  process.stdout.write(safeLines(lines));
}

export async function runEditAdapters(values: Record<string, unknown>, flags: OptSpec[]): Promise<number> {
  try {
    if (typeof values.out !== 'string') throw new UsageError('missing --out');
    const opts = adapterOptions(values, flags);
    const base = typeof values.base === 'string' ? values.base : undefined;
    const t0 = Date.now();
    const m = await editAdapters({ old: values['old-adapter'] as string, new: values['new-adapter'] as string, out: values.out, ...(base ? { base } : {}) }, opts);
    if (values.json) splitPreservationWarnings(m.warnings);
    if (values.json) process.stdout.write(JSON.stringify({ outFormat: m.outFormat, outputs: m.outputs, totals: m.totals, modules: m.modules, extras: m.extras }, null, 2) + '\n');
    else printReport(m, `wrote ${m.outFormat === 'adapter' ? 'a PEFT adapter' : 'merged weights'} to ${values.out} (${m.outputs.map((o) => o.path.split('/').pop()).join(', ')}, geoedit-manifest.json) in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
    return EXIT.OK;
  } catch (e) {
    return reportError(e, 'edit');
  }
}

export async function runAnalyzeAdapters(values: Record<string, unknown>, flags: OptSpec[]): Promise<number> {
  try {
    if (values.base !== undefined) throw new UsageError('--base is not used by analyze with adapters (the geometry needs only the two adapters)');
    const opts = adapterOptions(values, flags);
    delete (opts as Record<string, unknown>).outFormat;
    const r = await analyzeAdapters({ old: values['old-adapter'] as string, new: values['new-adapter'] as string }, opts);
    if (values.json) {
      splitPreservationWarnings(r.warnings);
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    } else printReport(r, 'analysis only: no weights written');
    return EXIT.OK;
  } catch (e) {
    return reportError(e, 'analyze');
  }
}
