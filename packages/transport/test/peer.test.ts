/**
 * IvshmemPeer against a fake server in the same process (spec §1.8, §2, §3; checklist items
 * 16, 17, 19–22). The fake holds its own copies of every eventfd and maps the state table, so it
 * sees exactly what the peer signals and stores.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import binding from '@vshm/addon';
import { LayoutError, ProtocolError } from '../src/errors.js';
import { IvshmemPeer, type PeerOptions } from '../src/ivshmem/peer.js';
import { FakeServer, countFds } from './fixtures/peer-fake-server.js';

const b = binding;
const WAIT_MS = 20000;

/** Event-driven wait: re-check `pred` once per event-loop turn, bounded by a generous timeout. */
async function until(pred: () => boolean, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** An eventfd's counter without consuming it (fdinfo prints it in hex). */
function eventfdCount(fd: number): number {
  const m = /eventfd-count:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`fd ${fd} is not an eventfd`);
  return parseInt(m[1], 16);
}

describe('IvshmemPeer with a fake server (spec §1.8, §3)', () => {
  let fake: FakeServer;
  let mem: number;
  let table: Uint32Array;
  /** efd[id][v]: the fake server's copy of each eventfd. */
  let efd: number[][];
  let peer: IvshmemPeer | undefined;
  const clientFds = (): number => countFds() - fake.ownedCount;

  beforeEach(() => {
    fake = new FakeServer(b);
    mem = fake.memfd(65536);
    const tableBuf = b.mmap(mem, 0, 4096, b.PROT_READ | b.PROT_WRITE);
    table = new Uint32Array(tableBuf);
    efd = [0, 1].map(() => [0, 1, 2].map(() => fake.eventfd()));
    peer = undefined;
  });
  afterEach(() => {
    peer?.close();
    b.munmap(table.buffer as ArrayBuffer);
    fake.close();
  });

  /** INIT for id 1 of 2 with 3 vectors, then the standard burst (peer 0's fds, then own). */
  function sendBurst(init: Record<string, number> = {}): void {
    fake.init({ id: 1, maxPeers: 2, vectors: 3, protocol: 0x8003, ...init }, mem);
    for (const id of [0, 1]) for (let v = 0; v < 3; v++) fake.eventFd(id, v, efd[id][v]);
  }

  async function connect(opts: PeerOptions = {}): Promise<IvshmemPeer> {
    sendBurst();
    peer = await IvshmemPeer.fromSocket(fake.cli, { binding: b, ...opts });
    return peer;
  }

  function record(p: IvshmemPeer): number[] {
    const got: number[] = [];
    p.onInterrupt = (v) => got.push(v);
    p.interruptsEnabled = true;
    return got;
  }

  it('resolves after the initial burst with the INIT values and the mapping', async () => {
    const p = await connect();
    expect([p.id, p.maxPeers, p.vectors, p.protocol]).to.deep.equal([1, 2, 3, 0x8003]);
    expect(p.layout.size).to.equal(65536);
    expect(p.window.byteLength).to.equal(65536 - 4096);
    expect(p.fullProtection).to.equal(true);
    expect([p.isPresent(0), p.isPresent(1), p.isPresent(2)]).to.deep.equal([true, true, false]);
    // The window aliases [4096, S) of the memory object.
    new Uint8Array(p.window)[0] = 0x5a;
    const check = b.mmap(mem, 4096, 4096, b.PROT_READ);
    expect(new Uint8Array(check)[0]).to.equal(0x5a);
    b.munmap(check);
  });

  it('rejects connect on a protocol error, closing every received fd and the socket', async () => {
    const before = clientFds();
    fake.init({ id: 1, vectors: 3 }, mem);
    fake.eventFd(0, 0, efd[0][0]);
    fake.eventFd(0, 2, efd[0][2]); // out of order
    let err: unknown;
    await IvshmemPeer.fromSocket(fake.cli, { binding: b }).catch((e) => (err = e));
    expect(err).to.be.instanceOf(ProtocolError);
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_EVENTFD_ORDER');
    expect(clientFds()).to.equal(before - 1); // the socket was ours; nothing else remains
    expect(fake.clientWrote()).to.equal(false);
  });

  it('rejects connect when the burst stays incomplete (timeout)', async () => {
    fake.init({ id: 1, vectors: 3 }, mem);
    let err: unknown;
    await IvshmemPeer.fromSocket(fake.cli, { binding: b, timeoutMs: 200 }).catch((e) => (err = e));
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_BURST_TIMEOUT');
  });

  it('rejects connect on EOF before the burst (no free ID, §1.4)', async () => {
    fake.hangUp();
    let err: unknown;
    await IvshmemPeer.fromSocket(fake.cli, { binding: b }).catch((e) => (err = e));
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_SERVER_EOF');
  });

  it('refuses a layout that is not page-aligned unless reduced protection is accepted (§2)', async () => {
    fake.init({ id: 1, vectors: 1, outputSectionSize: 1000 }, mem);
    fake.eventFd(1, 0, efd[1][0]);
    let err: unknown;
    await IvshmemPeer.fromSocket(fake.cli, { binding: b }).catch((e) => (err = e));
    expect(err).to.be.instanceOf(LayoutError);
    expect((err as LayoutError).code).to.equal('VSHM_ERR_LAYOUT_ALIGN');

    const f2 = new FakeServer(b);
    try {
      f2.init({ id: 1, vectors: 1, outputSectionSize: 1000 }, mem);
      f2.eventFd(1, 0, efd[1][0]);
      peer = await IvshmemPeer.fromSocket(f2.cli, { binding: b, acceptReducedProtection: true });
      expect(peer.fullProtection).to.equal(false);
      expect(peer.layout.rwSize).to.equal(65536 - 4096 - 2000);
    } finally {
      peer?.close();
      f2.close();
    }
  });

  it('doorbell writes 1 to exactly the target eventfd; absent targets and bad vectors are ignored (item 19)', async () => {
    const p = await connect();
    p.doorbell(0, 1);
    p.doorbell(0, 3);
    p.doorbell(0, -1);
    p.doorbell(2, 0);
    p.doorbell(7, 1);
    p.doorbell(0, 0.5);
    expect(efd[0].map(eventfdCount)).to.deep.equal([0, 1, 0]);
    p.doorbell(0, 1);
    expect(eventfdCount(efd[0][1])).to.equal(2);
  });

  it('delivers an event on its own vector only, after clearing the eventfd', async () => {
    const p = await connect();
    const got = record(p);
    b.eventfdWrite(efd[1][2], 1);
    await until(() => got.length === 1, 'interrupt');
    expect(got).to.deep.equal([2]);
    expect(eventfdCount(efd[1][2])).to.equal(0);
    p.doorbell(1, 1); // doorbell to self
    await until(() => got.length === 2, 'self interrupt');
    expect(got).to.deep.equal([2, 1]);
  });

  it('discards events while disabled and clears the enable bit in one-shot mode (item 21)', async () => {
    const p = await connect();
    const got: number[] = [];
    p.onInterrupt = (v) => got.push(v);
    b.eventfdWrite(efd[1][1], 1);
    await until(() => eventfdCount(efd[1][1]) === 0, 'event consumed');
    p.interruptsEnabled = true;
    p.oneShot = true;
    b.eventfdWrite(efd[1][2], 1);
    await until(() => got.length === 1, 'interrupt');
    expect(got).to.deep.equal([2]); // the discarded vector 1 was not latched
    expect(p.interruptsEnabled).to.equal(false);
    b.eventfdWrite(efd[1][1], 1);
    await until(() => eventfdCount(efd[1][1]) === 0, 'event consumed');
    p.interruptsEnabled = true;
    b.eventfdWrite(efd[1][2], 1);
    await until(() => got.length === 2, 'second interrupt');
    expect(got).to.deep.equal([2, 2]);
  });

  it('setState stores the entry and signals vector 0 of other present peers only on change (item 20)', async () => {
    const p = await connect();
    p.setState(1);
    expect(Atomics.load(table, 1)).to.equal(1);
    expect(p.state).to.equal(1);
    expect(b.eventfdRead(efd[0][0])).to.equal(1);
    p.setState(1);
    expect(eventfdCount(efd[0][0])).to.equal(0);
    p.setState(7);
    expect(Atomics.load(table, 1)).to.equal(7);
    expect(eventfdCount(efd[0][0])).to.equal(1);
    expect(efd[0].slice(1).map(eventfdCount)).to.deep.equal([0, 0]);
  });

  it("reports a partner's state change on vector 0, even with interrupts disabled", async () => {
    const p = await connect();
    const ev = once(p, 'peer-state');
    Atomics.store(table, 0, 1);
    b.eventfdWrite(efd[1][0], 1);
    expect(await ev).to.deep.equal([0, 1]);
    expect(p.peerState(0)).to.equal(1);
  });

  it('PEER_GONE closes the peer eventfds, emits peer-gone and fires the own vector 0 (item 22)', async () => {
    const p = await connect();
    const got = record(p);
    Atomics.store(table, 0, 1);
    const before = clientFds();
    const gone = once(p, 'peer-gone');
    fake.peerGone(0);
    expect(await gone).to.deep.equal([0]);
    await until(() => got.length === 1, 'vector 0');
    expect(got).to.deep.equal([0]);
    expect(clientFds()).to.equal(before - 3);
    expect(p.isPresent(0)).to.equal(false);
    expect(p.peerState(0)).to.equal(0); // absent peers read 0
    p.doorbell(0, 1);
    expect(eventfdCount(efd[0][1])).to.equal(0);
  });

  it('never writes to the socket (item 17)', async () => {
    const p = await connect();
    p.setState(1);
    p.doorbell(0, 1);
    fake.peerGone(0);
    await once(p, 'peer-gone');
    expect(fake.clientWrote()).to.equal(false);
    p.close();
    expect(fake.clientWrote()).to.equal(false); // EOF only, never data
  });

  it('reports server EOF and treats the other peers as gone, keeping the mapping (item 17)', async () => {
    const p = await connect();
    const order: string[] = [];
    p.on('server-gone', () => order.push('server-gone'));
    p.on('peer-gone', (id: number) => order.push(`peer-gone ${id}`));
    fake.hangUp();
    await until(() => order.length === 2, 'server-gone and peer-gone');
    expect(order).to.deep.equal(['server-gone', 'peer-gone 0']);
    expect(p.isPresent(0)).to.equal(false);
    expect(p.window.byteLength).to.equal(61440);
    p.setState(1); // the own state can still be written
    expect(Atomics.load(table, 1)).to.equal(1);
  });

  it('keeps the other peers on server EOF when asked to (§1.8 MAY)', async () => {
    const p = await connect({ keepPeersOnServerGone: true });
    fake.hangUp();
    await once(p, 'server-gone');
    expect(p.isPresent(0)).to.equal(true);
    p.doorbell(0, 2);
    expect(eventfdCount(efd[0][2])).to.equal(1);
  });

  it('reports a protocol error after connect as error then close, releasing everything', async () => {
    const before = clientFds();
    const p = await connect();
    const events: string[] = [];
    let err: unknown;
    p.on('error', (e) => {
      err = e;
      events.push('error');
    });
    p.on('close', () => events.push('close'));
    fake.peerGone(1); // own id
    await until(() => events.length === 2, 'error and close');
    expect(events).to.deep.equal(['error', 'close']);
    expect((err as ProtocolError).code).to.equal('VSHM_ERR_PEER_GONE_ID');
    expect(clientFds()).to.equal(before - 1);
    expect(p.window.byteLength).to.equal(0);
  });

  it('close() resets the state, releases every fd and mapping and is idempotent', async () => {
    const before = clientFds();
    const p = await connect();
    p.setState(1);
    p.interruptsEnabled = true;
    let closes = 0;
    p.on('close', () => closes++);
    p.close();
    p.close();
    expect(closes).to.equal(1);
    expect(p.interruptsEnabled).to.equal(false);
    expect(Atomics.load(table, 1)).to.equal(0);
    expect(p.window.byteLength).to.equal(0);
    expect(p.stateTable.length).to.equal(0);
    expect(clientFds()).to.equal(before - 1);
    expect(p.isPresent(1)).to.equal(false);
    p.doorbell(0, 1); // no-op after close
    expect(eventfdCount(efd[0][1])).to.equal(0);
    expect(b.recvMsg(fake.srv, 1, 0)?.bytes.length).to.equal(0); // the fake sees EOF
  });
});
