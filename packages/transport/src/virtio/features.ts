/**
 * Feature negotiation (spec §4.4, §4.5) for both sides, in one place: what a back-end offers,
 * what a front-end proposes, and what each side accepts. The transport bits are spelled here
 * once; the device's own bits come from its ops table (device-api.ts).
 *
 * Back-end: offers the device's bits 0–23 and optional ring bits plus {@link TRANSPORT_FEATURES};
 * at FEATURES_OK it accepts a proposal that is a subset of the offer and holds
 * VERSION_1 and ACCESS_PLATFORM, and then asks the device (`acceptFeatures`).
 * Front-end: refuses an offer without VERSION_1 or ACCESS_PLATFORM, proposes offer ∩ (driver bits
 * ∪ transport bits) without RING_PACKED, and treats a FEATURES_OK that does not stick as a
 * rejection. The FE's reads and writes go through transactions in the §4.4 order.
 */
import {
  DeviceStatus,
  DEVICE_FEATURES_MASK,
  VSHM_REQUIRED_FEATURES,
  VirtioFeatureMask,
  featureWord,
  featuresFromWords,
} from 'virtio-spec-types';
import { TransportError } from '../errors.js';
import {
  HDR_DEVICE_FEATURES,
  HDR_DEVICE_FEATURES_SEL,
  HDR_DEVICE_STATUS,
  HDR_DRIVER_FEATURES,
  HDR_DRIVER_FEATURES_SEL,
  type FrontendHeader,
} from './header.js';
import type { TransactionWriter } from './frontend-transactions.js';

/**
 * Transport bits (§4.4): a vshm back-end always offers them, a vshm front-end always accepts them
 * when offered. RING_PACKED is never offered nor accepted.
 */
export const TRANSPORT_FEATURES: bigint =
  VirtioFeatureMask.VERSION_1 | VirtioFeatureMask.ACCESS_PLATFORM | VirtioFeatureMask.ORDER_PLATFORM;

/** Bits a device may put in `VirtioDeviceOps.features`: its own 0–23 and the optional ring bits. */
export const DEVICE_OFFERABLE_FEATURES: bigint =
  DEVICE_FEATURES_MASK | VirtioFeatureMask.RING_INDIRECT_DESC | VirtioFeatureMask.RING_EVENT_IDX;

// ------------------------------------------------------------------------------------------
// Back-end
// ------------------------------------------------------------------------------------------

/** BE: the offered set for a device offering `deviceFeatures` (§4.4). */
export function offeredFeatures(deviceFeatures: bigint): bigint {
  return deviceFeatures | TRANSPORT_FEATURES;
}

/**
 * BE at FEATURES_OK (§4.5): why the transport refuses `proposed` against `offered`, or null when
 * the device may now decide. Offered bits only, and VERSION_1 and ACCESS_PLATFORM present.
 */
export function proposalRefusal(proposed: bigint, offered: bigint): string | null {
  const extra = proposed & ~offered;
  if (extra !== 0n) return `bits 0x${extra.toString(16)} not offered`;
  if ((proposed & VSHM_REQUIRED_FEATURES) !== VSHM_REQUIRED_FEATURES) return 'VERSION_1/ACCESS_PLATFORM missing';
  return null;
}

// ------------------------------------------------------------------------------------------
// Front-end
// ------------------------------------------------------------------------------------------

/** FE: the set to propose: offered ∩ (driver ∪ transport bits), never RING_PACKED (§4.4). */
export function negotiate(offered: bigint, driverFeatures: bigint): bigint {
  return offered & (driverFeatures | TRANSPORT_FEATURES) & ~VirtioFeatureMask.RING_PACKED;
}

/**
 * FE, §4.4 read order: `device_features_sel` := 1, await, read bits 32–63; := 0, await, read 0–31.
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

/** FE, §4.4 write order: `driver_features_sel` := 1, high word, `driver_features_sel` := 0, low word. */
export async function writeDriverFeatures(txn: TransactionWriter, features: bigint): Promise<void> {
  await txn.write(HDR_DRIVER_FEATURES_SEL, 4, 1);
  await txn.write(HDR_DRIVER_FEATURES, 4, featureWord(features, 1));
  await txn.write(HDR_DRIVER_FEATURES_SEL, 4, 0);
  await txn.write(HDR_DRIVER_FEATURES, 4, featureWord(features, 0));
}

/**
 * FE, §4.5: set FEATURES_OK on top of `status`, await, re-read; a cleared bit means the BE
 * rejected the features. Returns the new status.
 */
export async function confirmFeatures(txn: TransactionWriter, h: FrontendHeader, status: number): Promise<number> {
  const want = status | DeviceStatus.FEATURES_OK;
  await txn.write(HDR_DEVICE_STATUS, 4, want);
  const got = h.load(HDR_DEVICE_STATUS, 4);
  if ((got & DeviceStatus.FEATURES_OK) === 0) {
    throw new TransportError('VSHM_ERR_FEATURES_REJECTED', '4.5', 'device rejected the negotiated features (FEATURES_OK cleared)');
  }
  return want;
}
