// The manifest: one schema for every output geoedit writes (geoedit-manifest.json), a common
// envelope (tool, kind, createdAt, versions, parameters, warnings) and a body per kind. The report
// (lib/report.ts) and the CLI read these types from here. finalizeManifest is the one step that
// runs on every manifest just before it is written: fields computed from the finished job
// (governance: `id`, output hashes, `parent`) are added there, once, for every kind.
import type { StDtype } from '../safetensors';
import type { ResolvedParams } from '../options';
import type { DType, RegionCounts } from '../types';
import type { VersionsBlock } from './versions';
import type { LoraStats } from '../lora-math';
import type { LineageFields } from '../governance/lineage';
import type { AssembledRecord, PartRecord } from '../partition/plan';

/** What wrote the manifest. */
export type ManifestKind = 'checkpoint-edit' | 'checkpoint-analyze' | 'adapter-edit' | 'adapter-merge' | 'adapter-analyze'
  // one part of a partitioned edit (docs/partitioned.md): `geoedit assemble` joins them
  | 'checkpoint-edit-part' | 'adapter-merge-part';

/** A part of a partitioned edit (not a model: its shards are a subset; geoedit assemble joins the parts). */
export function isPartKind(kind: unknown): boolean {
  return kind === 'checkpoint-edit-part' || kind === 'adapter-merge-part';
}

export const MANIFEST_FILE = 'geoedit-manifest.json';

/** An adapter manifest (also the kind manifests had before the one schema: 'edit-adapters'). */
export function isAdapterKind(kind: unknown): boolean {
  return kind === 'adapter-edit' || kind === 'adapter-merge' || kind === 'adapter-merge-part' || kind === 'edit-adapters';
}

/** A checkpoint manifest (also the kinds before the one schema: 'edit', 'analyze'). */
export function isCheckpointKind(kind: unknown): boolean {
  return kind === 'checkpoint-edit' || kind === 'checkpoint-analyze' || kind === 'checkpoint-edit-part' || kind === 'edit' || kind === 'analyze';
}

/** 'edit' or 'analyze': what the job did, as the report and the progress lines say it. */
export function manifestVerb(kind: ManifestKind | string): 'edit' | 'analyze' {
  return kind.endsWith('analyze') ? 'analyze' : 'edit';
}

/** Fields every manifest has (lineage: outputs that were written, sealed by lib/governance/lineage.ts). */
export interface ManifestEnvelope<K extends ManifestKind = ManifestKind> extends Partial<LineageFields> {
  tool: 'geoedit';
  kind: K;
  createdAt: string;
  versions: VersionsBlock;
  warnings: string[];
  /** Files of the base directory not copied into the output (symlinks, special files, other weight formats), with why. */
  skippedFiles?: Array<{ name: string; reason: string }>;
  /** Side files copied that have more than one hard link (`hardLinks`: the link count; docs/safety.md). */
  hardLinkedFiles?: Array<{ name: string; hardLinks: number }>;
}

// ---- checkpoints ---------------------------------------------------------------------------------

export type TensorAction = 'edit' | 'copy' | 'convert' | 'tied';

export interface TensorManifestEntry {
  name: string;
  shape: number[];
  dtype: StDtype;
  outDtype: StDtype;
  action: TensorAction;
  note?: string;
  /** The neuron layout (SPEC §2) and why: 'option', 'detected' (config.json's model family) or 'default'. */
  layout?: string;
  layoutSource?: 'option' | 'detected' | 'default';
  layoutWhy?: string;
  /** action 'tied': the tensor whose output bytes it holds. */
  tiedTo?: string;
  /** κ/√n ≥ 1: the adaptive band holds every row (each is treated as orthogonal). */
  degenerateThreshold?: boolean;
  rows?: number;
  cols?: number;
  threshold?: number;
  counts?: { orthogonal: number; synergy: number; conflict: number };
  /** Rows where τold or τnew is zero (cos defined as 0). */
  zeroRows?: number;
  /** Angle between τold and τnew per row, 5° bins over [0°, 180°]. */
  angleHistogram?: number[];
  meanCos?: number;
  energy?: { new: number; old: number; applied: number };
  /** applied / new: share of the update energy (Σ‖τnew‖²) kept in the output. */
  energyKept?: number | null;
  /** Preservation (SPEC §3 step 0): the statistics used, or null (edited without; listed in warnings). Absent without option preserve. */
  preserve?: PreserveEntry | null;
}

