// `geoedit demo`: build (or reuse) the fact-memory demo models, run the strategies and the two
// controls through the package's edit path, print the Reliability / Generality / Locality table
// and say where the edited checkpoint, manifest and report are. No network, no arguments needed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULTS } from '../options';
import { EXIT, reportError } from './common';
import { GeoEditError } from '../errors';
import {
  DEMO_CONFIG, FAST_CONFIG, buildSeed, configHash, defaultCacheRoot, makeSeedScorer, preservationStatistics, type SuiteConfig,
} from '../quality/suite';
import { quickPreserveGrids } from '../quality/preserve';
import { PRESERVE_DEFAULTS } from '../preserve/option';
import { REGIMES } from '../quality/train';
import {
  DEFAULT_GRIDS, FAMILIES, summarizeSweeps, sweepFrontier, type Family, type FrontierSummary, type QualityScores, type SweepGrids, type SweepResult,
} from '../quality/frontier';
import { editCheckpoint } from '../checkpoint';
import { editAdapters } from '../lora';

export const DEMO_HELP = `geoedit demo [options]

Builds a small fact-memory model (cached after the first run), fine-tunes it on the old and the
new facts in several regimes, edits it with every strategy and two controls through the package's
own edit path, and prints Reliability / Generality / Locality (QUALITY.md).

Options:
  --seeds N          seeds (models) per regime (default 1; the calibration used 3)
  --regime A,B       regimes to run (default all: ${REGIMES.map((r) => r.name).join(', ')})
  --full             sweep every knob (frontiers at Reliability >= 0.99x / 0.95x of plain fine-tuning)
  --fast             the small model the test suite uses
  --json             print { strategy: { reliability, generality, locality } } (mean over regimes and seeds;
                     with --full: each method's best Locality at Reliability >= 0.95x)
  --cache-dir DIR    where models are cached (default $GEOEDIT_CACHE_DIR, else $XDG_CACHE_HOME/geoedit, else ~/.cache/geoedit)
  --out DIR          where the edited checkpoint, manifest and report go (default <cache>/demo-<hash>/last-run);
                     a new or empty directory, or a previous demo output (anything else: ERR_OUTPUT_EXISTS)
  --report-json FILE also write the full report (every point, frontiers, mean ± sd) as JSON here
  --export DIR       only write the demo models as model directories: DIR/base, DIR/old, DIR/new (checkpoints)
                     and DIR/old-adapter, DIR/new-adapter (PEFT LoRA), to edit, evaluate (geoedit demo-score),
                     review and roll out (docs/governance.md); with --fast the small model
  --quiet            no progress lines on stderr
  -h, --help         this text
`;

interface DemoArgs {
  seeds: number;
  regimes: string[];
  full: boolean;
  fast: boolean;
  json: boolean;
  cacheDir: string;
  out?: string;
  reportJson?: string;
  export?: string;
  quiet: boolean;
  help: boolean;
}

function parseArgs(argv: string[]): DemoArgs {
  const a: DemoArgs = { seeds: 1, regimes: REGIMES.map((r) => r.name), full: false, fast: false, json: false, cacheDir: defaultCacheRoot(), quiet: false, help: false };
  const need = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new GeoEditError('ERR_INVALID_OPTION', `Expected a value after ${flag}`, { option: flag });
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    switch (f) {
      case '--seeds': {
        const v = need(i++, f);
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 20) throw new GeoEditError('ERR_INVALID_OPTION', `Expected an integer in [1, 20] for --seeds but received '${v}'`, { option: '--seeds' });
        a.seeds = n;
        break;
      }
      case '--regime': case '--regimes': {
        const v = need(i++, f);
        const names = v.split(',').map((s) => s.trim()).filter(Boolean);
        for (const n of names) {
          if (!REGIMES.some((r) => r.name === n)) throw new GeoEditError('ERR_INVALID_OPTION', `Unknown regime '${n}' for ${f}; known: ${REGIMES.map((r) => r.name).join(', ')}`, { option: f });
        }
        a.regimes = names;
        break;
      }
      case '--full': a.full = true; break;
      case '--fast': a.fast = true; break;
      case '--json': a.json = true; break;
      case '--quiet': a.quiet = true; break;
      case '--cache-dir': a.cacheDir = need(i++, f); break;
      case '--out': a.out = need(i++, f); break;
      case '--report-json': a.reportJson = need(i++, f); break;
      case '--export': a.export = need(i++, f); break;
      case '-h': case '--help': a.help = true; break;
      default:
        throw new GeoEditError('ERR_UNKNOWN_OPTION', `Unknown option '${f}' for geoedit demo (see geoedit demo --help)`, { option: f });
    }
  }
  return a;
}

