/**
 * What happens while a console CLI waits at exit for its output to be taken (`exitAfterOutput`,
 * at most 2 s): the process is still running then, so whatever else comes in that window — a
 * failure that recurs, a stdout that breaks — must not turn the exit into something else.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { ROOT, useScratch } from './e2e-procs.js';

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
});
