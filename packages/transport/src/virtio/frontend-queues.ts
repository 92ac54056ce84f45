/**
 * The driver side of one split virtqueue as a `DriverQueueHandle` (device-api.ts): ring and
 * buffer placement (§5), posting requests, kicks with notification suppression (§4.9), and
 * delivery of used buffers. The ring work itself — private free list, §6.4 checks on every used
 * element, EVENT_IDX/flags — is the shared engine's `DriverQueue`; this file adds the memory.
 *
 * A request is a chain of at most two descriptors: one device-readable buffer holding a copy of
 * `out`, one device-writable buffer of `inLen` bytes. Its record (user token, both buffers) sits
 * in a private slot; the engine's token is the slot number, so posting allocates nothing.
 *
 * Memory: descriptor table and available ring come from the allocator's driver pool, the used
 * ring from its device pool (§5.2: the BE's output section in the isolated layout — the FE only
 * reads it). Each request allocates its readable buffer from the driver pool and its writable
 * buffer from the device pool; both are freed after onUsed returns (the `data` view stays valid
 * during the call).
 */
import { ArgumentError, RingError, TransportError } from '../errors.js';
import type { SharedMemoryAllocator } from './allocator.js';
import type { DriverQueueHandle } from './device-api.js';
import { DriverQueue } from '../ring/driver-queue.js';
import type { MemoryView } from '../ring/memory.js';
import { ViewCache } from '../ring/chain.js';
import type { SplitRingLayout } from '../ring/ring-layout.js';
import { availRingSize, descTableSize, usedRingSize } from 'virtio-spec-types';

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
  /** RING_INDIRECT_DESC negotiated: addSgs() posts multi-segment requests as one ring slot. */
  indirect?: boolean;
}

/**
 * Private record of one addSgs() request (never read back from shared memory): every
 * allocation to free as flat [pool (0 driver, 1 device), addr, len] triples, and per writable
 * segment its address, length and optional caller destination.
 */
interface SgRecord {
  readonly allocs: number[];
  readonly inAddr: number[];
  readonly inLen: number[];
  readonly inDest: (Uint8Array | null)[];
}

export class FrontendQueue<T = unknown> implements DriverQueueHandle<T> {
  readonly index: number;
  readonly size: number;
  readonly deviceVector: number;
  readonly driverVector: number;
  readonly eventIdx: boolean;
  readonly rings: SplitRingLayout;
  onUsed: ((token: T, data: Uint8Array, segments: readonly Uint8Array[]) => void) | null = null;
  onUsedBatch: (() => void) | null = null;
  onFailed: ((token: T, err: Error) => void) | null = null;
  /** Set by the transport while the session is live; a dead queue accepts and touches nothing. */
  live = false;

  private readonly engine: DriverQueue<number>;
  private readonly u8: Uint8Array;
  /** Views handed to onUsed, reused per buffer address: a completion allocates no view (perf). */
  private readonly views: ViewCache;
  private readonly alloc: SharedMemoryAllocator;
  private readonly doorbell: (vector: number) => void;
  private readonly brokenCb: (err: Error) => void;
  // Private request records by slot (never read back from shared memory).
  private readonly freeSlots: Uint16Array;
  private freeSlotCount: number;
  private readonly tokens: (T | undefined)[];
  private readonly outAddr: Float64Array;
  private readonly outLen: Uint32Array;
  private readonly inAddr: Float64Array;
  private readonly inLen: Uint32Array;
  /** addSgs() requests by slot (null for add()/addAllocated()). */
  private readonly sg: (SgRecord | null)[];
  /** Reused one-element segment list handed to onUsed for add()/addAllocated() completions. */
  private readonly oneSeg: Uint8Array[] = [EMPTY_SEG];
  private polling = false;
  /** Inside onUsed of an add(null, inLen) request: repost() may keep its buffer posted. */
  private repostable = false;
  /** onUsed called repost(). */
  private repostAsked = false;
  /**
   * 1 while a repost() is promised inside onUsed: the slot and descriptor it will take are held
   * back from add() and friends until onUsed returns, so a repost() that said true is kept.
   */
  private reserved = 0;
  private pollQueued = false;
  private readonly pollTask = (): void => {
    this.pollQueued = false;
    this.poll();
  };
  /**
   * A producer was turned away (descriptors or memory short) while requests were in flight. Some
   * back-ends never notify completions on some queues (§4.9: the Jailhouse console skips transmit
   * completions), so the queue then polls its used ring itself, backing off from 0 to 64 ms,
   * until something completes, the producer gets through, or nothing is in flight. A back-end
   * that notifies makes this a no-op; an idle queue never polls.
   */
  private starved = false;
  private reclaimTimer: NodeJS.Timeout | null = null;
  private reclaimDelay = 0;
  private readonly reclaimTick = (): void => this.reclaim();
  private readonly deliver = (slot: number, len: number): void => this.complete(slot, len);
  /** Recovery delivery: a throwing onUsed must not stop the other acknowledged completions. */
  private readonly deliverQuietly = (slot: number, len: number): void => {
    try {
      this.complete(slot, len);
    } catch {
      // The completion was delivered (and its buffers freed); the session is ending anyway.
    }
  };

