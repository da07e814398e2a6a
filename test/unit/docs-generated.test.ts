// The generated regions of README.md and docs/*.md (`npm run docs:gen`) must match the option
// table, the CLI flags and the environment list.
import { describe, it, expect } from 'vitest';
import * as path from 'node:path';
import { fillRegions, regenerateDocs, renderCliHelp, renderCliReference, renderEnvTable, renderJobOptionsTable, renderOptionsTable } from '../../lib/docs';
import { COMMANDS } from '../../lib/cli/main';
import { OPTIONS, type OptionSpec } from '../../lib/options';
import { ENV_VARS } from '../../lib/env';

const ROOT = path.resolve(__dirname, '..', '..');

describe('generated docs', () => {
  it('no generated region is stale (run `npm run docs:gen`)', async () => {
    expect((await regenerateDocs(ROOT, { check: true })).map((f) => path.relative(ROOT, f))).toEqual([]);
  });

  it('render every option, flag, command and variable', async () => {
    const opts = renderOptionsTable() + renderJobOptionsTable(), cli = renderCliReference(), env = renderEnvTable();
    const help = await renderCliHelp();
    for (const c of Object.keys(COMMANDS)) expect(help).toContain(`### geoedit ${c}\n`);
    expect(help).toContain('--keep-orthogonal X');
    for (const o of OPTIONS as readonly OptionSpec[]) {
      if (o.name) expect(opts).toContain(`\`${o.name}\``);
      if (o.cli) expect(cli).toContain(`--${o.cli.flag}`);
    }
    for (const v of ENV_VARS) expect(env).toContain(`\`${v.name}\``);
  });

  it('fills a region between its markers and leaves the rest alone', async () => {
    const t = 'a\n<!-- env:begin -->\nold\n<!-- env:end -->\nb\n<!-- other:begin -->x<!-- other:end -->';
    const f = await fillRegions(t);
    expect(f.startsWith('a\n<!-- env:begin -->\n')).toBe(true);
    expect(f).toContain('`GEOEDIT_BACKEND`');
    expect(f).not.toContain('\nold\n');
    expect(f).toContain('<!-- other:begin -->x<!-- other:end -->');
    expect(await fillRegions(f)).toBe(f);
  });
});