/** Writes a file whole or not at all (temp file beside it, then rename). */
function writeWhole(file: string, text: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

const LABEL: Record<Family, string> = {
  'task-arithmetic': 'task-arithmetic (plain fine-tuning)',
  'forget-then-learn': 'forget-then-learn (F-Learning)',
  geoedit: 'geoedit (defaults)',
  'geoedit-paper': "geoedit preset 'paper'",
  'random-mask': 'control: random row mask',
  shrinkage: 'control: uniform shrinkage',
  preserve: 'preserve (C0 + C1, task arithmetic)',
  'preserve-no-c1': 'preserve without C1 (plain ridge)',
  'preserve+geoedit': 'preserve + geoedit (defaults)',
  'random-subspace': 'control: random subspace (basis form)',
};

function f3(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3) : '  —  ';
}

function pm(m: number, sd: number, n: number): string {
  if (!n) return 'not reached';
  return n > 1 ? `${f3(m)} ± ${f3(sd)}` : f3(m);
}

/** The grids of the quick (default) run: one point per method, at the package's defaults. */
function quickGrids(): Partial<SweepGrids> {
  return { scale: [], lambda: [DEFAULTS.lambda], kappa: [DEFAULTS.kappa], keepOrthogonal: [DEFAULTS.keepOrthogonal], paperKappa: [1], maskDraws: 1, preserve: quickPreserveGrids() };
}

export interface DemoReport {
  date: string;
  machine: { cpus: number; platform: string; node: string };
  config: SuiteConfig;
  cacheDir: string;
  mode: 'quick' | 'full';
  defaults: typeof DEFAULTS;
  /** regime → seed results */
  sweeps: Record<string, SweepResult[]>;
  summary: Record<string, FrontierSummary>;
  /** Quick mode: per strategy, mean R/G/L over regimes and seeds. */
  table: Record<string, QualityScores>;
  seconds: { build: number; edits: number; total: number };
  /** Per seed: the preserved sample (C0) and the edit prompts (C1). */
  preservedSample: PreservedSampleInfo[];
  buildCached: boolean;
  outputs: { checkpoint: string; manifest: string; report: string };
}

export async function runDemo(argv: string[]): Promise<number> {
  let a: DemoArgs;
  try {
    a = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`geoedit demo: ${(e as Error).message}\n`);
    return EXIT.USAGE;
  }
  if (a.help) {
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  try {
    if (a.export !== undefined) return await (await import('./demo-score')).runDemoExport(a.export, a.fast, a.cacheDir, a.quiet);
    return await demo(a);
  } catch (e) {
    return reportError(e, 'demo');
  }
}

type SeedModels = Awaited<ReturnType<typeof buildSeed>>['models'];
type Log = (s: string) => void;

/** The demo models of every seed (built, or reused from the cache). */
async function buildModels(buildCfg: SuiteConfig, cfg: SuiteConfig, root: string, log: Log): Promise<{ seedModels: SeedModels[]; buildCached: boolean }> {
  let buildCached = true;
  const seedModels: SeedModels[] = [];
  for (const s of cfg.seeds) {
    const r = await buildSeed(buildCfg, root, s, log);
    if (!r.cached) buildCached = false;
    else log(`seed ${s}: models reused from the cache`);
    seedModels.push(r.models);
  }
  return { seedModels, buildCached };
}

/** Every regime of every seed edited (and scored) through sweepFrontier. */
/** The preserved sample behind each seed's C0 (facts disjoint from the Locality prompts' facts). */
export interface PreservedSampleInfo { seed: number; facts: number; prompts: number; editPrompts: number }

async function runSweeps(a: DemoArgs, buildCfg: SuiteConfig, cfg: SuiteConfig, seedModels: SeedModels[], log: Log, samples: PreservedSampleInfo[]): Promise<Record<string, SweepResult[]>> {
  const sweeps: Record<string, SweepResult[]> = {};
  for (const rn of cfg.regimes) sweeps[rn] = [];
  for (const m of seedModels) {
    const { score, scorer } = await makeSeedScorer(buildCfg, m);
    if (scorer.baseAccuracy.train < 0.95) log(`warning: seed ${m.seed} base model knows only ${(scorer.baseAccuracy.train * 100).toFixed(1)}% of the facts`);
    const preserve = await preservationStatistics(buildCfg, m);
    log(`seed ${m.seed}: preservation statistics C0 from ${preserve.facts} unrelated facts (${preserve.prompts} prompts, disjoint from the Locality prompts), C1 from ${preserve.editPrompts} edit prompts`);
    samples.push({ seed: m.seed, facts: preserve.facts, prompts: preserve.prompts, editPrompts: preserve.editPrompts });
    for (const rn of cfg.regimes) {
      const reg = m.regimes[rn]!;
      log(`seed ${m.seed}, ${rn}: ${a.full ? 'sweeping the knobs' : 'editing'}…`);
      sweeps[rn]!.push(await sweepFrontier({ source: reg.source, score: async (w) => score(w), grids: a.full ? DEFAULT_GRIDS : quickGrids(), seed: m.seed * 1000 + 7, preserve }));
    }
  }
  return sweeps;
}

