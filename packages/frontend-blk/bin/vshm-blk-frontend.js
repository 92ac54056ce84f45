#!/usr/bin/env node
// vshm-blk-frontend: the virtio-blk front-end. Needs the compiled TypeScript (`npm run build:ts`).
// Runs dist/bundle/cli.cjs with its code cache when that may stand in for dist/cli.js, else
// dist/cli.js (scripts/bundle.mjs). CommonJS (bin/package.json): no ESM loader at start.
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

// run() exits once stdout and stderr have taken their output (at most 2 s: a stalled terminal does
// not keep us).
loadCli(__dirname, 'cli.js').then(({ run }) => run(process.argv.slice(2)));
