/**
 * The console bridges at the open-file limit (stop 23, H4 item 1): the back-end's `--port-socket`
 * and the front-end's `--bridge` (formerly `--socket`) accept through `listenOwnerOnly`, whose
 * clients wait in the backlog while accept() fails with EMFILE. Each CLI says why in one
 * rate-limited line naming the limit (the CLI kit's `acceptWarner`, the line
 * vshm-blk-frontend prints for its NBD socket), and the waiting client is served once a
 * descriptor is free. The limit is lowered on the running CLI with prlimit(1), as in
 * packages/frontend-blk/test/cli.test.ts.
 */
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { openConsole, type Console } from '@vshm/frontend-console';
import { hasPrlimit, lowerFdLimit } from '../packages/transport/test/fixtures/fd-limit.js';
import { useScratch, until, type Proc } from './e2e-procs.js';

function acceptLines(p: Proc): string[] {
  return p.stderr.split('\n').filter((l) => /cannot accept/.test(l));
}

const warning = (prog: string, path: string, limit: number): string =>
  `${prog}: warning: cannot accept a client on ${path}: EMFILE (too many open files); the open-file limit here is ${limit} (ulimit -n): clients wait and are served once descriptors are free`;

describe('console bridges at the open-file limit (prlimit on the running CLI)', function () {
  let con: Console | null = null;
  let client: Socket | null = null;
  afterEach(async () => {
    client?.destroy();
    client = null;
    await con?.close();
    con = null;
  });
  const s = useScratch(this); // cleans up after the hook above

  beforeEach(function () {
    if (!hasPrlimit()) {
      // eslint-disable-next-line no-console
      console.log("      (skipped: 'prlimit' is not installed — apt-get install util-linux)");
      this.skip();
    }
  });

  it('vshm-console-backend --port-socket: one warning line naming the limit; the waiting client is served once descriptors are free', async () => {
    await s.startServer();
    const path = s.path('port.sock');
    const be = await s.startBackend(['--port-socket', `org.vshm.sock=${path}`]);
    await until(() => {
      try {
        return statSync(path).isSocket();
      } catch {
        return false;
      }
    }, 'the port socket');
    // The front-end first: once the limit is low the back-end could not take its eventfds.
    con = await openConsole({ socketPath: s.server });
    await con.whenReady();
    const port = await con.driver.waitForPort('org.vshm.sock');
    let received = '';
    port.on('data', (c: Buffer) => (received += c.toString()));

    const [limit, restore] = lowerFdLimit(be.child.pid!);
    client = connect(path).on('error', () => undefined);
    client.write('waited\n');
    await be.untilStderr(/cannot accept a client/);
    restore();
    await until(() => received.includes('waited\n'), 'the waiting client\'s bytes at the front-end');
    expect(received).to.equal('waited\n');
    expect(acceptLines(be)).to.deep.equal([warning('vshm-console-backend', path, limit)]);
  });

  it('vshm-console-frontend --bridge: one warning line naming the limit; the waiting client is served once descriptors are free', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const path = s.path('bridge.sock');
    const fe = s.startFrontend(['--bridge', path]);
    await fe.untilStderr(/listening on/);

    const [limit, restore] = lowerFdLimit(fe.child.pid!);
    client = connect(path).on('error', () => undefined);
    client.write('waited\n');
    await fe.untilStderr(/cannot accept a client/);
    restore();
    // The bridge's bytes go to the console port, which the back-end CLI writes to its stdout.
    await be.untilStdout(/waited\n/);
    expect(acceptLines(fe)).to.deep.equal([warning('vshm-console-frontend', path, limit)]);
  });
});
