/**
 * Every client CLI pointed at a UNIX socket where something other than vshm-server listens (it
 * answers with bytes that are not ivshmem messages): exit 1, never a signal, and one line that
 * names the socket path and asks whether a vshm-server listens there.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { ROOT, useScratch } from './e2e-procs.js';

const CLIS: [prog: string, bin: string, args: (s: { path(n: string): string }) => string[]][] = [
  ['vshm-console-backend', 'packages/backend-console/bin/vshm-console-backend.js', () => []],
  ['vshm-console-frontend', 'packages/frontend-console/bin/vshm-console-frontend.js', () => []],
  ['vshm-blk-backend', 'packages/backend-blk/bin/vshm-blk-backend.js', (s) => [s.path('disk.img')]],
  ['vshm-blk-frontend', 'packages/frontend-blk/bin/vshm-blk-frontend.js', (s) => ['--nbd', s.path('nbd.sock')]],
  ['vshm-rng-backend', 'examples/virtio-rng/bin/vshm-rng-backend.js', () => []],
  ['vshm-rng-frontend', 'examples/virtio-rng/bin/vshm-rng-frontend.js', () => []],
];

describe('client CLIs against a listener that is not a vshm-server', function () {
  const s = useScratch(this);
  let listener: Server | null = null;
  afterEach(async () => {
    await new Promise<void>((r) => (listener === null ? r() : listener.close(() => r())));
    listener = null;
  });

  for (const [prog, bin, args] of CLIS) {
    it(`${prog}: one line naming the socket, exit 1`, async () => {
      // The blk back-end opens its image before it connects: give it a real one.
      writeFileSync(s.path('disk.img'), Buffer.alloc(4096));
      const path = s.path('http.sock');
      // A plain stream server that greets every client with text and hangs up.
      listener = createServer((c) => {
        c.on('error', () => {});
        c.end('HTTP/1.0 200 OK\r\n\r\nhello\r\n');
      });
      await new Promise<void>((r) => listener!.listen(path, r));
      const p = s.spawn(prog, join(ROOT, bin), ['-S', path, ...args(s)]);
      const { code, signal } = await p.exited;
      expect({ code, signal }, p.stderr).to.deep.equal({ code: 1, signal: null });
      const lines = p.stderr.split('\n').filter((l) => l.length > 0);
      expect(lines, p.stderr).to.have.length(1);
      expect(lines[0].startsWith(`${prog}: cannot connect to `), lines[0]).to.equal(true);
      expect(lines[0]).to.include(path);
      expect(lines[0]).to.match(/\(is a vshm-server listening there\?\)$/);
    });
  }
});
