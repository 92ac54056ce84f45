/**
 * vshm-console-backend: console input it read but no front-end ever took is lost when it exits —
 * it says so in one line (how many bytes), -q or not, instead of dropping them silently.
 */
import { expect } from 'chai';
import { BACKEND_BIN, useScratch } from './e2e-procs.js';

const CHUNK = 64 * 1024;

describe('vshm-console-backend: input never delivered', function () {
  const s = useScratch(this);

  for (const quiet of [false, true]) {
    it(`SIGTERM with read input no front-end took: one line with the byte count${quiet ? ' (-q too)' : ''}, exit 0`, async () => {
      await s.startServer();
      // The debug line says when its input buffer is full (it read 64 KiB and stopped reading).
      const be = s.spawn('backend', BACKEND_BIN, ['-S', s.server, ...(quiet ? ['-q'] : [])], { env: { ...process.env, DEBUG: 'vshm:console-be' } });
      const chunk = Buffer.alloc(CHUNK, 0x61);
      for (let i = 0; i < 4; i++) be.write(chunk);
      await be.untilStderr(/port 0: \d+ input bytes wait for the driver, input paused/);
      be.child.kill('SIGTERM');
      expect(await be.exited, be.stderr).to.deep.equal({ code: 0, signal: null });
      const m = /^vshm-console-backend: (\d+) bytes of console input were never delivered \(no front-end took them\)$/m.exec(be.stderr);
      expect(m, be.stderr).to.not.equal(null);
      expect(Number(m![1])).to.be.at.least(CHUNK);
    });
  }

  it('nothing read, nothing to say: a SIGTERM without input prints no such line', async () => {
    await s.startServer();
    const be = await s.startBackend();
    be.child.kill('SIGTERM');
    expect((await be.exited).code).to.equal(0);
    expect(be.stderr).to.not.match(/never delivered/);
  });
});
