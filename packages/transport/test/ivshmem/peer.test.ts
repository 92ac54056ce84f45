/**
 * IvshmemPeer against a fake server in the same process (spec §1.8, §2, §3), beyond the §8
 * checklist (items 17–22 are in conformance/17–22): connect, connect failures, layout checks,
 * event delivery, partner state, server EOF options, errors and close. The fake holds its own
 * copies of every eventfd and maps the state table, so it sees exactly what the peer does.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { fstatSync } from 'node:fs';
import binding from '@vshm/addon';
import { LayoutError, ProtocolError } from '../../src/errors.js';
import { IvshmemPeer } from '../../src/ivshmem/peer.js';
import { FakeServer } from '../fixtures/peer-fake-server.js';
import { eventfdCount, record, usePeerRig } from '../fixtures/device-rigs.js';
import { until } from '../fixtures/until.js';

const b = binding;

describe('IvshmemPeer with a fake server (spec §1.8, §3)', () => {
  const rig = usePeerRig();
  const { connect } = rig;

  it('resolves after the initial burst with the INIT values and the mapping', async () => {
    const p = await connect();
    expect([p.id, p.maxPeers, p.vectors, p.protocol]).to.deep.equal([1, 2, 3, 0x8003]);
    expect(p.layout.size).to.equal(65536);
    expect(p.window.byteLength).to.equal(65536 - 4096);
    expect(p.fullProtection).to.equal(true);
    expect([p.isPresent(0), p.isPresent(1), p.isPresent(2)]).to.deep.equal([true, true, false]);
    // The window aliases [4096, S) of the memory object.
    new Uint8Array(p.window)[0] = 0x5a;
    const check = b.mmap(rig.mem, 4096, 4096, b.PROT_READ);
    expect(new Uint8Array(check)[0]).to.equal(0x5a);
    b.munmap(check);
  });

  it("names the memory by the binding's fstat: device and inode as node:fs reports them for the real addon", async () => {
    const p = await connect();
    const st = fstatSync(rig.mem, { bigint: true });
    expect(b.fstat(rig.mem).dev).to.equal(st.dev);
    expect([p.memoryDev, p.memoryIno]).to.deep.equal([st.dev, Number(st.ino)]);
  });

  it("with a binding double, records the double's device and inode (never node:fs on the fd number)", async () => {
    const double = { ...b, fstat: (fd: number) => ({ ...b.fstat(fd), dev: 0xfe_0001n, ino: 4242 }) } as typeof b;
    const p = await connect({ binding: double });
    expect([p.memoryDev, p.memoryIno]).to.deep.equal([0xfe_0001n, 4242]);
  });

  it('rejects connect on a protocol error, closing every received fd and the socket', async () => {
    const before = rig.clientFds();
    rig.fake.init({ id: 1, vectors: 3 }, rig.mem);
    rig.fake.eventFd(0, 0, rig.efd[0][0]);
    rig.fake.eventFd(0, 2, rig.efd[0][2]); // out of order
    let err: unknown;
    await IvshmemPeer.fromSocket(rig.fake.cli, { binding: b }).catch((e) => (err = e));
    expect(err).to.be.instanceOf(ProtocolError);
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_EVENTFD_ORDER');
    expect(rig.clientFds()).to.equal(before - 1); // the socket was ours; nothing else remains
    expect(rig.fake.clientWrote()).to.equal(false);
  });

  it('fromSocket() owns the socket from the call on: bad options close it too', async () => {
    const before = rig.clientFds();
    let err: unknown;
    await IvshmemPeer.fromSocket(rig.fake.cli, { binding: b, timeoutMs: 0 }).catch((e) => (err = e));
    expect((err as Error).name).to.equal('ArgumentError');
    expect(rig.clientFds()).to.equal(before - 1);
  });

  it('rejects connect when the burst stays incomplete (timeout)', async () => {
    rig.fake.init({ id: 1, vectors: 3 }, rig.mem);
    let err: unknown;
    await IvshmemPeer.fromSocket(rig.fake.cli, { binding: b, timeoutMs: 200 }).catch((e) => (err = e));
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_BURST_TIMEOUT');
  });

  it('rejects connect on EOF before the burst (no free ID, §1.4)', async () => {
    rig.fake.hangUp();
    let err: unknown;
    await IvshmemPeer.fromSocket(rig.fake.cli, { binding: b }).catch((e) => (err = e));
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_SERVER_EOF');
  });

  it('refuses a layout that is not page-aligned unless reduced protection is accepted (§2)', async () => {
    rig.fake.init({ id: 1, vectors: 1, outputSectionSize: 1000 }, rig.mem);
    rig.fake.eventFd(1, 0, rig.efd[1][0]);
    let err: unknown;
    await IvshmemPeer.fromSocket(rig.fake.cli, { binding: b }).catch((e) => (err = e));
    expect(err).to.be.instanceOf(LayoutError);
    expect((err as LayoutError).code).to.equal('VSHM_ERR_LAYOUT_ALIGN');

    const f2 = new FakeServer(b);
    try {
      f2.init({ id: 1, vectors: 1, outputSectionSize: 1000 }, rig.mem);
      f2.eventFd(1, 0, rig.efd[1][0]);
      rig.peer = await IvshmemPeer.fromSocket(f2.cli, { binding: b, acceptReducedProtection: true });
      expect(rig.peer.fullProtection).to.equal(false);
      expect(rig.peer.layout.rwSize).to.equal(65536 - 4096 - 2000);
    } finally {
      rig.peer?.close();
      f2.close();
    }
  });

  it('delivers an event on its own vector only, after clearing the eventfd', async () => {
    const p = await connect();
    const got = record(p);
    b.eventfdWrite(rig.efd[1][2], 1);
    await until(() => got.length === 1, 'interrupt');
    expect(got).to.deep.equal([2]);
    expect(eventfdCount(rig.efd[1][2])).to.equal(0);
    p.doorbell(1, 1); // doorbell to self
    await until(() => got.length === 2, 'self interrupt');
    expect(got).to.deep.equal([2, 1]);
  });

  it("reports a partner's state change on vector 0, even with interrupts disabled", async () => {
    const p = await connect();
    const ev = once(p, 'peer-state');
    Atomics.store(rig.table, 0, 1);
    b.eventfdWrite(rig.efd[1][0], 1);
    expect(await ev).to.deep.equal([0, 1]);
    expect(p.peerState(0)).to.equal(1);
  });

  it('keeps the other peers on server EOF when asked to (§1.8 MAY)', async () => {
    const p = await connect({ keepPeersOnServerGone: true });
    rig.fake.hangUp();
    await once(p, 'server-gone');
    expect(p.isPresent(0)).to.equal(true);
    p.doorbell(0, 2);
    expect(eventfdCount(rig.efd[0][2])).to.equal(1);
  });

  it('reports a protocol error after connect as error then close, releasing everything', async () => {
    const before = rig.clientFds();
    const p = await connect();
    const events: string[] = [];
    let err: unknown;
    p.on('error', (e) => {
      err = e;
      events.push('error');
    });
    p.on('close', () => events.push('close'));
    rig.fake.peerGone(1); // own id
    await until(() => events.length === 2, 'error and close');
    expect(events).to.deep.equal(['error', 'close']);
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_PEER_GONE_ID');
    expect(rig.clientFds()).to.equal(before - 1);
    expect(p.window.byteLength).to.equal(0);
  });

  it('close() resets the state, releases every fd and mapping and is idempotent', async () => {
    const before = rig.clientFds();
    const p = await connect();
    p.setState(1);
    p.interruptsEnabled = true;
    let closes = 0;
    p.on('close', () => closes++);
    p.close();
    p.close();
    expect(closes).to.equal(1);
    expect(p.interruptsEnabled).to.equal(false);
    expect(Atomics.load(rig.table, 1)).to.equal(0);
    expect(p.window.byteLength).to.equal(0);
    expect(p.stateTable.length).to.equal(0);
    expect(rig.clientFds()).to.equal(before - 1);
    expect(p.isPresent(1)).to.equal(false);
    p.doorbell(0, 1); // no-op after close
    expect(eventfdCount(rig.efd[0][1])).to.equal(0);
    expect(b.recvMsg(rig.fake.srv, 1, 0)?.bytes.length).to.equal(0); // the rig.fake sees EOF
  });
});
