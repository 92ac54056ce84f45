/**
 * A process warning (here the transport's VSHM_WARN_MEMORY_UNSEALED: a server whose `-M` memory
 * is not sealed) is printed by the CLIs in their own voice, `NAME: warning: …`, on one line —
 * not as Node's `(node:PID) [CODE] Warning: …` plus its `--trace-warnings` hint.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BACKEND_BIN, ROOT, SERVER_BIN, useScratch } from './e2e-procs.js';

describe('CLI voice for process warnings', function () {
  const s = useScratch(this);

  for (const [prog, bin, protocol, args] of [
    ['vshm-console-backend', BACKEND_BIN, '0x8003', () => []],
    ['vshm-blk-backend', join(ROOT, 'packages/backend-blk/bin/vshm-blk-backend.js'), '0x8002', () => [s.path('disk.img')]],
  ] as const) {
    it(`${prog}: an unsealed -M memory is one "${prog}: warning:" line`, async () => {
      writeFileSync(s.path('disk.img'), Buffer.alloc(4096));
      const name = `/vshm-warn-${process.pid}`;
      const server = s.spawn('server', SERVER_BIN, ['-S', s.server, '-M', name, '-l', '1M', '-n', '2', '-V', '3', '-P', protocol]);
      await server.untilStderr(/listening on/);
      const p = s.spawn(prog, bin, ['-S', s.server, ...args()]);
      await p.untilStderr(/serving .* as peer 0\n/);
      await p.untilStderr(/warning: .*not sealed.*\n/);
      const lines = p.stderr.split('\n').filter((l) => l.length > 0);
      expect(lines, p.stderr).to.have.length(2);
      expect(lines).to.include(`${prog}: warning: the shared memory from the server is not sealed against shrinking: if anything shrinks it while mapped, this process dies with SIGBUS`);
      expect(p.stderr).to.not.match(/\(node:\d+\)|--trace-warnings/);
    });
  }
});