/** What preservation did to one tensor (or module). */
export interface PreserveEntry {
  /** The name in the statistics file whose statistics were used (the tensor's own, or a shared entry's target). */
  statistics: string;
  shared: boolean;
  form: 'ridge' | 'basis';
  /** Augmented [x; 1]: the bias preserved with the weight (on the weight: the bias's name; on the bias: the weight's). */
  bias?: string;
  withWeight?: string;
  /** null for the basis form. */
  rho: number | null;
  mu: number | null;
  /** Σ‖τ‖² before and after the projection, per side. */
  energy: { oldBefore: number; oldAfter: number; newBefore: number; newAfter: number };
  /** Share of the update's energy the projection removed, 1 − after/before (null when before is 0). */
  removed: { old: number | null; new: number | null };
  /** Who computed the preserved rows (the bytes differ between providers, each within SPEC §5): 'openblas-<version>-<core>',
   *  'eigen-<isa>' or 'cublas', then '; factored: <who formed P>' when that differs (docs/preservation.md). Absent in older manifests. */
  provider?: string;
}

/** The run's preservation settings (parameters.preserve). */
export interface PreserveParameters { file: string; rho: number; mu: number }

export interface InputRecord {
  path: string;
  kind: 'file' | 'directory' | 'sharded';
  /** sha256Source: 'cache' when the hash came from the hash cache (the file was not read), 'computed'
   *  when it was hashed now, null when hashing was off (lib/job/hash.ts). */
  files: Array<{ path: string; size: number; sha256: string | null; sha256Source?: 'cache' | 'computed' | null }>;
}

export interface CheckpointTotals {
  tensors: number; edited: number; copied: number; converted: number; tied?: number;
  rows: number; counts: { orthogonal: number; synergy: number; conflict: number };
  energy: { new: number; old: number; applied: number }; energyKept: number | null;
  bytesRead: number; bytesWritten: number;
}

export interface CheckpointManifest extends ManifestEnvelope<'checkpoint-edit' | 'checkpoint-analyze' | 'checkpoint-edit-part'> {
  /** Where the edit blocks ran: 'cpu', or 'cuda' with the device's name; what was asked for and why
   *  this backend ran the job (lib/backend.ts chooseBackend). */
  backend: { name: 'cpu' | 'cuda'; device: string | null; requested?: string; reason?: string };
  inputs: Record<string, InputRecord>;
  output: null | { path: string; files: Array<{ name: string; size: number; tensors: number }>; totalSize: number };
  parameters: ResolvedParams & { outDtype: DType | null; include: string[] | null; exclude: string[] | null; maxShardSize: number; threads: number; layout?: Record<string, string> | null; coefficients?: string | null; preserve?: PreserveParameters | null };
  tensors: TensorManifestEntry[];
  totals: CheckpointTotals;
  /** outputHash: bytes of the output files hashed as they were written, and read back at the end (tied tensors, out-of-order writes); absent when the seal read them. */
  timings: { totalMs: number; validateMs: number; dataMs: number; hashMs: number; gbPerSecond: number; outputHash?: { fromMemory: number; reread: number } };
  /** What the base's config.json says (model family, the layout rule applied, tied embeddings); absent in older manifests. */
  model?: {
    config: string | null; modelType: string | null; architectures: string[]; family: string | null; layoutRule: string | null;
    tieWordEmbeddings: boolean | null;
    ties: Array<{ tensor: string; with: string; stored: boolean; why: string }>;
  };
  /** How the input hashes were obtained (null: hashing off): the SHA-256 implementation, bytes
   *  read and hashed now, and how many files' hashes came from the cache or were computed. */
  hashing?: { provider: string; bytesHashed: number; fromCache: number; computed: number } | null;
  /** A part of a partitioned edit: which part, the whole job's plan, its key (docs/partitioned.md); an assembled output: the parts it was joined from. */
  partition?: PartRecord | AssembledRecord;
}

