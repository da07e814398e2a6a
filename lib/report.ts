// The review page for an edit: one self-contained HTML file (inline CSS and SVG, no script, no
// network) with per-layer angle histograms, layers × modules heatmaps of region shares, and the
// update energy kept, so a reviewer can approve an edit before it ships.
import { writeFileAtomic } from './job/atomic';
import { manifestVerb, type CheckpointManifest, type TensorManifestEntry } from './job/manifest';
import { governanceSections, type GovernanceContext } from './governance/sections';

function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function fmt(n: number | null | undefined, d = 3): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  if (n !== 0 && (Math.abs(n) >= 1e5 || Math.abs(n) < 1e-3)) return n.toExponential(2);
  return n.toFixed(d);
}

/** Where the edit ran, as the manifest records it (manifests before the GPU pipeline have no backend: the CPU). */
function runOn(m: CheckpointManifest): string {
  const b = m.backend ?? { name: 'cpu', device: null };
  return b.name === 'cuda' ? `the GPU (backend cuda${b.device ? `, ${esc(b.device)}` : ''})` : 'the CPU (backend cpu)';
}

function bytes(n: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 2 : 0)} ${u[i]}`;
}

/** Splits a tensor name into (layer, module): the first numeric path component is the layer. */
export function layerAndModule(name: string): { layer: string; module: string } {
  const parts = name.split('.');
  const k = parts.findIndex((p) => /^\d+$/.test(p));
  // '.weight' is dropped (the module is the layer); '.bias' stays, so biases get their own column.
  const strip = (a: string[]) => (a.length > 1 && a[a.length - 1] === 'weight' ? a.slice(0, -1) : a).join('.');
  if (k < 0) return { layer: 'other', module: strip(parts) };
  return { layer: parts[k]!, module: strip(parts.slice(k + 1)) || parts.slice(0, k).join('.') };
}

interface Agg { rows: number; o: number; s: number; c: number; hist: number[]; eNew: number; eApp: number }

function agg(): Agg {
  return { rows: 0, o: 0, s: 0, c: 0, hist: new Array<number>(36).fill(0), eNew: 0, eApp: 0 };
}

function add(a: Agg, e: TensorManifestEntry): void {
  a.rows += e.rows ?? 0;
  a.o += e.counts?.orthogonal ?? 0;
  a.s += e.counts?.synergy ?? 0;
  a.c += e.counts?.conflict ?? 0;
  e.angleHistogram?.forEach((v, i) => (a.hist[i]! += v));
  a.eNew += e.energy?.new ?? 0;
  a.eApp += e.energy?.applied ?? 0;
}

function sortLayers(keys: string[]): string[] {
  return keys.sort((a, b) => {
    const na = /^\d+$/.test(a), nb = /^\d+$/.test(b);
    if (na && nb) return Number(a) - Number(b);
    if (na) return -1;
    if (nb) return 1;
    return a.localeCompare(b);
  });
}

function histogramSvg(title: string, hist: number[], w = 260, h = 120): string {
  let max = 1;
  for (const v of hist) if (v > max) max = v;
  const pad = 20, bw = (w - pad * 2) / hist.length;
  const bars = hist.map((v, i) => {
    const bh = ((h - 40) * v) / max;
    const deg = i * 5;
    const col = deg + 5 <= 90 ? '#2e8b57' : '#c0392b';
    return `<rect x="${(pad + i * bw).toFixed(2)}" y="${(h - 20 - bh).toFixed(2)}" width="${Math.max(0.5, bw - 0.6).toFixed(2)}" height="${bh.toFixed(2)}" fill="${col}"><title>${deg}°–${deg + 5}°: ${v} rows</title></rect>`;
  }).join('');
  const mid = pad + 18 * bw;
  return `<svg class="chart hist" role="img" aria-label="${esc(title)}" xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">` +
    `<text x="${w / 2}" y="12" text-anchor="middle" font-size="11">${esc(title)}</text>${bars}` +
    `<line x1="${mid}" x2="${mid}" y1="16" y2="${h - 20}" stroke="#888" stroke-dasharray="2,2"/>` +
    `<line x1="${pad}" x2="${w - pad}" y1="${h - 20}" y2="${h - 20}" stroke="#333"/>` +
    `<text x="${pad}" y="${h - 6}" font-size="9">0°</text><text x="${mid}" y="${h - 6}" font-size="9" text-anchor="middle">90°</text>` +
    `<text x="${w - pad}" y="${h - 6}" font-size="9" text-anchor="end">180°</text></svg>`;
}

