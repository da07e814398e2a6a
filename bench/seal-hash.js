#!/usr/bin/env node
// Seal time of an output directory of N files of S MiB (default 3 x 256 MiB): sealManifest with the
// node:crypto fallback (one file at a time on the JS thread: main's hashing before the native
// switch; forced by making sha256Info() report unavailable) vs the native parallel hashFiles path.
// Files are read once before timing (page cache warm for both). Usage:
//   node bench/seal-hash.js [files=3] [mib=256] [rounds=2]      (needs `npm run build`)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { sealManifest } = require('../dist/cjs/governance/lineage.js');
const { native } = require('../dist/cjs/native/index.js');

const [nFiles, mib, rounds] = [Number(process.argv[2] ?? 3), Number(process.argv[3] ?? 256), Number(process.argv[4] ?? 2)];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'geoedit-seal-bench-'));
const realInfo = native.sha256Info;
(async () => {
  try {
    const block = crypto.randomBytes(1 << 20);
    for (let i = 0; i < nFiles; i++) {
      const fd = fs.openSync(path.join(dir, `model-0000${i + 1}-of-0000${nFiles}.safetensors`), 'w');
      for (let j = 0; j < mib; j++) { block[0] = j; block[1] = i; fs.writeSync(fd, block); }
      fs.closeSync(fd);
    }
    const seal = async (mode) => {
      native.sha256Info = mode === 'node' ? () => ({ available: false, provider: '', reason: 'bench: fallback forced' }) : realInfo;
      const t = process.hrtime.bigint();
      const m = await sealManifest(dir, { tool: 'geoedit', kind: 'checkpoint-edit', warnings: [] }, []);
      const s = Number(process.hrtime.bigint() - t) / 1e9;
      return { s, digests: m.outputFiles.map((f) => f.sha256).join(',') };
    };
    await seal('node'); // warm the page cache
    const res = { node: [], native: [] };
    let same = true;
    for (let r = 0; r < rounds; r++) {
      const a = await seal('node');
      const b = await seal('native');
      res.node.push(a.s); res.native.push(b.s);
      same = same && a.digests === b.digests;
    }
    const best = (xs) => Math.min(...xs);
    const out = {
      date: new Date().toISOString(), files: nFiles, mibEach: mib, rounds, loadavg: os.loadavg().map((x) => +x.toFixed(2)),
      cpus: os.cpus().length, provider: realInfo.call(native).provider, sameDigests: same,
      nodeCryptoSeconds: res.node.map((x) => +x.toFixed(3)), nativeSeconds: res.native.map((x) => +x.toFixed(3)),
      nodeCryptoBest: +best(res.node).toFixed(3), nativeBest: +best(res.native).toFixed(3),
      ratio: +(best(res.node) / best(res.native)).toFixed(2),
    };
    console.log(JSON.stringify(out, null, 2));
    if (!same) process.exitCode = 1;
  } finally {
    native.sha256Info = realInfo;
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
