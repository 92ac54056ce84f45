#!/usr/bin/env node
// vshm-rng-frontend: the virtio-rng example front-end. Needs the compiled TypeScript (`npm run build:ts`).
// Loads dist/cli.js, or its bundle when that may stand in for it (scripts/bundle.mjs).
// cliModule() is a verbatim copy of the one in @vshm/transport's bin/launch.js: see there.
import { statSync } from 'node:fs';

const { runFrontend } = await import(cliModule(import.meta.url, 'cli.js'));
void runFrontend();

function cliModule(launcherUrl, entry) {
  const dist = new URL('../dist/', launcherUrl);
  const plain = new URL(entry, dist);
  const bundle = new URL(`bundle/${entry}`, dist);
  const b = statSync(bundle, { bigint: true, throwIfNoEntry: false });
  const p = b && statSync(plain, { bigint: true, throwIfNoEntry: false });
  const i = p && statSync(new URL('.tsbuildinfo', dist), { bigint: true, throwIfNoEntry: false });
  return p && (!i || (p.mtimeNs <= b.mtimeNs && i.mtimeNs <= b.mtimeNs)) ? bundle.href : plain.href;
}
