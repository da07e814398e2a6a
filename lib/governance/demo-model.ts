// The demo model as files a user can edit, evaluate, review and roll out (`geoedit demo --export
// DIR`), and its built-in scorer (`geoedit demo-score DIR`). Every exported model directory holds
// geoedit-demo.json: the world's config and seed (the facts are regenerated from them) and the base
// model's predictions on the Locality prompts. Edits copy it into their outputs (a base directory's
// other files come along), so any edit of the demo model can be scored with no other file.
import { forceRefusal } from '../job/target';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GeoEditError } from '../errors';
import { openCheckpoint } from '../checkpoint';
import { DEMO_CONFIG, FAST_CONFIG, MODEL_VERSION, buildSeed, configHash, defaultCacheRoot, modelConfig, weightsToParams, type SuiteConfig } from '../quality/suite';
import { makeWorld, type WorldConfig } from '../quality/data';
import { baseLocalityPredictions, scoreAgainst } from '../quality/metrics';
import { loadCheckpoint, type Weights } from '../quality/edit-path';

export const DEMO_DESCRIPTOR = 'geoedit-demo.json';
/** The regimes exported: full fine-tunes (checkpoints) and LoRA adapters. */
export const EXPORT_REGIMES = { checkpoints: 'adam-over', adapters: 'lora-r8' } as const;

export interface DemoDescriptor {
  tool: 'geoedit-demo';
  modelVersion: number;
  world: WorldConfig;
  model: { d: number; h: number };
  seed: number;
  /** The base model's prediction for each Locality prompt. */
  baseLocality: number[];
}

export interface ExportResult {
  dir: string;
  base: string;
  old: string;
  new: string;
  oldAdapter: string;
  newAdapter: string;
  cached: boolean;
}

/** Builds (or reuses from the cache) the demo models and writes them as model directories under `dir`. */
export async function exportDemoModels(dir: string, opts: { fast?: boolean; seed?: number; cacheDir?: string; force?: boolean; log?: (s: string) => void } = {}): Promise<ExportResult> {
  const out = path.resolve(dir);
  if (fs.existsSync(out) && !opts.force) throw new GeoEditError('ERR_OUTPUT_EXISTS', `${out} already exists (pass --force to replace it)`, { file: out });
  checkExportReplaceable(out);
  const seed = opts.seed ?? 1;
  const cfg: SuiteConfig = { ...(opts.fast ? FAST_CONFIG : DEMO_CONFIG), regimes: [EXPORT_REGIMES.checkpoints, EXPORT_REGIMES.adapters], seeds: [seed] };
  const root = path.join(opts.cacheDir ?? defaultCacheRoot(), `demo-${configHash(cfg)}`);
  fs.mkdirSync(root, { recursive: true });
  const { models, cached } = await buildSeed(cfg, root, seed, opts.log);
  const world = makeWorld(cfg.world, seed);
  const mc = modelConfig(cfg, world);
  const baseW = await loadCheckpoint(models.base);
  const desc: DemoDescriptor = {
    tool: 'geoedit-demo', modelVersion: MODEL_VERSION, world: cfg.world, model: cfg.model, seed,
    baseLocality: Array.from(baseLocalityPredictions(world, mc, weightsToParams(baseW))),
  };
  const ck = models.regimes[EXPORT_REGIMES.checkpoints]!.source;
  const ad = models.regimes[EXPORT_REGIMES.adapters]!.source;
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.geoedit-tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    const descText = JSON.stringify(desc) + '\n';
    for (const [name, file] of [['base', models.base], ['old', ck.old], ['new', ck.new]] as const) {
      fs.mkdirSync(path.join(tmp, name), { recursive: true });
      fs.copyFileSync(file, path.join(tmp, name, 'model.safetensors'));
      fs.writeFileSync(path.join(tmp, name, DEMO_DESCRIPTOR), descText);
    }
    for (const [name, src] of [['old-adapter', ad.old], ['new-adapter', ad.new]] as const) {
      fs.mkdirSync(path.join(tmp, name), { recursive: true });
      for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(tmp, name, f));
    }
    if (fs.existsSync(out)) { checkExportReplaceable(out); fs.rmSync(out, { recursive: true, force: true }); }
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const p = (n: string) => path.join(out, n);
  return { dir: out, base: p('base'), old: p('old'), new: p('new'), oldAdapter: p('old-adapter'), newAdapter: p('new-adapter'), cached };
}

