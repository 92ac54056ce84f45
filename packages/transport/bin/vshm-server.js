#!/usr/bin/env node
// vshm-server (spec §1.9). Needs the compiled TypeScript: `npm run build:ts` at the repo root.
import { run } from '../dist/server/cli.js';

run();
