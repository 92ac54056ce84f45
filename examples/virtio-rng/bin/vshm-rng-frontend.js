#!/usr/bin/env node
// vshm-rng-frontend: the virtio-rng example front-end. Needs the compiled TypeScript (`npm run build:ts`).
import { runFrontend } from '../dist/cli.js';

void runFrontend();
