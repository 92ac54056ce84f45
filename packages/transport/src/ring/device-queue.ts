/**
 * The device (back-end) side of a split virtqueue (OASIS VIRTIO 1.2 §2.7, spec §4.9, §6).
 *
 * Trust model (read once): the driver owns the descriptor table and the available ring and may
 * change them at any moment, maliciously. The engine therefore loads each ring field and each
 * descriptor exactly ONCE into locals, validates the copy (§6.3 items 1–7) and only then uses it;
 * every walk is bounded (queue size, or the indirect table's entries). On the first violation it
 * throws a RingError and the queue becomes `broken`: pop() returns null and push/publish/
 * notification calls do nothing, so no further shared memory is touched. The transport catches
 * the error, stops all queues, sets DEVICE_NEEDS_RESET and raises a config event (§6.3).
 *
 * Memory touched: the three rings (checked at construction, §6.1) and the validated chain
 * segments (through {@link Chain}). Writes go only to the used ring and writable segments.
 *
 * Not re-entrant and not thread-safe: one owner calls it from the event loop.
 */
import {
  VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY,
  VIRTQ_MAX_SIZE, VIRTQ_DESC_SIZE, vringNeedEvent,
} from 'virtio-spec-types';
import { ArgumentError, RingError } from '../errors.js';
import { Chain, ViewCache } from './chain.js';
import type { MemoryView } from './memory.js';
import { SplitRingLayout, type QueueAddresses } from './ring-layout.js';
import { type AccessPolicy, RingErrorCode, type RingErrorCodeValue, checkQueueConfig, u64AddOverflows } from './validation.js';

const TWO_POW_32 = 4294967296;
const SAFE_HIGH_LIMIT = 0x200000;
/**
 * Indirect-table entries a chain may have on a queue smaller than this (§6.3.3): QEMU's bound per
 * chain, far above what any Linux driver posts (virtio-blk: seg_max + 2). Without a bound a table
 * of 65536 entries — `next` is a u16, so no walk reaches more — made every popped chain hold 65536
 * segments of the device's memory, and a queue of them hundreds of megabytes.
 */
const INDIRECT_MIN_LIMIT = 1024;

export interface DeviceQueueOptions extends QueueAddresses {
  /** The window (virtio addresses index it). Must cover `policy.windowSize` bytes. */
  memory: MemoryView;
  /** What this device may read and write (§6.2, §5.2). */
  policy: AccessPolicy;
  /** The maximum size the device offered for this queue (§4.6). Default 32768. */
  offeredMax?: number;
  /** VIRTIO_F_RING_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_RING_INDIRECT_DESC negotiated. */
  indirect: boolean;
  /**
   * Zero the used ring at enable. Default: exactly when it lies in the device's own output
   * section (isolated layout, §5.2: the FE never writes that section, so nobody else zeroes it).
   */
  zeroUsedRing?: boolean;
}

export class DeviceQueue {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly layout: SplitRingLayout;
  /** True after a violation or stop(): the queue does nothing until it is dropped (device reset). */
  broken = false;
  /** The violation that broke the queue. */
  error: RingError | null = null;

  private readonly mem: MemoryView;
  private readonly policy: AccessPolicy;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly mask: number;
  /** Next avail slot to consume (free-running u16). */
  private lastAvail = 0;
  /** avail.idx as last loaded (acquire); entries in [lastAvail, shadowAvail) are published. */
  private shadowAvail = 0;
  /** used.idx we will publish next (free-running u16). */
  private usedShadow = 0;
  /** used.idx as last published (the EVENT_IDX "old" value). */
  private publishedUsed = 0;
  /** Private copy of used.flags (the device is its only writer). */
  private usedFlags = 0;
  /** Notifications wanted (the default; see disableNotifications). */
  private notifyOn = true;
  /** Private copy of avail_event (EVENT_IDX; the device is its only writer). */
  private availEvent = 0;
  /** inFlight[head] = 1 between pop and push: §6.3.7 and push() argument checks. */
  private readonly inFlight: Uint8Array;
  private inFlightN = 0;
  /** Chain objects by head, created lazily and reused (see chain.ts). */
  private readonly chains: (Chain | undefined)[];
  /** Segment views shared by this queue's chains (chain.ts). */
  private readonly views: ViewCache;
  /** Walk state: a writable descriptor was seen in the current chain (§6.3.5). */
  private sawWrite = false;

