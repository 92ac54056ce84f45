/**
 * `VirtioFrontend`: the virtio driver side of the transport (spec §4) over an `IvshmemDevice`.
 *
 * Lifecycle (§4.10 FE), for as long as the front-end is open:
 *   (1) own State RESET → (2) wait for the BE entry READY (a vshm FE waits, it does not fail) →
 *   (3) validate the header, fresh allocator (§5) → (4) one-shot off, State := READY →
 *   (5) reset, ACKNOWLEDGE, DRIVER, features (§4.4), FEATURES_OK + re-read, queues (§4.6),
 *       Interrupt Control := 1, DRIVER_OK → ops.probe(session) → (6) operate.
 *
 * Failure kinds (what follows each: frontend-recovery.ts):
 * - **lost** (BE entry leaves READY, PEER_GONE, server gone, vector 0 with the BE not READY, a
 *   transaction timeout): in-flight requests fail, remove(), 'lost', State := RESET only once we
 *   no longer touch shared structures, back to (2): a full re-initialisation and a new probe
 *   (§8 items 34, 35).
 * - **broken** (a §6.4 violation in a used ring, a driver callback that threw, a config event
 *   with DEVICE_NEEDS_RESET): in-flight requests fail, remove(), device reset (awaited, §4.5),
 *   'error', re-run (3)–(6) while staying READY.
 * - **refused** (bad header, missing VERSION_1/ACCESS_PLATFORM, FEATURES_OK rejected, a queue
 *   that cannot be set up): status FAILED, 'error', a pending start() rejects; wait for the BE
 *   to leave READY (a different back-end may be started), then start over from (1).
 *
 * Notifications (§4.9): frontend-interrupts.ts dispatches vectors by the session's mode.
 *
 * Ownership: close() does the orderly shutdown in any phase (reset and await if our State is
 * READY, then State := RESET, interrupts off) but does NOT close the IvshmemDevice — whoever
 * opened it closes it.
 *
 * Events: 'ready' (session) after every probe; 'lost' (err) on every back-end failure;
 * 'error' (err) for refused devices and broken rings (only emitted when someone listens).
 */
import { EventEmitter } from 'node:events';
import createDebug from 'debug';
import { DeviceStatus } from 'virtio-spec-types';
import { ArgumentError, TransportError } from '../errors.js';
import { PEER_STATE_READY, PEER_STATE_RESET, type IvshmemDevice } from '../ivshmem/device.js';
import type { DriverSession, VirtioDriverOps } from './device-api.js';
import { FrontendHeader } from './frontend-header.js';
import { initialiseDevice } from './frontend-init.js';
import { VectorDispatch, asError } from './frontend-interrupts.js';
import { classify, recoverSession, type Failure, type RecoveryHost } from './frontend-recovery.js';
import type { FrontendSession } from './frontend-session.js';
import { writeStatus } from './frontend-setup.js';
import { TransactionWriter, backendLost, type TransactionOptions } from './frontend-transactions.js';
import { MemoryView } from '../ring/memory.js';
import type { FrontendVectorMode } from './vectors.js';
import { attachSpin, frontendPollable, type SpinAttachment, type SpinOptions, type SpinStats } from './spin.js';

const log = createDebug('vshm:virtio:fe');

export interface VirtioFrontendOptions {
  /** A transaction not completed within this time is a back-end failure (§4.3). Default 5000. */
  transactionTimeoutMs?: number;
  /** Fine-tuning of the transaction completion poll. */
  transaction?: Omit<TransactionOptions, 'timeoutMs'>;
  /** Fallback poll of the BE state while waiting for READY (besides vector-0 events). Default 100 ms. */
  readyPollMs?: number;
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

export class VirtioFrontend extends EventEmitter {
  readonly device: IvshmemDevice;
  readonly ops: VirtioDriverOps;
  private readonly name: string;
  private readonly partner: number;
  private readonly header: FrontendHeader;
  private readonly memory: MemoryView;
  private readonly txn: TransactionWriter;
  private readonly readyPollMs: number;
  private phaseValue: FrontendPhase = 'created';
  private readonly spinOptions: SpinOptions | undefined;
  private spin: SpinAttachment | null = null;
  private closing = false;
  private serverGone = false;
  private generation = 0;
  private sessionValue: FrontendSession | null = null;
  private readonly dispatch: VectorDispatch;
  private readonly recovery: RecoveryHost;
  private failure: Failure | null = null;
  private failureWake: ((f: Failure) => void) | null = null;
  private waitWake: (() => void) | null = null;
  private loopDone: Promise<void> | null = null;
  private closeDone: Promise<void> | null = null;
  private startWaiters: { resolve: (s: DriverSession) => void; reject: (e: Error) => void }[] = [];
  private everReady = false;

