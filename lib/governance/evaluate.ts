// Automated evaluation: run the user's scorer (any executable; the model directory is its last
// argument) or a score() function, take one JSON object of metrics from its stdout, check gates
// (`name>=x`, `<=`, `>`, `<`, and relative forms such as `locality>=0.98*base` that read the same
// metric of the parent's / base model's evaluation), and append the result to the manifest's
// evaluation log (`evaluations`, a section the manifest id does not cover; each entry names the
// manifest id and links to the previous entry by hash). A scorer that crashes, hangs past the
// timeout, prints no JSON or a non-finite metric, and a gate on a metric it did not print, are
// coded errors: nothing is appended, never a pass.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { GeoEditError } from '../errors';
import {
  MANIFEST_FILE, canonicalJson, loadManifest, loadSealedManifest, sha256Hex, writeManifestAppended,
  type EvaluationSummary, type Manifest, type ParentRef,
} from './lineage';
import { withLock } from './lock';

export type Metrics = Record<string, number>;
export type GateOp = '>=' | '<=' | '>' | '<';

export interface Gate {
  expr: string;
  metric: string;
  op: GateOp;
  /** threshold = factor * base + offset when relative, else `value`. */
  value: number;
  relative: null | { factor: number; offset: number };
}

export interface GateResult {
  expr: string;
  metric: string;
  op: GateOp;
  /** The metric's value. */
  value: number;
  /** The number it was compared with. */
  threshold: number;
  /** Relative gates: the baseline's value of the metric. */
  base: number | null;
  pass: boolean;
}

export interface Baseline {
  /** 'parent': the parent manifest's evaluation by the same scorer; 'scored': the base input, scored now; 'given': passed in. */
  source: 'parent' | 'scored' | 'given';
  id: string | null;
  path: string | null;
  metrics: Metrics;
}

export interface EvaluationEntry {
  seq: number;
  time: string;
  /** The scorer command, or 'function' for a library score() callback (or its label). */
  scorer: string;
  exitCode: number | null;
  durationMs: number;
  metrics: Metrics;
  gates: GateResult[];
  /** Every gate passed (true with no gates). */
  passed: boolean;
  baseline: Baseline | null;
  manifestId: string;
  /** SHA-256 of the canonical JSON of the previous entry (null for the first). */
  prev: string | null;
  /** Free-form context (rollout stage, …). */
  context?: Record<string, unknown>;
}

export interface EvaluateOptions {
  /** A scorer command (run through /bin/sh; the model directory is appended as its last argument). */
  scorer?: string;
  /** Or a function scoring a model directory. */
  score?: (dir: string) => Promise<Metrics> | Metrics;
  /** A name for `score` in the log (default 'function'). */
  scorerName?: string;
  gates?: Array<string | Gate>;
  /** Seconds before the scorer is killed (ERR_SCORER_TIMEOUT). Default 3600; 0: no limit. */
  timeout?: number;
  /** Metrics, a directory to score, or a Baseline found before (rollout), for relative gates instead of the parent / base evaluation. */
  baseline?: Metrics | string | Baseline;
  /** Append the entry to the manifest's evaluation log (default true). */
  record?: boolean;
  context?: Record<string, unknown>;
  /** The scorer's stderr lines, as they come (the CLI shows them). */
  onStderr?: (chunk: string) => void;
}

export interface EvaluationResult extends EvaluationEntry {
  /** The gates that failed. */
  failed: GateResult[];
  /** Whether the entry was appended to the manifest. */
  recorded: boolean;
}

// ---- gates ------------------------------------------------------------------------------------

const NUM = String.raw`[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?`;