  constructor(o: FrontendQueueOptions) {
    const n = o.size;
    if (!Number.isInteger(n) || n < 1 || n > 32768 || (n & (n - 1)) !== 0) throw new ArgumentError(`queue size must be a power of two ≤ 32768, got ${n}`);
    this.index = o.index;
    this.size = n;
    this.deviceVector = o.deviceVector;
    this.driverVector = o.driverVector;
    this.eventIdx = o.eventIdx;
    this.u8 = o.memory.u8;
    this.views = new ViewCache(o.memory);
    this.alloc = o.allocator;
    this.doorbell = o.kick;
    this.brokenCb = o.broken;
    const desc = o.allocator.alloc('driver', descTableSize(n));
    const avail = desc < 0 ? -1 : o.allocator.alloc('driver', availRingSize(n));
    const used = avail < 0 ? -1 : o.allocator.alloc('device', usedRingSize(n));
    if (used < 0) {
      throw new TransportError('VSHM_ERR_NO_MEMORY', '5', `queue ${o.index}: no shared memory for rings of size ${n}`);
    }
    this.engine = new DriverQueue<number>({ size: n, desc, avail, used, memory: o.memory, eventIdx: o.eventIdx, indirect: o.indirect === true });
    this.rings = this.engine.layout;
    this.freeSlots = new Uint16Array(n);
    for (let i = 0; i < n; i++) this.freeSlots[i] = n - 1 - i;
    this.freeSlotCount = n;
    this.tokens = new Array<T | undefined>(n).fill(undefined);
    this.outAddr = new Float64Array(n);
    this.outLen = new Uint32Array(n);
    this.inAddr = new Float64Array(n);
    this.inLen = new Uint32Array(n);
    this.sg = new Array<SgRecord | null>(n).fill(null);
  }

  /** Whether addSgs() posts multi-segment requests through indirect tables (one ring slot each). */
  get indirect(): boolean {
    return this.engine.indirect;
  }

  get inFlight(): number {
    return this.engine.inFlightCount;
  }

  /** Free descriptors (each request takes one per non-empty direction). */
  get freeDescriptors(): number {
    return this.engine.numFree - this.reserved;
  }

  add(out: Uint8Array | null, inLen: number, token: T): boolean {
    const outLen = out === null ? 0 : out.length;
    if (!(inLen >= 0) || !Number.isInteger(inLen) || inLen > 0xffffffff) throw new ArgumentError(`inLen must be an integer ≥ 0, got ${inLen}`);
    if (outLen === 0 && inLen === 0) throw new ArgumentError('a request needs out bytes or inLen > 0');
    if (!this.live) return false;
    const ndesc = (outLen > 0 ? 1 : 0) + (inLen > 0 ? 1 : 0);
    if (this.engine.numFree - this.reserved < ndesc || this.freeSlotCount <= this.reserved) return this.starve();
    let oa = -1;
    if (outLen > 0) {
      oa = this.alloc.alloc('driver', outLen, outLen); // `out` is copied over it below: zero only the tail
      if (oa < 0) return this.starve();
    }
    if (oa >= 0) this.u8.set(out as Uint8Array, oa);
    if (!this.post(oa, outLen, inLen, token)) {
      if (oa >= 0) this.alloc.free('driver', oa, outLen);
      return this.starve();
    }
    this.starved = false;
    return true;
  }

