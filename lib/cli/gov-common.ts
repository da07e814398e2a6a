// Shared pieces of the governance commands (log, verify, review, keygen, evaluate, rollout,
// report, demo-score): exit codes and error printing for their codes (docs/governance.md).
import { EXIT, UsageError, reportError, safeText } from './common';

/** Exit codes: 0 done, 1 usage, 2 bad input (a check failed), 3 runtime failure, 4 a gate failed. */
export const GOV_EXIT = Object.freeze({ ...EXIT, GATE_FAILED: 4 });

/** Codes that mean the input (directory, manifest, log, key, scorer) is bad: exit 2. */
const BAD_INPUT = new Set([
  'ERR_NO_MANIFEST', 'ERR_MANIFEST_INVALID', 'ERR_MANIFEST_TAMPERED', 'ERR_NO_LINEAGE', 'ERR_OUTPUT_CHANGED', 'ERR_OUTPUT_MISSING',
  'ERR_OUTPUT_EXTRA', 'ERR_INPUT_CHANGED', 'ERR_REVIEW_INVALID', 'ERR_REVIEW_UNTRUSTED', 'ERR_REVIEW_UNSIGNED', 'ERR_EVALUATION_INVALID',
  'ERR_BAD_KEY', 'ERR_SCORER_FAILED', 'ERR_SCORER_TIMEOUT', 'ERR_SCORER_OUTPUT', 'ERR_METRIC_MISSING', 'ERR_NO_BASELINE', 'ERR_NOT_FOUND',
]);

export function govError(e: unknown, cmd: string): number {
  const code = (e as { code?: unknown })?.code;
  if (code === 'ERR_BAD_GATE' || code === 'ERR_INVALID_OPTION') {
    process.stderr.write(`geoedit ${cmd}: ${code}: ${safeText((e as Error).message)}\nRun 'geoedit ${cmd} --help' for the options.\n`);
    return GOV_EXIT.USAGE;
  }
  if (code === 'ERR_GATE_FAILED') {
    process.stderr.write(`geoedit ${cmd}: ${code}: ${safeText((e as Error).message)}\n`);
    return GOV_EXIT.GATE_FAILED;
  }
  if (typeof code === 'string' && BAD_INPUT.has(code)) {
    process.stderr.write(`geoedit ${cmd}: ${code}: ${safeText((e as Error).message)}\n`);
    return GOV_EXIT.BAD_INPUT;
  }
  return reportError(e, cmd);
}

export function needString(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || !v.length) throw new UsageError(`missing --${name}`);
  return v;
}

export function onePositional(positionals: string[], what = 'DIR'): string {
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `expected one ${what}, got ${positionals.length}: ${positionals.join(' ')}` : `missing ${what}`);
  return positionals[0]!;
}
