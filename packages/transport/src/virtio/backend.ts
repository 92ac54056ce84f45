/**
 * `VirtioBackend`: the virtio device side of the transport (spec §4) over an `IvshmemDevice`.
 *
 * Lifecycle (§4.10, for the backend's whole life):
 *   (1) State := RESET → (2) wait for the FE entry RESET → (3) zero and initialise the header →
 *   (4) State := READY → (5) wait for the FE entry READY → (6) serve while it stays READY →
 *   (7) when it leaves READY: stop touching rings, end the session ('driver-gone'), back to (1).
 *
 * Wake-ups: every delivered interrupt (any vector, interrupts enabled, not one-shot) and the
 * device model's 'peer-state' / 'peer-gone' events run the same `poll()`: check the FE state,
 * service pending write transactions (§4.3, one at a time, a bounded number per poll), then offer
 * every live queue to the device (§4.9). `poll()` is public so a caller may also spin on it
 * without interrupts (virtio/spin.ts). The per-kick path allocates nothing: handles, chains and
 * the wake-up closures are created once per session or per backend.
 *
 * Failure (§6.3): a ring violation, an exception from a device callback, or DRIVER_OK with
 * rejected features stops all queues, sets DEVICE_NEEDS_RESET, raises a config event and ends
 * the session ('needs-reset'); transactions are still completed until the driver resets. Nothing
 * ever throws out of the interrupt callback: unexpected errors are emitted as 'error' (if anyone
 * listens) and logged.
 *
 * Events: 'session' (session: DeviceSession) on DRIVER_OK; 'session-end' (reason:
 * SessionEndReason); 'needs-reset' (err: Error); 'phase' (phase: BackendPhase); 'error' (err);
 * 'device-exception' (err, callback name) whenever a device callback throws (before the
 * 'needs-reset' or 'error' that follows), so a CLI can print the stack.
 *
 * Ownership: `close()` ends the session and writes State := RESET but does NOT close the device —
 * whoever opened the device closes it (connect.ts returns both).
 */
import { EventEmitter } from 'node:events';
import createDebug from 'debug';
import { DeviceStatus, VirtioFeatureMask } from 'virtio-spec-types';
import { TransportError } from '../errors.js';
import { PEER_STATE_READY, PEER_STATE_RESET, type IvshmemDevice } from '../ivshmem/device.js';
import { fullFence, BackendHeader } from './backend-header.js';
import { BackendConfigSpace } from './config-space.js';
import { BackendQueues, type QueueHost } from './backend-queues.js';
import { BackendRegisters, type RegisterHost } from './backend-transactions.js';
import { createRingContext } from './backend-ring.js';
import { BackendSession, GuardedOps, checkBackendArgs } from './backend-session.js';
import type { ConfigSpace, DeviceSession, SessionEndReason, VirtioDeviceOps } from './device-api.js';
import { headerSize } from './header.js';
import { attachSpin, type SpinAttachment, type SpinOptions, type SpinStats } from './spin.js';

const log = createDebug('vshm:virtio:be');

export interface VirtioBackendOptions {
  /**
   * Enforce the isolated layout (§5.2): device-readable memory only in the FE's output section,
   * device-writable memory only in the BE's. Other placements are violations. Needs OUT ≠ 0.
   */
  enforceIsolation?: boolean;
  /** Name in debug output. */
  debugName?: string;
  /**
   * Poll the rings for a bounded, adaptive time after each interrupt, with kicks suppressed
   * meanwhile (virtio/spin.ts). Absent: interrupts only. `openBackend` turns it on by default.
   */
  spin?: SpinOptions;
}

/** Where the backend is in the §4.10 loop. */
export type BackendPhase = 'created' | 'wait-fe-reset' | 'wait-fe-ready' | 'serving' | 'closed';

/** At most this many transactions per poll: an FE that spins on completion gets several served. */
const MAX_TRANSACTIONS_PER_POLL = 64;

const RUN_BLOCKERS = DeviceStatus.FAILED | DeviceStatus.DEVICE_NEEDS_RESET;

