/**
 * End to end (issue 9 item 2): a back-end offering queues larger than the shared memory can hold
 * (`--queue-size 1024` on the §7.1 server's 64 KiB) no longer leaves the front-end waiting for
 * ever: it picks the largest power of two that fits the rings and its 4 KiB receive buffers
 * (§4.6 step 3) and the console works both ways.
 */
import { expect } from 'chai';
import { useScratch } from './e2e-procs.js';

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
});
