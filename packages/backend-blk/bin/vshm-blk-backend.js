#!/usr/bin/env node
// vshm-blk-backend: the virtio-blk device back-end. Needs the compiled TypeScript (`npm run build:ts`).
import { run } from '../dist/cli.js';

void run();
