// geoedit demo-score DIR: the demo model's built-in scorer (one JSON object: reliability,
// generality, locality) for geoedit evaluate / rollout; and geoedit demo --export DIR.
import { demoScore, exportDemoModels } from '../governance/demo-model';
import { EXIT, helpText, parse, type OptSpec } from './common';
import { govError, onePositional } from './gov-common';

export const DEMO_SCORE_FLAGS: OptSpec[] = [
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export async function runDemoScore(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, DEMO_SCORE_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit demo-score DIR', "Scores the demo model in DIR (from 'geoedit demo --export', or any edit of it) on its fact world and prints one JSON\nobject on stdout: {\"reliability\": R, \"generality\": G, \"locality\": L} (QUALITY.md). Use it as a scorer:\ngeoedit evaluate OUT --scorer 'geoedit demo-score' --gate 'reliability>=0.9' --gate 'locality>=0.98*base'.", DEMO_SCORE_FLAGS));
      return EXIT.OK;
    }
    const s = await demoScore(onePositional(positionals));
    process.stdout.write(JSON.stringify(s) + '\n');
    return EXIT.OK;
  } catch (e) {
    return govError(e, 'demo-score');
  }
}

export async function runDemoExport(dir: string, fast: boolean, cacheDir: string, quiet: boolean): Promise<number> {
  const t0 = Date.now();
  const log = (s: string): void => { if (!quiet) process.stderr.write(`[geoedit demo ${((Date.now() - t0) / 1000).toFixed(0)}s] ${s}\n`); };
  const r = await exportDemoModels(dir, { fast, cacheDir, log });
  process.stdout.write([
    `wrote the demo models to ${r.dir}${r.cached ? ' (reused from the cache)' : ''}:`,
    `  base:        ${r.base}`,
    `  old, new:    ${r.old}  ${r.new}   (full fine-tunes on the old / the new facts)`,
    `  adapters:    ${r.oldAdapter}  ${r.newAdapter}   (PEFT LoRA, rank 8)`,
    `next: geoedit edit --base ${r.base} --old ${r.old} --new ${r.new} --out edited`,
    `      geoedit evaluate edited --scorer 'geoedit demo-score' --gate 'locality>=0.98*base'`,
  ].join('\n') + '\n');
  return EXIT.OK;
}
