// The CLI flags of `geoedit edit` and `geoedit analyze`, generated from the option table
// (lib/options/table.ts): the flag, its value, its default and meaning in --help, the option it
// sets, and whether it applies to checkpoints, adapters or both.
import { OPTIONS, type OptionSpec } from '../options';

export interface OptSpec {
  /** --flag name */
  name: string;
  type: 'string' | 'boolean';
  /** How the value is read: number, int, string, size (bytes: '2GiB', '500MB', 1234), list (repeatable), boolean, or negate (--no-x sets x: false). */
  kind: 'number' | 'string' | 'list' | 'boolean' | 'int' | 'size' | 'negate';
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
}

function kindOf(o: OptionSpec): OptSpec['kind'] {
  if (o.cli?.parse === 'size') return 'size';
  if (o.cli?.parse === 'negate') return 'negate';
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
  if (c.metavar) f.metavar = c.metavar;
  if (c.short) f.short = c.short;
  return f;
}

/** The flags of a command, in table order. */
export function flagsFor(cmd: 'edit' | 'analyze'): OptSpec[] {
  return (OPTIONS as readonly OptionSpec[]).filter((o) => o.cli && (o.cli.commands ?? ['edit', 'analyze']).includes(cmd)).map(toFlag);
}

/** Flags that set edit options (the ones both input kinds share, and the adapters'). */
export function optionFlags(flags: OptSpec[]): OptSpec[] {
  return flags.filter((f) => f.key !== undefined);
}
