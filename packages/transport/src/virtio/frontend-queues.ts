/**
 * The driver side of one split virtqueue as a `DriverQueueHandle` (device-api.ts): ring
 * placement (§5), posting requests, kicks with notification suppression (§4.9), and collection
 * of used buffers validated per §6.4.
 *
 * Why not a generic engine: no driver-side ring engine existed when this was written, and the FE
 * needs little — chains of at most two descriptors (one device-readable buffer copied from
 * `out`, one device-writable buffer of `inLen` bytes). The FE trusts only its private record of
 * what it posted (style §3, as Linux does): per head it keeps the token, both buffers and the
 * writable length; the used ring is read once per entry and checked against that record.
 *
 * Memory: descriptor table and available ring come from the allocator's driver pool, the used
 * ring from its device pool (§5.2: the BE's output section in the isolated layout — the FE only
 * reads it). Each request allocates its readable buffer from the driver pool and its writable
 * buffer from the device pool; both are freed when the request completes.
 *
 * Ordering: descriptors and avail entries are plain stores published by the release store of
 * `avail.idx`; a full fence separates it from the suppression check (§4.9 FE kick). `used.idx` is
 * acquire-loaded before the entries it publishes are read.
 *
 * Hot path: no allocation per request except the `data` view passed to onUsed; all bookkeeping
 * lives in typed arrays indexed by head.
 */
import {
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  availRingSize,
  descTableSize,
  usedRingSize,
  vringNeedEvent,
} from 'virtio-spec-types';
import { ArgumentError, RingError, TransportError } from '../errors.js';
import type { SharedMemoryAllocator } from './allocator.js';
import type { DriverQueueHandle } from './device-api.js';
import type { MemoryView } from './memory.js';
import { SplitRingLayout } from './ring-layout.js';

export interface FrontendQueueOptions {
  index: number;
  /** Negotiated size (power of two). */
  size: number;
  memory: MemoryView;
  allocator: SharedMemoryAllocator;
  eventIdx: boolean;
  /** Vector to ring for kicks (§4.6, already clamped to the vector count). */
  deviceVector: number;
  /** Vector the BE rings for used buffers (§4.9 mode). */
  driverVector: number;
  /** Doorbell(BE, vector). */
  kick: (vector: number) => void;
  /** A §6.4 violation or a throwing callback: the device is broken. */
  broken: (err: Error) => void;
}

/** §6.4 violations found by the driver. */
export const UsedRingErrorCode = {
  USED_IDX: 'VSHM_ERR_USED_IDX',
  USED_ID: 'VSHM_ERR_USED_ID',
  USED_LEN: 'VSHM_ERR_USED_LEN',
} as const;

export class FrontendQueue<T = unknown> implements DriverQueueHandle<T> {
  readonly index: number;
  readonly size: number;
  readonly deviceVector: number;
  readonly driverVector: number;
  readonly eventIdx: boolean;
  readonly rings: SplitRingLayout;
  onUsed: ((token: T, data: Uint8Array) => void) | null = null;
  onFailed: ((token: T, err: Error) => void) | null = null;
  /** Set by the transport while the session is live; a dead queue accepts and touches nothing. */
  live = false;

  private readonly mem: MemoryView;
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly alloc: SharedMemoryAllocator;
  private readonly doorbell: (vector: number) => void;
  private readonly brokenCb: (err: Error) => void;
  private readonly mask: number;
  // Free descriptor stack.
  private readonly free: Uint16Array;
  private freeCount: number;
  // Private record per head (style §3).
  private readonly tokens: (T | undefined)[];
  private readonly posted: Uint8Array;
  private readonly second: Int32Array;
  private readonly outAddr: Float64Array;
  private readonly outLen: Uint32Array;
  private readonly inAddr: Float64Array;
  private readonly inLen: Uint32Array;
  private inFlightCount = 0;
  /** Next avail index to fill (shadow) and the last one published. */
  private availShadow = 0;
  private availPublished = 0;
  private lastUsed = 0;
  private polling = false;

