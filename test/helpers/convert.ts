import { loadNative } from '../../lib/native';

/** f32 -> f16/bf16 raw bits with the core's conversion (round to nearest even). */
export function convert(f: Float32Array, to: 'bf16' | 'f16'): Uint16Array {
  return loadNative().convert('f32', f, to) as Uint16Array;
}
