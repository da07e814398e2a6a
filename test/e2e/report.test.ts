// The HTML report, rendered in a real headless browser (Debian's chromium via playwright-core).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { editCheckpoint, type CheckpointManifest } from '../../lib/checkpoint';
import { layerAndModule, renderReport } from '../../lib/report';
import { llamaSpecs, makeTriple } from '../support/ckpt';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) console.warn(`skipping the browser report test: ${CHROMIUM} is absent (apt-get install -y chromium)`);

let dir: string;
let manifest: CheckpointManifest;
let reportFile: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-report-'));
  const tri = await makeTriple(path.join(dir, 'in'), llamaSpecs(4));
  reportFile = path.join(dir, 'report <&> "x".html');
  manifest = await editCheckpoint({ ...tri, out: path.join(dir, 'out') }, { report: reportFile });
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('report', () => {
  it('is one self-contained page: no script, no external reference, names escaped', () => {
    const html = fs.readFileSync(reportFile, 'utf8');
    expect(html).toBe(renderReport(manifest));
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(/i);
    expect(html).not.toMatch(/(src|href)=/i);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(html).toContain('model.layers.3.mlp.down_proj.weight');
    const evil = renderReport({ ...manifest, tensors: [{ ...manifest.tensors[0]!, name: 'a<script>alert(1)</script>.0.w' }] });
    expect(evil).not.toContain('<script>');
    expect(evil).toContain('&lt;script&gt;');
  });

  it('says where the edit ran (the manifest\'s backend; the device name escaped)', () => {
    const html = fs.readFileSync(reportFile, 'utf8');
    expect(html).toContain(manifest.backend.name === 'cuda' ? `on the GPU (backend cuda, ` : 'on the CPU (backend cpu).');
    const gpu = renderReport({ ...manifest, backend: { name: 'cuda', device: 'NVIDIA H200 <x>' } });
    expect(gpu).toContain('on the GPU (backend cuda, NVIDIA H200 &lt;x&gt;).');
    const old = renderReport({ ...manifest, backend: undefined as never }); // a manifest from before the GPU pipeline
    expect(old).toContain('on the CPU (backend cpu).');
  });

  it('splits names into layers and modules', () => {
    expect(layerAndModule('model.layers.12.self_attn.q_proj.weight')).toEqual({ layer: '12', module: 'self_attn.q_proj' });
    expect(layerAndModule('transformer.h.3.mlp.c_fc.bias')).toEqual({ layer: '3', module: 'mlp.c_fc.bias' });
    expect(layerAndModule('lm_head.weight')).toEqual({ layer: 'other', module: 'lm_head' });
  });

  it.skipIf(!haveChromium)('renders in headless chromium without errors; the charts are present', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
      page.on('request', (r) => requests.push(r.url()));
      const url = pathToFileURL(reportFile).href;
      const resp = await page.goto(url, { waitUntil: 'load' });
      expect(resp?.ok() ?? true).toBe(true);
      expect(errors).toEqual([]);
      expect(requests).toEqual([url]);
      expect(await page.title()).toBe('geoedit edit report');
      const counts = await page.evaluate(() => ({
        svgs: document.querySelectorAll('svg').length,
        heatmaps: document.querySelectorAll('svg.heatmap').length,
        hists: document.querySelectorAll('svg.hist').length,
        energy: document.querySelectorAll('svg.energy').length,
        heatCells: document.querySelectorAll('svg.heatmap rect[fill-opacity]').length,
        histBars: document.querySelectorAll('svg.hist rect').length,
        energyBars: document.querySelectorAll('svg.energy rect').length,
        width: Math.round((document.querySelector('svg.heatmap') as SVGSVGElement).getBoundingClientRect().width),
      }));
      expect(counts.heatmaps).toBe(3);
      expect(counts.hists).toBe(1 + 5); // all layers + 4 numbered layers + 'other' (embeddings)
      expect(counts.energy).toBe(1);
      // 4 layers × 5 modules edited, one cell per (layer, module) with data, in each of the 3 heatmaps.
      expect(counts.heatCells).toBe(3 * (4 * 5 + 1));
      expect(counts.histBars).toBe(36 * counts.hists);
      expect(counts.energyBars).toBe(5);
      expect(counts.width).toBeGreaterThan(50);
      const kpi = await page.textContent('.kpi');
      expect(kpi).toMatch(/tensors edited\s*21/);
    } finally {
      await browser.close();
    }
  });
});
