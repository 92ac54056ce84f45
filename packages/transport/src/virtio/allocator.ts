/**
 * The front-end's shared-memory allocator (spec §5).
 *
 * §5.1 (OUT = 0, Linux-compatible): one pool over the R/W section. chunk = RW / 4096 clamped to
 * [64, 4096] and rounded up to a power of two; n bytes take 2^k chunks with 2^k ≥ ⌈n / chunk⌉,
 * aligned to 2^k chunks (relative to the pool start, as Linux's bitmap regions are), lowest free
 * offset first, zeroed on allocation. The chunks covering the header's `size` are reserved.
 *
 * §5.2 (OUT ≠ 0, isolated): two pools, each with the 5.1 chunk rule and no reservation —
 * the FE's own output section (descriptor tables, available rings, indirect tables,
 * device-readable buffers; zeroed) and the BE's output section (used rings, device-writable
 * buffers; bookkeeping only: the FE never writes or zeroes it, a real peer maps it read-only).
 * No silent fallback to the R/W section.
 *
 * Speed: a bitmap of u32 words plus a "first word with a free bit" hint. Single-chunk requests
 * (the hot path: small buffers) cost one word scan from the hint; 2…32-chunk requests find an
 * aligned free run inside one word with a few shifts; larger ones (rings at setup) walk whole
 * words. All offsets returned are virtio addresses (window offsets, §4.7).
 */
import { ArgumentError, TransportError } from '../errors.js';

export const MIN_CHUNK = 64;
export const MAX_CHUNK = 4096;

/** The §5.1 chunk size for a pool of `poolSize` bytes: RW/4096 in [64, 4096], next power of two. */
export function chunkSizeFor(poolSize: number): number {
  let c = Math.floor(poolSize / 4096);
  if (c < MIN_CHUNK) c = MIN_CHUNK;
  if (c > MAX_CHUNK) c = MAX_CHUNK;
  let p = MIN_CHUNK;
  while (p < c) p *= 2;
  return p;
}

/** `aligned[s]`: bits at multiples of s inside a 32-bit word (s a power of two ≤ 32). */
const ALIGNED_MASK: Record<number, number> = {
  1: 0xffffffff,
  2: 0x55555555,
  4: 0x11111111,
  8: 0x01010101,
  16: 0x00010001,
  32: 0x00000001,
};

export interface ChunkPoolOptions {
  /** Window offset (virtio address) of the pool's first byte. */
  base: number;
  /** Pool size in bytes; the trailing partial chunk, if any, is never used. */
  size: number;
  /** Bytes at the pool start to reserve (the header, §5.1). Default 0. */
  reserve?: number;
  /**
   * The whole window as bytes, to zero allocations; null for a pool the FE must never write
   * (the BE's output section, §5.2).
   */
  zeroWith?: Uint8Array | null;
  /** For messages and debugging. */
  name?: string;
}

/** One bitmap pool of equally sized chunks. */
export class ChunkPool {
  readonly name: string;
  readonly base: number;
  readonly size: number;
  readonly chunkSize: number;
  /** log2(chunkSize). */
  private readonly chunkShift: number;
  readonly chunkCount: number;
  private readonly reserveBytes: number;
  private readonly zeroWith: Uint8Array | null;
  /** Bit i set = chunk i in use. Bits past chunkCount are permanently set. */
  private readonly bits: Uint32Array;
  /** Lowest word that may hold a free bit. */
  private hint = 0;
  private used = 0;
  /**
   * Per chunk, how many of its leading bytes may be non-zero (0 … chunkSize); every byte past
   * that is known to be zero. Kept only for a pool that zeroes (zeroWith). An allocation of n
   * bytes is written only inside [0, n) — by the FE's copy or in-place fill, or by the device
   * within the descriptor's length — so after alloc(n) the span's extent is n; the next alloc of
   * the span then zeroes [filled, extent) instead of the whole span (perf: a 64-byte message in a
   * 256-byte chunk rewrote 192 zero bytes per message, a third of the front-end's CPU in
   * msg_rate). A peer that writes past a descriptor's length (only possible where it maps the
   * memory writable, §5.1) could as well write after the zeroing: what it can see is unchanged.
   */
  private readonly dirty: Uint32Array;
  /**
   * Per chunk: 1 + log2(span) of the live allocation that starts there, 0 elsewhere. The bitmap
   * alone cannot tell two neighbouring allocations from one of twice the size (nor a reserved
   * chunk from an allocated one), so a free or an ownership check that names a different span —
   * a view over two allocOut buffers, half of one — would free or accept chunks another owner holds.
   */
  private readonly starts: Uint8Array;

