// geoedit rollout --base P --old P --new P --out DIR --stages 0.25,0.5,1 --scorer CMD --gate EXPR...
// (adapter form: --old-adapter DIR --new-adapter DIR [--base P]): exit 0, 4 when the first stage fails.
import { rollout, type RolloutStage } from '../governance/rollout';
import { describeGate } from '../governance/evaluate';
import { EDIT_FLAGS, EXIT, INPUT_FLAGS, OUT_FLAGS, UsageError, helpText, parse, safeText, toOptions, type OptSpec } from './common';
import { LORA_FLAGS, adapterOptions, isAdapterRun } from './lora';
import { GATE_FLAGS, parseTimeout } from './evaluate';
import { GOV_EXIT, govError, needString } from './gov-common';

const NOT_FOR_ROLLOUT = new Set(['report', 'json', 'no-hash', 'help', 'quiet']);

export const ROLLOUT_FLAGS: OptSpec[] = [
  ...INPUT_FLAGS.map((f) => (f.name === 'old' || f.name === 'new' ? { ...f, default: 'required (or --old-adapter/--new-adapter)' } : f)),
  ...LORA_FLAGS,
  ...OUT_FLAGS,
  { name: 'stages', type: 'string', kind: 'string', default: 'required', metavar: 'LIST', desc: "the stages, in order: scales '0.25,0.5,1', or a JSON array of scales and option sets, e.g. '[{\"scale\":0.5,\"include\":[\"*.mlp.*\"]},{\"scale\":1}]'" },
  ...GATE_FLAGS.map((f) => (f.name === 'gate' ? { ...f, default: 'required' } : f)),
  ...EDIT_FLAGS.filter((f) => !NOT_FOR_ROLLOUT.has(f.name)),
  { name: 'json', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print the rollout record as JSON' },
  { name: 'quiet', type: 'boolean', kind: 'boolean', default: 'off', desc: 'no stage lines on stderr' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export function parseStages(v: string): RolloutStage[] {
  const t = v.trim();
  if (t.startsWith('[')) {
    let a: unknown;
    try {
      a = JSON.parse(t);
    } catch (e) {
      throw new UsageError(`--stages: not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(a)) throw new UsageError('--stages: expected a JSON array');
    return a as RolloutStage[];
  }
  return t.split(',').map((s) => {
    const n = Number(s.trim());
    if (!s.trim() || !Number.isFinite(n) || n <= 0) throw new UsageError(`--stages: '${s}' is not a scale > 0 (write 0.25,0.5,1 or a JSON array)`);
    return n;
  });
}

function stageLabel(o: Record<string, unknown>): string {
  return Object.entries(o).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : v}`).join(', ');
}

export async function runRollout(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, ROLLOUT_FLAGS, false);
    if (values.help) {
      process.stdout.write(helpText('geoedit rollout --base P --old P --new P --out DIR --stages 0.25,0.5,1 --scorer CMD --gate EXPR [options]', "Edits in stages (each stage's scale, or option set), evaluates every stage with the scorer and goes on only while every\ngate passes. The output is the last stage that passed, with every stage's parameters, metrics and gate results in its\nmanifest (rollout); intermediate stages live in a temporary directory beside DIR and are removed. When the first stage\nfails nothing is written and the exit status is 4. Relative gates (locality>=0.98*base) compare with the base model\n(its own evaluation by the same scorer, else scored once before the first stage).\nAdapter form: --old-adapter DIR --new-adapter DIR [--base P] instead of --old/--new. The edit options apply to every stage.", ROLLOUT_FLAGS));
      return EXIT.OK;
    }
    const adapter = isAdapterRun(values);
    const out = needString(values, 'out');
    const stages = parseStages(needString(values, 'stages'));
    const gates = (values.gate as string[] | undefined) ?? [];
    if (!gates.length) throw new UsageError('missing --gate (a rollout goes on only while its gates pass)');
    const scorer = needString(values, 'scorer');
    const baseFlags = EDIT_FLAGS.filter((f) => !NOT_FOR_ROLLOUT.has(f.name));
    let options: Record<string, unknown>;
    if (adapter) {
      options = adapterOptions(values) as Record<string, unknown>;
    } else {
      for (const k of ['base', 'old', 'new']) needString(values, k);
      options = toOptions(values, [...OUT_FLAGS, ...baseFlags]) as Record<string, unknown>;
    }
    delete options.force;
    const quiet = values.quiet === true;
    const r = await rollout({
      ...(typeof values.base === 'string' ? { base: values.base } : {}),
      ...(adapter ? { oldAdapter: values['old-adapter'] as string, newAdapter: values['new-adapter'] as string } : { old: values.old as string, new: values.new as string }),
      out, stages, scorer, gates, timeout: parseTimeout(values.timeout), options, force: values.force === true,
      ...(typeof values.baseline === 'string' ? { baseline: values.baseline } : {}),
      onStage: (e) => {
        if (quiet) return;
        const head = `[rollout stage ${e.index + 1}/${e.total}: ${stageLabel(e.options)}]`;
        if (e.phase === 'edit') process.stderr.write(`${head} editing…\n`);
        else if (e.phase === 'evaluate') process.stderr.write(`${head} evaluating…\n`);
        else {
          const ev = e.evaluation!;
          process.stderr.write(`${safeText(`${head} ${Object.entries(ev.metrics).map(([k, v]) => `${k} ${Number(v.toPrecision(6))}`).join(', ')}`)}\n`);
          for (const g of ev.gates) process.stderr.write(`${safeText(`${head} ${describeGate(g)}`)}\n`);
          process.stderr.write(`${head} ${e.phase === 'passed' ? 'passed' : 'FAILED: stopping here'}\n`);
        }
      },
    });
    if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else if (r.passed) {
      const c = r.stages[r.chosen!]!;
      process.stdout.write(`wrote stage ${r.chosen! + 1} of ${stages.length} (${stageLabel(c.options)}) to ${r.out} (manifest ${r.id})` +
        (r.stoppedAt !== null ? `; stage ${r.stoppedAt + 1} (${stageLabel(r.stages[r.stoppedAt]!.options)}) failed: ${r.stages[r.stoppedAt]!.gates.filter((g) => !g.pass).map(describeGate).join('; ')}` : '; every stage passed') + '\n');
    }
    if (!r.passed) {
      const s = r.stages[0]!;
      process.stderr.write(`geoedit rollout: ERR_GATE_FAILED: the first stage (${stageLabel(s.options)}) failed, nothing was written at ${out}: ${s.gates.filter((g) => !g.pass).map(describeGate).join('; ')}\n`);
      return GOV_EXIT.GATE_FAILED;
    }
    return EXIT.OK;
  } catch (e) {
    return govError(e, 'rollout');
  }
}
