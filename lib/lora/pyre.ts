// The keys of a PEFT config's rank_pattern / alpha_pattern, matched as PEFT matches them
// (get_pattern_key: `re.match(rf"(.*\.)?({key})$", name)`, Python `re` semantics) but in linear
// time. The keys come from adapter_config.json, an untrusted file: compiled as a JavaScript RegExp
// (a backtracking engine), a key such as `(a+)+b` or `(.*a){20}` runs for hours on a module name.
// Here a key is parsed into the subset of Python's syntax that real configs use and simulated as a
// Thompson NFA (a Pike VM without captures): at most (states x name length) steps for any key and
// name, whatever the key. Everything outside the subset is refused with the reason, never read as
// a literal: backreferences, lookarounds, atomic groups, possessive quantifiers, inline flags,
// conditionals, comments, `\b \B \A \Z` and other escapes, and keys over the size caps below.
//
// The subset: literals and escaped punctuation; `\n \t \r \f \v \a \xHH \uHHHH \UHHHHHHHH`; `.`
// (any character but a newline); classes `[...]` / `[^...]` with ranges and `\d \w \s \D \W \S`
// (Unicode, as Python's str patterns: \d = Nd, \w = letters, numbers and `_`, \s = Python's
// whitespace); groups `( )`, `(?: )`, `(?P<name> )`; alternation; `* + ? {m} {m,} {,n} {m,n}` and
// their lazy forms (laziness changes which match is found, not whether one is); `^` and `$`
// (Python's: `$` also matches before a final newline). A key must be a valid expression on its
// own (balanced groups): Python would splice an unbalanced key such as `a)|(b` into the wrapper.

/** Caps: longer keys, larger repetition counts, or more NFA states than this are refused. */
export const PATTERN_LIMITS = { keyLength: 1000, repeat: 1000, states: 4096 } as const;

export class PatternError extends Error {}

type CharTest = (c: number) => boolean;
type Node =
  | { t: 'char'; test: CharTest }
  | { t: 'cat'; items: Node[] }
  | { t: 'alt'; alts: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number }
  | { t: 'bol' }
  | { t: 'eol' };

