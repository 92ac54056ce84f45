/**
 * Split virtqueue wire format (OASIS VIRTIO 1.2 §2.7, vshm spec §6). All fields little-endian;
 * addresses are byte offsets from the start of the R/W section (spec §4.7).
 *
 * Descriptor table (driver writes, device reads), 16 bytes per entry, 16-aligned:
 *   +0 addr u64 · +8 len u32 · +12 flags u16 · +14 next u16
 * Available ring (driver writes, device reads), 2-aligned:
 *   +0 flags u16 · +2 idx u16 · +4 ring[n] u16 · +4+2n used_event u16
 * Used ring (device writes, driver reads), 4-aligned:
 *   +0 flags u16 · +2 idx u16 · +4 ring[n] {id u32, len u32} · +4+8n avail_event u16
 */

/** Descriptor flag: chain continues at `next`. */
export const VIRTQ_DESC_F_NEXT = 1;
/** Descriptor flag: buffer is device-writable (otherwise device-readable). */
export const VIRTQ_DESC_F_WRITE = 2;
/** Descriptor flag: buffer holds an indirect descriptor table (needs RING_INDIRECT_DESC). */
export const VIRTQ_DESC_F_INDIRECT = 4;

/** avail.flags: driver asks not to be interrupted (ignored by the device with EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: device asks not to be notified (ignored by the driver with EVENT_IDX). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Bytes per descriptor. */
export const VIRTQ_DESC_SIZE = 16;
/** Field offsets within a descriptor. */
export const VIRTQ_DESC_ADDR = 0;
export const VIRTQ_DESC_LEN = 8;
export const VIRTQ_DESC_FLAGS = 12;
export const VIRTQ_DESC_NEXT = 14;

/** Offsets within the available ring. */
export const VIRTQ_AVAIL_FLAGS = 0;
export const VIRTQ_AVAIL_IDX = 2;
export const VIRTQ_AVAIL_RING = 4;
/** Bytes per available-ring entry. */
export const VIRTQ_AVAIL_ELEM_SIZE = 2;

/** Offsets within the used ring. */
export const VIRTQ_USED_FLAGS = 0;
export const VIRTQ_USED_IDX = 2;
export const VIRTQ_USED_RING = 4;
/** Bytes per used-ring element. */
export const VIRTQ_USED_ELEM_SIZE = 8;
/** Offsets within a used element. */
export const VIRTQ_USED_ELEM_ID = 0;
export const VIRTQ_USED_ELEM_LEN = 4;

/** Required alignments (spec §6.1). */
export const VIRTQ_DESC_ALIGN = 16;
export const VIRTQ_AVAIL_ALIGN = 2;
export const VIRTQ_USED_ALIGN = 4;

/** Largest split queue size (2^15). */
export const VIRTQ_MAX_SIZE = 32768;

/** Bytes of a descriptor table of `n` entries: 16·n. */
export function descTableSize(n: number): number {
  return VIRTQ_DESC_SIZE * n;
}
/** Bytes of an available ring of `n` entries, including `used_event`: 6 + 2·n. */
export function availRingSize(n: number): number {
  return 6 + VIRTQ_AVAIL_ELEM_SIZE * n;
}
/** Bytes of a used ring of `n` entries, including `avail_event`: 6 + 8·n. */
export function usedRingSize(n: number): number {
  return 6 + VIRTQ_USED_ELEM_SIZE * n;
}
/** Offset of `used_event` inside the available ring of size `n`: 4 + 2·n. */
export function usedEventOffset(n: number): number {
  return VIRTQ_AVAIL_RING + VIRTQ_AVAIL_ELEM_SIZE * n;
}
/** Offset of `avail_event` inside the used ring of size `n`: 4 + 8·n. */
export function availEventOffset(n: number): number {
  return VIRTQ_USED_RING + VIRTQ_USED_ELEM_SIZE * n;
}

/** Whether `n` is a valid split queue size: a power of two in 1 … 32768. */
export function isValidQueueSize(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= VIRTQ_MAX_SIZE && (n & (n - 1)) === 0;
}

/**
 * EVENT_IDX rule (VIRTIO 1.2 §2.7.10): after moving an index from `oldIdx` to `newIdx`, the other
 * side must be notified iff `eventIdx` lies in [oldIdx, newIdx) modulo 2^16. All three are u16
 * values; the arithmetic is 16-bit wrapping and cannot overflow.
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}
