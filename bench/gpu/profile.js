#!/usr/bin/env node
// One launch of the edit kernels on device-resident data, for Nsight Compute (bench/gpu/run.sh
// --profile): node bench/gpu/profile.js <dtype> <rows> <cols> <density>
'use strict';
const path = require('node:path');
const addon = require(path.join(__dirname, '..', '..', 'build', 'Release', 'geoedit.node'));
const [dtype = 'bf16', rows = '16384', cols = '4096', density = '1'] = process.argv.slice(2);
const r = addon._cudaBench({ rows: +rows, cols: +cols, dtype, reps: 1, params: { strategy: 'geoedit', fuseAligned: 1, forgetConflicting: 1, density: +density }, withImportance: false });
console.log(`${dtype} ${rows}x${cols} density ${density}: ${r.kernelMs.toFixed(3)} ms, ${r.kernelGBps.toFixed(0)} GB/s`);
