/**
 * The real `vshm-console-backend` CLI and `vshm-server`, fronted by a double of a Linux guest's
 * virtio_console over virtio_ivshmem (packages/backend-console/test/fixtures/linux-like-console.ts)
 * in this process: compatibility goal (b) across processes, with the §7.1 sizing for Linux
 * guests (-l 1M) and the Jailhouse-default 8-entry queues.
 */
import { expect } from 'chai';
import { IvshmemPeer } from '../packages/transport/src/ivshmem/peer.js';
import { LinuxLikeConsole } from '../packages/backend-console/test/fixtures/linux-like-console.js';
import { SERVER_BIN, until, useScratch } from './e2e-procs.js';

describe('vshm-console-backend fronted by a Linux-like guest (real processes)', function () {
  const s = useScratch(this);
  const peers: IvshmemPeer[] = [];
  afterEach(() => {
    for (const p of peers.splice(0)) p.close();
  });

  async function guest(): Promise<LinuxLikeConsole> {
    const peer = await IvshmemPeer.connect(s.server);
    peer.on('error', () => undefined);
    peers.push(peer);
    const g = new LinuxLikeConsole(peer);
    await g.start();
    return g;
  }

  it('carries input and output, and serves the next guest after a power-off', async () => {
    const server = s.spawn('server', SERVER_BIN, ['-l', '1M', '-n', '2', '-V', '3', '-P', '0x8003', '-S', s.server]);
    await server.untilStderr(/listening on/);
    const be = await s.startBackend(['--size', '100x30']);

    const g1 = await guest();
    expect([g1.cols, g1.rows]).to.deep.equal([100, 30]);
    expect(g1.fe.mode).to.equal('per-queue');
    expect(g1.portError).to.equal(null);
    await g1.write(Buffer.from('guest login: '));
    await be.untilStdout(/guest login: /);
    be.write('root\n');
    await until(() => g1.text() === 'root\n', 'the typed line in the guest');
    expect(g1.discarded).to.equal(0);
    const long = 'x'.repeat(5000) + '\n'; // three ≤ 2048-byte transmit buffers
    await g1.write(Buffer.from(long));
    await be.untilStdout(/x{5000}\n/);
    await g1.fe.powerOff(); // status 0 completed by the back-end, then PEER_GONE
    peers.splice(0);

    be.write('typed between guests\n'); // kept for the next guest (§7.3)
    const g2 = await guest();
    await g2.write(Buffer.from('second boot: '));
    await be.untilStdout(/second boot: /);
    await until(() => g2.text() === 'typed between guests\n', 'the buffered input in the second guest');
    expect(be.running).to.equal(true);
  });
});
