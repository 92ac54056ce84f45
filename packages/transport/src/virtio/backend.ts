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
 * Write transactions (§4.3): the FE stores a value in the header, then the offset in
 * `write_transaction`, then rings vector 0. On every wake-up the BE acquire-loads
 * `write_transaction`; if non-zero it performs the action for that offset, copying the value ONCE
 * from the header into the private register file below (the FE could change the header again at
 * any time), issues a full fence and only then clears `write_transaction` — so a completed
 * transaction always has its side effects (§8 #25).
 *
 * The device's ops are called through guards (checked at the edge, §6.3 inside): nothing a
 * device callback throws escapes into the interrupt path. A throwing `activate` or
 * `configWritten` breaks the device like a ring violation (DEVICE_NEEDS_RESET,
 * docs/decisions.md); a throwing `acceptFeatures` refuses the features; a throwing `deactivate`
 * is only reported — the session ends regardless; a throwing `initConfig` is only reported — the
 * header is published with the config as far as it got.
 *
 * Ownership: `close()` ends the session and writes State := RESET but does NOT close the device —
 * whoever opened the device closes it (connect.ts returns both).
 */
import { EventEmitter } from 'node:events';
import { createLogger as createDebug } from '../log.js';
import { DeviceStatus, featureWord, featuresFromWords } from 'virtio-spec-types';
import { ArgumentError, TransportError } from '../errors.js';
import { PEER_STATE_READY, PEER_STATE_RESET, type IvshmemDevice } from '../ivshmem/device.js';
import { fullFence } from '../ring/memory.js';
import { BackendConfigSpace } from './config-space.js';
import { BackendQueues, createRingContext, type QueueHost } from './backend-queues.js';
import type { ConfigField, ConfigSpace, DeviceMemory, DeviceQueueHandle, DeviceSession, SessionEndReason, VirtioDeviceOps } from './device-api.js';
import { DEVICE_OFFERABLE_FEATURES, offeredFeatures, proposalRefusal } from './features.js';
import { checkDeviceOpen, checkVirtioDevice } from './role.js';
import {
  BackendHeader,
  HDR_CONFIG,
  HDR_DEVICE_FEATURES_SEL,
  HDR_DEVICE_STATUS,
  HDR_DRIVER_FEATURES,
  HDR_DRIVER_FEATURES_SEL,
  HDR_QUEUE_DESC,
  HDR_QUEUE_DEVICE,
  HDR_QUEUE_DRIVER,
  HDR_QUEUE_DRIVER_VECTOR,
  HDR_QUEUE_ENABLE,
  HDR_QUEUE_SEL,
  HDR_QUEUE_SIZE,
  headerSize,
} from './header.js';
import type { TransportDescription } from './describe.js';
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

const DRIVER_OK = DeviceStatus.DRIVER_OK;
const FEATURES_OK = DeviceStatus.FEATURES_OK;
const NEEDS_RESET = DeviceStatus.DEVICE_NEEDS_RESET;
const RUN_BLOCKERS = DeviceStatus.FAILED | DeviceStatus.DEVICE_NEEDS_RESET;

/**
 * The device side of a virtio-over-ivshmem link (§4): give it an `IvshmemDevice` the server made
 * the back-end and a device's ops table, call `start()`, and it runs the §4.10 loop for as long
 * as it lives — negotiating, validating every ring, handing the device a session on DRIVER_OK.
 * `openBackend()` connects, builds and starts one in a single call.
 */
export class VirtioBackend extends EventEmitter {
  readonly device: IvshmemDevice;
  readonly ops: VirtioDeviceOps;
  /** The offered feature set (§4.4). */
  readonly offeredFeatures: bigint;
  private readonly name: string;
  private readonly partner: number;
  private readonly header: BackendHeader;
  private readonly config: BackendConfigSpace;
  private readonly queues: BackendQueues;
  private phaseValue: BackendPhase = 'created';
  private session: BackendSession | null = null;
  private serverGone = false;
  /**
   * The front-end we serve left (PEER_GONE) while serving; latched until step() has acted on it,
   * because the state entry it left may already read READY again — a new front-end's (step()).
   */
  private partnerLeft = false;
  private readonly spinOptions: SpinOptions | undefined;
  private spin: SpinAttachment | null = null;
  /** Re-entrancy guard of poll(): a wake-up inside a device callback only flags another round. */
  private busy = false;
  private again = false;

  // The register file (§4.3): private copies of what the FE wrote by transactions. The header
  // copy is only a display of these (the FE may overwrite it at any time).
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeaturesLow = 0;
  private driverFeaturesHigh = 0;
  private queueSel = 0;
  /** Private copy of `device_status` (§4.5; the header copy is the FE's to overwrite). */
  private deviceStatus = 0;
  /** Negotiated features once FEATURES_OK was accepted, else null. */
  private negotiated: bigint | null = null;
  /** DEVICE_NEEDS_RESET latched until the driver resets (§4.5, §6.3). */
  private needsReset = false;

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
  /**
   * PEER_GONE is processed with the server's other queued messages: a new front-end's EVENT_FDs
   * on the same id may come right after it in the same batch. Latch the departure now, poll once
   * the batch is done (a microtask), so step() sees both and can tell "left" from "replaced".
   */
  private readonly onPeerGone = (id: number): void => {
    if (id === this.partner && this.phaseValue === 'serving') this.partnerLeft = true;
    queueMicrotask(this.onPeerGoneDone);
  };
  private readonly onPeerGoneDone = (): void => {
    if (this.phaseValue !== 'closed') this.poll();
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
    this.name = opts.debugName ?? `be${device.id}`;
    this.spinOptions = opts.spin;
    this.partner = 1 - device.id;
    this.offeredFeatures = offeredFeatures(ops.features);
    const size = headerSize(ops.configSize);
    const layout = device.layout;
    if (layout.rwSize < size) {
      throw new TransportError('VSHM_ERR_HEADER_SIZE', '4.2', `R/W section of ${layout.rwSize} bytes cannot hold the ${size}-byte header`);
    }
    this.header = new BackendHeader(device.window, size);
    this.config = new BackendConfigSpace(this.header, ops.configSize, ops.configFields);
    const memory: DeviceMemory = Object.freeze({ rwSize: layout.rwSize, outputSectionSize: layout.outputSectionSize, headerSize: size });
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
      (i) => ops.queueMaxSize(i, memory),
      device.vectors,
      queueHost,
    );
  }

  /** Current phase of the §4.10 loop. */
  get phase(): BackendPhase {
    return this.phaseValue;
  }

  /** The private copy of `device_status` (§4.5). */
  get status(): number {
    return this.deviceStatus;
  }

  /** Negotiated features after an accepted FEATURES_OK, else null. */
  get negotiatedFeatures(): bigint | null {
    return this.negotiated;
  }

  /** The live session, if DRIVER_OK. */
  get currentSession(): DeviceSession | null {
    return this.session;
  }

  /** Counters of the adaptive spin (live object), or null when the transport does not spin. */
  get spinStats(): SpinStats | null {
    return this.spin?.spinner.stats ?? null;
  }

  /**
   * A snapshot of the back-end's private state for status reports (`vshm-inspect`, the status
   * file of connect.ts): phase, features, status and every queue's latched registers. Costs
   * nothing unless called; the live ring indices are read from shared memory by the inspector.
   */
  describe(): TransportDescription {
    const features = this.negotiated ?? this.offeredFeatures;
    return {
      role: 'back-end',
      phase: this.phaseValue,
      deviceId: this.ops.deviceId,
      offeredFeatures: this.offeredFeatures,
      negotiatedFeatures: this.negotiated,
      status: this.deviceStatus,
      headerSize: this.header.size,
      queues: this.queues.describe(features),
    };
  }

  /** Enter the §4.10 loop: take the interrupt sink, enable interrupts, State := RESET. */
  start(): void {
    if (this.phaseValue !== 'created') throw new TransportError('VSHM_ERR_STATE', '4.10', `start() in phase ${this.phaseValue}`);
    const d = this.device;
    d.oneShot = false;
    d.onInterrupt = this.onIrq;
    d.on('peer-state', this.onPeerEvent);
    d.on('peer-gone', this.onPeerGone);
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

  // ------------------------------------------------------------------------------------------
  // The §4.10 loop
  // ------------------------------------------------------------------------------------------

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
          // Server gone (§1.8): no front-end can ever come on this memory, and one still READY
          // may be mid-initialisation — a new header would change under it. Stay RESET.
          if (this.serverGone) return work;
          if (this.partnerState() !== PEER_STATE_RESET) return work;
          this.initialiseHeader(); // (3)
          this.device.setState(PEER_STATE_READY); // (4)
          this.setPhase('wait-fe-ready');
          continue;
        case 'wait-fe-ready': {
          // Server gone (§4.10): nobody can come on this memory any more — stay not READY, and
          // complete no transaction (a front-end still READY is told by its own server-gone).
          if (this.serverGone) {
            this.enterReset();
            continue;
          }
          if (this.partnerState() === PEER_STATE_READY) {
            this.setPhase('serving');
            continue;
          }
          // A front-end that left READY may still be writing: Linux's virtio_ivshmem_remove
          // stores State := 0 BEFORE the driver's reset and queue teardown, and spins on each of
          // those transactions for as long as our entry reads READY (it is, again, by now).
          // Complete them without acting, so the guest does not hang. A new front-end sets READY
          // before its first transaction, so re-reading its state after seeing one tells a stale
          // transaction from a live one — once the server's queued messages are in: the writer
          // may be a new front-end on the departed one's id whose EVENT_FDs we have not taken
          // yet (it would read as absent, and its set-up be thrown away step by step).
          const pending = this.header.loadTransaction() !== 0;
          if (!pending) return work;
          this.device.receivePending?.();
          if (this.partnerState() === PEER_STATE_READY) continue;
          this.discardTransaction();
          return work + 1;
        }
        case 'serving': {
          if (this.partnerLeft || this.partnerState() !== PEER_STATE_READY) {
            // (7): stop touching rings before anything else, then start over. The entry we read
            // may be a departed front-end's (0) whose PEER_GONE — and a newcomer's EVENT_FDs —
            // are queued already: take them first (see restartInPlace for why that matters).
            this.device.receivePending?.();
            const departed = this.partnerLeft && !this.serverGone;
            this.partnerLeft = false;
            this.endSession('driver-gone');
            this.queues.forgetAll();
            if (departed) {
              this.restartInPlace();
              work++;
            } else {
              this.enterReset();
            }
            continue;
          }
          let n = 0;
          let left = false;
          while (n < MAX_TRANSACTIONS_PER_POLL && this.header.loadTransaction() !== 0) {
            // The front-end that wrote this may be a new one on a departed front-end's id, which
            // our watchers have not been told about yet (its READY looks like the old one's):
            // the server queued that PEER_GONE and the new EVENT_FDs before the newcomer could
            // write anything (§1.6, §1.3). Take them first, so that a newcomer is never served
            // on the old session nor rung on the departed peer's eventfds.
            this.device.receivePending?.();
            left = this.partnerLeft || this.partnerState() !== PEER_STATE_READY;
            if (left) break;
            this.serviceTransaction();
            n++;
          }
          work += n;
          if (left) continue;
          if (this.session !== null) work += this.queues.service();
          if (this.phaseValue === 'serving' && this.partnerState() !== PEER_STATE_READY) continue;
          return work;
        }
        default:
          return work;
      }
    }
  }

  /**
   * §4.10 steps 1–4 after the front-end we served departed (PEER_GONE), without State := RESET:
   * no one is left to see it, and a newcomer on that id may be probing already — on our READY,
   * which was the old session's — or even be READY and spinning on its first transaction (the
   * reset every front-end starts with, §4.10 front-end step 5). Leaving READY under it would fail
   * it (a Linux guest's probe gives up: "backend not ready" / "backend failed!"). So: initialise
   * the header under `write_transaction`, full fence, complete a pending transaction without its
   * action (it would reset a device that is reset already), stay READY.
   */
  private restartInPlace(): void {
    log('%s: the front-end departed: header re-initialised, State stays READY', this.name);
    this.initialiseHeader(true);
    fullFence();
    if (this.header.loadTransaction() !== 0) this.header.completeTransaction();
    if (this.partnerState() !== PEER_STATE_READY) this.setPhase('wait-fe-ready');
  }

  /**
   * §4.10 (3): zero the header, identity, config defaults, generation 0, queue defaults.
   * `inPlace`: we stay READY meanwhile (restartInPlace): see BackendHeader.zero.
   */
  private initialiseHeader(inPlace = false): void {
    const h = this.header;
    h.zero(inPlace);
    try {
      this.config.initialise((c) => this.ops.initConfig(c));
    } catch (err) {
      // A broken initConfig leaves the config as far as it got (zeroes after that); the device
      // still serves. Reported like every other device callback, so the daemons print the stack.
      this.deviceThrew(toError(err), 'initConfig');
      this.reportError(err);
    }
    h.writeIdentity(0);
    this.queues.forgetAll();
    this.resetRegisters();
    log('%s: header initialised (size %d)', this.name, h.size);
  }

  // ------------------------------------------------------------------------------------------
  // The register file and the §4.3 write-transaction action table
  // ------------------------------------------------------------------------------------------

  /** Features that define the queue count: negotiated after FEATURES_OK, offered before (§4.9). */
  private get queueFeatures(): bigint {
    return this.negotiated ?? this.offeredFeatures;
  }

  /** Defaults after header initialisation or a device reset; writes the BE-owned window fields. */
  private resetRegisters(): void {
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeaturesLow = 0;
    this.driverFeaturesHigh = 0;
    this.queueSel = 0;
    this.deviceStatus = 0;
    this.negotiated = null;
    this.needsReset = false;
    const h = this.header;
    h.setDeviceFeatures(featureWord(this.offeredFeatures, 0));
    h.store32(HDR_DEVICE_FEATURES_SEL, 0);
    h.store32(HDR_DRIVER_FEATURES, 0);
    h.store32(HDR_DRIVER_FEATURES_SEL, 0);
    h.store32(HDR_QUEUE_SEL, 0);
    h.setStatus(0);
    this.queues.loadWindow(0, this.queueFeatures);
  }

  /**
   * Service one pending transaction, if any (§4.3). Returns true if one was completed.
   * Never throws: an unexpected exception becomes a violation, and the transaction still completes
   * (a BE that stops completing transactions hangs the FE, §7.3).
   */
  private serviceTransaction(): boolean {
    const h = this.header;
    const off = h.loadTransaction();
    if (off === 0) return false;
    try {
      this.act(off);
    } catch (err) {
      this.violation(toError(err));
    }
    fullFence();
    h.completeTransaction();
    return true;
  }

  /**
   * Complete a pending transaction WITHOUT its action, for a front-end that is not READY (§4.10
   * step (5)): the register file in the header goes back to its defaults (the private copies
   * already are, the header was just initialised), full fence, `write_transaction` := 0.
   * Returns true if one was pending. See step() for why.
   */
  private discardTransaction(): boolean {
    const off = this.header.loadTransaction();
    if (off === 0) return false;
    log('transaction at 0x%s from a front-end that is not READY: completed without action', off.toString(16));
    this.resetRegisters();
    fullFence();
    this.header.completeTransaction();
    return true;
  }

  private act(off: number): void {
    const h = this.header;
    switch (off) {
      case HDR_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = h.load32(off);
        h.setDeviceFeatures(featureWord(this.offeredFeatures, this.deviceFeaturesSel));
        return;
      case HDR_DRIVER_FEATURES: {
        const word = h.load32(off);
        if (this.negotiated !== null) return; // fixed once FEATURES_OK was accepted
        if (this.driverFeaturesSel === 0) this.driverFeaturesLow = word;
        else if (this.driverFeaturesSel === 1) this.driverFeaturesHigh = word;
        return;
      }
      case HDR_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = h.load32(off);
        return;
      case HDR_QUEUE_SEL:
        this.queueSel = h.load32(off);
        this.queues.loadWindow(this.queueSel, this.queueFeatures);
        return;
      case HDR_QUEUE_SIZE:
        this.queues.record(this.queueSel, off, h.load16(off));
        return;
      case HDR_QUEUE_DRIVER_VECTOR:
        this.queues.record(this.queueSel, off, h.load16(off));
        return;
      case HDR_QUEUE_DESC:
      case HDR_QUEUE_DRIVER:
      case HDR_QUEUE_DEVICE:
        this.queues.recordAddress(this.queueSel, off, h.load64(off));
        return;
      case HDR_QUEUE_ENABLE:
        // Only the 16-bit field: the Linux FE stores 4 bytes here, clobbering 0x28–0x29 (§4.3).
        this.queueEnable(h.load16(off));
        return;
      case HDR_DEVICE_STATUS:
        this.statusWrite(h.load32(off) & 0xff);
        return;
      default:
        if (off >= HDR_CONFIG && off < h.size) {
          this.configWrite(off - HDR_CONFIG);
          return;
        }
        this.restoreBeOwned();
    }
  }

  private queueEnable(value: number): void {
    try {
      if (value === 0) {
        this.queues.disable(this.queueSel);
        log('queue %d disabled', this.queueSel);
      } else if (value === 1 && this.session !== null) {
        // The session's queues were fixed at DRIVER_OK (the device got them in activate): a
        // queue enabled now would sit unserved while the driver waits on it. A driver that
        // breaks the set-up order (§4.6; no RING_RESET is offered) is told like one that
        // enables a broken queue: DEVICE_NEEDS_RESET, and it sets the device up again.
        this.violation(new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${this.queueSel}: queue_enable := 1 after DRIVER_OK (queues are set up before DRIVER_OK)`));
      } else if (value === 1 && this.negotiated === null) {
        // Before FEATURES_OK was accepted (never set, or refused) the queue would be built for
        // the OFFERED ring features (EVENT_IDX, INDIRECT_DESC) and queue count, not the ones the
        // driver ends up with — VIRTIO 1.2 §3.1.1 sets queues up after FEATURES_OK. Refused like the
        // other out-of-order writes that would leave the device in a state it cannot serve
        // (DRIVER_OK without features, §4.5; enable after DRIVER_OK, above).
        this.violation(new TransportError('VSHM_ERR_QUEUE', '4.6', `queue ${this.queueSel}: queue_enable := 1 before FEATURES_OK was accepted (features are negotiated first, VIRTIO 1.2 §3.1.1)`));
      } else if (value === 1) {
        this.queues.enable(this.queueSel, this.queueFeatures); // throws RingError on §6.1
        log('queue %d enabled', this.queueSel);
      } else {
        log('queue %d: queue_enable %d ignored', this.queueSel, value);
      }
    } finally {
      // Any other value is not a valid store: the window is rewritten to the truth either way.
      this.queues.loadWindow(this.queueSel, this.queueFeatures);
    }
  }

  /** §4.5. */
  private statusWrite(value: number): void {
    if (value === 0) {
      log('status 0: device reset by the driver');
      this.endSession('driver-reset');
      this.queues.forgetAll();
      this.resetRegisters();
      this.header.clearEvents();
      return;
    }
    let status = value;
    if ((status & FEATURES_OK) !== 0 && this.negotiated === null) {
      const proposed = featuresFromWords(this.driverFeaturesLow, this.driverFeaturesHigh);
      const refusal = proposalRefusal(proposed, this.offeredFeatures);
      const ok = refusal === null && this.callAcceptFeatures(proposed);
      if (ok) {
        this.negotiated = proposed;
        log('FEATURES_OK: features 0x%s accepted', proposed.toString(16));
      } else {
        status &= ~FEATURES_OK;
        log('FEATURES_OK: features 0x%s rejected (%s)', proposed.toString(16), refusal ?? 'refused by the device');
      }
    }
    if (this.needsReset) status |= NEEDS_RESET;
    log('status 0x%s', status.toString(16));
    const driverOkNow = (status & DRIVER_OK) !== 0 && (this.deviceStatus & DRIVER_OK) === 0;
    this.deviceStatus = status;
    this.header.setStatus(status);
    const badDriverOk = (status & DRIVER_OK) !== 0 && this.negotiated === null;
    this.statusChanged(status, badDriverOk);
    if (badDriverOk && !this.needsReset) {
      this.violation(new TransportError('VSHM_ERR_FEATURES', '4.5', 'DRIVER_OK without accepted features (FEATURES_OK was rejected or never set)'));
    } else if (driverOkNow && this.needsReset) {
      // A violation during set-up (a queue refused at enable) raised its config event before the
      // driver could take it: a Linux FE turns interrupts on only after find_vqs, and §3 drops an
      // event that arrives before (the vshm FE rescans, Linux does not). Raise it again now.
      log('DRIVER_OK while DEVICE_NEEDS_RESET: config event raised again');
      this.notifyConfig();
    }
  }

  private configWrite(offset: number): void {
    const accepted = this.config.driverWrite(offset);
    if (log.enabled) log('config write at %d: %s', offset, accepted === null ? 'read-only, restored' : `${accepted.field.name} = ${accepted.value}`);
    if (accepted !== null) this.callConfigWritten(accepted.field, accepted.value);
  }

  /** §4.3 "other": ignore, restore the BE-owned fields (identity, features window, status, config). */
  private restoreBeOwned(): void {
    log('transaction at an offset without an action: BE-owned fields restored');
    const h = this.header;
    h.writeIdentity(this.config.currentGeneration);
    h.setDeviceFeatures(featureWord(this.offeredFeatures, this.deviceFeaturesSel));
    h.setStatus(this.deviceStatus);
    this.queues.loadWindow(this.queueSel, this.queueFeatures);
    this.config.restore(); // a store wider than its field (e.g. 8 bytes at 0x48) reaches the config
  }

  // ------------------------------------------------------------------------------------------
  // Sessions, violations, notifications
  // ------------------------------------------------------------------------------------------

  /** After a non-zero status store: start or stop processing as the new status demands. */
  private statusChanged(status: number, badDriverOk: boolean): void {
    const run = (status & DRIVER_OK) !== 0 && (status & RUN_BLOCKERS) === 0 && !badDriverOk && !this.needsReset;
    if (run && this.session === null) this.activate();
    else if (!run && this.session !== null) this.endSession('driver-reset');
  }

  private activate(): void {
    const features = this.negotiated ?? 0n;
    const session = new BackendSession(this, features, this.queues.openSession());
    this.session = session;
    log('%s: DRIVER_OK, features 0x%s', this.name, features.toString(16));
    if (this.callActivate(session)) this.safeEmit('session', session);
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
    this.callDeactivate(reason);
    this.safeEmit('session-end', reason);
  }

  /** §6.3: stop all queues, DEVICE_NEEDS_RESET, config event; transactions keep completing. */
  private violation(err: Error): void {
    if (this.phaseValue !== 'serving') return;
    if (this.needsReset) return;
    log('%s: violation, DEVICE_NEEDS_RESET: %s', this.name, err.message);
    this.queues.stopAll();
    this.needsReset = true;
    this.deviceStatus |= NEEDS_RESET;
    this.header.setStatus(this.deviceStatus);
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
    d.off('peer-gone', this.onPeerGone);
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

  // ------------------------------------------------------------------------------------------
  // The device's ops, guarded (file comment)
  // ------------------------------------------------------------------------------------------

  private callAcceptFeatures(features: bigint): boolean {
    const fn = this.ops.acceptFeatures;
    if (fn === undefined) return true;
    try {
      return fn.call(this.ops, features) !== false;
    } catch (err) {
      this.deviceThrew(toError(err), 'acceptFeatures');
      this.reportError(err);
      return false;
    }
  }

  private callConfigWritten(field: ConfigField, value: number): void {
    const fn = this.ops.configWritten;
    if (fn === undefined) return;
    try {
      fn.call(this.ops, field, value);
    } catch (err) {
      this.deviceThrew(toError(err), 'configWritten');
      this.violation(toError(err));
    }
  }

  /** False when the device threw (the violation is already raised). */
  private callActivate(session: DeviceSession): boolean {
    try {
      this.ops.activate(session);
      return true;
    } catch (err) {
      this.deviceThrew(toError(err), 'activate');
      this.violation(toError(err));
      return false;
    }
  }

  private callDeactivate(reason: SessionEndReason): void {
    try {
      this.ops.deactivate(reason);
    } catch (err) {
      this.deviceThrew(toError(err), 'deactivate');
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

/** The session object a device receives on DRIVER_OK. */
class BackendSession implements DeviceSession {
  readonly features: bigint;
  readonly queues: readonly (DeviceQueueHandle | undefined)[];
  private readonly backend: VirtioBackend;
  /** Set when the session ends: later notifyConfig() calls do nothing. */
  ended = false;

  constructor(backend: VirtioBackend, features: bigint, queues: readonly (DeviceQueueHandle | undefined)[]) {
    this.backend = backend;
    this.features = features;
    this.queues = queues;
  }

  updateConfig(mutate: (config: ConfigSpace) => void): void {
    this.backend.updateConfig(mutate);
  }

  notifyConfig(): void {
    if (!this.ended) this.backend.notifyConfig();
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

// ------------------------------------------------------------------------------------------
// Edge checks
// ------------------------------------------------------------------------------------------

/** Check the ops table at the edge. */
function checkOps(ops: VirtioDeviceOps): void {
  if (ops === null || typeof ops !== 'object') throw new ArgumentError('VirtioBackend: ops must be an object');
  if (!Number.isInteger(ops.deviceId) || ops.deviceId < 1 || ops.deviceId > 0x3fff) {
    throw new ArgumentError(`VirtioBackend: deviceId must be 1…16383, got ${String(ops.deviceId)}`);
  }
  if (typeof ops.features !== 'bigint' || ops.features < 0n) throw new ArgumentError('VirtioBackend: features must be a non-negative bigint');
  const illegal = ops.features & ~DEVICE_OFFERABLE_FEATURES;
  if (illegal !== 0n) {
    throw new ArgumentError(`VirtioBackend: features may hold bits 0–23, INDIRECT_DESC and EVENT_IDX only, got extra 0x${illegal.toString(16)}`);
  }
  if (!Number.isInteger(ops.configSize) || ops.configSize < 0 || ops.configSize > 0x10000) {
    throw new ArgumentError(`VirtioBackend: configSize must be 0…65536, got ${String(ops.configSize)}`);
  }
  for (const fn of ['queueCount', 'queueMaxSize', 'initConfig', 'activate', 'deactivate'] as const) {
    if (typeof ops[fn] !== 'function') throw new ArgumentError(`VirtioBackend: ops.${fn} must be a function`);
  }
  if (!Array.isArray(ops.configFields)) throw new ArgumentError('VirtioBackend: ops.configFields must be an array');
}

const BACKEND_OPTIONS = new Set(['enforceIsolation', 'debugName', 'spin']);

/**
 * Edge checks of `new VirtioBackend(device, ops, opts)`: the ops table, option names, and §4.1 —
 * the server must have made this peer the back-end for this device id on a two-peer link.
 */
function checkBackendArgs(device: IvshmemDevice, ops: VirtioDeviceOps, opts: object): void {
  checkOps(ops);
  for (const k of Object.keys(opts)) {
    if (!BACKEND_OPTIONS.has(k)) throw new ArgumentError(`VirtioBackend: unknown option '${k}'`);
  }
  checkDeviceOpen(device, 'VirtioBackend');
  checkVirtioDevice(device, 'back-end', ops.deviceId);
}
