import { expect } from 'chai';
import { ChunkPool } from '../../src/virtio/allocator.js';

// perf: alloc(n, filled) leaves the first `filled` bytes for the caller's copy and zeroes the
// rest of the span, so the peer still sees only new bytes or zeros (§5.1).
describe('ChunkPool.alloc with a caller-filled prefix', () => {
  function dirtyPool(): { pool: ChunkPool; win: Uint8Array } {
    const win = new Uint8Array(64 * 1024);
    const pool = new ChunkPool({ base: 0, size: win.length, zeroWith: win, name: 't' });
    win.fill(0xee); // stale bytes of earlier allocations
    return { pool, win };
  }

  it('zeroes the whole span by default', () => {
    const { pool, win } = dirtyPool();
    const n = 100;
    const off = pool.alloc(n);
    const span = pool.allocationSize(n);
    expect(win.subarray(off, off + span).every((b) => b === 0)).to.equal(true);
  });

  it('skips the filled prefix and zeroes the tail of the span', () => {
    const { pool, win } = dirtyPool();
    const n = 100;
    const off = pool.alloc(n, n);
    const span = pool.allocationSize(n);
    expect(span).to.be.greaterThan(n);
    expect(win.subarray(off, off + n).every((b) => b === 0xee)).to.equal(true); // the caller's to overwrite
    expect(win.subarray(off + n, off + span).every((b) => b === 0)).to.equal(true);
  });

  it('a filled count above n still zeroes everything past n', () => {
    const { pool, win } = dirtyPool();
    const off = pool.alloc(10, 1000);
    const span = pool.allocationSize(10);
    expect(win.subarray(off + 10, off + span).every((b) => b === 0)).to.equal(true);
  });
});
