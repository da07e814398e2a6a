// Every environment variable geoedit reads, in one list: name, meaning, default and who reads it.
// lib/ reads them only through readEnv()/flagSet() (a unit test fails on any other process.env
// read in lib/, and on a GEOEDIT_* name read by native/ or scripts/ that is missing here);
// `npm run docs:gen` fills the table in docs/environment.md from this list.
//
// Adding a variable: one entry here (and, when the C++ core or a script reads it, the getenv there).

/** Who reads a variable: the TS library, the C++ core, the CUDA plugin or runtime, node-gyp-build, the install/pack scripts, the bench or test scripts. */
export type EnvReader = 'lib' | 'binding' | 'core' | 'cuda-plugin' | 'cuda-runtime' | 'node-gyp-build' | 'install' | 'build' | 'bench' | 'tests';

export interface EnvVar {
  name: string;
  /** What it does (one sentence, Markdown allowed). */
  meaning: string;
  /** What applies when it is unset. */
  default: string;
  readBy: readonly EnvReader[];
}

export const ENV_VARS = [
  { name: 'GEOEDIT_BACKEND', meaning: 'Default for the `backend` option (CLI `--backend`) of every entry point: `auto`, `cpu` or `cuda`.', default: 'unset (`auto`)', readBy: ['lib'] },
  { name: 'GEOEDIT_CUDA_MEMORY', meaning: 'GPU memory one call may use when `cudaMemoryLimit` (`--cuda-memory-limit`) is not given; a size read as everywhere in geoedit: `2GB` and `2G` are 2·10⁹ bytes, `2GiB` and `2Gi` 2·2³⁰, a plain number is bytes (earlier builds read `2G` as 2³¹ in this variable only).', default: 'unset (half the free device memory, at most 4 GiB)', readBy: ['lib', 'core'] },
  { name: 'GEOEDIT_CUDA_PLUGIN', meaning: 'Load the CUDA plugin from this file instead of searching beside the addon (diagnostics, tests, the CPU emulator).', default: 'unset', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_CUDA_SKIP_DRIVER_CHECK', meaning: '`1`: skip the `libcuda.so.1` check before loading the plugin (the emulator; diagnostics and tests only).', default: 'unset', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_CUDA_COPY_THREADS', meaning: 'Threads for the host staging copies of the CUDA plugin (1 = serial).', default: 'unset (half the hardware threads, at most 8)', readBy: ['cuda-plugin'] },
  { name: 'GEOEDIT_CUDA_NO_SMEM_CACHE', meaning: '`1`: force the read-twice CUDA kernel instead of the shared-memory row cache (benchmarks compare both).', default: 'unset', readBy: ['cuda-plugin', 'bench'] },
  { name: 'GEOEDIT_CUDA_NO_FAST16', meaning: '`1`: use the f32-cache CUDA kernel for 16-bit inputs instead of the raw 16-bit cache (benchmarks).', default: 'unset', readBy: ['cuda-plugin', 'bench'] },
  { name: 'CUDA_VISIBLE_DEVICES', meaning: 'The CUDA runtime\'s device list; the plugin uses the first visible device.', default: 'all devices', readBy: ['cuda-runtime'] },
  { name: 'GEOEDIT_SIMD', meaning: 'Cap the CPU kernels: `scalar`, `avx2` or `avx512` (never above what the CPU supports).', default: 'unset (the widest the CPU supports)', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_ROW_PIPELINE', meaning: 'How a fused row\'s output pass prepares the next row: `sums` (sums a block of it after each of its own), `prefetch` (prefetches it into L2, sums it at the end) or `off` (any other value: as unset). The same results every way: an A/B switch for benchmarks.', default: 'unset (`prefetch` on AMD CPUs, `sums` elsewhere)', readBy: ['core', 'bench'] },
  { name: 'GEOEDIT_FUSED', meaning: 'Set to `0` to start with the fused row path of the AVX2 and AVX-512 kernels off (rows decoded into scratch first; the same results, slower): an A/B switch for benchmarks.', default: 'unset (on)', readBy: ['core', 'bench'] },
  { name: 'GEOEDIT_BLAS', meaning: 'The CPU linear algebra of preservation (the ridge operator\'s f64 Cholesky and solve, and the row GEMM): `auto` (the system\'s OpenBLAS, `libopenblas.so.0`, when it loads, else the built-in Eigen), `eigen`, or `openblas` (an error naming why when it cannot be loaded). The bytes of preserved rows differ between the two (each within SPEC §5); manifests record the provider.', default: 'unset (`auto`)', readBy: ['core', 'binding', 'tests', 'bench'] },
  { name: 'GEOEDIT_BLAS_LIB', meaning: 'Load OpenBLAS from this file only, instead of `libopenblas.so.0` / `libopenblas.so` / `libopenblas64_.so.0` (e.g. a newer OpenBLAS than the distribution\'s; numpy\'s bundled `libscipy_openblas64_` also works).', default: 'unset', readBy: ['core', 'tests', 'bench'] },
  { name: 'OPENBLAS_CORETYPE', meaning: 'OpenBLAS\'s kernel set. When unset, geoedit sets it while loading OpenBLAS from its own CPU detection (`SkylakeX` with AVX-512, `Haswell` with AVX2), because an OpenBLAS older than the CPU falls back to its slow Prescott kernels; then removes it again. OpenBLAS is loaded on the JS thread when the first preserved call reads its spec (or `blasInfo()` asks; never under `GEOEDIT_BLAS=eigen`), so this change never races another thread\'s read of the environment.', default: 'unset (chosen from `GEOEDIT_SIMD` / the CPU)', readBy: ['core'] },
  { name: 'GEOEDIT_STREAM_IO', meaning: '`pread`: the checkpoint data path reads blocks with `pread` instead of mapping the input files.', default: 'unset (mmap)', readBy: ['core', 'tests', 'bench'] },
  { name: 'GEOEDIT_STREAM_READAHEAD', meaning: '`0`: no read-ahead of the next block; `1`: read-ahead on the CPU path too.', default: 'unset (read-ahead on the GPU path only)', readBy: ['core', 'bench'] },
  { name: 'GEOEDIT_TEST_TRUNCATE_MAPPED', meaning: 'Tests only: shrink each input file right after mapping a block, or a window of it being hashed (exercises the guard against inputs that change under an edit).', default: 'unset', readBy: ['core', 'tests'] },
  { name: 'GEOEDIT_TEST_STOP_AT', meaning: 'Tests only: print each job phase marker (`geoedit-test: phase NAME`) on stderr and stop the process (SIGSTOP) at the phase named (`validation`, `hashing`, `data`, `side-files`, `seal`, `report`, `commit`), so a signal test lands in that phase; any other value (`none`) prints the markers without stopping (`bench/checkpoint.js` times the phases from them).', default: 'unset', readBy: ['lib', 'tests', 'bench'] },
  { name: 'GEOEDIT_TEST_LARGE', meaning: 'Tests only: `1` runs the tests that write gigabytes (a side file over 2 GiB copied whole, test/hostile/side-files-large.test.ts); unset, they are skipped with that reason.', default: 'unset', readBy: ['tests'] },
  { name: 'GEOEDIT_WRITE_BEHIND', meaning: 'The checkpoint data path\'s write-behind window in MiB: each written range is handed to the disk at once (`sync_file_range`), and ranges further back than the window are waited for and, when already in the file\'s hash, dropped from the page cache, so the final fsync has little left and the page cache does not fill (docs/performance.md); `0` turns it off (the kernel writes back on its own, the fsync waits for the rest).', default: 'unset (64)', readBy: ['core', 'bench'] },
  { name: 'GEOEDIT_STREAM_HASH', meaning: '`0`: output files are hashed for the manifest by reading them back at the seal, as before issue 17, instead of as the data path writes them (an A/B switch for benchmarks; the hashes are the same).', default: 'unset (hashed as written)', readBy: ['lib', 'bench'] },
  { name: 'GEOEDIT_DIRECT_WRITE', meaning: '`0`: the checkpoint data path writes every output byte through the page cache. By default each output block\'s part that is aligned on 4 KiB in the file (and at least 1 MiB) is written with `O_DIRECT` through a second descriptor of the same file (no copy into page-cache pages), the unaligned head and tail, small writes and blocks written out of file order through the page cache; a file system that refuses `O_DIRECT` gets buffered writes (docs/checkpoints.md, docs/performance.md). Same bytes either way.', default: 'unset (on)', readBy: ['core', 'bench'] },
  { name: 'GEOEDIT_TEST_DIRECT_WRITE', meaning: 'Tests only: `refuse-open` / `refuse-write` make every `O_DIRECT` open or direct write fail with EINVAL (the fallback to buffered writes), `eio` every direct write with EIO (a write error).', default: 'unset', readBy: ['core', 'tests'] },
  { name: 'GEOEDIT_TEST_SYNC_FILE_RANGE', meaning: 'Tests only: `unsupported` makes every `sync_file_range` of the write-behind fail with ENOSYS (the path of systems without it), `eio` with EIO (a write error).', default: 'unset', readBy: ['core', 'tests'] },
  { name: 'GEOEDIT_NO_COPY_FILE_RANGE', meaning: '`1`: copy unedited tensors with `pread`/`pwrite` instead of `copy_file_range` (the path they always take when the output is hashed as it is written, the default of checkpoint edits and merged adapters).', default: 'unset', readBy: ['core', 'tests'] },
  { name: 'GEOEDIT_AUTO_BACKEND', meaning: '`cuda`: `auto` runs every job on a usable GPU instead of choosing the faster backend (the whole test suite on a GPU or the emulator; diagnostics).', default: 'unset (`auto` chooses: the CPU for host-memory jobs)', readBy: ['lib', 'tests', 'bench'] },
  { name: 'GEOEDIT_HASH_CACHE', meaning: 'The input-hash cache file (SHA-256 of input files keyed by device, inode, size and modification time, so a repeated edit re-hashes nothing); `off` keeps no cache.', default: 'unset (`sha256-cache.json` in `$GEOEDIT_CACHE_DIR`, else `$XDG_CACHE_HOME/geoedit`, else `~/.cache/geoedit`)', readBy: ['lib'] },
  { name: 'GEOEDIT_OUTPUT_POOL_GC', meaning: '`0`: the output pool never forces a V8 collection to get a buffer back (for applications with a large heap, where a full collection costs more than a new mapping); outputs then return only when V8 collects on its own.', default: 'unset (forced collections while they cost less than a first touch)', readBy: ['binding'] },
  { name: 'GEOEDIT_OUTPUT_POOL_UNCOUNTED', meaning: '`0`: pooled outputs are always ArrayBuffers V8 counts as external memory (Node-API external buffers). By default outputs of 62-64 MiB (V8\'s soft external-memory limit) are made, on Node 20 on x86-64 Linux, over a backing store V8 neither counts nor frees (its empty deleter), so that V8 starts no collection of its own for pooled memory; the pool still reports newly mapped memory.', default: 'unset (uncounted where possible)', readBy: ['binding'] },
  { name: 'GEOEDIT_OUTPUT_POOL_MB', meaning: 'MiB of idle buffers the addon keeps for fresh outputs of 8 MiB or more (`0` turns the pool off).', default: 'unset (1/8 of physical memory, at most 4 GiB)', readBy: ['binding'] },
  { name: 'GEOEDIT_ADDON', meaning: 'Load this `geoedit.node` and nothing else (a binary built elsewhere).', default: 'unset (build/Release, then prebuilds/)', readBy: ['lib', 'install'] },
  { name: 'PREBUILDS_ONLY', meaning: '`1`: never build from source (the install fails with the loader\'s message when no prebuild loads: for CI and locked-down machines), and skip `build/` at run time.', default: 'unset', readBy: ['lib', 'install'] },
  { name: 'GEOEDIT_BUILD_FROM_SOURCE', meaning: '`1` (or `npm install --build-from-source`): build from source even when a prebuild loads.', default: 'unset', readBy: ['install'] },
  { name: 'LIBC', meaning: '`musl` or `glibc`: override the libc guess `node-gyp-build` uses to pick a prebuild.', default: 'unset (detected)', readBy: ['node-gyp-build'] },
  { name: 'GEOEDIT_PACK_WITHOUT_PREBUILDS', meaning: '`1`: `npm pack` (`scripts/prebuild.js --check`) packs a source-only package on purpose.', default: 'unset', readBy: ['build'] },
  { name: 'GEOEDIT_CACHE_DIR', meaning: 'Where `geoedit demo` (and the quality suite) caches its models.', default: 'unset (`$XDG_CACHE_HOME/geoedit`, else `~/.cache/geoedit`)', readBy: ['lib'] },
  { name: 'XDG_CACHE_HOME', meaning: 'The cache root used when `GEOEDIT_CACHE_DIR` is unset.', default: 'unset (`~/.cache`)', readBy: ['lib'] },
  { name: 'JOB_COMPLETION_INDEX', meaning: '`geoedit edit --part auto/N`: the 0-based index a Kubernetes Indexed Job gives each pod (part = index + 1; docs/partitioned.md).', default: 'unset', readBy: ['lib'] },
  { name: 'SLURM_ARRAY_TASK_ID', meaning: '`--part auto/N`: the Slurm array task id; part = id − `SLURM_ARRAY_TASK_MIN` + 1 (so `--array=0-N-1` and `--array=1-N` both work).', default: 'unset', readBy: ['lib'] },
  { name: 'SLURM_ARRAY_TASK_MIN', meaning: 'With `SLURM_ARRAY_TASK_ID`: the array\'s first id (Slurm sets it); unset, the id is read as 0-based.', default: 'unset (0)', readBy: ['lib'] },
  { name: 'AWS_BATCH_JOB_ARRAY_INDEX', meaning: '`--part auto/N`: the 0-based index of an AWS Batch array job child (part = index + 1).', default: 'unset', readBy: ['lib'] },
  { name: 'GEOEDIT_BENCH_QUICK', meaning: '`1`: `npm run bench` runs only the smaller shape.', default: 'unset', readBy: ['bench'] },
  { name: 'GEOEDIT_PYTHON', meaning: 'The Python with `safetensors` for the loadability tests (`test/package/loadable.test.ts`).', default: 'unset (`python3`)', readBy: ['tests'] },
  { name: 'TEST_SHARED_DIR', meaning: 'Where the tests find `../shared` (the real-data corpus, SPEC.md, QUALITY.md), e.g. from a worktree.', default: 'unset (`../shared`)', readBy: ['tests'] },
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
