#!/usr/bin/env node
// Fills the generated regions of README.md and docs/*.md (options, CLI reference, environment)
// from the built library (run `npm run docs:gen`, which builds the TS first). --check: exit 1 and
// list the stale files instead of writing them.
'use strict';
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const { regenerateDocs } = require(path.join(root, 'dist', 'cjs', 'docs.js'));
const check = process.argv.includes('--check');
regenerateDocs(root, { check }).then((changed) => {
  for (const f of changed) console.log(`${check ? 'stale' : 'updated'}: ${path.relative(root, f)}`);
  if (!changed.length) console.log('docs: generated regions are up to date');
  process.exit(check && changed.length ? 1 : 0);
});
