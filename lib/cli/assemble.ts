// geoedit assemble --parts DIR... --out DIR: the parts of a partitioned edit (geoedit edit --part K/N)
// joined into one output, the same bytes as the unpartitioned edit (docs/partitioned.md).
import { assembleParts } from '../partition/assemble';
import type { AssembledRecord } from '../partition/plan';
import { EXIT, UsageError, fmtBytes, helpText, parse, reportError, safeLines, toOptions } from './common';
import { flagsFor } from './flags';

export const ASSEMBLE_FLAGS = flagsFor('assemble');

export async function runAssemble(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, ASSEMBLE_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit assemble --out DIR --parts DIR [DIR...] [options]',
        'Joins the parts of a partitioned edit (geoedit edit ... --part K/N, one process per part) into DIR:\nthe shards, the index and the base directory\'s other files exactly as the unpartitioned edit writes them,\nand one manifest (every tensor, the totals, each part\'s timings). Checks first that the parts come from one\njob (inputs, options, version, plan), that each part is given once and none is missing; every part file is\nre-hashed against its part manifest. Files are hard-linked from the parts (nothing is copied on one file\nsystem; across file systems they are copied, and it says so); the parts are kept unless --move.\nNothing appears at DIR unless every check passes. docs/partitioned.md.', ASSEMBLE_FLAGS));
      return EXIT.OK;
    }
    const parts = [...((values.parts as string[] | undefined) ?? []), ...positionals];
    if (parts.length === 0) throw new UsageError('missing --parts DIR [DIR...]');
    if (typeof values.out !== 'string') throw new UsageError('missing --out');
    const opts = toOptions(values, ASSEMBLE_FLAGS) as Record<string, unknown>;
    if (opts.force === false) delete opts.force;
    if (opts.move === false) delete opts.move;
    const m = await assembleParts({ parts, out: values.out }, opts);
    const rec = m.partition as AssembledRecord;
    const a = rec.assemble;
    if (values.json) {
      process.stdout.write(JSON.stringify({ kind: m.kind, out: values.out, id: m.id, parts: rec.parts.map((p) => ({ index: p.index, dir: p.dir, id: p.id, files: p.files, timings: p.timings })), assemble: a }, null, 2) + '\n');
    } else {
      const bytes = rec.parts.reduce((s, p) => s + p.bytesWritten, 0);
      process.stdout.write(safeLines([
        `assembled ${rec.count} part${rec.count === 1 ? '' : 's'} into ${values.out} (${rec.parts.reduce((s, p) => s + p.files.length, 0)} files, ${fmtBytes(bytes)}) and geoedit-manifest.json`,
        `files: ${a.filesLinked} hard-linked, ${a.filesCopied} copied (${fmtBytes(a.bytesCopied)} copied); ${a.verified ? `${fmtBytes(a.bytesVerified)} re-hashed against the part manifests` : 'not re-hashed (--no-verify): sizes checked'}; ${(a.ms / 1000).toFixed(2)} s`,
        ...(a.movedParts ? ['the part directories were removed (--move)'] : []),
      ]));
    }
    return EXIT.OK;
  } catch (e) {
    return reportError(e, 'assemble');
  }
}
