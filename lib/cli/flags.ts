// The CLI flags of `geoedit edit` and `geoedit analyze`, generated from the option table
// (lib/options/table.ts): the flag, its value, its default and meaning in --help, the option it
// sets, and whether it applies to checkpoints, adapters or both.
import { OPTIONS, type OptionSpec } from '../options';

export interface OptSpec {
  /** --flag name */
  name: string;
  type: 'string' | 'boolean';
  /** How the value is read: number, int, string, size (bytes: '2GiB', '500MB', 1234), list (repeatable), boolean, or negate (--no-x sets x: false). */
  kind: 'number' | 'string' | 'list' | 'boolean' | 'int' | 'size' | 'negate' | 'pairs';
  /** The option key it sets (none for CLI-only flags). */
  key?: string;
  /** Shown in --help; what applies when the flag is absent. */
  default: string;
  desc: string;
  metavar?: string;
  short?: string;
  /** Taken with --old-adapter/--new-adapter; with checkpoints (--old/--new) (absent: true). */
  adapters?: boolean;
  checkpoints?: boolean;
  /** The key inside the option `key` that the flag sets (--preserve-rho: preserve.rho). */
  sub?: string;
}

function kindOf(o: OptionSpec): OptSpec['kind'] {
  if (o.cli?.parse === 'size') return 'size';
  if (o.cli?.parse === 'negate') return 'negate';
  if (o.cli?.parse === 'pairs') return 'pairs';
  if (o.cli?.parse === 'list') return 'list';
  switch (o.type) {
    case 'number': return 'number';
    case 'int': return 'int';
    case 'boolean': return 'boolean';
    case 'globs': return 'list';
    default: return 'string';
  }
}

export function toFlag(o: OptionSpec): OptSpec {
  const c = o.cli!;
  const kind = kindOf(o);
  const f: OptSpec = {
    name: c.flag, type: kind === 'boolean' || kind === 'negate' ? 'boolean' : 'string', kind,
    default: c.helpDefault ?? o.defaultDoc, desc: c.help ?? o.doc,
    adapters: c.adapters !== false, checkpoints: c.checkpoints !== false,
  };
  if (o.name) f.key = o.name;
  else if (c.of) f.key = c.of;
  if (c.sets) f.sub = c.sets;
  if (c.metavar) f.metavar = c.metavar;
  if (c.short) f.short = c.short;
  return f;
}

/** The flags of a command, in table order. */
export function flagsFor(cmd: 'edit' | 'analyze' | 'assemble'): OptSpec[] {
  return (OPTIONS as readonly OptionSpec[]).filter((o) => o.cli && (o.cli.commands ?? ['edit', 'analyze']).includes(cmd)).map(toFlag);
}

const group = (names: string[]): OptSpec[] => flagsFor('edit').filter((f) => names.includes(f.name));

/** The flags of `geoedit edit` in groups, for commands that compose their own list (rollout). */
export const INPUT_FLAGS: OptSpec[] = group(['base', 'old', 'new']);
export const LORA_FLAGS: OptSpec[] = group(['old-adapter', 'new-adapter', 'keep-zero-blocks', 'out-format']);
export const OUT_FLAGS: OptSpec[] = group(['out', 'max-shard-size', 'force']);
/** The edit options as flags, and --report, --no-hash, --json, --quiet, --help. */
export const EDIT_FLAGS: OptSpec[] = flagsFor('edit').filter((f) => ![...INPUT_FLAGS, ...LORA_FLAGS, ...OUT_FLAGS].includes(f));

/** Flags that set edit options (the ones both input kinds share, and the adapters'). */
export function optionFlags(flags: OptSpec[]): OptSpec[] {
  return flags.filter((f) => f.key !== undefined);
}