function heatmapSvg(title: string, layers: string[], modules: string[], cell: (l: string, m: string) => number | null, hue: string): string {
  let longest = 4;
  for (const m of modules) if (m.length > longest) longest = m.length;
  const cw = 28, ch = 16, left = 60, top = 24 + Math.min(180, 6 * longest);
  const w = left + modules.length * cw + 90, h = top + layers.length * ch + 10;
  let body = '';
  modules.forEach((m, j) => {
    const x = left + j * cw + cw / 2;
    body += `<text transform="translate(${x},${top - 4}) rotate(-60)" font-size="9">${esc(m.length > 30 ? '…' + m.slice(-29) : m)}</text>`;
  });
  layers.forEach((l, i) => {
    const y = top + i * ch;
    body += `<text x="${left - 4}" y="${y + ch - 4}" font-size="9" text-anchor="end">${esc(l)}</text>`;
    modules.forEach((m, j) => {
      const v = cell(l, m);
      const x = left + j * cw;
      if (v === null) body += `<rect x="${x}" y="${y}" width="${cw - 1}" height="${ch - 1}" fill="#f4f4f4"/>`;
      else body += `<rect x="${x}" y="${y}" width="${cw - 1}" height="${ch - 1}" fill="${hue}" fill-opacity="${(0.05 + 0.95 * v).toFixed(3)}"><title>layer ${esc(l)}, ${esc(m)}: ${(100 * v).toFixed(1)}%</title></rect>`;
    });
  });
  return `<svg class="chart heatmap" role="img" aria-label="${esc(title)}" xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">` +
    `<text x="4" y="12" font-size="12" font-weight="bold">${esc(title)}</text>${body}</svg>`;
}

function energySvg(layers: string[], byLayer: Map<string, Agg>): string {
  const bw = 18, h = 160, left = 40, w = Math.max(420, left + layers.length * bw + 10);
  let body = '';
  [0, 0.5, 1].forEach((t) => {
    const y = 20 + (h - 50) * (1 - t);
    body += `<line x1="${left}" x2="${w - 5}" y1="${y}" y2="${y}" stroke="#ddd"/><text x="${left - 4}" y="${y + 3}" font-size="9" text-anchor="end">${(t * 100).toFixed(0)}%</text>`;
  });
  layers.forEach((l, i) => {
    const a = byLayer.get(l)!;
    const v = a.eNew > 0 ? a.eApp / a.eNew : 0;
    const vh = (h - 50) * Math.min(1.5, v);
    const x = left + i * bw;
    body += `<rect x="${x}" y="${(20 + (h - 50) - vh).toFixed(2)}" width="${bw - 3}" height="${vh.toFixed(2)}" fill="#3469b3"><title>layer ${esc(l)}: ${(100 * v).toFixed(1)}% of the update energy kept</title></rect>`;
    body += `<text transform="translate(${x + bw / 2},${h - 24}) rotate(-60)" font-size="9" text-anchor="end">${esc(l)}</text>`;
  });
  return `<svg class="chart energy" role="img" aria-label="update energy kept per layer" xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">` +
    `<text x="4" y="12" font-size="12" font-weight="bold">Update energy kept per layer (Σ‖applied‖² / Σ‖τnew‖²)</text>${body}</svg>`;
}

/** The model family of the base's config.json, the layout rule it gave (SPEC §2) and the tied tensors. */
function modelSection(m: CheckpointManifest): string {
  const md = m.model;
  if (!md) return '';
  const fam = md.family ? `${esc(md.family)}: ${esc(md.layoutRule ?? '')}` : md.config ? `not a known family (model_type ${esc(md.modelType ?? '–')}): every tensor in layout rows unless the layout option says otherwise` : 'no config.json: every tensor in layout rows unless the layout option says otherwise';
  const ties = md.ties.map((t) => `<li><code>${esc(t.with)}</code> = <code>${esc(t.tensor)}</code>: ${esc(t.why)}</li>`).join('');
  return `<section><h2>Model and neuron layouts</h2><p>${fam}</p>${ties ? `<ul>${ties}</ul>` : ''}</section>`;
}

