// The base directory's other files (config.json, tokenizer…) copied into the output, as every
// job that writes full weights does. Only regular files that live in the directory are copied:
// symlinks are never followed (a `tokenizer.json -> ~/.aws/credentials` stays behind), special
// files are skipped, and weights in other formats (PyTorch, TensorFlow, Flax, GGUF, optimizer
// and scheduler states) are never copied beside the edited safetensors. What was skipped is
// returned (the job lists it in the manifest and on stderr).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isGovernanceFile } from '../governance/lineage';

export interface SkippedSideFile { name: string; reason: string }

/** Other weight formats and training states: never copied (their weights would not be edited). */
const OTHER_WEIGHTS: Array<[RegExp, string]> = [
  [/^pytorch_model.*\.bin(\.index\.json)?$/i, 'PyTorch weights (not edited)'],
  [/\.(pt|pth|ckpt|bin)$/i, 'PyTorch or other binary weights/state (not edited)'],
  [/^(flax_model|tf_model)/i, 'Flax/TensorFlow weights (not edited)'],
  [/\.(h5|msgpack|gguf|ggml|onnx|npz|npy|pkl|pickle)$/i, 'weights in another format (not edited)'],
  [/^(optimizer|scheduler|rng_state|trainer_state|training_args)/i, 'a training state (optimizer, scheduler, RNG)'],
];

export function otherWeightsReason(name: string): string | null {
  for (const [re, why] of OTHER_WEIGHTS) if (re.test(name)) return why;
  return null;
}

/** Copies the regular files of `dir` into `to`, except `skip`, weights, indexes, governance files (manifest, review log, report, locks) and hidden files. */
export function copySideFiles(dir: string, to: string, skip: Set<string>): { copied: string[]; skipped: SkippedSideFile[] } {
  const copied: string[] = [];
  const skipped: SkippedSideFile[] = [];
  for (const n of fs.readdirSync(dir)) {
    const src = path.join(dir, n);
    if (skip.has(src) || n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json') || isGovernanceFile(n) || n.startsWith('.')) continue;
    let st: fs.Stats;
    try { st = fs.lstatSync(src); } catch { continue; }
    if (st.isDirectory()) continue;
    if (st.isSymbolicLink()) { skipped.push({ name: n, reason: 'a symbolic link (links are never followed)' }); continue; }
    if (!st.isFile()) { skipped.push({ name: n, reason: 'not a regular file' }); continue; }
    const other = otherWeightsReason(n);
    if (other) { skipped.push({ name: n, reason: other }); continue; }
    // Opened without following a link swapped in since the lstat, and checked to be the same file.
    const fd = fs.openSync(src, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0));
    try {
      const now = fs.fstatSync(fd);
      if (now.ino !== st.ino || now.dev !== st.dev || !now.isFile()) { skipped.push({ name: n, reason: 'changed while being copied' }); continue; }
      fs.writeFileSync(path.join(to, n), fs.readFileSync(fd), { flag: 'wx' });
    } finally {
      fs.closeSync(fd);
    }
    copied.push(n);
  }
  return { copied, skipped };
}
