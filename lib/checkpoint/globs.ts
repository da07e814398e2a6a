// Glob patterns on tensor names: `*` any run of characters, `?` one, `[abc]` / `[!abc]` a class.
import { GeoEditError } from '../errors';

/** A glob as an anchored RegExp; an invalid one is ERR_INVALID_OPTION naming the option. */
export function globToRegExp(g: string, option: string): RegExp {
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === '*') {
      while (g[i + 1] === '*') i++;
      re += '.*';
    } else if (c === '?') re += '.';
    else if (c === '[') {
      const j = g.indexOf(']', i + 1);
      if (j < 0) re += '\\[';
      else {
        let cls = g.slice(i + 1, j).replace(/\\/g, '\\\\');
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += `[${cls}]`;
        i = j;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  try {
    return new RegExp(`^${re}$`);
  } catch (e) {
    throw new GeoEditError('ERR_INVALID_OPTION', `the glob ${JSON.stringify(g)} (option '${option}') is not valid: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`, { option });
  }
}
