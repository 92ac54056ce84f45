/**
 * `VirtioFrontend`: the virtio driver side of the transport (spec §4) over an `IvshmemDevice`.
 * The whole front-end state machine lives in this file: the loop, initialisation, operation,
 * the interrupt sink and recovery are its phases. Beside it: frontend-queues.ts (one queue's
 * rings and buffers), frontend-transactions.ts (the §4.3 writer), frontend-session.ts (the
 * session a driver receives) and features.ts (what is proposed).
 *
 * Lifecycle (§4.10 FE), for as long as the front-end is open:
 *   (1) own State RESET → (2) wait for the BE entry READY (a vshm FE waits, it does not fail) →
 *   (3) validate the header, fresh allocator (§5) → (4) one-shot off, State := READY →
 *   (5) reset, ACKNOWLEDGE, DRIVER, features (§4.4), FEATURES_OK + re-read, queues (§4.6),
 *       Interrupt Control := 1, DRIVER_OK → ops.probe(session) → (6) operate.
 * Steps (3)–(5) run in exactly the order the spec (and the Linux virtio_ivshmem driver) uses.
 * Before a READY entry is trusted in (2), and right after every State := RESET that ends a
 * session (then vector 0 is rung once more), the server messages already received are handled:
 * a restarted BE takes the departed one's id (waitBackendReady(), enterReset()).
 * Every wait is a transaction, so a BE that leaves READY or stops answering makes the
 * initialisation throw a back-end failure, which is classified and recovered from below.
 *
 * Failure kinds, and how a session ends after each (recover()):
 * Every session end first delivers what the used rings acknowledge (endSession(): validated,
 * §6.4, nothing written; nothing from a detached mapping), then fails the rest, then remove().
 * - **lost** (BE entry leaves READY, PEER_GONE, server gone, vector 0 with the BE not READY, a
 *   transaction timeout): stop posting, clear both event bytes, deliver acknowledged / fail the
 *   rest, remove(), 'lost', and only then State := RESET (the BE re-initialises on seeing it),
 *   held until a BE still READY reacts (holdReset, bounded); back to (2): a full
 *   re-initialisation and a new probe (§8 items 34, 35).
 * - **broken** (a §6.4 violation in a used ring, a driver callback that threw, a config event
 *   with DEVICE_NEEDS_RESET): reset the device and await it (the BE then touches no old ring,
 *   §4.5, so the used rings are final), deliver acknowledged / fail the rest, remove(), 'error',
 *   re-run (3)–(6) while staying READY.
 * - **refused** (bad header, missing VERSION_1/ACCESS_PLATFORM, FEATURES_OK rejected, a queue
 *   that cannot be set up, not even at size 1 — smaller sizes than offered are tried first):
 *   'error', a pending start() rejects, status FAILED (best effort); wait for the BE to leave
 *   READY — or, if we never went READY, for its next vector-0 event (a fast re-init) — State :=
 *   RESET, start over from (1).
 * - **close**: a live session with the BE READY is reset (awaited) first, as a broken one, so the
 *   used rings are final; deliver acknowledged / fail the rest, start() rejects; in the other
 *   phases close() does the orderly reset itself.
 * A close() that arrives during a broken or refused recovery leaves State READY so that close()
 * still resets the device before leaving READY.
 *
 * Notifications (§4.9), D = 1 + queue count: per-queue (config on 0, queue k on 1 + k), shared
 * (all queues on 1, acted on if `queue_event` & 1), single (everything on 0: config part then
 * queue part). Vector 0 always checks the BE entry first (§4.10 FE step (6)). The interrupt sink
 * never throws: a driver callback that throws or a device that set DEVICE_NEEDS_RESET breaks the
 * session.
 *
 * Ownership: close() does the orderly shutdown in any phase (reset and await if our State is
 * READY, then State := RESET, interrupts off) but does NOT close the IvshmemDevice — whoever
 * opened it closes it.
 *
 * Events: 'ready' (session) after every probe; 'lost' (err) on every back-end failure;
 * 'error' (err) for refused devices and broken rings (only emitted when someone listens);
 * 'warning' (message) for a device fault the transport works around (a queue's device vector
 * beyond the vectors the server gave: vector 0 is rung instead, §4.6).
 */
import { EventEmitter } from 'node:events';
import { createLogger as createDebug } from '../log.js';
import { DeviceStatus, VirtioFeatureMask, availRingSize, descTableSize, usedRingSize } from 'virtio-spec-types';
import { ArgumentError, RingError, TransportError } from '../errors.js';
import { PEER_STATE_READY, PEER_STATE_RESET, type IvshmemDevice } from '../ivshmem/device.js';
import { MemoryView } from '../ring/memory.js';
import { SharedMemoryAllocator } from './allocator.js';
import type { DriverSession, VirtioDriverOps } from './device-api.js';
import { confirmFeatures, negotiate, readDeviceFeatures, writeDriverFeatures } from './features.js';
import { FrontendQueue } from './frontend-queues.js';
import { FrontendSession, GenerationConfigReader } from './frontend-session.js';
import { TransactionWriter, backendLost, isBackendFailure, type TransactionOptions } from './frontend-transactions.js';
import type { TransportDescription } from './describe.js';
import {
  FrontendHeader,
  HDR_CONFIG,
  HDR_DEVICE_STATUS,
  HDR_QUEUE_DESC,
  HDR_QUEUE_DEVICE,
  HDR_QUEUE_DEVICE_VECTOR,
  HDR_QUEUE_DRIVER,
  HDR_QUEUE_DRIVER_VECTOR,
  HDR_QUEUE_ENABLE,
  HDR_QUEUE_SEL,
  HDR_QUEUE_SIZE,
  validateHeader,
} from './header.js';
import { checkDeviceOpen, checkVirtioDevice } from './role.js';
import { driverVectorFor, frontendVectorMode, type FrontendVectorMode } from './vectors.js';
import { attachSpin, frontendPollable, type SpinAttachment, type SpinOptions, type SpinStats } from './spin.js';

