import { expect } from 'chai';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_NEXT } from 'virtio-spec-types';
import { MemoryView } from '../../src/ring/memory.js';
import { SplitRingLayout, packedRingAddresses, packedRingBytes } from '../../src/ring/ring-layout.js';
import { createAccessPolicy } from '../../src/ring/validation.js';
import { DeviceQueue } from '../../src/ring/device-queue.js';
import { MockDriver } from '../../src/testing/mock-driver.js';
import { ArgumentError, RingError } from '../../src/errors.js';
import { countStores } from '../fixtures/count-stores.js';

const RING_BASE = 0x100;

function setup(size = 8, opts: { eventIdx?: boolean; indirect?: boolean } = {}) {
  const mem = new MemoryView(new ArrayBuffer(65536));
  const q = packedRingAddresses(size, RING_BASE);
  const policy = createAccessPolicy({ rwSize: 65536, outputSectionSize: 0, ownPeer: 0 });
  const dev = new DeviceQueue({ ...q, memory: mem, policy, eventIdx: opts.eventIdx ?? false, indirect: opts.indirect ?? false });
  const drv = new MockDriver(mem, q);
  return { mem, q, dev, drv };
}

describe('split ring layout', () => {
  it('pins golden field offsets for size 8 (VIRTIO 1.2 §2.7)', () => {
    const q = packedRingAddresses(8, 0x1000);
    expect(q).to.deep.equal({ size: 8, desc: 0x1000, avail: 0x1080, used: 0x1098 });
    expect(packedRingBytes(8)).to.equal(0x98 + 70);
    const L = new SplitRingLayout(q);
    expect(L.descU32 * 4).to.equal(0x1000);
    expect([L.availFlagsOff, L.availIdxOff, L.availRingU16 * 2, L.usedEventOff]).to.deep.equal([0x1080, 0x1082, 0x1084, 0x1094]);
    expect([L.usedFlagsOff, L.usedIdxOff, L.usedRingU32 * 4, L.availEventOff]).to.deep.equal([0x1098, 0x109a, 0x109c, 0x10dc]);
    expect([L.descBytes, L.availBytes, L.usedBytes]).to.deep.equal([128, 22, 70]);
  });
});