  /**
   * Zero-copy posting, step 1: a device-readable buffer of `len` ≥ 1 bytes in shared memory
   * (zeroed), to fill in place; null when memory is short or the queue is dead. Pass the very
   * same view to addAllocated() — or to freeOut() to give it back unposted. It belongs to the
   * current session: after a recovery the old queue accepts nothing and a new one rejects it.
   * `init` (at most `len` bytes) is copied to its start, and only the rest is zeroed — the same
   * bytes as zeroing first, one memory pass fewer (what add() does for `out`).
   * Also null while no descriptor or request slot is free (the ring is full): a buffer that could
   * not be posted would only be filled and given back. Like a refused add(), this counts as a
   * producer waiting (completions are then reclaimed even without interrupts, §4.9).
   */
  allocOut(len: number, init?: Uint8Array): Uint8Array | null {
    if (!Number.isInteger(len) || len < 1 || len > 0xffffffff) throw new ArgumentError(`len must be an integer ≥ 1, got ${len}`);
    const filled = init === undefined ? 0 : init.length;
    if (filled > len) throw new ArgumentError(`init has ${filled} bytes, more than len ${len}`);
    if (!this.live) return null;
    if (this.engine.numFree <= this.reserved || this.freeSlotCount <= this.reserved) {
      this.starve();
      return null;
    }
    const oa = this.alloc.alloc('driver', len, filled);
    if (oa < 0) {
      this.starve();
      return null;
    }
    if (init !== undefined && filled > 0) this.u8.set(init, oa);
    const view = new Uint8Array(this.u8.buffer, oa, len);
    this.alloc.holdView(view);
    return view;
  }

  /**
   * Zero-copy posting, step 2: post `view` (from allocOut, filled in place) as the readable part
   * plus `inLen` writable bytes. Returns false — keeping `view` allocated: retry, or freeOut() it —
   * when descriptors or memory are short. The buffer is freed when the request completes or fails.
   */
  addAllocated(view: Uint8Array, inLen: number, token: T): boolean {
    if (!(inLen >= 0) || !Number.isInteger(inLen) || inLen > 0xffffffff) throw new ArgumentError(`inLen must be an integer ≥ 0, got ${inLen}`);
    this.checkOwnView(view);
    if (!this.live) return false;
    if (this.engine.numFree - this.reserved < (inLen > 0 ? 2 : 1) || this.freeSlotCount <= this.reserved) return this.starve();
    if (!this.post(view.byteOffset, view.length, inLen, token)) return this.starve();
    this.alloc.releaseView(view); // the request owns it now: freed when it completes or fails
    this.starved = false;
    return true;
  }

