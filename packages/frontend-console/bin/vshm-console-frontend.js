#!/usr/bin/env node
import { main } from '../dist/cli.js';

const status = await main(process.argv.slice(2));
// Let piped stdout drain, then leave even if a handle (a paused TTY stdin) would keep us alive.
process.stdout.write('', () => process.exit(status));