const RE_W = /[\p{L}\p{N}_]/u;
const RE_D = /\p{Nd}/u;
const PY_SPACE = new Set([9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);
const isWord = (c: number) => (c < 128 ? (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 : RE_W.test(String.fromCodePoint(c)));
const isDigit = (c: number) => (c < 128 ? c >= 48 && c <= 57 : RE_D.test(String.fromCodePoint(c)));
const isSpace = (c: number) => PY_SPACE.has(c) || (c >= 0x2000 && c <= 0x200a);
const CLASS_ESCAPES: Record<string, CharTest> = {
  d: isDigit, D: (c) => !isDigit(c), w: isWord, W: (c) => !isWord(c), s: isSpace, S: (c) => !isSpace(c),
};
const CONTROL_ESCAPES: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, a: 7 };
const NEWLINE = 10;

/** The parser: a recursive descent over the key's code points, Python's sre_parse rules for the subset. */
class Parser {
  private i = 0;
  private readonly s: number[];
  private readonly names = new Set<string>();
  private depth = 0;

  constructor(src: string) {
    this.s = Array.from(src, (ch) => ch.codePointAt(0)!);
  }

  private fail(why: string, at = this.i): never {
    throw new PatternError(`${why} at position ${at}`);
  }

  private peek(k = 0): string | undefined {
    const c = this.s[this.i + k];
    return c === undefined ? undefined : String.fromCodePoint(c);
  }

  parse(): Node {
    const n = this.alternation();
    if (this.i < this.s.length) this.fail('unbalanced parenthesis'); // a ')' without its '('
    return n;
  }

  private alternation(): Node {
    const alts = [this.sequence()];
    while (this.peek() === '|') { this.i++; alts.push(this.sequence()); }
    return alts.length === 1 ? alts[0]! : { t: 'alt', alts };
  }

  private sequence(): Node {
    const items: Node[] = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === '|' || c === ')') break;
      const at = this.i;
      const atom = this.atom();
      if (atom === null) this.fail('nothing to repeat', at);
      let node = atom;
      const q = this.quantifier();
      if (q) {
        if (node.t === 'bol' || node.t === 'eol') this.fail('nothing to repeat (a quantifier on an anchor)', at);
        if (this.peek() === '?') this.i++; // lazy: the same yes/no answer
        else if (this.peek() === '+') this.fail('possessive quantifiers are not supported');
        const at2 = this.i;
        if (this.quantifier()) this.fail('multiple repeat', at2);
        node = { t: 'rep', node, min: q.min, max: q.max };
      }
      items.push(node);
    }
    return items.length === 1 ? items[0]! : { t: 'cat', items };
  }

  /** `* + ? {..}` at i (consumed), or null (a `{` that is not a quantifier stays for the atom: a literal). */
  private quantifier(): { min: number; max: number } | null {
    const c = this.peek();
    if (c === '*') { this.i++; return { min: 0, max: Infinity }; }
    if (c === '+') { this.i++; return { min: 1, max: Infinity }; }
    if (c === '?') { this.i++; return { min: 0, max: 1 }; }
    if (c !== '{') return null;
    let j = this.i + 1;
    const digits = () => { let d = ''; while (this.s[j] !== undefined && this.s[j]! >= 48 && this.s[j]! <= 57) d += String.fromCharCode(this.s[j++]!); return d; };
    if (this.s[j] === 0x7d) return null; // '{}'
    const lo = digits();
    let hi = lo;
    if (this.s[j] === 0x2c) { j++; hi = digits(); }
    if (this.s[j] !== 0x7d) return null;
    const min = lo ? Number(lo) : 0, max = hi ? Number(hi) : Infinity;
    if (min > PATTERN_LIMITS.repeat || (max !== Infinity && max > PATTERN_LIMITS.repeat)) this.fail(`repetition count over ${PATTERN_LIMITS.repeat}`);
    if (max < min) this.fail('min repeat greater than max repeat');
    this.i = j + 1;
    return { min, max };
  }

  /** One atom, or null where a quantifier stands with nothing before it. */
  private atom(): Node | null {
    const c = this.peek()!;
    if (c === '*' || c === '+' || c === '?') return null;
    if (c === '{' && this.quantifierAhead()) return null;
    this.i++;
    if (c === '.') return { t: 'char', test: (x) => x !== NEWLINE };
    if (c === '^') return { t: 'bol' };
    if (c === '$') return { t: 'eol' };
    if (c === '[') return { t: 'char', test: this.charClass() };
    if (c === '(') return this.group();
    if (c === '\\') {
      const e = this.escape(false);
      return { t: 'char', test: typeof e === 'number' ? (x) => x === e : e };
    }
    const cp = this.s[this.i - 1]!;
    return { t: 'char', test: (x) => x === cp };
  }

  private quantifierAhead(): boolean {
    const save = this.i;
    const q = this.quantifier();
    this.i = save;
    return q !== null;
  }

  private group(): Node {
    const open = this.i - 1;
    if (++this.depth > 100) this.fail('groups nested deeper than 100');
    if (this.peek() === '?') {
      const k = this.peek(1);
      if (k === ':') this.i += 2;
      else if (k === 'P' && this.peek(2) === '<') {
        this.i += 3;
        let name = '';
        while (this.peek() !== undefined && this.peek() !== '>') name += this.peek()!, this.i++;
        if (this.peek() !== '>' || !/^[\p{L}_][\p{L}\p{N}_]*$/u.test(name)) this.fail('bad group name', open);
        if (this.names.has(name)) this.fail(`redefinition of group name '${name}'`, open);
        this.names.add(name);
        this.i++;
      } else {
        const what = k === '=' || k === '!' ? 'lookahead' : k === '<' ? 'lookbehind' : k === 'P' ? 'named backreference' : k === '>' ? 'atomic group' : k === '#' ? 'comment group' : k === '(' ? 'conditional group' : 'inline flag or unknown group extension';
        this.fail(`${what} '(?${k ?? ''}' is not supported`, open);
      }
    }
    const inner = this.alternation();
    if (this.peek() !== ')') this.fail('missing ), unterminated subpattern', open);
    this.i++;
    this.depth--;
    return inner;
  }

  /**
   * After a backslash: a code point, or a class test (\d \w \s and negations). Anything else with a
   * letter or digit is refused (backreferences, \b \B \A \Z \N…: Python errors on unknown ones).
   */
  private escape(inClass: boolean): number | CharTest {
    const c = this.peek();
    if (c === undefined) this.fail('bad escape (end of pattern)');
    this.i++;
    if (CLASS_ESCAPES[c]) return CLASS_ESCAPES[c];
    if (CONTROL_ESCAPES[c] !== undefined) return CONTROL_ESCAPES[c];
    if (inClass && c === 'b') return 8;
    const hex = c === 'x' ? 2 : c === 'u' ? 4 : c === 'U' ? 8 : 0;
    if (hex) {
      let h = '';
      for (let k = 0; k < hex; k++) { const d = this.peek(); if (!d || !/[0-9a-fA-F]/.test(d)) this.fail(`incomplete escape \\${c}${h}`); h += d; this.i++; }
      const v = parseInt(h, 16);
      if (v > 0x10ffff) this.fail(`bad escape \\${c}${h}`);
      return v;
    }
    if (/[0-9]/.test(c)) this.fail(c === '0' ? 'octal escapes are not supported' : `backreference \\${c} is not supported`, this.i - 2);
    if (/[A-Za-z]/.test(c)) this.fail(`escape \\${c} is not supported`, this.i - 2);
    return this.s[this.i - 1]!; // escaped punctuation (or any other non-alphanumeric character): itself
  }

  /** After '[': Python's rules (a ']' first is literal; '-' first or last is literal). */
  private charClass(): CharTest {
    const open = this.i - 1;
    let neg = false;
    if (this.peek() === '^') { neg = true; this.i++; }
    const tests: CharTest[] = [];
    const ranges: number[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail('unterminated character set', open);
      if (c === ']' && !first) { this.i++; break; }
      first = false;
      const lo = this.classItem();
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined) {
        this.i++;
        const hi = this.classItem();
        if (typeof lo !== 'number' || typeof hi !== 'number') this.fail('bad character range (a class escape as an end)');
        if (hi < lo) this.fail('bad character range');
        ranges.push(lo, hi);
      } else if (typeof lo === 'number') ranges.push(lo, lo);
      else tests.push(lo);
    }
    const has = (x: number) => {
      for (let k = 0; k < ranges.length; k += 2) if (x >= ranges[k]! && x <= ranges[k + 1]!) return true;
      for (const t of tests) if (t(x)) return true;
      return false;
    };
    return neg ? (x) => !has(x) : has;
  }

  private classItem(): number | CharTest {
    const c = this.s[this.i++]!;
    return c === 0x5c ? this.escape(true) : c;
  }
}