  constructor(o: FrontendQueueOptions) {
    const n = o.size;
    if (!Number.isInteger(n) || n < 1 || n > 32768 || (n & (n - 1)) !== 0) throw new ArgumentError(`queue size must be a power of two ≤ 32768, got ${n}`);
    this.index = o.index;
    this.size = n;
    this.mask = n - 1;
    this.deviceVector = o.deviceVector;
    this.driverVector = o.driverVector;
    this.eventIdx = o.eventIdx;
    this.mem = o.memory;
    this.u8 = o.memory.u8;
    this.u16 = o.memory.u16;
    this.u32 = o.memory.u32;
    this.alloc = o.allocator;
    this.doorbell = o.kick;
    this.brokenCb = o.broken;
    const desc = o.allocator.alloc('driver', descTableSize(n));
    const avail = desc < 0 ? -1 : o.allocator.alloc('driver', availRingSize(n));
    const used = avail < 0 ? -1 : o.allocator.alloc('device', usedRingSize(n));
    if (used < 0) {
      throw new TransportError('VSHM_ERR_NO_MEMORY', '5', `queue ${o.index}: no shared memory for rings of size ${n}`);
    }
    this.rings = new SplitRingLayout({ size: n, desc, avail, used });
    this.free = new Uint16Array(n);
    for (let i = 0; i < n; i++) this.free[i] = n - 1 - i; // pop yields 0, 1, 2 …
    this.freeCount = n;
    this.tokens = new Array<T | undefined>(n).fill(undefined);
    this.posted = new Uint8Array(n);
    this.second = new Int32Array(n).fill(-1);
    this.outAddr = new Float64Array(n).fill(-1);
    this.outLen = new Uint32Array(n);
    this.inAddr = new Float64Array(n).fill(-1);
    this.inLen = new Uint32Array(n);
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Free descriptors (each request takes one per non-empty direction). */
  get freeDescriptors(): number {
    return this.freeCount;
  }

  add(out: Uint8Array | null, inLen: number, token: T): boolean {
    const outLen = out === null ? 0 : out.length;
    if (!(inLen >= 0) || !Number.isInteger(inLen) || inLen > 0xffffffff) throw new ArgumentError(`inLen must be an integer ≥ 0, got ${inLen}`);
    if (outLen === 0 && inLen === 0) throw new ArgumentError('a request needs out bytes or inLen > 0');
    if (!this.live) return false;
    const ndesc = (outLen > 0 ? 1 : 0) + (inLen > 0 ? 1 : 0);
    if (this.freeCount < ndesc) return false;
    let oa = -1;
    if (outLen > 0) {
      oa = this.alloc.alloc('driver', outLen);
      if (oa < 0) return false;
    }
    let ia = -1;
    if (inLen > 0) {
      ia = this.alloc.alloc('device', inLen);
      if (ia < 0) {
        if (oa >= 0) this.alloc.free('driver', oa, outLen);
        return false;
      }
    }
    if (oa >= 0) this.u8.set(out as Uint8Array, oa);
    const head = this.free[--this.freeCount];
    if (ndesc === 2) {
      const tail = this.free[--this.freeCount];
      this.writeDesc(head, oa, outLen, VIRTQ_DESC_F_NEXT, tail);
      this.writeDesc(tail, ia, inLen, VIRTQ_DESC_F_WRITE, 0);
      this.second[head] = tail;
    } else if (oa >= 0) {
      this.writeDesc(head, oa, outLen, 0, 0);
    } else {
      this.writeDesc(head, ia, inLen, VIRTQ_DESC_F_WRITE, 0);
    }
    this.tokens[head] = token;
    this.posted[head] = 1;
    this.outAddr[head] = oa;
    this.outLen[head] = outLen;
    this.inAddr[head] = ia;
    this.inLen[head] = inLen;
    this.inFlightCount++;
    this.u16[this.rings.availRingU16 + (this.availShadow & this.mask)] = head;
    this.availShadow = (this.availShadow + 1) & 0xffff;
    return true;
  }

  /** §4.9 FE kick: release-store `avail.idx`, full fence, Doorbell unless suppressed. */
  kick(): void {
    if (!this.live || this.availShadow === this.availPublished) return;
    const old = this.availPublished;
    const now = this.availShadow;
    const mem = this.mem;
    mem.store16(this.rings.availIdxOff, now);
    this.availPublished = now;
    mem.fence();
    let notify: boolean;
    if (this.eventIdx) notify = vringNeedEvent(mem.load16(this.rings.availEventOff), now, old);
    else notify = (mem.load16(this.rings.usedFlagsOff) & VIRTQ_USED_F_NO_NOTIFY) === 0;
    if (notify) this.doorbell(this.deviceVector);
  }

  /**
   * Collect used entries (§6.4 checks), deliver each through onUsed, free its buffers. With
   * EVENT_IDX, re-arm `used_event` and re-check to close the race with the BE. Returns the number
   * delivered. A violation marks the device broken (the transport fails everything and resets).
   */
  poll(): number {
    if (!this.live || this.polling) return 0;
    this.polling = true;
    let delivered = 0;
    try {
      const mem = this.mem;
      const r = this.rings;
      for (;;) {
        const usedIdx = mem.load16(r.usedIdxOff); // acquire: entries below it are visible
        let pending = (usedIdx - this.lastUsed) & 0xffff;
        if (pending === 0) {
          if (!this.eventIdx) break;
          mem.store16(r.usedEventOff, this.lastUsed);
          mem.fence();
          if (mem.load16(r.usedIdxOff) === usedIdx) break;
          continue;
        }
        if (pending > this.size) {
          this.violation(UsedRingErrorCode.USED_IDX, `used.idx ${usedIdx} is ${pending} ahead of ${this.lastUsed} (queue size ${this.size})`);
          return delivered;
        }
        while (pending-- > 0 && this.live) {
          const e = r.usedRingU32 + ((this.lastUsed & this.mask) << 1);
          const id = this.u32[e]; // read once
          const len = this.u32[e + 1];
          if (id >= this.size || this.posted[id] === 0) {
            this.violation(UsedRingErrorCode.USED_ID, `used id ${id} is not a chain in flight`);
            return delivered;
          }
          if (len > this.inLen[id]) {
            this.violation(UsedRingErrorCode.USED_LEN, `used len ${len} exceeds the ${this.inLen[id]} writable bytes of chain ${id}`);
            return delivered;
          }
          this.lastUsed = (this.lastUsed + 1) & 0xffff;
          const token = this.tokens[id] as T;
          const ia = this.inAddr[id];
          const oa = this.outAddr[id];
          const ol = this.outLen[id];
          const il = this.inLen[id];
          this.release(id);
          const cb = this.onUsed;
          if (cb !== null) {
            try {
              cb(token, ia >= 0 ? new Uint8Array(this.u8.buffer, ia, len) : EMPTY);
            } catch (err) {
              this.freeBuffers(oa, ol, ia, il);
              this.brokenCb(err instanceof Error ? err : new TransportError('VSHM_ERR_CALLBACK', '', `onUsed threw: ${String(err)}`));
              return delivered;
            }
          }
          this.freeBuffers(oa, ol, ia, il);
          delivered++;
        }
        if (!this.live) break;
      }
    } finally {
      this.polling = false;
    }
    return delivered;
  }

  /**
   * The session ended: every request still in flight comes back through onFailed (never dropped
   * silently, §4.10). The queue is dead afterwards; its memory belongs to the old allocator.
   */
  failAll(err: Error): void {
    this.live = false;
    const cb = this.onFailed;
    for (let head = 0; head < this.size; head++) {
      if (this.posted[head] === 0) continue;
      const token = this.tokens[head] as T;
      this.posted[head] = 0;
      this.tokens[head] = undefined;
      this.inFlightCount--;
      if (cb !== null) {
        try {
          cb(token, err);
        } catch {
          // A throwing onFailed must not stop the others from being failed.
        }
      }
    }
  }

  private writeDesc(i: number, addr: number, len: number, flags: number, next: number): void {
    const w = this.rings.descU32 + (i << 2);
    this.u32[w] = addr >>> 0;
    this.u32[w + 1] = Math.floor(addr / 4294967296);
    this.u32[w + 2] = len;
    const h = this.rings.descU16 + (i << 3);
    this.u16[h + 6] = flags;
    this.u16[h + 7] = next;
  }

  /** Forget head `id` and return its descriptors to the free stack. */
  private release(id: number): void {
    this.posted[id] = 0;
    this.tokens[id] = undefined;
    this.free[this.freeCount++] = id;
    const s = this.second[id];
    if (s >= 0) {
      this.free[this.freeCount++] = s;
      this.second[id] = -1;
    }
    this.inFlightCount--;
  }

  private freeBuffers(oa: number, ol: number, ia: number, il: number): void {
    if (oa >= 0) this.alloc.free('driver', oa, ol);
    if (ia >= 0) this.alloc.free('device', ia, il);
  }

  private violation(code: string, message: string): void {
    this.live = false;
    this.brokenCb(new RingError(code, '6.4', `queue ${this.index}: ${message}`));
  }
}

const EMPTY = new Uint8Array(0);
