// Shared CLI pieces: parsing (node:util parseArgs) and --help from the generated flags (./flags.ts),
// exit codes, error printing, and the progress display.
import { parseArgs } from 'node:util';
import { GeoEditError } from '../errors';
import { parseSize } from '../options';
import type { CheckpointOptions, ProgressEvent } from '../checkpoint';
import type { OptSpec } from './flags';
import { safeText } from '../text';

export { safeText } from '../text';

export type { OptSpec } from './flags';
export { EDIT_FLAGS, INPUT_FLAGS, OUT_FLAGS } from './flags';

export const EXIT = Object.freeze({ OK: 0, USAGE: 1, BAD_INPUT: 2, RUNTIME: 3 });

export class UsageError extends Error {}

/** Lines of output, each made safe (safeText), joined with newlines. */
export function safeLines(lines: string[]): string {
  return lines.map(safeText).join('\n') + '\n';
}

export function helpText(usage: string, about: string, flags: OptSpec[]): string {
  const rows = flags.map((f) => {
    const left = `  ${f.short ? `-${f.short}, ` : ''}--${f.name}${f.metavar ? ` ${f.metavar}` : ''}`;
    return { left, right: `${f.desc}${f.default ? ` (default: ${f.default})` : ''}` };
  });
  const w = Math.max(...rows.map((r) => r.left.length)) + 2;
  return `Usage: ${usage}\n\n${about}\n\nOptions:\n${rows.map((r) => r.left.padEnd(w) + r.right).join('\n')}\n`;
}

