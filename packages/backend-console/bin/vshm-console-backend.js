#!/usr/bin/env node
// vshm-console-backend (spec §7). Needs the compiled TypeScript: `npm run build:ts` at the repo root.
import { run } from '../dist/cli.js';

run();
