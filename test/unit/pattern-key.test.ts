// rank_pattern / alpha_pattern keys (lib/lora/pyre.ts): PEFT's `re.match(rf"(.*\.)?({key})$", name)`
// without a backtracking engine. Equivalence with a RegExp on generated safe keys (where Python and
// JavaScript agree), Python-only rules by hand, pathological keys finishing with the right answer,
// and every refusal coded (ERR_BAD_ADAPTER naming the file and the key).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it, expect } from 'vitest';
import { compilePatternKey, PatternError, PATTERN_LIMITS } from '../../lib/lora/pyre';
import { patternValue, readPeftAdapter } from '../../lib/lora/peft';
import { readSafetensorsHeaderSync } from '../../lib/safetensors';
import { linearModule, tmpDir, writeAdapter } from '../support/lora';
import { rng } from '../support/prng';
import { REAL, haveReal } from '../support/paths';

/** The RegExp PEFT's Python expression equals on keys of the common subset (no newline in names). */
const jsRef = (k: string) => new RegExp(`^(?:.*\\.)?(?:${k})$`);

/** A random key of the subset where Python's and JavaScript's rules agree. */
function genKey(r: () => number, depth = 0): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const atoms = ['a', 'b', '1', '_', '.', '\\.', '[ab]', '[^a]', '[a-c1]', '[.]', '\\d', '\\w', '\\D', '\\W', 'q_proj', 'layers'];
  const quants = ['', '', '', '*', '+', '?', '*?', '+?', '??', '{2}', '{1,}', '{0,2}', '{1,3}?', '{0}'];
  // Groups get bounded quantifiers only: nested unbounded ones make the RegExp reference (a
  // backtracking engine) exponential on a mismatch, which is the point of the matcher under test.
  const groupQuants = ['', '', '?', '??', '{2}', '{0,2}', '{1,2}?'];
  const n = 1 + Math.floor(r() * 4);
  let s = '';
  for (let i = 0; i < n; i++) {
    let atom = depth < 2 && r() < 0.25 ? `(${genKey(r, depth + 1)}${r() < 0.4 ? `|${genKey(r, depth + 1)}` : ''})` : pick(atoms);
    if (atom.startsWith('(') && r() < 0.3) atom = `(?:${atom.slice(1)}`;
    s += atom + pick(atom.startsWith('(') ? groupQuants : quants);
  }
  if (depth === 0 && r() < 0.1) s = `^${s}`;
  if (r() < 0.1) s += '$';
  if (depth === 0 && r() < 0.15) s += `|${genKey(r, 1)}`;
  return s;
}

function genName(r: () => number): string {
  const alpha = ['a', 'b', '1', '_', '.', 'x', 'q_proj', 'layers', '.0.'];
  let s = '';
  const n = Math.floor(r() * 7);
  for (let i = 0; i < n; i++) s += alpha[Math.floor(r() * alpha.length)]!;
  return s;
}

const REAL_NAMES = [
  'model.layers.0.self_attn.q_proj', 'model.layers.12.self_attn.v_proj', 'model.layers.3.mlp.down_proj', 'transformer.h.0.attn.c_attn',
  'transformer.h.11.mlp.c_proj', 'bert.encoder.layer.5.attention.self.query', 'distilbert.transformer.layer.2.attention.q_lin', 'lm_head',
];
const REAL_KEYS = [
  'q_proj', 'v_proj', 'c_attn', 'query', 'value', 'q_lin', 'v_lin', 'model.layers.0.self_attn.q_proj', 'layers.1.self_attn.q_proj',
  'layers\\.[0-9]+\\.self_attn\\.q_proj', '.*\\.mlp\\..*', 'model\\.layers\\.(1[0-9]|[0-9])\\..*_proj', '(q|k|v)_proj', 'h\\.\\d+\\.attn\\.c_attn',
  'experts.*.w1', '^model.layers.0.self_attn.q_proj', 'layer.5.attention.self.query$',
];

