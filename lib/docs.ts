// Generated docs: the options table, the CLI reference and the environment table, rendered from
// the option table (lib/options/table.ts), the CLI flags made from it (lib/cli/flags.ts) and the
// list of environment variables (lib/env.ts). `npm run docs:gen` fills the marker regions
//   <!-- options:begin --> … <!-- options:end -->   (README.md, docs/cli.md: the edit options)
//   <!-- job-options:begin --> … <!-- job-options:end -->   (docs/api.md: checkpoint and adapter job options)
//   <!-- cli:begin --> … <!-- cli:end -->           (docs/cli.md: every command's --help, as printed)
//   <!-- flags:begin --> … <!-- flags:end -->       (edit/analyze flags as a table: where each applies)
//   <!-- env:begin --> … <!-- env:end -->           (docs/environment.md)
// in README.md and docs/**/*.md; test/unit/docs-generated.test.ts fails when a region is stale.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ENTRY_POINTS, OPTIONS, SIZE_RULES, rangeText, type EntryPoint, type OptionSpec } from './options';
import { flagsFor } from './cli/flags';
import { COMMANDS, main } from './cli/main';
import { ENV_VARS } from './env';

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function typeText(o: OptionSpec): string {
  switch (o.type) {
    case 'enum': return (o.values ?? []).map((v) => `\`'${v}'\``).join(', ');
    case 'number': case 'int': return rangeText(o) || (o.type === 'int' ? 'an integer' : 'a number');
    case 'size': return 'a size (`5GB`, `2GiB`) or bytes';
    case 'globs': return 'a glob or an array of globs';
    case 'path': return 'a path';
    case 'function': return 'a function';
    case 'signal': return 'an AbortSignal';
    case 'boolean': return 'boolean';
    default: return 'see meaning';
  }
}

const SHORT: Record<EntryPoint, string> = { tensor: 'tensor', lora: 'LoRA', checkpoint: 'checkpoint', adapters: 'adapters', assemble: 'assemble' };

function where(o: OptionSpec): string {
  return ['tensor', 'lora', 'checkpoint', 'adapters'].every((e) => (o.accepts as readonly string[]).includes(e)) ? 'all' : o.accepts.map((e) => SHORT[e]).join(', ');
}

function optionRows(list: OptionSpec[]): string[] {
  return list.map((o) => {
    const name = `\`${o.name}\`${o.symbol ? ` (${o.symbol})` : ''}`;
    const flag = o.cli ? `\`--${o.cli.flag}\`` : '—';
    return `| ${name} | ${cell(typeText(o))} | ${cell(o.defaultDoc)} | ${flag} | ${where(o)} | ${cell(o.doc)} |`;
  });
}

const HEAD = ['| option | values | default | CLI | where | meaning |', '|---|---|---|---|---|---|'];
const WHERE = `where: ${(Object.keys(SHORT) as EntryPoint[]).map((e) => `${SHORT[e]} = ${ENTRY_POINTS[e]}`).join('; ')}; all = tensor, LoRA, checkpoint and adapters.`;

/** The edit options (what editTensor takes; the other entry points take them too, as "where" says). */
export function renderOptionsTable(): string {
  const list = (OPTIONS as readonly OptionSpec[]).filter((o) => o.name && o.accepts.includes('tensor'));
  return [...HEAD, ...optionRows(list), '', WHERE].join('\n');
}

/** The options of the checkpoint and adapter jobs that editTensor does not take. */
export function renderJobOptionsTable(): string {
  const list = (OPTIONS as readonly OptionSpec[]).filter((o) => o.name && !o.accepts.includes('tensor'));
  return [...HEAD, ...optionRows(list), '', WHERE, '', `Sizes: ${SIZE_RULES}.`].join('\n');
}

/** Runs `fn` with process.stdout.write captured; returns what it wrote. */
async function captureStdout(fn: () => unknown): Promise<string> {
  const write = process.stdout.write;
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array) => { out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'); return true; }) as typeof process.stdout.write;
  try {
    await fn();
  } finally {
    process.stdout.write = write;
  }
  return out;
}

