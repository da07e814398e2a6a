// geoedit analyze --base P --old P --new P [options]: the edit's statistics and report, no weights.
import { analyzeCheckpoint, type CheckpointManifest } from '../checkpoint';
import { EXIT, UsageError, checkInputKind, helpText, parse, progressPrinter, reportError, safeLines, toOptions } from './common';
import { layoutLines, printSummary, summaryOf } from './edit';
import { splitPreservationWarnings } from './common';
import { flagsFor } from './flags';
import { isAdapterRun, runAnalyzeAdapters } from './lora';

export const ANALYZE_FLAGS = flagsFor('analyze');

export async function runAnalyze(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, ANALYZE_FLAGS, false);
    if (values.help) {
      process.stdout.write(helpText('geoedit analyze --base P --old P --new P [--report FILE.html] [options]',
        'Computes what `geoedit edit` would do (angles, regions, update energy kept, per tensor) and writes no weights.\nRuns on the CPU with --backend auto (the faster one measured for host-memory jobs), on the GPU with --backend cuda;\nwith --old-adapter/--new-adapter (LoRA) on the CPU only.', ANALYZE_FLAGS));
      return EXIT.OK;
    }
    if (isAdapterRun(values)) return await runAnalyzeAdapters(values, ANALYZE_FLAGS);
    checkInputKind(values, ANALYZE_FLAGS, false);
    for (const k of ['base', 'old', 'new']) if (typeof values[k] !== 'string') throw new UsageError(`missing --${k}`);
    const opts = toOptions(values, ANALYZE_FLAGS);
    const pp = values.quiet ? null : progressPrinter(process.stderr);
    if (pp) opts.onProgress = pp.onProgress;
    let m: CheckpointManifest;
    try {
      m = await analyzeCheckpoint({ base: values.base as string, old: values.old as string, new: values.new as string }, opts);
    } finally {
      pp?.done();
    }
    if (values.json) {
      splitPreservationWarnings(m.warnings);
      process.stdout.write(JSON.stringify({ ...summaryOf(m), inputs: m.inputs, tensors: m.tensors }, null, 2) + '\n');
    } else {
      printSummary(m);
      const per = layoutLines(m, true).filter((l) => l.startsWith('  '));
      if (per.length) process.stdout.write(`tensors not in rows layout:\n${safeLines(per)}`);
    }
    return EXIT.OK;
  } catch (e) {
    return reportError(e, 'analyze');
  }
}