/** Parses `metric>=0.95`, `locality>=0.98*base`, `loss<=base*1.05`, `acc>base-0.01`, `acc>=base`. ERR_BAD_GATE when malformed. */
export function parseGate(expr: string): Gate {
  if (typeof expr !== 'string') throw new GeoEditError('ERR_BAD_GATE', `Expected a gate such as 'locality>=0.95' but received ${JSON.stringify(expr)}`);
  const m = /^\s*([A-Za-z_][\w.\-/]*)\s*(>=|<=|>|<)\s*(.+?)\s*$/.exec(expr);
  if (!m) throw new GeoEditError('ERR_BAD_GATE', `'${expr}' is not a gate: write METRIC>=X, <=, > or <, with X a number or a multiple of base (e.g. 'locality>=0.98*base')`, { gate: expr });
  const [, metric, op, rhs] = m as unknown as [string, string, GateOp, string];
  const r = rhs.replace(/\s+/g, '');
  let g: RegExpExecArray | null;
  if (new RegExp(`^${NUM}$`).test(r)) return { expr, metric, op, value: Number(r), relative: null };
  if (r === 'base') return { expr, metric, op, value: NaN, relative: { factor: 1, offset: 0 } };
  if ((g = new RegExp(`^(${NUM})\\*base$`).exec(r)) || (g = new RegExp(`^base\\*(${NUM})$`).exec(r))) return { expr, metric, op, value: NaN, relative: { factor: Number(g[1]), offset: 0 } };
  if ((g = new RegExp(`^base([-+])(${NUM})$`).exec(r))) return { expr, metric, op, value: NaN, relative: { factor: 1, offset: (g[1] === '-' ? -1 : 1) * Number(g[2]) } };
  if ((g = new RegExp(`^(${NUM})\\*base([-+])(${NUM})$`).exec(r))) return { expr, metric, op, value: NaN, relative: { factor: Number(g[1]), offset: (g[2] === '-' ? -1 : 1) * Number(g[3]) } };
  throw new GeoEditError('ERR_BAD_GATE', `'${expr}': the right-hand side '${rhs}' is neither a number nor a form of base (base, 0.98*base, base*1.05, base-0.01)`, { gate: expr });
}

function lookup(metrics: Metrics, name: string): string | null {
  if (Object.prototype.hasOwnProperty.call(metrics, name)) return name;
  const ci = Object.keys(metrics).filter((k) => k.toLowerCase() === name.toLowerCase());
  return ci.length === 1 ? ci[0]! : null;
}

function compare(v: number, op: GateOp, t: number): boolean {
  switch (op) {
    case '>=': return v >= t;
    case '<=': return v <= t;
    case '>': return v > t;
    case '<': return v < t;
  }
}

/** Checks gates against metrics (and the baseline for relative gates). ERR_METRIC_MISSING / ERR_NO_BASELINE. */
export function checkGates(gates: Gate[], metrics: Metrics, baseline: Metrics | null, where = 'the scorer'): GateResult[] {
  return gates.map((g) => {
    const k = lookup(metrics, g.metric);
    if (k === null) {
      throw new GeoEditError('ERR_METRIC_MISSING', `gate '${g.expr}' names metric '${g.metric}', which ${where} did not print (it printed: ${Object.keys(metrics).join(', ') || 'nothing'})`, { gate: g.expr, metric: g.metric });
    }
    let threshold = g.value, base: number | null = null;
    if (g.relative) {
      const bk = baseline ? lookup(baseline, g.metric) : null;
      if (!baseline || bk === null) {
        throw new GeoEditError('ERR_NO_BASELINE', `gate '${g.expr}' is relative to the base, but ${baseline ? `the baseline evaluation has no metric '${g.metric}'` : 'there is no baseline evaluation'}`, { gate: g.expr, metric: g.metric });
      }
      base = baseline[bk]!;
      threshold = g.relative.factor * base + g.relative.offset;
    }
    const value = metrics[k]!;
    return { expr: g.expr, metric: k, op: g.op, value, threshold, base, pass: compare(value, g.op, threshold) };
  });
}

export function describeGate(r: GateResult): string {
  const rel = r.base !== null ? ` (base ${fmt(r.base)})` : '';
  return `gate '${r.expr}' ${r.pass ? 'passed' : 'failed'}: ${r.metric} = ${fmt(r.value)}, needs ${r.op} ${fmt(r.threshold)}${rel}`;
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e6 ? String(Number(x.toPrecision(6))) : x.toExponential(4);
}

// ---- scorer output ---------------------------------------------------------------------------

const NONFINITE = '__geoedit_nonfinite__';

