/**
 * Front-end device initialisation steps (spec §4.2, §4.4, §4.5, §4.6): header validation,
 * feature negotiation, status writes and the per-queue setup transactions — each in exactly the
 * order the spec (and the Linux virtio_ivshmem driver) uses. Pure sequencing over the
 * transaction writer; ring allocation and the queue objects live in frontend-queues.ts.
 */
import {
  DeviceStatus,
  VirtioFeatureMask,
  featuresFromWords,
  featureWord,
} from 'virtio-spec-types';
import { TransportError } from '../errors.js';
import type { FrontendHeader } from './frontend-header.js';
import type { TransactionWriter } from './frontend-transactions.js';
import {
  HDR_CONFIG,
  HDR_DEVICE_FEATURES,
  HDR_DEVICE_FEATURES_SEL,
  HDR_DEVICE_STATUS,
  HDR_DRIVER_FEATURES,
  HDR_DRIVER_FEATURES_SEL,
  HDR_QUEUE_DESC,
  HDR_QUEUE_DEVICE,
  HDR_QUEUE_DEVICE_VECTOR,
  HDR_QUEUE_DRIVER,
  HDR_QUEUE_DRIVER_VECTOR,
  HDR_QUEUE_ENABLE,
  HDR_QUEUE_SEL,
  HDR_QUEUE_SIZE,
  HDR_REVISION,
  HDR_SIZE,
} from './header.js';

/** Transport bits a vshm FE always accepts when offered (§4.4). RING_PACKED never. */
export const FE_TRANSPORT_FEATURES: bigint =
  VirtioFeatureMask.VERSION_1 | VirtioFeatureMask.ACCESS_PLATFORM | VirtioFeatureMask.ORDER_PLATFORM;

/**
 * §4.2: refuse `revision` 0, treat ≥ 1 as this layout, refuse `size` < 0x4C or > RW.
 * Returns the published `size`.
 */
export function validateHeader(h: FrontendHeader, rwSize: number): number {
  if (rwSize < HDR_CONFIG) {
    throw new TransportError('VSHM_ERR_HEADER', '4.2', `R/W section of ${rwSize} bytes cannot hold the header`);
  }
  const revision = h.load(HDR_REVISION, 4);
  if (revision === 0) throw new TransportError('VSHM_ERR_HEADER', '4.2', 'header revision 0 refused');
  const size = h.load(HDR_SIZE, 4);
  if (size < HDR_CONFIG || size > rwSize) {
    throw new TransportError('VSHM_ERR_HEADER', '4.2', `header size ${size} outside [0x4C, ${rwSize}]`);
  }
  return size;
}

/** The set a vshm FE proposes: offered ∩ (driver ∪ transport bits), never RING_PACKED (§4.4). */
export function negotiate(offered: bigint, driverFeatures: bigint): bigint {
  return offered & (driverFeatures | FE_TRANSPORT_FEATURES) & ~VirtioFeatureMask.RING_PACKED;
}

/**
 * §4.4 read order: `device_features_sel` := 1, await, read bits 32–63; := 0, await, read 0–31.
 * Refuses a device without VERSION_1 or (vshm) ACCESS_PLATFORM.
 */
export async function readDeviceFeatures(txn: TransactionWriter, h: FrontendHeader): Promise<bigint> {
  await txn.write(HDR_DEVICE_FEATURES_SEL, 4, 1);
  const high = h.load(HDR_DEVICE_FEATURES, 4);
  await txn.write(HDR_DEVICE_FEATURES_SEL, 4, 0);
  const low = h.load(HDR_DEVICE_FEATURES, 4);
  const offered = featuresFromWords(low, high);
  if ((offered & VirtioFeatureMask.VERSION_1) === 0n) {
    throw new TransportError('VSHM_ERR_FEATURES', '4.4', 'device does not offer VERSION_1: refused');
  }
  if ((offered & VirtioFeatureMask.ACCESS_PLATFORM) === 0n) {
    throw new TransportError('VSHM_ERR_FEATURES', '4.4', 'device does not offer ACCESS_PLATFORM: refused');
  }
  return offered;
}

