import { expect } from 'chai';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY } from 'virtio-spec-types';
import { MemoryView } from '../../src/ring/memory.js';
import { packedRingAddresses } from '../../src/ring/ring-layout.js';
import { DriverQueue } from '../../src/ring/driver-queue.js';
import { MockDevice } from '../../src/testing/mock-device.js';
import { ArgumentError } from '../../src/errors.js';
import { countStores } from '../fixtures/count-stores.js';

function setup(size = 8, opts: { eventIdx?: boolean; indirect?: boolean } = {}) {
  const mem = new MemoryView(new ArrayBuffer(65536));
  const q = packedRingAddresses(size, 0x100);
  const drv = new DriverQueue<string>({ ...q, memory: mem, eventIdx: opts.eventIdx ?? false, indirect: opts.indirect ?? false });
  const dev = new MockDevice(mem, q);
  return { mem, q, drv, dev };
}

describe('DriverQueue', () => {
  it('posts a multi-segment chain the device sees, and collects (token, len)', () => {
    const { mem, drv, dev } = setup();
    mem.u8.set([1, 2, 3, 4], 0x2000);
    const head = drv.add([0x2000, 2, 0x2002, 2], [0x3000, 8, 0x3100, 8], 'req');
    expect(head).to.equal(0);
    expect(drv.numFree).to.equal(4);
    expect(dev.popAvail()).to.equal(null); // not yet published
    expect(drv.publish()).to.equal(true);
    const c = dev.popAvail()!;
    expect(c).to.deep.equal({ head, readable: [[0x2000, 2], [0x2002, 2]], writable: [[0x3000, 8], [0x3100, 8]], indirect: false });
    expect([...dev.readAll(c)]).to.deep.equal([1, 2, 3, 4]);
    dev.pushUsed(head, 10);
    expect(drv.getUsed()).to.equal(undefined); // not published
    dev.publish();
    const got: [string, number][] = [];
    expect(drv.collect((t, len) => got.push([t, len]))).to.equal(1);
    expect(got).to.deep.equal([['req', 10]]);
    expect(drv.numFree).to.equal(8);
    expect(drv.inFlightCount).to.equal(0);
  });

  it('recycles descriptors through the private free list across many out-of-order completions', () => {
    const { drv, dev } = setup(8);
    const live = new Map<number, string>();
    let seq = 0;
    for (let round = 0; round < 2000; round++) {
      while (drv.numFree >= 2) {
        const tok = `t${seq++}`;
        const h = drv.add([0x2000, 4], [0x3000, 16], tok);
        expect(h).to.be.at.least(0);
        live.set(h, tok);
      }
      expect(drv.add([0x2000, 4], [0x3000, 4, 0x3004, 4], 'x')).to.equal(-1);
      drv.publish();
      const chains = [];
      for (let c = dev.popAvail(); c; c = dev.popAvail()) chains.push(c);
      chains.reverse().forEach((c, k) => k % 2 === 0 && dev.pushUsed(c.head, 16));
      dev.publish();
      drv.collect((tok) => {
        const h = [...live].find(([, t]) => t === tok)![0];
        live.delete(h);
      });
      // complete the rest too
      chains.forEach((c, k) => k % 2 === 1 && dev.pushUsed(c.head, 0));
      dev.publish();
      drv.collect((tok) => {
        const h = [...live].find(([, t]) => t === tok)![0];
        live.delete(h);
      });
      if (live.size !== 0 || drv.numFree !== 8) expect.fail(`round ${round}: leak (${live.size} live, ${drv.numFree} free)`);
    }
  });

  it('add1 fast path and indirect chains', () => {
    const { drv, dev } = setup(4, { indirect: true });
    expect(drv.add1(0x2000, 64, false, 'tx')).to.equal(0);
    expect(drv.addIndirect([0x2000, 8], [0x3000, 32, 0x3100, 32], 'ind', 0x1000)).to.equal(1);
    expect(drv.numFree).to.equal(2);
    drv.publish();
    expect(dev.popAvail()).to.deep.equal({ head: 0, readable: [[0x2000, 64]], writable: [], indirect: false });
    const c = dev.popAvail()!;
    expect(c).to.deep.equal({ head: 1, readable: [[0x2000, 8]], writable: [[0x3000, 32], [0x3100, 32]], indirect: true });
    dev.pushUsed(1, 64);
    dev.pushUsed(0, 0);
    dev.publish();
    expect(drv.getUsed()).to.equal('ind');
    expect(drv.lastLen).to.equal(64);
    expect(drv.getUsed()).to.equal('tx');
    expect(drv.getUsed()).to.equal(undefined);
  });

  it('add2 posts a readable + writable pair exactly as add() does, and recycles both descriptors', () => {
    const a = setup(4);
    const b = setup(4);
    for (let round = 0; round < 6; round++) {
      const ha = a.drv.add([0x2000, 64], [0x3000, 32], `r${round}`);
      const hb = b.drv.add2(0x2000, 64, 0x3000, 32, `r${round}`);
      expect(hb).to.equal(ha);
      expect(b.drv.numFree).to.equal(a.drv.numFree);
      a.drv.publish();
      b.drv.publish();
      expect([...b.mem.u8.subarray(0x100, 0x400)]).to.deep.equal([...a.mem.u8.subarray(0x100, 0x400)]); // same rings
      const c = b.dev.popAvail()!;
      expect(c).to.deep.equal({ head: hb, readable: [[0x2000, 64]], writable: [[0x3000, 32]], indirect: false });
      a.dev.popAvail();
      a.dev.pushUsed(ha, 32);
      b.dev.pushUsed(hb, 32);
      a.dev.publish();
      b.dev.publish();
      expect(b.drv.getUsed()).to.equal(`r${round}`);
      expect(b.drv.lastLen).to.equal(32);
      a.drv.getUsed();
      expect(b.drv.numFree).to.equal(4);
    }
    b.drv.add2(0x2000, 4, 0x3000, 4, 'x');
    b.drv.add2(0x2000, 4, 0x3000, 4, 'y');
    expect(b.drv.add2(0x2000, 4, 0x3000, 4, 'z')).to.equal(-1); // two descriptors needed, none free
    expect(() => b.drv.add2(65530, 100, 0x3000, 4, 'a')).to.throw(ArgumentError);
    expect(() => b.drv.add2(0x2000, 4, 0x3000, 4, undefined as unknown as string)).to.throw(ArgumentError);
  });

  it('leaves an avail entry alone when it already holds the head (the device keeps its cached line)', () => {
    const { drv, dev, q } = setup(4);
    const L = drv.layout;
    // Count the engine's plain stores into the available ring's entries.
    const entryStores = countStores(drv, 'u16', L.availRingU16, L.availRingU16 + q.size);
    // One request at a time: the FIFO free list hands out heads 0, 1, 2, 3, 0, … and avail slot s
    // takes head s, pass after pass. The first pass writes slots 1–3 (slot 0 holds 0 already,
    // zeroed); every later pass finds each slot holding its head and writes nothing.
    for (let round = 0; round < 12; round++) {
      expect(drv.add1(0x2000, 8, false, `r${round}`)).to.equal(round % 4);
      drv.publish();
      const c = dev.popAvail()!;
      expect(c.head).to.equal(round % 4);
      dev.pushUsed(c.head, 0);
      dev.publish();
      expect(drv.getUsed()).to.equal(`r${round}`);
      if (round === 3) expect(entryStores.count).to.equal(3);
    }
    expect(entryStores.count).to.equal(3);
    // Completions out of order change the order heads come back in: slots get other heads, written.
    const h = [drv.add1(0x2000, 8, false, 'a'), drv.add1(0x2100, 8, false, 'b')];
    drv.publish();
    expect(h).to.deep.equal([0, 1]);
    const [ca, cb] = [dev.popAvail()!, dev.popAvail()!];
    dev.pushUsed(cb.head, 0);
    dev.pushUsed(ca.head, 0);
    dev.publish();
    expect([drv.getUsed(), drv.getUsed()]).to.deep.equal(['b', 'a']);
    // Free list now 2, 3, 1, 0: slots 2 and 3 hold 2 and 3 already, so only a change is written.
    const before = entryStores.count;
    for (const tok of ['c', 'd', 'e', 'f']) drv.add1(0x2000, 8, false, tok);
    drv.publish();
    expect([dev.popAvail()!.head, dev.popAvail()!.head, dev.popAvail()!.head, dev.popAvail()!.head]).to.deep.equal([2, 3, 1, 0]);
    expect(entryStores.count - before).to.equal(2); // slot 0 ← 1, slot 1 ← 0
  });

  it('leaves a descriptor alone when it already holds the values, and rewrites one that does not', () => {
    const { drv, dev, mem } = setup(4);
    const L = drv.layout;
    const descStores = countStores(drv, 'u32', L.descU32, L.descU32 + 4 * 4);
    // One request at a time: the FIFO free list alternates the pairs (0, 1) and (2, 3).
    let rounds = 0;
    const round = (tag: string): void => {
      const head = (rounds++ % 2) * 2;
      expect(drv.add2(0x2000, 64, 0x3000, 64, tag)).to.equal(head);
      drv.publish();
      const c = dev.popAvail()!;
      expect(c).to.deep.equal({ head, readable: [[0x2000, 64]], writable: [[0x3000, 64]], indirect: false });
      dev.pushUsed(c.head, 64);
      dev.publish();
      expect(drv.getUsed()).to.equal(tag);
    };
    round('first');
    round('second');
    expect(descStores.count).to.equal(16); // four descriptors, four words each
    // The same request again (same heads, buffers and lengths): nothing to write.
    for (let i = 0; i < 6; i++) round(`same ${i}`);
    expect(descStores.count).to.equal(16);
    // A device that scribbled on any word of a descriptor meanwhile gets it written back in full.
    for (const word of [0, 1, 2, 3]) {
      mem.u32[L.descU32 + word] ^= 0x40;
      const before = descStores.count;
      round(`scribbled word ${word}, pair (0, 1)`);
      round(`pair (2, 3)`);
      expect(descStores.count - before).to.equal(4);
    }
    // Another buffer is another value: written.
    const before = descStores.count;
    expect(drv.add2(0x2100, 64, 0x3000, 64, 'other')).to.equal(0);
    drv.publish();
    expect(dev.popAvail()!.readable).to.deep.equal([[0x2100, 64]]);
    expect(descStores.count - before).to.equal(4);
  });

  it('checks its arguments', () => {
    const { drv } = setup(4);
    expect(() => drv.add([0x2000], null, 'a')).to.throw(ArgumentError);
    expect(() => drv.add(null, null, 'a')).to.throw(ArgumentError);
    expect(() => drv.add([65530, 100], null, 'a')).to.throw(ArgumentError);
    expect(() => drv.add([0x2000, 4], null, undefined as unknown as string)).to.throw(ArgumentError);
    expect(() => drv.addIndirect([0x2000, 4], null, 'a', 0x1000)).to.throw(ArgumentError); // not negotiated
    const mem = new MemoryView(new ArrayBuffer(4096));
    expect(() => new DriverQueue({ size: 6, desc: 0, avail: 256, used: 512, memory: mem, eventIdx: false, indirect: false })).to.throw(ArgumentError);
    expect(() => new DriverQueue({ size: 8, desc: 8, avail: 256, used: 512, memory: mem, eventIdx: false, indirect: false })).to.throw(ArgumentError);
  });

  it('flags mode: kick honours used.flags NO_NOTIFY; callbacks toggle avail.flags', () => {
    const { drv, dev } = setup();
    drv.add1(0x2000, 4, false, 'a');
    expect(drv.kick()).to.equal(true);
    dev.setUsedFlags(VIRTQ_USED_F_NO_NOTIFY);
    drv.add1(0x2000, 4, false, 'b');
    expect(drv.kick()).to.equal(false);
    expect(drv.kick()).to.equal(false); // nothing new
    drv.disableCallbacks();
    expect(dev.availFlags()).to.equal(VIRTQ_AVAIL_F_NO_INTERRUPT);
    dev.pushUsed(dev.popAvail()!.head, 0);
    dev.publish();
    expect(drv.enableCallbacks()).to.equal(true); // pending: collect now, no interrupt will come
    expect(dev.availFlags()).to.equal(0);
  });

  it('EVENT_IDX: used_event follows collection, kick follows avail_event', () => {
    const { drv, dev } = setup(8, { eventIdx: true });
    dev.setAvailEvent(1); // device: "kick me when avail.idx passes 1"
    drv.add1(0x2000, 4, false, 'a');
    expect(drv.kick()).to.equal(false); // 0 → 1 does not pass event 1
    drv.add1(0x2000, 4, false, 'b');
    expect(drv.kick()).to.equal(true); // 1 → 2 passes it
    dev.pushUsed(dev.popAvail()!.head, 0);
    dev.pushUsed(dev.popAvail()!.head, 0);
    dev.publish();
    expect(drv.collect(() => {})).to.equal(2);
    expect(dev.usedEvent()).to.equal(2);
    drv.disableCallbacks();
    expect(dev.usedEvent()).to.equal(1);
    expect(drv.enableCallbacks()).to.equal(false);
    expect(dev.usedEvent()).to.equal(2);
  });

  it('failAll returns every in-flight token and stops the queue', () => {
    const { drv } = setup(4);
    drv.add1(0x2000, 4, false, 'a');
    drv.add1(0x2000, 4, true, 'b');
    drv.publish();
    expect(drv.inFlightTokens()).to.deep.equal(['a', 'b']);
    expect(drv.failAll()).to.deep.equal(['a', 'b']);
    expect(drv.inFlightCount).to.equal(0);
    expect(drv.add1(0x2000, 4, false, 'c')).to.equal(-1);
    expect(drv.publish()).to.equal(false);
  });
});
