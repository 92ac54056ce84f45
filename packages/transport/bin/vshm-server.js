#!/usr/bin/env node
// vshm-server (spec §1.9). Needs the compiled TypeScript: `npm run build:ts` at the repo root.
// Loads dist/server/cli.js, or its bundle when that may stand in for it (scripts/bundle.mjs).
// cliModule() is a verbatim copy of the one in @vshm/transport's bin/launch.js: see there.
import { statSync } from 'node:fs';

const { run } = await import(cliModule(import.meta.url, 'server/cli.js'));
run();

function cliModule(launcherUrl, entry) {
  const dist = new URL('../dist/', launcherUrl);
  const plain = new URL(entry, dist);
  const bundle = new URL(`bundle/${entry}`, dist);
  const b = statSync(bundle, { bigint: true, throwIfNoEntry: false });
  const p = b && statSync(plain, { bigint: true, throwIfNoEntry: false });
  const i = p && statSync(new URL('.tsbuildinfo', dist), { bigint: true, throwIfNoEntry: false });
  return p && (!i || (p.mtimeNs <= b.mtimeNs && i.mtimeNs <= b.mtimeNs)) ? bundle.href : plain.href;
}
