// The quality protocol (QUALITY.md) as a library function: sweep every method's knob, score
// each edited model with the caller's callback, and report the best Locality reached at matched
// Reliability (≥ 0.99× and ≥ 0.95× that of plain fine-tuning), with the two controls.
import { analyzeTensor } from '../edit';
import { DEFAULTS } from '../options';
import { GeoEditError, typeError, describe } from '../errors';
import type { EditOptions, Tensor } from '../types';
import { Rng } from './prng';
import { loadSource, neuronView, runEdit, sourceLayouts, type EditSource, type Weights } from './edit-path';
import { DEFAULT_PRESERVE_GRIDS, PRESERVE_FAMILIES, sweepPreservation, type PreserveFamily, type PreserveGrids, type SweepPreservation } from './preserve';
import type { PreserveTensorOption } from '../types';
import { statisticNames } from '../preserve/file';

export interface QualityScores {
  reliability: number;
  generality: number;
  locality: number;
}

/** The method families a sweep reports: random-mask, shrinkage and random-subspace are controls; the preservation families run when the sweep has statistics. */
export type Family = 'task-arithmetic' | 'forget-then-learn' | 'geoedit' | 'geoedit-paper' | 'random-mask' | 'shrinkage' | PreserveFamily;
export const FAMILIES: readonly Family[] = ['task-arithmetic', 'forget-then-learn', 'geoedit', 'geoedit-paper', 'random-mask', 'shrinkage', ...PRESERVE_FAMILIES];

export interface SweepGrids {
  /** `task-arithmetic` scale < 1: the uniform-shrinkage control. */
  scale: number[];
  /** `forget-then-learn` λ. */
  lambda: number[];
  /** `geoedit` κ × keepOrthogonal (γ); the random-mask control is matched to each point. */
  kappa: number[];
  keepOrthogonal: number[];
  /** κ values for the `paper` preset. */
  paperKappa: number[];
  /** Random masks per geoedit point (different row draws). */
  maskDraws: number;
  /** The preservation families' knobs (with `preserve` statistics). */
  preserve: PreserveGrids;
}

export const DEFAULT_GRIDS: Readonly<SweepGrids> = Object.freeze({
  scale: [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5],
  lambda: [0.1, 0.25, 0.5, 1],
  kappa: [0.5, 1, 1.5, 2, 3],
  keepOrthogonal: [0, 0.25, 0.5, 0.6, 0.75, 0.9],
  paperKappa: [0.5, 1, 1.5, 2],
  maskDraws: 1,
  preserve: DEFAULT_PRESERVE_GRIDS,
});

export interface SweepPoint {
  family: Family;
  /** e.g. "kappa=1.5 keepOrthogonal=0.5" */
  label: string;
  knobs: Record<string, number>;
  options: EditOptions;
  /** Share of rows the point treats differently from plain fine-tuning (geoedit: orthogonal rows; random-mask: masked rows). */
  rowShare?: number;
  scores: QualityScores;
}

export interface FrontierEntry {
  /** Best Locality among points with Reliability ≥ factor × reference Reliability (null: none reached it). */
  locality: number;
  reliability: number;
  generality: number;
  label: string;
}

export interface Frontier {
  family: Family;
  at099: FrontierEntry | null;
  at095: FrontierEntry | null;
}

export interface Geometry {
  /** Over all edited rows (rows where τnew ≠ 0) at the default κ: shares per region. */
  orthogonal: number;
  synergy: number;
  conflict: number;
  /** Median |cos|·√n over those rows (≈ 1 for unrelated directions). */
  medianScaledAbsCos: number;
  /** Share of the update energy Σ‖τnew[i]‖² that lies on the orthogonal rows (compare with `orthogonal`, their share of rows). */
  orthogonalEnergy: number;
  rows: number;
}

export interface SweepResult {
  /** Plain fine-tuning: task-arithmetic, scale 1. */
  reference: QualityScores;
  points: SweepPoint[];
  frontiers: Record<Family, Frontier>;
  geometry: Geometry;
}

