/**
 * The back-end's queues: the per-queue register window (§4.3 `queue_sel` … `queue_enable`),
 * enable-time validation (§6.1, §6.2, §5.2) and the handles a device uses during a session.
 *
 * Private state per queue is what the FE recorded by transactions, copied once (§4.3); the header
 * window is only a display of it. At `queue_enable` := 1 the recorded size and addresses are
 * latched and the split-ring engine's device queue is built over them; `queue_enable` := 0 and
 * device reset drop it, so no old ring is touched afterwards (§4.5, §8 #32).
 */
import type { QueueDescription } from './describe.js';
import { VirtioFeature, hasFeature } from 'virtio-spec-types';
import { ArgumentError, RingError } from '../errors.js';
import { DeviceQueue } from '../ring/device-queue.js';
import { MemoryView } from '../ring/memory.js';
import type { QueueAddresses } from '../ring/ring-layout.js';
import { createAccessPolicy, type AccessPolicy } from '../ring/validation.js';
import type { DeviceChain, DeviceQueueHandle } from './device-api.js';
import {
  HDR_QUEUE_DESC,
  HDR_QUEUE_DEVICE,
  HDR_QUEUE_DRIVER,
  HDR_QUEUE_DRIVER_VECTOR,
  HDR_QUEUE_SIZE,
  addressToNumber,
  type BackendHeader,
} from './header.js';
import { deviceVectorFor } from './vectors.js';

// The split-ring engine (ring/) under the back-end's queue registers: the §6.2 access policy,
// built once per backend, and a DeviceQueue per enabled queue with the negotiated ring features.

/** The engine queue as the backend uses it. */
type BackendRing = DeviceQueue;

export interface RingContext {
  readonly memory: MemoryView;
  readonly policy: AccessPolicy;
}

/**
 * The BE's view of the window: it may read [0, RW + 2·OUT) and write [0, RW) plus its own
 * output section (§6.2); with `enforceIsolation` only the §5.2 placements (needs OUT ≠ 0).
 */
export function createRingContext(window: ArrayBuffer, rwSize: number, outputSectionSize: number, ownPeer: number, enforceIsolation: boolean): RingContext {
  return {
    memory: new MemoryView(window),
    policy: createAccessPolicy({ rwSize, outputSectionSize, maxPeers: 2, ownPeer, enforceIsolation }),
  };
}

/**
 * `queue_enable` := 1 (§4.3): validate (§6.1; throws RingError) and start a device queue. A used
 * ring in the BE's own output section is zeroed here (§5.2) — the engine's default.
 */
function openRing(ctx: RingContext, addrs: QueueAddresses, offeredMax: number, features: bigint): BackendRing {
  return new DeviceQueue({
    ...addrs,
    memory: ctx.memory,
    policy: ctx.policy,
    offeredMax,
    eventIdx: hasFeature(features, VirtioFeature.RING_EVENT_IDX),
    indirect: hasFeature(features, VirtioFeature.RING_INDIRECT_DESC),
  });
}

/** One queue's private registers. */
class QueueSlot {
  readonly index: number;
  readonly maxSize: number;
  size = 0;
  driverVector = 0;
  desc = 0n;
  driver = 0n;
  device = 0n;
  enabled = false;
  /** The engine queue while enabled and not stopped. */
  ring: BackendRing | null = null;
  /** Driver vector latched at enable (§4.3: latch vectors). */
  liveDriverVector = 0;

  constructor(index: number, maxSize: number) {
    this.index = index;
    this.maxSize = maxSize;
  }

  forget(): void {
    this.size = 0;
    this.driverVector = 0;
    this.desc = 0n;
    this.driver = 0n;
    this.device = 0n;
    this.enabled = false;
    this.drop();
    this.liveDriverVector = 0;
  }

  /** Let go of the engine queue: chains a device still holds copy nothing any more (§4.3, §4.5). */
  drop(): void {
    this.ring?.stop();
    this.ring = null;
  }
}

/** What a queue handle needs from the backend. */
export interface QueueHost {
  /** A ring violation or a device callback exception (§6.3). */
  violation(err: Error): void;
  /** §4.9: `queue_event` := 1, full fence, Doorbell(FE, vector). */
  notifyDriver(vector: number): void;
  /** A device stopped at its per-wake-up budget with chains left: service the queues again soon. */
  again(): void;
  /** The device's queue callback threw `err` (told before the violation it causes). */
  deviceThrew?(err: Error, callback: string): void;
}