/** `geoedit --help` and every command's `--help` (each command in COMMANDS, lib/cli/main.ts), as they print it. */
export async function renderCliHelp(): Promise<string> {
  const out: string[] = [];
  const block = (title: string, cmd: string, text: string) => out.push(`### ${title}`, '', '```', `$ ${cmd}`, text.trimEnd(), '```', '');
  block('geoedit', 'geoedit --help', await captureStdout(() => main(['--help'])));
  for (const [name, c] of Object.entries(COMMANDS)) {
    const mod = (await import(path.join(__dirname, 'cli', c.module))) as Record<string, (argv: string[]) => Promise<number>>;
    block(`geoedit ${name}`, `geoedit ${name} --help`, await captureStdout(() => mod[c.fn]!(['--help'])));
  }
  return out.join('\n').trimEnd();
}

/** `geoedit edit`, `geoedit analyze` and `geoedit assemble`: every flag with its default and meaning, and where it applies. */
export function renderCliReference(): string {
  const out: string[] = [];
  for (const cmd of ['edit', 'analyze'] as const) {
    out.push(`### \`geoedit ${cmd}\``, '', '| flag | default | checkpoints | adapters | meaning |', '|---|---|---|---|---|');
    for (const f of flagsFor(cmd)) {
      const flag = `\`${f.short ? `-${f.short}, ` : ''}--${f.name}${f.metavar ? ` ${f.metavar}` : ''}\``;
      const yes = (b: boolean | undefined) => (b === false ? '—' : 'yes');
      out.push(`| ${flag} | ${cell(f.default || '—')} | ${yes(f.checkpoints)} | ${yes(f.adapters)} | ${cell(f.desc)} |`);
    }
    out.push('');
  }
  out.push('### `geoedit assemble`', '', '| flag | default | meaning |', '|---|---|---|');
  for (const f of flagsFor('assemble')) out.push(`| \`--${f.name}${f.metavar ? ` ${f.metavar}` : ''}\` | ${cell(f.default || '—')} | ${cell(f.desc)} |`);
  out.push('');
  out.push('Exit codes: 0 done, 1 usage, 2 bad input, 3 runtime failure.');
  return out.join('\n');
}

/** Every environment variable: default, who reads it, meaning. */
export function renderEnvTable(): string {
  return [
    '| variable | default | read by | meaning |',
    '|---|---|---|---|',
    ...ENV_VARS.map((v) => `| \`${v.name}\` | ${cell(v.default)} | ${v.readBy.join(', ')} | ${cell(v.meaning)} |`),
  ].join('\n');
}

export const REGIONS: Readonly<Record<string, () => string | Promise<string>>> = {
  options: renderOptionsTable, 'job-options': renderJobOptionsTable, flags: renderCliReference, cli: renderCliHelp, env: renderEnvTable,
};

const NOTE = '<!-- generated by `npm run docs:gen` from lib/options/table.ts, lib/cli/flags.ts and lib/env.ts: edit those, not this -->';

/** `text` with every known marker region filled; unknown regions are left alone. */
export async function fillRegions(text: string): Promise<string> {
  const re = /(<!-- ([a-z-]+):begin -->)[\s\S]*?(<!-- \2:end -->)/g;
  const rendered = new Map<string, string>();
  for (const m of text.matchAll(re)) {
    const render = REGIONS[m[2]!];
    if (render && !rendered.has(m[2]!)) rendered.set(m[2]!, await render());
  }
  return text.replace(re, (all, begin: string, name: string, end: string) => (rendered.has(name) ? `${begin}\n${NOTE}\n\n${rendered.get(name)}\n\n${end}` : all));
}

/** README.md and docs/**\/*.md under root. */
export function docFiles(root: string): string[] {
  const out = [path.join(root, 'README.md')];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.md')) out.push(p);
    }
  };
  walk(path.join(root, 'docs'));
  return out.filter((f) => fs.existsSync(f));
}

/** Fills the regions of every doc file (or, with check, only lists the stale ones). Returns the files that were (or would be) changed. */
export async function regenerateDocs(root: string, opts: { check?: boolean } = {}): Promise<string[]> {
  const changed: string[] = [];
  for (const f of docFiles(root)) {
    const text = fs.readFileSync(f, 'utf8');
    const next = await fillRegions(text);
    if (next === text) continue;
    changed.push(f);
    if (!opts.check) fs.writeFileSync(f, next);
  }
  return changed;
}