const log = createDebug('vshm:virtio:fe');

export interface VirtioFrontendOptions {
  /** A transaction not completed within this time is a back-end failure (§4.3). Default 5000. */
  transactionTimeoutMs?: number;
  /** Fine-tuning of the transaction completion poll. */
  transaction?: Omit<TransactionOptions, 'timeoutMs'>;
  /** Fallback poll of the BE state while waiting for READY (besides vector-0 events). Default 100 ms. */
  readyPollMs?: number;
  /**
   * After a back-end failure that left the BE entry READY (a transaction timed out), our State
   * stays RESET until the BE shows it saw it (entry not READY, gone, or a vector-0 event — every
   * State change raises one) or at most this long, so a BE that samples states cannot miss the
   * RESET and a hung one is still retried. Default: the transaction timeout, at most 1000 ms.
   */
  resetHoldMs?: number;
  /**
   * Pacing of re-initialisations after sessions that keep breaking (a §6.4 violation, a driver
   * callback that threw, DEVICE_NEEDS_RESET): the first break is re-initialised at once; each
   * further one in a row waits `firstMs`, doubling up to `maxMs`. A session that stayed live for
   * `maxMs` or longer ends the run. Defaults 10 and 1000 ms.
   */
  brokenRetry?: { firstMs?: number; maxMs?: number };
  /** Name in debug output. */
  debugName?: string;
  /**
   * Poll for used buffers for a bounded, adaptive time after each interrupt, with used-buffer
   * interrupts suppressed meanwhile (virtio/spin.ts). Absent: interrupts only. `openFrontend`
   * turns it on by default.
   */
  spin?: SpinOptions;
}

/** Where the front-end is in its §4.10 loop. */
export type FrontendPhase = 'created' | 'waiting' | 'initialising' | 'live' | 'recovering' | 'closed';

type FailureKind = 'lost' | 'broken' | 'refused' | 'close';
interface Failure {
  kind: FailureKind;
  err: Error;
}

/**
 * The driver side of a virtio-over-ivshmem link (§4): give it an `IvshmemDevice` the server made
 * the front-end and a driver's ops table; `start()` resolves with the first live session and the
 * front-end re-initialises by itself after every back-end failure. `openFrontend()` connects,
 * builds and starts one in a single call.
 */
export class VirtioFrontend extends EventEmitter {
  readonly device: IvshmemDevice;
  readonly ops: VirtioDriverOps;
  private readonly name: string;
  private readonly partner: number;
  private readonly header: FrontendHeader;
  private readonly memory: MemoryView;
  private readonly txn: TransactionWriter;
  private readonly readyPollMs: number;
  private readonly resetHoldMs: number;
  private readonly brokenFirstMs: number;
  private readonly brokenMaxMs: number;
  /** Sessions in a row that ended broken (each pause doubles), and when the current one went live. */
  private brokenStreak = 0;
  private liveSince = -1;
  /**
   * Vector-0 interrupts and peer events seen so far. The device model raises vector 0 on every
   * State change (§4.9), also when the BE goes READY → RESET → READY faster than its entry can be
   * sampled; waits that must notice a re-initialising BE compare this count.
   */
  private stateEvents = 0;
  /** Buffer space held while the queues are sized (fits()), as [pool, offset, bytes] triples. */
  private heldBuffers: number[] = [];
  /** The header's first bytes as the last initialisation validated them (a refused BE changed?). */
  private validatedHeader: Uint8Array = new Uint8Array(0);
  private phaseValue: FrontendPhase = 'created';
  private readonly spinOptions: SpinOptions | undefined;
  private spin: SpinAttachment | null = null;
  private closing = false;
  private serverGone = false;
  private generation = 0;
  private sessionValue: FrontendSession | null = null;
  /** The §4.9 vector mode of the current (or last) session. */
  private mode: FrontendVectorMode = 'single';
  /** The session's queues in setup order (empty between sessions). */
  private queues: FrontendQueue[] = [];
  /** Queue by driver vector (per-queue mode). */
  private byVector: (FrontendQueue | undefined)[] = [];
  private failure: Failure | null = null;
  private failureWake: ((f: Failure) => void) | null = null;
  private waitWake: (() => void) | null = null;
  private loopDone: Promise<void> | null = null;
  private closeDone: Promise<void> | null = null;
  private startWaiters: { resolve: (s: DriverSession) => void; reject: (e: Error) => void }[] = [];
  private everReady = false;
  /** The close of a live session already reset the device, or tried to (recover): shutdown does not again. */
  private closeReset = false;

  private readonly onPeerEvent = (id: number): void => {
    if (id !== this.partner) return;
    this.stateEvents++;
    this.checkBackend();
  };
  private readonly onServerGone = (): void => {
    // §1.8: departures can no longer be announced, so the BE counts as gone.
    this.serverGone = true;
    this.checkBackend();
  };
  private readonly onDeviceClose = (): void => {
    this.closing = true;
    this.signal({ kind: 'close', err: new TransportError('VSHM_ERR_DEVICE_CLOSED', '4.10', 'ivshmem device closed') });
    this.waitWake?.();
  };
  private readonly onIrq = (vector: number): void => this.interrupt(vector);
  /** A queue found a §6.4 violation or a callback threw. */
  private readonly onBroken = (err: Error): void => this.signal({ kind: 'broken', err });
  /** A config read found the BE gone. */
  private readonly onLost = (err: Error): void => this.signal({ kind: 'lost', err });