/** The device's view of one live queue for one session (device-api.ts). Inert after the session. */
class BackendQueueHandle implements DeviceQueueHandle {
  readonly index: number;
  readonly size: number;
  onAvailable: (() => void) | null = null;
  private ring: BackendRing | null;
  private readonly driverVector: number;
  private readonly host: QueueHost;
  /** Inside onAvailable: no re-entrant calls (device-api contract). */
  private inCallback = false;
  /**
   * Pops left in the current onAvailable call. A driver on another CPU can re-post as fast as the
   * device consumes, so "pop until null" alone could keep one callback going forever and starve
   * the event loop (every other queue, transactions, the peer's socket). One queue's worth per
   * call; then pop() says null and the transport calls onAvailable again on the next turn.
   */
  private budget = 0;
  private budgetHit = false;
  /**
   * Pushes since the last publication that could notify. A long batch publishes (and notifies, if
   * the driver asks) every `publishEvery` pushes on its own, so the driver can re-post into freed
   * slots while the device works through the rest (pipelining: +30–60 % small-message rate in
   * `npm run bench`, bench/README.md).
   */
  private unnotified = 0;
  private readonly publishEvery: number;
  /**
   * Bytes of the chains pushed and not yet published (readable length + written). A batch also
   * publishes once they reach {@link PUBLISH_BYTES}: large buffers take the device microseconds
   * each, and a driver that polls learns of every one at once and refills the ring while the
   * device works, instead of waiting for a count of them. That publication does not notify: see
   * {@link notifyOwed}.
   */
  private unpublishedBytes = 0;
  /**
   * A publication found the driver due a notification (§4.9) and did not send it: the next
   * notifying publication — the count rule or the device's flush() — sends it, one for all.
   * perf: with 64 KiB chains the byte rule publishes every chain, and a notification per chain
   * cost the back-end one eventfd write (tens of µs on a 2-vCPU VM) per 64 KiB; the count rule
   * still wakes a sleeping driver at most size/8 pushes apart (bench/README.md, console_stream).
   */
  private notifyOwed = false;
  /** Chains popped by the device since the last `takePops()` (poll() work count). */
  pops = 0;
  /** The device's last pop() found the ring empty: it wants more than there was. */
  private sawEmpty = false;
  /** Kicks were turned off for the current onAvailable call (turned on again at its end). */
  private suppressed = false;

  constructor(index: number, ring: BackendRing, driverVector: number, host: QueueHost) {
    this.index = index;
    this.size = ring.size;
    this.publishEvery = Math.max(16, ring.size >>> 3);
    this.ring = ring;
    this.driverVector = driverVector;
    this.host = host;
  }

  pop(): DeviceChain | null {
    const ring = this.ring;
    if (ring === null) return null;
    if (this.inCallback && this.budget <= 0) {
      this.budgetHit = true;
      return null;
    }
    try {
      const chain = ring.pop();
      if (chain !== null) {
        this.pops++;
        this.budget--;
        // The device is at work on this ring: the driver need not kick until it is done (§4.9).
        // Asked at the first chain, not before the first pop: a ring found broken is left as it was.
        if (this.inCallback && !this.suppressed && ring.notificationsEnabled) {
          ring.disableNotifications();
          this.suppressed = true;
        }
      }
      this.sawEmpty = chain === null;
      return chain;
    } catch (err) {
      this.host.violation(toError(err)); // stops this handle too
      return null;
    }
  }

  push(chain: DeviceChain, written: number): void {
    const ring = this.ring;
    if (ring === null) return;
    if (!Number.isInteger(written) || written < 0 || written > chain.writableLength) {
      throw new ArgumentError(`push: written ${String(written)} outside 0…${chain.writableLength}`);
    }
    if (!ring.holds(chain)) {
      // Not a chain popped from this queue (another queue's, an earlier session's, or pushed
      // already): completing the chain that shares its head here would report a request done
      // that the device never processed. A device bug, like a push of a head not in flight.
      this.host.violation(new ArgumentError(`push: chain ${String(chain.head)} is not in flight on queue ${this.index}`));
      return;
    }
    try {
      ring.push(chain.head, written);
    } catch (err) {
      this.host.violation(toError(err));
      return;
    }
    this.unpublishedBytes += chain.readableLength + written;
    if (++this.unnotified >= this.publishEvery) this.flush();
    else if (this.unpublishedBytes >= PUBLISH_BYTES) this.publish(false);
  }

  /** Publish every pushed used entry, and send the notification due now or owed (§4.9). */
  flush(): void {
    this.publish(true);
  }

  /** Publish the pushed used entries; notify the driver if due now or owed, or only owe it. */
  private publish(notify: boolean): void {
    const ring = this.ring;
    if (ring === null) return;
    if (notify) this.unnotified = 0;
    this.unpublishedBytes = 0;
    let due: boolean;
    try {
      due = ring.publish();
    } catch (err) {
      this.host.violation(toError(err));
      return;
    }
    if (!notify) {
      if (due) this.notifyOwed = true;
      return;
    }
    if (due || this.notifyOwed) {
      this.notifyOwed = false;
      this.host.notifyDriver(this.driverVector);
    }
  }