export interface SweepOptions {
  source: EditSource;
  /** Scores an edited model (all tensors of the checkpoint, edited). */
  score: (weights: Weights, point: { family: Family; label: string }) => Promise<QualityScores>;
  grids?: Partial<Omit<SweepGrids, 'preserve'>> & { preserve?: Partial<PreserveGrids> };
  /** Seed of the random-mask control. */
  seed?: number;
  /**
   * Preservation statistics (C0 on a preserved sample disjoint from the Locality prompts, C1 on the edit prompts): in memory
   * `{ layers }` (edits through editTensor's `preserve`) or a statistics file `{ file }` (edits through editCheckpoint /
   * editAdapters' `preserve: { file, rho, mu }`, docs/preservation.md). Runs the preservation families.
   */
  preserve?: SweepPreservation;
  /** Families to run (default: all). task-arithmetic always runs (it is the reference). */
  families?: Family[];
  /** Reference κ for the geometry summary (default: the package default, DEFAULTS.kappa). */
  geometryKappa?: number;
  /** For every geoedit point, also run uniform shrinkage with the same mean coefficient, scale = 1 − share·(1 − γ) (default true). */
  matchedShrinkage?: boolean;
  onPoint?: (p: SweepPoint) => void;
}

function checkScores(s: unknown, where: string): QualityScores {
  const o = s as QualityScores;
  for (const k of ['reliability', 'generality', 'locality'] as const) {
    if (!o || typeof o[k] !== 'number' || !Number.isFinite(o[k])) {
      throw new GeoEditError('ERR_INVALID_OPTION', `The score callback must return { reliability, generality, locality } as finite numbers; for ${where} it returned ${describe(o?.[k])} for '${k}'`, { option: 'score' });
    }
  }
  return { reliability: o.reliability, generality: o.generality, locality: o.locality };
}

/** Row length n of every tensor the statistics cover (in memory: C0's width; a file: the weights it names, as in the base, per neuron of their layout). */
function statisticWidths(p: SweepPreservation, base: Weights, source: EditSource): Map<string, number> {
  const w = new Map<string, number>();
  if ('layers' in p) { for (const [name, l] of p.layers) w.set(name, l.cov.shape[1]!); return w; }
  const layouts = sourceLayouts(source, base);
  for (const name of statisticNames(p.file)) { const l = layouts.get(name); if (l) w.set(name, l.cols); }
  return w;
}

/** Best Locality at Reliability ≥ factor × reference, among the points of one family. */
export function frontierOf(points: SweepPoint[], reference: QualityScores, factor: number): FrontierEntry | null {
  let best: FrontierEntry | null = null;
  const need = factor * reference.reliability - 1e-12;
  for (const p of points) {
    if (p.scores.reliability < need) continue;
    if (!best || p.scores.locality > best.locality || (p.scores.locality === best.locality && p.scores.reliability > best.reliability)) {
      best = { locality: p.scores.locality, reliability: p.scores.reliability, generality: p.scores.generality, label: p.label };
    }
  }
  return best;
}

type TensorGeo = Map<string, { cos: Float64Array; cols: number; active: Uint8Array; energy: Float64Array }>;

/** Per tensor: cos per row, which rows carry an update (τnew ≠ 0) and its energy. */
async function tensorGeometry(loaded: Awaited<ReturnType<typeof loadSource>>, source: EditSource): Promise<TensorGeo> {
  const geo: TensorGeo = new Map();
  // Per neuron in the tensor's layout (SPEC §2), as editCheckpoint computes it.
  const layouts = sourceLayouts(source, loaded.base);
  for (const [name, base0] of loaded.base) {
    const l = layouts.get(name)!;
    const base = neuronView(base0, l), nwT = neuronView(loaded.new.get(name)!, l);
    const st = await analyzeTensor({ base, old: neuronView(loaded.old.get(name)!, l), new: nwT }, { strategy: 'task-arithmetic' });
    const { rows, cols } = l;
    const nw = nwT.data as Float32Array, b0 = base.data as Float32Array;
    const active = new Uint8Array(rows);
    const energy = new Float64Array(rows);
    if (base.dtype === 'f32' && nwT.dtype === 'f32') {
      for (let i = 0; i < rows; i++) {
        let e = 0;
        for (let j = 0; j < cols; j++) { const d = nw[i * cols + j]! - b0[i * cols + j]!; e += d * d; }
        energy[i] = e;
        if (e > 0) active[i] = 1;
      }
    } else active.fill(1);
    geo.set(name, { cos: st.cos, cols, active, energy });
  }
  return geo;
}

/** Region shares of the active rows at κ = kRef, and the median |cos|·√n. */
function geometryOf(geo: TensorGeo, kRef: number): Geometry {
  let nAct = 0, nOrth = 0, nSyn = 0, nCon = 0, eAll = 0, eOrth = 0;
  const scaled: number[] = [];
  for (const { cos, cols, active, energy } of geo.values()) {
    const t = kRef / Math.sqrt(cols);
    for (let i = 0; i < cos.length; i++) {
      if (!active[i]) continue;
      nAct++;
      const c = cos[i]!;
      scaled.push(Math.abs(c) * Math.sqrt(cols));
      eAll += energy[i]!;
      if (Math.abs(c) <= t) { nOrth++; eOrth += energy[i]!; }
      else if (c > 0) nSyn++;
      else nCon++;
    }
  }
  scaled.sort((a, b) => a - b);
  return {
    orthogonal: nAct ? nOrth / nAct : 0, synergy: nAct ? nSyn / nAct : 0, conflict: nAct ? nCon / nAct : 0,
    medianScaledAbsCos: scaled.length ? scaled[Math.floor(scaled.length / 2)]! : 0, orthogonalEnergy: eAll > 0 ? eOrth / eAll : 0, rows: nAct,
  };
}