/** force replaces only a previous export (DIR/base holds the demo descriptor) or a file; never `.`, the home folder, `/`, a link. */
const PREVIOUS_EXPORT = { is: (d: string) => fs.existsSync(path.join(d, 'base', DEMO_DESCRIPTOR)), what: `a previous demo export (no base/${DEMO_DESCRIPTOR} inside)` };
function checkExportReplaceable(out: string): void {
  const why = forceRefusal(out, PREVIOUS_EXPORT);
  if (why) throw new GeoEditError('ERR_OUTPUT_EXISTS', `${out} already exists and force will not replace it: ${why}`, { file: out });
}

function readDescriptor(dir: string): DemoDescriptor {
  const f = path.join(dir, DEMO_DESCRIPTOR);
  let d: DemoDescriptor;
  try {
    d = JSON.parse(fs.readFileSync(f, 'utf8')) as DemoDescriptor;
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new GeoEditError(missing ? 'ERR_NOT_FOUND' : 'ERR_BAD_SAFETENSORS', missing
      ? `${dir} is not a demo model (no ${DEMO_DESCRIPTOR}): demo-score scores the models of 'geoedit demo --export DIR' and edits of them`
      : `${f}: not valid JSON (${(e as Error).message})`, { file: f });
  }
  if (d.tool !== 'geoedit-demo' || !Array.isArray(d.baseLocality) || !d.world || !d.model) throw new GeoEditError('ERR_BAD_SAFETENSORS', `${f}: not a geoedit demo descriptor`, { file: f });
  if (d.modelVersion !== MODEL_VERSION) throw new GeoEditError('ERR_UNSUPPORTED', `${f}: made by demo model version ${d.modelVersion}; this geoedit scores version ${MODEL_VERSION} (re-export with geoedit demo --export)`, { file: f });
  return d;
}

/** Reliability / Generality / Locality of the demo model (or an edit of it) in `dir`. */
export async function demoScore(dir: string): Promise<{ reliability: number; generality: number; locality: number }> {
  const abs = path.resolve(dir);
  const st = fs.statSync(abs, { throwIfNoEntry: false });
  if (!st) throw new GeoEditError('ERR_NOT_FOUND', `${abs} does not exist`, { file: abs });
  const mdir = st.isDirectory() ? abs : path.dirname(abs);
  const d = readDescriptor(mdir);
  if (st.isDirectory() && fs.existsSync(path.join(abs, 'adapter_config.json')) && !fs.existsSync(path.join(abs, 'model.safetensors'))) {
    throw new GeoEditError('ERR_UNSUPPORTED', `${abs} is a LoRA adapter; demo-score scores full weights (edit the adapters with --base DIR/base to get merged weights)`, { file: abs });
  }
  const ck = openCheckpoint(abs, 'model');
  const w: Weights = new Map();
  for (const f of ck.files) for (const [k, v] of await loadCheckpoint(f.path)) w.set(k, v);
  const world = makeWorld(d.world, d.seed);
  const mc = { vocab: world.vocab, objects: d.world.objects, d: d.model.d, h: d.model.h };
  const score = scoreAgainst(world, mc, Int32Array.from(d.baseLocality));
  let params;
  try {
    params = weightsToParams(w);
  } catch (e) {
    throw new GeoEditError('ERR_MISSING_TENSOR', `${abs}: ${(e as Error).message} (demo-score needs the demo model's f32 tensors)`, { file: abs });
  }
  return score(params);
}
