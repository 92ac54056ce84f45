#!/usr/bin/env node
// vshm-rng-frontend: the virtio-rng example front-end. Needs the compiled TypeScript (`npm run build:ts`).
// Loads cli.js from dist/, or its bundle when that is fresh (@vshm/transport/launch).
import { cliModule } from '@vshm/transport/launch';

const { runFrontend } = await import(cliModule(import.meta.url, 'cli.js'));
void runFrontend();