/**
 * The charts show at most this many layers and modules (the most rows first), the tensor table at
 * most this many tensors: a review page stays readable and its size bounded for any model (the
 * manifest lists every tensor). What is left out is said on the page.
 */
export const REPORT_LIMITS = Object.freeze({ layers: 256, modules: 64, tensors: 20000 });

/** The `limit` keys with the most rows (ties: first seen), in their original order; and how many were left out. */
function topByRows(keys: string[], rows: (k: string) => number, limit: number): { kept: string[]; omitted: number } {
  if (keys.length <= limit) return { kept: keys, omitted: 0 };
  const pos = new Map(keys.map((k, i) => [k, i]));
  const keep = new Set([...keys].sort((a, b) => rows(b) - rows(a) || pos.get(a)! - pos.get(b)!).slice(0, limit));
  return { kept: keys.filter((k) => keep.has(k)), omitted: keys.length - limit };
}

interface Charts {
  layers: string[];
  modules: string[];
  byLayer: Map<string, Agg>;
  all: Agg;
  share: (key: 'o' | 's' | 'c') => (l: string, mo: string) => number | null;
  note: string;
}

/** The edited tensors aggregated per layer and per (layer, module) cell; the layers and modules the charts show (REPORT_LIMITS). */
function chartsOf(m: CheckpointManifest): Charts {
  const byLayer = new Map<string, Agg>();
  const byCell = new Map<string, Agg>();
  const moduleRows = new Map<string, number>();
  const all = agg();
  for (const e of m.tensors) {
    if (e.action !== 'edit') continue;
    const { layer, module } = layerAndModule(e.name);
    moduleRows.set(module, (moduleRows.get(module) ?? 0) + (e.rows ?? 0));
    if (!byLayer.has(layer)) byLayer.set(layer, agg());
    add(byLayer.get(layer)!, e);
    const k = `${layer}\u0000${module}`;
    if (!byCell.has(k)) byCell.set(k, agg());
    add(byCell.get(k)!, e);
    add(all, e);
  }
  const lsel = topByRows(sortLayers([...byLayer.keys()]), (l) => byLayer.get(l)!.rows, REPORT_LIMITS.layers);
  const msel = topByRows([...moduleRows.keys()].sort(), (mo) => moduleRows.get(mo)!, REPORT_LIMITS.modules);
  const share = (key: 'o' | 's' | 'c') => (l: string, mo: string) => {
    const a = byCell.get(`${l}\u0000${mo}`);
    return a && a.rows > 0 ? a[key] / a.rows : null;
  };
  const note = lsel.omitted || msel.omitted
    ? `<p>The charts show the ${lsel.kept.length} layers and ${msel.kept.length} modules with the most rows; ${lsel.omitted} more layers and ${msel.omitted} more modules are left out (every tensor is in the manifest).</p>` : '';
  return { layers: lsel.kept, modules: msel.kept, byLayer, all, share, note };
}

