/**
 * End to end: kill -9 of the back-end, then a new back-end — the front-end (a vshm FE waits and
 * recovers, §4.10) carries data again, including what was written while the back-end was gone.
 */
import { expect } from 'chai';
import { createConnection, type Socket } from 'node:net';
import { useScratch } from './e2e-procs.js';
import { until } from './e2e-system.js';

describe('console front-end e2e: back-end kill -9 and restart', function () {
  let client: Socket | null = null;
  afterEach(() => {
    client?.destroy();
    client = null;
  });
  const s = useScratch(this); // cleans up after the hook above

  it('recovers and data flows again both ways', async () => {
    await s.startServer();
    const be1 = await s.startBackend([], { name: 'backend-1' });
    const bridge = s.path('bridge.sock');
    const fe = s.startFrontend(['--bridge', bridge], { env: { ...process.env, DEBUG: 'vshm:console-fe' } });
    await fe.untilStderr(/listening on/);
    let got = '';
    const c = createConnection(bridge);
    client = c;
    c.on('data', (d: Buffer) => {
      got += d.toString();
    });
    await new Promise<void>((resolve) => c.once('connect', () => resolve()));

    be1.child.stdin?.write('one\n');
    c.write('up\n');
    await be1.until(() => be1.stdout.toString().includes('up\n'), 'first back-end output');
    await until(() => got.includes('one\n'), 'first back-end input');

    // Link-state line of the back-end (issue 10 item 5).
    await be1.untilStderr(/vshm-console-backend: front-end connected \(features 0x[0-9a-f]+\)/);

    await be1.kill('SIGKILL');
    await fe.untilStderr(/remove: /); // the driver saw the back-end go (§4.10 failure)
    await fe.untilStderr(/vshm-console-frontend: back-end lost, waiting\n/);
    c.write('gap\n'); // written while no back-end is there: held, then sent to the next one

    const be2 = await s.startBackend([], { name: 'backend-2' });
    be2.child.stdin?.write('two\n');
    await until(() => got.includes('two\n'), 'second back-end input');
    c.write('back\n');
    await be2.until(() => be2.stdout.toString().includes('back\n'), 'second back-end output');
    // 'gap' exactly once and before 'back'. ('up' could only come again if the first back-end
    // died between writing it out and reporting it used — then re-sending it is the contract.)
    expect(be2.stdout.toString()).to.match(/^(up\n)?gap\nback\n$/);
    // What the front-end re-sent on recovery: 'gap\n', and 'up\n' in the case above.
    const resent = be2.stdout.toString().startsWith('up\n') ? 7 : 4;
    expect(fe.stderr).to.include(`vshm-console-frontend: back-end back, ${resent} bytes re-sent\n`);
    expect(fe.running).to.equal(true);
  });
});