/** The active rows geoedit treats as orthogonal at κ = k, per tensor, and their share of all active rows. */
function orthogonalCounts(geo: TensorGeo, k: number): { counts: Map<string, number>; share: number } {
  let masked = 0, total = 0;
  const counts = new Map<string, number>();
  for (const [name, { cos, cols, active }] of geo) {
    const t = k / Math.sqrt(cols);
    let c = 0;
    for (let i = 0; i < cos.length; i++) if (active[i] && Math.abs(cos[i]!) <= t) c++;
    counts.set(name, c);
    masked += c;
    for (let i = 0; i < cos.length; i++) total += active[i]!;
  }
  return { counts, share: total ? masked / total : 0 };
}

/** The control: the same number of (active) rows per tensor, chosen at random, get keepOrthogonal. */
function randomMask(geo: TensorGeo, counts: Map<string, number>, gamma: number, rng: Rng): Map<string, { cNew: Float32Array; cOld: Float32Array }> {
  const coefficients = new Map<string, { cNew: Float32Array; cOld: Float32Array }>();
  for (const [name, { cos, active }] of geo) {
    const rows = cos.length;
    const cNew = new Float32Array(rows).fill(1), cOld = new Float32Array(rows);
    const idx: number[] = [];
    for (let i = 0; i < rows; i++) if (active[i]) idx.push(i);
    rng.shuffle(idx);
    const c = counts.get(name)!;
    for (let j = 0; j < c; j++) cNew[idx[j]!] = gamma;
    coefficients.set(name, { cNew, cOld });
  }
  return coefficients;
}

/**
 * Runs the protocol on one (θ0, θold, θnew) — checkpoints or adapters. The caller's `score`
 * turns edited weights into { reliability, generality, locality } on their own model and data.
 */
export async function sweepFrontier(o: SweepOptions): Promise<SweepResult> {
  if (!o || typeof o !== 'object') throw typeError(`Expected sweepFrontier options but received ${describe(o)}`);
  if (typeof o.score !== 'function') throw typeError(`Expected a function for option 'score' but received ${describe(o.score)}`);
  const g: SweepGrids = { ...DEFAULT_GRIDS, ...(o.grids ?? {}), preserve: { ...DEFAULT_PRESERVE_GRIDS, ...(o.grids?.preserve ?? {}) } };
  const fams = new Set<Family>(o.families ?? FAMILIES);
  const loaded = await loadSource(o.source);
  const points: SweepPoint[] = [];
  const run = async (family: Family, label: string, knobs: Record<string, number>, options: EditOptions, extra: { coefficients?: Map<string, { cNew: Float32Array; cOld: Float32Array }>; rowShare?: number; preserve?: Map<string, PreserveTensorOption> } = {}): Promise<SweepPoint> => {
    const { weights } = await runEdit(o.source, options, { loaded, coefficients: extra.coefficients, preserve: extra.preserve });
    const scores = checkScores(await o.score(weights, { family, label }), `${family} ${label}`);
    const p: SweepPoint = { family, label, knobs, options, scores };
    if (extra.rowShare !== undefined) p.rowShare = extra.rowShare;
    points.push(p);
    o.onPoint?.(p);
    return p;
  };

  // geometry once per tensor (cos does not depend on the knobs)
  const geo = await tensorGeometry(loaded, o.source);
  const geometry = geometryOf(geo, o.geometryKappa ?? DEFAULTS.kappa);

  const ref = await run('task-arithmetic', 'scale=1', { scale: 1 }, { strategy: 'task-arithmetic', scale: 1 });
  if (fams.has('shrinkage')) for (const s of g.scale) await run('shrinkage', `scale=${s}`, { scale: s }, { strategy: 'task-arithmetic', scale: s });
  if (fams.has('forget-then-learn')) for (const l of g.lambda) await run('forget-then-learn', `lambda=${l}`, { lambda: l }, { strategy: 'forget-then-learn', lambda: l });
  if (fams.has('geoedit') || fams.has('random-mask')) {
    const rng = new Rng(o.seed ?? 1);
    for (const k of g.kappa) {
      for (const gamma of g.keepOrthogonal) {
        const label = `kappa=${k} keepOrthogonal=${gamma}`;
        // the rows geoedit treats as orthogonal at this κ, per tensor (rows with τnew = 0 do not matter)
        const { counts, share } = orthogonalCounts(geo, k);
        if (fams.has('geoedit')) await run('geoedit', label, { kappa: k, keepOrthogonal: gamma }, { strategy: 'geoedit', kappa: k, keepOrthogonal: gamma, fuseAligned: 0, forgetConflicting: 0 }, { rowShare: share });
        if (fams.has('shrinkage') && o.matchedShrinkage !== false) {
          const sc = Math.round((1 - share * (1 - gamma)) * 1e4) / 1e4;
          await run('shrinkage', `scale=${sc} (matched to ${label})`, { scale: sc }, { strategy: 'task-arithmetic', scale: sc });
        }
        if (fams.has('random-mask')) {
          for (let d = 0; d < g.maskDraws; d++) {
            const coefficients = randomMask(geo, counts, gamma, rng);
            await run('random-mask', `${label} (share ${share.toFixed(3)}${g.maskDraws > 1 ? `, draw ${d + 1}` : ''})`, { kappa: k, keepOrthogonal: gamma }, { strategy: 'custom' }, { coefficients, rowShare: share });
          }
        }
      }
    }
  }
  if (fams.has('geoedit-paper')) for (const k of g.paperKappa) await run('geoedit-paper', `preset=paper kappa=${k}`, { kappa: k }, { strategy: 'geoedit', preset: 'paper', kappa: k });
  if (o.preserve) await sweepPreservation(run, o.preserve, g.preserve, fams, o.seed ?? 1, statisticWidths(o.preserve, loaded.base, o.source));

  const frontiers = {} as Record<Family, Frontier>;
  for (const f of FAMILIES) {
    const ps = points.filter((p) => p.family === f);
    frontiers[f] = { family: f, at099: frontierOf(ps, ref.scores, 0.99), at095: frontierOf(ps, ref.scores, 0.95) };
  }
  return { reference: ref.scores, points, frontiers, geometry };
}