  /**
   * Scatter-gather posting (device-api.ts `DriverQueueHandle.addSgs`): readable segments `out`
   * (allocOut views in place, other bytes copied into one driver-pool buffer), writable segments
   * `in_` (lengths, or caller arrays that receive the written bytes), one descriptor each — in an
   * indirect table when negotiated and there are two or more. False, posting nothing and freeing
   * only what it allocated itself, when descriptors, slots or memory are short.
   */
  addSgs(out: readonly Uint8Array[], in_: readonly (number | Uint8Array)[], token: T): boolean {
    if (!Array.isArray(out) || !Array.isArray(in_)) throw new ArgumentError('addSgs: out and in must be arrays');
    const n = out.length + in_.length;
    if (n === 0) throw new ArgumentError('addSgs: a request needs at least one segment');
    if (n > this.size) throw new ArgumentError(`addSgs: ${n} segments, more than the queue size ${this.size} (VIRTIO 1.2 §2.7.5.3.1)`);
    let copyBytes = 0;
    for (let k = 0; k < out.length; k++) {
      const v = out[k];
      if (!(v instanceof Uint8Array) || v.length < 1) throw new ArgumentError(`addSgs: out[${k}] must be a Uint8Array of ≥ 1 bytes`);
      if (v.buffer === this.u8.buffer) {
        this.checkOwnView(v);
        for (let j = 0; j < k; j++) if (out[j].buffer === v.buffer && out[j].byteOffset === v.byteOffset) throw new ArgumentError(`addSgs: out[${k}] repeats an allocOut view`);
      } else {
        if (v.length > 0xffffffff) throw new ArgumentError(`addSgs: out[${k}] exceeds 4 GiB`);
        copyBytes += v.length;
      }
    }
    for (let k = 0; k < in_.length; k++) {
      const w = in_[k];
      const len = typeof w === 'number' ? w : w instanceof Uint8Array ? w.length : NaN;
      if (!Number.isInteger(len) || len < 1 || len > 0xffffffff) throw new ArgumentError(`addSgs: in[${k}] must be a length or a Uint8Array of ≥ 1 bytes`);
    }
    if (!this.live) return false;
    const useTable = this.engine.indirect && n > 1;
    if (this.engine.numFree - this.reserved < (useTable ? 1 : n) || this.freeSlotCount <= this.reserved) return this.starve();
    const allocs: number[] = [];
    const undo = (): false => {
      for (let i = 0; i < allocs.length; i += 3) this.alloc.free(allocs[i] === 0 ? 'driver' : 'device', allocs[i + 1], allocs[i + 2]);
      return this.starve();
    };
    let table = -1;
    if (useTable) {
      table = this.alloc.alloc('driver', 16 * n, 16 * n); // every entry is written below
      if (table < 0) return undo();
      allocs.push(0, table, 16 * n);
    }
    let copyAt = -1;
    if (copyBytes > 0) {
      copyAt = this.alloc.alloc('driver', copyBytes, copyBytes);
      if (copyAt < 0) return undo();
      allocs.push(0, copyAt, copyBytes);
    }
    const rec: SgRecord = { allocs, inAddr: [], inLen: [], inDest: [] };
    const w: number[] = [];
    for (let k = 0; k < in_.length; k++) {
      const seg = in_[k];
      const len = typeof seg === 'number' ? seg : seg.length;
      const ia = this.alloc.alloc('device', len);
      if (ia < 0) return undo();
      allocs.push(1, ia, len);
      w.push(ia, len);
      rec.inAddr.push(ia);
      rec.inLen.push(len);
      rec.inDest.push(typeof seg === 'number' ? null : seg);
    }
    // Memory is reserved: nothing below can fail, so copies and zero-copy ownership are final.
    const o: number[] = [];
    let at = copyAt;
    for (const v of out) {
      if (v.buffer === this.u8.buffer) {
        o.push(v.byteOffset, v.length);
        allocs.push(0, v.byteOffset, v.length);
      } else {
        this.u8.set(v, at);
        o.push(at, v.length);
        at += v.length;
      }
    }
    const slot = this.freeSlots[--this.freeSlotCount];
    const head = useTable ? this.engine.addIndirect(o, w, slot, table) : this.engine.add(o, w, slot);
    if (head < 0) {
      // Cannot happen (descriptors were checked); undo rather than leak, leaving allocOut views to the caller.
      this.freeSlots[this.freeSlotCount++] = slot;
      allocs.length -= 3 * out.filter((v) => v.buffer === this.u8.buffer).length;
      return undo();
    }
    this.tokens[slot] = token;
    this.sg[slot] = rec;
    for (const v of out) if (v.buffer === this.u8.buffer) this.alloc.releaseView(v); // the request owns them now
    this.starved = false;
    return true;
  }

  /**
   * Inside onUsed of a one-writable-buffer request (add(null, inLen, token)): post it again, as it
   * was, once onUsed returns — no free, allocation or zeroing (device-api.ts `repost`). False
   * elsewhere, or on a queue that is no longer live.
   */
  repost(): boolean {
    if (!this.repostable || !this.live) return false;
    if (!this.repostAsked) {
      // The completion freed a slot and a descriptor; an add() earlier in this onUsed may have
      // taken them. Then the buffer cannot go back: say so (it is freed) rather than drop it later.
      if (this.freeSlotCount === 0 || this.engine.numFree === 0) return false;
      this.repostAsked = true;
      this.reserved = 1;
    }
    return true;
  }

  /** A producer waits for completions (a flush): reclaim them even without interrupts (§4.9). */
  awaitCompletions(): void {
    if (this.live) this.starve();
  }

  /**
   * Give back a view from allocOut() that was not posted. On a queue whose session ended, a no-op:
   * the view's memory went with its session (a new session's queue refuses it, see checkOwnView).
   */
  freeOut(view: Uint8Array): void {
    this.checkOwnView(view);
    if (!this.live) return; // the session's allocator went with it
    this.alloc.releaseView(view);
    this.alloc.free('driver', view.byteOffset, view.length);
  }