  constructor(device: IvshmemDevice, ops: VirtioDriverOps, opts: VirtioFrontendOptions = {}) {
    super();
    checkOps(ops);
    for (const k of Object.keys(opts)) {
      if (!['transactionTimeoutMs', 'transaction', 'readyPollMs', 'resetHoldMs', 'brokenRetry', 'debugName', 'spin'].includes(k)) {
        throw new ArgumentError(`VirtioFrontend: unknown option '${k}'`);
      }
    }
    this.spinOptions = opts.spin;
    const timeout = opts.transactionTimeoutMs ?? 5000;
    if (!(timeout > 0)) throw new ArgumentError(`transactionTimeoutMs must be > 0, got ${timeout}`);
    checkDeviceOpen(device, 'VirtioFrontend');
    checkVirtioDevice(device, 'front-end', ops.deviceId);
    this.device = device;
    this.ops = ops;
    this.name = opts.debugName ?? `fe${device.id}`;
    this.partner = 1 - device.id;
    this.readyPollMs = opts.readyPollMs ?? 100;
    this.resetHoldMs = opts.resetHoldMs ?? Math.min(1000, timeout);
    if (!(this.resetHoldMs >= 0)) throw new ArgumentError(`resetHoldMs must be ≥ 0, got ${this.resetHoldMs}`);
    this.brokenFirstMs = opts.brokenRetry?.firstMs ?? 10;
    this.brokenMaxMs = opts.brokenRetry?.maxMs ?? 1000;
    if (!(this.brokenFirstMs >= 0 && this.brokenMaxMs >= this.brokenFirstMs)) {
      throw new ArgumentError(`brokenRetry needs 0 ≤ firstMs ≤ maxMs, got ${this.brokenFirstMs} and ${this.brokenMaxMs}`);
    }
    // The whole-window view first: it refuses a region above 4 GiB with a message, where the
    // header views over a larger R/W section would fail with a bare RangeError.
    this.memory = new MemoryView(device.window);
    this.header = new FrontendHeader(device.window, device.layout.rwSize);
    this.txn = new TransactionWriter(this.header, device, this.partner, { ...opts.transaction, timeoutMs: timeout });
  }

  get phase(): FrontendPhase {
    return this.phaseValue;
  }

  /** The live session, or null between sessions. */
  get session(): DriverSession | null {
    return this.sessionValue !== null && !this.sessionValue.dead ? this.sessionValue : null;
  }

  /** The §4.9 vector mode of the current (or last) session. */
  get vectorMode(): FrontendVectorMode {
    return this.mode;
  }

  /** Transactions completed so far (tests, debugging). */
  get transactionsCompleted(): number {
    return this.txn.completed;
  }

  /**
   * A snapshot of the front-end's private state for status reports (`vshm-inspect`, the status
   * file of connect.ts): phase, the session's features and every queue's size, vectors and ring
   * addresses. `status` is the header's `device_status` while a session is live, else 0.
   * Costs nothing unless called.
   */
  describe(): TransportDescription {
    const s = this.sessionValue;
    const live = s !== null && this.phaseValue === 'live';
    return {
      role: 'front-end',
      phase: this.phaseValue,
      deviceId: this.ops.deviceId,
      offeredFeatures: null,
      negotiatedFeatures: s?.features ?? null,
      status: live && this.mapped() ? this.header.load(HDR_DEVICE_STATUS, 4) : 0,
      headerSize: s === null ? 0 : HDR_CONFIG + s.configSize,
      queues: this.queues.map((q) => ({
        index: q.index,
        maxSize: q.size,
        size: q.size,
        enabled: live,
        running: live,
        deviceVector: q.deviceVector,
        driverVector: q.driverVector,
        desc: BigInt(q.rings.desc),
        avail: BigInt(q.rings.avail),
        used: BigInt(q.rings.used),
      })),
    };
  }

  /** Counters of the adaptive spin (live object), or null when the transport does not spin. */
  get spinStats(): SpinStats | null {
    return this.spin?.spinner.stats ?? null;
  }

  /** Whether any session was ever live. */
  get wasReady(): boolean {
    return this.everReady;
  }

  /**
   * Enter the §4.10 loop. Resolves with the first live session (after DRIVER_OK and probe);
   * later sessions are announced by 'ready'. Rejects if the first initialisation is refused or
   * the front-end is closed first; the loop keeps running after a refusal (see file comment).
   */
  start(): Promise<DriverSession> {
    if (this.phaseValue !== 'created') return Promise.reject(new TransportError('VSHM_ERR_STATE', '4.10', `start() in phase ${this.phaseValue}`));
    const p = new Promise<DriverSession>((resolve, reject) => this.startWaiters.push({ resolve, reject }));
    const d = this.device;
    d.on('peer-state', this.onPeerEvent);
    d.on('peer-gone', this.onPeerEvent);
    d.on('server-gone', this.onServerGone);
    d.on('close', this.onDeviceClose);
    d.interruptsEnabled = false;
    d.onInterrupt = this.onIrq;
    if (this.spinOptions !== undefined) this.spin = attachSpin(d, frontendPollable(this), this.spinOptions);
    d.setState(PEER_STATE_RESET); // (1)
    this.loopDone = this.loop().catch((err: unknown) => this.loopFailed(err));
    return p;
  }

  /**
   * Orderly shutdown (§4.10), correct in every phase: stop the loop and the data path (a pending
   * start() rejects); if our State is READY — the header is in use and a status may have been
   * written (initialising, live, recovering, refused) — and the BE is still READY, reset the
   * device and await completion (bounded by the transaction timeout), so the BE sees a driver
   * reset rather than a vanished driver; a live session is reset before its used rings are read
   * for the last time, so requests the device completed until then are delivered and only the
   * others fail with VSHM_ERR_CLOSED; then interrupts off and State := RESET. Idempotent;
   * concurrent calls share one shutdown.
   */
  close(): Promise<void> {
    this.closeDone ??= this.shutdown();
    return this.closeDone;
  }

