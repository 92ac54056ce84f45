#!/usr/bin/env node
// vshm-blk-backend: the virtio-blk device back-end. Needs the compiled TypeScript (`npm run build:ts`).
// Loads cli.js from dist/, or its bundle when that is fresh (@vshm/transport/launch).
import { cliModule } from '@vshm/transport/launch';

const { run } = await import(cliModule(import.meta.url, 'cli.js'));
void run();
