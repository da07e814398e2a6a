// The one table of options. Each entry says what the option is (type, default, range), what it
// means, its CLI flag, and which entry points accept it. It drives:
//   - validation (lib/options/validate.ts: known keys per entry point, types, ranges; once, in TS),
//   - the core's parameters (entries with `param`: ResolvedParams and what crosses to the binding),
//   - the CLI flags and --help (lib/cli/flags.ts),
//   - the generated docs (lib/options/docs.ts, `npm run docs:gen`).
// Adding an edit option = one entry here (with `param`), the core's Params and the C ABI.
// The numeric defaults of `param` entries mirror Params in native/include/geoedit/geoedit.h
// (test/defaults.test.ts checks that they agree).

/** Where an option may be passed. */
export type EntryPoint =
  | 'tensor' // editTensor, editTensorSync, analyzeTensor
  | 'lora' // analyzeLora, editLora
  | 'checkpoint' // editCheckpoint, analyzeCheckpoint
  | 'adapters' // editAdapters, analyzeAdapters
  | 'assemble'; // assembleParts (partitioned edits, docs/partitioned.md)

export const ENTRY_POINTS: Record<EntryPoint, string> = {
  tensor: 'editTensor, editTensorSync, analyzeTensor',
  lora: 'analyzeLora, editLora',
  checkpoint: 'editCheckpoint, analyzeCheckpoint',
  adapters: 'editAdapters, analyzeAdapters',
  assemble: 'assembleParts',
};

export type OptionType =
  | 'number' // finite number, optional range
  | 'int' // integer, optional range
  | 'boolean'
  | 'enum' // one of `values`
  | 'size' // bytes, or '5GB' / '2GiB' (lib/options/size.ts)
  | 'globs' // a glob or an array of globs
  | 'path' // a non-empty string naming a file or directory
  | 'function'
  | 'signal' // an AbortSignal
  | 'structured'; // a tensor, coefficients, …: checked by the entry point itself

/** The CLI side of an option: the flag, and the commands and input kinds that take it. */
export interface CliSpec {
  flag: string;
  metavar?: string;
  short?: string;
  /** Commands that take the flag (default: edit and analyze). */
  commands?: readonly ('edit' | 'analyze' | 'assemble')[];
  /** Taken with --old-adapter/--new-adapter (default true). */
  adapters?: boolean;
  /** Taken with checkpoints (--old/--new) (default true). */
  checkpoints?: boolean;
  /** How the flag's text becomes the option's value: as the API type (default), a size, or the negation of a boolean (--no-hash sets hash: false). */
  parse?: 'size' | 'negate' | 'pairs' | 'list';
  /** The default as --help shows it, when it differs from the docs' default. */
  helpDefault?: string;
  /** The meaning as --help shows it, when it differs from `doc`. */
  help?: string;
  /** The key inside the option this flag sets ('file': --preserve sets preserve.file); CLI-only entries name the option in `of`. */
  sets?: string;
  /** CLI-only entries: the API option whose `sets` key the flag fills (--preserve-rho fills preserve.rho). */
  of?: string;
}

export interface OptionSpec {
  /** The API key ('' for CLI-only flags). */
  name: string;
  type: OptionType;
  /** enum: the allowed values. */
  values?: readonly string[];
  /** The machine default (param entries: what the core gets when the option is absent). */
  default?: number | string | boolean;
  /** The default in words (docs and --help). */
  defaultDoc: string;
  min?: number;
  max?: number;
  /** min / max excluded. */
  minOpen?: boolean;
  maxOpen?: boolean;
  /** Range in words, when a min/max does not say it all. */
  rangeDoc?: string;
  /** Error code for a value outside `values` (default ERR_INVALID_OPTION). */
  code?: 'ERR_UNKNOWN_STRATEGY' | 'ERR_UNKNOWN_DTYPE';
  /** The symbol in SPEC.md (α, κ, …), for the docs. */
  symbol?: string;
  doc: string;
  /** The core's Params: resolved with its default, passed to the binding. */
  param?: boolean;
  /** preset 'paper' value (param entries only). */
  paper?: number;
  accepts: readonly EntryPoint[];
  cli?: CliSpec;
}

