/**
 * A descriptor chain popped by the device (spec §6.3): the validated private copy of its
 * segments, byte copy helpers, and zero-copy segment views (valid from pop until push). Every
 * segment was checked against the access policy when popped, so `read`/`write` and the views
 * never reach memory outside it; buffer *contents* may still change under us (the driver owns
 * them), which is harmless for a copy and the reason views are for consuming each byte once.
 *
 * Allocation: one Chain object per descriptor head, created lazily and reused — a head can be in
 * flight only once (§6.3.7), so the object stays valid from `pop()` until the matching `push()`
 * and is recycled by the next pop of the same head. Segment arrays are typed arrays that grow by
 * doubling and are never shrunk, so a steady-state pop allocates nothing.
 */
import { ArgumentError, RingError, type VshmError } from '../errors.js';
import type { MemoryView } from './memory.js';

/**
 * Copies up to this many bytes with a loop instead of `subarray` + `set` (which allocate a view).
 * Measured on Node 20 (CPU ns per copy): 16 B loop 44 / subarray+set 85; 64 B loop 113 /
 * subarray+set 79 — a byte loop costs ~1.7 ns a byte, the view and call ~80 ns flat.
 */
const SMALL_COPY = 32;

/**
 * Segment views by virtio address, shared by the chains of one queue, so steady-state
 * `readableSegments()` allocates nothing even when the driver's buffers move around (its
 * allocator hands the same few spans to different heads; before this, every pop of a small
 * message made a new view: 4 % of a 64-byte message's cost in view creation plus the GC after).
 * Bounded (a direct-mapped table: a colliding address replaces the entry). A view is only a window on memory that was
 * already checked for its chain (§6.3); the cache decides nothing about access.
 */
export class ViewCache {
  private readonly mem: MemoryView;
  private readonly mask: number;
  /** Direct-mapped: slot → address and view (a Map lookup cost as much as the view it saved). */
  private readonly addrs: Float64Array;
  private readonly views: (Uint8Array | undefined)[];

  /** @param slots table size, a power of two */
  constructor(mem: MemoryView, slots = 1024) {
    this.mem = mem;
    this.mask = slots - 1;
    this.addrs = new Float64Array(slots).fill(-1);
    this.views = new Array<Uint8Array | undefined>(slots).fill(undefined);
  }

  /** A view of [addr, addr + len); `addr`/`len` must already be validated against the policy. */
  view(addr: number, len: number): Uint8Array {
    // Buffers start on allocator chunks (≥ 64 B apart), so the bits above 6 spread them.
    const slot = ((addr >>> 6) ^ (addr >>> 16)) & this.mask;
    let v = this.views[slot];
    if (v === undefined || this.addrs[slot] !== addr || v.length !== len) {
      v = this.mem.bytes(addr, len);
      this.views[slot] = v;
      this.addrs[slot] = addr;
    }
    return v;
  }
}

export class Chain {
  /** Head descriptor index: what `DeviceQueue.push` takes and the used element's `id`. */
  head = 0;
  /** Total bytes of the device-readable (non-empty) segments. */
  readableLength = 0;
  /** Total bytes of the device-writable (non-empty) segments. */
  writableLength = 0;
  /** Non-empty segments; readable ones come first (§6.3.5), then writable ones. */
  segmentCount = 0;
  /** Number of leading readable segments. */
  readableCount = 0;
  /** Number of descriptors walked, zero-length and indirect-table descriptors included. */
  descriptorCount = 0;
  /** Segment addresses (virtio addresses, < 2^53). Entries ≥ segmentCount are stale. */
  addrs: Float64Array;
  /** Segment lengths (u32, non-zero). */
  lens: Uint32Array;

  private readonly mem: MemoryView;
  private readonly cache: ViewCache | null;
  /** Between pop (reset) and push (release): the zero-copy views may be handed out. */
  private popped = false;
  /**
   * Held by the device when its queue stopped (§4.5): not popped any more, and the refusal says
   * why. Only read on the refusal path, so the per-message checks stay one boolean.
   */
  private stopped = false;
  /**
   * Cached segment views, by segment index, with the address each was made for: a driver that
   * reuses its buffers (the §5.1 allocator hands out the lowest free span first) gets the same
   * view objects back, so steady-state `readableSegments()` allocates nothing.
   */
  private views: (Uint8Array | undefined)[] = [];
  private viewAddrs: number[] = [];
  /** Reused result arrays of readableSegments()/writableSegments(). */
  private readonly readableOut: Uint8Array[] = [];
  private readonly writableOut: Uint8Array[] = [];

  /** @param cache the queue's shared view cache (optional: without one, views are cached per chain only). */
  constructor(mem: MemoryView, capacity = 4, cache: ViewCache | null = null) {
    this.mem = mem;
    this.cache = cache;
    this.addrs = new Float64Array(capacity);
    this.lens = new Uint32Array(capacity);
  }

  /** @internal Start a fresh walk for `head` (engine only). */
  reset(head: number): void {
    this.head = head;
    this.readableLength = 0;
    this.writableLength = 0;
    this.segmentCount = 0;
    this.readableCount = 0;
    this.descriptorCount = 0;
    this.popped = true;
    this.stopped = false;
  }

  /** @internal The chain was pushed (engine only): its views must not be handed out any more. */
  release(): void {
    this.popped = false;
  }

  /**
   * @internal Its queue stopped (engine only, §4.5): a chain the device still holds is emptied
   * and ends like a pushed one — `read`/`write` copy 0 bytes — but `segment()` and the segment
   * views throw a RingError VSHM_ERR_SESSION_DEAD that names the stop. A chain not held is left as
   * it is.
   */
  stop(): void {
    if (!this.popped) return;
    this.reset(this.head); // emptied: no segments, no lengths
    this.popped = false;
    this.stopped = true;
  }

