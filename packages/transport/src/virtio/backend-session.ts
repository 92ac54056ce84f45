/**
 * Pieces of the back-end that the device touches directly: the `DeviceSession` it gets on
 * DRIVER_OK, and the edge check of its ops table (style §8).
 */
import { VirtioFeatureMask, DEVICE_FEATURES_MASK } from 'virtio-spec-types';
import { ArgumentError } from '../errors.js';
import type { ConfigSpace, DeviceQueueHandle, DeviceSession, VirtioDeviceOps } from './device-api.js';

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
