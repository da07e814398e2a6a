// strategy 'custom' for checkpoints: per-neuron coefficients from a safetensors file holding
// `<tensor>.cNew` and `<tensor>.cOld` (F32, one value per neuron in the tensor's layout, any shape
// with that many elements) for every edited tensor. Checked from the header before any work; each
// tensor's pair is read when its task is made (a few bytes per neuron), then streamed with it.
import * as fs from 'node:fs';
import { GeoEditError } from '../errors';
import { readSafetensorsHeaderSync, type SafetensorsHeader, type SafetensorsTensorInfo } from '../safetensors';
import { listNames, type PlanItem } from './plan';

export interface CoefficientsFile {
  path: string;
  header: SafetensorsHeader;
  byName: Map<string, SafetensorsTensorInfo>;
}

/** Opens the file and checks it against the edited tensors (names, dtype, one value per neuron). */
export function openCoefficients(file: string, items: PlanItem[], warnings: string[]): CoefficientsFile {
  const header = readSafetensorsHeaderSync(file);
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const problems: string[] = [];
  const used = new Set<string>();
  for (const it of items) {
    if (it.action !== 'edit') continue;
    for (const side of ['cNew', 'cOld']) {
      const key = `${it.name}.${side}`;
      const t = byName.get(key);
      used.add(key);
      if (!t) { problems.push(`'${key}' is missing`); continue; }
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (t.dtype !== 'F32') problems.push(`'${key}' is ${t.dtype}, expected F32`);
      else if (n !== it.layout.rows) problems.push(`'${key}' holds ${n} values, expected ${it.layout.rows} (one per neuron of '${it.name}', layout ${it.layout.kind})`);
    }
  }
  if (problems.length) {
    throw new GeoEditError('ERR_COEFFICIENTS', `${file}: the coefficients do not match the edited tensors: ${listNames(problems)}`, { file, problems });
  }
  const extra = header.tensors.filter((t) => !used.has(t.name)).map((t) => t.name);
  if (extra.length) warnings.push(`${file}: ${extra.length} coefficient tensor(s) match no edited tensor and are not used: ${listNames(extra, 10)}`);
  return { path: file, header, byName };
}

/** The cNew / cOld of one edited tensor (read now; small: one f32 per neuron). */
export function readCoefficients(c: CoefficientsFile, name: string): { cNew: Float32Array; cOld: Float32Array } {
  const fd = fs.openSync(c.path, 'r');
  try {
    const read = (side: string): Float32Array => {
      const t = c.byName.get(`${name}.${side}`)!;
      const out = new Float32Array((t.end - t.begin) / 4);
      const got = fs.readSync(fd, new Uint8Array(out.buffer), 0, t.end - t.begin, t.begin);
      if (got !== t.end - t.begin) throw new GeoEditError('ERR_IO', `${c.path}: short read of '${name}.${side}' (was the file truncated?)`, { file: c.path, tensor: name });
      return out;
    };
    return { cNew: read('cNew'), cOld: read('cOld') };
  } finally {
    fs.closeSync(fd);
  }
}
