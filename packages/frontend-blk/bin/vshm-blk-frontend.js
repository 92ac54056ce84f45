#!/usr/bin/env node
// vshm-blk-frontend: the virtio-blk front-end. Needs the compiled TypeScript (`npm run build:ts`).
// Loads cli.js from dist/, or its bundle when that is fresh (@vshm/transport/launch).
import { cliModule } from '@vshm/transport/launch';

const { main } = await import(cliModule(import.meta.url, 'cli.js'));
const status = await main(process.argv.slice(2));
process.stdout.write('', () => process.exit(status));
