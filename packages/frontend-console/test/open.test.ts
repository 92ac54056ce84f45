/**
 * openConsole() against an embedded IvshmemServer and a back-end opened with openBackend (real
 * peers, addon and eventfds in one process): data, whenReady, close, the start-order error and
 * `wait`, a missing server.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemServer, openBackend } from '@vshm/transport';
import { describeOpenError, openConsole, type Console } from '../src/index.js';
import { TestConsoleDevice } from './fixtures/test-console-device.js';
import { until } from '../../transport/test/fixtures/until.js';

describe('openConsole (embedded server, real peers)', function () {
  this.timeout(60_000);
  let dir: string;
  let socketPath: string;
  let server: IvshmemServer;
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vshm-fe-open-'));
    socketPath = join(dir, 'vshm.sock');
    server = new IvshmemServer({ socketPath, memorySize: 64 * 1024, maxPeers: 2, vectors: 3, protocol: 0x8003 });
    await server.start();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startBackend(): Promise<TestConsoleDevice> {
    const device = new TestConsoleDevice({ emergWrite: true });
    const { peer, transport } = await openBackend(socketPath, device);
    cleanups.push(async () => {
      await transport.close();
      peer.close();
    });
    return device;
  }

  function track(con: Console): Console {
    cleanups.push(() => con.close());
    return con;
  }

  it('connects as the front-end and moves data both ways', async () => {
    const device = await startBackend();
    const con = track(await openConsole({ socketPath }));
    await con.whenReady();
    expect(con.driver.size).to.deep.equal({ cols: 80, rows: 24 });
    let got = '';
    con.port.on('data', (d: Buffer) => (got += d.toString()));
    con.port.write('ping');
    device.send(0, Buffer.from('pong'));
    await until(() => got === 'pong' && device.output[0].toString() === 'ping', 'both directions');
    await con.driver.emergencyWrite(0x41);
    expect(device.emergency).to.deep.equal([0x41]);
  });

  it('refuses the back-end role with VSHM_ERR_ROLE and a clear line', async () => {
    const err = await openConsole({ socketPath }).then(
      () => null,
      (e: unknown) => e as Error & { code: string },
    );
    expect(err?.code).to.equal('VSHM_ERR_ROLE');
    expect(describeOpenError(err, socketPath)).to.match(/^connected as peer 0 \(back-end role, protocol 0xC003\): start the back-end first/);
  });

  it('wait: retries until the back-end holds peer 0', async () => {
    let retries = 0;
    let backendStarted: Promise<TestConsoleDevice> | null = null;
    const opening = openConsole({
      socketPath,
      wait: true,
      retryMs: 20,
      onRetry: () => {
        retries++;
        // Start the back-end from the retry hook: we are disconnected here, so it gets peer 0.
        backendStarted ??= startBackend();
      },
    });
    const con = track(await opening);
    await con.whenReady();
    expect(retries).to.be.at.least(1);
    const device = await (backendStarted as unknown as Promise<TestConsoleDevice>);
    con.port.write('waited');
    await until(() => device.output[0].toString() === 'waited', 'output');
  });

  it('a missing server rejects with ENOENT', async () => {
    const missing = join(dir, 'nothing.sock');
    const err = await openConsole({ socketPath: missing }).then(
      () => null,
      (e: unknown) => e as Error & { code: string },
    );
    expect(err?.code).to.equal('ENOENT');
    expect(describeOpenError(err, missing)).to.equal(`cannot connect to ${missing}: ENOENT (no such file or directory); start vshm-server first`);
  });
});