const ALL: readonly EntryPoint[] = ['tensor', 'lora', 'checkpoint', 'adapters'];
const NOT_LORA: readonly EntryPoint[] = ['tensor', 'checkpoint'];

export const OPTIONS = [
  // ---- inputs and outputs (CLI only: the API takes them as arguments) ----
  { name: '', type: 'path', defaultDoc: 'required', doc: 'the base model θ0: a .safetensors file, or a directory with model.safetensors or model.safetensors.index.json + shards', accepts: [], cli: { flag: 'base', metavar: 'P' } },
  { name: '', type: 'path', defaultDoc: 'required', doc: 'θold: the base fine-tuned on the old facts', accepts: [], cli: { flag: 'old', metavar: 'P', adapters: false } },
  { name: '', type: 'path', defaultDoc: 'required', doc: 'θnew: the base fine-tuned on the new facts', accepts: [], cli: { flag: 'new', metavar: 'P', adapters: false } },
  { name: '', type: 'path', defaultDoc: 'none', doc: 'PEFT LoRA directory trained on the old facts (adapter_config.json + adapter_model.safetensors); replaces --old', accepts: [], cli: { flag: 'old-adapter', metavar: 'DIR', checkpoints: false } },
  { name: '', type: 'path', defaultDoc: 'none', doc: 'PEFT LoRA directory trained on the new facts; replaces --new', accepts: [], cli: { flag: 'new-adapter', metavar: 'DIR', checkpoints: false } },
  { name: 'keepZeroBlocks', type: 'boolean', default: false, defaultDoc: 'off', doc: "adapter output: keep a side's all-zero block of B' (rank always r_new + r_old)", accepts: ['adapters'], cli: { flag: 'keep-zero-blocks', commands: ['edit'], checkpoints: false, help: "with adapters: keep a side's all-zero block of B' (rank always r_new + r_old)" } },
  { name: 'outFormat', type: 'enum', values: ['adapter', 'full'], defaultDoc: 'adapter (full when --base is given or density < 1)', doc: "'adapter' writes an exact PEFT adapter (rank r_new + r_old), 'full' merges into the base", accepts: ['adapters'], cli: { flag: 'out-format', metavar: 'F', commands: ['edit'], checkpoints: false, help: "with adapters: 'adapter' writes an exact PEFT adapter (rank r_new + r_old), 'full' merges into --base" } },
  { name: '', type: 'path', defaultDoc: 'required', doc: 'output directory (must not exist unless --force)', accepts: [], cli: { flag: 'out', metavar: 'DIR', commands: ['edit', 'assemble'] } },
  { name: 'maxShardSize', type: 'size', default: '5GB', defaultDoc: '5GB (merged adapters: one file)', doc: 'shard the output above this size (5GB, 500MB, 2GiB or bytes); with adapters, the merged output (outFormat full) only', accepts: ['checkpoint', 'adapters'], cli: { flag: 'max-shard-size', metavar: 'SIZE', commands: ['edit'] } },
  { name: 'force', type: 'boolean', default: false, defaultDoc: 'off', doc: 'replace an existing output directory', accepts: ['checkpoint', 'adapters', 'assemble'], cli: { flag: 'force', commands: ['edit', 'assemble'] } },
  // ---- partitioned edits (docs/partitioned.md) ----
  { name: 'part', type: 'structured', defaultDoc: 'none (the whole edit)', doc: "write only part K of N of the output: 'K/N' (1 <= K <= N), 'auto/N' (K from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX) or { index: K | 'auto', count: N }; every part plans the whole output and writes the shards assigned to it plus a part manifest; `assembleParts` (geoedit assemble) joins the parts. Checkpoint edits and merged adapters (outFormat 'full') only", accepts: ['checkpoint', 'adapters'], cli: { flag: 'part', metavar: 'K/N', commands: ['edit'], help: "write only part K of N (or auto/N: K from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX) into --out; join the parts with geoedit assemble (docs/partitioned.md)" } },
  { name: '', type: 'path', defaultDoc: 'required', doc: 'the part directories (geoedit edit --part K/N outputs), every part once; also as further arguments (--parts parts/*)', accepts: [], cli: { flag: 'parts', metavar: 'DIR...', commands: ['assemble'], parse: 'list' } },
  { name: 'move', type: 'boolean', default: false, defaultDoc: 'off (parts are kept: their files are hard-linked into the output)', doc: 'remove the part directories once the output is committed (the shards stay, hard-linked into the output: nothing is copied)', accepts: ['assemble'], cli: { flag: 'move', commands: ['assemble'] } },
  { name: 'verify', type: 'boolean', default: true, defaultDoc: 'on', doc: "re-hash every part file against its part manifest before the commit (reads the data once); off: sizes are checked and the parts' recorded hashes are used", accepts: ['assemble'], cli: { flag: 'no-verify', parse: 'negate', commands: ['assemble'], helpDefault: 'off (every part file is re-hashed against its manifest)', help: "skip re-hashing the parts' files (sizes are still checked; the recorded hashes are used)" } },
  // ---- the edit (the core's Params) ----
  { name: 'strategy', type: 'enum', values: ['geoedit', 'forget-then-learn', 'task-arithmetic', 'custom'], default: 'geoedit', defaultDoc: 'geoedit', code: 'ERR_UNKNOWN_STRATEGY', param: true, doc: "'geoedit', 'forget-then-learn' (F-Learning: (α, −λ) everywhere), 'task-arithmetic' (plain fine-tuning: (α, 0)), 'custom' (per-row (α·cNew[i], cOld[i]) from `coefficients`)", accepts: ALL, cli: { flag: 'strategy', metavar: 'S', help: 'geoedit | forget-then-learn | task-arithmetic | custom (checkpoints, with --coefficients)' } },
  { name: 'preset', type: 'enum', values: ['paper'], defaultDoc: 'none', doc: "'paper': the paper's literal reading — keepOrthogonal 0, fuseAligned 1, forgetConflicting 1, kappa 1 (explicit options still win)", accepts: ALL, cli: { flag: 'preset', metavar: 'paper', help: "'paper': keepOrthogonal 0, fuseAligned 1, forgetConflicting 1, kappa 1 (explicit flags win)" } },
  { name: 'scale', type: 'number', default: 1, defaultDoc: '1', symbol: 'α', param: true, doc: 'edit strength, every strategy', accepts: ALL, cli: { flag: 'scale', metavar: 'X', help: 'edit strength alpha' } },
  { name: 'kappa', type: 'number', default: 2, defaultDoc: '2', min: 0, symbol: 'κ', param: true, paper: 1, doc: 'adaptive threshold t = κ/√n on |cos|', accepts: ALL, cli: { flag: 'kappa', metavar: 'X', help: 'adaptive threshold t = kappa / sqrt(n) on |cos|' } },
  { name: 'bandDegrees', type: 'number', default: -1, defaultDoc: 'unset (kappa)', min: 0, max: 90, symbol: 'δ', param: true, doc: 'fixed band |φ − 90°| ≤ δ instead of κ', accepts: ALL, cli: { flag: 'band-degrees', metavar: 'D', helpDefault: 'none (kappa)', help: 'fixed band of D degrees around 90°, replaces kappa' } },
  { name: 'keepOrthogonal', type: 'number', default: 0.75, defaultDoc: '0.75', symbol: 'γ', param: true, paper: 0, doc: 'share of the new update kept on orthogonal rows (0 = the paper\'s hard mask)', accepts: ALL, cli: { flag: 'keep-orthogonal', metavar: 'X', help: 'share of the new update kept on orthogonal rows (gamma)' } },
  { name: 'fuseAligned', type: 'number', default: 0, defaultDoc: '0', symbol: 'μ', param: true, paper: 1, doc: 'how much old knowledge aligned (synergy) rows integrate', accepts: ALL, cli: { flag: 'fuse-aligned', metavar: 'X', help: 'old knowledge integrated on synergy rows (mu)' } },
  { name: 'forgetConflicting', type: 'number', default: 0, defaultDoc: '0', symbol: 'ϕ', param: true, paper: 1, doc: 'how much old knowledge conflicting rows forget first', accepts: ALL, cli: { flag: 'forget-conflicting', metavar: 'X', help: 'old knowledge forgotten on conflict rows (phi)' } },
  { name: 'lambda', type: 'number', default: 1, defaultDoc: '1', symbol: 'λ', param: true, doc: "F-Learning's forgetting strength (forget-then-learn)", accepts: ALL, cli: { flag: 'lambda', metavar: 'X', help: 'F-Learning forgetting strength (forget-then-learn)' } },
  { name: 'density', type: 'number', default: 1, defaultDoc: '1', min: 0, minOpen: true, max: 1, symbol: 'ρ', param: true, doc: 'share of each task-vector row kept by importance (trim); ties keep the lower column', accepts: ALL, cli: { flag: 'density', metavar: 'X', help: 'trim: keep this share of each task-vector row, in (0, 1]' } },
  { name: 'temperature', type: 'number', default: 1, defaultDoc: '1', min: 0, minOpen: true, symbol: 'T', param: true, doc: 'sigmoid temperature of the old-vs-new neuron-importance weight', accepts: ALL, cli: { flag: 'temperature', metavar: 'T', help: 'temperature of the neuron-importance weights (> 0)' } },
  { name: 'allowNonFinite', type: 'boolean', default: false, defaultDoc: 'off', param: true, doc: 'edit rows holding NaN/Inf instead of failing (such rows have cos 0: orthogonal)', accepts: ALL, cli: { flag: 'allow-non-finite', help: 'edit rows holding NaN/Inf instead of failing' } },
  { name: 'allowNonFiniteOutput', type: 'boolean', default: false, defaultDoc: 'off', param: true, doc: 'write outputs that overflow their dtype (Inf) instead of failing with ERR_NON_FINITE_OUTPUT naming the tensor, row and column', accepts: ALL, cli: { flag: 'allow-non-finite-output', help: 'write outputs that overflow their dtype instead of failing (ERR_NON_FINITE_OUTPUT)' } },
  // ---- how it runs ----
  { name: 'threads', type: 'int', default: 0, defaultDoc: '0 (all cores)', min: 0, doc: 'threads of the shared pool (results are byte-identical for any count)', accepts: ALL, cli: { flag: 'threads', metavar: 'N', help: 'threads of the shared pool' } },
  { name: 'backend', type: 'enum', values: ['auto', 'cpu', 'cuda'], defaultDoc: 'auto, or $GEOEDIT_BACKEND', doc: "'auto' (the faster backend for the job: the CPU for data in host memory, as measured; the GPU for compute-bound work; the choice and its reason are in info() and the manifest), 'cpu', or 'cuda' (fails with ERR_CUDA_UNAVAILABLE and the reason, never falls back); the LoRA path runs on the CPU only", accepts: ALL, cli: { flag: 'backend', metavar: 'B', help: "auto | cpu | cuda for checkpoints ('auto': the CPU for these host-memory jobs, the faster one measured; the manifest says why; 'cuda' fails with ERR_CUDA_UNAVAILABLE and the reason, never falls back); adapters run on the CPU only" } },
  { name: 'cudaMemoryLimit', type: 'int', default: 0, defaultDoc: '$GEOEDIT_CUDA_MEMORY, else half the free GPU memory, at most 4 GiB', min: 0, doc: 'device bytes one call (one tensor, or one checkpoint block) may use, all streams together; rows are streamed through in chunks that fit', accepts: NOT_LORA, cli: { flag: 'cuda-memory-limit', metavar: 'SIZE', adapters: false, parse: 'size', help: 'GPU memory the edit may use (2GiB, 512MiB, 1GB or bytes); blocks are streamed through in chunks that fit' } },
  { name: 'outDtype', type: 'enum', values: ['f32', 'f16', 'bf16'], defaultDoc: "the base tensor's dtype", code: 'ERR_UNKNOWN_DTYPE', doc: "'f32', 'f16' or 'bf16' for every float tensor written", accepts: ALL, cli: { flag: 'out-dtype', metavar: 'D', commands: ['edit'], help: 'f32 | f16 | bf16 for every float tensor written' } },
  // ---- per-row inputs ----
  { name: 'importanceOld', type: 'structured', defaultDoc: 'none (magnitude |tau|)', doc: 'importance of old per element: a tensor of the base\'s shape (editTensor) or a checkpoint of such tensors (same names and shapes; editCheckpoint); finite, ≥ 0', accepts: NOT_LORA, cli: { flag: 'importance-old', metavar: 'P', adapters: false, help: 'checkpoint of importance tensors for old (same names/shapes)' } },
  { name: 'importanceNew', type: 'structured', defaultDoc: 'none (magnitude |tau|)', doc: 'importance of new, as importanceOld', accepts: NOT_LORA, cli: { flag: 'importance-new', metavar: 'P', adapters: false, help: 'checkpoint of importance tensors for new' } },
  { name: 'coefficients', type: 'structured', defaultDoc: '—', doc: "strategy 'custom': { cNew, cOld } Float32Arrays of one finite value per row; for checkpoints a safetensors file holding `<tensor>.cNew` and `<tensor>.cOld` (F32, one value per neuron in the tensor's layout) for every edited tensor", accepts: ['tensor', 'lora', 'checkpoint', 'adapters'], cli: { flag: 'coefficients', metavar: 'FILE', adapters: false, help: "strategy custom: safetensors file of <tensor>.cNew / <tensor>.cOld (F32, one per neuron)" } },
  { name: 'layout', type: 'structured', defaultDoc: "detected from the base's config.json, else rows", doc: "neuron layout per tensor: { glob: 'rows' | 'columns' | 'experts' | 'experts-columns' } (first matching glob wins); unmatched tensors get the layout of the model family in the base's config.json (GPT-2 Conv1D weights: columns), else rows", accepts: ['checkpoint'], cli: { flag: 'layout', metavar: 'GLOB=KIND', adapters: false, parse: 'pairs', help: "neuron layout of matching tensors: rows | columns ([in, out], Conv1D) | experts ([E, out, in]) | experts-columns ([E, in, out]) (repeatable)" } },
  { name: 'out', type: 'structured', defaultDoc: 'a new array', doc: 'write into this tensor (same shape; its dtype is the output dtype) instead of allocating; must not overlap an input', accepts: ['tensor', 'lora', 'adapters'] },
  // ---- preservation statistics (SPEC §3 step 0; docs/preservation.md) ----
  { name: 'preserve', type: 'structured', defaultDoc: 'none (no preservation)', doc: "preservation statistics (SPEC §3 step 0): { file, rho?, mu? } for checkpoints and adapters (a safetensors file of W:cov / W:edit_cov / W:keys / W:basis per weight W, docs/preservation.md); { cov, editCov?, rho?, mu? } | { basis } (tensors) for editTensor/editTensorSync/analyzeTensor and the per-module LoRA API", accepts: ['tensor', 'lora', 'checkpoint', 'adapters'], cli: { flag: 'preserve', metavar: 'FILE', sets: 'file', help: 'preservation statistics: a safetensors file of W:cov / W:edit_cov / W:keys / W:basis per weight (docs/preservation.md); weights without statistics are edited without preservation (warning)' } },
  { name: '', type: 'number', default: 0.3, defaultDoc: '0.3', min: 0, minOpen: true, symbol: 'ρ (preserve)', doc: 'preserve.rho: ridge λ = ρ·tr(C0)/n (> 0)', accepts: [], cli: { flag: 'preserve-rho', metavar: 'R', of: 'preserve', sets: 'rho', help: 'with --preserve: ridge lambda = R * tr(C0) / n (> 0)' } },
  { name: '', type: 'number', default: 100, defaultDoc: '100 (calibrated on geoedit demo, docs/quality.md)', min: 0, symbol: 'μ (preserve)', doc: "preserve.mu: weight of the edit prompts' statistics C1, μ' = μ·tr(C0)/tr(C1) (≥ 0)", accepts: [], cli: { flag: 'preserve-mu', metavar: 'M', of: 'preserve', sets: 'mu', help: "with --preserve: weight M of the edit prompts' statistics (>= 0)" } },
  // ---- checkpoints ----
  { name: 'include', type: 'globs', defaultDoc: 'all tensors', doc: 'edit only tensors whose name matches (* any run, ? one char, [abc] a class); unselected tensors are copied from the base', accepts: ['checkpoint'], cli: { flag: 'include', metavar: 'GLOB', adapters: false, help: 'edit only tensors whose name matches (repeatable; * any run, ? one char)' } },
  { name: 'exclude', type: 'globs', defaultDoc: 'none', doc: 'never edit tensors whose name matches', accepts: ['checkpoint'], cli: { flag: 'exclude', metavar: 'GLOB', adapters: false, help: 'never edit tensors whose name matches (repeatable); unselected tensors are copied from the base' } },
  { name: 'report', type: 'path', defaultDoc: 'none', doc: 'write a self-contained HTML report (charts, no network) to this path', accepts: ['checkpoint', 'adapters', 'assemble'], cli: { flag: 'report', metavar: 'FILE.html', commands: ['edit', 'analyze', 'assemble'], help: 'write a self-contained HTML report (charts, no network)' } },
  { name: 'hash', type: 'boolean', default: true, defaultDoc: 'on', doc: 'SHA-256 of every input file in the manifest', accepts: ['checkpoint'], cli: { flag: 'no-hash', parse: 'negate', helpDefault: 'off (SHA-256 of every input in the manifest)', help: 'skip hashing the inputs' } },
  { name: 'copyFiles', type: 'boolean', default: true, defaultDoc: 'on', doc: "copy the base directory's other files (config.json, tokenizer…) into the output", accepts: ['checkpoint', 'adapters'] },
  { name: 'onProgress', type: 'function', defaultDoc: 'none', doc: 'called about every 200 ms with { phase, bytesDone, bytesTotal, tensor, tensorsDone, tensorsTotal, elapsedMs }', accepts: ['checkpoint'] },
  { name: 'signal', type: 'signal', defaultDoc: 'none', doc: 'an AbortSignal: aborting stops the job (ERR_ABORTED) and leaves nothing at the target', accepts: ['checkpoint'] },
  { name: 'blockBytes', type: 'int', default: 0, defaultDoc: '8 MiB on the CPU, 64 MiB on the GPU', min: 1, rangeDoc: 'a positive integer', doc: 'bytes per block of the widest input of an edited tensor', accepts: ['checkpoint'] },
  // ---- adapters ----
  { name: 'perRow', type: 'boolean', default: false, defaultDoc: 'off', doc: 'keep per-row statistics (cos, region, coefficients per module) in the result', accepts: ['adapters'] },
  { name: 'blockRows', type: 'int', defaultDoc: '~16 MiB of base per block', min: 1, doc: 'rows per block of the widest adapted tensor when merging into full weights', accepts: ['adapters'] },
  // ---- CLI only ----
  { name: '', type: 'boolean', defaultDoc: 'off', doc: 'print the summary as JSON on stdout', accepts: [], cli: { flag: 'json', commands: ['edit', 'analyze', 'assemble'] } },
  { name: '', type: 'boolean', defaultDoc: 'off', doc: 'no progress display', accepts: [], cli: { flag: 'quiet', commands: ['edit', 'analyze', 'assemble'] } },
  { name: '', type: 'boolean', defaultDoc: '', doc: 'this help', accepts: [], cli: { flag: 'help', short: 'h', commands: ['edit', 'analyze', 'assemble'] } },
] as const satisfies readonly OptionSpec[];

export type OptionEntry = (typeof OPTIONS)[number];

/** Entries that are the core's Params. */
export type ParamEntry = Extract<OptionEntry, { param: true }>;
export type ParamName = ParamEntry['name'];

type ValueOf<E> = E extends { type: 'enum'; values: readonly (infer V)[] } ? V : E extends { type: 'boolean' } ? boolean : number;

/** Fully resolved core parameters (what the kernels receive), one field per `param` entry. */
export type ResolvedParams = { [E in ParamEntry as E['name']]: ValueOf<E> };

/** The entry of an API option. */
export function optionSpec(name: string): OptionSpec | undefined {
  return (OPTIONS as readonly OptionSpec[]).find((o) => o.name === name);
}

/** API keys an entry point accepts, in table order. */
export function keysFor(entry: EntryPoint): Set<string> {
  return new Set((OPTIONS as readonly OptionSpec[]).filter((o) => o.name && o.accepts.includes(entry)).map((o) => o.name));
}

/** The `param` entries, in table order. */
export const PARAM_SPECS: readonly OptionSpec[] = (OPTIONS as readonly OptionSpec[]).filter((o) => o.param === true);
