#!/usr/bin/env node
// vshm-rng-backend: the virtio-rng example back-end. Needs the compiled TypeScript (`npm run build:ts`).
// Loads cli.js from dist/, or its bundle when that is fresh (@vshm/transport/launch).
import { cliModule } from '@vshm/transport/launch';

const { runBackend } = await import(cliModule(import.meta.url, 'cli.js'));
void runBackend();
