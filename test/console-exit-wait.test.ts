/**
 * What happens while a console CLI waits at exit for its output to be taken (`exitAfterOutput`,
 * 2 s at most without progress): the process is still running then, so whatever else comes in
 * that window — a failure that recurs, a stdout that breaks — must not turn the exit into
 * something else.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, until, useScratch } from './e2e-procs.js';
import { takesNoMore } from './e2e-pty.js';

const THROWER = join(ROOT, 'test/fixtures/throw-on-sigusr2.mjs');

describe('console CLIs: the exit wait', function () {
  const s = useScratch(this);

  it('vshm-console-backend: an uncaught exception that recurs while the exit waits prints one stack, exit 1', async () => {
    await s.startServer();
    const be = await s.startBackend(['--drop-blocked-output', '100'], { env: { NODE_OPTIONS: `--import=${THROWER}` } });
    // stdout stalls (not read): the exit then waits for it, the full bound.
    be.child.stdout!.pause();
    s.startFrontend(['--no-pty', '--', '/bin/sh', '-c', 'yes']);
    await be.untilStderr(/port 0: the host side has pushed back for 100 ms/);
    be.child.kill('SIGUSR2');
    await be.until(() => !be.running, 'the back-end to exit');
    be.child.stdout!.resume();
    await be.exited;
    expect(be.exitCode).to.equal(1);
    const stacks = be.stderr.match(/internal error: Error: injected failure/g) ?? [];
    expect(stacks, be.stderr.slice(0, 2000)).to.have.length(1);
  });

  it('vshm-console-frontend: a stdout that breaks while the exit waits for it (EPIPE) ends nothing else: exit 0, no stack', async () => {
    await s.startServer();
    const be = await s.startBackend();
    // The front-end's stdout is a FIFO the test opens but never reads: it fills and stays full.
    const fifo = s.path('fe-stdout');
    expect(spawnSync('mkfifo', [fifo]).status).to.equal(0);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    let readerOpen = true;
    try {
      const writer = openSync(fifo, constants.O_WRONLY);
      const fe = s.startFrontend([], { stdio: ['pipe', writer, 'pipe'] });
      closeSync(writer);
      await be.untilStderr(/front-end connected/);
      be.write(Buffer.alloc(8 << 20, 0x78)); // far more than the FIFO and every buffer before it hold
      await until(() => takesNoMore(fifo), "the front-end's stdout full");
      fe.child.kill('SIGTERM');
      // The device reset of the front-end's orderly exit: its terminal attachment has let go of
      // stdout, and what it wrote there is still queued; the exit now waits for it.
      await be.untilStderr(/front-end left/);
      closeSync(reader); // the reader goes away: the queued write fails with EPIPE
      readerOpen = false;
      const { code } = await fe.exited;
      expect(fe.stderr, fe.stderr).to.not.match(/EPIPE|Error:/);
      expect(code).to.equal(0);
    } finally {
      if (readerOpen) closeSync(reader);
    }
  });
});
