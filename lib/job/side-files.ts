// The base directory's other files (config.json, tokenizer…) copied into the output, as every
// job that writes full weights does. Hardening rules on what may be copied (links, other weight
// formats) go here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MANIFEST_FILE } from './manifest';
import { statOrNull } from './target';

/** Copies the regular files of `dir` into `to`, except `skip`, weights, indexes, a manifest and hidden files. Returns the names copied. */
export function copySideFiles(dir: string, to: string, skip: Set<string>): string[] {
  const copied: string[] = [];
  for (const n of fs.readdirSync(dir)) {
    const src = path.join(dir, n);
    if (skip.has(src) || n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json') || n === MANIFEST_FILE || n.startsWith('.')) continue;
    if (!statOrNull(src)?.isFile()) continue;
    fs.copyFileSync(src, path.join(to, n));
    copied.push(n);
  }
  return copied;
}