  /**
   * Collect used buffers of every live queue without an interrupt (for bounded-spin callers).
   * Returns the number of completions delivered. Never throws: a §6.4 violation breaks the device.
   */
  poll(): number {
    if (this.phaseValue !== 'live') return 0;
    return this.pollAll();
  }

  // ------------------------------------------------------------------------------------------
  // The §4.10 loop
  // ------------------------------------------------------------------------------------------

  private async loop(): Promise<void> {
    for (let round = 0; !this.closing; round++) {
      // Each round yields to the event loop at least once, so no failure path can spin on microtasks.
      if (round > 0) await new Promise<void>((r) => setImmediate(r));
      if (this.closing) break;
      this.failure = null;
      if (!this.backendReady() || this.device.state !== PEER_STATE_READY) {
        // Still READY (a broken session ends with a device reset, not with RESET) while the BE
        // left READY since: a back-end failure (§4.10) — RESET first, which a new BE on that id
        // waits for (BE step 2) while we would wait for its READY.
        if (this.device.state === PEER_STATE_READY) this.enterReset();
        this.setPhase('waiting');
        const ok = await this.waitBackendReady(); // (2)
        if (!ok) break;
      }
      let f: Failure;
      try {
        this.setPhase('initialising');
        const session = await this.initialise();
        f = this.failure ?? (await this.operate(session));
      } catch (err) {
        f = this.failure ?? classify(err);
      }
      this.setPhase('recovering');
      await this.recover(f);
    }
  }

  /**
   * The loop threw: every failure a peer can cause is classified inside it, so this is a defect
   * of ours. Not an unhandled rejection (which ends the process) and not a transport left
   * half-alive: one 'error' (VSHM_ERR_TRANSPORT), a pending start() rejected with it, and the
   * orderly shutdown (close(), which waits for this handler through `loopDone`, so not awaited).
   */
  private loopFailed(err: unknown): void {
    const e = new TransportError('VSHM_ERR_TRANSPORT', '4.10', `front-end loop failed: ${err instanceof Error ? err.message : String(err)}`);
    log('%s: %s', this.name, e.message);
    this.rejectStart(e);
    this.safeEmit('error', e);
    void this.close();
  }

