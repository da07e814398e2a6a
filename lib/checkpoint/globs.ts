// Glob patterns on tensor names: `*` any run of characters, `?` one, `[abc]` / `[!abc]` a class.
// Matched without a backtracking regular expression: tensor names come from the input files (a
// crafted header may hold names of megabytes), and `.*a.*a.*b`-style backtracking on such a name
// runs for hours. The matcher below is the greedy two-pointer wildcard match: at most
// O(pattern × name) steps for any input.
import { GeoEditError } from '../errors';

/** A compiled glob: `test(name)` as a RegExp's; `source` is the glob as given. */
export interface GlobMatcher {
  readonly source: string;
  test(name: string): boolean;
}

type Token = { k: 'lit'; c: string } | { k: 'one' } | { k: 'star' } | { k: 'class'; re: RegExp };

function invalid(g: string, option: string, why: string): GeoEditError {
  return new GeoEditError('ERR_INVALID_OPTION', `the glob ${JSON.stringify(g)} (option '${option}') is not valid: ${why.replace(/^Invalid regular expression: /, '')}`, { option });
}

function tokens(g: string, option: string): Token[] {
  const out: Token[] = [];
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === '*') {
      while (g[i + 1] === '*') i++;
      out.push({ k: 'star' });
    } else if (c === '?') out.push({ k: 'one' });
    else if (c === '[' && g.indexOf(']', i + 1) > i) {
      const j = g.indexOf(']', i + 1);
      let cls = g.slice(i + 1, j).replace(/\\/g, '\\\\');
      if (cls.startsWith('!')) cls = '^' + cls.slice(1);
      try {
        out.push({ k: 'class', re: new RegExp(`^[${cls}]$`) });
      } catch (e) {
        throw invalid(g, option, (e as Error).message);
      }
      i = j;
    } else out.push({ k: 'lit', c });
  }
  return out;
}

function one(t: Token, c: string): boolean {
  return t.k === 'one' || (t.k === 'lit' ? t.c === c : t.k === 'class' && t.re.test(c));
}

/** Whether name matches the tokens (greedy, one backtrack point: the last star). */
function matches(ts: Token[], s: string): boolean {
  let ti = 0, si = 0, starT = -1, starS = 0;
  while (si < s.length) {
    const t = ts[ti];
    if (t && t.k === 'star') { starT = ti++; starS = si; }
    else if (t && one(t, s[si]!)) { ti++; si++; }
    else if (starT >= 0) { ti = starT + 1; si = ++starS; }
    else return false;
  }
  while (ts[ti]?.k === 'star') ti++;
  return ti === ts.length;
}

/** A glob, compiled; an invalid one is ERR_INVALID_OPTION naming the option. */
export function globToRegExp(g: string, option: string): GlobMatcher {
  const ts = tokens(g, option);
  return { source: g, test: (name: string) => matches(ts, name) };
}
