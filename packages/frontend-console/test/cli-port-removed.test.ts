/**
 * `vshm-console-frontend --port NAME -- COMMAND` (the CLI's main(), in this process) when the
 * device removes that port (DEVICE_REMOVE, §7.2 — hot-unplug, which a conforming device may do)
 * while the command is still writing: the write that can no longer complete errors the port
 * stream, and that must end the attachment, not the process with an uncaught exception.
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IvshmemServer, openBackend } from '@vshm/transport';
import { ConsoleControlEvent, encodeConsoleControl } from 'virtio-spec-types';
import { main } from '../src/cli.js';
import { TestConsoleDevice } from './fixtures/test-console-device.js';
import { until } from '../../transport/test/fixtures/until.js';

describe('vshm-console-frontend main(): the device removes the port under a command', function () {
  this.timeout(60_000);
  let dir: string;
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A server and a back-end with one named port, `org.test.removed`; the server socket's path. */
  async function backend(): Promise<{ socketPath: string; device: TestConsoleDevice }> {
    dir = mkdtempSync(join(tmpdir(), 'vshm-fe-removed-'));
    const socketPath = join(dir, 'vshm.sock');
    const server = new IvshmemServer({ socketPath, memorySize: 256 * 1024, maxPeers: 2, vectors: 3, protocol: 0x8003 });
    await server.start();
    cleanups.push(() => server.stop());
    const device = new TestConsoleDevice({ ports: [null, 'org.test.removed'] });
    const { peer, transport } = await openBackend(socketPath, device);
    cleanups.push(async () => {
      await transport.close();
      peer.close();
    });
    return { socketPath, device };
  }

  it('the command gets EOF and main() returns; nothing is thrown', async () => {
    const { socketPath, device } = await backend();
    // Writes without pause until its stdin ends, so a write is pending when the port goes.
    const cmd = '(while :; do echo 0123456789abcdef; done) & cat >/dev/null; kill $!';
    const status = main(['-S', socketPath, '-q', '--port', 'org.test.removed', '--no-pty', '--', '/bin/sh', '-c', cmd]);
    await until(() => device.output[1].length > 100_000, 'the command writing on the named port');
    device.control(encodeConsoleControl(1, ConsoleControlEvent.DEVICE_REMOVE, 0));
    expect(await status).to.equal(0); // cat saw EOF, the shell killed the writer and exited 0
  });

  it('a bridge (--bridge) on that port ends with 1 instead of serving a port that is gone', async () => {
    const { socketPath, device } = await backend();
    const bridge = join(dir, 'bridge.sock');
    const status = main(['-S', socketPath, '-q', '--port', 'org.test.removed', '--bridge', bridge]);
    await until(() => existsSync(bridge), 'the bridge socket');
    device.control(encodeConsoleControl(1, ConsoleControlEvent.DEVICE_REMOVE, 0));
    expect(await status).to.equal(1);
    expect(existsSync(bridge), 'bridge socket removed on the way out').to.equal(false);
  });
  it('the default port 0 removed under a bridge: exits 1 the same way (port 0 is unplugged like any port)', async () => {
    const { socketPath, device } = await backend();
    const bridge = join(dir, 'bridge0.sock');
    const status = main(['-S', socketPath, '-q', '--bridge', bridge]);
    await until(() => existsSync(bridge), 'the bridge socket');
    device.control(encodeConsoleControl(0, ConsoleControlEvent.DEVICE_REMOVE, 0));
    expect(await status).to.equal(1);
    expect(existsSync(bridge), 'bridge socket removed on the way out').to.equal(false);
  });
});