  /** Steps (3)–(5); resolves with the new (not yet live) session. */
  private async initialise(): Promise<FrontendSession> {
    const gen = ++this.generation;
    const d = this.device;
    const h = this.header;
    const txn = this.txn;
    this.validatedHeader = this.memory.u8.slice(0, Math.min(HEADER_SNAPSHOT, d.layout.rwSize));
    const size = validateHeader(h, d.layout.rwSize); // (3)
    const alloc = new SharedMemoryAllocator(d.layout, this.memory.u8, d.id, this.partner, size);
    d.oneShot = false; // (4)
    d.setState(PEER_STATE_READY);
    this.throwIfFailed();
    // (5)
    await this.writeStatus(DeviceStatus.RESET);
    let status: number = DeviceStatus.ACKNOWLEDGE;
    await this.writeStatus(status);
    status |= DeviceStatus.DRIVER;
    await this.writeStatus(status);
    const offered = await readDeviceFeatures(txn, h);
    const features = negotiate(offered, this.ops.features);
    await writeDriverFeatures(txn, features);
    status = await confirmFeatures(txn, h, status);
    // The count may depend on config (console max_nr_ports, §7.2): readable from here on (§4.8).
    const config = new GenerationConfigReader(h, size, d, this.partner, this.onLost);
    let count: number;
    try {
      count = this.ops.queueCount(features, config);
    } finally {
      config.close();
    }
    this.throwIfFailed();
    if (!Number.isInteger(count) || count < 0 || count > 0xffff) throw new TransportError('VSHM_ERR_QUEUE', '4.6', `driver asked for ${count} queues`);
    const mode = frontendVectorMode(count, d.vectors);
    log('%s: features 0x%s, %d queues, %d vectors: %s mode', this.name, features.toString(16), count, d.vectors, mode);
    // Published before the first queue is enabled, so a failure can fail them.
    const queues: FrontendQueue[] = [];
    const byVector: (FrontendQueue | undefined)[] = [];
    this.queues = queues;
    this.mode = mode;
    this.byVector = byVector;
    const eventIdx = (features & VirtioFeatureMask.RING_EVENT_IDX) !== 0n;
    this.heldBuffers = [];
    for (let i = 0; i < count; i++) {
      // §4.6 steps 1–2: `queue_sel` := i, await, read enable, size, device vector.
      await txn.write(HDR_QUEUE_SEL, 4, i);
      const enabled = h.load(HDR_QUEUE_ENABLE, 2);
      const maxSize = h.load(HDR_QUEUE_SIZE, 2);
      let deviceVector = h.load(HDR_QUEUE_DEVICE_VECTOR, 2);
      if (maxSize === 0) throw new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${i} does not exist on the device`);
      if (enabled !== 0) throw new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${i} is already enabled after reset`);
      if (deviceVector >= d.vectors) {
        const line = `queue ${i}: device vector ${deviceVector} is not below the ${d.vectors} vectors: vector 0 is rung instead (§4.6)`;
        log('%s: warning: %s', this.name, line);
        this.emit('warning', line);
        deviceVector = 0;
      }
      const want = this.ops.queueSize?.(i, maxSize) ?? maxSize;
      if (!Number.isInteger(want) || want < 1 || want > maxSize) {
        throw new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${i}: size ${want} not in 1…${maxSize}`);
      }
      const qsize = this.fitQueueSize(alloc, features, i, count, floorPow2(want), maxSize);
      const driverVector = driverVectorFor(i, mode);
      const q = new FrontendQueue({
        index: i,
        size: qsize,
        memory: this.memory,
        allocator: alloc,
        eventIdx,
        indirect: (features & VirtioFeatureMask.RING_INDIRECT_DESC) !== 0n,
        deviceVector,
        driverVector,
        kick: (v) => d.doorbell(this.partner, v),
        broken: this.onBroken,
      });
      queues.push(q);
      if (mode === 'per-queue') byVector[driverVector] = q;
      log('%s: queue %d: size %d (offered %d), device vector %d, driver vector %d', this.name, i, qsize, maxSize, deviceVector, driverVector);
      // §4.6 step 4: size, driver vector, the three addresses, then `queue_enable` := 1 (2 bytes,
      // as a vshm FE writes it).
      await txn.write(HDR_QUEUE_SIZE, 2, qsize);
      await txn.write(HDR_QUEUE_DRIVER_VECTOR, 2, driverVector);
      await txn.write(HDR_QUEUE_DESC, 8, BigInt(q.rings.desc));
      await txn.write(HDR_QUEUE_DRIVER, 8, BigInt(q.rings.avail));
      await txn.write(HDR_QUEUE_DEVICE, 8, BigInt(q.rings.used));
      await txn.write(HDR_QUEUE_ENABLE, 2, 1);
    }
    this.releaseHeldBuffers(alloc);
    d.interruptsEnabled = true;
    status |= DeviceStatus.DRIVER_OK;
    await this.writeStatus(status);
    this.throwIfFailed();
    const session = new FrontendSession({
      features,
      queues,
      headerSize: size,
      generation: gen,
      header: h,
      txn,
      device: d,
      partner: this.partner,
      onLost: this.onLost,
    });
    this.sessionValue = session;
    this.setLive(true);
    return session;
  }

  /**
   * §4.6 step 3: the largest power of two ≤ `start` whose rings and the buffers the driver keeps
   * on it (`queueBuffers`) fit what is left of shared memory while a 1-entry ring (and its
   * buffers) of every later queue still fits. Tried by allocating and freeing again, with the
   * §5 chunk rule itself, so the answer is exact. Throws VSHM_ERR_NO_MEMORY (a refusal) when not
   * even size 1 fits.
   */
  private fitQueueSize(alloc: SharedMemoryAllocator, features: bigint, index: number, count: number, start: number, offered: number): number {
    for (let size = start; size >= 1; size >>>= 1) {
      if (this.fits(alloc, features, index, size, count)) {
        if (size < start) log('%s: queue %d: size %d does not fit the shared memory, using %d', this.name, index, start, size);
        return size;
      }
    }
    const pool = alloc.devicePool === alloc.driverPool ? `${alloc.driverPool.size}-byte R/W section` : `${alloc.driverPool.size}-byte output sections`;
    throw new TransportError(
      'VSHM_ERR_NO_MEMORY',
      '5',
      `queue ${index}: the ${pool} cannot hold even a 1-entry ring and its buffers (offered size ${offered}); give the server more shared memory (-l)`,
    );
  }

  /**
   * Whether queue `index` at `size` plus 1-entry queues after it fit now. Every trial allocation
   * is undone except, on success, the buffers of queue `index` itself: they stay held in
   * `heldBuffers` while the later queues are sized (the driver posts its buffers only after
   * probe), and are given back by releaseHeldBuffers() once every ring is placed.
   */
  private fits(alloc: SharedMemoryAllocator, features: bigint, index: number, size: number, count: number): boolean {
    const rings: number[] = []; // [pool (0 driver, 1 device), offset, bytes] triples
    const buffers: number[] = [];
    const take = (into: number[], kind: 'driver' | 'device', bytes: number, times = 1): boolean => {
      for (let k = 0; k < times; k++) {
        const off = alloc.alloc(kind, bytes, bytes); // a trial: nothing is written into it
        if (off < 0) return false;
        into.push(kind === 'driver' ? 0 : 1, off, bytes);
      }
      return true;
    };
    const queue = (i: number, n: number): boolean => {
      if (!take(rings, 'driver', descTableSize(n)) || !take(rings, 'driver', availRingSize(n)) || !take(rings, 'device', usedRingSize(n))) return false;
      const b = this.ops.queueBuffers?.(i, n, features);
      if (b === undefined) return true;
      for (const [kind, need] of [
        ['driver', b.readable],
        ['device', b.writable],
      ] as const) {
        if (need === undefined || need.count <= 0) continue;
        if (!Number.isInteger(need.bytes) || need.bytes < 1 || !Number.isInteger(need.count)) {
          throw new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${i}: queueBuffers gave ${need.count} buffers of ${need.bytes} bytes`);
        }
        if (!take(i === index ? buffers : rings, kind, need.bytes, need.count)) return false;
      }
      return true;
    };
    const undo = (list: number[]): void => {
      for (let k = list.length - 3; k >= 0; k -= 3) alloc.free(list[k] === 0 ? 'driver' : 'device', list[k + 1], list[k + 2]);
    };
    let ok = false;
    try {
      ok = queue(index, size);
      for (let j = index + 1; ok && j < count; j++) ok = queue(j, 1);
      return ok;
    } finally {
      undo(rings);
      if (ok) this.heldBuffers.push(...buffers);
      else undo(buffers);
    }
  }

  /** Give back the buffer space held while queues were sized (fits()): the driver posts into it. */
  private releaseHeldBuffers(alloc: SharedMemoryAllocator): void {
    const held = this.heldBuffers;
    this.heldBuffers = [];
    for (let k = held.length - 3; k >= 0; k -= 3) alloc.free(held[k] === 0 ? 'driver' : 'device', held[k + 1], held[k + 2]);
  }

  /** Write `device_status` and await completion (§4.5). */
  private writeStatus(status: number): Promise<void> {
    return this.txn.write(HDR_DEVICE_STATUS, 4, status);
  }

  /** (6): probe, announce, and wait for the failure that ends the session. */
  private async operate(session: FrontendSession): Promise<Failure> {
    this.setPhase('live');
    this.liveSince = performance.now();
    try {
      this.ops.probe(session);
    } catch (err) {
      this.signal({ kind: 'broken', err: asError(err, 'probe threw') });
    }
    if (this.failure === null) {
      this.everReady = true;
      const waiters = this.startWaiters;
      this.startWaiters = [];
      for (const w of waiters) w.resolve(session);
      this.safeEmit('ready', session);
      // Events raised before interrupts were on or before we were live are lost (discarded, or
      // ignored while initialising): rescan vector 0 — a BE that left READY, or a config event
      // with DEVICE_NEEDS_RESET from a queue it refused (§6.3) — then the queues (§3 coalescing rule).
      this.onIrq(0);
      this.poll();
    }
    if (this.failure !== null) return this.failure;
    return new Promise<Failure>((resolve) => {
      this.failureWake = resolve;
    });
  }

  /** Record the failure that ends the current session (the first one wins). */
  private signal(f: Failure): void {
    if (this.failure !== null) {
      if (f.kind === 'close' && this.failure.kind !== 'close') this.closing = true;
      return;
    }
    this.failure = f;
    if (f.kind === 'lost' || f.kind === 'close') this.txn.abort(f.err);
    this.setLive(false);
    const wake = this.failureWake;
    this.failureWake = null;
    wake?.(f);
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure.err;
  }

  private backendReady(): boolean {
    return !this.serverGone && this.device.isPresent(this.partner) && this.device.peerState(this.partner) === PEER_STATE_READY;
  }

  /** Called on peer events and vector 0: a BE that left READY is a back-end failure. */
  private checkBackend(): void {
    if (!this.backendReady()) {
      if (this.phaseValue === 'initialising' || this.phaseValue === 'live') {
        this.signal({ kind: 'lost', err: backendLost(this.serverGone ? 'server gone' : 'back-end left READY') });
      }
    }
    this.waitWake?.();
  }

  /**
   * (2): resolves once the BE entry reads READY (false: closing). Entry 0 may read READY for a
   * new back-end on a departed one's id (a restarted back-end) before our socket watcher read
   * that PEER_GONE and the newcomer's EVENT_FDs; we would still hold the departed one's eventfds,
   * ring our READY and set-up transactions on them, and take the PEER_GONE that follows for the
   * newcomer's failure. The server queued both messages before the newcomer could write its
   * entry (§1.6, §1.3): handle them before the entry is trusted (one recvmsg, only when it looks
   * READY).
   */
  private waitBackendReady(): Promise<boolean> {
    const ready = (): boolean => {
      if (!this.backendReady()) return false;
      this.device.receivePending?.();
      return this.backendReady();
    };
    return this.waitFor(ready).then(() => !this.closing);
  }

  /** Resolve once `cond()` holds or the front-end closes; re-checked on peer events and a slow timer. */
  private waitFor(cond: () => boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.closing || cond()) {
          clearInterval(timer);
          this.waitWake = null;
          resolve();
        }
      };
      const timer = setInterval(check, this.readyPollMs);
      this.waitWake = check;
      check();
    });
  }

  // ------------------------------------------------------------------------------------------
  // Notifications (§4.9): the interrupt sink and the session's queues
  // ------------------------------------------------------------------------------------------

  /** The interrupt sink (§4.9). Never throws. */
  private interrupt(vector: number): void {
    try {
      if (vector === 0) {
        this.stateEvents++;
        if (!this.backendReady()) {
          this.checkBackend();
          return;
        }
        if (this.phaseValue !== 'live') {
          this.waitWake?.(); // a recovery may wait for exactly this event (holdReset, refused)
          return;
        }
        const h = this.header;
        if (h.configEvent) {
          h.clearConfigEvent();
          if ((h.load(HDR_DEVICE_STATUS, 4) & DeviceStatus.DEVICE_NEEDS_RESET) !== 0) {
            // §6.3: the BE found a ring violation, stopped all queues and waits for a reset.
            log('%s: config event with DEVICE_NEEDS_RESET', this.name);
            this.onBroken(new TransportError('VSHM_ERR_NEEDS_RESET', '6.3', 'device set DEVICE_NEEDS_RESET'));
            return;
          }
          log('%s: config event', this.name);
          const s = this.sessionValue;
          if (s !== null && this.ops.configChanged !== undefined) {
            try {
              this.ops.configChanged(s);
            } catch (err) {
              this.onBroken(asError(err, 'configChanged threw'));
              return;
            }
          }
        }
        if (this.mode === 'single') this.queuePart();
        return;
      }
      if (this.phaseValue !== 'live') return;
      if (this.mode === 'per-queue') {
        this.byVector[vector]?.poll();
      } else if (this.mode === 'shared' && vector === 1) {
        this.queuePart();
      }
    } catch (err) {
      log('%s: interrupt handler: %s', this.name, (err as Error).message);
    }
  }

  /** Shared/single mode: act if `queue_event` & 1 — store 0, full fence, poll all (§4.9). */
  private queuePart(): void {
    const h = this.header;
    if (!h.queueEvent) return;
    h.clearQueueEvent();
    this.pollAll();
  }

  /** Collect used buffers of every queue; returns the completions delivered. */
  private pollAll(): number {
    let n = 0;
    for (const q of this.queues) n += q.poll();
    return n;
  }

  /** Mark every queue live or dead; a dead queue accepts and touches nothing. */
  private setLive(live: boolean): void {
    for (const q of this.queues) q.live = live;
  }

  // ------------------------------------------------------------------------------------------
  // Recovery: how a session ends, per failure kind (file comment)
  // ------------------------------------------------------------------------------------------

  private async recover(f: Failure): Promise<void> {
    log('%s: %s: %s', this.name, f.kind, f.err.message);
    const lived = this.liveSince < 0 ? 0 : performance.now() - this.liveSince;
    this.liveSince = -1;
    // A run of broken sessions ends with any other failure (a new back-end, a refusal) or with a
    // session that lasted (pauseAfterBroken).
    if (f.kind !== 'broken' || lived >= this.brokenMaxMs) this.brokenStreak = 0;
    const d = this.device;
    const session = this.sessionValue;
    this.sessionValue = null;
    session?.kill();
    // Stop touching rings and buffers before anything else.
    this.setLive(false);
    if (f.kind === 'lost') {
      this.txn.abort(f.err);
      d.interruptsEnabled = false;
      // Not once the device was closed (its mapping is detached): a store would throw and kill
      // the loop, leaving the session's requests unfailed and close() rejecting.
      if (this.mapped()) {
        this.header.clearConfigEvent();
        this.header.clearQueueEvent();
      }
    }
    let resetErr: unknown = null;
    if (f.kind === 'broken') {
      // Reset before reading the used rings: once the BE completed it, it touches no old ring
      // (§4.5), so what the rings acknowledge is final and nothing it consumed is failed and
      // sent again.
      d.interruptsEnabled = false;
      try {
        this.failure = null; // so that the reset transaction may run
        await this.writeStatus(DeviceStatus.RESET);
        log('%s: device reset after a broken session', this.name);
      } catch (err) {
        resetErr = err;
      }
    }
    if (f.kind === 'close' && session !== null && d.state === PEER_STATE_READY && this.backendReady()) {
      // close() ends a live session while the BE is READY: as for a broken one, reset and await
      // it first (§4.10), so that what the used rings acknowledge is final — a request the device
      // completes meanwhile is delivered, not failed although it was carried out.
      this.closeReset = true; // tried once: a back-end that let it time out is not waited for twice
      try {
        await this.writeStatus(DeviceStatus.RESET);
      } catch (err) {
        log('%s: reset on close failed: %s', this.name, (err as Error).message);
      }
    }
    this.endSession(f.err, session !== null);
    switch (f.kind) {
      case 'lost':
        this.safeEmit('lost', f.err);
        this.enterReset(); // only now: we no longer touch shared structures
        await this.holdReset();
        return;
      case 'broken':
        this.safeEmit('error', f.err);
        if (resetErr !== null) {
          if (this.closing) return; // close() resets (§4.10 orderly shutdown)
          const lost = isBackendFailure(resetErr) ? (resetErr as Error) : backendLost('reset after a broken ring failed');
          await this.recover({ kind: 'lost', err: lost });
          return;
        }
        await this.pauseAfterBroken();
        return;
      case 'refused':
        this.safeEmit('error', f.err);
        this.rejectStart(f.err);
        d.interruptsEnabled = false;
        if (d.state === PEER_STATE_READY && this.backendReady()) {
          this.failure = null;
          await this.writeStatus(DeviceStatus.FAILED).catch(() => undefined);
        }
        // Retrying this BE would be refused again: wait for it to go away — a different one may
        // be started (§4.10) — even if we never went READY (header refused).
        log('%s: refused the device: waiting for the back-end to leave READY', this.name);
        if (d.state === PEER_STATE_READY) {
          // A BE cannot become READY again while we are READY (it waits for our RESET, §4.10
          // BE step 2): its entry stays RESET until we move, so its leaving is always seen.
          await this.waitFor(() => !this.backendReady());
        } else {
          // We never went READY (the header was refused): the BE may re-initialise — RESET,
          // new header, READY — between two looks at its entry. React to its vector-0 event
          // (every State change raises one), and to a header that changed since validation in
          // case the flip came before interrupts were on.
          const mark = this.stateEvents;
          d.interruptsEnabled = true;
          try {
            await this.waitFor(() => !this.backendReady() || this.stateEvents !== mark || this.headerChanged());
          } finally {
            d.interruptsEnabled = false;
          }
        }
        if (this.closing) return; // still READY over a header we wrote: close() resets first
        this.enterReset();
        return;
      case 'close':
        this.txn.abort(f.err);
        this.rejectStart(f.err);
        return;
    }
  }

  /**
   * End the session's data path (§4.10): first deliver every completion the device acknowledged
   * in its used rings (validated, §6.4; nothing if the mapping is gone), on every queue, and only
   * then fail what is still in flight — so acknowledged requests are never re-sent and
   * unacknowledged ones are reported exactly once — then remove().
   */
  private endSession(err: Error, hadSession: boolean): void {
    let delivered = 0;
    for (const q of this.queues) delivered += q.drainAcknowledged();
    if (delivered > 0) log('%s: %d acknowledged completions delivered before recovery', this.name, delivered);
    for (const q of this.queues) q.failAll(err);
    if (hadSession) this.callRemove(err);
    this.queues = [];
    this.byVector = [];
  }

  /**
   * After a broken session (device reset, still READY): the first break of a run is
   * re-initialised at once; a device that breaks every session again — a device callback that
   * always throws, a ring it always refuses — would otherwise be re-initialised in a busy loop,
   * re-probing the driver and emitting 'error' hundreds of times a second. Later breaks wait
   * `firstMs`, doubling up to `maxMs`; a back-end that leaves READY, or close(), ends the wait.
   */
  private async pauseAfterBroken(): Promise<void> {
    const streak = this.brokenStreak++;
    if (streak === 0 || this.closing) return;
    const ms = Math.min(this.brokenMaxMs, this.brokenFirstMs * 2 ** Math.min(streak - 1, 30));
    if (ms === 0) return;
    log('%s: %d sessions in a row broke: next initialisation in %d ms', this.name, streak + 1, ms);
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      this.waitWake?.();
    }, ms);
    try {
      await this.waitFor(() => expired || !this.backendReady());
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Our State just went RESET after a back-end failure (§4.10). A BE whose entry still reads
   * READY (a transaction timed out) has not seen it yet, and a BE that samples states could miss
   * a RESET that lasts only until the next initialisation: hold it until the BE shows it reacted
   * — its entry leaves READY, it leaves, or a vector-0 event arrives (a RESET → READY flip of a
   * re-initialising BE raises one) — or for at most `resetHoldMs`, so that a hung BE is still
   * retried (and its stall reported again).
   */
  private async holdReset(): Promise<void> {
    if (this.closing || !this.backendReady() || this.resetHoldMs === 0) return;
    const d = this.device;
    const mark = this.stateEvents;
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      this.waitWake?.();
    }, this.resetHoldMs);
    d.interruptsEnabled = true;
    log('%s: holding RESET until the back-end reacts (at most %d ms)', this.name, this.resetHoldMs);
    try {
      await this.waitFor(() => expired || !this.backendReady() || this.stateEvents !== mark);
    } finally {
      clearTimeout(timer);
      d.interruptsEnabled = false;
    }
    log('%s: RESET %s', this.name, expired ? 'held for the maximum: retrying a back-end that did not react' : 'seen by the back-end');
  }

  /**
   * State := RESET after a session ended (§4.10 FE step 1 again). A new back-end on the departed
   * one's id may wait for exactly this (BE step 2) after finding us READY, and hears only its own
   * eventfds, which we may not hold yet: the RESET would go to the departed one's and both sides
   * wait for ever. Such a newcomer read our entry before our store, so the server had queued its
   * EVENT_FDs (and the PEER_GONE before them) before it: store, then handle the messages already
   * received, then ring vector 0 once more — reaching the newcomer if there is one (a second
   * wake-up is harmless to a BE, §4.9). One recvmsg and one doorbell per recovery.
   */
  private enterReset(): void {
    const d = this.device;
    const changed = d.state !== PEER_STATE_RESET;
    d.setState(PEER_STATE_RESET);
    if (d.receivePending === undefined) return;
    d.receivePending();
    if (changed) d.doorbell(this.partner, 0);
  }

  /** False once the ivshmem device was closed: its mapping is detached and must not be touched. */
  private mapped(): boolean {
    return this.header.u8.byteLength !== 0;
  }

  /** Whether the header's first bytes differ from what the last initialisation validated. */
  private headerChanged(): boolean {
    const before = this.validatedHeader;
    const now = this.memory.u8;
    for (let i = 0; i < before.length; i++) if (now[i] !== before[i]) return true;
    return false;
  }

  private callRemove(err: Error): void {
    try {
      this.ops.remove(err);
    } catch (e) {
      log('%s: remove() threw: %s', this.name, (e as Error).message);
    }
  }

  private async shutdown(): Promise<void> {
    const started = this.loopDone !== null;
    const phase = this.phaseValue;
    this.closing = true;
    this.signal({ kind: 'close', err: new TransportError('VSHM_ERR_CLOSED', '4.10', 'front-end closed') });
    this.waitWake?.();
    if (this.loopDone !== null) await this.loopDone;
    const d = this.device;
    if (started && d.state === PEER_STATE_READY && this.backendReady() && !this.closeReset) {
      log('%s: close in phase %s: resetting the device', this.name, phase);
      try {
        await this.writeStatus(DeviceStatus.RESET);
      } catch (err) {
        log('%s: reset on close failed: %s', this.name, (err as Error).message);
      }
    }
    d.interruptsEnabled = false;
    this.spin?.detach();
    this.spin = null;
    if (d.onInterrupt === this.onIrq) d.onInterrupt = null;
    this.enterReset();
    d.off('peer-state', this.onPeerEvent);
    d.off('peer-gone', this.onPeerEvent);
    d.off('server-gone', this.onServerGone);
    d.off('close', this.onDeviceClose);
    this.setPhase('closed');
    this.rejectStart(new TransportError('VSHM_ERR_CLOSED', '4.10', 'front-end closed before the device became ready'));
  }

  private rejectStart(err: Error): void {
    const waiters = this.startWaiters;
    this.startWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  private setPhase(p: FrontendPhase): void {
    if (this.phaseValue === p) return;
    this.phaseValue = p;
    log('%s: phase %s', this.name, p);
  }

  private safeEmit(event: string, ...args: unknown[]): void {
    if (event === 'error' && this.listenerCount('error') === 0) return;
    try {
      this.emit(event, ...args);
    } catch (err) {
      log('%s: %s listener threw: %s', this.name, event, (err as Error).message);
    }
  }
}

