/**
 * End to end, real processes: vshm-server + vshm-console-backend (stdin/stdout piped, no
 * terminal) + vshm-console-frontend in `--bridge` mode. 10 MiB of random bytes each way,
 * compared by SHA-256.
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';
import { useScratch } from './e2e-procs.js';

const SIZE = 10 * 1024 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('console front-end e2e: 10 MiB both ways through --bridge', function () {
  let client: Socket | null = null;
  afterEach(() => {
    client?.destroy();
    client = null;
  });
  const s = useScratch(this, 240_000); // cleans up after the hook above

  it('carries random binary payloads both ways unchanged', async () => {
    await s.startServer();
    const be = await s.startBackend();
    const bridge = s.path('bridge.sock');
    const fe = s.startFrontend(['--bridge', bridge]);
    await fe.untilStderr(/listening on/);

    const toFrontend = randomBytes(SIZE); // back-end stdin → port → socket client
    const toBackend = randomBytes(SIZE); // socket client → port → back-end stdout
    const hash = createHash('sha256');
    let received = 0;
    const c = createConnection(bridge);
    client = c;
    const gotAll = new Promise<void>((resolve, reject) => {
      c.on('data', (d: Buffer) => {
        hash.update(d);
        received += d.length;
        if (received >= SIZE) resolve();
      });
      c.on('error', reject);
    });
    await new Promise<void>((resolve) => c.once('connect', () => resolve()));
    c.write(toBackend);
    be.child.stdin?.write(toFrontend);

    await gotAll;
    await be.until(() => be.stdoutLength >= SIZE, 'all bytes on the back-end stdout', 200_000);
    expect(received).to.equal(SIZE);
    expect(hash.digest('hex')).to.equal(sha(toFrontend));
    expect(be.stdoutLength).to.equal(SIZE);
    expect(sha(be.stdout)).to.equal(sha(toBackend));
    expect(fe.running).to.equal(true);
  });
});