  /**
   * A view taken back (addAllocated, addSgs, freeOut) must be an object this session's allocOut()
   * handed out and the caller still holds — the allocator's epoch on the view, one property load
   * and an integer compare: a view of an earlier session on the same span (the next allocator
   * hands out the same offsets, ABA), a view posted or given back already, or one made by hand
   * over the window would otherwise free or post memory that belongs to another buffer.
   */
  private checkOwnView(view: Uint8Array): void {
    if (!(view instanceof Uint8Array) || view.buffer !== this.u8.buffer || view.length < 1 || !this.alloc.holdsView(view)) {
      throw new ArgumentError('expected a view returned by allocOut() of this session, not yet posted or given back');
    }
  }

  /**
   * Reserve the writable buffer and post the chain (readable buffer `oa` of `outLen` bytes, or
   * -1). Returns false, posting nothing and leaving `oa` to the caller, when short of memory.
   */
  private post(oa: number, outLen: number, inLen: number, token: T): boolean {
    const ndesc = (outLen > 0 ? 1 : 0) + (inLen > 0 ? 1 : 0);
    let ia = -1;
    if (inLen > 0) {
      ia = this.alloc.alloc('device', inLen);
      if (ia < 0) return false;
    }
    const slot = this.freeSlots[--this.freeSlotCount];
    let head: number;
    if (ndesc === 2) {
      head = this.engine.add2(oa, outLen, ia, inLen, slot);
    } else if (oa >= 0) {
      head = this.engine.add1(oa, outLen, false, slot);
    } else {
      head = this.engine.add1(ia, inLen, true, slot);
    }
    if (head < 0) {
      // Cannot happen (descriptors were checked); undo rather than leak.
      this.freeSlots[this.freeSlotCount++] = slot;
      if (ia >= 0) this.alloc.free('device', ia, inLen);
      return false;
    }
    this.tokens[slot] = token;
    this.outAddr[slot] = oa;
    this.outLen[slot] = outLen;
    this.inAddr[slot] = ia;
    this.inLen[slot] = inLen;
    return true;
  }

  /** §4.9 FE kick: publish (release-store `avail.idx`, full fence) and ring unless suppressed. */
  kick(): void {
    if (!this.live) return;
    if (this.engine.publish()) this.doorbell(this.deviceVector);
  }

  /**
   * perf, for bounded-spin callers (spin.ts `frontendPollable`): `false` asks the device not to
   * interrupt for this queue while we poll anyway (NO_INTERRUPT / used_event behind, §4.9);
   * `true` asks again, fences and re-checks — true when used entries are already waiting (no
   * interrupt will announce them: poll()). Never throws; a §6.4 violation breaks the device.
   */
  setCallbacks(on: boolean): boolean {
    if (!this.live) return false;
    try {
      if (on) return this.engine.enableCallbacks();
      this.engine.disableCallbacks();
      return false;
    } catch (err) {
      this.live = false;
      const e = err instanceof Error ? err : new TransportError('VSHM_ERR_CALLBACK', '', String(err));
      this.brokenCb(e instanceof RingError ? new RingError(e.code, e.section, `queue ${this.index}: ${e.message}`) : e);
      return false;
    }
  }

  /**
   * Collect used entries (§6.4 checks in the engine), deliver each through onUsed and free its
   * buffers. Returns the number delivered. A violation, or an onUsed that throws, marks the
   * device broken (the transport fails everything, resets and re-initialises). Never throws.
   */
  poll(): number {
    if (!this.live || this.polling) return 0;
    this.polling = true;
    try {
      // While we collect and act on completions the device need not interrupt us (§4.9): ask it
      // not to, then ask again — fence, re-check — and go on with what arrived meanwhile. Only
      // when interrupts were on: a spinning caller has them off already and keeps them so.
      const suppress = this.engine.callbacksEnabled;
      if (suppress) this.engine.disableCallbacks();
      let n = 0;
      for (let round = 0; ; round++) {
        // At most one ring's worth per round: a device that completes each request as soon as
        // onUsed posts the next one keeps the used ring non-empty for ever, and one unbounded
        // collect would then never give the event loop back (POLL_ROUNDS bounds the rounds).
        const got = this.engine.collect(this.deliver, this.size);
        n += got;
        if (got > 0) this.onUsedBatch?.();
        // A session that ended meanwhile (a callback saw to it) is not touched again; the next
        // session's rings start with interrupts on.
        if (!suppress || !this.live) break;
        if (!this.engine.enableCallbacks()) break; // nothing new: interrupts are on again
        if (round >= POLL_ROUNDS) {
          // A device that keeps up with us could hold us here for ever: leave the rest to the
          // next turn of the event loop (interrupts are on, and this entry needs no new one).
          this.schedulePoll();
          break;
        }
        this.engine.disableCallbacks();
      }
      return n;
    } catch (err) {
      this.live = false;
      this.stopReclaim();
      const e = err instanceof Error ? err : new TransportError('VSHM_ERR_CALLBACK', '', `onUsed threw: ${String(err)}`);
      this.brokenCb(e instanceof RingError ? new RingError(e.code, e.section, `queue ${this.index}: ${e.message}`) : e);
      return 0;
    } finally {
      this.polling = false;
    }
  }