export class VirtioBackend extends EventEmitter {
  readonly device: IvshmemDevice;
  readonly ops: VirtioDeviceOps;
  /** `ops` called so that nothing a device callback throws escapes into the interrupt path. */
  private readonly guarded: GuardedOps;
  /** The offered feature set (§4.4). */
  readonly offeredFeatures: bigint;
  private readonly name: string;
  private readonly partner: number;
  private readonly header: BackendHeader;
  private readonly config: BackendConfigSpace;
  private readonly queues: BackendQueues;
  private readonly regs: BackendRegisters;
  private phaseValue: BackendPhase = 'created';
  private session: BackendSession | null = null;
  private serverGone = false;
  private readonly spinOptions: SpinOptions | undefined;
  private spin: SpinAttachment | null = null;
  /** Re-entrancy guard of poll(): a wake-up inside a device callback only flags another round. */
  private busy = false;
  private again = false;

  private readonly onIrq = (): void => {
    this.poll();
  };
  private pollScheduled = false;
  private readonly onPollSoon = (): void => {
    this.pollScheduled = false;
    if (this.phaseValue !== 'closed') this.poll();
  };
  private readonly onPeerEvent = (): void => {
    this.poll();
  };
  private readonly onServerGone = (): void => {
    this.serverGone = true; // §1.8: departures can no longer be announced, treat the FE as gone
    this.poll();
  };
  private readonly onDeviceClose = (): void => {
    this.shutdown();
  };

  constructor(device: IvshmemDevice, ops: VirtioDeviceOps, opts: VirtioBackendOptions = {}) {
    super();
    checkBackendArgs(device, ops, opts);
    this.device = device;
    this.ops = ops;
    this.guarded = new GuardedOps(
      ops,
      (err) => this.violation(err),
      (err) => this.reportError(err),
      (err, callback) => this.deviceThrew(err, callback),
    );
    this.name = opts.debugName ?? `be${device.id}`;
    this.spinOptions = opts.spin;
    this.partner = 1 - device.id;
    // §4.4: device bits and the optional ring bits, plus the mandatory transport bits; never PACKED.
    this.offeredFeatures =
      ops.features | VirtioFeatureMask.VERSION_1 | VirtioFeatureMask.ACCESS_PLATFORM | VirtioFeatureMask.ORDER_PLATFORM;
    const size = headerSize(ops.configSize);
    const layout = device.layout;
    if (layout.rwSize < size) {
      throw new TransportError('VSHM_ERR_HEADER_SIZE', '4.2', `R/W section of ${layout.rwSize} bytes cannot hold the ${size}-byte header`);
    }
    this.header = new BackendHeader(device.window, size);
    this.config = new BackendConfigSpace(this.header, ops.configSize, ops.configFields);
    const ctx = createRingContext(device.window, layout.rwSize, layout.outputSectionSize, device.id, opts.enforceIsolation ?? false);
    const queueHost: QueueHost = {
      violation: (err) => this.violation(err),
      notifyDriver: (vector) => this.notifyDriver(vector),
      again: () => this.pollSoon(),
      deviceThrew: (err, callback) => this.deviceThrew(err, callback),
    };
    this.queues = new BackendQueues(
      this.header,
      ctx,
      this.offeredFeatures,
      (f) => ops.queueCount(f),
      (i) => ops.queueMaxSize(i),
      device.vectors,
      queueHost,
    );
    const regHost: RegisterHost = {
      acceptFeatures: (f) => this.guarded.acceptFeatures(f),
      deviceReset: () => {
        this.endSession('driver-reset');
        this.queues.forgetAll();
      },
      statusChanged: (status, bad) => this.statusChanged(status, bad),
      configWritten: (field, value) => this.guarded.configWritten(field, value),
      violation: (err) => this.violation(err),
    };
    this.regs = new BackendRegisters(this.header, this.config, this.queues, this.offeredFeatures, regHost);
  }

  /** Current phase of the §4.10 loop. */
  get phase(): BackendPhase {
    return this.phaseValue;
  }

  /** The private copy of `device_status` (§4.5). */
  get status(): number {
    return this.regs.status;
  }

  /** Negotiated features after an accepted FEATURES_OK, else null. */
  get negotiatedFeatures(): bigint | null {
    return this.regs.negotiated;
  }

  /** The live session, if DRIVER_OK. */
  get currentSession(): DeviceSession | null {
    return this.session;
  }

  /** Counters of the adaptive spin (live object), or null when the transport does not spin. */
  get spinStats(): SpinStats | null {
    return this.spin?.spinner.stats ?? null;
  }