/** Renders the report for a manifest. */
export function renderReport(m: CheckpointManifest, governance?: GovernanceContext): string {
  const { layers, modules, byLayer, all, share, note: chartNote } = chartsOf(m);
  const p = m.parameters;
  const params = Object.entries(p).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v === null || (k === 'bandDegrees' && typeof v === 'number' && v < 0) ? '–' : Array.isArray(v) ? v.join(', ') : typeof v === 'object' ? JSON.stringify(v) : v)}</td></tr>`).join(''); // bandDegrees < 0: unset (kappa is used)
  const inputs = Object.entries(m.inputs).map(([role, i]) =>
    i.files.map((f) => `<tr><th>${esc(role)}</th><td><code>${esc(f.path)}</code></td><td>${esc(bytes(f.size))}</td><td><code>${esc(f.sha256 ? f.sha256.slice(0, 16) + '…' : '–')}</code></td></tr>`).join(''),
  ).join('');
  const t = m.totals;
  const pct = (a: number) => (t.rows ? ((100 * a) / t.rows).toFixed(1) + '%' : '–');
  const shown = m.tensors.length > REPORT_LIMITS.tensors ? m.tensors.slice(0, REPORT_LIMITS.tensors) : m.tensors;
  const tensorNote = shown.length < m.tensors.length ? `<p>The first ${shown.length} of ${m.tensors.length} tensors; every tensor is in the manifest.</p>` : '';
  const tensorRows = shown.map((e) =>
    `<tr><td><code>${esc(e.name)}</code></td><td>${esc(e.dtype)}→${esc(e.outDtype)}</td><td>[${esc(e.shape.join(', '))}]</td>` +
    `<td title="${esc(e.layoutWhy ?? '')}">${esc(e.layout ?? 'rows')}${e.layoutSource && e.layoutSource !== 'default' ? ` (${esc(e.layoutSource)})` : ''}${e.degenerateThreshold ? ' ⚠ κ/√n ≥ 1' : ''}</td><td>${esc(e.action)}</td>` +
    (e.action === 'edit'
      ? `<td>${e.counts!.orthogonal}</td><td>${e.counts!.synergy}</td><td>${e.counts!.conflict}</td><td>${fmt(e.meanCos)}</td><td>${fmt(e.energyKept)}</td>${presCell(m, e)}</tr>`
      : `<td colspan="${m.parameters.preserve ? 6 : 5}">${esc(e.note ?? '')}</td></tr>`),
  ).join('');
  const layerHists = layers.map((l) => histogramSvg(`layer ${l}`, byLayer.get(l)!.hist)).join('');
  const warn = m.warnings.length ? `<section><h2>Warnings</h2><ul>${m.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul></section>` : '';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>geoedit ${esc(manifestVerb(m.kind))} report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:8px}.chart{background:#fff;border:1px solid #eee}
.kpi{display:flex;gap:24px;flex-wrap:wrap}.kpi div{background:#f6f8fa;padding:8px 12px;border-radius:4px}
.kpi b{display:block;font-size:18px}
</style></head><body>
<h1>geoedit ${esc(manifestVerb(m.kind))} report</h1>
<p>Created ${esc(m.createdAt)} by geoedit ${esc(m.versions.geoedit)} (${esc(m.versions.platform)}, node ${esc(m.versions.node)}, ${esc(m.versions.simd)}) on ${runOn(m)}.
Strategy <b>${esc(p.strategy)}</b>. Angles are between τold = old − base and τnew = new − base, per row (neuron); rows with |cos| ≤ t are orthogonal, others synergy (cos &gt; 0) or conflict (cos &lt; 0).</p>
<div class="kpi">
<div>tensors edited<b>${t.edited}</b> of ${t.tensors}</div>
<div>rows<b>${t.rows}</b></div>
<div>orthogonal<b>${pct(t.counts.orthogonal)}</b></div>
<div>synergy<b>${pct(t.counts.synergy)}</b></div>
<div>conflict<b>${pct(t.counts.conflict)}</b></div>
<div>update energy kept<b>${t.energyKept === null ? '–' : (100 * t.energyKept).toFixed(1) + '%'}</b></div>
</div>
${warn}
${governanceSections(m as unknown as Record<string, unknown>, governance)}
<section><h2>Angle histogram, all edited tensors</h2><p>Rows by the angle between τold and τnew in 5° bins: green below 90° (aligned, cos &gt; 0), red above (opposed, cos &lt; 0). Each tensor's orthogonal band is |cos| ≤ t, t = κ/√n (see the per-tensor table).</p><div class="grid">${histogramSvg('all layers', all.hist, 520, 180)}</div></section>
<section><h2>Region shares, layers × modules</h2>${chartNote}<div class="grid">
${heatmapSvg('conflict share', layers, modules, share('c'), '#c0392b')}
${heatmapSvg('synergy share', layers, modules, share('s'), '#2e8b57')}
${heatmapSvg('orthogonal share', layers, modules, share('o'), '#555555')}
</div></section>
${preservationSection(m, layers)}
<section><h2>Update energy kept</h2><div class="grid">${energySvg(layers, byLayer)}</div></section>
<section><h2>Angle histograms per layer</h2><div class="grid">${layerHists}</div></section>
<section><h2>Inputs</h2><table><tr><th>role</th><th>file</th><th>size</th><th>SHA-256</th></tr>${inputs}</table></section>
${modelSection(m)}
<section><h2>Parameters</h2><table>${params}</table></section>
<section><h2>Tensors</h2>${tensorNote}<table><tr><th>name</th><th>dtype</th><th>shape</th><th>layout (neurons)</th><th>action</th><th>orthogonal</th><th>synergy</th><th>conflict</th><th>mean cos</th><th>energy kept</th>${m.parameters.preserve ? '<th>preserved with (removed new / old)</th>' : ''}</tr>${tensorRows}</table></section>
<p>Timings: total ${fmt(m.timings.totalMs / 1000, 2)} s, data ${fmt(m.timings.dataMs / 1000, 2)} s (${fmt(m.timings.gbPerSecond, 2)} GB/s of input), hashing ${fmt(m.timings.hashMs / 1000, 2)} s.</p>
</body></html>
`;
}