  /**
   * The session is ending (§4.10): before anything is failed, read the used ring once more — it
   * is the device's acknowledgement — and deliver through onUsed every completion the device
   * published, validated exactly as a normal completion (§6.4). Nothing is written to shared
   * memory. Trust stops at the first violation: what follows it stays in flight and is failed by
   * failAll(). A detached mapping (the ivshmem device was closed) cannot be read: nothing is
   * delivered. An onUsed that throws is logged away: its completion was delivered, the others
   * still are. Stops the queue (no posting any more). Returns the completions delivered.
   */
  drainAcknowledged(): number {
    this.live = false;
    this.stopReclaim();
    if (this.engine.broken || this.u8.byteLength === 0 || this.polling) return 0;
    this.polling = true;
    let n = 0;
    try {
      this.engine.drainUsed((slot, len) => {
        n++;
        this.deliverQuietly(slot, len);
      });
    } catch {
      // A §6.4 violation (or memory gone meanwhile): nothing beyond it is trusted.
    } finally {
      this.polling = false;
    }
    if (n > 0) {
      try {
        this.onUsedBatch?.();
      } catch {
        // As for onUsed during recovery: the completions were delivered; the session is ending.
      }
    }
    return n;
  }

  /**
   * The session ended: every request still in flight comes back through onFailed (never dropped
   * silently, §4.10). The queue is dead afterwards; its memory belongs to the old allocator.
   */
  failAll(err: Error): void {
    this.live = false;
    this.stopReclaim();
    const cb = this.onFailed;
    for (const slot of this.engine.failAll()) {
      const token = this.tokens[slot] as T;
      this.tokens[slot] = undefined;
      this.sg[slot] = null; // its memory belongs to the ended session's allocator
      if (cb !== null) {
        try {
          cb(token, err);
        } catch {
          // A throwing onFailed must not stop the others from being failed.
        }
      }
    }
  }

  /** Poll again on the next turn of the event loop (completions are waiting that no interrupt announces). */
  private schedulePoll(): void {
    if (this.pollQueued) return;
    this.pollQueued = true;
    setImmediate(this.pollTask);
  }

  /** A producer was turned away: make sure completions are noticed even without interrupts. */
  private starve(): false {
    this.starved = true;
    if (this.reclaimTimer === null && this.live && this.engine.inFlightCount > 0) {
      // Unref'd: a queue waiting for completions must not keep a process alive by itself.
      this.reclaimTimer = setTimeout(this.reclaimTick, this.reclaimDelay).unref();
    }
    return false;
  }

  private reclaim(): void {
    this.reclaimTimer = null;
    if (!this.live || !this.starved || this.engine.inFlightCount === 0) {
      this.reclaimDelay = 0;
      return;
    }
    if (this.poll() > 0) {
      // onUsed let the producer post again; if it is turned away again it re-arms from 0.
      this.reclaimDelay = 0;
      return;
    }
    this.reclaimDelay = Math.min(this.reclaimDelay === 0 ? 1 : this.reclaimDelay * 2, 64);
    if (this.live) this.reclaimTimer = setTimeout(this.reclaimTick, this.reclaimDelay).unref();
  }

  private stopReclaim(): void {
    if (this.reclaimTimer !== null) clearTimeout(this.reclaimTimer);
    this.reclaimTimer = null;
    this.starved = false;
    this.reclaimDelay = 0;
  }

