// Shared CLI pieces: one option table used both for parsing (node:util parseArgs) and for --help,
// exit codes, error printing, and the progress display.
import { parseArgs } from 'node:util';
import { GeoEditError } from '../errors';
import { DEFAULTS } from '../options';
import { DEFAULT_MAX_SHARD_SIZE, parseSize, type CheckpointOptions, type ProgressEvent } from '../checkpoint';

export const EXIT = Object.freeze({ OK: 0, USAGE: 1, BAD_INPUT: 2, RUNTIME: 3 });

export class UsageError extends Error {}

export interface OptSpec {
  /** --flag name */
  name: string;
  type: 'string' | 'boolean';
  /** How the value is read: number, string, size (bytes: '2GiB', '500MB', 1234), list (repeatable) or boolean. */
  kind: 'number' | 'string' | 'list' | 'boolean' | 'int' | 'size';
  /** The CheckpointOptions key it sets (none for CLI-only flags). */
  key?: keyof CheckpointOptions;
  /** Shown in --help; what applies when the flag is absent. */
  default: string;
  desc: string;
  metavar?: string;
  short?: string;
}

/** EditOptions as flags; defaults come from lib/options.ts DEFAULTS (one place). */
export const EDIT_FLAGS: OptSpec[] = [
  { name: 'strategy', type: 'string', kind: 'string', key: 'strategy', default: DEFAULTS.strategy, metavar: 'S', desc: 'geoedit | forget-then-learn | task-arithmetic' },
  { name: 'preset', type: 'string', kind: 'string', key: 'preset', default: 'none', metavar: 'paper', desc: "'paper': keepOrthogonal 0, fuseAligned 1, forgetConflicting 1, kappa 1 (explicit flags win)" },
  { name: 'scale', type: 'string', kind: 'number', key: 'scale', default: String(DEFAULTS.scale), metavar: 'X', desc: 'edit strength alpha' },
  { name: 'kappa', type: 'string', kind: 'number', key: 'kappa', default: String(DEFAULTS.kappa), metavar: 'X', desc: 'adaptive threshold t = kappa / sqrt(n) on |cos|' },
  { name: 'band-degrees', type: 'string', kind: 'number', key: 'bandDegrees', default: 'none (kappa)', metavar: 'D', desc: 'fixed band of D degrees around 90°, replaces kappa' },
  { name: 'keep-orthogonal', type: 'string', kind: 'number', key: 'keepOrthogonal', default: String(DEFAULTS.keepOrthogonal), metavar: 'X', desc: 'share of the new update kept on orthogonal rows (gamma)' },
  { name: 'fuse-aligned', type: 'string', kind: 'number', key: 'fuseAligned', default: String(DEFAULTS.fuseAligned), metavar: 'X', desc: 'old knowledge integrated on synergy rows (mu)' },
  { name: 'forget-conflicting', type: 'string', kind: 'number', key: 'forgetConflicting', default: String(DEFAULTS.forgetConflicting), metavar: 'X', desc: 'old knowledge forgotten on conflict rows (phi)' },
  { name: 'lambda', type: 'string', kind: 'number', key: 'lambda', default: String(DEFAULTS.lambda), metavar: 'X', desc: 'F-Learning forgetting strength (forget-then-learn)' },
  { name: 'density', type: 'string', kind: 'number', key: 'density', default: String(DEFAULTS.density), metavar: 'X', desc: 'trim: keep this share of each task-vector row, in (0, 1]' },
  { name: 'temperature', type: 'string', kind: 'number', key: 'temperature', default: String(DEFAULTS.temperature), metavar: 'T', desc: 'temperature of the neuron-importance weights (> 0)' },
  { name: 'threads', type: 'string', kind: 'int', key: 'threads', default: '0 (all cores)', metavar: 'N', desc: 'threads of the shared pool' },
  { name: 'backend', type: 'string', kind: 'string', key: 'backend', default: 'auto, or $GEOEDIT_BACKEND', metavar: 'B', desc: "auto | cpu | cuda for checkpoints ('auto': a usable GPU, else the CPU; 'cuda' fails with ERR_CUDA_UNAVAILABLE and the reason, never falls back); adapters run on the CPU only" },
  { name: 'cuda-memory-limit', type: 'string', kind: 'size', key: 'cudaMemoryLimit', default: '$GEOEDIT_CUDA_MEMORY, else half the free GPU memory, at most 4 GiB', metavar: 'SIZE', desc: 'GPU memory the edit may use (2GiB, 512MiB, 1GB or bytes); blocks are streamed through in chunks that fit' },
  { name: 'out-dtype', type: 'string', kind: 'string', key: 'outDtype', default: "the base tensor's dtype", metavar: 'D', desc: 'f32 | f16 | bf16 for every float tensor written' },
  { name: 'importance-old', type: 'string', kind: 'string', key: 'importanceOld', default: 'none (magnitude |tau|)', metavar: 'P', desc: 'checkpoint of importance tensors for old (same names/shapes)' },
  { name: 'importance-new', type: 'string', kind: 'string', key: 'importanceNew', default: 'none (magnitude |tau|)', metavar: 'P', desc: 'checkpoint of importance tensors for new' },
  { name: 'allow-non-finite', type: 'boolean', kind: 'boolean', key: 'allowNonFinite', default: 'off', desc: 'edit rows holding NaN/Inf instead of failing' },
  { name: 'include', type: 'string', kind: 'list', key: 'include', default: 'all tensors', metavar: 'GLOB', desc: 'edit only tensors whose name matches (repeatable; * any run, ? one char)' },
  { name: 'exclude', type: 'string', kind: 'list', key: 'exclude', default: 'none', metavar: 'GLOB', desc: 'never edit tensors whose name matches (repeatable); unselected tensors are copied from the base' },
  { name: 'report', type: 'string', kind: 'string', key: 'report', default: 'none', metavar: 'FILE.html', desc: 'write a self-contained HTML report (charts, no network)' },
  { name: 'no-hash', type: 'boolean', kind: 'boolean', default: 'off (SHA-256 of every input in the manifest)', desc: 'skip hashing the inputs' },
  { name: 'json', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print the summary as JSON on stdout' },
  { name: 'quiet', type: 'boolean', kind: 'boolean', default: 'off', desc: 'no progress display' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export const INPUT_FLAGS: OptSpec[] = [
  { name: 'base', type: 'string', kind: 'string', default: 'required', metavar: 'P', desc: 'the base model θ0: a .safetensors file, or a directory with model.safetensors or model.safetensors.index.json + shards' },
  { name: 'old', type: 'string', kind: 'string', default: 'required', metavar: 'P', desc: 'θold: the base fine-tuned on the old facts' },
  { name: 'new', type: 'string', kind: 'string', default: 'required', metavar: 'P', desc: 'θnew: the base fine-tuned on the new facts' },
];

export const OUT_FLAGS: OptSpec[] = [
  { name: 'out', type: 'string', kind: 'string', default: 'required', metavar: 'DIR', desc: 'output directory (must not exist unless --force)' },
  { name: 'max-shard-size', type: 'string', kind: 'string', key: 'maxShardSize', default: DEFAULT_MAX_SHARD_SIZE, metavar: 'SIZE', desc: 'shard the output above this size (5GB, 500MB, 2GiB or bytes)' },
  { name: 'force', type: 'boolean', kind: 'boolean', key: 'force', default: 'off', desc: 'replace an existing output directory' },
];

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
    if (f.kind === 'list') options[f.name]!.multiple = true;
    if (f.short) options[f.name]!.short = f.short;
  }
  try {
    const r = parseArgs({ args: argv, options, allowPositionals, strict: true });
    return { values: r.values as Record<string, unknown>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Turns parsed flags into CheckpointOptions (numbers checked here: a bad number is a usage error). */
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
      o[f.key] = n;
    } else if (f.kind === 'size') {
      try {
        o[f.key] = parseSize(v, `--${f.name}`);
      } catch {
        throw new UsageError(`Expected a size such as 2GiB, 512MiB, 1GB or a number of bytes for --${f.name} but received '${String(v)}'`);
      }
    } else {
      o[f.key] = v;
    }
  }
  if (values['no-hash']) o.hash = false;
  return o as CheckpointOptions;
}

const USAGE_CODES = new Set(['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_OPTION', 'ERR_UNKNOWN_OPTION', 'ERR_UNKNOWN_STRATEGY', 'ERR_UNKNOWN_DTYPE', 'ERR_COEFFICIENTS']);
const INPUT_CODES = new Set([
  'ERR_BAD_SAFETENSORS', 'ERR_SHAPE_MISMATCH', 'ERR_MISSING_TENSOR', 'ERR_NOT_FOUND', 'ERR_NON_FINITE', 'ERR_BAD_IMPORTANCE', 'ERR_BAD_STATISTICS',
  'ERR_UNSUPPORTED', 'ERR_OUTPUT_EXISTS', 'ERR_DATA_LENGTH', 'ERR_BAD_ADAPTER',
]);

/** Prints an error and returns the exit code: 1 usage, 2 bad input, 3 runtime failure. */
export function reportError(e: unknown, cmd: string): number {
  if (e instanceof UsageError) {
    process.stderr.write(`geoedit ${cmd}: ${e.message}\nRun 'geoedit ${cmd} --help' for the options.\n`);
    return EXIT.USAGE;
  }
  const code = (e as { code?: unknown })?.code;
  const msg = e instanceof Error ? e.message : String(e);
  if (typeof code === 'string') {
    process.stderr.write(`geoedit ${cmd}: ${code}: ${msg}\n`);
    if (USAGE_CODES.has(code)) return EXIT.USAGE;
    if (INPUT_CODES.has(code)) return EXIT.BAD_INPUT;
    return EXIT.RUNTIME;
  }
  if (e instanceof GeoEditError) return EXIT.RUNTIME;
  process.stderr.write(`geoedit ${cmd}: ${e instanceof Error && e.stack ? e.stack : msg}\n`);
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
        const name = room <= 1 ? '' : e.tensor.length <= room ? e.tensor : '…' + e.tensor.slice(e.tensor.length - room + 1);
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