describe('rank_pattern keys: the same answer as the regular expression PEFT builds', () => {
  it('generated keys x generated names (the common subset of Python and JavaScript)', () => {
    const r = rng(2026);
    let checked = 0, hits = 0;
    for (let i = 0; i < 1500; i++) {
      const k = genKey(r);
      const m = compilePatternKey(k), ref = jsRef(k);
      const names = [...Array.from({ length: 40 }, () => genName(r)), ...REAL_NAMES];
      for (const n of names) {
        const want = ref.test(n);
        if (m.test(n) !== want) throw new Error(`key ${JSON.stringify(k)}, name ${JSON.stringify(n)}: expected ${want}`);
        checked++;
        if (want) hits++;
      }
    }
    expect(checked).toBe(1500 * 48);
    // Both answers occur often (the generated cases are not trivially all misses).
    expect(hits).toBeGreaterThan(checked * 0.05);
    expect(hits).toBeLessThan(checked * 0.95);
  });

  it('keys and module names of the real adapters in shared/realdata (and typical full-name / regex keys)', (ctx) => {
    const dirs = haveReal ? findAdapters(REAL) : [];
    if (dirs.length === 0) ctx.skip();
    const names = new Set(REAL_NAMES);
    const keys = new Set(REAL_KEYS);
    for (const d of dirs) {
      const cfg = JSON.parse(fs.readFileSync(path.join(d, 'adapter_config.json'), 'utf8')) as { target_modules?: string[] };
      for (const k of cfg.target_modules ?? []) keys.add(k);
      for (const t of readSafetensorsHeaderSync(path.join(d, 'adapter_model.safetensors')).tensors) {
        const mm = /^base_model\.model\.(.*)\.lora_[AB]\.weight$/.exec(t.name);
        if (mm) { names.add(mm[1]!); keys.add(mm[1]!); keys.add(mm[1]!.split('.').slice(-3).join('.')); }
      }
    }
    expect(dirs.length).toBeGreaterThanOrEqual(5);
    let hits = 0;
    for (const k of keys) {
      const m = compilePatternKey(k), ref = jsRef(k);
      for (const n of names) { expect(m.test(n), `${k} / ${n}`).toBe(ref.test(n)); if (ref.test(n)) hits++; }
    }
    expect(hits).toBeGreaterThan(keys.size);
  });

  it("Python's own rules where JavaScript differs", () => {
    const t = (k: string, n: string) => compilePatternKey(k).test(n);
    expect(t('a{,2}', 'x.aa')).toBe(true); // {,n} is {0,n} in Python (a literal in JavaScript)
    expect(t('a{,2}', 'aaa')).toBe(false);
    expect(t('a{,}', 'aaaa')).toBe(true);
    expect(t('a{}', 'a{}')).toBe(true); // not a quantifier: literals
    expect(t('a{x}', 'a{x}')).toBe(true);
    expect(t('[]a]+', ']a]')).toBe(true); // ']' first in a class is a literal
    expect(t('[^]]', ']')).toBe(false);
    expect(t('q_proj', 'x.q_proj\n')).toBe(true); // '$' also matches before a final newline
    expect(t('q_proj', 'x.q_proj\n\n')).toBe(false);
    expect(t('\\d+', 'layer.\u0663\u0664')).toBe(true); // Unicode digits (ARABIC-INDIC)
    expect(t('\\w+', '\u00e9t\u00e9')).toBe(true);
    expect(t('\\s', '\u001c')).toBe(true); // Python's whitespace includes the information separators
    expect(t('(?P<layer>\\d+)\\.q', 'model.12.q')).toBe(true);
    expect(t('.', '\n')).toBe(false);
    expect(t('\\x41\\u00e9\\U0001F600', 'A\u00e9\u{1F600}')).toBe(true); // one code point each
    expect(t('.', '\u{1F600}')).toBe(true);
    expect(t('[\\b]', '\b')).toBe(true); // backspace inside a class
    expect(t('a|b', 'x.b')).toBe(true); // the key is one group: 'x.' is the prefix
    expect(t('^a', 'x.a')).toBe(false); // '^' only at the name's start
  });

  it('the first key in the config order wins; numbers are the values', () => {
    const p = { 'layers\\.0\\..*': 4, 'q_proj': 8 };
    expect(patternValue(p, 'model.layers.0.self_attn.q_proj')).toBe(4);
    expect(patternValue(p, 'model.layers.1.self_attn.q_proj')).toBe(8);
    expect(patternValue(p, 'model.layers.1.self_attn.k_proj')).toBeUndefined();
    expect(patternValue({}, 'x')).toBeUndefined();
    expect(patternValue(null, 'x')).toBeUndefined();
  });
});

describe('rank_pattern keys: pathological for a backtracking engine, linear here', () => {
  const cases: Array<[string, string, boolean]> = [
    ['(a+)+b', 'a'.repeat(5000), false],
    ['(a+)+b', `x.${'a'.repeat(5000)}b`, true],
    ['(.*a){20}', 'ab'.repeat(19) + 'b'.repeat(2000), false],
    ['(.*a){20}', 'ba'.repeat(20), true],
    ['(a|aa)*c', 'a'.repeat(5000), false],
    ['((a*)*)*b', 'a'.repeat(3000) + 'c', false],
    ['(x+x+)+y', 'x'.repeat(4000), false],
    ['(\\w+\\.?)*$x', 'model.layers.0.self_attn.'.repeat(100), false],
    ['(.*){1000}z', `${'y'.repeat(2000)}z`, true],
    ['[^.]*[^.]*[^.]*[^.]*[^.]*[^.]*[^.]*[^.]*\\.', 'a'.repeat(3000), false],
  ];
  it.each(cases)('%s on a name of the right shape', (k, name, want) => {
    expect(compilePatternKey(k).test(name)).toBe(want);
  });
});

