// Glob patterns on tensor names: `*` any run of characters, `?` one, `[abc]` / `[!abc]` a class.

/** A glob as an anchored RegExp. */
export function globToRegExp(g: string): RegExp {
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
  return new RegExp(`^${re}$`);
}