  /**
   * Enable the queue (spec §4.3 `queue_enable` := 1): validates the configuration (§6.1, throws
   * RingError — the transport then sets DEVICE_NEEDS_RESET), zeroes the used ring when it is in
   * the own section (§5.2) and writes the device-owned control words (used.flags = 0, and
   * avail_event = 0 with EVENT_IDX) so that the first buffer is notified.
   */
  constructor(o: DeviceQueueOptions) {
    if (o.memory.length < o.policy.windowSize) {
      throw new ArgumentError(`DeviceQueue: memory of ${o.memory.length} bytes is smaller than the policy window ${o.policy.windowSize}`);
    }
    checkQueueConfig(o, o.offeredMax ?? VIRTQ_MAX_SIZE, o.policy);
    this.mem = o.memory;
    this.policy = o.policy;
    this.u16 = o.memory.u16;
    this.u32 = o.memory.u32;
    this.layout = new SplitRingLayout(o);
    this.size = o.size;
    this.mask = o.size - 1;
    this.eventIdx = o.eventIdx;
    this.indirect = o.indirect;
    this.inFlight = new Uint8Array(o.size);
    this.chains = new Array<Chain | undefined>(o.size).fill(undefined);
    this.views = new ViewCache(o.memory);
    const L = this.layout;
    if (o.zeroUsedRing ?? o.policy.inOwnSection(L.used, L.usedBytes)) this.mem.zero(L.used, L.usedBytes);
    this.mem.store16(L.usedFlagsOff, 0);
    if (this.eventIdx) this.mem.store16(L.availEventOff, 0);
    this.mem.fence();
  }

  /** Whether kicks are asked for (enableNotifications, the initial state) or not (disableNotifications). */
  get notificationsEnabled(): boolean {
    return this.notifyOn;
  }

  /** Chains popped and not yet pushed. */
  get inFlightCount(): number {
    return this.inFlightN;
  }

  /** The next avail index the device will consume (u16). */
  get lastAvailIdx(): number {
    return this.lastAvail;
  }

  /** The used index after the pushes so far (u16; published by publish()). */
  get usedIdx(): number {
    return this.usedShadow;
  }

  /**
   * The next available chain, validated (§6.3), or null when none is published (or the queue is
   * broken). Loads `avail.idx` (acquire) only when the previously seen entries are used up.
   * Throws RingError on a violation; the queue is broken from then on.
   * The returned Chain stays valid until `push(chain.head, …)`.
   *
   * With EVENT_IDX and notifications on, a pop that finds the ring empty also re-arms
   * `avail_event` (see rearm), so callers may simply pop until null on every kick; the explicit
   * disable/enableNotifications protocol remains available for batching.
   */
  pop(): Chain | null {
    if (this.broken) return null;
    const last = this.lastAvail;
    if (last === this.shadowAvail && !this.refreshAvail() && !this.rearm()) return null;
    // Ordered after the acquire load of avail.idx in refreshAvail(); read once.
    const head = this.u16[this.layout.availRingU16 + (last & this.mask)];
    this.lastAvail = (last + 1) & 0xffff;
    if (head >= this.size) this.fail(RingErrorCode.DESC_INDEX, '6.3.2', `avail[${last}]: head ${head} ≥ queue size ${this.size}`);
    if (this.inFlight[head] !== 0) this.fail(RingErrorCode.HEAD_IN_FLIGHT, '6.3.7', `avail[${last}]: head ${head} is still in flight`);
    let chain = this.chains[head];
    if (chain === undefined) this.chains[head] = chain = new Chain(this.mem, 4, this.views);
    chain.reset(head);
    this.walk(chain, head);
    this.inFlight[head] = 1;
    this.inFlightN++;
    return chain;
  }

