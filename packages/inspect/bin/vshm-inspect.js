#!/usr/bin/env node
// vshm-inspect: a read-only look inside a live vshm session. Needs the compiled TypeScript: `npm run build:ts` at the repo root.
import { run } from '../dist/cli.js';

run();
