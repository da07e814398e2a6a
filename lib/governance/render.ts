// `geoedit report DIR`: the HTML report of an output directory re-rendered from its manifest and
// review log at any time (lib/report.ts with the governance sections).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError } from '../errors';
import { renderReport } from '../report';
import { adapterReportAsCheckpointManifest } from '../lora/report';
import { isAdapterKind, isCheckpointKind } from '../job/manifest';
import { REPORT_FILE, loadManifest, reviewSummaries } from './lineage';
import { checkNotInput } from '../job/target';
import { writeFileAtomic } from '../job/atomic';

/** The HTML report of an output directory, from its manifest and review log. */
export async function renderDirReport(dir: string): Promise<string> {
  const lm = loadManifest(dir);
  const m = lm.manifest;
  const ctx = { dir: lm.dir, reviews: reviewSummaries(lm.dir) };
  if (isAdapterKind(m.kind)) {
    const cm = adapterReportAsCheckpointManifest(m as never, 'edit');
    return renderReport(Object.assign(cm, { id: m.id, parent: m.parent, outputFiles: m.outputFiles, evaluations: m.evaluations, rollout: m.rollout }), ctx);
  }
  if (!isCheckpointKind(m.kind)) throw new GeoEditError('ERR_MANIFEST_INVALID', `${lm.file}: unknown manifest kind ${JSON.stringify(m.kind)}`, { file: lm.file });
  return renderReport(m as never, ctx);
}

/**
 * Writes the report (default DIR/geoedit-report.html) atomically and durably (fsync'ed temporary
 * file, renamed, directory fsync'ed); resolves to its path. The report may not be (or hold) one of
 * DIR's files other than a previous report: the manifest, the weights, the review log… are the
 * inputs of this command (ERR_OUTPUT_IS_INPUT, naming both, before anything is written).
 */
export async function writeDirReport(dir: string, file?: string): Promise<string> {
  const lm = loadManifest(dir);
  const target = path.resolve(file ?? path.join(lm.dir, REPORT_FILE));
  const own = fs.readdirSync(lm.dir).filter((n) => n !== REPORT_FILE).map((n) => path.join(lm.dir, n));
  checkNotInput(target, 'report', [{ path: lm.file, dir: lm.dir, files: [lm.file, ...own] }], 'out');
  const html = await renderDirReport(dir);
  try {
    await writeFileAtomic(target, html);
  } catch (e) {
    throw new GeoEditError('ERR_IO', `${target}: cannot write the report (${(e as Error).message})`, { file: target });
  }
  return target;
}
