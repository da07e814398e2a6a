// Every environment variable geoedit reads, in one list: name, meaning, default and who reads it.
// lib/ reads them only through readEnv()/flagSet() (a unit test fails on any other process.env
// read in lib/, and on a GEOEDIT_* name read by native/ or scripts/ that is missing here);
// `npm run docs:gen` fills the table in docs/environment.md from this list.
//
// Adding a variable: one entry here (and, when the C++ core or a script reads it, the getenv there).

/** Who reads a variable: the TS library, the C++ core, the CUDA plugin, the install/pack scripts, the bench or test scripts. */
export type EnvReader = 'lib' | 'core' | 'cuda-plugin' | 'install' | 'build' | 'bench' | 'tests';

export interface EnvVar {
  name: string;
  /** What it does (one sentence, Markdown allowed). */
  meaning: string;
  /** What applies when it is unset. */
  default: string;
  readBy: readonly EnvReader[];
}

export const ENV_VARS = [
  { name: 'GEOEDIT_BACKEND', meaning: "Backend used when the `backend` option (CLI `--backend`) is absent: `auto`, `cpu` or `cuda`.", default: 'unset (`auto`)', readBy: ['lib'] },
  { name: 'GEOEDIT_CUDA_MEMORY', meaning: "Device bytes one CUDA call may use when `cudaMemoryLimit` is absent; a size as everywhere in geoedit (`2GB` = 2·10⁹, `2GiB` = 2·2³⁰, `512MiB`, bytes).", default: 'unset (half the free device memory, at most 4 GiB)', readBy: ['lib', 'core'] },
  { name: 'GEOEDIT_CUDA_PLUGIN', meaning: 'An explicit path of the CUDA plugin (`geoedit_cuda.so`) instead of the folders next to the addon (diagnostics, the emulator tests).', default: 'unset', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_CUDA_SKIP_DRIVER_CHECK', meaning: 'Skip the check for `libcuda.so.1` before loading the plugin (the CPU emulator of the CUDA runtime has no driver).', default: 'unset', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_CUDA_COPY_THREADS', meaning: 'Threads that copy between mapped files and pinned buffers in the CUDA plugin (1 = serial).', default: 'unset (the plugin picks)', readBy: ['cuda-plugin'] },
  { name: 'GEOEDIT_CUDA_NO_SMEM_CACHE', meaning: 'Force the read-twice CUDA kernel instead of the shared-memory row cache (benchmarks compare both).', default: 'unset', readBy: ['cuda-plugin', 'bench'] },
  { name: 'GEOEDIT_CUDA_NO_FAST16', meaning: 'Force the f32-cache CUDA kernel for 16-bit inputs instead of the raw 16-bit cache.', default: 'unset', readBy: ['cuda-plugin', 'bench'] },
  { name: 'GEOEDIT_SIMD', meaning: 'Cap the SIMD level the CPU core uses: `scalar`, `avx2` or `avx512` (never above what the CPU supports).', default: 'unset (the widest the CPU supports)', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_STREAM_IO', meaning: '`pread`: the checkpoint data path reads blocks with pread instead of mapping the input files.', default: 'unset (mmap)', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_STREAM_READAHEAD', meaning: '`0` turns the read-ahead of the next block off, `1` turns it on for both backends.', default: 'unset (on for the GPU only)', readBy: ['core', 'bench'] },
  { name: 'GEOEDIT_NO_COPY_FILE_RANGE', meaning: 'Copy unedited tensors with pread/pwrite instead of copy_file_range.', default: 'unset', readBy: ['core', 'tests'] },
  { name: 'GEOEDIT_ADDON', meaning: 'Load the addon from this file and nothing else (a binary built elsewhere).', default: 'unset (build/Release, then prebuilds/)', readBy: ['lib', 'install'] },
  { name: 'PREBUILDS_ONLY', meaning: 'Never load a source build (`build/`): only `prebuilds/`; the install script then never compiles.', default: 'unset', readBy: ['lib', 'install'] },
  { name: 'GEOEDIT_BUILD_FROM_SOURCE', meaning: 'The install script builds from source even when a prebuild loads (as `npm install --build-from-source`).', default: 'unset', readBy: ['install'] },
  { name: 'GEOEDIT_PACK_WITHOUT_PREBUILDS', meaning: '`1`: `npm pack` goes on without a checked prebuild (a source-only package).', default: 'unset', readBy: ['build'] },
  { name: 'GEOEDIT_CACHE_DIR', meaning: 'Where `geoedit demo` and the quality suite cache their models.', default: 'unset (`$XDG_CACHE_HOME/geoedit`, else `~/.cache/geoedit`)', readBy: ['lib'] },
  { name: 'XDG_CACHE_HOME', meaning: 'The cache root used when `GEOEDIT_CACHE_DIR` is unset.', default: 'unset (`~/.cache`)', readBy: ['lib'] },
  { name: 'GEOEDIT_PYTHON', meaning: 'A Python with torch/peft/numpy for the optional cross-checks against PyTorch and numpy (skipped when unset).', default: 'unset', readBy: ['tests', 'bench'] },
  { name: 'GEOEDIT_BENCH_QUICK', meaning: '`1`: `npm run bench` runs only the quick cases.', default: 'unset', readBy: ['bench'] },
] as const satisfies readonly EnvVar[];

export type EnvName = (typeof ENV_VARS)[number]['name'];

/** An environment to read from (default: process.env). */
export type Env = Readonly<Record<string, string | undefined>>;

const KNOWN = new Set<string>(ENV_VARS.map((v) => v.name));

/** The value of a listed variable, or undefined when it is unset or empty. */
export function readEnv(name: EnvName, env: Env = process.env): string | undefined {
  if (!KNOWN.has(name)) throw new Error(`lib/env.ts: ${name} is not in ENV_VARS`);
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** A boolean variable: set, non-empty and not '0' / 'false'. */
export function flagSet(name: EnvName, env: Env = process.env): boolean {
  const v = readEnv(name, env);
  return v !== undefined && v !== '0' && v.toLowerCase() !== 'false';
}
