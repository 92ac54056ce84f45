/**
 * The driver (front-end) side of a split virtqueue (OASIS VIRTIO 1.2 §2.7, spec §4.9, §6.4).
 *
 * Trust model: the driver trusts only its private record of what it posted (like Linux's
 * virtio_ring): the free list, each head's token, descriptor count and writable length live in
 * private typed arrays, never read back from shared memory. From the device it reads only
 * `used.idx`, used elements, `used.flags` and `avail_event`; each used element is loaded once and
 * checked (§6.4: `used.idx` jump ≤ size, `id` < size and heading a chain in flight, `len` ≤ that
 * chain's writable length). A violation throws RingError and breaks the queue; the transport then
 * fails every in-flight request ({@link DriverQueue.failAll}), resets and re-initialises.
 *
 * Buffer allocation stays outside: callers pass virtio addresses of memory they allocated (and
 * for indirect chains the address of a table of 16·n bytes).
 *
 * Segment lists are flat arrays `[addr0, len0, addr1, len1, …]` so posting allocates nothing;
 * `add1` is the single-buffer fast path.
 */
import {
  VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY,
  VIRTQ_DESC_SIZE, VIRTQ_DESC_ALIGN, VIRTQ_AVAIL_ALIGN, VIRTQ_USED_ALIGN, isValidQueueSize, vringNeedEvent,
} from 'virtio-spec-types';
import { ArgumentError, RingError } from '../errors.js';
import type { MemoryView } from './memory.js';
import { SplitRingLayout, type QueueAddresses } from './ring-layout.js';
import { RingErrorCode, type RingErrorCodeValue } from './validation.js';

const TWO_POW_32 = 4294967296;
const EMPTY: readonly number[] = [];

export interface DriverQueueOptions extends QueueAddresses {
  /** The window (virtio addresses index it). */
  memory: MemoryView;
  /** VIRTIO_F_RING_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_RING_INDIRECT_DESC negotiated (enables addIndirect). */
  indirect: boolean;
}

export class DriverQueue<T = unknown> {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly layout: SplitRingLayout;
  /** True after a §6.4 violation or failAll(): the queue does nothing any more. */
  broken = false;
  /** The violation that broke the queue, if any. */
  error: RingError | null = null;
  /** `len` of the element last returned by getUsed(). */
  lastLen = 0;

  private readonly mem: MemoryView;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly mask: number;
  /** Private free list: next[i] is the descriptor after i — in the free list, and inside a posted chain. */
  private readonly next: Uint16Array;
  private freeHead = 0;
  /** Last descriptor of the free list; valid while numFreeN > 0. */
  private freeTail = 0;
  private numFreeN: number;
  /** Per head: last descriptor of its chain, descriptor count, writable bytes, token. */
  private readonly tail: Uint16Array;
  private readonly count: Uint16Array;
  private readonly writable: Float64Array;
  private readonly tokens: (T | undefined)[];
  private inFlightN = 0;
  /** avail.idx to publish next / as last published (free-running u16). */
  private availShadow = 0;
  private publishedAvail = 0;
  /** Next used slot to consume / used.idx as last loaded (acquire). */
  private lastUsed = 0;
  private shadowUsed = 0;
  /** Private copy of avail.flags (the driver is its only writer). */
  private availFlags = 0;
  private callbacksOn = true;