/** The edited checkpoint a user would ship: geoedit defaults, first regime, first seed. Returns its HTML report path, if any. */
async function editShippable(src: SeedModels['regimes'][string]['source'], editedDir: string, outDir: string): Promise<string | null> {
  if (src.kind === 'checkpoints') {
    const htmlReport = path.join(outDir, 'edit-report.html');
    await editCheckpoint({ base: src.base, old: src.old, new: src.new, out: editedDir }, { strategy: 'geoedit', force: true, report: htmlReport });
    return htmlReport;
  }
  await editAdapters({ old: src.old, new: src.new, base: src.base, out: editedDir }, { strategy: 'geoedit', outFormat: 'full', force: true });
  return null;
}

function meanScores(pts: QualityScores[]): QualityScores {
  const mean = (k: keyof QualityScores): number => pts.reduce((s, p) => s + p[k], 0) / pts.length;
  return { reliability: mean('reliability'), generality: mean('generality'), locality: mean('locality') };
}

/** Per regime and family: quick mode, the one point of each family (the defaults); --full, the family's best Locality at R >= 0.95x; and their mean over regimes. */
function tablesOf(a: DemoArgs, regimes: string[], sweeps: Record<string, SweepResult[]>): { table: Record<string, QualityScores>; perRegime: Record<string, Record<string, QualityScores>> } {
  const table: Record<string, QualityScores> = {};
  const perRegime: Record<string, Record<string, QualityScores>> = {};
  for (const rn of regimes) {
    perRegime[rn] = {};
    for (const fam of FAMILIES) {
      const pts: QualityScores[] = a.full
        ? sweeps[rn]!.map((r) => r.frontiers[fam].at095).filter((e): e is NonNullable<typeof e> => e !== null)
        : sweeps[rn]!.map((r) => r.points.find((p) => p.family === fam)?.scores).filter((p): p is QualityScores => p !== undefined);
      if (pts.length) perRegime[rn]![fam] = meanScores(pts);
    }
  }
  for (const fam of FAMILIES) {
    const rows = regimes.map((rn) => perRegime[rn]![fam]).filter((x): x is QualityScores => x !== undefined);
    if (rows.length) table[fam] = meanScores(rows);
  }
  return { table, perRegime };
}

function quickLines(cfg: SuiteConfig, seedsNote: string, sweeps: Record<string, SweepResult[]>, summary: Record<string, FrontierSummary>, perRegime: Record<string, Record<string, QualityScores>>, table: Record<string, QualityScores>): string[] {
  const lines: string[] = [`# geoedit demo: Reliability / Generality / Locality (${seedsNote}; defaults: kappa ${DEFAULTS.kappa}, keepOrthogonal ${DEFAULTS.keepOrthogonal}, lambda ${DEFAULTS.lambda})`, ''];
  for (const rn of cfg.regimes) {
    const reg = REGIMES.find((r) => r.name === rn)!;
    const g = summary[rn]!.geometry;
    lines.push(`## ${rn}: ${reg.description}`, '');
    lines.push(`rows: ${(g.orthogonal.mean * 100).toFixed(0)}% orthogonal, ${(g.synergy.mean * 100).toFixed(0)}% synergy, ${(g.conflict.mean * 100).toFixed(0)}% conflict at kappa ${DEFAULTS.kappa} (holding ${(g.orthogonalEnergy.mean * 100).toFixed(0)}% of the update energy on the orthogonal rows); median |cos|·√n ${g.medianScaledAbsCos.mean.toFixed(2)}`, '');
    lines.push('| strategy | setting | Reliability | Generality | Locality |', '|---|---|---|---|---|');
    for (const fam of FAMILIES) {
      const pt = sweeps[rn]![0]!.points.find((p) => p.family === fam);
      const s = perRegime[rn]![fam];
      if (!pt || !s) continue;
      lines.push(`| ${LABEL[fam]} | ${pt.label} | ${f3(s.reliability)} | ${f3(s.generality)} | ${f3(s.locality)} |`);
    }
    lines.push('');
  }
  lines.push(`## mean over ${cfg.regimes.length} regime(s)`, '', '| strategy | Reliability | Generality | Locality |', '|---|---|---|---|');
  for (const [fam, s] of Object.entries(table)) lines.push(`| ${LABEL[fam as Family]} | ${f3(s.reliability)} | ${f3(s.generality)} | ${f3(s.locality)} |`);
  lines.push('');
  return lines;
}