  constructor(opts: ChunkPoolOptions) {
    const { base, size } = opts;
    if (!Number.isSafeInteger(base) || base < 0) throw new ArgumentError(`pool base must be an integer ≥ 0, got ${base}`);
    if (!Number.isSafeInteger(size) || size < 0) throw new ArgumentError(`pool size must be an integer ≥ 0, got ${size}`);
    this.name = opts.name ?? 'pool';
    this.base = base;
    this.size = size;
    this.chunkSize = chunkSizeFor(size);
    this.chunkShift = 31 - Math.clz32(this.chunkSize);
    this.chunkCount = Math.floor(size / this.chunkSize);
    this.reserveBytes = opts.reserve ?? 0;
    if (!Number.isSafeInteger(this.reserveBytes) || this.reserveBytes < 0 || this.reserveBytes > size) {
      throw new ArgumentError(`reserve must be 0…${size}, got ${this.reserveBytes}`);
    }
    this.zeroWith = opts.zeroWith ?? null;
    this.bits = new Uint32Array(Math.max(1, Math.ceil(this.chunkCount / 32)));
    this.dirty = new Uint32Array(this.zeroWith === null ? 0 : this.chunkCount);
    this.starts = new Uint8Array(this.chunkCount);
    this.reset();
  }

  /** Chunks in use (reservation included). */
  get usedChunks(): number {
    return this.used;
  }

  /**
   * Forget every allocation (a fresh allocator, §4.10 step 3), keeping the reservation. The
   * memory's contents are unknown from here (an earlier session's buffers, a reused shm object):
   * every chunk is zeroed in full when next allocated.
   */
  reset(): void {
    this.bits.fill(0);
    this.starts.fill(0);
    this.dirty.fill(this.chunkSize);
    const tail = this.chunkCount & 31;
    if (tail !== 0 || this.chunkCount === 0) {
      // Chunks past the end of the pool never become free.
      this.bits[this.bits.length - 1] = this.chunkCount === 0 ? 0xffffffff : ~((1 << tail) - 1) >>> 0;
    }
    this.hint = 0;
    this.used = 0;
    const reserved = Math.ceil(this.reserveBytes / this.chunkSize);
    for (let i = 0; i < reserved; i++) this.setBit(i);
    this.used = reserved;
    this.advanceHint();
  }

  /** Chunks a request of `n` bytes takes: the next power of two ≥ ⌈n / chunk⌉. */
  spanFor(n: number): number {
    if (n <= this.chunkSize) return 1; // the common case: no division, no log2
    const count = Math.ceil(n / this.chunkSize);
    // Next power of two ≥ count (count < 2^31: pools are below 4 GiB and chunks ≥ 1 B). A shift,
    // not `2 **`: V8 compiles that to a call of ieee754::pow, ~1 % of a bulk read's front-end CPU
    // (alloc and free of every 64 KiB segment).
    return count <= 0x40000000 ? 1 << (32 - Math.clz32(count - 1)) : 2 ** Math.ceil(Math.log2(count));
  }

  /** Bytes a request of `n` bytes occupies. */
  allocationSize(n: number): number {
    return this.spanFor(n) * this.chunkSize;
  }

