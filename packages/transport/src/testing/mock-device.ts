/**
 * MockDevice: a test double that plays the device side of one split virtqueue against a
 * DriverQueue by reading avail entries and descriptors and writing used elements into the same
 * memory. Independent of DeviceQueue on purpose. It trusts the driver (walks are still
 * bounded so a test bug cannot hang: at most queue-size ring descriptors, at most 65536 entries
 * of one indirect table, and an INDIRECT inside a table is not followed) and can write anything
 * at all into the used ring — the §6.4 conformance cases use the raw setters.
 */
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_SIZE } from 'virtio-spec-types';
import type { MemoryView } from '../ring/memory.js';
import { SplitRingLayout, type QueueAddresses } from '../ring/ring-layout.js';

/** Most entries one walk reads in an indirect table: every index a u16 `next` can name. */
const MAX_TABLE_WALK = 65536;

/** A chain as the mock device sees it. */
export interface MockChain {
  head: number;
  /** Device-readable segments, [addr, len]. */
  readable: [number, number][];
  /** Device-writable segments, [addr, len]. */
  writable: [number, number][];
  /** Whether the head descriptor was INDIRECT. */
  indirect: boolean;
}

export class MockDevice {
  readonly mem: MemoryView;
  readonly layout: SplitRingLayout;
  /** Next avail slot to consume (free-running u16). */
  lastAvail = 0;
  /** used.idx the mock will publish next (free-running u16). */
  usedIdx = 0;

  constructor(mem: MemoryView, q: QueueAddresses) {
    this.mem = mem;
    this.layout = new SplitRingLayout(q);
  }

  /** Current avail.idx (acquire). */
  availIdx(): number {
    return this.mem.load16(this.layout.availIdxOff);
  }

  availFlags(): number {
    return this.mem.load16(this.layout.availFlagsOff);
  }

  usedEvent(): number {
    return this.mem.load16(this.layout.usedEventOff);
  }

  setUsedFlags(v: number): void {
    this.mem.store16(this.layout.usedFlagsOff, v);
  }

  setAvailEvent(v: number): void {
    this.mem.store16(this.layout.availEventOff, v & 0xffff);
  }

  /** The next published chain, or null. */
  popAvail(): MockChain | null {
    if (this.availIdx() === this.lastAvail) return null;
    const L = this.layout;
    const head = this.mem.u16[L.availRingU16 + (this.lastAvail & L.mask)];
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    const chain: MockChain = { head, readable: [], writable: [], indirect: false };
    let base = L.desc;
    let i = head;
    let limit = L.size;
    for (let n = 0; n < limit; n++) {
      const d = base + VIRTQ_DESC_SIZE * i;
      const addr = this.mem.load64(d);
      const len = this.mem.get32(d + 8);
      const flags = this.mem.get16(d + 12);
      const next = this.mem.get16(d + 14);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        // Followed once, from the ring: an INDIRECT inside a table ends the walk (following it
        // could go round for ever). `next` is a u16, so no walk in a table reaches more than
        // 65536 different entries, whatever `len` claims.
        if (chain.indirect) break;
        chain.indirect = true;
        base = addr;
        i = 0;
        limit = Math.min(Math.floor(len / VIRTQ_DESC_SIZE), MAX_TABLE_WALK);
        n = -1;
        continue;
      }
      (flags & VIRTQ_DESC_F_WRITE ? chain.writable : chain.readable).push([addr, len]);
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      i = next;
    }
    return chain;
  }

  /** Copy the readable bytes of `chain`. */
  readAll(chain: MockChain): Uint8Array {
    const total = chain.readable.reduce((s, [, l]) => s + l, 0);
    const out = new Uint8Array(total);
    let pos = 0;
    for (const [a, l] of chain.readable) {
      out.set(this.mem.u8.subarray(a, a + l), pos);
      pos += l;
    }
    return out;
  }

  /** Write `data` into the writable segments of `chain`; returns bytes written. */
  writeAll(chain: MockChain, data: Uint8Array): number {
    let pos = 0;
    for (const [a, l] of chain.writable) {
      const n = Math.min(l, data.length - pos);
      this.mem.u8.set(data.subarray(pos, pos + n), a);
      pos += n;
    }
    return pos;
  }

  /** Write a used element into the next slot (not yet published). */
  pushUsed(id: number, len: number): void {
    this.writeUsedElem(this.usedIdx, id, len);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
  }

  /** Raw used element store at slot `slot` (mod size). */
  writeUsedElem(slot: number, id: number, len: number): void {
    const w = this.layout.usedRingU32 + 2 * (slot & this.layout.mask);
    this.mem.u32[w] = id >>> 0;
    this.mem.u32[w + 1] = len >>> 0;
  }

  /** Release-store used.idx := usedIdx. */
  publish(): void {
    this.mem.store16(this.layout.usedIdxOff, this.usedIdx);
  }

  /** Raw used.idx store (hostile jumps); also moves the mock's own counter. */
  setUsedIdx(v: number): void {
    this.usedIdx = v & 0xffff;
    this.publish();
  }
}
