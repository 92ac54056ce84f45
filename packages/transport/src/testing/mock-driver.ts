/**
 * MockDriver: a test double that plays the driver side of one split virtqueue by writing raw
 * descriptors, avail entries and `avail.idx` into the same memory a DeviceQueue reads (mock the
 * other side, not the memory). Independent of DriverQueue on purpose, so device-side
 * tests do not depend on the driver engine. It can also write anything at all — the hostile-ring
 * generator and the §6.3 conformance cases use the raw setters.
 *
 * Not for production: no validation of the device's used entries beyond what tests ask for.
 */
import {
  VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_SIZE,
} from 'virtio-spec-types';
import type { MemoryView } from '../ring/memory.js';
import { SplitRingLayout, type QueueAddresses } from '../ring/ring-layout.js';

/** One buffer of a chain the mock posts. */
export interface MockSegment {
  addr: number;
  len: number;
  /** Device-writable. */
  write?: boolean;
}

/** A used element as read back by the mock. */
export interface MockUsed {
  id: number;
  len: number;
}

export class MockDriver {
  readonly mem: MemoryView;
  readonly layout: SplitRingLayout;
  /** avail.idx the mock will publish next (free-running u16). */
  availIdx = 0;
  /** used.idx consumed so far by readUsed(). */
  lastUsed = 0;
  /** Descriptor indices in use, by head: the indices of its chain. */
  readonly chains = new Map<number, number[]>();
  private readonly busy: Uint8Array;

  constructor(mem: MemoryView, q: QueueAddresses) {
    this.mem = mem;
    this.layout = new SplitRingLayout(q);
    this.busy = new Uint8Array(q.size);
  }

  /** Raw descriptor write at table index `i` (plain stores). */
  writeDesc(i: number, addr: number, len: number, flags: number, next: number): void {
    this.writeDescAt(this.layout.desc + VIRTQ_DESC_SIZE * i, addr, len, flags, next);
  }

  /** Raw descriptor write at byte address `at` (e.g. inside an indirect table; any alignment). */
  writeDescAt(at: number, addr: number, len: number, flags: number, next: number): void {
    const u8 = this.mem.u8;
    const put32 = (off: number, v: number) => {
      for (let k = 0; k < 4; k++) u8[off + k] = (v >>> (8 * k)) & 0xff;
    };
    put32(at, addr >>> 0);
    put32(at + 4, Math.floor(addr / 4294967296));
    put32(at + 8, len >>> 0);
    put32(at + 12, ((flags & 0xffff) | ((next & 0xffff) << 16)) >>> 0);
  }

  /** Raw descriptor write with the address given as two u32 halves (for addresses ≥ 2^53). */
  writeDescRaw(i: number, addrLow: number, addrHigh: number, len: number, flags: number, next: number): void {
    const w = this.layout.descU32 + 4 * i;
    this.mem.u32[w] = addrLow >>> 0;
    this.mem.u32[w + 1] = addrHigh >>> 0;
    this.mem.u32[w + 2] = len >>> 0;
    this.mem.u32[w + 3] = ((flags & 0xffff) | ((next & 0xffff) << 16)) >>> 0;
  }

  /**
   * Post a well-formed chain in free descriptors (lowest first), add it to the avail ring (not
   * published). Returns the head, or -1 when descriptors are short.
   */
  addChain(segs: readonly MockSegment[]): number {
    const idx: number[] = [];
    for (let i = 0; i < this.layout.size && idx.length < segs.length; i++) if (this.busy[i] === 0) idx.push(i);
    if (idx.length < segs.length || segs.length === 0) return -1;
    for (let k = 0; k < segs.length; k++) {
      const s = segs[k];
      const last = k === segs.length - 1;
      this.writeDesc(idx[k], s.addr, s.len, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : idx[k + 1]);
      this.busy[idx[k]] = 1;
    }
    this.chains.set(idx[0], idx);
    this.makeAvail(idx[0]);
    return idx[0];
  }

  /**
   * Post a chain through an indirect table written at `table` (4-aligned, 16·segs.length bytes),
   * using one ring descriptor. Returns the head or -1.
   */
  addIndirect(segs: readonly MockSegment[], table: number): number {
    let head = -1;
    for (let i = 0; i < this.layout.size; i++) if (this.busy[i] === 0) { head = i; break; }
    if (head < 0 || segs.length === 0) return -1;
    for (let k = 0; k < segs.length; k++) {
      const s = segs[k];
      const last = k === segs.length - 1;
      this.writeDescAt(table + VIRTQ_DESC_SIZE * k, s.addr, s.len, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : k + 1);
    }
    this.writeDesc(head, table, VIRTQ_DESC_SIZE * segs.length, VIRTQ_DESC_F_INDIRECT, 0);
    this.busy[head] = 1;
    this.chains.set(head, [head]);
    this.makeAvail(head);
    return head;
  }

  /** Write `head` into the next avail slot (plain store; publish() makes it visible). */
  makeAvail(head: number): void {
    this.mem.u16[this.layout.availRingU16 + (this.availIdx & this.layout.mask)] = head & 0xffff;
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Release-store avail.idx := availIdx. */
  publish(): void {
    this.mem.store16(this.layout.availIdxOff, this.availIdx);
  }

  /** Raw avail.idx store (hostile jumps); also moves the mock's own counter. */
  setAvailIdx(v: number): void {
    this.availIdx = v & 0xffff;
    this.mem.store16(this.layout.availIdxOff, this.availIdx);
  }

  /** Raw avail ring entry store at slot `slot`. */
  setAvailEntry(slot: number, head: number): void {
    this.mem.u16[this.layout.availRingU16 + (slot & this.layout.mask)] = head & 0xffff;
  }

  setAvailFlags(v: number): void {
    this.mem.store16(this.layout.availFlagsOff, v);
  }

  setUsedEvent(v: number): void {
    this.mem.store16(this.layout.usedEventOff, v & 0xffff);
  }

  /** Current used.idx (acquire). */
  usedIdx(): number {
    return this.mem.load16(this.layout.usedIdxOff);
  }

  usedFlags(): number {
    return this.mem.load16(this.layout.usedFlagsOff);
  }

  availEvent(): number {
    return this.mem.load16(this.layout.availEventOff);
  }

  /** Used element in slot `slot`. */
  usedElem(slot: number): MockUsed {
    const w = this.layout.usedRingU32 + 2 * (slot & this.layout.mask);
    return { id: this.mem.u32[w], len: this.mem.u32[w + 1] };
  }

  /** Used elements published since the last call; frees their descriptors (trusting the device). */
  readUsed(): MockUsed[] {
    const end = this.usedIdx();
    const out: MockUsed[] = [];
    while (this.lastUsed !== end) {
      const e = this.usedElem(this.lastUsed);
      out.push(e);
      const idx = this.chains.get(e.id);
      if (idx) {
        for (const i of idx) this.busy[i] = 0;
        this.chains.delete(e.id);
      }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}