export interface Stat {
  mean: number;
  sd: number;
  n: number;
}

function stat(xs: number[]): Stat {
  const n = xs.length;
  if (!n) return { mean: NaN, sd: NaN, n: 0 };
  const m = xs.reduce((a, b) => a + b, 0) / n;
  const v = n > 1 ? xs.reduce((a, b) => a + (b - m) * (b - m), 0) / (n - 1) : 0;
  return { mean: m, sd: Math.sqrt(v), n };
}

export interface FrontierSummary {
  reference: { reliability: Stat; generality: Stat; locality: Stat };
  /** Per family: Locality at the two Reliability levels, over the runs where the level was reached (n says how many). */
  families: Record<Family, { at099: Stat; at095: Stat; reliability099: Stat; reliability095: Stat }>;
  geometry: { orthogonal: Stat; synergy: Stat; conflict: Stat; medianScaledAbsCos: Stat; orthogonalEnergy: Stat };
  runs: number;
}

/** Mean ± sd (sample sd) over several sweeps (e.g. seeds) of one regime. */
export function summarizeSweeps(rs: SweepResult[]): FrontierSummary {
  const families = {} as FrontierSummary['families'];
  for (const f of FAMILIES) {
    const a = rs.map((r) => r.frontiers[f].at099).filter((x): x is FrontierEntry => x !== null);
    const b = rs.map((r) => r.frontiers[f].at095).filter((x): x is FrontierEntry => x !== null);
    families[f] = {
      at099: stat(a.map((x) => x.locality)), at095: stat(b.map((x) => x.locality)),
      reliability099: stat(a.map((x) => x.reliability)), reliability095: stat(b.map((x) => x.reliability)),
    };
  }
  return {
    reference: {
      reliability: stat(rs.map((r) => r.reference.reliability)),
      generality: stat(rs.map((r) => r.reference.generality)),
      locality: stat(rs.map((r) => r.reference.locality)),
    },
    families,
    geometry: {
      orthogonal: stat(rs.map((r) => r.geometry.orthogonal)), synergy: stat(rs.map((r) => r.geometry.synergy)),
      conflict: stat(rs.map((r) => r.geometry.conflict)), medianScaledAbsCos: stat(rs.map((r) => r.geometry.medianScaledAbsCos)),
      orthogonalEnergy: stat(rs.map((r) => r.geometry.orthogonalEnergy ?? NaN)),
    },
    runs: rs.length,
  };
}

export type { Weights, EditSource, Tensor };
