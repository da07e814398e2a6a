// The versions block of every manifest (geoedit, Node, N-API, SIMD level, platform), made once.
import { native } from '../native';

export interface VersionsBlock { geoedit: string; node: string; napi: string; simd: string; platform: string }

/** The package version as the addon reports it ('0.0.0' when the addon cannot say). */
export function packageVersion(): string {
  try {
    return native.info().version;
  } catch {
    return '0.0.0';
  }
}

export function versionsBlock(): VersionsBlock {
  const inf = native.info();
  return { geoedit: inf.version, node: process.version, napi: process.versions.napi ?? 'unknown', simd: inf.simd, platform: `${process.platform}-${process.arch}` };
}
