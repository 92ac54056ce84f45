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

// perf: the pool remembers how far each chunk may be non-zero (an allocation of n bytes is
// written only inside [0, n)) and zeroes only that part on the next allocation; the span still
// reads as zeros past the caller's prefix (§5.1).
describe('ChunkPool.alloc zeroes only what an earlier tenant could have written', () => {
  function pool(): { pool: ChunkPool; win: Uint8Array } {
    const win = new Uint8Array(64 * 1024).fill(0xee); // unknown contents before the first allocation
    return { pool: new ChunkPool({ base: 0, size: win.length, zeroWith: win, name: 't' }), win };
  }
  const zero = (b: Uint8Array): boolean => b.every((x) => x === 0);

  it('zeroes a chunk in full the first time and after reset()', () => {
    const { pool: p, win } = pool();
    const off = p.alloc(10);
    const span = p.allocationSize(10);
    expect(zero(win.subarray(off, off + span))).to.equal(true);
    p.free(off, 10);
    win.fill(0xee); // an earlier session's bytes
    p.reset();
    expect(p.alloc(10)).to.equal(off);
    expect(zero(win.subarray(off, off + span))).to.equal(true);
  });

  it('zeroes what the last tenant wrote, also past the new prefix and in later chunks', () => {
    const { pool: p, win } = pool();
    const cs = p.chunkSize;
    const big = 3 * cs + 5; // four chunks
    const off = p.alloc(big);
    win.fill(0x77, off, off + big); // the tenant writes all of its n bytes
    p.free(off, big);
    const again = p.alloc(2 * cs + 1, 7); // the same four-chunk span, 7 bytes for the caller
    expect(again).to.equal(off);
    expect(zero(win.subarray(off + 7, off + 4 * cs))).to.equal(true);
    // A smaller tenant in the first chunk, then a large one over the span: still all zero.
    p.free(again, 2 * cs + 1);
    const small = p.alloc(cs);
    win.fill(0x55, small, small + cs);
    p.free(small, cs);
    const whole = p.alloc(4 * cs);
    expect(whole).to.equal(off);
    expect(zero(win.subarray(off, off + 4 * cs))).to.equal(true);
  });

  it('does not rewrite bytes no tenant could have written', () => {
    const { pool: p, win } = pool();
    const off = p.alloc(16);
    p.free(off, 16);
    // A byte past the 16 the tenant owned: only an out-of-contract writer puts it there, and it
    // could as well do so after zeroing. It stays: the pool knows that part was zero.
    win[off + 100] = 0x42;
    win.fill(0x33, off, off + 16);
    expect(p.alloc(16, 4)).to.equal(off);
    expect([...win.subarray(off, off + 4)]).to.deep.equal([0x33, 0x33, 0x33, 0x33]); // the caller's prefix
    expect(zero(win.subarray(off + 4, off + 16))).to.equal(true);
    expect(win[off + 100]).to.equal(0x42);
  });
});

describe('ChunkPool.free with scrub', () => {
  it('zeroes what the tenant may have written at free time, so the next allocation writes nothing', () => {
    const win = new Uint8Array(64 * 1024);
    const p = new ChunkPool({ base: 0, size: win.length, zeroWith: win, name: 't' });
    const off = p.alloc(100);
    win.fill(0x66, off, off + 100); // the device's reply
    p.free(off, 100, true);
    expect(win.subarray(off, off + 100).every((b) => b === 0)).to.equal(true);
    win[off + 5] = 0x42; // only an out-of-contract writer could put this here now
    expect(p.alloc(100)).to.equal(off);
    expect(win[off + 5]).to.equal(0x42); // the span was known zero: nothing rewritten
  });

  it('never writes a pool without zeroWith (the BE output section, §5.2)', () => {
    const win = new Uint8Array(8192).fill(0xaa);
    const p = new ChunkPool({ base: 4096, size: 4096, zeroWith: null });
    const off = p.alloc(64);
    p.free(off, 64, true);
    expect(win[off]).to.equal(0xaa);
  });
});
