#!/usr/bin/env node
import { main } from '../dist/cli.js';

const status = await main(process.argv.slice(2));
process.stdout.write('', () => process.exit(status));
