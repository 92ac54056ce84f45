/**
 * End to end (issue 9 item 2): a back-end offering queues larger than the shared memory can hold
 * (`--queue-size 1024` on the §7.1 server's 64 KiB) no longer leaves the front-end waiting for
 * ever: it picks the largest power of two that fits the rings and its 4 KiB receive buffers
 * (§4.6 step 3) and the console works both ways. And the back-end's default size follows the
 * region (branch autoq): on `-l 1M` it offers 64 and the front-end takes it.
 */
import { expect } from 'chai';
import { SERVER_BIN, useScratch } from './e2e-procs.js';

describe('console e2e: queue size chosen by the front-end', function () {
  const s = useScratch(this);

  it('server -l 64K, back-end --queue-size 1024: the front-end runs its command both ways', async () => {
    await s.startServer();
    const be = await s.startBackend(['--queue-size', '1024']);
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo ready; read line; echo "got $line"']);
    await be.until(() => be.stdout.toString().includes('ready\n'), 'the command output at the back-end');
    be.child.stdin?.write('typed\n');
    const { code } = await fe.exited;
    expect(code).to.equal(0);
    await be.until(() => be.stdout.toString().includes('got typed\n'), 'the typed line echoed back');
    expect(fe.stderr).to.not.match(/no shared memory|device error/);
  });

  it('server -l 1M, back-end default (--queue-size auto): 64 offered and taken, the front-end runs its command both ways', async () => {
    const server = s.spawn('server', SERVER_BIN, ['-l', '1M', '-n', '2', '-V', '3', '-P', '0x8003', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const be = await s.startBackend([], { env: { DEBUG: 'vshm:console-be' } });
    await be.untilStderr(/queue size 64 \(auto: R\/W section of 1044480 bytes\)/);
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo ready; read line; echo "got $line"'], {
      env: { ...process.env, DEBUG: 'vshm:virtio:fe' },
    });
    await be.until(() => be.stdout.toString().includes('ready\n'), 'the command output at the back-end');
    be.child.stdin?.write('typed\n');
    const { code } = await fe.exited;
    expect(code).to.equal(0);
    await be.until(() => be.stdout.toString().includes('got typed\n'), 'the typed line echoed back');
    expect(fe.stderr).to.match(/queue 0: size 64 \(offered 64\)/);
    expect(fe.stderr).to.match(/queue 1: size 64 \(offered 64\)/);
  });
});