  private readonly onPeerEvent = (id: number): void => {
    if (id !== this.partner) return;
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
  private readonly onIrq = (vector: number): void => this.dispatch.interrupt(vector);

  constructor(device: IvshmemDevice, ops: VirtioDriverOps, opts: VirtioFrontendOptions = {}) {
    super();
    checkOps(ops);
    for (const k of Object.keys(opts)) {
      if (!['transactionTimeoutMs', 'transaction', 'readyPollMs', 'debugName', 'spin'].includes(k)) {
        throw new ArgumentError(`VirtioFrontend: unknown option '${k}'`);
      }
    }
    this.spinOptions = opts.spin;
    const timeout = opts.transactionTimeoutMs ?? 5000;
    if (!(timeout > 0)) throw new ArgumentError(`transactionTimeoutMs must be > 0, got ${timeout}`);
    const role = device.protocol & 0xc000;
    if (role !== 0x8000) {
      throw new TransportError(
        'VSHM_ERR_ROLE',
        '4.1',
        `device has protocol 0x${device.protocol.toString(16)}: not a front-end (0x8000 | id); did the front-end connect first?`,
      );
    }
    if ((device.protocol & 0x3fff) !== ops.deviceId) {
      throw new TransportError('VSHM_ERR_DEVICE_ID', '4.1', `device id ${device.protocol & 0x3fff} from the server does not match the driver's id ${ops.deviceId}`);
    }
    if (device.maxPeers !== 2 || device.id > 1) {
      throw new TransportError('VSHM_ERR_ROLE', '4.1', `virtio needs max_peers 2, got ${device.maxPeers} (id ${device.id})`);
    }
    this.device = device;
    this.ops = ops;
    this.name = opts.debugName ?? `fe${device.id}`;
    this.partner = 1 - device.id;
    this.readyPollMs = opts.readyPollMs ?? 100;
    this.header = new FrontendHeader(device.window, device.layout.rwSize);
    this.memory = new MemoryView(device.window);
    this.txn = new TransactionWriter(this.header, device, this.partner, { ...opts.transaction, timeoutMs: timeout });
    const self = this;
    this.dispatch = new VectorDispatch({
      name: this.name,
      header: this.header,
      ops,
      get live() {
        return self.phaseValue === 'live';
      },
      get currentSession() {
        return self.sessionValue;
      },
      backendReady: () => this.backendReady(),
      checkBackend: () => this.checkBackend(),
      broken: (err) => this.signal({ kind: 'broken', err }),
    });
    this.recovery = {
      name: this.name,
      device,
      header: this.header,
      txn: this.txn,
      ops,
      dispatch: this.dispatch,
      get closing() {
        return self.closing;
      },
      takeSession: () => {
        const s = this.sessionValue;
        this.sessionValue = null;
        return s;
      },
      clearFailure: () => {
        this.failure = null;
      },
      emit: (event, err) => this.safeEmit(event, err),
      rejectStart: (err) => this.rejectStart(err),
      backendReady: () => this.backendReady(),
      waitFor: (cond) => this.waitFor(cond),
    };
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
    return this.dispatch.mode;
  }

  /** Transactions completed so far (tests, debugging). */
  get transactionsCompleted(): number {
    return this.txn.completed;
  }

  /**
   * Enter the §4.10 loop. Resolves with the first live session (after DRIVER_OK and probe);
   * later sessions are announced by 'ready'. Rejects if the first initialisation is refused or
   * the front-end is closed first; the loop keeps running after a refusal (see file comment).
   */
  /** Counters of the adaptive spin (live object), or null when the transport does not spin. */
  get spinStats(): SpinStats | null {
    return this.spin?.spinner.stats ?? null;
  }

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
    this.loopDone = this.loop();
    return p;
  }