describe('rank_pattern keys: what is refused (coded, naming the file and the key)', () => {
  const refused: Array<[string, RegExp]> = [
    ['(a)\\1', /backreference/], ['(?P<n>a)(?P=n)', /named backreference/], ['(?=a)a', /lookahead/], ['(?!a)b', /lookahead/],
    ['(?<=a)b', /lookbehind/], ['(?<!a)b', /lookbehind/], ['(?i)q_proj', /inline flag/], ['(?i:q)', /inline flag/], ['(?>a+)b', /atomic/],
    ['(?#c)a', /comment/], ['(?(1)a|b)', /conditional/], ['a*+', /possessive/], ['a**', /multiple repeat/], ['a{2}{3}', /multiple repeat/],
    ['*a', /nothing to repeat/], ['a|+b', /nothing to repeat/], ['^*', /anchor/], ['\\bq', /escape \\b/], ['\\Aq', /escape \\A/], ['q\\Z', /escape \\Z/],
    ['\\q', /escape \\q/], ['\\0', /octal/], ['[z-a]', /bad character range/], ['[\\d-z]', /bad character range/], ['(a', /missing \)/],
    ['a)', /unbalanced parenthesis/], ['a)|(b', /unbalanced parenthesis/], ['[a', /unterminated character set/], ['a\\', /bad escape/],
    ['a{3,2}', /min repeat greater/], [`a{${PATTERN_LIMITS.repeat + 1}}`, /repetition count/], ['(a{100}){100}', /NFA states/],
    ['a'.repeat(PATTERN_LIMITS.keyLength + 1), /longer than/], ['(?P<1x>a)', /bad group name/], ['\\x4', /incomplete escape/],
  ];
  it.each(refused)('%s', (k, why) => {
    expect(() => compilePatternKey(k)).toThrow(PatternError);
    expect(() => compilePatternKey(k)).toThrow(why);
  });

  it('readPeftAdapter refuses such a config with ERR_BAD_ADAPTER naming the file, the option and the key (also a key after the one that matches, also alpha_pattern)', async () => {
    const root = tmpDir('pattern-refuse');
    const mods = [linearModule(rng(1), 'model.layers.0.self_attn.q_proj', 8, 8, 4)];
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ rank_pattern: { q_proj: 4, '(a)\\1': 4 } }, 'rank_pattern', '(a)\\1'],
      [{ alpha_pattern: { '(?=x)': 2 } }, 'alpha_pattern', '(?=x)'],
      [{ rank_pattern: { q_proj: 'four' } }, 'rank_pattern', 'q_proj'],
      [{ rank_pattern: { q_proj: 2.5 } }, 'rank_pattern', 'q_proj'],
      [{ alpha_pattern: { q_proj: null } }, 'alpha_pattern', 'q_proj'],
    ];
    for (const [i, [cfg, option, key]] of cases.entries()) {
      const dir = path.join(root, `a${i}`);
      await writeAdapter(dir, { r: 4, lora_alpha: 8, ...cfg }, mods);
      let err: { code?: string; message: string; details?: Record<string, unknown> } | undefined;
      try { readPeftAdapter(dir); } catch (e) { err = e as typeof err; }
      expect(err?.code, JSON.stringify(cfg)).toBe('ERR_BAD_ADAPTER');
      expect(err!.message).toContain(path.join(dir, 'adapter_config.json'));
      expect(err!.message).toContain(option);
      expect(err!.details).toMatchObject({ file: path.join(dir, 'adapter_config.json'), key: option, pattern: key });
    }
    for (const p of [[1, 2], 'q_proj']) {
      const dir = path.join(root, `t${String(p)}`);
      await writeAdapter(dir, { r: 4, lora_alpha: 8, rank_pattern: p }, mods);
      expect(() => readPeftAdapter(dir)).toThrow(/ERR_BAD_ADAPTER|expected an object/);
    }
  });

  it('a config whose key would hang a backtracking engine is read in well under a second (the key does not match)', async () => {
    const root = tmpDir('pattern-redos');
    const name = `model.layers.0.${'a'.repeat(60)}`;
    await writeAdapter(root, { r: 4, lora_alpha: 8, rank_pattern: { '(a+)+b': 8, '(.*a){20}x': 8 } }, [linearModule(rng(2), name, 8, 8, 4)]);
    const ad = readPeftAdapter(root);
    expect(ad.modules.get(name)!.r).toBe(4);
  });
});

function findAdapters(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'adapter_config.json' && fs.existsSync(path.join(d, 'adapter_model.safetensors'))) out.push(d);
    }
  };
  walk(root);
  return out;
}