  /**
   * Return chain `head` with `written` bytes written to its writable part: writes the used element
   * (plain stores; made visible by publish()). Throws ArgumentError for a head that is not in
   * flight or `written` above the chain's writable length — bugs of the caller, not the peer.
   * Does nothing once the queue is broken.
   */
  push(head: number, written: number): void {
    if (this.broken) return;
    if (!(head >= 0 && head < this.size) || this.inFlight[head] !== 1) throw new ArgumentError(`DeviceQueue.push: head ${head} is not in flight`);
    const chain = this.chains[head] as Chain;
    if (!(written >= 0 && written <= chain.writableLength && written === (written >>> 0))) {
      throw new ArgumentError(`DeviceQueue.push: written ${written} outside 0…${chain.writableLength}`);
    }
    this.inFlight[head] = 0;
    this.inFlightN--;
    chain.release(); // its zero-copy views end here (the driver may reuse the buffers)
    const w = this.layout.usedRingU32 + 2 * (this.usedShadow & this.mask);
    // Fields that already hold the value are not rewritten (a steady request/reply stream reuses
    // head and length): the driver's cached copy of the line stays valid, a cache miss less on
    // its side of the round trip. Published by the used.idx store all the same.
    const u32 = this.u32;
    if (u32[w] !== head) u32[w] = head;
    if (u32[w + 1] !== written) u32[w + 1] = written;
    this.usedShadow = (this.usedShadow + 1) & 0xffff;
  }

  /**
   * Whether `chain` is in flight on this queue: this queue's Chain object for its head, popped
   * and not pushed yet. A chain of another queue (or of an earlier session's queue) fails, even
   * when a chain with the same head is in flight here. A Chain object is reused for its head, so
   * a chain already pushed and popped again counts as the new pop.
   */
  holds(chain: { readonly head: number }): boolean {
    const h = chain.head;
    return this.chains[h] === chain && this.inFlight[h] === 1;
  }

