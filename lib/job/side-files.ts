// The base directory's other files (config.json, tokenizer…) copied into the output, as every
// job that writes full weights does. Only regular files that live in the directory are copied:
// symlinks are never followed (a `tokenizer.json -> ~/.aws/credentials` stays behind), special
// files are skipped, and weights in other formats (PyTorch, TensorFlow, Flax, GGUF, optimizer
// and scheduler states) are never copied beside the edited safetensors. What was skipped is
// returned (the job lists it in the manifest and on stderr). A regular file with more than one hard
// link IS copied (geoedit assemble hard-links part files into its output, and `cp -al` copies share
// inodes: skipping them would break editing such an output), and reported: a hard link cannot be
// told apart from the file itself, so it may be a link to a file outside the directory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError } from '../errors';
import { isGovernanceFile } from '../governance/lineage';

export interface SkippedSideFile { name: string; reason: string }
/** A side file copied although it has more than one hard link (`hardLinks`: its link count). */
export interface HardLinkedSideFile { name: string; hardLinks: number }

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

const CHUNK = 4 << 20;

/**
 * Copies the regular files of `dir` into `to`, except `skip` (the model's own weights and index),
 * governance files (manifest, review log, report, locks) and hidden files, which are passed over;
 * other safetensors files and indexes, other weight formats, directories, links and special files
 * are skipped and returned with the reason. Asynchronous, in 4 MiB pieces with
 * `check` (the job's abort check: it throws) before each, so a signal or an aborted `signal` is
 * acted on within one piece however large a side file is.
 */
export async function copySideFiles(dir: string, to: string, skip: Set<string>, check: () => void = () => undefined): Promise<{ copied: string[]; skipped: SkippedSideFile[]; hardLinked: HardLinkedSideFile[] }> {
  const copied: string[] = [];
  const skipped: SkippedSideFile[] = [];
  const hardLinked: HardLinkedSideFile[] = [];
  for (const n of fs.readdirSync(dir)) {
    check();
    const src = path.join(dir, n);
    if (skip.has(src) || isGovernanceFile(n) || n.startsWith('.')) continue;
    let st: fs.Stats;
    try { st = fs.lstatSync(src); } catch { continue; }
    if (st.isDirectory()) { skipped.push({ name: n, reason: 'a directory (only the files of the base directory itself are copied)' }); continue; }
    if (n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json')) { skipped.push({ name: n, reason: 'safetensors weights that are not part of the model read (not edited)' }); continue; }
    if (st.isSymbolicLink()) { skipped.push({ name: n, reason: 'a symbolic link (links are never followed)' }); continue; }
    if (!st.isFile()) { skipped.push({ name: n, reason: 'not a regular file' }); continue; }
    const other = otherWeightsReason(n);
    if (other) { skipped.push({ name: n, reason: other }); continue; }
    // Opened without following a link swapped in since the lstat and without blocking on a FIFO
    // swapped in (O_NONBLOCK), and checked to be the same regular file.
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(src, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOENT') { skipped.push({ name: n, reason: 'changed while being copied' }); continue; }
      throw new GeoEditError('ERR_IO', `${src}: cannot read this side file of the base directory (${(e as Error).message}); make it readable or move it out`, { file: src });
    }
    try {
      const now = await fh.stat();
      if (now.ino !== st.ino || now.dev !== st.dev || !now.isFile()) { skipped.push({ name: n, reason: 'changed while being copied' }); continue; }
      await copyHandle(fh, path.join(to, n), src, check);
      if (now.nlink > 1) hardLinked.push({ name: n, hardLinks: now.nlink });
    } finally {
      await fh.close();
    }
    copied.push(n);
  }
  return { copied, skipped, hardLinked };
}

/** Copies an open file into a new file `dest`, in CHUNK pieces from byte `start` (`check` before each). Exported for the tests. */
export async function copyHandle(from: fs.promises.FileHandle, dest: string, src: string, check: () => void, start = 0): Promise<void> {
  const out = await fs.promises.open(dest, 'wx');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let pos = start; ;) {
      check();
      let n: number;
      try {
        ({ bytesRead: n } = await from.read(buf, 0, CHUNK, pos));
      } catch (e) {
        throw new GeoEditError('ERR_IO', `${src}: cannot read this side file of the base directory (${(e as Error).message})`, { file: src });
      }
      if (n === 0) break;
      for (let w = 0; w < n;) w += (await out.write(buf, w, n - w)).bytesWritten;
      pos += n;
    }
  } finally {
    await out.close();
  }
}