/** Preservation (SPEC §3 step 0) per layer: tensors with statistics, and the share of the update's energy the projection removed. */
function presCell(m: CheckpointManifest, e: TensorManifestEntry): string {
  if (!m.parameters.preserve) return '';
  const p = e.preserve;
  return p ? `<td><code>${esc(p.statistics)}</code> (${fmt(p.removed.new)} / ${fmt(p.removed.old)})</td>` : '<td>none</td>';
}

function preservationSection(m: CheckpointManifest, layers: string[]): string {
  const file = m.parameters.preserve?.file;
  if (!file) return '';
  const rows = new Map<string, { n: number; pres: number; ob: number; oa: number; nb: number; na: number; none: string[] }>();
  for (const e of m.tensors) {
    if (e.action !== 'edit') continue;
    const { layer } = layerAndModule(e.name);
    const r = rows.get(layer) ?? { n: 0, pres: 0, ob: 0, oa: 0, nb: 0, na: 0, none: [] };
    r.n++;
    if (e.preserve) {
      r.pres++;
      r.ob += e.preserve.energy.oldBefore; r.oa += e.preserve.energy.oldAfter; r.nb += e.preserve.energy.newBefore; r.na += e.preserve.energy.newAfter;
    } else r.none.push(e.name);
    rows.set(layer, r);
  }
  const pct = (b: number, a: number) => (b > 0 ? `${(100 * (1 - a / b)).toFixed(1)}%` : '–');
  const body = layers.filter((l) => rows.has(l)).map((l) => {
    const r = rows.get(l)!;
    return `<tr><td>${esc(l)}</td><td>${r.pres} of ${r.n}</td><td>${pct(r.nb, r.na)}</td><td>${pct(r.ob, r.oa)}</td><td>${r.none.map((n) => `<code>${esc(n)}</code>`).join(' ') || '–'}</td></tr>`;
  }).join('');
  return `<section><h2>Preservation</h2><p>Statistics <code>${esc(file)}</code>, rho ${esc(m.parameters.preserve!.rho)}, mu ${esc(m.parameters.preserve!.mu)}. Every preserved row of τold and τnew was replaced by x·P before the geometry (SPEC §3 step 0); "removed" is 1 − Σ‖x·P‖² / Σ‖x‖² over the layer's preserved tensors. Tensors without statistics were edited without preservation.</p>
<table><tr><th>layer</th><th>tensors preserved</th><th>energy removed (new)</th><th>energy removed (old)</th><th>without statistics</th></tr>${body}</table></section>`;
}

/** Writes the report atomically and durably (lib/job/atomic.ts writeFileAtomic: temporary file beside it, fsync, rename, directory fsync). */
export async function writeReport(file: string, m: CheckpointManifest): Promise<void> {
  await writeFileAtomic(file, renderReport(m));
}