  /** One used chain: hand its written bytes to onUsed, then free its buffers and slot. */
  private complete(slot: number, len: number): void {
    const token = this.tokens[slot] as T;
    const oa = this.outAddr[slot];
    const ol = this.outLen[slot];
    const ia = this.inAddr[slot];
    const il = this.inLen[slot];
    this.tokens[slot] = undefined;
    const rec = this.sg[slot];
    this.freeSlots[this.freeSlotCount++] = slot; // the callback may post again
    if (rec !== null) {
      this.sg[slot] = null;
      this.completeSg(token, rec, len);
      return;
    }
    let again = false;
    try {
      const cb = this.onUsed;
      // The view is valid during the call only (as documented), so a cached one is as good.
      if (cb !== null) {
        const data = ia >= 0 ? this.views.view(ia, len) : EMPTY;
        this.oneSeg[0] = data;
        this.repostable = oa < 0 && ia >= 0;
        this.repostAsked = false;
        cb(token, data, ia >= 0 ? this.oneSeg : NO_SEGS);
        again = this.repostAsked;
      }
    } finally {
      this.oneSeg[0] = EMPTY_SEG;
      this.repostable = false;
      this.repostAsked = false;
      this.reserved = 0;
      // A callback that threw leaves again false: the buffer is freed, the device is broken.
      if (!again || !this.repostBuffer(token, ia, il)) this.freeBuffers(oa, ol, ia, il);
    }
  }

  /** repost(): the completed writable buffer `ia` of `il` bytes, posted again for `token`. */
  private repostBuffer(token: T, ia: number, il: number): boolean {
    // The completion just freed a slot and a descriptor; onUsed may have taken them for an add().
    if (!this.live || this.freeSlotCount === 0 || this.engine.numFree === 0) return false;
    const slot = this.freeSlots[--this.freeSlotCount];
    if (this.engine.add1(ia, il, true, slot) < 0) {
      this.freeSlots[this.freeSlotCount++] = slot;
      return false;
    }
    this.tokens[slot] = token;
    this.outAddr[slot] = -1;
    this.outLen[slot] = 0;
    this.inAddr[slot] = ia;
    this.inLen[slot] = il;
    return true;
  }

  /** An addSgs() request completed with `len` written bytes (≤ its writable total, §6.4, checked by the engine). */
  private completeSg(token: T, rec: SgRecord, len: number): void {
    try {
      const views: Uint8Array[] = [];
      let left = len;
      for (let k = 0; k < rec.inAddr.length; k++) {
        const got = Math.min(left, rec.inLen[k]);
        left -= got;
        const v = new Uint8Array(this.u8.buffer, rec.inAddr[k], got);
        views.push(v);
        const dest = rec.inDest[k];
        if (dest !== null && got > 0) dest.set(v);
      }
      const cb = this.onUsed;
      if (cb !== null) cb(token, views.length > 0 ? views[0] : EMPTY, views);
    } finally {
      const a = rec.allocs;
      for (let i = 0; i < a.length; i += 3) this.alloc.free(a[i] === 0 ? 'driver' : 'device', a[i + 1], a[i + 2]);
    }
  }

  private freeBuffers(oa: number, ol: number, ia: number, il: number): void {
    if (oa >= 0) this.alloc.free('driver', oa, ol);
    // The device wrote this one: zero it now (§5.1), after onUsed — which typically posted the
    // next request already — rather than when it is next allocated, on the next request's way
    // to the device (perf: the zeroing's cache traffic then overlaps the device's work). Not
    // once the session is ending (drainAcknowledged writes nothing to shared memory): the
    // allocator then still knows the span as written, and zeroes it when it is allocated again.
    if (ia >= 0) this.alloc.free('device', ia, il, this.live);
  }
}

/**
 * Rounds of collect (at most `size` completions each) → re-enable interrupts → re-check in one
 * poll() before the rest is left to the next event-loop turn: enough to follow a device that
 * publishes while we work, bounded so that timers, sockets and other queues get their turn.
 */
const POLL_ROUNDS = 8;

const EMPTY = new Uint8Array(0);
const EMPTY_SEG = EMPTY;
const NO_SEGS: readonly Uint8Array[] = [];
