#!/usr/bin/env node
// vshm-console-frontend. Needs the compiled TypeScript: `npm run build:ts` at the repo root.
// Loads cli.js from dist/, or its bundle when that is fresh (@vshm/transport/launch).
import { cliModule } from '@vshm/transport/launch';

const { main } = await import(cliModule(import.meta.url, 'cli.js'));
const status = await main(process.argv.slice(2));
// Let piped stdout drain, then leave even if a handle (a paused TTY stdin) would keep us alive.
process.stdout.write('', () => process.exit(status));