/** Metrics from a scorer's stdout: one JSON object of finite numbers (the whole output, else its last non-empty line). */
export function parseMetrics(stdout: string, who: string): Metrics {
  const text = stdout.trim();
  if (!text) throw new GeoEditError('ERR_SCORER_OUTPUT', `${who} printed nothing on stdout; it must print one JSON object of metrics, e.g. {"locality": 0.97}`);
  const candidates = [text, text.split('\n').map((l) => l.trim()).filter(Boolean).pop()!];
  let obj: unknown = undefined;
  for (const c of candidates) {
    try {
      obj = JSON.parse(c);
      break;
    } catch {
      // NaN / Infinity as Python's json.dumps writes them: name the metric
      const marked = c.replace(/(?<![\w".])(-?Infinity|NaN)(?![\w"])/g, `"${NONFINITE}$1"`);
      if (marked !== c) {
        try {
          const o = JSON.parse(marked) as Record<string, unknown>;
          if (o && typeof o === 'object' && !Array.isArray(o)) {
            const bad = Object.entries(o).filter(([, v]) => typeof v === 'string' && v.startsWith(NONFINITE));
            if (bad.length) throw new GeoEditError('ERR_SCORER_OUTPUT', `${who} printed a non-finite metric: ${bad.map(([k, v]) => `${k} = ${(v as string).slice(NONFINITE.length)}`).join(', ')}`, { metrics: bad.map(([k]) => k) });
          }
        } catch (e) {
          if (e instanceof GeoEditError) throw e;
        }
      }
    }
  }
  if (obj === undefined) {
    const tail = text.length > 200 ? '…' + text.slice(-200) : text;
    throw new GeoEditError('ERR_SCORER_OUTPUT', `${who} printed no JSON object of metrics on stdout (it printed: ${JSON.stringify(tail)})`);
  }
  return checkMetrics(obj, who);
}

/** A metrics object: non-empty, every value a finite number. ERR_SCORER_OUTPUT naming the metric otherwise. */
export function checkMetrics(obj: unknown, who: string): Metrics {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new GeoEditError('ERR_SCORER_OUTPUT', `${who} printed ${Array.isArray(obj) ? 'an array' : JSON.stringify(obj)}, not a JSON object of metrics`);
  const out: Metrics = {};
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new GeoEditError('ERR_SCORER_OUTPUT', `${who} gave metric '${k}' = ${typeof v === 'number' ? String(v) : JSON.stringify(v)}${v === null ? ' (NaN or Infinity written by JSON.stringify?)' : ''}: every metric must be a finite number`, { metric: k });
    }
    out[k] = v;
  }
  if (!Object.keys(out).length) throw new GeoEditError('ERR_SCORER_OUTPUT', `${who} printed an empty object: no metrics`);
  return out;
}

// ---- running a scorer ----------------------------------------------------------------------------

const MAX_STDOUT = 16 << 20;