  /** Enter the §4.10 loop: take the interrupt sink, enable interrupts, State := RESET. */
  start(): void {
    if (this.phaseValue !== 'created') throw new TransportError('VSHM_ERR_STATE', '4.10', `start() in phase ${this.phaseValue}`);
    const d = this.device;
    d.oneShot = false;
    d.onInterrupt = this.onIrq;
    d.on('peer-state', this.onPeerEvent);
    d.on('peer-gone', this.onPeerEvent);
    d.on('server-gone', this.onServerGone);
    d.on('close', this.onDeviceClose);
    d.interruptsEnabled = true; // enabled before the first scan: nothing can be missed (§3)
    if (this.spinOptions !== undefined) this.spin = attachSpin(d, this, this.spinOptions);
    this.enterReset();
    this.poll();
  }

  /**
   * Orderly shutdown (§4.10): end the session ('shutdown'), State := RESET, release the interrupt
   * sink. The device itself stays open: its owner closes it.
   */
  close(): Promise<void> {
    this.shutdown();
    return Promise.resolve();
  }

  /**
   * Service everything without an interrupt: FE state, pending transactions, live queues.
   * Returns the work done (transactions completed + chains popped); 0 when called re-entrantly.
   * Never throws.
   */
  poll(): number {
    if (this.busy) {
      this.again = true;
      return 0;
    }
    this.busy = true;
    let work = 0;
    try {
      do {
        this.again = false;
        work += this.step();
      } while (this.again);
    } catch (err) {
      this.reportError(err);
    } finally {
      this.busy = false;
    }
    return work;
  }

  /**
   * perf, for bounded-spin callers (spin.ts): `false` asks the driver not to kick the live
   * queues while we poll anyway; `true` asks for kicks again and returns whether chains arrived
   * in between (then poll(): no kick will announce them). Never throws.
   */
  setNotify(on: boolean): boolean {
    if (this.session === null || this.busy) return false;
    try {
      return this.queues.setNotify(on);
    } catch (err) {
      this.reportError(err);
      return false;
    }
  }

  /** Change config by the generation rule (§4.8) and raise a config event (§4.9). */
  updateConfig(mutate: (config: ConfigSpace) => void): void {
    if (this.phaseValue === 'closed') return;
    this.config.update(mutate);
    this.notifyConfig();
  }

  /** Config event: `config_event` := 1, full fence, Doorbell(FE, 0) (§4.9). */
  notifyConfig(): void {
    if (this.phaseValue === 'closed') return;
    this.header.raiseConfigEvent();
    fullFence();
    this.device.doorbell(this.partner, 0);
  }

  // --------------------------------------------------------------------------------------------

  private partnerState(): number {
    return this.serverGone ? PEER_STATE_RESET : this.device.peerState(this.partner);
  }

  private setPhase(p: BackendPhase): void {
    this.phaseValue = p;
    log('%s: phase %s', this.name, p);
    this.safeEmit('phase', p);
  }

  /** §4.10 (1). */
  private enterReset(): void {
    this.device.setState(PEER_STATE_RESET);
    this.setPhase('wait-fe-reset');
  }

  /** One pass of the loop; returns work done. */
  private step(): number {
    let work = 0;
    for (;;) {
      switch (this.phaseValue) {
        case 'wait-fe-reset':
          if (this.partnerState() !== PEER_STATE_RESET) return work;
          this.initialiseHeader(); // (3)
          this.device.setState(PEER_STATE_READY); // (4)
          this.setPhase('wait-fe-ready');
          continue;
        case 'wait-fe-ready': {
          if (this.partnerState() === PEER_STATE_READY) {
            this.setPhase('serving');
            continue;
          }
          // A front-end that left READY may still be writing: Linux's virtio_ivshmem_remove
          // stores State := 0 BEFORE the driver's reset and queue teardown, and spins on each of
          // those transactions for as long as our entry reads READY (it is, again, by now).
          // Complete them without acting, so the guest does not hang. A new front-end sets READY
          // before its first transaction, so re-reading its state after seeing one tells a stale
          // transaction from a live one.
          const pending = this.regs.transactionPending();
          if (!pending) return work;
          if (this.partnerState() === PEER_STATE_READY) continue;
          this.regs.discardTransaction();
          return work + 1;
        }
        case 'serving': {
          if (this.partnerState() !== PEER_STATE_READY) {
            // (7): stop touching rings before anything else, then start over.
            this.endSession('driver-gone');
            this.queues.forgetAll();
            this.enterReset();
            continue;
          }
          let n = 0;
          while (n < MAX_TRANSACTIONS_PER_POLL && this.regs.serviceTransaction()) n++;
          work += n;
          if (this.session !== null) work += this.queues.service();
          if (this.phaseValue === 'serving' && this.partnerState() !== PEER_STATE_READY) continue;
          return work;
        }
        default:
          return work;
      }
    }
  }

