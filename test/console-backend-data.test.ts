/**
 * vshm-console-backend end to end with the real CLIs and a real server: bytes into the back-end's
 * stdin reach a front-end's command, its output comes back on the back-end's stdout; the back-end
 * survives kill -9 of its front-end; the embedded server is created and removed.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { IvshmemPeer } from '@vshm/transport';
import { useScratch, BACKEND_BIN, FRONTEND_BIN, ROOT, type Proc } from './e2e-procs.js';

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

  /**
   * A back-end with --drop-blocked-output 200 whose stdout reader stalls (the pipe fills and pushes
   * back) while the front-end's command prints 4 MB: resolves once it discards.
   */
  async function stalledStdout(): Promise<Proc> {
    await s.startServer();
    const be = await s.startBackend(['--drop-blocked-output', '200']);
    s.startFrontend(['--no-pty', '--', '/bin/sh']);
    const p1 = probe();
    be.write(p1.cmd);
    await be.untilStdout(p1.answer);
    be.child.stdout!.pause();
    be.write('head -c 4000000 /dev/zero | tr "\\0" x; echo\n');
    await be.untilStderr(/port 0: the host side has pushed back for 200 ms; discarding the front-end's output until it has taken what waits/);
    return be;
  }

  it('--drop-blocked-output: a stdout nobody reads costs the front-end its output after that long, counted, and not its input', async () => {
    const be = await stalledStdout();
    // The front-end was not held: its command went on, and its next output is discarded as well.
    be.child.stdout!.resume();
    await be.untilStderr(/port 0: the host side has caught up; \d+ bytes of output were discarded/);
    const dropped = Number(/caught up; (\d+) bytes/.exec(be.stderr)![1]);
    expect(dropped).to.be.greaterThan(0);
    // Input kept flowing throughout, and output is written again.
    const p2 = probe();
    be.write(p2.cmd);
    await be.untilStdout(p2.answer);
    expect(be.running).to.equal(true);
  });

  it('--drop-blocked-output: a stdout reader that goes away while output is discarded is not reported as reading again', async () => {
    const be = await stalledStdout();
    // The reader closes its end: the pending write fails (EPIPE) and the port lets go of stdout.
    be.child.stdout!.destroy();
    await be.untilStderr(/write to stdout: .*console output is dropped from now on/);
    expect(be.stderr).to.match(/port 0: the host side went away; \d+ bytes of output were discarded/);
    expect(be.stderr).to.not.match(/the host side has caught up/);
    expect(be.running).to.equal(true);
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
    // No --wait: the line comes once the back-end holds peer 0, so the front-end gets peer 1.
    const fe = s.spawn('frontend', FRONTEND_BIN, ['-S', sock, '--no-pty', '--', '/bin/sh']);
    const p = probe();
    be.write(p.cmd);
    await be.untilStdout(p.answer);
    be.child.kill('SIGTERM');
    expect((await be.exited).code).to.equal(0);
    expect(be.stderr.trim().split('\n')).to.have.length(1);
    fe.child.kill('SIGKILL');
  });

  it('the embedded server line comes once the back-end holds peer 0: a peer started on it gets peer 1, even when the back-end is slow to connect', async () => {
    // The real CLI (run()) with its connect stretched by a second, as a loaded machine may do:
    // patched in this child only. The line used to come before the connect, and a front-end
    // started on it took peer 0 and ended the back-end ("start the back-end first").
    const code = [
      "import { IvshmemPeer } from '@vshm/transport';",
      'const connect = IvshmemPeer.connect;',
      'IvshmemPeer.connect = async function slowConnect(...args) {',
      '  await new Promise((resolve) => setTimeout(resolve, 1000));',
      '  return connect.apply(this, args);',
      '};',
      `const { run } = await import(${JSON.stringify(join(ROOT, 'packages/backend-console/src/cli.ts'))});`,
      "await run(['--embedded', '-q']);",
    ].join('\n');
    const be = s.spawn('backend', '--import', ['tsx', '--input-type=module', '-e', code], { cwd: ROOT });
    await be.untilStderr(/embedded server listening on \S+;/);
    const sock = /embedded server listening on (\S+?);/.exec(be.stderr)![1];
    const peer = await IvshmemPeer.connect(sock);
    try {
      expect(peer.id, be.stderr).to.equal(1);
    } finally {
      peer.close();
    }
    expect(be.running, be.stderr).to.equal(true);
  });
});