/** §4.4 write order: `driver_features_sel` := 1, high word, `driver_features_sel` := 0, low word. */
export async function writeDriverFeatures(txn: TransactionWriter, features: bigint): Promise<void> {
  await txn.write(HDR_DRIVER_FEATURES_SEL, 4, 1);
  await txn.write(HDR_DRIVER_FEATURES, 4, featureWord(features, 1));
  await txn.write(HDR_DRIVER_FEATURES_SEL, 4, 0);
  await txn.write(HDR_DRIVER_FEATURES, 4, featureWord(features, 0));
}

/** Write `device_status` and await completion (§4.5). */
export function writeStatus(txn: TransactionWriter, status: number): Promise<void> {
  return txn.write(HDR_DEVICE_STATUS, 4, status);
}

/** §4.5: set FEATURES_OK, await, re-read; a cleared bit means the BE rejected the features. */
export async function confirmFeatures(txn: TransactionWriter, h: FrontendHeader, status: number): Promise<number> {
  const want = status | DeviceStatus.FEATURES_OK;
  await writeStatus(txn, want);
  const got = h.load(HDR_DEVICE_STATUS, 4);
  if ((got & DeviceStatus.FEATURES_OK) === 0) {
    throw new TransportError('VSHM_ERR_FEATURES_REJECTED', '4.5', 'device rejected the negotiated features (FEATURES_OK cleared)');
  }
  return want;
}

/** The queue window after `queue_sel` (§4.6 step 2). */
export interface QueueWindow {
  readonly index: number;
  /** Offered maximum; 0 = absent. */
  readonly maxSize: number;
  readonly deviceVector: number;
  readonly enabled: number;
}

/** §4.6 steps 1–2: `queue_sel` := i, await, read enable, size, device vector. */
export async function selectQueue(txn: TransactionWriter, h: FrontendHeader, index: number): Promise<QueueWindow> {
  await txn.write(HDR_QUEUE_SEL, 4, index);
  const enabled = h.load(HDR_QUEUE_ENABLE, 2);
  const maxSize = h.load(HDR_QUEUE_SIZE, 2);
  const deviceVector = h.load(HDR_QUEUE_DEVICE_VECTOR, 2);
  return { index, maxSize, deviceVector, enabled };
}

export interface QueueRings {
  readonly size: number;
  readonly driverVector: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
}

/**
 * §4.6 step 4: `queue_size`, `queue_driver_vector`, `queue_desc`, `queue_driver`,
 * `queue_device`, then `queue_enable` := 1 (2 bytes, as a vshm FE writes it).
 */
export async function enableQueue(txn: TransactionWriter, r: QueueRings): Promise<void> {
  await txn.write(HDR_QUEUE_SIZE, 2, r.size);
  await txn.write(HDR_QUEUE_DRIVER_VECTOR, 2, r.driverVector);
  await txn.write(HDR_QUEUE_DESC, 8, BigInt(r.desc));
  await txn.write(HDR_QUEUE_DRIVER, 8, BigInt(r.avail));
  await txn.write(HDR_QUEUE_DEVICE, 8, BigInt(r.used));
  await txn.write(HDR_QUEUE_ENABLE, 2, 1);
}

/** Teardown of queue i (§4.6): `queue_sel` := i, `queue_enable` := 0. */
export async function disableQueue(txn: TransactionWriter, index: number): Promise<void> {
  await txn.write(HDR_QUEUE_SEL, 4, index);
  await txn.write(HDR_QUEUE_ENABLE, 2, 0);
}

/** Largest power of two ≤ n (n ≥ 1). */
export function floorPow2(n: number): number {
  return 2 ** Math.floor(Math.log2(n));
}
