#!/usr/bin/env node
// vshm-server (spec §1.9). Needs the compiled TypeScript: `npm run build:ts` at the repo root.
// Runs dist/bundle/server/cli.cjs with its code cache when that may stand in for dist/server/cli.js, else
// dist/server/cli.js (scripts/bundle.mjs). CommonJS (bin/package.json): no ESM loader at start.
'use strict';

// dist/bundle/launch.cjs: @vshm/transport's bin/launch.js, copied there by scripts/bundle.mjs.
// Without it (the tsc output alone) the ES module itself.
let loadCli;
try {
  ({ loadCli } = require('../dist/bundle/launch.cjs'));
} catch (err) {
  if (err?.code !== 'MODULE_NOT_FOUND') throw err;
  loadCli = (dir, entry) => import(require('node:url').pathToFileURL(require('node:path').join(dir, '..', 'dist', entry)).href);
}

loadCli(__dirname, 'server/cli.js').then(({ run }) => run());
