#!/usr/bin/env node
// The `geoedit` command: a small CommonJS launcher over the built CLI (dist/cjs/cli/main.js).
'use strict';
const path = require('node:path');
let main;
try {
  main = require(path.join(__dirname, '..', 'dist', 'cjs', 'cli', 'main.js')).main;
} catch (e) {
  process.stderr.write(`geoedit: the built CLI is missing (${e.message.split('\n')[0]}); run \`npm run build:ts\` in the package folder\n`);
  process.exit(3);
}
main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => { process.stderr.write(`geoedit: internal error: ${e && e.stack ? e.stack : e}\n`); process.exitCode = 3; },
);
