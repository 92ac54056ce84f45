/**
 * The back-end's register file and the §4.3 write-transaction action table.
 *
 * The FE stores a value in the header, then the offset in `write_transaction`, then rings
 * vector 0. On every wake-up the BE acquire-loads `write_transaction`; if non-zero it performs
 * the action for that offset, copying the value ONCE from the header into the private fields
 * below (the FE could change the header again at any time), issues a full fence and only then
 * clears `write_transaction` — so a completed transaction always has its side effects (§8 #25).
 */
import createDebug from 'debug';
import {
  DeviceStatus,
  VSHM_REQUIRED_FEATURES,
  featureWord,
  featuresFromWords,
} from 'virtio-spec-types';
import { TransportError } from '../errors.js';
import {
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
} from './header.js';
import { fullFence, type BackendHeader } from './backend-header.js';
import type { BackendConfigSpace } from './config-space.js';
import type { BackendQueues } from './backend-queues.js';
import type { ConfigField } from './device-api.js';

/** What the register file needs from its owner (VirtioBackend). */
export interface RegisterHost {
  /** ops.acceptFeatures, exceptions already handled (false on throw). */
  acceptFeatures(features: bigint): boolean;
  /** §4.5 status 0: stop queues, end the session. Called before the registers are reset. */
  deviceReset(): void;
  /** After a non-zero status store: start or stop processing as the new status demands. */
  statusChanged(status: number, driverOkWithRejectedFeatures: boolean): void;
  /** A driver-writable config field was written (value already in the shadow). */
  configWritten(field: ConfigField, value: number): void;
  /** A §6.1 / §6.3 / §4.5 violation: DEVICE_NEEDS_RESET and config event. */
  violation(err: Error): void;
}

const log = createDebug('vshm:virtio:be');

const DRIVER_OK = DeviceStatus.DRIVER_OK;
const FEATURES_OK = DeviceStatus.FEATURES_OK;
const NEEDS_RESET = DeviceStatus.DEVICE_NEEDS_RESET;

export class BackendRegisters {
  /** Offered feature set (§4.4). */
  readonly offered: bigint;
  deviceFeaturesSel = 0;
  driverFeaturesSel = 0;
  driverFeaturesLow = 0;
  driverFeaturesHigh = 0;
  queueSel = 0;
  /** Private copy of `device_status` (the header copy is the FE's to overwrite). */
  status = 0;
  /** Negotiated features once FEATURES_OK was accepted, else null. */
  negotiated: bigint | null = null;
  /** FEATURES_OK was cleared at least once since the last reset (§4.5). */
  featuresRejected = false;
  /** DEVICE_NEEDS_RESET latched until the driver resets (§4.5, §6.3). */
  needsReset = false;

  private readonly header: BackendHeader;
  private readonly config: BackendConfigSpace;
  private readonly queues: BackendQueues;
  private readonly host: RegisterHost;

  constructor(header: BackendHeader, config: BackendConfigSpace, queues: BackendQueues, offered: bigint, host: RegisterHost) {
    this.header = header;
    this.config = config;
    this.queues = queues;
    this.offered = offered;
    this.host = host;
  }

  /** Features that define the queue count: negotiated after FEATURES_OK, offered before (§4.9). */
  get features(): bigint {
    return this.negotiated ?? this.offered;
  }

  /** The driver's proposed feature set. */
  get driverFeatures(): bigint {
    return featuresFromWords(this.driverFeaturesLow, this.driverFeaturesHigh);
  }

  /** Defaults after header initialisation or a device reset; writes the BE-owned window fields. */
  reset(): void {
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeaturesLow = 0;
    this.driverFeaturesHigh = 0;
    this.queueSel = 0;
    this.status = 0;
    this.negotiated = null;
    this.featuresRejected = false;
    this.needsReset = false;
    const h = this.header;
    h.setDeviceFeatures(featureWord(this.offered, 0));
    h.store32(HDR_DEVICE_FEATURES_SEL, 0);
    h.store32(HDR_DRIVER_FEATURES, 0);
    h.store32(HDR_DRIVER_FEATURES_SEL, 0);
    h.store32(HDR_QUEUE_SEL, 0);
    h.setStatus(0);
    this.queues.loadWindow(0, this.features);
  }

  /**
   * Service one pending transaction, if any (§4.3). Returns true if one was completed.
   * Never throws: an unexpected exception becomes a violation, and the transaction still completes
   * (a BE that stops completing transactions hangs the FE, §7.3).
   */
  serviceTransaction(): boolean {
    const h = this.header;
    const off = h.loadTransaction();
    if (off === 0) return false;
    try {
      this.act(off);
    } catch (err) {
      this.host.violation(err instanceof Error ? err : new Error(String(err)));
    }
    fullFence();
    h.completeTransaction();
    return true;
  }

