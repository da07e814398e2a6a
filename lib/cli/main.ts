// geoedit CLI entry: a map of subcommand -> module. Adding a subcommand is one line in COMMANDS
// (the module exports an async function (argv) => exit code).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXIT } from './common';

interface Command { module: string; fn: string; summary: string }

export const COMMANDS: Record<string, Command> = {
  edit: { module: './edit', fn: 'runEdit', summary: 'edit a checkpoint (base, old, new) into a new one, with a manifest and an optional report' },
  analyze: { module: './analyze', fn: 'runAnalyze', summary: 'the same statistics and report, writing no weights' },
  assemble: { module: './assemble', fn: 'runAssemble', summary: 'join the parts of a partitioned edit (edit --part K/N) into the output of the whole edit, byte for byte' },
  inspect: { module: './inspect', fn: 'runInspect', summary: 'list the tensors of a checkpoint: dtypes, shapes, bytes' },
  demo: { module: './demo', fn: 'runDemo', summary: 'build a small fact-memory model, edit it with every strategy and two controls, print Reliability / Generality / Locality' },
  log: { module: './log', fn: 'runLog', summary: 'the chain of edits that produced a directory, newest first (--json for machines)' },
  verify: { module: './verify', fn: 'runVerify', summary: 're-hash an output against its manifest, check its evaluation and review logs and signatures (exit 0 / 2)' },
  review: { module: './review', fn: 'runReview', summary: 'append a review record (approve / reject, optionally Ed25519-signed) beside the manifest' },
  keygen: { module: './keygen', fn: 'runKeygen', summary: 'make an Ed25519 key pair for signed reviews' },
  evaluate: { module: './evaluate', fn: 'runEvaluate', summary: 'run a scorer on an output, check gates, append the result to the manifest (exit 0 / 4)' },
  report: { module: './report', fn: 'runReport', summary: 're-render the HTML report of an output from its manifest and reviews' },
  rollout: { module: './rollout', fn: 'runRollout', summary: 'edit in stages (scale or option sets), evaluate each, keep the last stage whose gates pass (exit 0 / 4)' },
  'demo-score': { module: './demo-score', fn: 'runDemoScore', summary: "score the demo model (geoedit demo --export) or an edit of it: Reliability / Generality / Locality as JSON" },
};

function version(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      const j = JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string; version?: string };
      if (j.name === 'geoedit') return j.version ?? '0.0.0';
    }
    dir = path.dirname(dir);
  }
  return '0.0.0';
}

function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length)) + 2;
  return `Usage: geoedit <command> [options]\n\nCommands:\n${Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}${c.summary}`).join('\n')}\n\n` +
    `Run 'geoedit <command> --help' for a command's options and defaults.\n` +
    `Exit codes: 0 done, 1 usage, 2 bad input (or a failed check), 3 runtime failure, 4 a gate failed.\n  --version   print the version\n  --help      this help\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === '-v') {
    process.stdout.write(`${version()}\n`);
    return EXIT.OK;
  }
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    (cmd === undefined ? process.stderr : process.stdout).write(usage());
    return cmd === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    process.stderr.write(`geoedit: unknown command '${cmd}'\n\n${usage()}`);
    return EXIT.USAGE;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(c.module) as Record<string, (argv: string[]) => Promise<number>>;
  return mod[c.fn]!(rest);
}
