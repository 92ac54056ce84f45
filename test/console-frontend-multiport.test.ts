/**
 * End to end with MULTIPORT: the back-end adds a named port (`--port log`, bridged to a UNIX
 * socket by the back-end); `vshm-console-frontend --port log -- COMMAND` finds it by PORT_NAME
 * (the driver reads max_nr_ports before setting up queues) and runs the command on it.
 */
import { expect } from 'chai';
import { createConnection } from 'node:net';
import { readFileSync } from 'node:fs';
import { until, useScratch } from './e2e-procs.js';

/** A file's text, or '' while it does not exist. */
function readOr(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
}

describe('console front-end e2e: --port NAME (MULTIPORT)', function () {
  const sockets: { destroy(): void }[] = [];
  afterEach(() => {
    for (const c of sockets.splice(0)) c.destroy();
  });
  const s = useScratch(this); // cleans up after the hook above

  it('runs a command on the named port; the console port stays separate', async () => {
    await s.startServer();
    const logSock = s.path('log.sock');
    const be = await s.startBackend(['--port', 'log', '--port-socket', `log=${logSock}`]);
    const c = createConnection(logSock);
    sockets.push(c);
    let got = '';
    const done = new Promise<void>((resolve) => {
      c.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.includes('on-log\n')) resolve();
      });
    });
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    const fe = s.startFrontend(['--port', 'log', '--no-pty', '--', '/bin/sh', '-c', 'echo on-log']);
    await done;
    const { code } = await fe.exited;
    expect(code).to.equal(0);
    expect(got).to.equal('on-log\n');
    expect(be.stdout.toString()).to.not.include('on-log'); // not on the console port
  });

  it('says which names the back-end has while it waits for one it lacks, and stops cleanly', async () => {
    await s.startServer();
    await s.startBackend(['--port', 'log', '--port', 'mon']);
    const fe = s.startFrontend(['--port', 'nope', '--no-pty', '--', '/bin/true']);
    await fe.untilStderr(/waiting for port 'nope'/);
    // Both names are announced right after DRIVER_OK, normally long before the note is due (a
    // very slow machine may list fewer: what it lists must be what the back-end has).
    const m = /waiting for port 'nope'; the back-end's named ports so far: (.*)\n/.exec(fe.stderr);
    expect(m, fe.stderr).to.not.equal(null);
    const listed = (m as RegExpExecArray)[1];
    if (listed !== 'none') expect(listed).to.match(/^'(log|mon)' \(\d+\)(, '(log|mon)' \(\d+\))?$/);
    expect(fe.stderr.split('\n').filter((l) => l.length > 0)).to.have.length(1);
    fe.child.kill('SIGTERM');
    const { code } = await fe.exited;
    expect(code).to.equal(0);
  });

  /** `--port-exec NAME=cat > TAG-NAME.out` for each name, in that order (ids 1, 2, …). */
  const ports = (order: string[], tag: string): string[] => order.flatMap((n) => ['--port-exec', `${n}=cat > ${s.path(`${tag}-${n}.out`)}`]);

  /**
   * A back-end with ports a and b, a front-end bridging --port a, bytes through it; then the
   * back-end stops and `held-for-a;` is written, which the front-end keeps while no back-end is there.
   */
  async function heldForA(): Promise<{ fe: ReturnType<typeof s.startFrontend>; c: ReturnType<typeof createConnection> }> {
    await s.startServer();
    const be1 = await s.startBackend(ports(['a', 'b'], 'be1'), { name: 'backend1' });
    const bridge = s.path('a.sock');
    const fe = s.startFrontend(['--port', 'a', '--bridge', bridge]);
    await fe.untilStderr(/listening on/);
    const c = createConnection(bridge);
    sockets.push(c);
    c.write('before;');
    await until(() => readOr(s.path('be1-a.out')) === 'before;', 'the first bytes on port a');
    be1.child.kill('SIGTERM');
    await be1.exited;
    await fe.untilStderr(/back-end lost/);
    c.write('held-for-a;');
    return { fe, c };
  }

  it('a back-end restarted with its ports in another order: --port a ends with one line, what it held for a never reaches b', async () => {
    const { fe } = await heldForA();
    await s.startBackend(ports(['b', 'a'], 'be2'), { name: 'backend2' }); // port 1 is b now
    await fe.untilStderr(/port a was removed by the back-end/);
    const { code } = await fe.exited;
    expect(code).to.equal(1);
    expect(readOr(s.path('be2-b.out'))).to.equal('');
    expect(readOr(s.path('be2-a.out'))).to.equal('');
  });

  it('a back-end restarted with the same ports: what --port a held goes to the new a, once, in order', async () => {
    const { fe, c } = await heldForA();
    await s.startBackend(ports(['a', 'b'], 'be2'), { name: 'backend2' });
    await until(() => readOr(s.path('be2-a.out')) === 'held-for-a;', 'the held bytes on the new port a');
    c.write('after;');
    await until(() => readOr(s.path('be2-a.out')) === 'held-for-a;after;', 'later bytes on port a');
    expect(readOr(s.path('be2-b.out'))).to.equal('');
    expect(fe.running).to.equal(true);
  });
});
