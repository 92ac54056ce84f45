/**
 * End to end: orderly exits of vshm-console-frontend — SIGTERM/SIGINT reset the device and leave
 * (the back-end stays up and serves the next front-end), and the server going away ends the
 * front-end with one line and exit 1.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { useScratch } from './e2e-procs.js';

describe('console front-end e2e: signals and server loss', function () {
  const s = useScratch(this);

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig}: exit 0, bridge socket removed, the back-end serves the next front-end`, async () => {
      await s.startServer();
      const be = await s.startBackend([], { env: { DEBUG: 'vshm:console-be' } });
      const bridge = s.path('bridge.sock');
      const fe1 = s.startFrontend(['--bridge', bridge], { env: { ...process.env, DEBUG: 'vshm:console-fe' } });
      await fe1.untilStderr(/listening on/);
      await fe1.untilStderr(/probe: features/); // the device is live on the driver's side too
      fe1.child.kill(sig);
      const { code } = await fe1.exited;
      expect(code).to.equal(0);
      expect(existsSync(bridge)).to.equal(false);
      expect(be.running).to.equal(true);
      // Orderly (§4.10): the device was reset by the driver before it left, not just abandoned.
      await be.untilStderr(/front-end left \(device reset by the driver\)/);
      const fe2 = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo second']);
      expect((await fe2.exited).code).to.equal(0);
      await be.until(() => be.stdout.toString().includes('second\n'), 'second front-end output');
    });
  }

  it('the server going away with --no-reconnect: one line, exit 1', async () => {
    const server = await s.startServer();
    await s.startBackend();
    const fe = s.startFrontend(['-q', '--no-reconnect', '--bridge', s.path('bridge.sock')]); // -q: no link-state lines
    await fe.untilStderr(/listening on/);
    await server.kill('SIGTERM');
    const { code } = await fe.exited;
    expect(code).to.equal(1);
    expect(fe.stderr.split('\n').filter((l) => l.length > 0 && !l.includes('listening on'))).to.deep.equal([
      `vshm-console-frontend: server at ${s.server} went away`,
    ]);
  });
});
