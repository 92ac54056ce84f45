#!/usr/bin/env node
// vshm-rng-backend: the virtio-rng example back-end. Needs the compiled TypeScript (`npm run build:ts`).
import { runBackend } from '../dist/cli.js';

void runBackend();