// ---- adapters ------------------------------------------------------------------------------------

export interface AdapterModuleReport {
  name: string;
  rows: number;
  cols: number;
  /** Rank and scale per side (0 / null: the module is absent on that side, a zero task vector). */
  rOld: number;
  rNew: number;
  scaleOld: number | null;
  scaleNew: number | null;
  embedding: boolean;
  counts: RegionCounts;
  threshold: number;
  energy: { new: number; old: number; applied: number };
  /** Mean cos over rows where both sides are non-zero. */
  meanCos: number;
  /** Rows where tau_old or tau_new is zero (cos defined as 0): every row of a one-sided module. */
  zeroRows: number;
  /** Angle between tau_old and tau_new per row, 5° bins over [0°, 180°] (as in the checkpoint manifest). */
  angleHistogram: number[];
  /** applied / new: share of the new update's energy kept. */
  energyKept: number | null;
  /** Output adapter rank (adapter output only). */
  rOut?: number;
  /** Base tensor the module was merged into (full output only). */
  baseTensor?: string;
  /** Preservation: the statistics used for the module's base weight, or null (absent without option preserve). */
  preserve?: PreserveEntry | null;
  transposed?: boolean;
}

export interface AdapterReport {
  old: string;
  new: string;
  options: Record<string, unknown>;
  /** The resolved edit parameters (defaults filled in), as in the checkpoint manifest. */
  parameters: Record<string, unknown>;
  modules: AdapterModuleReport[];
  totals: { modules: number; rows: number; counts: RegionCounts; energy: { new: number; old: number; applied: number }; energyKept: number | null };
  /** Things worth a look: one-sided modules, dropped tensors. */
  warnings: string[];
  /** Non-LoRA tensors and what was done with them. */
  extras: Array<{ tensor: string; from: 'new' | 'old'; action: 'copied' | 'dropped' | 'replaced-in-base' | 'added-to-base' }>;
}

export interface AdapterManifest extends AdapterReport, ManifestEnvelope<'adapter-edit' | 'adapter-merge' | 'adapter-merge-part'> {
  outFormat: 'adapter' | 'full';
  timings: { totalMs: number };
  /** sha256 null: not hashed by this process (a part of a partitioned merge whose inputs another part hashes; the assembled manifest has every hash). */
  inputs: Array<{ role: 'old' | 'new' | 'base'; path: string; sha256: string | null; bytes: number }>;
  outputs: Array<{ path: string; sha256: string; bytes: number }>;
  /** Per-row statistics, when perRow was asked for (never written to the file). */
  perRow?: Record<string, LoraStats>;
  /** As CheckpointManifest.partition. */
  partition?: PartRecord | AssembledRecord;
}

export type Manifest = CheckpointManifest | AdapterManifest;

/** What the job knows when the manifest is finalised. */
export interface FinalizeContext {
  /** The output directory (null: an analysis) and the temporary directory holding the output until the commit. */
  out: string | null;
  tmp: string | null;
  /** Files written into the output, relative to it (the manifest itself excluded). */
  files: string[];
}

/**
 * The one finalisation step, run on every manifest just before it is written: what is written
 * (perRow dropped). The job then seals it (lib/governance/lineage.ts sealManifest: output hashes,
 * parent, id) when it has an output directory, and copies the lineage fields onto the manifest it returns.
 */
export function finalizeManifest<M extends object>(m: M, ctx: FinalizeContext): Record<string, unknown> {
  void ctx;
  const { perRow, ...rest } = m as M & { perRow?: unknown };
  void perRow;
  return rest;
}
