// The options of editCheckpoint / analyzeCheckpoint: types, globs, and their resolution (keys,
// types and ranges from the option table; the rules between options here).
import { GeoEditError } from '../errors';
import { checkDtype, optionSpec, parseSize, resolveParams, resolveThreads, validateOptions, type ResolvedParams } from '../options';
import { chooseBackend, resolveCudaMemoryLimit, type BackendChoice, type PreserveWork } from '../backend';
import type { DType, EditOptions } from '../types';
import { globToRegExp, type GlobMatcher } from './globs';
import { parseLayoutOption, type LayoutKind } from './layout';
import { checkPreserveFileOption, type PreserveFileOption } from '../preserve/option';
import type { PartOption } from '../partition/plan';

export interface ProgressEvent {
  phase: 'edit' | 'analyze';
  bytesDone: number;
  bytesTotal: number;
  tensor: string;
  tensorsDone: number;
  tensorsTotal: number;
  elapsedMs: number;
}

export interface CheckpointOptions extends Omit<EditOptions, 'importanceOld' | 'importanceNew' | 'coefficients' | 'preserve'> {
  /** Neuron layout per tensor: { glob: 'rows' | 'columns' | 'experts' | 'experts-columns' } (first matching glob wins; SPEC §2). Unmatched tensors: the layout detected from the base's config.json, else rows. */
  layout?: Record<string, LayoutKind>;
  /** strategy 'custom': a safetensors file with `<tensor>.cNew` and `<tensor>.cOld` (F32, one value per neuron in the tensor's layout) for every edited tensor. */
  coefficients?: string;
  /** Checkpoints holding importance tensors (same names and shapes as the base). */
  importanceOld?: string;
  importanceNew?: string;
  /** Glob patterns on tensor names (`*` any run of characters, `?` one); unselected tensors are copied from the base. */
  include?: string | string[];
  exclude?: string | string[];
  /** Bytes, or a string like '5GB', '500MB', '2GiB'. Default '5GB'. */
  maxShardSize?: number | string;
  /** Write an HTML report to this path. */
  report?: string;
  /** Replace an existing output directory. */
  force?: boolean;
  /** Compute SHA-256 of every input file for the manifest (default true). */
  hash?: boolean;
  /** Copy the base directory's other files (config.json, tokenizer…) (default true). */
  copyFiles?: boolean;
  onProgress?: (e: ProgressEvent) => void;
  signal?: AbortSignal;
  /** Preservation statistics (SPEC §3 step 0; docs/preservation.md). */
  preserve?: { file: string; rho?: number; mu?: number };
  /** Bytes per block of the widest input of an edited tensor (default 8 MiB on the CPU, 64 MiB
   *  on the GPU, where each block is split into device chunks that stream through >= 2 CUDA streams). */
  blockBytes?: number;
  /** Write only part K of N of the output ('K/N', 'auto/N', or { index: K | 'auto', count: N }; K is 1-based): docs/partitioned.md. */
  part?: PartOption;
}

export const DEFAULT_MAX_SHARD_SIZE = optionSpec('maxShardSize')!.default as string;

function globList(v: unknown, option: string): GlobMatcher[] | null {
  if (v === undefined) return null;
  return (typeof v === 'string' ? [v] : (v as string[])).map((g) => globToRegExp(g, option));
}

export interface Resolved {
  params: ResolvedParams;
  outDtype: DType | null;
  threads: number;
  include: GlobMatcher[] | null;
  exclude: GlobMatcher[] | null;
  maxShardSize: number;
  /** 0: the backend's default (the core decides). */
  blockBytes: number;
  backend: 'cpu' | 'cuda';
  /** What was asked for and why `backend` runs the job (the manifest's backend record). */
  backendChoice: BackendChoice;
  cudaMemoryLimit: number;
  layout: ReturnType<typeof parseLayoutOption>;
  /** strategy 'custom': the coefficients file. */
  coefficients: string | null;
  preserve: PreserveFileOption | null;
}

export function resolveCheckpointOptions(o: CheckpointOptions | undefined, what: string): Resolved {
  // Keys, types and ranges from the option table; then the rules between options.
  const opts = validateOptions(o, 'checkpoint', what) as CheckpointOptions;
  const params = resolveParams(opts);
  const preserve = checkPreserveFileOption(opts.preserve, what);
  if (params.strategy === 'custom' && opts.coefficients === undefined) {
    throw new GeoEditError('ERR_COEFFICIENTS', "strategy 'custom' needs per-neuron coefficients for every edited tensor: pass coefficients (a safetensors file with '<tensor>.cNew' and '<tensor>.cOld', F32, one value per neuron)", { option: 'coefficients' });
  }
  if (params.strategy !== 'custom' && opts.coefficients !== undefined) {
    throw new GeoEditError('ERR_INVALID_OPTION', "option 'coefficients' is used only with strategy 'custom'", { option: 'coefficients' });
  }
  if (opts.coefficients !== undefined && (typeof opts.coefficients !== 'string' || opts.coefficients === '')) {
    throw new GeoEditError('ERR_INVALID_OPTION', `Expected a path to a safetensors file for option 'coefficients' of ${what} but received ${typeof opts.coefficients}`, { option: 'coefficients' });
  }
  const layout = parseLayoutOption(opts.layout);
  if ((opts.importanceOld === undefined) !== (opts.importanceNew === undefined)) {
    throw new GeoEditError('ERR_INVALID_OPTION', 'Expected both importanceOld and importanceNew (or neither) but received only one', { option: opts.importanceOld ? 'importanceNew' : 'importanceOld' });
  }
  // Last: every other option is checked before the CUDA probe (an explicit 'cuda' that cannot
  // run throws ERR_CUDA_UNAVAILABLE with the reason; never a silent fallback to the CPU).
  const choice = chooseBackend(opts.backend, { kind: 'checkpoint', location: 'host' });
  const backend = choice.name;
  return {
    params,
    outDtype: opts.outDtype === undefined ? null : checkDtype(opts.outDtype, 'outDtype'),
    threads: resolveThreads(opts.threads),
    include: globList(opts.include, 'include'),
    exclude: globList(opts.exclude, 'exclude'),
    maxShardSize: parseSize(opts.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE),
    blockBytes: opts.blockBytes ?? 0,
    cudaMemoryLimit: resolveCudaMemoryLimit(opts.cudaMemoryLimit, backend),
    backend,
    layout,
    coefficients: opts.coefficients ?? null,
    backendChoice: choice,
    preserve,
  };
}

/**
 * A job with preservation: 'auto' weighs its projection (lib/backend.ts preserveRule) once the
 * statistics are planned; an explicit 'cpu'/'cuda' stays as resolved. Updates r's backend, its reason
 * and the CUDA memory limit that follows from it.
 */
export function choosePreservedBackend(r: Resolved, opts: CheckpointOptions, work: PreserveWork): void {
  const choice = chooseBackend(opts.backend, { kind: 'preserve', location: 'host', preserve: work });
  r.backendChoice = choice;
  r.backend = choice.name;
  r.cudaMemoryLimit = resolveCudaMemoryLimit(opts.cudaMemoryLimit, choice.name);
}