  /**
   * Set up the driver side over rings the caller allocated (spec §4.6 step 3, §5): checks size and
   * alignment (ArgumentError — these are the caller's own values) and writes the driver-owned
   * control words: avail.flags = 0, avail.idx = 0, used_event = 0 (callbacks on).
   */
  constructor(o: DriverQueueOptions) {
    if (!isValidQueueSize(o.size)) throw new ArgumentError(`DriverQueue: size ${o.size} is not a power of two in 1…32768`);
    const L = new SplitRingLayout(o);
    for (const [name, addr, bytes, align] of [
      ['desc', o.desc, L.descBytes, VIRTQ_DESC_ALIGN],
      ['avail', o.avail, L.availBytes, VIRTQ_AVAIL_ALIGN],
      ['used', o.used, L.usedBytes, VIRTQ_USED_ALIGN],
    ] as const) {
      if (!Number.isSafeInteger(addr) || addr < 0 || addr % align !== 0 || bytes > o.memory.length - addr) {
        throw new ArgumentError(`DriverQueue: ${name} ring at ${addr} (${bytes} bytes, ${align}-aligned) does not fit memory of ${o.memory.length}`);
      }
    }
    this.mem = o.memory;
    this.u16 = o.memory.u16;
    this.u32 = o.memory.u32;
    this.layout = L;
    this.size = o.size;
    this.mask = o.size - 1;
    this.eventIdx = o.eventIdx;
    this.indirect = o.indirect;
    this.next = new Uint16Array(o.size);
    for (let i = 0; i < o.size; i++) this.next[i] = i + 1; // size − 1 → size (& 0xffff only at 32768: never followed)
    this.freeTail = o.size - 1;
    this.numFreeN = o.size;
    this.tail = new Uint16Array(o.size);
    this.count = new Uint16Array(o.size);
    this.writable = new Float64Array(o.size);
    this.tokens = new Array<T | undefined>(o.size).fill(undefined);
    this.mem.store16(L.availFlagsOff, 0);
    this.mem.store16(L.usedEventOff, 0);
    this.mem.store16(L.availIdxOff, 0);
    this.mem.fence();
  }

  /** Whether used-buffer notifications are asked for (enableCallbacks, the initial state) or not (disableCallbacks). */
  get callbacksEnabled(): boolean {
    return this.callbacksOn;
  }

  /** Free descriptors. */
  get numFree(): number {
    return this.numFreeN;
  }

  /** Chains posted and not yet used. */
  get inFlightCount(): number {
    return this.inFlightN;
  }

