// geoedit report DIR [--out FILE]: re-renders the HTML report from the manifest and the review log.
import { writeDirReport } from '../governance/render';
import { EXIT, helpText, parse, type OptSpec } from './common';
import { govError, onePositional } from './gov-common';

export const REPORT_FLAGS: OptSpec[] = [
  { name: 'out', type: 'string', kind: 'string', default: 'DIR/geoedit-report.html', metavar: 'FILE', desc: 'where the report goes' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export async function runReport(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, REPORT_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit report DIR [--out FILE]', 'Renders the self-contained HTML report of an output directory from its manifest: the edit\'s charts and tables,\nthe lineage, the evaluations with their gates, the staged rollout and the reviews. The report is not an output\nfile (verify does not hash it); a review records the SHA-256 of the report it approved.', REPORT_FLAGS));
      return EXIT.OK;
    }
    const file = await writeDirReport(onePositional(positionals), values.out as string | undefined);
    process.stdout.write(`wrote ${file}\n`);
    return EXIT.OK;
  } catch (e) {
    return govError(e, 'report');
  }
}