  /**
   * Orderly shutdown (§4.10), correct in every phase: stop the loop and the data path (in-flight
   * requests fail with VSHM_ERR_CLOSED, a pending start() rejects); if our State is READY — the
   * header is in use and a status may have been written (initialising, live, recovering, refused)
   * — and the BE is still READY, reset the device and await completion (bounded by the
   * transaction timeout), so the BE sees a driver reset rather than a vanished driver; then
   * interrupts off and State := RESET. Idempotent; concurrent calls share one shutdown.
   */
  close(): Promise<void> {
    this.closeDone ??= this.shutdown();
    return this.closeDone;
  }

  private async shutdown(): Promise<void> {
    const started = this.loopDone !== null;
    const phase = this.phaseValue;
    this.closing = true;
    this.signal({ kind: 'close', err: new TransportError('VSHM_ERR_CLOSED', '4.10', 'front-end closed') });
    this.waitWake?.();
    if (this.loopDone !== null) await this.loopDone;
    const d = this.device;
    if (started && d.state === PEER_STATE_READY && this.backendReady()) {
      log('%s: close in phase %s: resetting the device', this.name, phase);
      try {
        await writeStatus(this.txn, DeviceStatus.RESET);
      } catch (err) {
        log('%s: reset on close failed: %s', this.name, (err as Error).message);
      }
    }
    d.interruptsEnabled = false;
    this.spin?.detach();
    this.spin = null;
    if (d.onInterrupt === this.onIrq) d.onInterrupt = null;
    d.setState(PEER_STATE_RESET);
    d.off('peer-state', this.onPeerEvent);
    d.off('peer-gone', this.onPeerEvent);
    d.off('server-gone', this.onServerGone);
    d.off('close', this.onDeviceClose);
    this.setPhase('closed');
    this.rejectStart(new TransportError('VSHM_ERR_CLOSED', '4.10', 'front-end closed before the device became ready'));
  }

  /**
   * Collect used buffers of every live queue without an interrupt (for bounded-spin callers).
   * Returns the number of completions delivered. Never throws: a §6.4 violation breaks the device.
   */
  poll(): number {
    if (this.phaseValue !== 'live') return 0;
    return this.dispatch.pollAll();
  }

  // --------------------------------------------------------------------------------------------

  private async loop(): Promise<void> {
    for (let round = 0; !this.closing; round++) {
      // Each round yields to the event loop at least once, so no failure path can spin on microtasks.
      if (round > 0) await new Promise<void>((r) => setImmediate(r));
      if (this.closing) break;
      this.failure = null;
      if (!this.backendReady() || this.device.state !== PEER_STATE_READY) {
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
      await recoverSession(this.recovery, f);
    }
  }

  /** (3)–(5): see frontend-init.ts. */
  private async initialise(): Promise<FrontendSession> {
    const gen = ++this.generation;
    const r = await initialiseDevice({
      device: this.device,
      partner: this.partner,
      header: this.header,
      memory: this.memory,
      txn: this.txn,
      ops: this.ops,
      generation: gen,
      debugName: this.name,
      checkFailed: () => this.throwIfFailed(),
      broken: (err) => this.signal({ kind: 'broken', err }),
      lost: (err) => this.signal({ kind: 'lost', err }),
      onQueues: (queues, mode, byVector) => this.dispatch.set(queues, mode, byVector),
    });
    this.sessionValue = r;
    this.dispatch.setLive(true);
    return r;
  }

  /** (6): probe, announce, and wait for the failure that ends the session. */
  private async operate(session: FrontendSession): Promise<Failure> {
    this.setPhase('live');
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
    this.dispatch.setLive(false);
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

  private waitBackendReady(): Promise<boolean> {
    return this.waitFor(() => this.backendReady()).then(() => !this.closing);
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

  /** Whether any session was ever live. */
  get wasReady(): boolean {
    return this.everReady;
  }
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
