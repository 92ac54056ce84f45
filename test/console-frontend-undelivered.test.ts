/**
 * vshm-console-frontend: output it took from its attachment but no back-end ever acknowledged is
 * lost when it exits — it says so in one line (how many bytes), -q or not, instead of dropping
 * it silently.
 */
import { expect } from 'chai';
import { useScratch } from './e2e-procs.js';

describe('vshm-console-frontend: output never delivered', function () {
  const s = useScratch(this);

  for (const quiet of [false, true]) {
    it(`SIGTERM while the back-end is gone and output waits: one line with the byte count${quiet ? ' (-q too)' : ''}, exit 0`, async () => {
      await s.startServer();
      const be = await s.startBackend();
      const fe = s.startFrontend(quiet ? ['-q'] : [], { env: { ...process.env, DEBUG: 'vshm:console-fe' } });
      await be.untilStderr(/front-end connected/);
      await fe.untilStderr(/port 0: attached/);
      await be.kill('SIGKILL');
      // The session is over once the port let go of its queues.
      await fe.untilStderr(/port 0: detached/);
      fe.write('hello\n');
      await fe.untilStderr(/port 0: no session, 6 tx bytes held/);
      fe.child.kill('SIGTERM');
      expect(await fe.exited, fe.stderr).to.deep.equal({ code: 0, signal: null });
      expect(fe.stderr).to.match(/^vshm-console-frontend: 6 bytes of console output were never delivered \(the back-end did not take them\)$/m);
    });
  }

  it('everything delivered, nothing to say: SIGTERM after the back-end took the output', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const fe = s.startFrontend([]);
    await be.untilStderr(/front-end connected/);
    fe.write('hello\n');
    await be.untilStdout(/hello/);
    fe.child.kill('SIGTERM');
    expect((await fe.exited).code).to.equal(0);
    expect(fe.stderr).to.not.match(/never delivered/);
  });
});