export function parse(argv: string[], flags: OptSpec[], allowPositionals: boolean): { values: Record<string, unknown>; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const f of flags) {
    options[f.name] = { type: f.type };
    if (f.kind === 'list' || f.kind === 'pairs') options[f.name]!.multiple = true;
    if (f.short) options[f.name]!.short = f.short;
  }
  try {
    const r = parseArgs({ args: joinNegativeValues(argv, options), allowPositionals, options, strict: true });
    return { values: r.values as Record<string, unknown>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const NEGATIVE_NUMBER = /^-(?:\d|\.\d|inf|Infinity|nan|NaN)/;

/** `--scale -1` as `--scale=-1`: parseArgs would call a value starting with '-' ambiguous; a negative number is a value. */
function joinNegativeValues(argv: string[], options: Record<string, { type: 'string' | 'boolean'; short?: string }>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { out.push(...argv.slice(i)); break; }
    const m = /^--([^=]+)$/.exec(a);
    const next = argv[i + 1];
    if (m && options[m[1]!]?.type === 'string' && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Turns parsed flags into options (numbers checked here: a bad number is a usage error). */
export function toOptions(values: Record<string, unknown>, flags: OptSpec[]): CheckpointOptions {
  const o: Record<string, unknown> = {};
  for (const f of flags) {
    const v = values[f.name];
    if (v === undefined || !f.key) continue;
    if (f.kind === 'number' || f.kind === 'int') {
      const n = Number(v);
      if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || (f.kind === 'int' && !Number.isInteger(n))) {
        throw new UsageError(`Expected ${f.kind === 'int' ? 'an integer' : 'a number'} for --${f.name} but received '${String(v)}'`);
      }
      if (f.sub) o[f.key] = { ...(o[f.key] as object | undefined), [f.sub]: n };
      else o[f.key] = n;
    } else if (f.kind === 'size') {
      try {
        o[f.key] = parseSize(v, `--${f.name}`);
      } catch {
        throw new UsageError(`Expected a size such as 2GiB, 512MiB, 1GB or a number of bytes for --${f.name} but received '${String(v)}'`);
      }
    } else if (f.kind === 'pairs') {
      // --layout GLOB=KIND, repeatable -> { GLOB: KIND } in the given order (the value is split at its last '=')
      const obj: Record<string, string> = {};
      for (const item of v as string[]) {
        const at = item.lastIndexOf('=');
        if (at <= 0 || at === item.length - 1) throw new UsageError(`Expected ${f.metavar ?? 'KEY=VALUE'} for --${f.name} but received '${item}'`);
        obj[item.slice(0, at)] = item.slice(at + 1);
      }
      o[f.key] = obj;
    } else if (f.kind === 'negate') {
      if (v === true) o[f.key] = false;
    } else if (f.sub) {
      o[f.key] = { ...(o[f.key] as object | undefined), [f.sub]: v };
    } else {
      o[f.key] = v;
    }
  }
  const pres = o.preserve as { file?: unknown } | undefined;
  if (pres && pres.file === undefined) throw new UsageError('--preserve-rho and --preserve-mu need --preserve FILE');
  return o as CheckpointOptions;
}

/** Refuses flags that do not apply to this kind of input (adapters or checkpoints), naming them. */
export function checkInputKind(values: Record<string, unknown>, flags: OptSpec[], adapters: boolean): void {
  for (const f of flags) {
    if (values[f.name] === undefined) continue;
    if (adapters && f.adapters === false) throw new UsageError(`--${f.name} is not used with --old-adapter/--new-adapter`);
    if (!adapters && f.checkpoints === false) throw new UsageError(`--${f.name} is used only with --old-adapter/--new-adapter`);
  }
}

const USAGE_CODES = new Set(['ERR_PART_INDEX', 'ERR_INVALID_ARG_TYPE', 'ERR_INVALID_OPTION', 'ERR_UNKNOWN_OPTION', 'ERR_UNKNOWN_STRATEGY', 'ERR_UNKNOWN_DTYPE', 'ERR_COEFFICIENTS', 'ERR_OUTPUT_IS_INPUT']);
const INPUT_CODES = new Set([
  'ERR_BAD_SAFETENSORS', 'ERR_SHAPE_MISMATCH', 'ERR_MISSING_TENSOR', 'ERR_NOT_FOUND', 'ERR_NON_FINITE', 'ERR_NON_FINITE_OUTPUT', 'ERR_BAD_IMPORTANCE', 'ERR_BAD_STATISTICS',
  'ERR_UNSUPPORTED', 'ERR_OUTPUT_EXISTS', 'ERR_DATA_LENGTH', 'ERR_BAD_ADAPTER',
  'ERR_NOT_A_PART', 'ERR_PART_MISSING', 'ERR_PART_DUPLICATE', 'ERR_PART_FOREIGN', 'ERR_PART_CORRUPT',
]);

/** Prints an error and returns the exit code: 1 usage, 2 bad input, 3 runtime failure. */
export function reportError(e: unknown, cmd: string): number {
  if (e instanceof UsageError) {
    process.stderr.write(`geoedit ${cmd}: ${safeText(e.message)}\nRun 'geoedit ${cmd} --help' for the options.\n`);
    return EXIT.USAGE;
  }
  const code = (e as { code?: unknown })?.code;
  const msg = e instanceof Error ? e.message : String(e);
  if (typeof code === 'string') {
    process.stderr.write(`geoedit ${cmd}: ${safeText(code)}: ${safeText(msg)}\n`);
    if (USAGE_CODES.has(code)) return EXIT.USAGE;
    if (INPUT_CODES.has(code)) return EXIT.BAD_INPUT;
    return EXIT.RUNTIME;
  }
  if (e instanceof GeoEditError) return EXIT.RUNTIME;
  // An unexpected error: its message made safe, then its stack frames (they name only our code).
  const stack = e instanceof Error && e.stack ? e.stack : '';
  const at = stack.indexOf('\n    at ');
  process.stderr.write(`geoedit ${cmd}: ${safeText(msg)}${at >= 0 ? stack.slice(at) : ''}\n`);
  return EXIT.RUNTIME;
}

export function fmtBytes(n: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 2 : 0)} ${u[i]}`;
}

/** A progress display: a bar with bytes, GB/s and ETA on a TTY; a plain line every 10% otherwise. */
export function progressPrinter(stream: NodeJS.WriteStream): { onProgress: (e: ProgressEvent) => void; done: () => void } {
  const tty = !!stream.isTTY;
  let lastDecile = -1;
  let drawn = false;
  return {
    onProgress(e: ProgressEvent) {
      const frac = e.bytesTotal > 0 ? Math.min(1, e.bytesDone / e.bytesTotal) : 1;
      const secs = e.elapsedMs / 1000;
      const gbps = secs > 0 ? e.bytesDone / 1e9 / secs : 0;
      const eta = gbps > 0 ? (e.bytesTotal - e.bytesDone) / 1e9 / gbps : NaN;
      const etaS = Number.isFinite(eta) ? `${Math.ceil(eta)}s` : '?';
      if (tty) {
        const width = 28, full = Math.round(frac * width);
        const cols = (stream.columns ?? 120) - 1;
        const head = `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${(100 * frac).toFixed(0).padStart(3)}% ${fmtBytes(e.bytesDone)}/${fmtBytes(e.bytesTotal)} ${gbps.toFixed(2)} GB/s ETA ${etaS} `;
        const room = cols - head.length;
        const tensor = safeText(e.tensor);
        const name = room <= 1 ? '' : tensor.length <= room ? tensor : '…' + tensor.slice(tensor.length - room + 1);
        stream.write(`\r${(head + name).padEnd(cols).slice(0, cols)}`);
        drawn = true;
      } else {
        const d = Math.floor(frac * 10);
        if (d > lastDecile) {
          lastDecile = d;
          stream.write(`${e.phase}: ${(100 * frac).toFixed(0)}% ${fmtBytes(e.bytesDone)} of ${fmtBytes(e.bytesTotal)}, ${e.tensorsDone}/${e.tensorsTotal} tensors, ${gbps.toFixed(2)} GB/s, ETA ${etaS}\n`);
        }
      }
    },
    done() {
      if (tty && drawn) stream.write('\n');
    },
  };
}

/** Preservation's warnings (weights edited without statistics, unused statistics) go to stderr, whatever the output mode. */
export function splitPreservationWarnings(warnings: readonly string[]): string[] {
  const rest: string[] = [];
  for (const w of warnings) {
    if (w.startsWith('preservation: ')) process.stderr.write(`warning: ${safeText(w)}\n`);
    else rest.push(w);
  }
  return rest;
}

/** One summary line for the preserved tensors: how many, and the share of the update's energy the projection removed. */
export function preservationLine(entries: ReadonlyArray<{ preserve?: { energy: { oldBefore: number; oldAfter: number; newBefore: number; newAfter: number } } | null }>, file: string | undefined): string[] {
  if (!file) return [];
  let n = 0, ob = 0, oa = 0, nb = 0, na = 0;
  for (const e of entries) {
    if (!e.preserve) continue;
    n++;
    ob += e.preserve.energy.oldBefore; oa += e.preserve.energy.oldAfter; nb += e.preserve.energy.newBefore; na += e.preserve.energy.newAfter;
  }
  const pct = (b: number, a: number) => (b > 0 ? `${(100 * (1 - a / b)).toFixed(1)}%` : '–');
  return [`preservation: ${n} of ${entries.length} preserved with ${file}; update energy removed by the projection: new ${pct(nb, na)}, old ${pct(ob, oa)}`];
}
