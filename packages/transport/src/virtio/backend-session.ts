/**
 * The back-end's boundary with the device: the `DeviceSession` it gets on DRIVER_OK, its ops
 * table called through exception guards, and the edge checks of the constructor (style §8).
 */
import { VirtioFeatureMask, DEVICE_FEATURES_MASK } from 'virtio-spec-types';
import { ArgumentError } from '../errors.js';
import { checkVirtioDevice } from './role.js';
import type { IvshmemDevice } from '../ivshmem/device.js';
import type {
  ConfigField,
  ConfigSpace,
  DeviceQueueHandle,
  DeviceSession,
  SessionEndReason,
  VirtioDeviceOps,
} from './device-api.js';

/** What a session forwards to its backend. */
export interface SessionOwner {
  updateConfig(mutate: (config: ConfigSpace) => void): void;
  notifyConfig(): void;
}

/** The session object a device receives on DRIVER_OK. */
export class BackendSession implements DeviceSession {
  readonly features: bigint;
  readonly queues: readonly (DeviceQueueHandle | undefined)[];
  private readonly owner: SessionOwner;
  /** @internal set when the session ends. */
  ended = false;

  constructor(owner: SessionOwner, features: bigint, queues: readonly (DeviceQueueHandle | undefined)[]) {
    this.owner = owner;
    this.features = features;
    this.queues = queues;
  }

  updateConfig(mutate: (config: ConfigSpace) => void): void {
    this.owner.updateConfig(mutate);
  }

  notifyConfig(): void {
    if (!this.ended) this.owner.notifyConfig();
  }
}

/** Check the ops table at the edge (style §8). */
export function checkOps(ops: VirtioDeviceOps): void {
  if (ops === null || typeof ops !== 'object') throw new ArgumentError('VirtioBackend: ops must be an object');
  if (!Number.isInteger(ops.deviceId) || ops.deviceId < 1 || ops.deviceId > 0x3fff) {
    throw new ArgumentError(`VirtioBackend: deviceId must be 1…16383, got ${String(ops.deviceId)}`);
  }
  if (typeof ops.features !== 'bigint' || ops.features < 0n) throw new ArgumentError('VirtioBackend: features must be a non-negative bigint');
  const illegal = ops.features & ~(DEVICE_FEATURES_MASK | VirtioFeatureMask.RING_INDIRECT_DESC | VirtioFeatureMask.RING_EVENT_IDX);
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
export function checkBackendArgs(device: IvshmemDevice, ops: VirtioDeviceOps, opts: object): void {
  checkOps(ops);
  for (const k of Object.keys(opts)) {
    if (!BACKEND_OPTIONS.has(k)) throw new ArgumentError(`VirtioBackend: unknown option '${k}'`);
  }
  checkVirtioDevice(device, 'back-end', ops.deviceId);
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * The device's ops as the back-end calls them: nothing a device callback throws escapes into the
 * interrupt path. A throwing `activate` or `configWritten` breaks the device like a ring violation
 * (`violation`: DEVICE_NEEDS_RESET, docs/decisions.md); a throwing `acceptFeatures` refuses the
 * features; a throwing `deactivate` is only reported — the session ends regardless.
 */
export class GuardedOps {
  constructor(
    private readonly ops: VirtioDeviceOps,
    private readonly violation: (err: Error) => void,
    private readonly report: (err: unknown) => void,
    /** Told first, for every exception, which callback threw (the 'device-exception' event). */
    private readonly thrown: (err: Error, callback: string) => void = () => {},
  ) {}

  acceptFeatures(features: bigint): boolean {
    const fn = this.ops.acceptFeatures;
    if (fn === undefined) return true;
    try {
      return fn.call(this.ops, features) !== false;
    } catch (err) {
      this.thrown(toError(err), 'acceptFeatures');
      this.report(err);
      return false;
    }
  }

  configWritten(field: ConfigField, value: number): void {
    const fn = this.ops.configWritten;
    if (fn === undefined) return;
    try {
      fn.call(this.ops, field, value);
    } catch (err) {
      this.thrown(toError(err), 'configWritten');
      this.violation(toError(err));
    }
  }

  /** False when the device threw (the violation is already raised). */
  activate(session: DeviceSession): boolean {
    try {
      this.ops.activate(session);
      return true;
    } catch (err) {
      this.thrown(toError(err), 'activate');
      this.violation(toError(err));
      return false;
    }
  }

  deactivate(reason: SessionEndReason): void {
    try {
      this.ops.deactivate(reason);
    } catch (err) {
      this.thrown(toError(err), 'deactivate');
      this.report(err);
    }
  }
}
