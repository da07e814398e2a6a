// geoedit: neuron-level knowledge editing (GeoEdit) over a native C++ core.
import { native, nativePath } from './native';
import { chooseBackend, cudaStatus, describePreserveAuto } from './backend';
import type { InfoResult } from './types';

export { editTensor, editTensorSync, analyzeTensor } from './edit';
export { GeoEditError } from './errors';
export { cudaStatus } from './backend';
export type { CudaStatus, CudaDevice } from './backend';
export type { GeoEditErrorCode } from './errors';
export { DEFAULTS, PAPER_PRESET } from './options';
export type {
  DType, Tensor, Strategy, Backend, EditOptions, EditInputs, EditResult, TensorStats, RegionCounts, InfoResult,
} from './types';

/** Version, SIMD level in use, threads, backends, and why CUDA is or is not in use. */
export function info(): InfoResult {
  const n = native.info();
  const cuda = cudaStatus();
  return {
    version: n.version,
    simd: n.simd,
    threads: n.threads,
    backends: cuda.available ? ['cpu', 'cuda'] : ['cpu'],
    ...autoBackend(cuda.available),
    preserveBackendReason: describePreserveAuto(cuda),
    cuda: cuda.available ? ({ ...cuda.device } as Record<string, unknown>) : null,
    cudaStatus: cuda.available ? 'available' : cuda.reason,
    simdSupported: n.simdSupported,
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
    napi: process.versions.napi ?? 'unknown',
    addonPath: nativePath() ?? '',
  };
}

function autoBackend(available: boolean): { backend: 'cpu' | 'cuda'; backendReason: string } {
  try {
    const c = chooseBackend(undefined, { kind: 'tensor', location: 'host' });
    return { backend: c.name, backendReason: c.reason };
  } catch (e) {
    return { backend: available ? 'cuda' : 'cpu', backendReason: `$GEOEDIT_BACKEND cannot be used: ${(e as Error).message}` };
  }
}

export {
  readSafetensorsHeader, readSafetensorsHeaderSync, readTensor, writeSafetensors, parseSafetensorsBytes, toTensor,
} from './safetensors';
export type { SafetensorsHeader, SafetensorsTensorInfo, RawTensor, StDtype, TensorToWrite } from './safetensors';
export { openCheckpoint, inspectCheckpoint, editCheckpoint, analyzeCheckpoint, parseSize } from './checkpoint';
export type { Checkpoint, CheckpointOptions, CheckpointInputs, CheckpointManifest, TensorManifestEntry, ProgressEvent, InspectResult } from './checkpoint';
export { renderReport, writeReport } from './report';
export { assembleParts, type AssembleOptions } from './partition/assemble';
export { resolvePart, assignFiles, PART_INDEX_VARS } from './partition/plan';
export type { PartOption, PartSpec, PartRecord, AssembledRecord, AssembledPart, PartitionPlan } from './partition/plan';
export { editAdapters, analyzeAdapters, readPeftAdapter, loadModuleFactors } from './lora';
export type { AdapterManifest, AdapterReport, AdapterModuleReport, AdapterPaths, EditAdaptersOptions, PeftAdapter, AdapterModule } from './lora';
export { analyzeLora, editLora, materializeLora } from './lora-math';
export type { LoraFactors, LoraPair, LoraStats, LoraOptions, EditedLora } from './lora-math';
export { writeAdapterReport } from './lora';
export { sweepFrontier, summarizeSweeps, frontierOf, DEFAULT_GRIDS, FAMILIES } from './quality/frontier';
export type { SweepOptions, SweepResult, SweepPoint, SweepGrids, Frontier, FrontierEntry, FrontierSummary, QualityScores, Family, Geometry, Stat } from './quality/frontier';
export type { EditSource, CheckpointSource, AdapterSource, Weights } from './quality/edit-path';

// governance: lineage, verification, review, evaluation, staged rollout (docs/governance.md)
export { readLineage, loadManifest, canonicalJson, manifestId, sealManifest, MANIFEST_FILE, REVIEW_LOG, REPORT_FILE } from './governance/lineage';
export type { LineageEntry, LineageFields, ParentRef, OutputFile, EvaluationSummary, ReviewSummary, LoadedManifest } from './governance/lineage';
export { verifyOutput } from './governance/verify';
export type { VerifyOptions, VerifyResult, VerifyProblem, ReviewStatus } from './governance/verify';
export { review, checkReviewLog, generateKeyPair, writeKeyPair, loadTrustedKeys, keyFingerprint } from './governance/review';
export type { ReviewOptions, ReviewRecord, Decision, TrustedKey } from './governance/review';
export { evaluate, parseGate, checkGates, runScorer, parseMetrics } from './governance/evaluate';
export type { EvaluateOptions, EvaluationResult, EvaluationEntry, Gate, GateResult, Metrics, Baseline } from './governance/evaluate';
export { rollout } from './governance/rollout';
export type { RolloutOptions, RolloutResult, RolloutRecord, RolloutStage, StageRecord, StageEvent } from './governance/rollout';
export { renderDirReport, writeDirReport } from './governance/render';
export { demoScore, exportDemoModels } from './governance/demo-model';
