#!/usr/bin/env node
// vshm-server (spec §1.9). Needs the compiled TypeScript: `npm run build:ts` at the repo root.
// Loads server/cli.js from dist/, or its bundle when that is fresh (@vshm/transport/launch).
import { cliModule } from './launch.js';

const { run } = await import(cliModule(import.meta.url, 'server/cli.js'));
run();
