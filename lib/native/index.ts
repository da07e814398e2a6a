// lib/native: the only module that loads and calls the addon. The rest of lib/ uses `native`
// (typed, wrapped: errors mapped once, async stacks pointing at the caller) and the loader's
// diagnostics; nothing else requires the .node file.
export { native, type NativeInfo, type LoraGeometrySpec, type LoraMaterializeSpec, type LoraMergeSpec } from './api';
export { callSite, mapNativeError, type CallSite } from './call';
export {
  ADDON_NAPI_VERSION, addonCandidates, loadErrorMessage, loadNative, loadNativeFrom, nativePath, packageRoot,
  type LoadAttempt, type LoadOptions,
} from './loader';
export type * from './addon';