  /**
   * Post a chain: device-readable segments `out` then device-writable `in_`, flat
   * `[addr, len, …]` arrays (null/empty allowed, not both). Writes descriptors and the avail
   * entry with plain stores; nothing is visible to the device until publish(). Returns the head,
   * or -1 (posting nothing) when fewer than the needed descriptors are free or the queue is broken.
   * Throws ArgumentError for malformed segments or an undefined token.
   */
  add(out: ArrayLike<number> | null, in_: ArrayLike<number> | null, token: T): number {
    const o = out ?? EMPTY;
    const w = in_ ?? EMPTY;
    this.checkArgs(o, w, token);
    const n = (o.length + w.length) >>> 1;
    if (this.broken || n > this.numFreeN) return -1;
    const head = this.freeHead;
    let i = head;
    let last = head;
    let k = 0;
    let writableBytes = 0;
    for (let s = 0; s < o.length; s += 2, k++) {
      last = i;
      i = this.writeDesc(i, o[s], o[s + 1], k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
    }
    for (let s = 0; s < w.length; s += 2, k++) {
      last = i;
      writableBytes += w[s + 1];
      i = this.writeDesc(i, w[s], w[s + 1], VIRTQ_DESC_F_WRITE | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
    }
    this.freeHead = i;
    this.numFreeN -= n;
    this.record(head, last, n, writableBytes, token);
    return head;
  }

  /** Fast path: post a single buffer (`writable`: device-writable). Same contract as add(). */
  add1(addr: number, len: number, writable: boolean, token: T): number {
    if (token === undefined) throw new ArgumentError('DriverQueue.add1: token must not be undefined');
    this.checkSegment(addr, len);
    if (this.broken || this.numFreeN === 0) return -1;
    const head = this.freeHead;
    this.freeHead = this.writeDesc(head, addr, len, writable ? VIRTQ_DESC_F_WRITE : 0);
    this.numFreeN--;
    this.record(head, head, 1, writable ? len : 0, token);
    return head;
  }

  /**
   * Fast path: post one device-readable buffer followed by one device-writable buffer (a request
   * and room for its reply: the round-trip shape). Same contract and descriptors as
   * `add([outAddr, outLen], [inAddr, inLen], token)`, without the segment lists.
   */
  add2(outAddr: number, outLen: number, inAddr: number, inLen: number, token: T): number {
    if (token === undefined) throw new ArgumentError('DriverQueue.add2: token must not be undefined');
    this.checkSegment(outAddr, outLen);
    this.checkSegment(inAddr, inLen);
    if (this.broken || this.numFreeN < 2) return -1;
    const head = this.freeHead;
    const second = this.writeDesc(head, outAddr, outLen, VIRTQ_DESC_F_NEXT);
    this.freeHead = this.writeDesc(second, inAddr, inLen, VIRTQ_DESC_F_WRITE);
    this.numFreeN -= 2;
    this.record(head, second, 2, inLen, token);
    return head;
  }

  /**
   * Post a chain through an indirect table at `table` (caller-allocated, 16·n bytes, 16-aligned,
   * readable by the device): the table is written here and one ring descriptor points to it.
   * Needs RING_INDIRECT_DESC. Returns the head or -1.
   */
  addIndirect(out: ArrayLike<number> | null, in_: ArrayLike<number> | null, token: T, table: number): number {
    if (!this.indirect) throw new ArgumentError('DriverQueue.addIndirect: RING_INDIRECT_DESC not negotiated');
    const o = out ?? EMPTY;
    const w = in_ ?? EMPTY;
    this.checkArgs(o, w, token);
    const n = (o.length + w.length) >>> 1;
    if (!Number.isSafeInteger(table) || table < 0 || table % VIRTQ_DESC_ALIGN !== 0 || n * VIRTQ_DESC_SIZE > this.mem.length - table) {
      throw new ArgumentError(`DriverQueue.addIndirect: table at ${table} for ${n} entries is not 16-aligned inside memory`);
    }
    if (this.broken || this.numFreeN === 0) return -1;
    let writableBytes = 0;
    let k = 0;
    for (let s = 0; s < o.length; s += 2, k++) this.writeTableDesc(table, k, o[s], o[s + 1], k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
    for (let s = 0; s < w.length; s += 2, k++) {
      writableBytes += w[s + 1];
      this.writeTableDesc(table, k, w[s], w[s + 1], VIRTQ_DESC_F_WRITE | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
    }
    const head = this.freeHead;
    this.freeHead = this.writeDescFull(head, table, n * VIRTQ_DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    this.numFreeN--;
    this.record(head, head, 1, writableBytes, token);
    return head;
  }

  /**
   * Publish added chains (spec §4.9, FE kick): release-store `avail.idx`, full fence, then check
   * suppression — `avail_event` with EVENT_IDX, else `used.flags` NO_NOTIFY. Returns true when
   * the device must be notified (the caller rings Doorbell(BE, queue_device_vector)).
   */
  publish(): boolean {
    if (this.broken) return false;
    const newIdx = this.availShadow;
    const old = this.publishedAvail;
    if (newIdx === old) return false;
    const L = this.layout;
    this.mem.store16(L.availIdxOff, newIdx);
    this.publishedAvail = newIdx;
    this.mem.fence();
    if (this.eventIdx) return vringNeedEvent(this.mem.load16(L.availEventOff), newIdx, old);
    return (this.mem.load16(L.usedFlagsOff) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** Alias of {@link publish}. */
  kick(): boolean {
    return this.publish();
  }

  /**
   * The token of the next used chain (its `len` in {@link lastLen}), or undefined when none is
   * published. Validates per §6.4 and throws RingError on a violation (queue broken). With
   * EVENT_IDX and callbacks on, moves `used_event` along (Linux does the same).
   */
  getUsed(): T | undefined {
    const tok = this.take();
    if (tok !== undefined && this.eventIdx && this.callbacksOn) this.mem.store16(this.layout.usedEventOff, this.lastUsed);
    return tok;
  }

  /**
   * Hand every published used chain to `cb(token, len)` (at most `max`), then — with EVENT_IDX
   * and callbacks on — store `used_event` once, fence, and re-check so nothing published
   * meanwhile is left without a notification. Returns the number handed back. Throws RingError
   * on a §6.4 violation (entries before it were delivered).
   */
  collect(cb: (token: T, len: number) => void, max = Number.POSITIVE_INFINITY): number {
    let n = 0;
    for (;;) {
      let tok: T | undefined;
      while (n < max && (tok = this.take()) !== undefined) {
        n++;
        cb(tok, this.lastLen);
      }
      if (n >= max || this.broken || !this.eventIdx || !this.callbacksOn) return n;
      this.mem.store16(this.layout.usedEventOff, this.lastUsed);
      this.mem.fence();
      if (!this.refreshUsed()) return n;
    }
  }

  /**
   * Recovery (spec §4.10): hand every used chain the device has published to `cb(token, len)`,
   * validated exactly as {@link collect} does (§6.4), but WITHOUT writing anything to shared
   * memory (no `used_event` update, no fence-and-recheck): the session is ending and the driver
   * must not touch the rings any more. Returns the number handed back. Throws RingError on a
   * violation (entries before it were handed back; nothing after it is trusted).
   */
  drainUsed(cb: (token: T, len: number) => void): number {
    let n = 0;
    let tok: T | undefined;
    while ((tok = this.take()) !== undefined) {
      n++;
      cb(tok, this.lastLen);
    }
    return n;
  }

  /** Whether used chains are waiting (loads used.idx if needed; may throw like getUsed). */
  hasUsed(): boolean {
    if (this.broken) return false;
    return this.lastUsed !== this.shadowUsed || this.refreshUsed();
  }

  /**
   * Ask for used-buffer notifications (avail.flags NO_INTERRUPT cleared, or used_event := next
   * used index with EVENT_IDX), full fence, re-check. Returns true when used chains are already
   * pending — the caller must collect them, as no notification may come (no lost wake-up).
   */
  enableCallbacks(): boolean {
    if (this.broken) return false;
    this.callbacksOn = true;
    const L = this.layout;
    if (this.eventIdx) {
      this.mem.store16(L.usedEventOff, this.lastUsed);
    } else {
      this.availFlags &= ~VIRTQ_AVAIL_F_NO_INTERRUPT;
      this.mem.store16(L.availFlagsOff, this.availFlags);
    }
    this.mem.fence();
    return this.hasUsed();
  }

  /**
   * Ask for no notifications (avail.flags NO_INTERRUPT, or used_event := next used − 1, outside
   * any window the device can publish next). Advisory: notifications may still arrive.
   */
  disableCallbacks(): void {
    if (this.broken) return;
    this.callbacksOn = false;
    const L = this.layout;
    if (this.eventIdx) {
      this.mem.store16(L.usedEventOff, (this.lastUsed - 1) & 0xffff);
    } else {
      this.availFlags |= VIRTQ_AVAIL_F_NO_INTERRUPT;
      this.mem.store16(L.availFlagsOff, this.availFlags);
    }
  }

  /** Tokens of the chains in flight (posted, not yet used), in head order. */
  inFlightTokens(): T[] {
    const out: T[] = [];
    for (let h = 0; h < this.size; h++) {
      const t = this.tokens[h];
      if (t !== undefined) out.push(t);
    }
    return out;
  }

  /**
   * Take every in-flight token out and stop the queue (device lost, reset or broken, §4.10, §6.4):
   * the transport fails each token; the queue must not be used afterwards (build a new one on
   * re-initialisation). Touches no shared memory.
   */
  failAll(): T[] {
    const out = this.inFlightTokens();
    this.tokens.fill(undefined);
    this.inFlightN = 0;
    this.broken = true;
    return out;
  }

  // ---------------------------------------------------------------------------------------------

  private checkArgs(o: ArrayLike<number>, w: ArrayLike<number>, token: T): void {
    if (token === undefined) throw new ArgumentError('DriverQueue.add: token must not be undefined');
    if ((o.length & 1) !== 0 || (w.length & 1) !== 0) throw new ArgumentError('DriverQueue.add: segment lists are flat [addr, len, …] pairs');
    if (o.length + w.length === 0) throw new ArgumentError('DriverQueue.add: a chain needs at least one segment');
    for (let s = 0; s < o.length; s += 2) this.checkSegment(o[s], o[s + 1]);
    for (let s = 0; s < w.length; s += 2) this.checkSegment(w[s], w[s + 1]);
  }

  private checkSegment(addr: number, len: number): void {
    if (!(len >= 0 && len === len >>> 0 && addr >= 0 && Number.isSafeInteger(addr) && len <= this.mem.length - addr)) {
      throw new ArgumentError(`DriverQueue.add: segment [${addr}, +${len}) is not inside memory of ${this.mem.length} bytes`);
    }
  }

  private record(head: number, last: number, n: number, writableBytes: number, token: T): void {
    this.tail[head] = last;
    this.count[head] = n;
    this.writable[head] = writableBytes;
    this.tokens[head] = token;
    this.inFlightN++;
    // An entry that already holds this head (a steady stream: the FIFO free list hands out the
    // heads in the same order every pass over the ring) is left alone: the device's cached copy
    // of the line stays valid, which saves it a cache miss. The entry is published by the
    // avail.idx store all the same (it was written, and published, before).
    const a = this.layout.availRingU16 + (this.availShadow & this.mask);
    if (this.u16[a] !== head) this.u16[a] = head;
    this.availShadow = (this.availShadow + 1) & 0xffff;
  }

  /** Write ring descriptor `i`, linking `next` to the private successor; returns that successor. */
  private writeDesc(i: number, addr: number, len: number, flags: number): number {
    const nx = this.next[i];
    return this.writeDescFull(i, addr, len, flags, nx);
  }

  private writeDescFull(i: number, addr: number, len: number, flags: number, nx: number): number {
    const u32 = this.u32;
    const w = this.layout.descU32 + 4 * i;
    const lo = addr >>> 0;
    const hi = addr >= TWO_POW_32 ? Math.floor(addr / TWO_POW_32) : 0;
    const fl = (flags | ((nx & 0xffff) << 16)) >>> 0;
    // A descriptor that already holds these values (a steady stream: the FIFO free list and the
    // allocator pair the same descriptor with the same buffer and length every pass) is left
    // alone, as avail entries are (record()): a store of the same bytes would still invalidate the
    // device's copy of the line and cost it a miss on the round trip. The avail.idx store that
    // publishes the chain orders the old contents exactly as it would new ones.
    if (u32[w] !== lo || u32[w + 1] !== hi || u32[w + 2] !== len || u32[w + 3] !== fl) {
      u32[w] = lo;
      u32[w + 1] = hi;
      u32[w + 2] = len;
      u32[w + 3] = fl;
    }
    return this.next[i];
  }

  private writeTableDesc(table: number, k: number, addr: number, len: number, flags: number): void {
    const at = table + VIRTQ_DESC_SIZE * k;
    this.mem.store64(at, addr);
    this.u32[(at + 8) >>> 2] = len;
    this.u32[(at + 12) >>> 2] = (flags | (((k + 1) & 0xffff) << 16)) >>> 0;
  }

  /** Acquire-load used.idx once and check the jump (§6.4); whether entries are pending. */
  private refreshUsed(): boolean {
    const idx = this.mem.load16(this.layout.usedIdxOff);
    const last = this.lastUsed;
    if (((idx - last) & 0xffff) > this.size) {
      this.fail(RingErrorCode.USED_JUMP, '6.4', `used.idx ${idx} is ${(idx - last) & 0xffff} ahead of ${last}, queue size ${this.size}`);
    }
    this.shadowUsed = idx;
    return idx !== last;
  }

  /** Consume one used element: load once, validate (§6.4), free its descriptors. */
  private take(): T | undefined {
    if (this.broken) return undefined;
    const last = this.lastUsed;
    if (last === this.shadowUsed && !this.refreshUsed()) return undefined;
    const w = this.layout.usedRingU32 + 2 * (last & this.mask);
    const id = this.u32[w];
    const len = this.u32[w + 1];
    if (id >= this.size) this.fail(RingErrorCode.USED_ID, '6.4', `used[${last}]: id ${id} ≥ queue size ${this.size}`);
    const tok = this.tokens[id];
    if (tok === undefined) this.fail(RingErrorCode.USED_ID, '6.4', `used[${last}]: id ${id} does not head a chain in flight`);
    if (len > this.writable[id]) this.fail(RingErrorCode.USED_LEN, '6.4', `used[${last}]: len ${len} above the ${this.writable[id]} writable bytes of chain ${id}`);
    this.tokens[id] = undefined;
    this.inFlightN--;
    // Freed chains join the free list at its tail (FIFO), so descriptors are taken again in the
    // order they completed — the order the driver posts their replacements and (lowest free
    // offset first) allocates their buffers. In a steady stream each descriptor and avail slot
    // then gets the same values round after round and is left alone (writeDescFull, record()):
    // the device's cached lines stay valid. A LIFO list paired them the other way round every
    // second round and rewrote them all (msg_rate: bench/README.md, "Descriptors left alone").
    if (this.numFreeN === 0) this.freeHead = id;
    else this.next[this.freeTail] = id;
    this.freeTail = this.tail[id];
    this.numFreeN += this.count[id];
    this.lastUsed = (last + 1) & 0xffff;
    this.lastLen = len;
    return tok;
  }

  private fail(code: RingErrorCodeValue, section: string, message: string): never {
    this.broken = true;
    const err = new RingError(code, section, message);
    this.error = err;
    throw err;
  }
}