/** Bytes of the header compared to notice a refused back-end that re-initialised (§4.2 registers and config). */
const HEADER_SNAPSHOT = 0x100;

/** The failure kind of an error thrown by an initialisation. */
function classify(err: unknown): Failure {
  const e = asError(err, 'initialisation failed');
  if (isBackendFailure(e)) return { kind: 'lost', err: e };
  if (e instanceof RingError) return { kind: 'broken', err: e };
  return { kind: 'refused', err: e };
}

/** `err` as an Error (a callback may throw anything). */
function asError(err: unknown, what: string): Error {
  return err instanceof Error ? err : new TransportError('VSHM_ERR_CALLBACK', '', `${what}: ${String(err)}`);
}

/** Largest power of two ≤ n (n ≥ 1). */
function floorPow2(n: number): number {
  return 2 ** Math.floor(Math.log2(n));
}

function checkOps(ops: VirtioDriverOps): void {
  if (ops === null || typeof ops !== 'object') throw new ArgumentError('VirtioFrontend: ops must be an object');
  if (!Number.isInteger(ops.deviceId) || ops.deviceId < 1 || ops.deviceId > 0x3fff) {
    throw new ArgumentError(`VirtioFrontend: deviceId must be 1…0x3fff, got ${String(ops.deviceId)}`);
  }
  if (typeof ops.features !== 'bigint') throw new ArgumentError('VirtioFrontend: features must be a bigint');
  for (const fn of ['queueCount', 'probe', 'remove'] as const) {
    if (typeof ops[fn] !== 'function') throw new ArgumentError(`VirtioFrontend: ops.${fn} must be a function`);
  }
}
