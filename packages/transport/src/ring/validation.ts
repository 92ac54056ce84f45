/**
 * Pure predicates of split-virtqueue validation (spec §5.2, §6.1, §6.2), shared by the device
 * queue, the driver queue, the mocks and the tests. Nothing here touches memory.
 *
 * Overflow: addresses are numbers < 2^53 (a u64 ≥ 2^53 arrives as +Infinity, see
 * `MemoryView.load64`) and lengths are u32. Every range test is written as
 * `addr >= start && len <= end - addr`, where `end − addr` is exact, so no sum is ever formed
 * that could round.
 */
import { VIRTQ_DESC_ALIGN, VIRTQ_AVAIL_ALIGN, VIRTQ_USED_ALIGN, descTableSize, availRingSize, usedRingSize } from 'virtio-spec-types';
import { ArgumentError, RingError, VshmErrorCode } from '../errors.js';
import type { QueueAddresses } from './ring-layout.js';

/**
 * Codes of the RingErrors this engine raises: the §6 subset of the one code table (errors.ts,
 * where each code's section and meaning are documented).
 */
export const RingErrorCode = {
  QUEUE_SIZE: VshmErrorCode.QUEUE_SIZE,
  RING_ALIGN: VshmErrorCode.RING_ALIGN,
  RING_BOUNDS: VshmErrorCode.RING_BOUNDS,
  AVAIL_JUMP: VshmErrorCode.AVAIL_JUMP,
  DESC_INDEX: VshmErrorCode.DESC_INDEX,
  DESC_LOOP: VshmErrorCode.DESC_LOOP,
  DESC_BOUNDS: VshmErrorCode.DESC_BOUNDS,
  DESC_WRITE_PERM: VshmErrorCode.DESC_WRITE_PERM,
  DESC_OVERFLOW: VshmErrorCode.DESC_OVERFLOW,
  DESC_ORDER: VshmErrorCode.DESC_ORDER,
  INDIRECT: VshmErrorCode.INDIRECT,
  HEAD_IN_FLIGHT: VshmErrorCode.HEAD_IN_FLIGHT,
  USED_JUMP: VshmErrorCode.USED_JUMP,
  USED_ID: VshmErrorCode.USED_ID,
  USED_LEN: VshmErrorCode.USED_LEN,
} as const;

export type RingErrorCodeValue = (typeof RingErrorCode)[keyof typeof RingErrorCode];

/**
 * Whether [addr, addr + len) lies inside [start, end). `addr` itself must be inside, also for
 * `len` 0 (an empty range at `end` belongs to the next section). NaN and ±Infinity fail.
 */
export function rangeInside(addr: number, len: number, start: number, end: number): boolean {
  return addr >= start && addr < end && len <= end - addr;
}

/**
 * Whether the u64 sum of a descriptor's address (as its two u32 halves) and its u32 length wraps
 * past 2^64 — the "overflowing addr + len" case of §6.3.4 and checklist item 38.
 */
export function u64AddOverflows(addrLow: number, addrHigh: number, len: number): boolean {
  return addrHigh === 0xffffffff && addrLow + len > 0xffffffff;
}

/** Options of {@link createAccessPolicy}. */
export interface AccessPolicyOptions {
  /** RW: bytes of the R/W section (may be 0). */
  rwSize: number;
  /** OUT: bytes of each output section (0: Linux-compatible layout, §5.1). */
  outputSectionSize: number;
  /** N: number of output sections. Default 2 (a virtio link has exactly two peers, §4.1). */
  maxPeers?: number;
  /** The peer whose accesses this policy describes (the BE is peer 0). */
  ownPeer: number;
  /**
   * §5.2 enforced isolation: device-readable memory (descriptor tables, available rings,
   * indirect tables, readable buffers) only in the partner's output section, device-writable
   * memory (used rings, writable buffers) only in the own one. Needs OUT ≠ 0. Default false.
   */
  enforceIsolation?: boolean;
}

/**
 * Which regions a peer may read and write (spec §6.2), as pure predicates over virtio addresses.
 * Every range must lie within ONE section; ranges crossing a section boundary are refused even if
 * both sections are accessible (a later protection change of one section must not let a buffer
 * reach into another).
 */
export class AccessPolicy {
  readonly rwSize: number;
  readonly outputSectionSize: number;
  readonly maxPeers: number;
  readonly ownPeer: number;
  readonly enforceIsolation: boolean;
  /** RW + N·OUT: one past the last readable address. */
  readonly windowSize: number;
  /** The own output section [ownStart, ownEnd). */
  readonly ownStart: number;
  readonly ownEnd: number;
  /** The partner's output section (partner = 1 − own, §4.1), used by enforced isolation. */
  readonly partnerStart: number;
  readonly partnerEnd: number;

