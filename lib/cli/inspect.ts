// geoedit inspect P: tensors, dtypes, shapes and bytes of a checkpoint (headers only).
import { inspectCheckpoint } from '../checkpoint';
import { EXIT, UsageError, fmtBytes, helpText, parse, reportError, safeLines, safeText, type OptSpec } from './common';

export const INSPECT_FLAGS: OptSpec[] = [
  { name: 'json', type: 'boolean', kind: 'boolean', default: 'off', desc: 'print JSON on stdout' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export async function runInspect(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, INSPECT_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit inspect P [--json]', 'Lists the tensors of a checkpoint (a .safetensors file, an index, or a directory): dtype, shape, the neuron\nlayout detected from the directory\'s config.json (SPEC §2; geoedit edit --layout overrides it), bytes.', INSPECT_FLAGS));
      return EXIT.OK;
    }
    if (positionals.length !== 1) throw new UsageError(`expected one checkpoint path but received ${positionals.length}`);
    const r = await inspectCheckpoint(positionals[0]!);
    if (values.json) {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      return EXIT.OK;
    }
    const names = r.tensors.map((t) => safeText(t.name));
    let w = 4;
    for (const n of names) if (n.length > w) w = Math.min(80, n.length);
    const lines = [`${r.path} (${r.kind}, ${r.files.length} file${r.files.length === 1 ? '' : 's'})`];
    if (r.metadata) lines.push(`metadata: ${JSON.stringify(r.metadata)}`);
    const m = r.model;
    lines.push(m.config === null ? 'model family: none (no config.json): every tensor in layout rows'
      : `model family: ${m.family ?? `not known (model_type ${m.modelType ?? 'absent'}): every tensor in layout rows`}${m.family ? ` (model_type ${m.modelType ?? '–'}, ${m.architectures.join(', ') || 'no architectures'}): ${m.rule}` : ''}; tie_word_embeddings ${m.tieWordEmbeddings}${m.tieSource === 'default' ? ' (default)' : ''}`);
    lines.push(`${'name'.padEnd(w)}  ${'dtype'.padEnd(8)}  ${'shape'.padEnd(20)}  ${'layout'.padEnd(15)}  bytes`);
    for (const [i, t] of r.tensors.entries()) lines.push(`${names[i]!.padEnd(w)}  ${t.dtype.padEnd(8)}  ${`[${t.shape.join(', ')}]`.padEnd(20)}  ${t.layout.padEnd(15)}  ${t.bytes}`);
    lines.push(`${r.tensors.length} tensors, ${fmtBytes(r.totalBytes)}: ${Object.entries(r.dtypes).map(([d, v]) => `${d} ${v.tensors} (${fmtBytes(v.bytes)})`).join(', ')}`);
    process.stdout.write(safeLines(lines));
    return EXIT.OK;
  } catch (e) {
    return reportError(e, 'inspect');
  }
}
