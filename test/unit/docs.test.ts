// The docs hold together: the copies of the shared contract are verbatim, and every relative link
// in the repository's Markdown (README.md, docs/, bench/, ...) points at a file that exists (and,
// for a link into a Markdown page, at a heading that exists there).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, SHARED } from '../support/paths';

const COPY_MARK = /^<!-- copy:begin (\S+) -->\n/m;

/** Pages that copy a file of ../shared below a `<!-- copy:begin ../shared/X -->` line. */
const COPIES: Array<[page: string, source: string]> = [
  ['docs/spec.md', 'SPEC.md'],
  ['docs/quality-protocol.md', 'QUALITY.md'],
];

describe('docs: copies of ../shared', () => {
  for (const [page, source] of COPIES) {
    const src = path.join(SHARED, source);
    const have = fs.existsSync(src);
    it.skipIf(!have)(`${page} is ../shared/${source} verbatim below its marker`, () => {
      const text = fs.readFileSync(path.join(REPO, page), 'utf8');
      const m = COPY_MARK.exec(text);
      expect(m, `${page} has no '<!-- copy:begin ../shared/${source} -->' line`).not.toBeNull();
      expect(m![1]).toBe(`../shared/${source}`);
      const copy = text.slice(m!.index + m![0].length);
      const want = fs.readFileSync(src, 'utf8');
      if (copy !== want) {
        const a = copy.split('\n'), b = want.split('\n');
        let i = 0;
        while (i < a.length && i < b.length && a[i] === b[i]) i++;
        throw new Error(`${page} differs from ${src} at line ${i + 1} of the copy:\n  page:   ${a[i] ?? '(end)'}\n  source: ${b[i] ?? '(end)'}\n` +
          `Copy it again: the marker line, then the file.`);
      }
    });
    if (!have) it.skip(`${page}: skipped — ${src} is absent (the shared folder is not part of a clone; TEST_SHARED_DIR points at it)`, () => undefined);
  }
});

// ---- links -------------------------------------------------------------------------------------

const SKIP_DIRS = new Set(['node_modules', '.git', 'dist', '.cache', 'prebuilds', '.nodebin', 'tmp']);

function markdownFiles(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (SKIP_DIRS.has(e.name) || e.name.startsWith('build') || e.name.startsWith('.')) continue;
      markdownFiles(path.join(dir, e.name), out);
    } else if (e.isFile() && e.name.endsWith('.md')) out.push(path.join(dir, e.name));
  }
  return out;
}

/** The text outside fenced code blocks and inline code spans, line numbers kept. */
function prose(text: string): string[] {
  let fence = false;
  return text.split('\n').map((line) => {
    if (/^\s*(```|~~~)/.test(line)) { fence = !fence; return ''; }
    return fence ? '' : line.replace(/`[^`]*`/g, '``');
  });
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fence = false;
  for (const line of text.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) { fence = !fence; continue; }
    const m = fence ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]!.replace(/<[^>]+>/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '').trim().replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of text.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) out.add(m[1]!);
  return out;
}

describe('docs: relative links in Markdown resolve', () => {
  const files = markdownFiles(REPO);
  it('finds the README and the docs pages', () => {
    const rel = files.map((f) => path.relative(REPO, f));
    expect(rel).toContain('README.md');
    expect(rel.filter((f) => f.startsWith('docs' + path.sep)).length).toBeGreaterThan(5);
  });
  for (const file of files) {
    const rel = path.relative(REPO, file);
    it(rel, () => {
      const text = fs.readFileSync(file, 'utf8');
      const bad: string[] = [];
      prose(text).forEach((line, i) => {
        for (const m of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
          const target = m[1]!;
          if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
          const [p, frag] = target.split('#', 2) as [string, string | undefined];
          const dest = p === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(p));
          if (!fs.existsSync(dest)) { bad.push(`line ${i + 1}: ${target} (no such file)`); continue; }
          if (frag && dest.endsWith('.md') && !anchors(fs.readFileSync(dest, 'utf8')).has(frag.toLowerCase())) {
            bad.push(`line ${i + 1}: ${target} (no heading '#${frag}' in ${path.relative(REPO, dest)})`);
          }
        }
      });
      expect(bad, `${rel}: broken links`).toEqual([]);
    });
  }
});
