// FrontendQueue.addSgs: the scatter-gather driver API (virtqueue_add_sgs shape) — descriptor chain
// vs indirect table, mixed copied / allocOut segments, refusal when short, per-segment completion
// data and §6.4 used-len checks. The device side is the independent MockDevice.
import { expect } from 'chai';
import { standaloneQueue } from '../fixtures/standalone-queue.js';
import { MockDevice } from '../../src/testing/mock-device.js';
import { ArgumentError, RingError } from '../../src/errors.js';

function setup(opts: { indirect: boolean; size?: number; memory?: number }) {
  const { mem, alloc, q, broken, kicks } = standaloneQueue(opts);
  const dev = new MockDevice(mem, q.rings);
  const done: { token: string; data: Uint8Array; segs: Uint8Array[] }[] = [];
  q.onUsed = (token, data, segs) => done.push({ token, data: data.slice(), segs: segs.map((s) => s.slice()) });
  const failed: string[] = [];
  q.onFailed = (t) => failed.push(t);
  return { mem, alloc, q, dev, done, broken, failed, kicks };
}

const bytes = (...b: number[]) => Uint8Array.from(b);

describe('FrontendQueue.addSgs (scatter-gather posting)', () => {
  it('without INDIRECT_DESC: one descriptor per segment, readable first, in order', () => {
    const { q, dev } = setup({ indirect: false });
    expect(q.addSgs([bytes(1, 2, 3), bytes(4, 5)], [512, 1], 'r')).to.equal(true);
    expect(q.freeDescriptors).to.equal(8 - 4);
    q.kick();
    const c = dev.popAvail()!;
    expect(c.indirect).to.equal(false);
    expect(c.readable.map(([, l]) => l)).to.deep.equal([3, 2]);
    expect(c.writable.map(([, l]) => l)).to.deep.equal([512, 1]);
    expect([...dev.readAll(c)]).to.deep.equal([1, 2, 3, 4, 5]);
  });

  it('with INDIRECT_DESC: one ring slot per multi-segment request; a single segment stays direct', () => {
    const { q, dev } = setup({ indirect: true });
    expect(q.indirect).to.equal(true);
    expect(q.addSgs([bytes(9), bytes(8, 7)], [4, 4, 1], 'a')).to.equal(true);
    expect(q.freeDescriptors).to.equal(7);
    expect(q.addSgs([bytes(6)], [], 'b')).to.equal(true);
    expect(q.freeDescriptors).to.equal(6);
    q.kick();
    const a = dev.popAvail()!;
    expect(a.indirect).to.equal(true);
    expect(a.readable.map(([, l]) => l)).to.deep.equal([1, 2]);
    expect(a.writable.map(([, l]) => l)).to.deep.equal([4, 4, 1]);
    expect([...dev.readAll(a)]).to.deep.equal([9, 8, 7]);
    const b = dev.popAvail()!;
    expect(b.indirect).to.equal(false);
  });

  for (const indirect of [false, true]) {
    it(`completion data per writable segment, copied into caller arrays (indirect ${indirect})`, () => {
      const { q, dev, done, alloc } = setup({ indirect });
      const before = [alloc.driverPool.usedChunks, alloc.devicePool.usedChunks];
      const dest = new Uint8Array(6).fill(0xee);
      expect(q.addSgs([bytes(1)], [dest, 3, 2], 'r')).to.equal(true);
      q.kick();
      const c = dev.popAvail()!;
      // The device writes 8 of the 11 bytes: segment 0 fully, 2 of segment 1, none of segment 2.
      expect(dev.writeAll(c, bytes(10, 11, 12, 13, 14, 15, 16, 17))).to.equal(8);
      dev.pushUsed(c.head, 8);
      dev.publish();
      expect(q.poll()).to.equal(1);
      expect(done).to.have.length(1);
      expect(done[0].segs.map((s) => [...s])).to.deep.equal([[10, 11, 12, 13, 14, 15], [16, 17], []]);
      expect([...done[0].data]).to.deep.equal([10, 11, 12, 13, 14, 15]);
      expect([...dest]).to.deep.equal([10, 11, 12, 13, 14, 15]);
      // Everything the request allocated (table, copy buffer, writable buffers) is freed.
      expect([alloc.driverPool.usedChunks, alloc.devicePool.usedChunks]).to.deep.equal(before);
    });

    it(`mixed copied and allocOut (zero-copy) readable segments (indirect ${indirect})`, () => {
      const { q, dev, done, alloc } = setup({ indirect });
      const base = alloc.driverPool.usedChunks;
      const zc = q.allocOut(4)!;
      zc.set([40, 41, 42, 43]);
      const header = bytes(1, 2);
      expect(q.addSgs([header, zc, bytes(3)], [1], 'm')).to.equal(true);
      header.fill(0); // copied at post time: the caller may reuse its array at once
      q.kick();
      const c = dev.popAvail()!;
      expect(c.readable[1][0]).to.equal(zc.byteOffset); // posted in place, no copy
      expect([...dev.readAll(c)]).to.deep.equal([1, 2, 40, 41, 42, 43, 3]);
      dev.writeAll(c, bytes(0));
      dev.pushUsed(c.head, 1);
      dev.publish();
      q.poll();
      expect(done[0].segs.map((s) => [...s])).to.deep.equal([[0]]);
      expect(alloc.driverPool.usedChunks).to.equal(base); // the allocOut view was freed too
    });
  }

  it('refuses (false, nothing posted, nothing leaked) when descriptors are short; chain mode', () => {
    const { q, alloc } = setup({ indirect: false });
    expect(q.addSgs([bytes(1)], [1, 1, 1, 1, 1], 'a')).to.equal(true); // 6 of 8 descriptors
    const used = [alloc.driverPool.usedChunks, alloc.devicePool.usedChunks];
    const zc = q.allocOut(8)!;
    expect(q.addSgs([zc], [1, 1], 'b')).to.equal(false); // needs 3, 2 free
    expect(q.inFlight).to.equal(1);
    // The allocOut view is still the caller's: free it, and the pools are back where they were.
    q.freeOut(zc);
    expect([alloc.driverPool.usedChunks, alloc.devicePool.usedChunks]).to.deep.equal(used);
    expect(q.addSgs([bytes(2)], [1], 'c')).to.equal(true); // 2 fit
    q.failAll(new Error('end of test'));
  });

  it('refuses when shared memory is short, freeing what it took', () => {
    const { q, alloc } = setup({ indirect: true, memory: 65536 });
    const used = [alloc.driverPool.usedChunks, alloc.devicePool.usedChunks];
    // Readable copy fits, the writable segment cannot (the pool is ~60 KiB).
    expect(q.addSgs([bytes(1, 2)], [1, 1 << 20], 'big')).to.equal(false);
    expect([alloc.driverPool.usedChunks, alloc.devicePool.usedChunks]).to.deep.equal(used);
    expect(q.inFlight).to.equal(0);
  });

  it('rejects malformed segments with ArgumentError', () => {
    const { q, mem } = setup({ indirect: false });
    expect(() => q.addSgs([], [], 'x')).to.throw(ArgumentError);
    expect(() => q.addSgs([new Uint8Array(0)], [1], 'x')).to.throw(ArgumentError);
    expect(() => q.addSgs([bytes(1)], [0], 'x')).to.throw(ArgumentError);
    expect(() => q.addSgs([bytes(1)], [1.5], 'x')).to.throw(ArgumentError);
    expect(() => q.addSgs([bytes(1)], Array<number>(8).fill(1), 'x')).to.throw(ArgumentError); // 9 > size 8
    // A view of shared memory that is not a live allocOut of this queue.
    expect(() => q.addSgs([new Uint8Array(mem.u8.buffer, 8192, 16)], [], 'x')).to.throw(ArgumentError);
    const zc = q.allocOut(8)!;
    expect(() => q.addSgs([zc, zc], [], 'x')).to.throw(ArgumentError);
    expect(q.inFlight).to.equal(0);
  });

  it('a used len above the writable total of the segments breaks the queue (§6.4)', () => {
    const { q, dev, done, broken } = setup({ indirect: true });
    expect(q.addSgs([bytes(1)], [4, 1], 'r')).to.equal(true);
    q.kick();
    const c = dev.popAvail()!;
    dev.pushUsed(c.head, 6);
    dev.publish();
    expect(q.poll()).to.equal(0);
    expect(done).to.have.length(0);
    expect(broken).to.have.length(1);
    expect(broken[0]).to.be.instanceOf(RingError);
    expect((broken[0] as RingError).code).to.equal('VSHM_ERR_USED_LEN');
  });

  it('failAll returns every addSgs token through onFailed', () => {
    const { q, failed } = setup({ indirect: true });
    q.addSgs([bytes(1)], [1], 'a');
    q.addSgs([bytes(2)], [1, 2], 'b');
    q.failAll(new Error('lost'));
    expect(failed.sort()).to.deep.equal(['a', 'b']);
    expect(q.addSgs([bytes(1)], [1], 'c')).to.equal(false); // dead queue posts nothing
  });

  it('add() completions also get the segment list ([data])', () => {
    const { q, dev, done } = setup({ indirect: true });
    q.add(bytes(1), 3, 'old');
    q.kick();
    const c = dev.popAvail()!;
    dev.writeAll(c, bytes(7, 8));
    dev.pushUsed(c.head, 2);
    dev.publish();
    q.poll();
    expect([...done[0].data]).to.deep.equal([7, 8]);
    expect(done[0].segs.map((s) => [...s])).to.deep.equal([[7, 8]]);
  });
});