describe('DeviceQueue', () => {
  it('does not rewrite a used element that already holds (head, len): the driver keeps its cached line', () => {
    const { dev, drv, q } = setup(4);
    const L = dev.layout;
    const elemStores = countStores(dev, 'u32', L.usedRingU32, L.usedRingU32 + 2 * q.size);
    const used: { id: number; len: number }[] = [];
    for (let round = 0; round < 8; round++) {
      const h = drv.addChain([{ addr: 0x3000, len: 16, write: true }]);
      drv.publish();
      const c = dev.pop()!;
      expect(c.head).to.equal(h);
      dev.push(c.head, 16);
      dev.publish();
      used.push(...drv.readUsed());
    }
    expect(used).to.deep.equal(Array.from({ length: 8 }, () => ({ id: 0, len: 16 })));
    // The first pass over the four slots writes each len (0 → 16; id 0 is there already), the second none.
    expect(elemStores.count).to.equal(4);
    const h = drv.addChain([{ addr: 0x3000, len: 16, write: true }]);
    drv.publish();
    dev.push(dev.pop()!.head, 5);
    dev.publish();
    expect(drv.readUsed()).to.deep.equal([{ id: h, len: 5 }]);
    expect(elemStores.count).to.equal(5);
  });

  it('returns null on an empty ring', () => {
    const { dev } = setup();
    expect(dev.pop()).to.equal(null);
    expect(dev.hasAvailable()).to.equal(false);
  });

  it('pops a multi-segment chain, copies across segments, pushes and publishes', () => {
    const { mem, dev, drv } = setup();
    mem.u8.set([1, 2, 3], 0x2000);
    mem.u8.set([4, 5, 6, 7, 8], 0x2100);
    const head = drv.addChain([
      { addr: 0x2000, len: 3 },
      { addr: 0x2100, len: 5 },
      { addr: 0x3000, len: 4, write: true },
      { addr: 0x3100, len: 4, write: true },
    ]);
    drv.publish();
    const c = dev.pop()!;
    expect(c.head).to.equal(head);
    expect([c.readableLength, c.writableLength, c.segmentCount, c.readableCount]).to.deep.equal([8, 8, 4, 2]);
    const buf = new Uint8Array(10);
    expect(c.read(buf)).to.equal(8);
    expect([...buf.subarray(0, 8)]).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    const part = new Uint8Array(4);
    expect(c.read(part, 2)).to.equal(4);
    expect([...part]).to.deep.equal([3, 4, 5, 6]);
    expect(c.write(Uint8Array.from([9, 9, 9, 9, 9, 9]), 1)).to.equal(6);
    expect([...mem.u8.subarray(0x3000, 0x3004)]).to.deep.equal([0, 9, 9, 9]);
    expect([...mem.u8.subarray(0x3100, 0x3104)]).to.deep.equal([9, 9, 9, 0]);
    expect(c.write(new Uint8Array(1), 8)).to.equal(0);
    expect([...c.segment(0)]).to.deep.equal([1, 2, 3]);
    expect(c.writableSegments().map((s) => s.length)).to.deep.equal([4, 4]);
    expect(dev.pop()).to.equal(null);
    dev.push(c.head, 7);
    expect(drv.usedIdx()).to.equal(0); // not yet published
    expect(dev.publish()).to.equal(true);
    expect(drv.readUsed()).to.deep.equal([{ id: head, len: 7 }]);
    expect(dev.publish()).to.equal(false); // nothing new
  });

  it('handles large copies and the free-running index wrap', () => {
    const { mem, dev, drv } = setup(4);
    for (let round = 0; round < 70000 / 1000; round++) {
      for (let k = 0; k < 1000; k++) {
        drv.addChain([{ addr: 0x4000, len: 200 }, { addr: 0x5000, len: 300, write: true }]);
        drv.publish();
        const c = dev.pop()!;
        const src = mem.u8.subarray(0x4000, 0x4000 + 200);
        src[0] = k & 0xff;
        const tmp = new Uint8Array(200);
        if (c.read(tmp) !== 200 || tmp[0] !== (k & 0xff) || c.write(tmp) !== 200) expect.fail(`copy mismatch in round ${round}`);
        dev.push(c.head, 200);
        dev.publish();
        drv.readUsed();
      }
    }
    expect(dev.lastAvailIdx).to.equal(70000 & 0xffff);
    expect(dev.inFlightCount).to.equal(0);
  });

  it('walks indirect tables, aligned and unaligned', () => {
    const { mem, dev, drv } = setup(8, { indirect: true });
    mem.u8.set([10, 11], 0x2000);
    const h1 = drv.addIndirect([{ addr: 0x2000, len: 2 }, { addr: 0x3000, len: 6, write: true }], 0x1000);
    const h2 = drv.addIndirect([{ addr: 0x2000, len: 1 }], 0x1103); // odd address
    drv.publish();
    const c1 = dev.pop()!;
    expect([c1.head, c1.readableLength, c1.writableLength, c1.descriptorCount]).to.deep.equal([h1, 2, 6, 3]);
    const c2 = dev.pop()!;
    expect([c2.head, c2.readableLength, c2.writableLength]).to.deep.equal([h2, 1, 0]);
    const b = new Uint8Array(1);
    c2.read(b);
    expect(b[0]).to.equal(10);
  });

  it('stops a looping indirect chain within the chain bound, however long the table', () => {
    // A table as long as the window allows: a walk past max(queue size, 1024) entries is refused
    // — found without reading (and recording) the rest.
    const window = 8 << 20;
    const mem = new MemoryView(new ArrayBuffer(window));
    const q = packedRingAddresses(8, RING_BASE);
    const policy = createAccessPolicy({ rwSize: window, outputSectionSize: 0, ownPeer: 0 });
    const dev = new DeviceQueue({ ...q, memory: mem, policy, eventIdx: false, indirect: true });
    const drv = new MockDriver(mem, q);
    const table = 0x10000;
    const len = window - table;
    drv.writeDescAt(table, 0x2000, 1, VIRTQ_DESC_F_NEXT, 1);
    drv.writeDescAt(table + 16, 0x2001, 1, VIRTQ_DESC_F_NEXT, 0); // back to entry 0: a loop
    drv.writeDesc(0, table, len, VIRTQ_DESC_F_INDIRECT, 0);
    drv.makeAvail(0);
    drv.publish();
    let reads = 0;
    const get32 = mem.get32.bind(mem);
    mem.get32 = (off: number): number => {
      reads++;
      return get32(off);
    };
    expect(() => dev.pop()).to.throw(RingError).with.property('code', 'VSHM_ERR_DESC_LOOP');
    expect(len / 16).to.be.greaterThan(4 * 65536);
    expect(reads, 'table words read').to.be.at.most(4 * 1025);
  });

  it('accepts an indirect table of 1024 entries on a small queue and refuses one of 1025 (DESC_LOOP)', () => {
    // The bound is max(queue size, 1024) (§6.3.3): what QEMU accepts per chain, far above what
    // any Linux driver posts (virtio-blk at most seg_max + 2), and it keeps a hostile driver from
    // making every popped chain hold 65536 segments of device memory.
    for (const [entries, ok] of [[1024, true], [1025, false]] as const) {
      const { dev, drv } = setup(8, { indirect: true });
      const table = 0x4000;
      for (let k = 0; k < entries; k++) drv.writeDescAt(table + 16 * k, 0x2000 + k, 1, k + 1 < entries ? VIRTQ_DESC_F_NEXT : 0, k + 1);
      drv.writeDesc(0, table, 16 * entries, VIRTQ_DESC_F_INDIRECT, 0);
      drv.makeAvail(0);
      drv.publish();
      if (ok) {
        const c = dev.pop()!;
        expect([c.segmentCount, c.readableLength]).to.deep.equal([1024, 1024]);
      } else {
        expect(() => dev.pop()).to.throw(RingError, /more than 1024/).with.property('code', 'VSHM_ERR_DESC_LOOP');
      }
    }
  });

  it('allows an indirect descriptor at the end of a direct chain', () => {
    const { dev, drv } = setup(8, { indirect: true });
    drv.writeDescAt(0x1000, 0x3000, 8, VIRTQ_DESC_F_WRITE, 0);
    drv.writeDesc(0, 0x2000, 4, VIRTQ_DESC_F_NEXT, 1);
    drv.writeDesc(1, 0x1000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
    drv.makeAvail(0);
    drv.publish();
    const c = dev.pop()!;
    expect([c.readableLength, c.writableLength, c.descriptorCount]).to.deep.equal([4, 8, 3]);
  });

  it('records no segment for zero-length descriptors (never accessed) but keeps ordering rules', () => {
    const { dev, drv } = setup();
    drv.writeDesc(0, 0xfffffff0, 0, VIRTQ_DESC_F_NEXT, 1); // bogus address, zero length
    drv.writeDesc(1, 0x2000, 4, 0, 0);
    drv.makeAvail(0);
    drv.publish();
    const c = dev.pop()!;
    expect([c.segmentCount, c.readableLength, c.descriptorCount]).to.deep.equal([1, 4, 2]);
  });

  it('rejects caller bugs in push with ArgumentError', () => {
    const { dev, drv } = setup();
    drv.addChain([{ addr: 0x2000, len: 4, write: true }]);
    drv.publish();
    const c = dev.pop()!;
    expect(() => dev.push(c.head, 5)).to.throw(ArgumentError);
    expect(() => dev.push((c.head + 1) % 8, 0)).to.throw(ArgumentError);
    dev.push(c.head, 4);
    expect(() => dev.push(c.head, 0)).to.throw(ArgumentError);
  });

  it('flags mode: publish honours avail.flags NO_INTERRUPT; notifications toggle used.flags', () => {
    const { dev, drv } = setup();
    drv.addChain([{ addr: 0x2000, len: 4 }]);
    drv.publish();
    dev.push(dev.pop()!.head, 0);
    drv.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    expect(dev.publish()).to.equal(false);
    drv.readUsed();
    drv.addChain([{ addr: 0x2000, len: 4 }]);
    drv.publish();
    dev.push(dev.pop()!.head, 0);
    drv.setAvailFlags(0);
    expect(dev.publish()).to.equal(true);
    dev.disableNotifications();
    expect(drv.usedFlags()).to.equal(VIRTQ_USED_F_NO_NOTIFY);
    expect(dev.enableNotifications()).to.equal(false);
    expect(drv.usedFlags()).to.equal(0);
  });

  it('enableNotifications reports buffers that arrived while disabled (no lost wake-up)', () => {
    const { dev, drv } = setup(8, { eventIdx: true });
    dev.disableNotifications();
    drv.addChain([{ addr: 0x2000, len: 4 }]);
    drv.publish();
    expect(dev.enableNotifications()).to.equal(true);
    expect(drv.availEvent()).to.equal(0);
    expect(dev.pop()).to.not.equal(null);
    expect(dev.enableNotifications()).to.equal(false);
    expect(drv.availEvent()).to.equal(1);
  });

  it('EVENT_IDX: publish notifies only when used_event falls in the published window', () => {
    const { dev, drv } = setup(8, { eventIdx: true });
    drv.setUsedEvent(2); // "interrupt me once used.idx passes 2"
    const results: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      drv.addChain([{ addr: 0x2000, len: 4 }]);
      drv.publish();
      dev.push(dev.pop()!.head, 0);
      results.push(dev.publish());
      drv.readUsed();
    }
    expect(results).to.deep.equal([false, false, true, false, false]);
  });

  it('stop() makes the queue inert and empties chains still held by the device (§4.5)', () => {
    const { mem, dev, drv } = setup();
    drv.addChain([{ addr: 0x2000, len: 4 }, { addr: 0x3000, len: 4, write: true }]);
    drv.addChain([{ addr: 0x2000, len: 4 }]);
    drv.publish();
    const held = dev.pop()!;
    const before = mem.u8.slice();
    dev.stop();
    expect(held.write(Uint8Array.from([1, 2, 3, 4]))).to.equal(0);
    expect(held.read(new Uint8Array(4))).to.equal(0);
    expect(dev.pop()).to.equal(null);
    dev.push(held.head, 0);
    expect(dev.publish()).to.equal(false);
    expect(dev.enableNotifications()).to.equal(false);
    expect(Buffer.compare(before, mem.u8)).to.equal(0);
    expect(dev.error).to.equal(null);
  });

  it('a chain held when its queue stopped says so: segment() and the segment views throw RingError VSHM_ERR_SESSION_DEAD, like a pushed chain throws', () => {
    const { dev, drv } = setup();
    drv.addChain([{ addr: 0x2000, len: 4 }, { addr: 0x3000, len: 4, write: true }]);
    drv.addChain([{ addr: 0x2400, len: 4 }]);
    drv.publish();
    const pushed = dev.pop()!;
    dev.push(pushed.head, 0);
    const held = dev.pop()!;
    expect(held.readableSegments()).to.have.length(1);
    dev.stop();
    for (const call of [() => held.segment(0), () => held.readableSegments(), () => held.writableSegments()]) {
      let err: unknown;
      try {
        call();
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(RingError);
      expect((err as RingError).code).to.equal('VSHM_ERR_SESSION_DEAD');
      expect((err as RingError).message).to.match(/stopped queue/);
    }
    expect(held.readableLength + held.writableLength + held.segmentCount).to.equal(0);
    // A chain pushed before the stop is still refused as pushed, not as stopped.
    expect(() => pushed.segment(0)).to.throw(ArgumentError, /already pushed/);
    expect(() => pushed.readableSegments()).to.throw(ArgumentError, /already pushed/);
  });

  it('zeroes a used ring in its own output section at enable (§5.2)', () => {
    const mem = new MemoryView(new ArrayBuffer(65536));
    mem.u8.fill(0xee);
    const policy = createAccessPolicy({ rwSize: 32768, outputSectionSize: 16384, ownPeer: 0 });
    const q = { size: 8, desc: 32768 + 16384, avail: 32768 + 16384 + 128, used: 32768 };
    const dev = new DeviceQueue({ ...q, memory: mem, policy, eventIdx: true, indirect: false });
    expect(mem.u8.subarray(32768, 32768 + 70).every((b) => b === 0)).to.equal(true);
    expect(mem.u8[32768 + 70]).to.equal(0xee);
    expect(dev.size).to.equal(8);
  });
});