// ---- the NFA ------------------------------------------------------------------------------------

const OP_CHAR = 0, OP_SPLIT = 1, OP_JMP = 2, OP_BOL = 3, OP_EOL = 4, OP_MATCH = 5;

function sizeOf(n: Node): number {
  switch (n.t) {
    case 'char': case 'bol': case 'eol': return 1;
    case 'cat': return n.items.reduce((a, x) => a + sizeOf(x), 0);
    case 'alt': return n.alts.reduce((a, x) => a + sizeOf(x), 0) + 2 * (n.alts.length - 1);
    case 'rep': { const s = sizeOf(n.node); return n.min * s + (n.max === Infinity ? s + 2 : (n.max - n.min) * (s + 1)); }
  }
}

class Program {
  op: number[] = [];
  x: number[] = [];
  y: number[] = [];
  test: Array<CharTest | null> = [];
  /** The VM's per-state marks, reused by every run (runs are synchronous). */
  mark: Int32Array | null = null;

  emit(op: number, x = 0, y = 0, test: CharTest | null = null): number {
    this.op.push(op); this.x.push(x); this.y.push(y); this.test.push(test);
    return this.op.length - 1;
  }

  get pc(): number { return this.op.length; }

  compile(n: Node): void {
    switch (n.t) {
      case 'char': this.emit(OP_CHAR, 0, 0, n.test); return;
      case 'bol': this.emit(OP_BOL); return;
      case 'eol': this.emit(OP_EOL); return;
      case 'cat': for (const x of n.items) this.compile(x); return;
      case 'alt': {
        const jumps: number[] = [];
        n.alts.forEach((a, k) => {
          if (k === n.alts.length - 1) { this.compile(a); return; }
          const split = this.emit(OP_SPLIT, this.pc + 1);
          this.compile(a);
          jumps.push(this.emit(OP_JMP));
          this.y[split] = this.pc;
        });
        for (const j of jumps) this.x[j] = this.pc;
        return;
      }
      case 'rep': {
        for (let k = 0; k < n.min; k++) this.compile(n.node);
        if (n.max === Infinity) {
          const split = this.emit(OP_SPLIT, this.pc + 1);
          this.compile(n.node);
          this.emit(OP_JMP, split);
          this.y[split] = this.pc;
        } else {
          for (let k = n.min; k < n.max; k++) {
            const split = this.emit(OP_SPLIT, this.pc + 1);
            this.compile(n.node);
            this.y[split] = this.pc;
          }
        }
      }
    }
  }
}

/** A compiled key: `test(name)` is PEFT's `re.match(rf"(.*\.)?({key})$", name) is not None`. */
export interface PatternKeyMatcher {
  readonly key: string;
  test(name: string): boolean;
  /** The same on the name's code points (`Array.from(name, c => c.codePointAt(0))`): one conversion for many keys. */
  testCodePoints(cps: readonly number[]): boolean;
}

