/**
 * vshm-console-backend end to end with the real CLIs and a real server: bytes into the back-end's
 * stdin reach a front-end's command, its output comes back on the back-end's stdout; the back-end
 * survives kill -9 of its front-end; the embedded server is created and removed.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { useScratch, BACKEND_BIN, FRONTEND_BIN } from './e2e-procs.js';

/** A shell command whose answer differs from its text: `echo m-$((a+b))` → `m-<sum>`. */
function probe(): { cmd: string; answer: RegExp } {
  const a = 1000 + Math.floor(Math.random() * 9000);
  const b = 1000 + Math.floor(Math.random() * 9000);
  return { cmd: `echo m-$((${a}+${b}))-ok\n`, answer: new RegExp(`m-${a + b}-ok`) };
}

describe('vshm-console-backend: data through real processes', function () {
  const s = useScratch(this);

  it('carries stdin to the front-end command and its output back to stdout', async () => {
    await s.startServer();
    const be = await s.startBackend(['--size', '80x24']);
    s.startFrontend(['--no-pty', '--', '/bin/sh']);
    const p1 = probe();
    be.write(p1.cmd);
    await be.untilStdout(p1.answer);
    // A bigger transfer: 3000 lines back through 8-entry queues.
    be.write('i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; echo done-$((1+1))\n');
    await be.untilStdout(/done-2/);
    const lines = be.stdoutText.split('\n').filter((l) => l.startsWith('line-'));
    expect(lines).to.have.length(3000);
    expect(lines[2999]).to.equal('line-2999');
  });

  it('serves the next front-end after kill -9 of the previous one', async () => {
    await s.startServer();
    // DEBUG shows when the device session ends: input written before that may still land in the
    // dead front-end's receive buffers (delivered, then lost with it), which is not what we test.
    const be = await s.startBackend([], { env: { DEBUG: 'vshm:console-be' } });
    const fe1 = s.startFrontend(['--no-pty', '--', '/bin/sh']);
    const p1 = probe();
    be.write(p1.cmd);
    await be.untilStdout(p1.answer);
    fe1.child.kill('SIGKILL');
    await fe1.exited;
    await be.untilStderr(/deactivate: driver-gone/);
    // Typed while no front-end is there: kept for the next one.
    const p2 = probe();
    be.write(p2.cmd);
    s.startFrontend(['--no-pty', '--', '/bin/sh']);
    await be.untilStdout(p2.answer);
    const p3 = probe();
    be.write(p3.cmd);
    await be.untilStdout(p3.answer);
    expect(be.running).to.equal(true);
  });

  it('runs an embedded server on a private socket and removes it on SIGTERM', async () => {
    const be = s.spawn('backend', BACKEND_BIN, ['--embedded', '--size', '100x30']);
    await be.untilStderr(/serving the console on/);
    const m = /embedded server listening on (\S+?);/.exec(be.stderr);
    expect(m, be.stderr).to.not.equal(null);
    const sock = m![1];
    expect(existsSync(sock)).to.equal(true);
    const fe = s.spawn('frontend', FRONTEND_BIN, ['-S', sock, '--no-pty', '--', '/bin/sh']);
    const p = probe();
    be.write(p.cmd);
    await be.untilStdout(p.answer);
    be.child.kill('SIGTERM');
    const { code } = await be.exited;
    expect(code).to.equal(0);
    expect(existsSync(sock)).to.equal(false);
    expect(existsSync(dirname(sock))).to.equal(false);
    fe.child.kill('SIGKILL');
  });

  it('-q with the embedded server still prints its socket path (and nothing else), so a front-end can find it', async () => {
    const be = s.spawn('backend', BACKEND_BIN, ['--embedded', '-q']);
    await be.untilStderr(/embedded server listening on \S+;/);
    const sock = /embedded server listening on (\S+?);/.exec(be.stderr)![1];
    // --wait: the back-end may not have taken peer 0 yet when the path appears.
    const fe = s.spawn('frontend', FRONTEND_BIN, ['-S', sock, '--wait', '--no-pty', '--', '/bin/sh']);
    const p = probe();
    be.write(p.cmd);
    await be.untilStdout(p.answer);
    be.child.kill('SIGTERM');
    expect((await be.exited).code).to.equal(0);
    expect(be.stderr.trim().split('\n')).to.have.length(1);
    fe.child.kill('SIGKILL');
  });
});