  /**
   * Allocate `n` ≥ 1 bytes. Returns the window offset, or -1 when no aligned run is free.
   * The FE-owned memory is zeroed (the whole span) — except its first `filled` bytes, which the
   * caller promises to overwrite at once (a buffer about to receive a copy): zeroing them first
   * would only write the same bytes twice (perf: one 64 KiB memset per bulk buffer). The span
   * still never shows the peer anything but the new bytes or zeros (§5.1). Bytes known to be
   * zero already (past what the span's last tenant could write, see `dirty`) are not rewritten.
   */
  alloc(n: number, filled = 0): number {
    if (!(n >= 1) || !Number.isSafeInteger(n)) throw new ArgumentError(`allocation size must be an integer ≥ 1, got ${n}`);
    if (n > this.size) return -1;
    const span = this.spanFor(n);
    const idx = span <= 32 ? this.findInWord(span) : this.findWords(span >>> 5);
    if (idx < 0) return -1;
    if (span === 1) {
      this.bits[idx >>> 5] |= 1 << (idx & 31);
    } else {
      for (let i = idx; i < idx + span; i++) this.setBit(i);
    }
    this.starts[idx] = 32 - Math.clz32(span);
    this.used += span;
    this.advanceHint();
    const off = this.base + (idx << this.chunkShift);
    if (this.zeroWith !== null) this.zeroSpan(idx, span, off, n, filled > n ? n : filled);
    return off;
  }

  /**
   * §5.1 zeroing of a new allocation of `n` bytes at chunk `idx`: everything past the caller's
   * `filled` prefix that may be non-zero, then record [0, n) as the span's possibly non-zero part.
   */
  private zeroSpan(idx: number, span: number, off: number, n: number, filled: number): void {
    const dirty = this.dirty;
    const cs = this.chunkSize;
    let end: number;
    if (span === 1) {
      end = dirty[idx];
      dirty[idx] = n;
    } else {
      end = 0;
      for (let k = 0; k < span; k++) {
        const d = dirty[idx + k];
        if (d !== 0) end = k * cs + d;
        const left = n - k * cs;
        dirty[idx + k] = left <= 0 ? 0 : left < cs ? left : cs;
      }
    }
    if (end > filled) (this.zeroWith as Uint8Array).fill(0, off + filled, off + end);
  }

  /** Zero the possibly non-zero part of a span being freed; its chunks are then known zero. */
  private scrubSpan(idx: number, span: number, off: number): void {
    const dirty = this.dirty;
    const cs = this.chunkSize;
    let end = 0;
    for (let k = 0; k < span; k++) {
      const d = dirty[idx + k];
      if (d !== 0) end = k * cs + d;
      dirty[idx + k] = 0;
    }
    if (end > 0) (this.zeroWith as Uint8Array).fill(0, off, off + end);
  }

  /**
   * Free what `alloc(n)` returned at `off`. Throws on a region that is not allocated. `scrub`:
   * zero what may be non-zero now rather than at the next allocation (the same bytes, at another
   * time: for a buffer the device wrote, whose next allocation is on a round trip's critical
   * path while its free is not). No effect on a pool that does not zero.
   */
  free(off: number, n: number, scrub = false): void {
    const span = this.spanFor(n);
    const rel = off - this.base;
    // rel in [0, size) first, so `>>>` is exact; `idx * chunkSize !== rel` then catches both a
    // misaligned and a fractional offset, and the mask a span off its natural alignment — the
    // same checks as before without two integer divisions (perf: free is on every completion).
    const idx = rel >= 0 && rel < this.size ? rel >>> this.chunkShift : -1;
    if (idx < 0 || idx * this.chunkSize !== rel || (idx & (span - 1)) !== 0 || idx + span > this.chunkCount) {
      throw new TransportError('VSHM_ERR_ALLOC_FREE', '5.1', `${this.name}: free of ${n} bytes at ${off} does not match an allocation`);
    }
    // Only an allocation of exactly this span starting here may be freed (`starts`): a refused
    // free (a double free, a size that does not match) changes nothing, and every chunk of a
    // recorded allocation is set, so the bits need no check one by one. A span is aligned to its
    // size: part of one bitmap word (< 32 chunks) or whole words.
    const bits = this.bits;
    const w0 = idx >>> 5;
    if (this.starts[idx] !== 32 - Math.clz32(span)) this.refuseFree(off, n, (bits[w0] & (1 << (idx & 31))) === 0);
    this.starts[idx] = 0;
    if (span < 32) bits[w0] &= ~(span === 1 ? 1 << (idx & 31) : ((1 << span) - 1) << (idx & 31));
    else bits.fill(0, w0, w0 + (span >>> 5));
    if (scrub && this.zeroWith !== null) this.scrubSpan(idx, span, off);
    this.used -= span;
    if (w0 < this.hint) this.hint = w0;
  }

