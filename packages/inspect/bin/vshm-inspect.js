#!/usr/bin/env node
// vshm-inspect: a read-only look inside a live vshm session. Needs the compiled TypeScript: `npm run build:ts` at the repo root.
// Loads cli.js from dist/, or its bundle when that is fresh (@vshm/transport/launch).
import { cliModule } from '@vshm/transport/launch';

const { run } = await import(cliModule(import.meta.url, 'cli.js'));
run();
