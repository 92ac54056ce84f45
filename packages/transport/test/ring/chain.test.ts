// Zero-copy segment views of a popped chain (DeviceChain.readableSegments/writableSegments):
// they alias shared memory, cover exactly the chain's segments, are reused across calls and
// pops of the same buffers, and are refused once the chain was pushed.
import { expect } from 'chai';
import { MemoryView } from '../../src/ring/memory.js';
import { ViewCache } from '../../src/ring/chain.js';
import { packedRingAddresses } from '../../src/ring/ring-layout.js';
import { createAccessPolicy } from '../../src/ring/validation.js';
import { DeviceQueue } from '../../src/ring/device-queue.js';
import { MockDriver } from '../../src/testing/mock-driver.js';
import { ArgumentError } from '../../src/errors.js';
import type { DeviceChain } from '../../src/virtio/device-api.js';

function setup(size = 8) {
  const mem = new MemoryView(new ArrayBuffer(65536));
  const q = packedRingAddresses(size, 0x100);
  const policy = createAccessPolicy({ rwSize: 65536, outputSectionSize: 0, ownPeer: 0 });
  const dev = new DeviceQueue({ ...q, memory: mem, policy, eventIdx: false, indirect: false });
  const drv = new MockDriver(mem, q);
  return { mem, dev, drv };
}

