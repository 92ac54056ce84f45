import { expect } from 'chai';
import { once } from 'node:events';
import { createLoopbackPair, simulateServerGone } from '../src/ivshmem/loopback.js';
import type { IvshmemDevice } from '../src/ivshmem/device.js';
import { ArgumentError, LayoutError } from '../src/errors.js';

/** Resolves after every setImmediate queued so far (and those they queue, a few rounds deep) ran. */
async function drain(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

function record(dev: IvshmemDevice): number[] {
  const got: number[] = [];
  dev.onInterrupt = (v) => got.push(v);
  dev.interruptsEnabled = true;
  return got;
}

describe('loopback pair (spec §3 device model)', () => {
  let pair: [IvshmemDevice, IvshmemDevice];
  beforeEach(() => {
    pair = createLoopbackPair();
  });
  afterEach(() => {
    pair[0].close();
    pair[1].close();
  });

  it('has ids 0/1, maxPeers 2, protocols rewritten per §1.5 and one shared window', () => {
    const [be, fe] = pair;
    expect([be.id, fe.id, be.maxPeers, fe.maxPeers, be.vectors]).to.deep.equal([0, 1, 2, 2, 3]);
    expect(be.protocol).to.equal(0xc003);
    expect(fe.protocol).to.equal(0x8003);
    expect(be.window).to.equal(fe.window);
    expect(be.window.byteLength).to.equal(65536 - 4096);
    expect(be.layout.rwSize).to.equal(61440);
    new Uint8Array(fe.window)[100] = 7;
    expect(new Uint8Array(be.window)[100]).to.equal(7);
  });

  it('leaves protocols below 0x8000 unchanged and checks options', () => {
    const [a, b] = createLoopbackPair({ protocol: 0x1234, size: 8192 * 4, outputSectionSize: 4096 });
    expect([a.protocol, b.protocol]).to.deep.equal([0x1234, 0x1234]);
    expect(a.layout.rwSize).to.equal(32768 - 4096 - 8192);
    a.close();
    b.close();
    expect(() => createLoopbackPair({ vectors: 0 })).to.throw(ArgumentError);
    expect(() => createLoopbackPair({ size: 8192, outputSectionSize: 4096 })).to.throw(LayoutError);
  });

  it('a doorbell wakes only the targeted vector, asynchronously (§8 item 19)', async () => {
    const [be, fe] = pair;
    const got = record(be);
    const feGot = record(fe);
    fe.doorbell(0, 2);
    expect(got).to.deep.equal([]); // never synchronous
    await drain();
    expect(got).to.deep.equal([2]);
    expect(feGot).to.deep.equal([]);
    be.doorbell(1, 1);
    await drain();
    expect(feGot).to.deep.equal([1]);
    expect(got).to.deep.equal([2]);
  });

  it('ignores vectors out of range and absent targets', async () => {
    const [be, fe] = pair;
    const got = record(be);
    fe.doorbell(0, 3);
    fe.doorbell(0, -1);
    fe.doorbell(5, 0);
    fe.doorbell(0, 1.5);
    await drain();
    expect(got).to.deep.equal([]);
  });

  it('a doorbell to self is delivered', async () => {
    const [be] = pair;
    const got = record(be);
    be.doorbell(0, 1);
    await drain();
    expect(got).to.deep.equal([1]);
  });

  it('coalesces doorbells like an eventfd: one event per vector', async () => {
    const [be, fe] = pair;
    const got = record(be);
    fe.doorbell(0, 1);
    fe.doorbell(0, 1);
    fe.doorbell(0, 2);
    fe.doorbell(0, 1);
    await drain();
    expect(got.sort()).to.deep.equal([1, 2]);
  });

  it('discards events while interrupts are disabled (not latched) (§8 item 21)', async () => {
    const [be, fe] = pair;
    const got: number[] = [];
    be.onInterrupt = (v) => got.push(v);
    fe.doorbell(0, 1);
    await drain();
    be.interruptsEnabled = true;
    await drain();
    expect(got).to.deep.equal([]);
    fe.doorbell(0, 1);
    await drain();
    expect(got).to.deep.equal([1]);
  });

  it('one-shot mode clears the enable bit per delivered interrupt (§8 item 21)', async () => {
    const [be, fe] = pair;
    const got = record(be);
    be.oneShot = true;
    fe.doorbell(0, 1);
    fe.doorbell(0, 2);
    await drain();
    expect(got).to.have.length(1);
    expect(be.interruptsEnabled).to.equal(false);
    fe.doorbell(0, 1);
    await drain();
    expect(got).to.have.length(1);
    be.interruptsEnabled = true;
    fe.doorbell(0, 2);
    await drain();
    expect(got).to.have.length(2);
    expect(got[1]).to.equal(2);
    expect(be.interruptsEnabled).to.equal(false);
  });

  it('setState updates the entry and signals vector 0 of the partner only on change (§8 item 20)', async () => {
    const [be, fe] = pair;
    const got = record(fe);
    const seen: Array<[number, number]> = [];
    fe.on('peer-state', (id: number, s: number) => seen.push([id, s]));
    be.setState(1);
    expect(be.state).to.equal(1);
    expect(fe.peerState(0)).to.equal(1);
    await drain();
    expect(got).to.deep.equal([0]);
    expect(seen).to.deep.equal([[0, 1]]);
    be.setState(1); // no change: no signal
    await drain();
    expect(got).to.deep.equal([0]);
    be.setState(0);
    await drain();
    expect(got).to.deep.equal([0, 0]);
    expect(seen).to.deep.equal([[0, 1], [0, 0]]);
  });

  it('reports peer-state even while interrupts are disabled', async () => {
    const [be, fe] = pair;
    const p = once(fe, 'peer-state');
    be.setState(1);
    expect(await p).to.deep.equal([0, 1]);
  });

  it('close() emits close, zeroes the entry and delivers peer-gone + vector 0 to the partner (§8 item 22)', async () => {
    const [be, fe] = pair;
    be.setState(1);
    await drain();
    const got = record(fe);
    const gone = once(fe, 'peer-gone');
    const closed = once(be, 'close');
    be.interruptsEnabled = true;
    be.close();
    expect(be.interruptsEnabled).to.equal(false);
    expect(be.state).to.equal(0);
    expect(fe.peerState(0)).to.equal(0);
    await closed;
    expect(await gone).to.deep.equal([0]);
    await drain();
    expect(got).to.deep.equal([0]);
    expect(fe.isPresent(0)).to.equal(false);
    expect(fe.isPresent(1)).to.equal(true);
    expect(be.isPresent(0)).to.equal(false);
    fe.doorbell(0, 1); // doorbell to a gone peer: no-op, no throw
    be.close(); // idempotent
  });

  it('a closed device delivers nothing already pending', async () => {
    const [be, fe] = pair;
    const got = record(be);
    fe.doorbell(0, 1);
    be.close();
    await drain();
    expect(got).to.deep.equal([]);
  });
});

describe('loopback simulateServerGone (spec §1.8)', () => {
  it('emits server-gone, then peer-gone and vector 0; the partner is absent afterwards', async () => {
    const [be, fe] = createLoopbackPair();
    be.setState(1);
    await drain();
    const order: string[] = [];
    for (const d of [be, fe]) {
      d.on('server-gone', () => order.push(`${d.id} server-gone`));
      d.on('peer-gone', (id: number) => order.push(`${d.id} peer-gone ${id}`));
    }
    const got = record(fe);
    simulateServerGone(be, fe);
    expect(order).to.deep.equal(['0 server-gone', '0 peer-gone 1', '1 server-gone', '1 peer-gone 0']);
    await drain();
    expect(got).to.deep.equal([0]);
    expect(fe.isPresent(0)).to.equal(false);
    expect(fe.peerState(0)).to.equal(0);
    fe.doorbell(0, 1);
    be.setState(2);
    const beGot = record(be);
    await drain();
    expect(got).to.deep.equal([0]);
    expect(beGot).to.deep.equal([]);
    let gone = 0;
    fe.on('peer-gone', () => gone++);
    be.close();
    expect(gone).to.equal(0);
    fe.close();
    expect(() => simulateServerGone({} as IvshmemDevice)).to.throw(ArgumentError);
  });
});
