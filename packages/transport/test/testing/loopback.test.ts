/**
 * The in-process loopback pair (spec §3 device model), beyond the §8 checklist (its item 19–22
 * cases are in conformance/19–22): ids and protocols, options, self-doorbells, coalescing,
 * peer-state, pending events after close, simulateServerGone.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { createLoopbackPair, simulateServerGone } from '../../src/testing/loopback.js';
import type { IvshmemDevice } from '../../src/ivshmem/device.js';
import { ArgumentError, LayoutError } from '../../src/errors.js';
import { drain, record, useLoopbackPair } from '../fixtures/device-rigs.js';

describe('loopback pair (spec §3 device model)', () => {
  const rig = useLoopbackPair();

  it('has ids 0/1, maxPeers 2, protocols rewritten per §1.5 and one shared window', () => {
    const [be, fe] = rig.pair;
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

  it('a doorbell to self is delivered', async () => {
    const [be] = rig.pair;
    const got = record(be);
    be.doorbell(0, 1);
    await drain();
    expect(got).to.deep.equal([1]);
  });

  it('coalesces doorbells like an eventfd: one event per vector', async () => {
    const [be, fe] = rig.pair;
    const got = record(be);
    fe.doorbell(0, 1);
    fe.doorbell(0, 1);
    fe.doorbell(0, 2);
    fe.doorbell(0, 1);
    await drain();
    expect(got.sort()).to.deep.equal([1, 2]);
  });

  it('reports peer-state even while interrupts are disabled', async () => {
    const [be, fe] = rig.pair;
    const p = once(fe, 'peer-state');
    be.setState(1);
    expect(await p).to.deep.equal([0, 1]);
  });

  it('a closed device delivers nothing already pending', async () => {
    const [be, fe] = rig.pair;
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