  /** The error for a chain whose views may not be handed out: pushed, or its queue stopped. */
  private notHeld(what: string): VshmError {
    if (this.stopped) return new RingError('VSHM_ERR_SESSION_DEAD', '4.5', `Chain.${what}: chain ${this.head} belongs to a stopped queue (session ended, queue disabled or broken): its buffers are the driver's again`);
    return new ArgumentError(`Chain.${what}: chain ${this.head} is not popped (already pushed?)`);
  }

  /** @internal Append a validated, non-empty segment (engine only; ordering already checked). */
  addSegment(addr: number, len: number, writable: boolean): void {
    const n = this.segmentCount;
    if (n === this.addrs.length) this.grow();
    this.addrs[n] = addr;
    this.lens[n] = len;
    this.segmentCount = n + 1;
    if (writable) {
      this.writableLength += len;
    } else {
      this.readableCount = n + 1;
      this.readableLength += len;
    }
  }

  /** Whether segment `i` is device-writable. */
  isWritable(i: number): boolean {
    return i >= this.readableCount;
  }

  /** Zero-copy view of segment `i` (allocates the view object). Refused once this chain is pushed. */
  segment(i: number): Uint8Array {
    if (!this.popped) throw this.notHeld('segment');
    if (!(i >= 0 && i < this.segmentCount)) throw new ArgumentError(`Chain.segment: index ${i} outside 0…${this.segmentCount - 1}`);
    return this.mem.bytes(this.addrs[i], this.lens[i]);
  }

  /**
   * Zero-copy views of the readable segments, in order (DeviceChain.readableSegments). The array
   * and the views are reused: both are valid only until this chain is pushed.
   */
  readableSegments(): readonly Uint8Array[] {
    return this.views_(this.readableOut, 0, this.readableCount, 'readableSegments');
  }

  /** Zero-copy views of the writable segments, in order (DeviceChain.writableSegments). */
  writableSegments(): readonly Uint8Array[] {
    return this.views_(this.writableOut, this.readableCount, this.segmentCount, 'writableSegments');
  }

  private views_(out: Uint8Array[], from: number, to: number, what: string): readonly Uint8Array[] {
    if (!this.popped) throw this.notHeld(what);
    // Assigning an array's length is a runtime call even when it does not change.
    if (out.length !== to - from) out.length = to - from;
    for (let i = from; i < to; i++) out[i - from] = this.viewOf(i);
    return out;
  }

  /** The (cached) view of segment `i` < segmentCount. */
  private viewOf(i: number): Uint8Array {
    const addr = this.addrs[i];
    const len = this.lens[i];
    let v = this.views[i];
    if (v === undefined || this.viewAddrs[i] !== addr || v.length !== len) {
      // Every segment was checked against its section when popped (§6.3), so this is in bounds.
      v = this.cache !== null ? this.cache.view(addr, len) : this.mem.bytes(addr, len);
      this.views[i] = v;
      this.viewAddrs[i] = addr;
    }
    return v;
  }

  /**
   * Copy readable bytes, starting `offset` bytes into the readable part, into `dst` (as many as
   * fit). Returns the number of bytes copied (0 when `offset` ≥ readableLength).
   */
  read(dst: Uint8Array, offset = 0): number {
    checkOffset(offset, 'read');
    if (!this.popped) return 0; // pushed: the buffers are the driver's again
    return this.copy(dst, offset, 0, this.readableCount, false);
  }

  /**
   * Copy `src` into the writable part, starting `offset` bytes into it; copies what fits.
   * Returns the number of bytes copied.
   */
  write(src: Uint8Array, offset = 0): number {
    checkOffset(offset, 'write');
    if (!this.popped) return 0; // pushed: the driver may already reuse the buffers
    return this.copy(src, offset, this.readableCount, this.segmentCount, true);
  }

  private copy(buf: Uint8Array, offset: number, from: number, to: number, toMemory: boolean): number {
    const u8 = this.mem.u8;
    let pos = 0;
    const total = buf.length;
    for (let i = from; i < to && pos < total; i++) {
      const len = this.lens[i];
      if (offset >= len) {
        offset -= len;
        continue;
      }
      const whole = offset === 0; // the copy starts at the segment's start
      const addr = this.addrs[i] + offset;
      let n = len - offset;
      offset = 0;
      if (n > total - pos) n = total - pos;
      if (n <= SMALL_COPY) {
        if (toMemory) for (let k = 0; k < n; k++) u8[addr + k] = buf[pos + k];
        else for (let k = 0; k < n; k++) buf[pos + k] = u8[addr + k];
      } else if (toMemory) {
        // All of `buf` at once needs no view of it (the common write of a whole reply).
        u8.set(pos === 0 && n === total ? buf : buf.subarray(pos, pos + n), addr);
      } else if (whole && n === len) {
        // A whole segment: its cached view (no allocation in steady state).
        buf.set(this.viewOf(i), pos);
      } else {
        buf.set(u8.subarray(addr, addr + n), pos);
      }
      pos += n;
    }
    return pos;
  }

  private grow(): void {
    const cap = this.addrs.length * 2;
    const a = new Float64Array(cap);
    a.set(this.addrs);
    const l = new Uint32Array(cap);
    l.set(this.lens);
    this.addrs = a;
    this.lens = l;
  }
}

function checkOffset(offset: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new ArgumentError(`Chain.${what}: offset must be a safe integer ≥ 0, got ${offset}`);
}