  /** Whether the FE left a transaction for us (acquire load of `write_transaction`). */
  transactionPending(): boolean {
    return this.header.loadTransaction() !== 0;
  }

  /**
   * Complete a pending transaction WITHOUT its action, for a front-end that is not READY (§4.10
   * step (5)): the register file in the header goes back to its defaults (the private copies
   * already are, the header was just initialised), full fence, `write_transaction` := 0.
   * Returns true if one was pending. See VirtioBackend.step() for why.
   */
  discardTransaction(): boolean {
    const off = this.header.loadTransaction();
    if (off === 0) return false;
    log('transaction at 0x%s from a front-end that is not READY: completed without action', off.toString(16));
    this.reset();
    fullFence();
    this.header.completeTransaction();
    return true;
  }

  /** Set DEVICE_NEEDS_RESET in the private and header status (§6.3). */
  markNeedsReset(): void {
    this.needsReset = true;
    this.status |= NEEDS_RESET;
    this.header.setStatus(this.status);
  }

  private act(off: number): void {
    const h = this.header;
    switch (off) {
      case HDR_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = h.load32(off);
        h.setDeviceFeatures(featureWord(this.offered, this.deviceFeaturesSel));
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
        this.queues.loadWindow(this.queueSel, this.features);
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
      } else if (value === 1) {
        this.queues.enable(this.queueSel, this.features); // throws RingError on §6.1
        log('queue %d enabled', this.queueSel);
      } else {
        log('queue %d: queue_enable %d ignored', this.queueSel, value);
      }
    } finally {
      // Any other value is not a valid store: the window is rewritten to the truth either way.
      this.queues.loadWindow(this.queueSel, this.features);
    }
  }

  /** §4.5. */
  private statusWrite(value: number): void {
    if (value === 0) {
      log('status 0: device reset by the driver');
      this.host.deviceReset();
      this.reset();
      this.header.clearEvents();
      return;
    }
    let status = value;
    if ((status & FEATURES_OK) !== 0 && this.negotiated === null) {
      const proposed = this.driverFeatures;
      const ok =
        (proposed & ~this.offered) === 0n &&
        (proposed & VSHM_REQUIRED_FEATURES) === VSHM_REQUIRED_FEATURES &&
        this.host.acceptFeatures(proposed);
      if (ok) {
        this.negotiated = proposed;
        log('FEATURES_OK: features 0x%s accepted', proposed.toString(16));
      } else {
        this.featuresRejected = true;
        status &= ~FEATURES_OK;
        const why =
          (proposed & ~this.offered) !== 0n
            ? `bits 0x${(proposed & ~this.offered).toString(16)} not offered`
            : (proposed & VSHM_REQUIRED_FEATURES) !== VSHM_REQUIRED_FEATURES
              ? 'VERSION_1/ACCESS_PLATFORM missing'
              : 'refused by the device';
        log('FEATURES_OK: features 0x%s rejected (%s)', proposed.toString(16), why);
      }
    }
    if (this.needsReset) status |= NEEDS_RESET;
    log('status 0x%s', status.toString(16));
    this.status = status;
    this.header.setStatus(status);
    const badDriverOk = (status & DRIVER_OK) !== 0 && this.negotiated === null;
    this.host.statusChanged(status, badDriverOk);
    if (badDriverOk && !this.needsReset) {
      this.host.violation(
        new TransportError('VSHM_ERR_FEATURES', '4.5', 'DRIVER_OK without accepted features (FEATURES_OK was rejected or never set)'),
      );
    }
  }

  private configWrite(offset: number): void {
    const accepted = this.config.driverWrite(offset);
    if (log.enabled) log('config write at %d: %s', offset, accepted === null ? 'read-only, restored' : `${accepted.field.name} = ${accepted.value}`);
    if (accepted !== null) this.host.configWritten(accepted.field, accepted.value);
  }

  /** §4.3 "other": ignore, restore the BE-owned fields (identity, features window, status, config). */
  private restoreBeOwned(): void {
    log('transaction at an offset without an action: BE-owned fields restored');
    const h = this.header;
    h.writeIdentity(this.config.currentGeneration);
    h.setDeviceFeatures(featureWord(this.offered, this.deviceFeaturesSel));
    h.setStatus(this.status);
    this.queues.loadWindow(this.queueSel, this.features);
  }
}
