#!/usr/bin/env node
// vshm-console-frontend. Needs the compiled TypeScript: `npm run build:ts` at the repo root.
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

loadCli(__dirname, 'cli.js')
  .then(({ main }) => main(process.argv.slice(2)))
  // Let piped stdout drain, then leave even if a handle (a paused TTY stdin) would keep us alive.
  .then((status) => process.stdout.write('', () => process.exit(status)));