function sampleLine(samples: PreservedSampleInfo[]): string {
  const r = (k: 'facts' | 'prompts' | 'editPrompts'): string => { const v = samples.map((x) => x[k]); const lo = Math.min(...v), hi = Math.max(...v); return lo === hi ? `${lo}` : `${lo}–${hi}`; };
  return `Preservation: C0 from ${r('facts')} unrelated facts × the training templates (${r('prompts')} prompts; disjoint from the Locality prompts' facts), C1 from ${r('editPrompts')} edit prompts; defaults rho ${PRESERVE_DEFAULTS.rho}, mu ${PRESERVE_DEFAULTS.mu}.`;
}

function fullLines(cfg: SuiteConfig, seedsNote: string, summary: Record<string, FrontierSummary>, sweeps: Record<string, SweepResult[]>): string[] {
  const lines: string[] = [`# geoedit demo --full: best Locality at matched Reliability (${seedsNote}, mean ± sd)`, ''];
  for (const rn of cfg.regimes) {
    const reg = REGIMES.find((r) => r.name === rn)!;
    const su = summary[rn]!;
    lines.push(`## ${rn}: ${reg.description}`, '');
    lines.push(`plain fine-tuning: R ${pm(su.reference.reliability.mean, su.reference.reliability.sd, su.runs)}, G ${pm(su.reference.generality.mean, su.reference.generality.sd, su.runs)}, L ${pm(su.reference.locality.mean, su.reference.locality.sd, su.runs)}; rows at kappa ${DEFAULTS.kappa}: ${(su.geometry.orthogonal.mean * 100).toFixed(0)}% orthogonal / ${(su.geometry.synergy.mean * 100).toFixed(0)}% synergy / ${(su.geometry.conflict.mean * 100).toFixed(0)}% conflict (orthogonal rows hold ${(su.geometry.orthogonalEnergy.mean * 100).toFixed(0)}% of the update energy)`, '');
    lines.push('| method | Locality at R ≥ 0.99× | Locality at R ≥ 0.95× |', '|---|---|---|');
    for (const fam of FAMILIES) {
      const f = su.families[fam];
      if (!sweeps[rn]!.some((r) => r.points.some((p) => p.family === fam))) continue;
      lines.push(`| ${LABEL[fam].replace(' (defaults)', '')} | ${pm(f.at099.mean, f.at099.sd, f.at099.n)}${f.at099.n && f.at099.n < su.runs ? ` (${f.at099.n}/${su.runs} runs)` : ''} | ${pm(f.at095.mean, f.at095.sd, f.at095.n)}${f.at095.n && f.at095.n < su.runs ? ` (${f.at095.n}/${su.runs} runs)` : ''} |`);
    }
    lines.push('');
  }
  return lines;
}

/** The files a demo run writes into its --out directory; anything else there is the user's. */
const DEMO_OUT_ENTRIES = new Set(['report.md', 'report.json', 'edit-report.html', 'edited']);

/**
 * Refuses, before any work, an --out directory the demo would overwrite without consent: it must be
 * missing, empty, or a previous demo run's output (its report.json is a demo report and nothing but the
 * demo's own files is in it). A file or symlink at the path is refused too.
 */
export function checkDemoOut(dir: string): void {
  const abs = path.resolve(dir);
  let st: fs.Stats;
  try { st = fs.lstatSync(abs); } catch { return; }
  const refuse = (why: string): never => {
    throw new GeoEditError('ERR_OUTPUT_EXISTS', `demo --out ${abs} ${why}; it is left as it is: choose a new or empty directory, or a previous demo output`, { file: abs });
  };
  if (!st.isDirectory()) refuse(st.isSymbolicLink() ? 'is a symbolic link' : 'exists and is not a directory');
  const entries = fs.readdirSync(abs);
  if (entries.length === 0) return;
  const foreign = entries.filter((e) => !DEMO_OUT_ENTRIES.has(e) && !e.startsWith('.edited.geoedit-') && !e.startsWith('.edit-report.html.geoedit-') && !/^(report\.(md|json))\.tmp-\d+$/.test(e));
  if (foreign.length) refuse(`holds files the demo did not write (${foreign.slice(0, 3).map((e) => JSON.stringify(e)).join(', ')}${foreign.length > 3 ? ', …' : ''})`);
  let prev: unknown;
  try { prev = JSON.parse(fs.readFileSync(path.join(abs, 'report.json'), 'utf8')); } catch { prev = null; }
  const isDemo = !!prev && typeof prev === 'object' && 'outputs' in prev && 'sweeps' in prev && 'mode' in prev;
  if (!isDemo) refuse('is not empty and holds no previous demo report (report.json)');
}

