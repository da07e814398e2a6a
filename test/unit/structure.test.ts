// The shape of lib/: no import circle (type imports included), no file over 500 lines, no
// function over 80 lines. Parsed with the TypeScript compiler, so comments and strings never count.
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

const LIB = path.resolve(__dirname, '..', '..', 'lib');
const MAX_FILE_LINES = 500;
const MAX_FUNCTION_LINES = 80;

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

function resolveLocal(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [`${base}.ts`, path.join(base, 'index.ts')]) if (fs.existsSync(c)) return c;
  return null;
}

const files = tsFiles(LIB);
const sources = new Map(files.map((f) => [f, ts.createSourceFile(f, fs.readFileSync(f, 'utf8'), ts.ScriptTarget.ES2022, true)]));

/** Every local module a file imports: import/export ... from, import(), require(). */
function importsOf(sf: ts.SourceFile): string[] {
  const out: string[] = [];
  const visit = (n: ts.Node) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) out.push(n.moduleSpecifier.text);
    if (ts.isCallExpression(n) && n.arguments.length === 1 && ts.isStringLiteral(n.arguments[0]!)
      && (n.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(n.expression) && n.expression.text === 'require'))) out.push(n.arguments[0].text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out.map((s) => resolveLocal(sf.fileName, s)).filter((x): x is string => x !== null);
}

describe('lib/ structure', () => {
  it('has no import circle', () => {
    const graph = new Map(files.map((f) => [f, importsOf(sources.get(f)!)]));
    const cycles: string[] = [];
    const state = new Map<string, 1 | 2>();
    const stack: string[] = [];
    const dfs = (f: string) => {
      state.set(f, 1);
      stack.push(f);
      for (const g of graph.get(f) ?? []) {
        if (state.get(g) === 1) cycles.push([...stack.slice(stack.indexOf(g)), g].map((x) => path.relative(LIB, x)).join(' -> '));
        else if (!state.has(g)) dfs(g);
      }
      stack.pop();
      state.set(f, 2);
    };
    for (const f of files) if (!state.has(f)) dfs(f);
    expect(cycles).toEqual([]);
  });

  it(`has no file over ${MAX_FILE_LINES} lines`, () => {
    const big = files.map((f) => [path.relative(LIB, f), sources.get(f)!.getLineAndCharacterOfPosition(sources.get(f)!.end).line + 1] as const)
      .filter(([, n]) => n > MAX_FILE_LINES);
    expect(big).toEqual([]);
  });

  it(`has no function over ${MAX_FUNCTION_LINES} lines`, () => {
    const long: string[] = [];
    for (const [f, sf] of sources) {
      const visit = (n: ts.Node) => {
        if ((ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n) || ts.isConstructorDeclaration(n)) && n.body) {
          const a = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line, b = sf.getLineAndCharacterOfPosition(n.end).line;
          if (b - a + 1 > MAX_FUNCTION_LINES) {
            const name = (n as ts.FunctionDeclaration).name?.getText(sf) ?? (ts.isVariableDeclaration(n.parent) ? n.parent.name.getText(sf) : '<anonymous>');
            long.push(`${path.relative(LIB, f)}:${a + 1} ${name} (${b - a + 1} lines)`);
          }
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    expect(long).toEqual([]);
  });
});
