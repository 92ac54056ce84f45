/** BufferPool: exact lengths, reuse within a size class, the free-bytes cap, foreign buffers ignored. */
import { expect } from 'chai';
import { BufferPool } from '../src/buffer-pool.js';

describe('BufferPool (reused request buffers)', () => {
  it('take() gives exactly the length asked, from a power-of-two class', () => {
    const p = new BufferPool();
    const b = p.take(5000);
    expect(b.length).to.equal(5000);
    expect(b.buffer.byteLength).to.equal(8192);
    expect(p.take(100).buffer.byteLength).to.equal(4096);
  });

  it('a given-back buffer is reused for the next take() of the same class, not of another', () => {
    const p = new BufferPool();
    const a = p.take(1 << 20);
    p.give(a);
    expect(p.idleBytes).to.equal(1 << 20);
    const other = p.take(4096);
    expect(other.buffer).to.not.equal(a.buffer);
    const again = p.take((1 << 20) - 512);
    expect(again.buffer).to.equal(a.buffer);
    expect(again.length).to.equal((1 << 20) - 512);
    expect(p.idleBytes).to.equal(0);
  });

  it('keeps at most maxFreeBytes idle; ignores buffers it did not make', () => {
    const p = new BufferPool(2 << 20);
    const bufs = [p.take(1 << 20), p.take(1 << 20), p.take(1 << 20)];
    for (const b of bufs) p.give(b);
    expect(p.idleBytes).to.equal(2 << 20);
    p.give(Buffer.alloc(3000)); // pooled slab / odd size: not ours
    p.give(Buffer.from(new ArrayBuffer(8192), 4096, 4096)); // offset view: not ours
    expect(p.idleBytes).to.equal(2 << 20);
  });

  it('taken counts the buffers out of the pool: 0 once each was given back', () => {
    const p = new BufferPool();
    const a = p.take(100);
    const b = p.take(1 << 20);
    expect(p.taken).to.equal(2);
    p.give(a);
    expect(p.taken).to.equal(1);
    p.give(b);
    expect(p.taken).to.equal(0);
  });
});