  constructor(o: AccessPolicyOptions) {
    const maxPeers = o.maxPeers ?? 2;
    for (const [name, v] of [['rwSize', o.rwSize], ['outputSectionSize', o.outputSectionSize], ['maxPeers', maxPeers], ['ownPeer', o.ownPeer]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new ArgumentError(`AccessPolicy: ${name} must be a safe integer ≥ 0, got ${v}`);
    }
    if (maxPeers < 1 || o.ownPeer >= maxPeers) throw new ArgumentError(`AccessPolicy: ownPeer ${o.ownPeer} not below maxPeers ${maxPeers}`);
    const isolation = o.enforceIsolation ?? false;
    if (isolation && (o.outputSectionSize === 0 || maxPeers < 2)) {
      throw new ArgumentError('AccessPolicy: enforceIsolation needs output sections (OUT ≠ 0) and two peers (§5.2)');
    }
    this.rwSize = o.rwSize;
    this.outputSectionSize = o.outputSectionSize;
    this.maxPeers = maxPeers;
    this.ownPeer = o.ownPeer;
    this.enforceIsolation = isolation;
    this.windowSize = o.rwSize + maxPeers * o.outputSectionSize;
    if (!Number.isSafeInteger(this.windowSize)) throw new ArgumentError('AccessPolicy: window size beyond 2^53');
    this.ownStart = o.rwSize + o.ownPeer * o.outputSectionSize;
    this.ownEnd = this.ownStart + o.outputSectionSize;
    const partner = maxPeers >= 2 ? 1 - Math.min(o.ownPeer, 1) : o.ownPeer;
    this.partnerStart = o.rwSize + partner * o.outputSectionSize;
    this.partnerEnd = this.partnerStart + o.outputSectionSize;
  }

  /**
   * Whether [addr, addr + len) lies inside one section of the window (R/W or any output
   * section), ignoring permissions and isolation. `len` 0 counts as inside when addr is.
   */
  inOneSection(addr: number, len: number): boolean {
    const rw = this.rwSize;
    if (addr < rw) return len <= rw - addr && addr >= 0;
    const out = this.outputSectionSize;
    if (out === 0 || !(addr < this.windowSize)) return false;
    const k = Math.floor((addr - rw) / out);
    return len <= rw + (k + 1) * out - addr;
  }

  /** §6.2: whether this peer may read all of [addr, addr + len). */
  readable(addr: number, len: number): boolean {
    if (this.enforceIsolation) return rangeInside(addr, len, this.partnerStart, this.partnerEnd);
    return this.inOneSection(addr, len);
  }

  /** §6.2: whether this peer may write all of [addr, addr + len): the R/W section or its own output section. */
  writable(addr: number, len: number): boolean {
    if (this.enforceIsolation) return rangeInside(addr, len, this.ownStart, this.ownEnd);
    if (rangeInside(addr, len, 0, this.rwSize)) return true;
    return this.outputSectionSize !== 0 && rangeInside(addr, len, this.ownStart, this.ownEnd);
  }

  /** Whether [addr, addr + len) lies in the own output section (the BE zeroes a used ring there, §5.2). */
  inOwnSection(addr: number, len: number): boolean {
    return this.outputSectionSize !== 0 && rangeInside(addr, len, this.ownStart, this.ownEnd);
  }
}

/** Build the {@link AccessPolicy} of a peer (spec §6.2). */
export function createAccessPolicy(o: AccessPolicyOptions): AccessPolicy {
  return new AccessPolicy(o);
}

/**
 * Enable-time validation (spec §6.1, and §5.2 when isolation is enforced): queue size a power of
 * two in 1 … `offeredMax`; descriptor table (16·n, 16-aligned) and available ring (6 + 2·n,
 * 2-aligned) readable; used ring (6 + 8·n, 4-aligned) writable; each inside one section.
 * Throws RingError; the BE then sets DEVICE_NEEDS_RESET (§6.3, last paragraph).
 */
export function checkQueueConfig(q: QueueAddresses, offeredMax: number, policy: AccessPolicy): void {
  const { size, desc, avail, used } = q;
  if (!Number.isInteger(size) || size < 1 || size > offeredMax || (size & (size - 1)) !== 0) {
    throw new RingError(RingErrorCode.QUEUE_SIZE, '6.1', `queue size ${size} is not a power of two in 1…${offeredMax}`);
  }
  for (const [name, addr, align] of [['desc', desc, VIRTQ_DESC_ALIGN], ['avail', avail, VIRTQ_AVAIL_ALIGN], ['used', used, VIRTQ_USED_ALIGN]] as const) {
    if (!Number.isSafeInteger(addr) || addr < 0) {
      throw new RingError(RingErrorCode.RING_BOUNDS, '6.1', `${name} ring address ${addr} is not a valid offset`);
    }
    if (addr % align !== 0) {
      throw new RingError(RingErrorCode.RING_ALIGN, '6.1', `${name} ring address 0x${addr.toString(16)} is not ${align}-aligned`);
    }
  }
  if (!policy.readable(desc, descTableSize(size))) {
    throw new RingError(RingErrorCode.RING_BOUNDS, '6.1', `descriptor table [0x${desc.toString(16)}, +${descTableSize(size)}) is not inside one readable section`);
  }
  if (!policy.readable(avail, availRingSize(size))) {
    throw new RingError(RingErrorCode.RING_BOUNDS, '6.1', `available ring [0x${avail.toString(16)}, +${availRingSize(size)}) is not inside one readable section`);
  }
  if (!policy.writable(used, usedRingSize(size))) {
    throw new RingError(RingErrorCode.RING_BOUNDS, '6.1', `used ring [0x${used.toString(16)}, +${usedRingSize(size)}) is not inside one writable section`);
  }
}