  private refuseFree(off: number, n: number, doubleFree: boolean): never {
    const what = doubleFree ? 'double free' : `free of ${n} bytes does not match the allocation`;
    throw new TransportError('VSHM_ERR_ALLOC_FREE', '5.1', `${this.name}: ${what} at ${off}`);
  }

  /**
   * Whether a live allocation starts at `off` whose span is the one `alloc(n)` takes: what
   * `free(off, n)` accepts. Not a part of an allocation of another span, not two neighbours.
   */
  isAllocated(off: number, n: number): boolean {
    if (!Number.isSafeInteger(n) || n < 1 || !Number.isSafeInteger(off)) return false;
    const span = this.spanFor(n);
    const rel = off - this.base;
    if (rel < 0 || rel >= this.size || rel % this.chunkSize !== 0) return false;
    const idx = rel >>> this.chunkShift;
    return idx + span <= this.chunkCount && this.starts[idx] === 32 - Math.clz32(span);
  }

  /** Whether window offset `off` lies inside this pool. */
  contains(off: number, len = 1): boolean {
    return off >= this.base && off + len <= this.base + this.size;
  }

  private setBit(i: number): void {
    this.bits[i >>> 5] |= 1 << (i & 31);
  }

  private advanceHint(): void {
    const bits = this.bits;
    let h = this.hint;
    while (h < bits.length && bits[h] === 0xffffffff) h++;
    this.hint = h;
  }

  /** Lowest chunk index of a free run of `span` ≤ 32 chunks aligned to `span`, or -1. */
  private findInWord(span: number): number {
    const bits = this.bits;
    const aligned = ALIGNED_MASK[span];
    for (let w = this.hint; w < bits.length; w++) {
      const word = bits[w];
      if (word === 0xffffffff) continue;
      let g = ~word;
      // After the loop bit j is set iff bits j … j+span−1 are all free.
      for (let s = 1; s < span; s <<= 1) g &= g >>> s;
      g &= aligned;
      if (g === 0) continue;
      const low = g & -g;
      return (w << 5) + (31 - Math.clz32(low));
    }
    return -1;
  }

  /** Lowest chunk index of `words` consecutive free words aligned to `words`, or -1. */
  private findWords(words: number): number {
    const bits = this.bits;
    const start = Math.floor(this.hint / words) * words;
    outer: for (let w = start; w + words <= bits.length; w += words) {
      for (let k = 0; k < words; k++) if (bits[w + k] !== 0) continue outer;
      return w << 5;
    }
    return -1;
  }
}

/** Where a shared structure goes (§5.2): written by the FE, or by the BE. */
export type AllocKind = 'driver' | 'device';

export interface AllocatorLayout {
  readonly rwSize: number;
  readonly outputSectionSize: number;
  windowOutputOffset(peer: number): number;
}