  /**
   * Publish pushed used elements (spec §4.9, BE signalling): release-store `used.idx`, full
   * fence, then check suppression — `used_event` with EVENT_IDX, else `avail.flags`
   * NO_INTERRUPT. Returns true when the driver must be notified (the caller sets `queue_event`,
   * fences and rings the doorbell). False when nothing new was pushed or the queue is broken.
   */
  publish(): boolean {
    if (this.broken) return false;
    const newIdx = this.usedShadow;
    const old = this.publishedUsed;
    if (newIdx === old) return false;
    const L = this.layout;
    this.mem.store16(L.usedIdxOff, newIdx);
    this.publishedUsed = newIdx;
    this.mem.fence();
    if (this.eventIdx) return vringNeedEvent(this.mem.load16(L.usedEventOff), newIdx, old);
    return (this.mem.load16(L.availFlagsOff) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /**
   * Ask the driver to kick again (used.flags NO_NOTIFY cleared, or avail_event := last consumed
   * index with EVENT_IDX), full fence, then re-check avail.idx. Returns true when buffers arrived
   * meanwhile — the caller must pop them, as no kick may come for them (no lost wake-up).
   * May throw RingError (avail.idx jump, §6.3.1).
   */
  enableNotifications(): boolean {
    if (this.broken) return false;
    const L = this.layout;
    this.notifyOn = true;
    if (this.eventIdx) {
      this.availEvent = this.lastAvail;
      this.mem.store16(L.availEventOff, this.availEvent);
    } else {
      this.usedFlags &= ~VIRTQ_USED_F_NO_NOTIFY;
      this.mem.store16(L.usedFlagsOff, this.usedFlags);
    }
    this.mem.fence();
    return this.lastAvail !== this.shadowAvail || this.refreshAvail();
  }

  /**
   * Ask the driver not to kick (used.flags NO_NOTIFY, or with EVENT_IDX avail_event := last
   * consumed − 1, an index the driver's next publish window [old, new) cannot contain because
   * old ≥ last consumed and new − old ≤ queue size). Advisory: kicks may still arrive.
   */
  disableNotifications(): void {
    if (this.broken) return;
    const L = this.layout;
    this.notifyOn = false;
    if (this.eventIdx) {
      this.availEvent = (this.lastAvail - 1) & 0xffff;
      this.mem.store16(L.availEventOff, this.availEvent);
    } else {
      this.usedFlags |= VIRTQ_USED_F_NO_NOTIFY;
      this.mem.store16(L.usedFlagsOff, this.usedFlags);
    }
  }

  /**
   * Stop for good (`queue_enable` := 0, device reset, peer loss — §4.5: afterwards the BE MUST
   * NOT touch old rings or buffers): the queue becomes inert like a broken one, and every chain
   * still held by the device is emptied, so a late `read`/`write` on it copies nothing and a late
   * `segment()`/`readableSegments()`/`writableSegments()` throws a RingError
   * VSHM_ERR_SESSION_DEAD saying the queue stopped. Touches no shared memory. Idempotent.
   */
  stop(): void {
    this.broken = true;
    for (const c of this.chains) if (c !== undefined) c.stop();
    this.inFlight.fill(0);
    this.inFlightN = 0;
  }

  /** Whether published chains are waiting (loads avail.idx if needed; may throw like pop). */
  hasAvailable(): boolean {
    if (this.broken) return false;
    return this.lastAvail !== this.shadowAvail || this.refreshAvail();
  }

  // ---------------------------------------------------------------------------------------------

  /** Acquire-load avail.idx once, check the jump (§6.3.1), return whether entries are pending. */
  private refreshAvail(): boolean {
    const idx = this.mem.load16(this.layout.availIdxOff);
    const last = this.lastAvail;
    if (((idx - last) & 0xffff) > this.size) {
      this.fail(RingErrorCode.AVAIL_JUMP, '6.3.1', `avail.idx ${idx} is ${(idx - last) & 0xffff} ahead of ${last}, queue size ${this.size}`);
    }
    this.shadowAvail = idx;
    return idx !== last;
  }

  /**
   * The ring ran empty while notifications are on with EVENT_IDX: move avail_event to the next
   * index (unless it is there already), full fence, re-check — so a device that simply pops until
   * null on every kick never loses one (QEMU keeps avail_event current in the same way). Returns
   * whether entries arrived meanwhile. Flags mode needs nothing: NO_NOTIFY stays clear.
   */
  private rearm(): boolean {
    if (!this.eventIdx || !this.notifyOn || this.availEvent === this.lastAvail) return false;
    this.availEvent = this.lastAvail;
    this.mem.store16(this.layout.availEventOff, this.availEvent);
    this.mem.fence();
    return this.refreshAvail();
  }

  /** Walk the direct chain from `head` (§6.3.2–6.3.6), at most `size` descriptors. */
  private walk(chain: Chain, head: number): void {
    const u16 = this.u16;
    const u32 = this.u32;
    const L = this.layout;
    const size = this.size;
    this.sawWrite = false;
    let i = head;
    let n = 0;
    for (;;) {
      if (++n > size) this.fail(RingErrorCode.DESC_LOOP, '6.3.3', `head ${head}: chain longer than ${size} descriptors`);
      // One load per field, into locals (read once, §6.3).
      const w = L.descU32 + 4 * i;
      const lo = u32[w];
      const hi = u32[w + 1];
      const len = u32[w + 2];
      const h = L.descU16 + 8 * i;
      const flags = u16[h + 6];
      const next = u16[h + 7];
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        this.walkIndirect(chain, head, lo, hi, len, flags);
        break; // INDIRECT never carries NEXT (checked in walkIndirect)
      }
      this.segment(chain, head, lo, hi, len, flags);
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (next >= size) this.fail(RingErrorCode.DESC_INDEX, '6.3.2', `head ${head}: next ${next} ≥ queue size ${size}`);
      i = next;
    }
    chain.descriptorCount += n;
  }

  /** Validate an INDIRECT descriptor and walk its table (§6.3.3, §6.3.6). */
  private walkIndirect(chain: Chain, head: number, lo: number, hi: number, len: number, flags: number): void {
    if (!this.indirect) this.fail(RingErrorCode.INDIRECT, '6.3.6', `head ${head}: INDIRECT descriptor but RING_INDIRECT_DESC not negotiated`);
    if ((flags & VIRTQ_DESC_F_NEXT) !== 0) this.fail(RingErrorCode.INDIRECT, '6.3.6', `head ${head}: INDIRECT together with NEXT`);
    if (len === 0 || len % VIRTQ_DESC_SIZE !== 0) this.fail(RingErrorCode.INDIRECT, '6.3.6', `head ${head}: indirect table length ${len} is not a non-zero multiple of 16`);
    const table = hi < SAFE_HIGH_LIMIT ? hi * TWO_POW_32 + lo : Number.POSITIVE_INFINITY;
    if (!this.policy.readable(table, len)) {
      if (u64AddOverflows(lo, hi, len)) this.fail(RingErrorCode.DESC_OVERFLOW, '6.3.4', `head ${head}: indirect table address + ${len} overflows`);
      this.fail(RingErrorCode.DESC_BOUNDS, '6.3.4', `head ${head}: indirect table [0x${table.toString(16)}, +${len}) is not inside one readable section`);
    }
    const entries = len / VIRTQ_DESC_SIZE;
    // At most max(queue size, 1024) entries (§6.3.3), and never more than the table holds: a
    // longer walk is a loop or a chain no driver may post, refused before the rest of a long
    // table (len is a u32: up to 2^28 entries) is read or recorded.
    const limit = this.size > INDIRECT_MIN_LIMIT ? this.size : INDIRECT_MIN_LIMIT;
    const maxWalk = entries < limit ? entries : limit;
    const aligned = table % 4 === 0;
    const mem = this.mem;
    let i = 0;
    let n = 0;
    for (;;) {
      if (++n > maxWalk) {
        this.fail(
          RingErrorCode.DESC_LOOP,
          '6.3.3',
          maxWalk === entries
            ? `head ${head}: indirect chain longer than its table's ${entries} entries (a loop)`
            : `head ${head}: indirect chain of more than ${maxWalk} descriptors (the limit is max(queue size, ${INDIRECT_MIN_LIMIT}))`,
        );
      }
      const d = table + VIRTQ_DESC_SIZE * i;
      let dlo: number, dhi: number, dlen: number, dflags: number, dnext: number;
      if (aligned) {
        dlo = mem.get32(d);
        dhi = mem.get32(d + 4);
        dlen = mem.get32(d + 8);
        const fn = mem.get32(d + 12);
        dflags = fn & 0xffff;
        dnext = fn >>> 16;
      } else {
        dlo = mem.load32Unaligned(d);
        dhi = mem.load32Unaligned(d + 4);
        dlen = mem.load32Unaligned(d + 8);
        const fn = mem.load32Unaligned(d + 12);
        dflags = fn & 0xffff;
        dnext = fn >>> 16;
      }
      if ((dflags & VIRTQ_DESC_F_INDIRECT) !== 0) this.fail(RingErrorCode.INDIRECT, '6.3.6', `head ${head}: nested INDIRECT in indirect entry ${i}`);
      this.segment(chain, head, dlo, dhi, dlen, dflags);
      if ((dflags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (dnext >= entries) this.fail(RingErrorCode.DESC_INDEX, '6.3.2', `head ${head}: indirect next ${dnext} ≥ ${entries} entries`);
      i = dnext;
    }
    chain.descriptorCount += n;
  }

  /** Validate one buffer descriptor (§6.3.4, §6.3.5) and record it unless it is empty. */
  private segment(chain: Chain, head: number, lo: number, hi: number, len: number, flags: number): void {
    const write = (flags & VIRTQ_DESC_F_WRITE) !== 0;
    if (write) this.sawWrite = true;
    else if (this.sawWrite) this.fail(RingErrorCode.DESC_ORDER, '6.3.5', `head ${head}: readable descriptor after a writable one`);
    if (len === 0) return; // never accessed (§6.3.4), so neither bounds-checked nor recorded
    const addr = hi < SAFE_HIGH_LIMIT ? hi * TWO_POW_32 + lo : Number.POSITIVE_INFINITY;
    if (write ? !this.policy.writable(addr, len) : !this.policy.readable(addr, len)) this.boundsFail(head, lo, hi, addr, len, write);
    chain.addSegment(addr, len, write);
  }

  private boundsFail(head: number, lo: number, hi: number, addr: number, len: number, write: boolean): never {
    if (u64AddOverflows(lo, hi, len)) this.fail(RingErrorCode.DESC_OVERFLOW, '6.3.4', `head ${head}: buffer address + ${len} overflows 2^64`);
    const where = `[0x${addr.toString(16)}, +${len})`;
    if (write && this.policy.readable(addr, len)) this.fail(RingErrorCode.DESC_WRITE_PERM, '6.3.4', `head ${head}: writable buffer ${where} in a section the device may only read`);
    this.fail(RingErrorCode.DESC_BOUNDS, '6.3.4', `head ${head}: ${write ? 'writable' : 'readable'} buffer ${where} is not inside one ${write ? 'writable' : 'readable'} section`);
  }

  private fail(code: RingErrorCodeValue, section: string, message: string): never {
    this.broken = true;
    const err = new RingError(code, section, message);
    this.error = err;
    throw err;
  }
}