  /** Transport side: a wake-up may have brought buffers. Device exceptions are violations. */
  kick(): void {
    const cb = this.onAvailable;
    if (cb === null || this.ring === null || this.inCallback) return;
    this.inCallback = true;
    this.budget = this.size;
    this.budgetHit = false;
    this.sawEmpty = false;
    // pop() turns kicks off once the device takes a chain, if they were on (a spinning caller
    // has them off already and keeps them so); they are turned on again below.
    this.suppressed = false;
    try {
      cb();
    } catch (err) {
      const e = toError(err);
      this.host.deviceThrew?.(e, 'onAvailable');
      this.host.violation(e);
    } finally {
      this.inCallback = false;
    }
    // A device that published (byte rule) and returns without its flush() still notifies here:
    // what is published is not left waiting for the device's next flush.
    if (this.notifyOwed && this.ring !== null) {
      this.notifyOwed = false;
      this.host.notifyDriver(this.driverVector);
    }
    // Re-arm (fence, re-check). Chains that came meanwhile were not kicked: if the device had
    // asked for more than there was, serve it again soon. A device that stopped by itself (its
    // output pushes back, no input to deliver) pops again on its own event, as before.
    const pending = this.suppressed && this.ring !== null && this.setNotify(true);
    this.suppressed = false;
    if ((this.budgetHit || (pending && this.sawEmpty)) && this.ring !== null) this.host.again();
  }

  /**
   * perf (spin.ts): while the device polls in a bounded spin, ask the driver not to kick
   * (`on` false: NO_NOTIFY / avail_event behind, §4.9), and to kick again afterwards (`on` true:
   * re-arm, full fence, re-check). Returns true when chains arrived meanwhile — no kick will come
   * for them, so the caller must poll (no lost wake-up).
   */
  setNotify(on: boolean): boolean {
    const ring = this.ring;
    if (ring === null) return false;
    try {
      if (on) return ring.enableNotifications();
      ring.disableNotifications();
      return false;
    } catch (err) {
      this.host.violation(toError(err));
      return false;
    }
  }

  /** The session ended or the queue stopped: every later call is a no-op. */
  kill(): void {
    this.ring = null;
    this.onAvailable = null;
  }
}

/**
 * A batch publishes its used entries once the chains pushed since the last publication carried
 * this many bytes (bench/README.md, bulk64k): a 64 KiB buffer is published as soon as it is
 * consumed — one ordered store and a fence, against the driver's idle wait for a count of them —
 * while small messages keep the count rule (`publishEvery`). Such a publication leaves the
 * notification to the count rule or flush() (`notifyOwed`).
 */
