// Checkpoints: open (file, directory, index + shards), validate base/old/new against each other,
// then stream every tensor through the native core into the output job (lib/job): a temporary
// directory beside the target, renamed into place only when complete. Memory stays bounded: the
// core reads row blocks. Edit blocks run on the backend chooseBackend picks ('auto': the CPU for
// this memory-bound job over host memory, as measured; the manifest records the reason).
import { callSite } from '../native';
import type { CheckpointManifest } from '../job/manifest';
import type { CheckpointOptions } from './options';
import type { CheckpointInputs } from './plan';
import { runCheckpointJob } from './run';

export { openCheckpoint, type Checkpoint, type CheckpointTensor } from './open';
export { inspectCheckpoint, type InspectResult } from './inspect';
export { DEFAULT_MAX_SHARD_SIZE, type CheckpointOptions, type ProgressEvent } from './options';
export type { CheckpointInputs } from './plan';
export { parseSize } from '../options';
export type { CheckpointManifest, TensorManifestEntry } from '../job/manifest';
export type { SafetensorsTensorInfo } from '../safetensors';

/**
 * Edits a whole checkpoint: every tensor present in base, old and new (same shapes) is edited
 * row by row (float tensors) or copied from the base (integer/bool, unselected). Writes
 * `out/model.safetensors` (or HF-named shards + index), `geoedit-manifest.json` and the base
 * directory's other files; resolves to the manifest. Nothing appears at `out` unless it completes.
 */
export function editCheckpoint(io: CheckpointInputs & { out: string }, options?: CheckpointOptions): Promise<CheckpointManifest> {
  return runCheckpointJob({ kind: 'edit', inputs: io, opts: options ?? {}, out: io?.out, site: callSite(editCheckpoint) });
}

/** The same statistics (and report) as editCheckpoint, without writing weights. */
export function analyzeCheckpoint(io: CheckpointInputs, options?: CheckpointOptions): Promise<CheckpointManifest> {
  return runCheckpointJob({ kind: 'analyze', inputs: io, opts: options ?? {}, out: null, site: callSite(analyzeCheckpoint) });
}
