/**
 * End to end: the link-state lines of the one CLI voice (issue 10 item 5) — the back-end says
 * when a front-end connects (with the negotiated features) and leaves, -q silences that; a
 * front-end facing a stalled back-end (READY but not completing header transactions: SIGSTOP)
 * prints one line per timed-out attempt and gives up with exit 1, or keeps waiting with
 * --wait-forever. Waits for lines and exits only; the transaction timeout is made short.
 */
import { expect } from 'chai';
import { BACKEND_BIN, useScratch, type Proc } from './e2e-procs.js';

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

describe('console e2e: link-state lines', function () {
  const s = useScratch(this);
  let stopped: Proc | null = null;
  afterEach(() => {
    // A stopped back-end ignores SIGTERM until continued: let the cleanup end it.
    stopped?.child.kill('SIGCONT');
    stopped = null;
  });

  it('back-end: "front-end connected (features 0x…)" then "front-end left (…)"; -q silences both', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo hi']);
    expect((await fe.exited).code).to.equal(0);
    await be.untilStderr(/front-end left/);
    const link = lines(be.stderr).filter((l) => /front-end/.test(l));
    expect(link).to.have.length(2);
    expect(link[0]).to.match(/^vshm-console-backend: front-end connected \(features 0x[0-9a-f]+\)$/);
    expect(link[1]).to.equal('vshm-console-backend: front-end left (device reset by the driver)');
    await be.stop();

    // -q also silences the "serving" line startBackend() waits for: wait for the transport's
    // debug line instead (debug output is not the CLI's voice and ignores -q).
    const quiet = s.spawn('backend-q', BACKEND_BIN, ['-S', s.server, '-q'], { env: { ...process.env, DEBUG: 'vshm:virtio:be' } });
    await quiet.untilStderr(/header initialised/);
    const fe2 = s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'echo hi']);
    expect((await fe2.exited).code).to.equal(0);
    await quiet.until(() => quiet.stdout.toString().includes('hi\n'), 'output of the second front-end');
    await quiet.stop();
    expect(lines(quiet.stderr).filter((l) => l.startsWith('vshm-console-backend:'))).to.deep.equal([]);
  });

  it('front-end: a stalled back-end is one line per timed-out attempt, then exit 1', async () => {
    await s.startServer();
    const be = await s.startBackend();
    stopped = be;
    be.child.kill('SIGSTOP'); // READY in the state table, but it will not complete any transaction
    const fe = s.startFrontend(['--transaction-timeout', '150', '--stall-retries', '2', '--bridge', s.path('bridge.sock')]);
    const { code } = await fe.exited;
    expect(code).to.equal(1);
    const stall = lines(fe.stderr).filter((l) => !l.includes('listening on'));
    expect(stall).to.have.length(2);
    expect(stall[0]).to.match(
      /^vshm-console-frontend: back-end not answering: write transaction at header offset 0x[0-9a-f]+ not completed within 150 ms; retrying \(1 of 2\)$/,
    );
    expect(stall[1]).to.match(/; giving up after 2 attempts \(--wait-forever to keep waiting\)$/);
  });

  it('front-end: --wait-forever keeps retrying a stalled back-end', async () => {
    await s.startServer();
    const be = await s.startBackend();
    stopped = be;
    be.child.kill('SIGSTOP');
    const fe = s.startFrontend(['--transaction-timeout', '100', '--wait-forever', '--bridge', s.path('bridge.sock')]);
    await fe.untilStderr(/retrying \(4 of unlimited\)/);
    expect(fe.running).to.equal(true);
  });
});