export const PUBLISH_BYTES = 65536;

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export class BackendQueues {
  private readonly header: BackendHeader;
  private readonly ctx: RingContext;
  private readonly slots: QueueSlot[];
  private readonly queueCountOf: (features: bigint) => number;
  private readonly vectors: number;
  private readonly host: QueueHost;
  /** Handles of the current session (by queue index), or empty. */
  private handles: (BackendQueueHandle | undefined)[] = [];

  constructor(
    header: BackendHeader,
    ctx: RingContext,
    offered: bigint,
    queueCount: (features: bigint) => number,
    queueMaxSize: (index: number) => number,
    vectors: number,
    host: QueueHost,
  ) {
    this.header = header;
    this.ctx = ctx;
    this.queueCountOf = queueCount;
    this.vectors = vectors;
    this.host = host;
    const n = queueCount(offered);
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new ArgumentError(`queueCount must be 0…65535, got ${String(n)}`);
    this.slots = [];
    for (let i = 0; i < n; i++) {
      const max = queueMaxSize(i);
      if (!Number.isInteger(max) || max < 1 || max > 32768 || (max & (max - 1)) !== 0) {
        throw new ArgumentError(`queueMaxSize(${i}) must be a power of two 1…32768, got ${String(max)}`);
      }
      this.slots.push(new QueueSlot(i, max));
    }
  }

  /** Queue count under `features`, bounded by the slots built for the offered set. */
  count(features: bigint): number {
    let n: number;
    try {
      n = this.queueCountOf(features);
    } catch {
      n = this.slots.length;
    }
    return Number.isInteger(n) && n >= 0 ? Math.min(n, this.slots.length) : 0;
  }

  private slot(sel: number, features: bigint): QueueSlot | null {
    return sel < this.count(features) ? this.slots[sel] : null;
  }

  /** §4.3 `queue_sel`: show the queue's window; all zero for a non-existent queue. */
  loadWindow(sel: number, features: bigint): void {
    const s = this.slot(sel, features);
    if (s === null) {
      this.header.loadQueueWindow(0, 0, 0, 0, 0n, 0n, 0n);
      return;
    }
    const vector = deviceVectorFor(s.index, this.count(features), this.vectors);
    this.header.loadQueueWindow(s.enabled ? s.size : s.maxSize, vector, s.driverVector, s.enabled ? 1 : 0, s.desc, s.driver, s.device);
  }

  /** §4.3 recording of `queue_size` / `queue_driver_vector` (u16). Ignored for a live or absent queue. */
  record(sel: number, off: number, value: number): void {
    const s = this.slots[sel];
    if (s === undefined || s.enabled) return;
    if (off === HDR_QUEUE_SIZE) s.size = value;
    else if (off === HDR_QUEUE_DRIVER_VECTOR) s.driverVector = value;
  }

  /** §4.3 recording of the ring addresses (u64, used exactly as given, §4.7). */
  recordAddress(sel: number, off: number, value: bigint): void {
    const s = this.slots[sel];
    if (s === undefined || s.enabled) return;
    if (off === HDR_QUEUE_DESC) s.desc = value;
    else if (off === HDR_QUEUE_DRIVER) s.driver = value;
    else if (off === HDR_QUEUE_DEVICE) s.device = value;
  }

  /**
   * §4.3 `queue_enable` := 1: validate (§6.1, §6.2, enforced §5.2), latch, build the device
   * queue. Throws RingError on a violation (the caller sets DEVICE_NEEDS_RESET).
   */
  enable(sel: number, features: bigint): void {
    const s = this.slot(sel, features);
    if (s === null) throw new RingError('VSHM_ERR_QUEUE_ABSENT', '6.1', `queue ${sel} does not exist`);
    if (s.enabled) return;
    const addrs = {
      size: s.size,
      desc: addressToNumber(s.desc),
      avail: addressToNumber(s.driver),
      used: addressToNumber(s.device),
    };
    s.ring = openRing(this.ctx, addrs, s.maxSize, features); // throws RingError
    s.enabled = true;
    s.liveDriverVector = s.driverVector;
  }

  /** §4.3 `queue_enable` := 0: stop and forget the queue. */
  disable(sel: number): void {
    const s = this.slots[sel];
    if (s === undefined) return;
    const h = this.handles[sel];
    if (h !== undefined) h.kill();
    s.forget();
  }

  /** §6.3: stop every queue (kept as enabled in the window, never touched again until reset). */
  stopAll(): void {
    for (const h of this.handles) if (h !== undefined) h.kill();
    for (const s of this.slots) s.drop();
  }

  /** §4.5 reset / §4.10 re-initialisation: forget every queue. */
  forgetAll(): void {
    this.closeSession();
    for (const s of this.slots) s.forget();
  }

  /** DRIVER_OK: one handle per enabled queue. */
  openSession(): readonly (DeviceQueueHandle | undefined)[] {
    this.closeSession();
    const handles: (BackendQueueHandle | undefined)[] = [];
    for (const s of this.slots) {
      handles.push(s.enabled && s.ring !== null ? new BackendQueueHandle(s.index, s.ring, s.liveDriverVector, this.host) : undefined);
    }
    this.handles = handles;
    return handles;
  }

  closeSession(): void {
    for (const h of this.handles) if (h !== undefined) h.kill();
    this.handles = [];
  }

  /**
   * A snapshot of every queue's private registers for a status report (vshm-inspect): what the
   * header's queue window would show for each queue. Not on any hot path.
   */
  describe(features: bigint): QueueDescription[] {
    const n = this.count(features);
    return this.slots.slice(0, n).map((s) => ({
      index: s.index,
      maxSize: s.maxSize,
      size: s.enabled ? s.size : 0,
      enabled: s.enabled,
      running: s.ring !== null,
      deviceVector: deviceVectorFor(s.index, n, this.vectors),
      driverVector: s.enabled ? s.liveDriverVector : s.driverVector,
      desc: s.desc,
      avail: s.driver,
      used: s.device,
    }));
  }

  /** perf (spin.ts): setNotify on every live queue; true when any has chains waiting. */
  setNotify(on: boolean): boolean {
    let pending = false;
    for (const h of this.handles) if (h !== undefined && h.setNotify(on)) pending = true;
    return pending;
  }

  /** §4.9 BE wake-up: offer every live queue to its device. Returns chains popped. No allocation. */
  service(): number {
    const hs = this.handles;
    let popped = 0;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i];
      if (h === undefined) continue;
      h.kick();
      popped += h.pops;
      h.pops = 0;
    }
    return popped;
  }
}

