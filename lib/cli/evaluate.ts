// geoedit evaluate DIR --scorer CMD [--gate EXPR]... [--timeout S]: exit 0, 4 when a gate fails.
import { describeGate, evaluate, parseGate, type EvaluationResult } from '../governance/evaluate';
import { EXIT, UsageError, helpText, parse, safeLines, type OptSpec } from './common';
import { GOV_EXIT, govError, needString, onePositional } from './gov-common';

export const GATE_FLAGS: OptSpec[] = [
  { name: 'scorer', type: 'string', kind: 'string', default: 'required', metavar: 'CMD', desc: "the evaluator: any command (run by /bin/sh, the model directory appended as its last argument) printing one JSON object of metrics on stdout, e.g. 'python score.py' or 'geoedit demo-score'" },
  { name: 'gate', type: 'string', kind: 'list', default: 'none', metavar: 'EXPR', desc: "METRIC>=X, <=, >, < (repeatable); X a number or relative to the base: 'locality>=0.98*base', 'loss<=base*1.05', 'acc>=base-0.01'" },
  { name: 'timeout', type: 'string', kind: 'number', default: '3600 (0: none)', metavar: 'S', desc: 'seconds before the scorer is killed (ERR_SCORER_TIMEOUT)' },
  { name: 'baseline', type: 'string', kind: 'string', default: "the parent's evaluation by the same scorer, else the base input scored now", metavar: 'DIR', desc: 'the model relative gates compare with' },
];

export const EVALUATE_FLAGS: OptSpec[] = [
  ...GATE_FLAGS,
  { name: 'no-record', type: 'boolean', kind: 'boolean', default: 'off (appended to the manifest\'s evaluation log)', desc: 'do not append the result to the manifest' },
  { name: 'json', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print the evaluation entry as JSON' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export function parseTimeout(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`Expected a number of seconds >= 0 for --timeout but received '${String(v)}'`);
  return n;
}

export function printEvaluation(r: EvaluationResult, prefix = ''): void {
  const lines = [`${prefix}metrics (${r.scorer}, ${(r.durationMs / 1000).toFixed(2)} s): ${Object.entries(r.metrics).map(([k, v]) => `${k} ${Number(v.toPrecision(6))}`).join(', ')}`];
  if (r.baseline) lines.push(`${prefix}baseline (${r.baseline.source}${r.baseline.path ? ` ${r.baseline.path}` : ''}): ${Object.entries(r.baseline.metrics).map(([k, v]) => `${k} ${Number(v.toPrecision(6))}`).join(', ')}`);
  for (const g of r.gates) lines.push(`${prefix}${describeGate(g)}`);
  process.stdout.write(safeLines(lines));
}

export async function runEvaluate(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, EVALUATE_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText("geoedit evaluate DIR --scorer CMD [--gate 'locality>=0.95']... [--timeout S]", "Runs the scorer on the model in DIR, checks the gates and appends the metrics, the scorer command, its exit status,\nthe duration and the gate results to the manifest's evaluation log. Exit 0: every gate passed; 4: a gate failed (named,\nwith the value). A scorer that crashes, hangs past --timeout, prints no JSON or a NaN, or a gate on a metric it did not\nprint: exit 2 and nothing is recorded.", EVALUATE_FLAGS));
      return EXIT.OK;
    }
    const dir = onePositional(positionals);
    const gates = ((values.gate as string[] | undefined) ?? []).map(parseGate);
    const r = await evaluate(dir, {
      scorer: needString(values, 'scorer'), gates, timeout: parseTimeout(values.timeout),
      ...(typeof values.baseline === 'string' ? { baseline: values.baseline } : {}),
      record: values['no-record'] !== true,
      onStderr: (s) => process.stderr.write(s),
    });
    if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else {
      printEvaluation(r);
      process.stdout.write(r.recorded ? `recorded as evaluation ${r.seq} of manifest ${r.manifestId}\n` : 'not recorded (--no-record)\n');
    }
    if (!r.passed) {
      process.stderr.write(`geoedit evaluate: ERR_GATE_FAILED: ${r.failed.map(describeGate).join('; ')}\n`);
      return GOV_EXIT.GATE_FAILED;
    }
    return EXIT.OK;
  } catch (e) {
    return govError(e, 'evaluate');
  }
}
