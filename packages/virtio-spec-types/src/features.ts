/**
 * VIRTIO feature bits (OASIS VIRTIO 1.2 §6; vshm protocol §4.4).
 *
 * Bit *numbers* are plain `number`s (0…63); the 64-bit feature *sets* are `bigint` masks, as the
 * spec conventions require for 64-bit values. The transport moves them through two 32-bit windows
 * (`device_features_sel` / `driver_features_sel` 0 and 1), see {@link featureWord} and
 * {@link featuresFromWords}.
 */

/** Transport (device-independent) feature bit numbers. */
export const VirtioFeature = {
  /** Descriptors may point to indirect tables (VIRTIO 1.2 §2.7.5.3). BE MAY offer. */
  RING_INDIRECT_DESC: 28,
  /** `used_event` / `avail_event` suppression (VIRTIO 1.2 §2.7.7–2.7.10). BE MAY offer. */
  RING_EVENT_IDX: 29,
  /** Non-legacy device. BE MUST offer, FE MUST refuse a device without it. */
  VERSION_1: 32,
  /** Device accesses memory through a platform translation. BE MUST offer: the Linux FE then keeps rings and buffers in shared memory. */
  ACCESS_PLATFORM: 33,
  /** Packed virtqueues. BE MUST NOT offer (vshm is split-ring only). */
  RING_PACKED: 34,
  /** Buffers are used in the order they are made available. Not offered by vshm. */
  IN_ORDER: 35,
  /** Memory accesses need platform ordering (real barriers, not compiler-only). BE SHOULD offer. */
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  NOTIF_CONFIG_DATA: 39,
  RING_RESET: 40,
  ADMIN_VQ: 41,
} as const;

export type VirtioFeatureName = keyof typeof VirtioFeature;

/** Device-specific feature bits are 0 … 23 (spec §4.4). */
export const DEVICE_FEATURE_BITS_END = 24;
/** First reserved/transport bit; bits 24…41 other than the ones vshm allows MUST NOT be offered. */
export const TRANSPORT_FEATURE_BITS_START = 24;
/** One past the last transport feature bit. */
export const TRANSPORT_FEATURE_BITS_END = 42;

/** `1n << bit`. Throws RangeError for a bit outside 0…63. */
export function featureBit(bit: number): bigint {
  if (!Number.isInteger(bit) || bit < 0 || bit > 63) throw new RangeError(`feature bit must be 0…63, got ${bit}`);
  return 1n << BigInt(bit);
}

/** Whether `features` has bit `bit` set. */
export function hasFeature(features: bigint, bit: number): boolean {
  return (features & featureBit(bit)) !== 0n;
}

/** 32-bit window `sel` (0: bits 0–31, 1: bits 32–63) of a feature set; 0 for `sel` > 1 (spec §4.3). */
export function featureWord(features: bigint, sel: number): number {
  if (sel === 0) return Number(features & 0xffffffffn);
  if (sel === 1) return Number((features >> 32n) & 0xffffffffn);
  return 0;
}

/** Feature set from its two 32-bit windows (each taken as unsigned). */
export function featuresFromWords(low: number, high: number): bigint {
  return (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
}

/** Masks of the transport feature bits. */
export const VirtioFeatureMask = {
  RING_INDIRECT_DESC: 1n << 28n,
  RING_EVENT_IDX: 1n << 29n,
  VERSION_1: 1n << 32n,
  ACCESS_PLATFORM: 1n << 33n,
  RING_PACKED: 1n << 34n,
  IN_ORDER: 1n << 35n,
  ORDER_PLATFORM: 1n << 36n,
} as const;

/**
 * Transport bits a vshm BE may offer (spec §4.4): INDIRECT and EVENT_IDX (MAY), VERSION_1 and
 * ACCESS_PLATFORM (MUST), ORDER_PLATFORM (SHOULD). Everything else in 24…41 MUST NOT be offered.
 */
export const VSHM_ALLOWED_TRANSPORT_FEATURES: bigint =
  VirtioFeatureMask.RING_INDIRECT_DESC |
  VirtioFeatureMask.RING_EVENT_IDX |
  VirtioFeatureMask.VERSION_1 |
  VirtioFeatureMask.ACCESS_PLATFORM |
  VirtioFeatureMask.ORDER_PLATFORM;

/** Transport bits a vshm BE MUST offer (spec §4.4). */
export const VSHM_REQUIRED_FEATURES: bigint = VirtioFeatureMask.VERSION_1 | VirtioFeatureMask.ACCESS_PLATFORM;

/** Mask of device-specific bits 0…23. */
export const DEVICE_FEATURES_MASK: bigint = (1n << 24n) - 1n;