/** Runs `cmd DIR` through /bin/sh; resolves to metrics, exit code and duration. */
export function runScorer(cmd: string, dir: string, opts: { timeout?: number; onStderr?: (s: string) => void } = {}): Promise<{ metrics: Metrics; exitCode: number; durationMs: number }> {
  if (typeof cmd !== 'string' || !cmd.trim()) throw new GeoEditError('ERR_INVALID_OPTION', `Expected a scorer command but received ${JSON.stringify(cmd)}`, { option: 'scorer' });
  const timeout = opts.timeout ?? 3600;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) throw new GeoEditError('ERR_INVALID_OPTION', `Expected a number of seconds >= 0 for option 'timeout' but received ${JSON.stringify(timeout)}`, { option: 'timeout' });
  const who = `the scorer '${cmd}'`;
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', `${cmd} "$@"`, 'geoedit-scorer', dir], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '', errTail = '', tooBig = false, timedOut = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      if (out.length + s.length > MAX_STDOUT) { tooBig = true; return; }
      out += s;
    });
    child.stderr.on('data', (s: string) => {
      errTail = (errTail + s).slice(-2000);
      opts.onStderr?.(s);
    });
    const killGroup = () => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { try { child.kill('SIGKILL'); } catch { /* gone */ } } };
    const timer = timeout > 0 ? setTimeout(() => { timedOut = true; killGroup(); }, timeout * 1000) : null;
    const onSig = () => killGroup();
    process.once('exit', onSig);
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      process.removeListener('exit', onSig);
      reject(new GeoEditError('ERR_SCORER_FAILED', `${who} could not be started: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      process.removeListener('exit', onSig);
      const durationMs = Date.now() - t0;
      const stderrNote = errTail.trim() ? `; its stderr ended with: ${errTail.trim().split('\n').slice(-5).join(' | ')}` : '';
      if (timedOut) return reject(new GeoEditError('ERR_SCORER_TIMEOUT', `${who} ran past the timeout of ${timeout} s and was killed${stderrNote}`, { timeout }));
      if (signal) return reject(new GeoEditError('ERR_SCORER_FAILED', `${who} was killed by ${signal} after ${(durationMs / 1000).toFixed(1)} s${stderrNote}`, { signal }));
      if (code !== 0) return reject(new GeoEditError('ERR_SCORER_FAILED', `${who} exited with status ${code}${code === 127 ? ' (command not found?)' : ''}${stderrNote}`, { exitCode: code }));
      if (tooBig) return reject(new GeoEditError('ERR_SCORER_OUTPUT', `${who} printed over ${MAX_STDOUT >> 20} MiB on stdout; it must print one JSON object of metrics`));
      try {
        resolve({ metrics: parseMetrics(out, who), exitCode: 0, durationMs });
      } catch (e) {
        reject(e);
      }
    });
  });
}

async function scoreWith(o: EvaluateOptions, dir: string): Promise<{ metrics: Metrics; exitCode: number | null; durationMs: number }> {
  if (o.scorer !== undefined) return runScorer(o.scorer, dir, { timeout: o.timeout, onStderr: o.onStderr });
  const t0 = Date.now();
  const who = `the score function${o.scorerName ? ` '${o.scorerName}'` : ''}`;
  let raw: unknown;
  try {
    raw = await o.score!(dir);
  } catch (e) {
    throw new GeoEditError('ERR_SCORER_FAILED', `${who} threw: ${(e as Error)?.message ?? String(e)}`);
  }
  return { metrics: checkMetrics(raw, who), exitCode: null, durationMs: Date.now() - t0 };
}

// ---- the log --------------------------------------------------------------------------------------

/** Checks the evaluation log of a manifest: order, hash links, manifest id. */
export function checkEvaluationLog(m: Manifest, id: string): { entries: number; problems: string[] } {
  if (m.evaluations === undefined) return { entries: 0, problems: [] };
  if (!Array.isArray(m.evaluations)) return { entries: 0, problems: ['"evaluations" is not an array'] };
  const ev = m.evaluations as Array<Partial<EvaluationEntry>>;
  const problems: string[] = [];
  ev.forEach((e, i) => {
    const n = i + 1;
    if (!e || typeof e !== 'object') { problems.push(`evaluation ${n} is not an object`); return; }
    if (e.seq !== n) problems.push(`evaluation ${n} has sequence number ${JSON.stringify(e.seq)}: entries were re-ordered, removed or inserted`);
    const want = i === 0 ? null : sha256Hex(canonicalJson(ev[i - 1]));
    if ((e.prev ?? null) !== want) problems.push(`evaluation ${n} does not link to evaluation ${n - 1} (hash chain broken): an entry was edited, re-ordered or removed`);
    if (e.manifestId !== id) problems.push(`evaluation ${n} is for manifest ${e.manifestId}, not ${id}`);
  });
  return { entries: ev.length, problems };
}

/** The next entry's seq and prev for a log. */
export function chainNext(m: Manifest): { seq: number; prev: string | null } {
  const ev = Array.isArray(m.evaluations) ? (m.evaluations as unknown[]) : [];
  return { seq: ev.length + 1, prev: ev.length ? sha256Hex(canonicalJson(ev[ev.length - 1])) : null };
}

/** Rewrites a log's ids and links for a new manifest id (the rollout's output: same files, one more section). */
export function rebindEvaluations(entries: EvaluationEntry[], id: string): EvaluationEntry[] {
  const out: EvaluationEntry[] = [];
  for (const e of entries) {
    const prev = out.length ? sha256Hex(canonicalJson(out[out.length - 1])) : null;
    out.push({ ...e, seq: out.length + 1, manifestId: id, prev });
  }
  return out;
}

// ---- baseline -----------------------------------------------------------------------------------

function parentEvaluation(m: Manifest, scorer: string): Baseline | null {
  const ref = (m.parent as ParentRef | null | undefined) ?? null;
  if (!ref) return null;
  let evs: EvaluationSummary[] = ref.evaluations ?? [];
  try {
    const live = loadManifest(path.join(ref.path, MANIFEST_FILE));
    if ((live.storedId ?? live.computedId) === ref.id && Array.isArray(live.manifest.evaluations)) {
      evs = (live.manifest.evaluations as EvaluationEntry[]).map((e) => ({ seq: e.seq, time: e.time, scorer: e.scorer, metrics: e.metrics, passed: e.passed }));
    }
  } catch { /* the parent directory is gone: its recorded evaluations */ }
  const mine = evs.filter((e) => e.scorer === scorer);
  const last = mine[mine.length - 1];
  return last ? { source: 'parent', id: ref.id, path: ref.path, metrics: last.metrics } : null;
}

function basePath(m: Manifest): string | null {
  const inp = m.inputs as unknown;
  if (Array.isArray(inp)) {
    const b = (inp as Array<{ role: string; path: string }>).find((i) => i.role === 'base');
    return b ? b.path : null;
  }
  const b = (inp as Record<string, { path?: string }> | undefined)?.base;
  return b && typeof b.path === 'string' ? b.path : null;
}

function isBaseline(b: unknown): b is Baseline {
  return !!b && typeof b === 'object' && typeof (b as Baseline).source === 'string' && !!(b as Baseline).metrics && typeof (b as Baseline).metrics === 'object';
}

/** The baseline of relative gates: given, else the parent's evaluation by the same scorer, else the base input scored now. */
export async function findBaseline(o: EvaluateOptions, m: Manifest, scorerLabel: string): Promise<Baseline> {
  if (o.baseline !== undefined) {
    if (isBaseline(o.baseline)) return o.baseline;
    if (typeof o.baseline === 'string') {
      const r = await scoreWith(o, path.resolve(o.baseline));
      return { source: 'scored', id: null, path: path.resolve(o.baseline), metrics: r.metrics };
    }
    return { source: 'given', id: null, path: null, metrics: checkMetrics(o.baseline as Metrics, 'the baseline') };
  }
  const p = parentEvaluation(m, scorerLabel);
  if (p) return p;
  const b = basePath(m);
  if (b && fs.existsSync(b)) {
    const r = await scoreWith(o, b);
    return { source: 'scored', id: null, path: b, metrics: r.metrics };
  }
  throw new GeoEditError('ERR_NO_BASELINE', `relative gates need a baseline: the parent has no evaluation by '${scorerLabel}' and the base input ${b ? `${b} no longer exists` : 'is not recorded'} (pass a baseline)`);
}

// ---- evaluate -------------------------------------------------------------------------------------

/**
 * Scores the model in `dir`, checks the gates and appends the result to the manifest's evaluation
 * log. Resolves to the entry with `passed` and `failed` (a failed gate is a result, not an
 * error: the CLI exits 4). Scorer failures and gates on missing metrics reject with coded errors
 * and append nothing.
 */
export async function evaluate(dir: string, options: EvaluateOptions): Promise<EvaluationResult> {
  const o = options ?? ({} as EvaluateOptions);
  if ((o.scorer === undefined) === (o.score === undefined)) throw new GeoEditError('ERR_INVALID_OPTION', `evaluate needs exactly one of 'scorer' (a command) and 'score' (a function)`, { option: 'scorer' });
  if (o.score !== undefined && typeof o.score !== 'function') throw new GeoEditError('ERR_INVALID_OPTION', `Expected a function for option 'score'`, { option: 'score' });
  const gates = (o.gates ?? []).map((g) => (typeof g === 'string' ? parseGate(g) : g));
  const lm = loadSealedManifest(dir);
  const label = o.scorer ?? o.scorerName ?? 'function';
  const r = await scoreWith(o, lm.dir);
  const baseline = gates.some((g) => g.relative) ? await findBaseline(o, lm.manifest, label) : null;
  const results = checkGates(gates, r.metrics, baseline?.metrics ?? null, o.scorer ? `the scorer '${o.scorer}'` : 'the score function');
  const base = {
    time: new Date().toISOString(), scorer: label, exitCode: r.exitCode, durationMs: r.durationMs, metrics: r.metrics,
    gates: results, passed: results.every((g) => g.pass), baseline, ...(o.context ? { context: o.context } : {}),
  };
  const failed = results.filter((g) => !g.pass);
  if (o.record === false) return { ...base, seq: 0, manifestId: lm.storedId, prev: null, failed, recorded: false };
  const entry = await withLock(lm.file, () => {
    const now = loadSealedManifest(lm.dir); // again, under the lock: another evaluate may have appended
    if (now.storedId !== lm.storedId) throw new GeoEditError('ERR_MANIFEST_TAMPERED', `${lm.file} changed while the scorer ran (id ${lm.storedId} → ${now.storedId}); nothing was appended`, { file: lm.file });
    const chk = checkEvaluationLog(now.manifest, now.storedId);
    if (chk.problems.length) throw new GeoEditError('ERR_EVALUATION_INVALID', `${lm.file}: the evaluation log does not check out, so nothing was appended: ${chk.problems.join('; ')}`, { file: lm.file });
    const { seq, prev } = chainNext(now.manifest);
    const e: EvaluationEntry = { seq, ...base, manifestId: now.storedId, prev };
    const m = now.manifest;
    m.evaluations = [...((m.evaluations as EvaluationEntry[] | undefined) ?? []), e];
    writeManifestAppended(now.file, m);
    return e;
  });
  return { ...entry, failed, recorded: true };
}