async function demo(a: DemoArgs): Promise<number> {
  if (a.out !== undefined) checkDemoOut(a.out);
  const t0 = Date.now();
  const log = (s: string): void => { if (!a.quiet) process.stderr.write(`[geoedit demo ${((Date.now() - t0) / 1000).toFixed(0)}s] ${s}\n`); };
  const cfg: SuiteConfig = { ...(a.fast ? FAST_CONFIG : DEMO_CONFIG), regimes: a.regimes, seeds: Array.from({ length: a.seeds }, (_, i) => i + 1) };
  // the models of every regime are built together, so the cache key covers all regimes
  const buildCfg: SuiteConfig = { ...cfg, regimes: REGIMES.map((r) => r.name) };
  const root = path.join(a.cacheDir, `demo-${configHash(buildCfg)}`);
  fs.mkdirSync(root, { recursive: true });
  log(`cache: ${root}`);
  const { seedModels, buildCached } = await buildModels(buildCfg, cfg, root, log);
  const tBuild = (Date.now() - t0) / 1000;
  const samples: PreservedSampleInfo[] = [];
  const sweeps = await runSweeps(a, buildCfg, cfg, seedModels, log, samples);
  const tEdits = (Date.now() - t0) / 1000 - tBuild;

  const outDir = a.out ?? path.join(root, 'last-run');
  fs.mkdirSync(outDir, { recursive: true });
  const m0 = seedModels[0]!;
  const firstRegime = cfg.regimes[0]!;
  const reportPath = path.join(outDir, 'report.md');
  const editedDir = path.join(outDir, 'edited');
  const ckptPath = path.join(editedDir, 'model.safetensors');
  const manifestPath = path.join(editedDir, 'geoedit-manifest.json');
  const htmlReport = await editShippable(m0.regimes[firstRegime]!.source, editedDir, outDir);

  const summary: Record<string, FrontierSummary> = {};
  for (const rn of cfg.regimes) summary[rn] = summarizeSweeps(sweeps[rn]!);
  const { table, perRegime } = tablesOf(a, cfg.regimes, sweeps);
  const seedsNote = `${cfg.seeds.length} seed${cfg.seeds.length > 1 ? 's' : ''}`;
  const lines = a.full ? fullLines(cfg, seedsNote, summary, sweeps) : quickLines(cfg, seedsNote, sweeps, summary, perRegime, table);
  lines.push(sampleLine(samples), '');
  const total = (Date.now() - t0) / 1000;
  lines.push(`Models: ${root} (${buildCached ? 'reused from the cache' : `built in ${tBuild.toFixed(0)} s`}); edits and scoring ${tEdits.toFixed(0)} s; total ${total.toFixed(0)} s.`);
  lines.push(`Edited checkpoint (geoedit defaults, ${firstRegime}, seed ${m0.seed}): ${ckptPath}`);
  lines.push(`Manifest: ${manifestPath}`);
  lines.push(`Report: ${reportPath} (and report.json${htmlReport ? `; the edit's HTML report: ${htmlReport}` : ''})`);
  const text = lines.join('\n') + '\n';
  writeWhole(reportPath, text);
  const report: DemoReport = {
    date: new Date().toISOString(),
    machine: { cpus: (await import('node:os')).cpus().length, platform: `${process.platform}-${process.arch}`, node: process.version },
    config: cfg, cacheDir: root, mode: a.full ? 'full' : 'quick', defaults: { ...DEFAULTS }, sweeps, summary, table,
    seconds: { build: tBuild, edits: tEdits, total }, preservedSample: samples, buildCached,
    outputs: { checkpoint: ckptPath, manifest: manifestPath, report: reportPath },
  };
  writeWhole(path.join(outDir, 'report.json'), JSON.stringify(report, null, 1) + '\n');
  if (a.reportJson) writeWhole(a.reportJson, JSON.stringify(report, null, 1) + '\n');
  if (a.json) process.stdout.write(JSON.stringify(table, null, 2) + '\n');
  else process.stdout.write(text);
  return 0;
}
