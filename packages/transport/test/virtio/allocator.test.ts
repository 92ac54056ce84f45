import { expect } from 'chai';
import { ChunkPool, SharedMemoryAllocator, chunkSizeFor } from '../../src/virtio/allocator.js';
import { SharedMemoryLayout } from '../../src/ivshmem/layout.js';
import { ArgumentError, TransportError } from '../../src/errors.js';

describe('allocator (spec §5)', () => {
  it('chunk size is RW/4096 clamped to [64, 4096], rounded up to a power of two', () => {
    expect(chunkSizeFor(60 * 1024)).to.equal(64);
    expect(chunkSizeFor(1024 * 1024)).to.equal(256);
    expect(chunkSizeFor(1024 * 1024 - 4096)).to.equal(256); // 255.x → 255 → 256
    expect(chunkSizeFor(512 * 1024 + 4096)).to.equal(256); // 129 → 256
    expect(chunkSizeFor(64 * 1024 * 1024)).to.equal(4096); // 16384 → clamped
    expect(chunkSizeFor(0)).to.equal(64);
  });

  it('reserves the chunks covering the header (console 88 B → 128 B)', () => {
    const window = new Uint8Array(61440);
    const pool = new ChunkPool({ base: 0, size: 61440, reserve: 88, zeroWith: window });
    expect(pool.usedChunks).to.equal(2);
    expect(pool.alloc(1)).to.equal(128);
  });

  it('spanFor: the next power of two of the chunks needed, for every size up to 1 MiB', () => {
    const pool = new ChunkPool({ base: 0, size: 4 << 20 }); // 1 KiB chunks
    const reference = (n: number): number => {
      const count = Math.ceil(n / pool.chunkSize);
      return count <= 1 ? 1 : 2 ** Math.ceil(Math.log2(count));
    };
    for (let n = 0; n <= 1 << 20; n += n < 5000 ? 1 : 997) expect(pool.spanFor(n), `n = ${n}`).to.equal(reference(n));
    for (const k of [1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025, 4096]) expect(pool.spanFor(k * pool.chunkSize)).to.equal(reference(k * pool.chunkSize));
  });

  it('allocates 2^k chunks, naturally aligned, lowest free offset first', () => {
    const pool = new ChunkPool({ base: 0, size: 61440 });
    expect(pool.alloc(64)).to.equal(0);
    expect(pool.alloc(65)).to.equal(128); // 2 chunks, aligned to 2 → skips chunk 1
    expect(pool.alloc(1)).to.equal(64); // chunk 1 is the lowest free
    expect(pool.alloc(3 * 64)).to.equal(256); // 3 → 4 chunks, aligned to 4
    expect(pool.alloc(64)).to.equal(512); // chunks 0–7 are taken
    // 64 chunks (4096 B) aligned to 64 chunks
    expect(pool.alloc(4096)).to.equal(4096);
    // 33 chunks → 64, next aligned slot
    expect(pool.alloc(33 * 64)).to.equal(8192);
    expect(pool.alloc(64)).to.equal(576);
  });

  it('returns window offsets from a non-zero base (output sections)', () => {
    const pool = new ChunkPool({ base: 0x1f000, size: 65536 });
    expect(pool.chunkSize).to.equal(64);
    expect(pool.alloc(100)).to.equal(0x1f000);
    expect(pool.alloc(16 * 8)).to.equal(0x1f000 + 128);
  });

  it('zeroes FE-owned allocations and never writes a pool without zeroWith', () => {
    const window = new Uint8Array(8192).fill(0xaa);
    const pool = new ChunkPool({ base: 0, size: 4096, zeroWith: window });
    const off = pool.alloc(100);
    expect([...window.subarray(off, off + 128)].every((b) => b === 0)).to.equal(true);
    expect(window[off + 128]).to.equal(0xaa);
    const ro = new ChunkPool({ base: 4096, size: 4096, zeroWith: null });
    const off2 = ro.alloc(100);
    expect(window[off2]).to.equal(0xaa);
  });

  it('exhausts and frees; freed chunks are reused lowest first', () => {
    const pool = new ChunkPool({ base: 0, size: 4096 }); // 64 chunks of 64 B
    const got: number[] = [];
    for (;;) {
      const off = pool.alloc(64);
      if (off < 0) break;
      got.push(off);
    }
    expect(got.length).to.equal(64);
    expect(pool.alloc(1)).to.equal(-1);
    pool.free(640, 64);
    pool.free(128, 10);
    expect(pool.alloc(64)).to.equal(128);
    expect(pool.alloc(64)).to.equal(640);
    expect(pool.alloc(64)).to.equal(-1);
    expect(pool.alloc(8192)).to.equal(-1);
  });

  it('a two-chunk request needs an aligned free pair', () => {
    const pool = new ChunkPool({ base: 0, size: 4096 });
    for (let i = 0; i < 64; i++) pool.alloc(64);
    pool.free(64, 64); // chunk 1
    pool.free(128, 64); // chunk 2: 1 and 2 are free but not an aligned pair
    expect(pool.alloc(128)).to.equal(-1);
    pool.free(192, 64); // chunk 3: pair 2–3 free
    expect(pool.alloc(128)).to.equal(128);
  });

  it('rejects double frees, mismatched frees and bad sizes', () => {
    const pool = new ChunkPool({ base: 0, size: 4096 });
    const off = pool.alloc(64);
    pool.free(off, 64);
    expect(() => pool.free(off, 64)).to.throw(TransportError).with.property('code', 'VSHM_ERR_ALLOC_FREE');
    expect(() => pool.free(32, 64)).to.throw(TransportError);
    expect(() => pool.alloc(0)).to.throw(ArgumentError);
  });

  it('a refused free changes nothing: a span that is only partly allocated stays as it was', () => {
    const pool = new ChunkPool({ base: 0, size: 4096 });
    const a = pool.alloc(64); // chunk 0
    const b = pool.alloc(64); // chunk 1
    expect([a, b]).to.deep.equal([0, 64]);
    const used = pool.usedChunks;
    // 256 bytes at 0 are chunks 0–3: 0 and 1 are live, 2 and 3 free — a mismatched free.
    expect(() => pool.free(a, 256)).to.throw(TransportError).with.property('code', 'VSHM_ERR_ALLOC_FREE');
    expect(pool.usedChunks).to.equal(used);
    expect(pool.isAllocated(a, 64), 'a still allocated').to.equal(true);
    expect(pool.isAllocated(b, 64), 'b still allocated').to.equal(true);
    // Neither live buffer is handed out a second time.
    expect(pool.alloc(64)).to.equal(128);
  });

  it('a refused free of a span of whole bitmap words changes nothing either', () => {
    const pool = new ChunkPool({ base: 0, size: 64 * 256 }); // 256 chunks of 64 bytes
    const a = pool.alloc(32 * 64); // chunks 0–31: one whole word
    expect(a).to.equal(0);
    const used = pool.usedChunks;
    expect(() => pool.free(a, 64 * 64)).to.throw(TransportError).with.property('code', 'VSHM_ERR_ALLOC_FREE');
    expect(pool.usedChunks).to.equal(used);
    expect(pool.isAllocated(a, 32 * 64)).to.equal(true);
    expect(pool.alloc(32 * 64)).to.equal(32 * 64);
    pool.free(a, 32 * 64);
    expect(() => pool.free(a, 32 * 64)).to.throw(TransportError, /double free/);
    expect(pool.alloc(32 * 64)).to.equal(0);
  });

  it('isAllocated() recognises exactly the live allocations', () => {
    const pool = new ChunkPool({ base: 4096, size: 4096 });
    const a = pool.alloc(100);
    expect(pool.isAllocated(a, 100)).to.equal(true);
    expect(pool.isAllocated(a, 128)).to.equal(true); // the same 2-chunk span
    // Only the allocation as made: not a part of it (which free() would refuse too).
    expect(pool.isAllocated(a, 64)).to.equal(false);
    expect(pool.isAllocated(a + 64, 64)).to.equal(false);
    expect(pool.isAllocated(a, 200)).to.equal(false); // 4 chunks: two are free
    expect(pool.isAllocated(a + 32, 10)).to.equal(false);
    const b = pool.alloc(64);
    const c = pool.alloc(64);
    expect(c).to.equal(b + 64);
    // Two neighbours are not one allocation of twice the size, aligned or not.
    expect(pool.isAllocated(b % 128 === 0 ? b : c, 128)).to.equal(false);
    expect(() => pool.free(b % 128 === 0 ? b : c, 128)).to.throw(TransportError, /does not match/);
    expect(pool.isAllocated(b, 64) && pool.isAllocated(c, 64)).to.equal(true);
    pool.free(a, 100);
    expect(pool.isAllocated(a, 100)).to.equal(false);
  });

  it('reset() forgets allocations but keeps the reservation', () => {
    const pool = new ChunkPool({ base: 0, size: 61440, reserve: 88 });
    pool.alloc(1000);
    pool.reset();
    expect(pool.usedChunks).to.equal(2);
    expect(pool.alloc(64)).to.equal(128);
  });

  it('SharedMemoryAllocator: one R/W pool with OUT = 0, two output-section pools with OUT ≠ 0', () => {
    const lin = new SharedMemoryAllocator(new SharedMemoryLayout(65536, 2, 0), new Uint8Array(61440), 1, 0, 88);
    expect(lin.isolated).to.equal(false);
    expect(lin.driverPool).to.equal(lin.devicePool);
    expect(lin.alloc('driver', 16)).to.equal(128);
    const layout = new SharedMemoryLayout(256 * 1024, 2, 64 * 1024);
    const window = new Uint8Array(layout.windowSize).fill(0xee);
    const iso = new SharedMemoryAllocator(layout, window, 1, 0, 88);
    expect(iso.isolated).to.equal(true);
    const d = iso.alloc('driver', 100);
    const u = iso.alloc('device', 100);
    expect(d).to.equal(0x2f000); // FE = peer 1
    expect(u).to.equal(0x1f000); // BE = peer 0, not zeroed by the FE
    expect(window[d]).to.equal(0);
    expect(window[u]).to.equal(0xee);
  });

  it('keeps up with a hot single-chunk alloc/free pattern', () => {
    const pool = new ChunkPool({ base: 0, size: 1 << 20 });
    const live: number[] = [];
    for (let i = 0; i < 100000; i++) {
      live.push(pool.alloc(64));
      if (live.length > 256) pool.free(live.shift()!, 64);
    }
    expect(live.every((o) => o >= 0)).to.equal(true);
    expect(pool.usedChunks).to.equal(256);
  });
});