/**
 * The FE's allocator for one session: the §5.1 pool, or the two §5.2 pools. Create a fresh one
 * (or `reset()`) at every initialisation (§4.10 step 3).
 *
 * It also knows which zero-copy views (`DriverQueueHandle.allocOut`) the driver holds: each such
 * view carries this allocator's epoch (a private symbol-keyed own property) from the moment it is
 * handed out until it is posted or given back (epoch 0), so an entry point that takes a view back
 * accepts only an object this allocator handed out and the driver still holds — one property load
 * and an integer compare. An offset check alone cannot tell: after a recovery the next session's
 * allocator hands out the same spans again (ABA), and a view of an earlier session — or one made
 * by hand over the window, or a subarray of a view — would free or post a buffer that now belongs
 * to someone else. (perf: a table of views per chunk cost ~35–50 ns per zero-copy message — the
 * write barrier of storing a young view into a long-lived array — the epoch property ~5 ns.)
 */
export class SharedMemoryAllocator {
  readonly isolated: boolean;
  /** FE-written memory: descriptor tables, available rings, indirect tables, readable buffers. */
  readonly driverPool: ChunkPool;
  /** BE-written memory: used rings, device-writable buffers (same pool as driverPool if not isolated). */
  readonly devicePool: ChunkPool;
  /** What views handed out since the last construction or reset() carry (never 0, unique per process). */
  private epoch = nextEpoch();

  /**
   * @param window bytes of the window [4096, S) (for zeroing FE-owned memory)
   * @param headerSize the header's `size` (§4.2), reserved in the §5.1 pool
   */
  constructor(layout: AllocatorLayout, window: Uint8Array, feId: number, beId: number, headerSize: number) {
    this.isolated = layout.outputSectionSize !== 0;
    if (!this.isolated) {
      this.driverPool = new ChunkPool({ base: 0, size: layout.rwSize, reserve: headerSize, zeroWith: window, name: 'R/W' });
      this.devicePool = this.driverPool;
    } else {
      const out = layout.outputSectionSize;
      this.driverPool = new ChunkPool({ base: layout.windowOutputOffset(feId), size: out, zeroWith: window, name: 'FE output' });
      this.devicePool = new ChunkPool({ base: layout.windowOutputOffset(beId), size: out, zeroWith: null, name: 'BE output' });
    }
  }

  pool(kind: AllocKind): ChunkPool {
    return kind === 'driver' ? this.driverPool : this.devicePool;
  }

  /** See ChunkPool.alloc; `filled` leading bytes are left for the caller to overwrite. */
  alloc(kind: AllocKind, n: number, filled = 0): number {
    return this.pool(kind).alloc(n, filled);
  }

  /** See ChunkPool.free (`scrub`: zero the buffer now instead of at its next allocation). */
  free(kind: AllocKind, off: number, n: number, scrub = false): void {
    this.pool(kind).free(off, n, scrub);
  }

  /**
   * Mark `view` — over a driver-pool allocation of exactly `view.length` bytes at
   * `view.byteOffset`, just made — as a zero-copy view the driver now holds.
   */
  holdView(view: Uint8Array): void {
    (view as EpochTagged)[VIEW_EPOCH] = this.epoch;
  }

  /** Whether `view` was marked by holdView() of this allocator (this session) and not released since. */
  holdsView(view: Uint8Array): boolean {
    return (view as EpochTagged)[VIEW_EPOCH] === this.epoch;
  }

  /** The driver no longer holds `view` (posted — the request owns it now — or about to be freed). */
  releaseView(view: Uint8Array): void {
    (view as EpochTagged)[VIEW_EPOCH] = 0;
  }

  reset(): void {
    this.driverPool.reset();
    if (this.devicePool !== this.driverPool) this.devicePool.reset();
    this.epoch = nextEpoch(); // the views handed out so far are stale
  }
}

/** The own property an allocOut view carries: its allocator's epoch while the driver holds it, else 0. */
const VIEW_EPOCH = Symbol('vshm.allocOutEpoch');

type EpochTagged = Uint8Array & { [VIEW_EPOCH]?: number };

let epochs = 0;

/** A fresh allocator epoch (process-wide, so two front-ends in one process never share one). */
function nextEpoch(): number {
  return ++epochs;
}
