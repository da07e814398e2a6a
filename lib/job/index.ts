// lib/job: the one output-directory job (job.ts), its steps (target checks, cleanup and signals,
// side files, hashing, versions) and the one manifest schema (manifest.ts).
export { OutputJob, runOutputJob, type OutputJobSpec } from './job';
export * from './manifest';
export { checkOutputTarget, checkReportTarget, isInside, statOrNull, type InputFiles } from './target';
export { CLEANUP_SIGNALS, inTempDir, onCleanup, removeQuietly, sweepDeadTemps, tempPathBeside } from './cleanup';
export { acquireTargetLock, lockPathFor, processAlive, processStart } from './lock';
export { sha256File, sha256FileSync, sha256Files } from './hash';
export { packageVersion, versionsBlock, type VersionsBlock } from './versions';
