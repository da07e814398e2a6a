// The one size parser: option maxShardSize, CLI --max-shard-size / --cuda-memory-limit and
// $GEOEDIT_CUDA_MEMORY all read sizes here (the C++ core's parse_bytes follows the same rules).
// Decimal units are powers of 1000 (as Hugging Face's max_shard_size: '5GB' = 5e9), binary units
// powers of 1024 ('2GiB' = 2^31); a bare K/M/G/T is decimal like KB/MB/GB/TB (as Kubernetes does),
// Ki/Mi/Gi/Ti binary. Case does not matter; a number is bytes.
import { GeoEditError, describe } from '../errors';

const UNITS: Readonly<Record<string, number>> = Object.freeze({
  B: 1,
  K: 1e3, KB: 1e3, M: 1e6, MB: 1e6, G: 1e9, GB: 1e9, T: 1e12, TB: 1e12,
  KI: 1024, KIB: 1024, MI: 1024 ** 2, MIB: 1024 ** 2, GI: 1024 ** 3, GIB: 1024 ** 3, TI: 1024 ** 4, TIB: 1024 ** 4,
});

export const SIZE_RULES = "decimal KB/MB/GB/TB (and K/M/G/T) are powers of 1000 ('5GB' = 5·10⁹); binary KiB/MiB/GiB/TiB (and Ki/Mi/Gi/Ti) powers of 1024 ('2GiB' = 2·2³⁰); a plain number is bytes";

/** Bytes of a size ('5GB' → 5e9, '2GiB' → 2^31, '512Mi' → 2^29, 1234 → 1234), or undefined when it is not one. */
export function sizeBytes(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v > 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  if (!m) return undefined;
  const mult = UNITS[(m[2] || 'B').toUpperCase()];
  if (mult === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * mult);
  return n > 0 && Number.isSafeInteger(n) ? n : undefined;
}

/** As sizeBytes, throwing ERR_INVALID_OPTION naming the option (or variable) when it is not a size. */
export function parseSize(v: unknown, name = 'maxShardSize'): number {
  const n = sizeBytes(v);
  if (n !== undefined) return n;
  throw new GeoEditError('ERR_INVALID_OPTION', `Expected a size such as 5GB, 500MB, 2GiB or a number of bytes for ${name.startsWith('$') || name.startsWith('--') ? name : `option '${name}'`} but received ${describe(v)}`, { option: name });
}
