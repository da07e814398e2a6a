// The base directory's other files (config.json, tokenizer…) copied into the output, as every
// job that writes full weights does. Hardening rules on what may be copied (links, other weight
// formats) go here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isGovernanceFile } from '../governance/lineage';
import { statOrNull } from './target';

/** Copies the regular files of `dir` into `to`, except `skip`, weights, indexes, governance files (manifest, review log, report, locks) and hidden files. Returns the names copied. */
export function copySideFiles(dir: string, to: string, skip: Set<string>): string[] {
  const copied: string[] = [];
  for (const n of fs.readdirSync(dir)) {
    const src = path.join(dir, n);
    if (skip.has(src) || n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json') || isGovernanceFile(n) || n.startsWith('.')) continue;
    if (!statOrNull(src)?.isFile()) continue;
    fs.copyFileSync(src, path.join(to, n));
    copied.push(n);
  }
  return copied;
}
