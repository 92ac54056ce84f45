/**
 * Where each split-ring field of one queue lives in a {@link MemoryView} (OASIS VIRTIO 1.2
 * §2.7, spec §6.1), precomputed once per queue so the hot path is index arithmetic only.
 *
 * Addresses are virtio addresses (offsets from the R/W section start, spec §4.7). The three ring
 * addresses are used exactly as given, never derived from one another (spec §4.7).
 *
 * Field owners and ordering:
 * | field                 | writer  | access                                  |
 * |-----------------------|---------|-----------------------------------------|
 * | descriptor table      | driver  | plain (published by avail.idx release)  |
 * | avail.flags           | driver  | release store / acquire load            |
 * | avail.idx             | driver  | release store / acquire load            |
 * | avail.ring[i]         | driver  | plain                                   |
 * | used_event (avail)    | driver  | release store / acquire load            |
 * | used.flags            | device  | release store / acquire load            |
 * | used.idx              | device  | release store / acquire load            |
 * | used.ring[i]          | device  | plain (published by used.idx release)   |
 * | avail_event (used)    | device  | release store / acquire load            |
 */
import {
  VIRTQ_AVAIL_FLAGS, VIRTQ_AVAIL_IDX, VIRTQ_AVAIL_RING, VIRTQ_USED_FLAGS, VIRTQ_USED_IDX, VIRTQ_USED_RING,
  descTableSize, availRingSize, usedRingSize, usedEventOffset, availEventOffset,
} from 'virtio-spec-types';

/** The negotiated size and ring addresses of one queue (header fields latched at enable, §4.3). */
export interface QueueAddresses {
  /** Queue size n (power of two). */
  readonly size: number;
  /** Descriptor table address (`queue_desc`). */
  readonly desc: number;
  /** Available ring address (`queue_driver`). */
  readonly avail: number;
  /** Used ring address (`queue_device`). */
  readonly used: number;
}

/**
 * Precomputed offsets and word indices. Only valid for a configuration that passed
 * `checkQueueConfig` (validation.ts): alignment makes every `>>> 1` / `>>> 2` exact.
 */
export class SplitRingLayout implements QueueAddresses {
  readonly size: number;
  /** size − 1: ring slot = index & mask. */
  readonly mask: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;

  /** u32 index of descriptor 0's addr low word; descriptor i: +4i (addr lo), +4i+1 (hi), +4i+2 (len). */
  readonly descU32: number;
  /** u16 index of descriptor 0's first half-word; descriptor i: +8i+6 (flags), +8i+7 (next). */
  readonly descU16: number;

  /** Byte offset of avail.flags (atomic). */
  readonly availFlagsOff: number;
  /** Byte offset of avail.idx (atomic). */
  readonly availIdxOff: number;
  /** u16 index of avail.ring[0] (plain). */
  readonly availRingU16: number;
  /** Byte offset of used_event (atomic). */
  readonly usedEventOff: number;

  /** Byte offset of used.flags (atomic). */
  readonly usedFlagsOff: number;
  /** Byte offset of used.idx (atomic). */
  readonly usedIdxOff: number;
  /** u32 index of used.ring[0].id; element i: +2i (id), +2i+1 (len). Plain. */
  readonly usedRingU32: number;
  /** Byte offset of avail_event (atomic). */
  readonly availEventOff: number;

  /** Byte sizes of the three areas (spec §6.1). */
  readonly descBytes: number;
  readonly availBytes: number;
  readonly usedBytes: number;

  constructor(q: QueueAddresses) {
    const { size, desc, avail, used } = q;
    this.size = size;
    this.mask = size - 1;
    this.desc = desc;
    this.avail = avail;
    this.used = used;
    this.descU32 = desc / 4;
    this.descU16 = desc / 2;
    this.availFlagsOff = avail + VIRTQ_AVAIL_FLAGS;
    this.availIdxOff = avail + VIRTQ_AVAIL_IDX;
    this.availRingU16 = (avail + VIRTQ_AVAIL_RING) / 2;
    this.usedEventOff = avail + usedEventOffset(size);
    this.usedFlagsOff = used + VIRTQ_USED_FLAGS;
    this.usedIdxOff = used + VIRTQ_USED_IDX;
    this.usedRingU32 = (used + VIRTQ_USED_RING) / 4;
    this.availEventOff = used + availEventOffset(size);
    this.descBytes = descTableSize(size);
    this.availBytes = availRingSize(size);
    this.usedBytes = usedRingSize(size);
  }
}

/**
 * A contiguous placement of the three rings from `base` (each area aligned as §6.1 requires,
 * used ring rounded up to 4). For tests, mocks and benches; real front-ends place rings with their
 * allocator (spec §5).
 */
export function packedRingAddresses(size: number, base: number): QueueAddresses {
  const desc = base;
  const avail = desc + descTableSize(size);
  const used = Math.ceil((avail + availRingSize(size)) / 4) * 4;
  return { size, desc, avail, used };
}

/** Total bytes {@link packedRingAddresses} occupies. */
export function packedRingBytes(size: number): number {
  const q = packedRingAddresses(size, 0);
  return q.used + usedRingSize(size);
}