describe('Chain zero-copy segment views', () => {
  it('readable views alias the shared bytes, in order, and see later driver writes', () => {
    const { mem, dev, drv } = setup();
    mem.u8.set([1, 2, 3], 0x2000);
    mem.u8.set([4, 5, 6, 7, 8], 0x2100);
    drv.addChain([
      { addr: 0x2000, len: 3 },
      { addr: 0x2100, len: 5 },
      { addr: 0x3000, len: 4, write: true },
    ]);
    drv.publish();
    const c: DeviceChain = dev.pop()!;
    const r = c.readableSegments();
    expect(r.map((v) => [...v])).to.deep.equal([[1, 2, 3], [4, 5, 6, 7, 8]]);
    expect(r.reduce((n, v) => n + v.length, 0)).to.equal(c.readableLength);
    expect(r[0].buffer).to.equal(mem.u8.buffer);
    expect(r[0].byteOffset).to.equal(0x2000);
    mem.u8[0x2101] = 99; // no copy: the view sees the memory as it is now
    expect(r[1][1]).to.equal(99);
  });

  it('writable views put bytes where the driver reads them', () => {
    const { mem, dev, drv } = setup();
    const head = drv.addChain([
      { addr: 0x2000, len: 2 },
      { addr: 0x3000, len: 4, write: true },
      { addr: 0x3100, len: 4, write: true },
    ]);
    drv.publish();
    const c = dev.pop()!;
    const w = c.writableSegments();
    expect(w.map((v) => [v.byteOffset, v.length])).to.deep.equal([[0x3000, 4], [0x3100, 4]]);
    w[0].set([9, 8, 7, 6]);
    w[1][0] = 5;
    dev.push(c.head, 5);
    dev.publish();
    expect(drv.readUsed()).to.deep.equal([{ id: head, len: 5 }]);
    expect([...mem.u8.subarray(0x3000, 0x3004)]).to.deep.equal([9, 8, 7, 6]);
    expect(mem.u8[0x3100]).to.equal(5);
  });

  it('gives empty arrays for a direction the chain does not have', () => {
    const { dev, drv } = setup();
    drv.addChain([{ addr: 0x2000, len: 16 }]);
    drv.publish();
    const c = dev.pop()!;
    expect(c.readableSegments()).to.have.length(1);
    expect(c.writableSegments()).to.have.length(0);
  });

  it('reuses the array and the view objects for the same buffers (no per-call allocation)', () => {
    const { dev, drv } = setup(4);
    drv.addChain([{ addr: 0x2000, len: 64 }]);
    drv.publish();
    const c1 = dev.pop()!;
    const a1 = c1.readableSegments();
    const v1 = a1[0];
    expect(c1.readableSegments()).to.equal(a1);
    dev.push(c1.head, 0);
    dev.publish();
    drv.readUsed();
    // The driver posts the same buffer again: the same head is recycled and so is the view.
    const head2 = drv.addChain([{ addr: 0x2000, len: 64 }]);
    drv.publish();
    const c2 = dev.pop()!;
    expect(c2.head).to.equal(head2);
    expect(c2).to.equal(c1); // one Chain object per head
    expect(c2.readableSegments()[0]).to.equal(v1);
    // Another address or length: a fresh view of the right range, never a stale one.
    dev.push(c2.head, 0);
    drv.addChain([{ addr: 0x2040, len: 32 }]);
    drv.publish();
    const c3 = dev.pop()!;
    const v3 = c3.readableSegments()[0];
    expect([v3.byteOffset, v3.length]).to.deep.equal([0x2040, 32]);
  });

  it('refuses views once the chain was pushed', () => {
    const { dev, drv } = setup();
    drv.addChain([{ addr: 0x2000, len: 8 }, { addr: 0x3000, len: 8, write: true }]);
    drv.publish();
    const c = dev.pop()!;
    c.readableSegments();
    dev.push(c.head, 0);
    expect(() => c.readableSegments()).to.throw(ArgumentError);
    expect(() => c.writableSegments()).to.throw(ArgumentError);
    // The single-segment view too: the driver may already have the buffer back.
    expect(() => c.segment(0)).to.throw(ArgumentError);
    expect(c.read(new Uint8Array(8))).to.equal(0);
    expect(c.write(new Uint8Array(8))).to.equal(0);
  });

  it('shares views between heads: a buffer popped under another head gets the same view object', () => {
    const { dev, drv } = setup(4);
    // Two chains in flight, then the driver swaps which head carries which buffer.
    drv.addChain([{ addr: 0x2000, len: 64 }]);
    drv.addChain([{ addr: 0x2100, len: 64 }]);
    drv.publish();
    const a = dev.pop()!;
    const b = dev.pop()!;
    const va = a.readableSegments()[0];
    const vb = b.readableSegments()[0];
    dev.push(a.head, 0);
    dev.push(b.head, 0);
    dev.publish();
    drv.readUsed();
    drv.addChain([{ addr: 0x2100, len: 64 }]);
    drv.addChain([{ addr: 0x2000, len: 64 }]);
    drv.publish();
    const c = dev.pop()!;
    const d = dev.pop()!;
    const views = [c.readableSegments()[0], d.readableSegments()[0]];
    expect(views).to.have.members([va, vb]);
    for (const v of views) expect(v.length).to.equal(64);
    expect(new Set(views.map((v) => v.byteOffset))).to.deep.equal(new Set([0x2000, 0x2100]));
  });
});

describe('ViewCache', () => {
  it('returns one view per address and length, and a fresh exact one when either differs', () => {
    const mem = new MemoryView(new ArrayBuffer(65536));
    const cache = new ViewCache(mem, 4);
    const v = cache.view(0x1000, 64);
    expect([v.buffer, v.byteOffset, v.length]).to.deep.equal([mem.buffer, 0x1000, 64]);
    expect(cache.view(0x1000, 64)).to.equal(v);
    const shorter = cache.view(0x1000, 32);
    expect([shorter.byteOffset, shorter.length]).to.deep.equal([0x1000, 32]);
    // Many addresses through a 4-slot table: collisions replace entries, never return a wrong range.
    for (let i = 0; i < 64; i++) {
      const a = 0x40 * i;
      const w = cache.view(a, 16);
      expect([w.byteOffset, w.length]).to.deep.equal([a, 16]);
    }
  });

  it('refuses a range outside the memory like MemoryView.bytes', () => {
    const cache = new ViewCache(new MemoryView(new ArrayBuffer(4096)));
    expect(() => cache.view(4090, 16)).to.throw(ArgumentError);
  });
});
