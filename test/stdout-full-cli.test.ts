/**
 * Every command's one-shot output (`--help`, and `--print-capabilities` of the device daemons)
 * onto a stdout that fails at once (/dev/full: ENOSPC): exit 1 with one line naming the errno,
 * never exit 0 with the text lost, never a stack.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './e2e-procs.js';

const COMMANDS: Record<string, string> = {
  'vshm-server': 'packages/transport/bin/vshm-server.js',
  'vshm-console-backend': 'packages/backend-console/bin/vshm-console-backend.js',
  'vshm-console-frontend': 'packages/frontend-console/bin/vshm-console-frontend.js',
  'vshm-blk-backend': 'packages/backend-blk/bin/vshm-blk-backend.js',
  'vshm-blk-frontend': 'packages/frontend-blk/bin/vshm-blk-frontend.js',
  'vshm-inspect': 'packages/inspect/bin/vshm-inspect.js',
  'vshm-rng-backend': 'examples/virtio-rng/bin/vshm-rng-backend.js',
  'vshm-rng-frontend': 'examples/virtio-rng/bin/vshm-rng-frontend.js',
};
const WITH_CAPABILITIES = new Set(['vshm-console-backend', 'vshm-blk-backend', 'vshm-rng-backend']);

function runToFull(bin: string, args: string[]): { status: number | null; stderr: string } {
  const full = openSync('/dev/full', 'w');
  try {
    const r = spawnSync(process.execPath, [join(ROOT, bin), ...args], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stderr: r.stderr };
  } finally {
    closeSync(full);
  }
}

describe('one-shot output onto a full stdout (every command)', function () {
  this.timeout(120_000);
  for (const [name, bin] of Object.entries(COMMANDS)) {
    const cases = WITH_CAPABILITIES.has(name) ? ['--help', '--print-capabilities'] : ['--help'];
    for (const arg of cases) {
      it(`${name} ${arg}: exit 1, one line`, () => {
        const r = runToFull(bin, [arg]);
        expect(r.stderr).to.equal(`${name}: cannot write to stdout: ENOSPC (no space left on device)\n`);
        expect(r.status).to.equal(1);
      });
    }
  }
});
