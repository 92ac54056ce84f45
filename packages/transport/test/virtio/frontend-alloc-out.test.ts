// FrontendQueue.allocOut(len, init): the buffer starts with a copy of `init` and the rest of its
// §5.1 span is zeroed, in shared memory (the queue's own window), ready for addAllocated().
import { expect } from 'chai';
import { standaloneQueue } from '../fixtures/standalone-queue.js';
import { ArgumentError } from '../../src/errors.js';

describe('FrontendQueue.allocOut with init', () => {
  it('copies init to the start and zeroes the rest of the span', () => {
    const { mem, alloc, q } = standaloneQueue();
    const stale = q.allocOut(100)!;
    stale.fill(0xaa); // stale bytes where the next buffer will land (lowest free span first)
    q.freeOut(stale);
    const init = Uint8Array.from([1, 2, 3, 4, 5]);
    const v = q.allocOut(100, init)!;
    expect(v.byteOffset).to.equal(stale.byteOffset);
    expect(v.buffer).to.equal(mem.u8.buffer);
    expect(v.length).to.equal(100);
    expect([...v.subarray(0, 5)]).to.deep.equal([1, 2, 3, 4, 5]);
    const span = mem.u8.subarray(v.byteOffset, v.byteOffset + alloc.driverPool.allocationSize(100));
    expect(span.subarray(5).every((b) => b === 0)).to.equal(true);
    expect(q.addAllocated(v, 0, 'tok')).to.equal(true);
    expect(q.inFlight).to.equal(1);
  });

  it('without init the whole buffer is zeroed; init longer than len is refused', () => {
    const { q } = standaloneQueue();
    const stale = q.allocOut(64)!;
    stale.fill(0xaa);
    q.freeOut(stale);
    const v = q.allocOut(64)!;
    expect(v.byteOffset).to.equal(stale.byteOffset);
    expect(v.every((b) => b === 0)).to.equal(true);
    expect(() => q.allocOut(4, new Uint8Array(5))).to.throw(ArgumentError);
    q.freeOut(v);
  });
});

describe('FrontendQueue.allocOut on a full ring', () => {
  it('returns null, allocating nothing, while no descriptor is free', () => {
    const { alloc, q } = standaloneQueue<number>();
    for (let i = 0; i < q.size; i++) expect(q.addAllocated(q.allocOut(64)!, 0, i)).to.equal(true);
    const used = alloc.driverPool.usedChunks;
    expect(q.allocOut(64, new Uint8Array(64))).to.equal(null);
    expect(alloc.driverPool.usedChunks).to.equal(used);
    q.failAll(new Error('end of test')); // stops the reclaim timer the refusal armed
  });
});

describe('FrontendQueue: a view must be exactly one allocOut buffer', () => {
  it('refuses a view over two adjacent allocOut buffers (posting it would free both on completion)', () => {
    const { mem, q } = standaloneQueue();
    // Lowest free span first: among four one-chunk buffers, two are neighbours on an even chunk
    // (the §5.1 pool starts at 0) — to a bitmap, one aligned two-chunk span.
    const views = [0, 1, 2, 3].map(() => q.allocOut(64)!);
    const k = views.findIndex((v, i) => i < 3 && v.byteOffset % 128 === 0 && views[i + 1].byteOffset === v.byteOffset + 64);
    expect(k).to.be.at.least(0);
    const [a, b] = [views[k], views[k + 1]];
    const other = new Uint8Array(mem.u8.buffer, a.byteOffset, 128);
    expect(() => q.addAllocated(other, 0, 'both')).to.throw(ArgumentError);
    expect(() => q.freeOut(other)).to.throw(ArgumentError);
    expect(() => q.addSgs([other], [], 'both')).to.throw(ArgumentError);
    // Both buffers are still the caller's, each exactly once.
    expect(q.addAllocated(a, 0, 'a')).to.equal(true);
    expect(q.addAllocated(b, 0, 'b')).to.equal(true);
  });

  it('refuses the second half of a 2-chunk buffer, and a part of it', () => {
    const { mem, q } = standaloneQueue();
    const v = q.allocOut(128)!;
    expect(() => q.freeOut(new Uint8Array(mem.u8.buffer, v.byteOffset + 64, 64))).to.throw(ArgumentError);
    expect(() => q.addAllocated(new Uint8Array(mem.u8.buffer, v.byteOffset, 64), 0, 'half')).to.throw(ArgumentError);
    q.freeOut(v);
  });
});