  /** §4.10 (3): zero the header, identity, config defaults, generation 0, queue defaults. */
  private initialiseHeader(): void {
    const h = this.header;
    h.zero();
    try {
      this.config.initialise((c) => this.ops.initConfig(c));
    } catch (err) {
      this.reportError(err); // a broken initConfig leaves a zero config; the device still serves
    }
    h.writeIdentity(0);
    this.queues.forgetAll();
    this.regs.reset();
    log('%s: header initialised (size %d)', this.name, h.size);
  }

  private statusChanged(status: number, badDriverOk: boolean): void {
    const run = (status & DeviceStatus.DRIVER_OK) !== 0 && (status & RUN_BLOCKERS) === 0 && !badDriverOk && !this.regs.needsReset;
    if (run && this.session === null) this.activate();
    else if (!run && this.session !== null) this.endSession('driver-reset');
  }

  private activate(): void {
    const features = this.regs.negotiated ?? 0n;
    const session = new BackendSession(this, features, this.queues.openSession());
    this.session = session;
    log('%s: DRIVER_OK, features 0x%s', this.name, features.toString(16));
    if (this.guarded.activate(session)) this.safeEmit('session', session);
  }

  private endSession(reason: SessionEndReason): void {
    const s = this.session;
    if (s === null) {
      this.queues.closeSession();
      return;
    }
    this.session = null;
    s.ended = true;
    this.queues.closeSession();
    log('%s: session end (%s)', this.name, reason);
    this.guarded.deactivate(reason);
    this.safeEmit('session-end', reason);
  }

  /** §6.3: stop all queues, DEVICE_NEEDS_RESET, config event; transactions keep completing. */
  private violation(err: Error): void {
    if (this.phaseValue !== 'serving') return;
    if (this.regs.needsReset) return;
    log('%s: violation, DEVICE_NEEDS_RESET: %s', this.name, err.message);
    this.queues.stopAll();
    this.regs.markNeedsReset();
    this.endSession('needs-reset');
    this.notifyConfig();
    this.safeEmit('needs-reset', err);
  }

  /** Another poll() on the next event-loop turn (coalesced): a device left chains for later. */
  private pollSoon(): void {
    if (this.pollScheduled || this.phaseValue === 'closed') return;
    this.pollScheduled = true;
    setImmediate(this.onPollSoon);
  }

  /** §4.9 used-buffer notification (the ring already published and fenced). */
  private notifyDriver(vector: number): void {
    this.header.raiseQueueEvent();
    fullFence();
    this.device.doorbell(this.partner, vector);
  }

  private shutdown(): void {
    if (this.phaseValue === 'closed') return;
    const started = this.phaseValue !== 'created';
    this.endSession('shutdown');
    this.queues.stopAll();
    this.setPhase('closed');
    if (!started) return;
    const d = this.device;
    d.off('peer-state', this.onPeerEvent);
    d.off('peer-gone', this.onPeerEvent);
    d.off('server-gone', this.onServerGone);
    d.off('close', this.onDeviceClose);
    this.spin?.detach();
    this.spin = null;
    if (d.onInterrupt === this.onIrq) d.onInterrupt = null;
    try {
      d.setState(PEER_STATE_RESET); // §4.10 orderly shutdown; no-op on a closed device
    } catch (err) {
      this.reportError(err);
    }
  }

  /** A device callback threw: 'device-exception' (err, callback), stack included in the log. */
  private deviceThrew(err: Error, callback: string): void {
    log('%s: device %s() threw: %s', this.name, callback, err.stack ?? err.message);
    this.safeEmit('device-exception', err, callback);
  }

  private reportError(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    log('%s: error: %s', this.name, e.stack ?? e.message);
    if (this.listenerCount('error') > 0) this.safeEmit('error', e);
  }

  /** Emit without letting a listener's exception escape into the interrupt path. */
  private safeEmit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      log('%s: listener of %s threw: %s', this.name, event, String(err));
    }
  }
}