export const codePointsOf = (name: string): number[] => Array.from(name, (ch) => ch.codePointAt(0)!);

/** A key of single characters only (literals, `.`, classes: full module names): its tests, else null. */
function fixedTests(n: Node): CharTest[] | null {
  if (n.t === 'char') return [n.test];
  if (n.t !== 'cat') return null;
  const out: CharTest[] = [];
  for (const x of n.items) { const t = fixedTests(x); if (!t) return null; out.push(...t); }
  return out;
}

/**
 * `(.*\.)?(c1…cL)$` for a fixed-length key: the last L code points (or the L before a final
 * newline) match, and what precedes them is empty or ends with a '.' and holds no newline. O(L).
 */
function fixedMatch(tests: CharTest[], cps: readonly number[]): boolean {
  const L = tests.length;
  const ends = cps.length > 0 && cps[cps.length - 1] === NEWLINE ? [cps.length, cps.length - 1] : [cps.length];
  for (const e of ends) {
    const b = e - L;
    if (b < 0) continue;
    let ok = true;
    for (let k = L - 1; k >= 0 && ok; k--) ok = tests[k]!(cps[b + k]!);
    if (!ok) continue;
    if (b === 0) return true;
    if (cps[b - 1] !== 0x2e) continue;
    let nl = false;
    for (let k = 0; k < b - 1 && !nl; k++) nl = cps[k] === NEWLINE;
    if (!nl) return true;
  }
  return false;
}

/** Compiles one rank_pattern / alpha_pattern key; a key outside the subset or the caps throws PatternError. */
export function compilePatternKey(key: string): PatternKeyMatcher {
  if ([...key].length > PATTERN_LIMITS.keyLength) throw new PatternError(`longer than ${PATTERN_LIMITS.keyLength} characters`);
  const ast = new Parser(key).parse();
  const states = sizeOf(ast) + 6;
  if (states > PATTERN_LIMITS.states) throw new PatternError(`expands to ${states} NFA states, over the cap of ${PATTERN_LIMITS.states} (repetition counts multiply)`);
  const fixed = fixedTests(ast);
  if (fixed) return { key, test: (name) => fixedMatch(fixed, codePointsOf(name)), testCodePoints: (cps) => fixedMatch(fixed, cps) };
  // (.*\.)?(key)$
  const p = new Program();
  const prefix: Node = { t: 'rep', min: 0, max: 1, node: { t: 'cat', items: [{ t: 'rep', min: 0, max: Infinity, node: { t: 'char', test: (c) => c !== NEWLINE } }, { t: 'char', test: (c) => c === 0x2e }] } };
  p.compile({ t: 'cat', items: [prefix, ast, { t: 'eol' }] });
  p.emit(OP_MATCH);
  return { key, test: (name) => run(p, codePointsOf(name)), testCodePoints: (cps) => run(p, cps) };
}

/** The Pike VM: the set of live states, advanced one code point at a time (each state at most once per step). */
function run(p: Program, cps: readonly number[]): boolean {
  const n = p.op.length;
  const mark = (p.mark ??= new Int32Array(n)).fill(-1);
  let cur: number[] = [], next: number[] = [];
  const stack: number[] = [];
  let gen = 0;
  const add = (list: number[], pc0: number, pos: number) => {
    stack.push(pc0);
    while (stack.length) {
      const pc = stack.pop()!;
      if (mark[pc] === gen) continue;
      mark[pc] = gen;
      switch (p.op[pc]) {
        case OP_JMP: stack.push(p.x[pc]!); break;
        case OP_SPLIT: stack.push(p.y[pc]!, p.x[pc]!); break;
        case OP_BOL: if (pos === 0) stack.push(pc + 1); break;
        case OP_EOL: if (pos === cps.length || (pos === cps.length - 1 && cps[pos] === NEWLINE)) stack.push(pc + 1); break;
        default: list.push(pc); // CHAR, MATCH
      }
    }
  };
  add(cur, 0, 0);
  for (let pos = 0; ; pos++) {
    for (const pc of cur) if (p.op[pc] === OP_MATCH) return true;
    if (pos === cps.length || cur.length === 0) return false;
    const c = cps[pos]!;
    gen++;
    next.length = 0;
    for (const pc of cur) if (p.op[pc] === OP_CHAR && p.test[pc]!(c)) add(next, pc + 1, pos + 1);
    [cur, next] = [next, cur];
  }
}
