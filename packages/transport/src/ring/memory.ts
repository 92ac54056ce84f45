/**
 * MemoryView: the byte region a split virtqueue lives in. The queue engine takes one
 * and owns neither the memory nor its lifetime: `ivshmem/` wraps the mapped window (virtio
 * addresses = offsets into it, spec §4.7), unit tests wrap `new ArrayBuffer(65536)`.
 *
 * Access discipline (spec "Conventions", ordering terms):
 * - Fields whose ordering the protocol relies on — `avail.idx`, `used.idx`, `avail.flags`,
 *   `used.flags`, `used_event`, `avail_event` — are accessed only through the acquire/release
 *   helpers below, which are sequentially consistent `Atomics` operations.
 * - Everything else (descriptors, ring entries, used elements, buffer bytes) uses the plain
 *   typed-array fields `u8`/`u16`/`u32`; those accesses are ordered by the atomic index access that
 *   publishes (release) or discovers (acquire) them.
 * - No DataView and no BigInt: the hot path is typed-array index math only. Typed arrays use the
 *   platform byte order, so this module refuses a big-endian host (the wire is little-endian).
 *
 * Alignment: `load16`/`u16` need an even offset, `load32`/`u32` and `load64` a multiple of 4. The
 * engine only uses them at offsets validated at enable time (spec §6.1 alignments) or fixed by the
 * ring format; unaligned indirect tables go through {@link MemoryView.load32Unaligned}.
 */
import { endianness } from 'node:os';
import { ArgumentError, TransportError } from '../errors.js';

// The one byte-order check for every typed-array view over shared memory (rings here, the §4.2
// header in header.ts, which imports this module): typed arrays use the host's byte order and
// the wire is little-endian (spec Conventions), so a big-endian host would misread every field.
// Refusing at load time fails before any view exists.
if (endianness() !== 'LE') {
  throw new TransportError('VSHM_ERR_ENDIAN', '', 'vshm needs a little-endian host (shared memory is little-endian)');
}

/** Private word used only by {@link fullFence}: never shared, so fencing writes nothing a peer sees. */
const fenceWord = new Int32Array(1);

/**
 * Full fence (spec Conventions), the one implementation for rings and header alike.
 * Implemented as a sequentially consistent read-modify-write on a private word: on x86-64 V8
 * emits a `lock`-prefixed instruction (`lock cmpxchg`), which orders every earlier load and store
 * against every later one — a full fence. On ARM64 it is a load-acquire/store-release exclusive
 * pair; together with the engine's own ordered accesses being seq-cst Atomics (`stlr`/`ldar`,
 * which ARMv8 never reorders store→load, RCsc), the pattern the protocol needs — "release-store
 * index, fence, load the peer's flag/event word" (spec §4.9) — cannot be reordered. The spec's
 * conventions accept seq-cst atomics as a full fence.
 */
export function fullFence(): void {
  Atomics.compareExchange(fenceWord, 0, 0, 0);
}

/** `load64` result for a value ≥ 2^53: not representable as a safe integer, so never a valid address. */
export const INVALID_U64 = Number.POSITIVE_INFINITY;

const TWO_POW_32 = 4294967296;
/** High word limit for a u64 < 2^53. */
const SAFE_HIGH_LIMIT = 0x200000;
/** Largest region: offsets must fit the 32-bit index arithmetic. */
const MAX_LENGTH = TWO_POW_32;

export class MemoryView {
  /** The wrapped buffer. */
  readonly buffer: ArrayBuffer;
  /** Bytes addressable through this view. Offsets are in [0, length). */
  readonly length: number;
  /** Bytes, plain access. */
  readonly u8: Uint8Array;
  /** Little-endian u16 words, index = offset / 2. Plain access. */
  readonly u16: Uint16Array;
  /** Little-endian u32 words, index = offset / 4. Plain access. */
  readonly u32: Uint32Array;
  /**
   * @param buffer the region; a `SharedArrayBuffer` also works. Its size need not be a multiple
   *   of 4: the u16/u32 views cover the largest whole-word prefix.
   */
  constructor(buffer: ArrayBuffer | SharedArrayBuffer) {
    if (!(buffer instanceof ArrayBuffer) && !(typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer)) {
      throw new ArgumentError('MemoryView: expected an ArrayBuffer');
    }
    if (buffer.byteLength > MAX_LENGTH) {
      // Offsets are turned into word indices with `>>> 1` / `>>> 2`, which are 32-bit operations.
      throw new ArgumentError(`MemoryView: regions above 4 GiB are not supported (got ${buffer.byteLength} bytes)`);
    }
    this.buffer = buffer as ArrayBuffer;
    this.length = buffer.byteLength;
    this.u8 = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer, 0, this.length >>> 1);
    this.u32 = new Uint32Array(buffer, 0, this.length >>> 2);
  }

  /** Acquire load of the u16 at even offset `off`. */
  load16(off: number): number {
    return Atomics.load(this.u16, off >>> 1);
  }

  /** Release store of the u16 at even offset `off`. */
  store16(off: number, value: number): void {
    Atomics.store(this.u16, off >>> 1, value);
  }

  /** Acquire load of the u32 at offset `off` (multiple of 4). */
  load32(off: number): number {
    return Atomics.load(this.u32, off >>> 2);
  }

  /** Release store of the u32 at offset `off` (multiple of 4). */
  store32(off: number, value: number): void {
    Atomics.store(this.u32, off >>> 2, value);
  }

  /** Full fence: {@link fullFence} (a method so queue code and tests can reach it through the view). */
  fence(): void {
    fullFence();
  }

  /** Plain u16 load (offset even). */
  get16(off: number): number {
    return this.u16[off >>> 1];
  }

  /** Plain u32 load (offset multiple of 4). */
  get32(off: number): number {
    return this.u32[off >>> 2];
  }

  /** Plain u32 load at any offset (byte-wise, for unaligned indirect tables). `off + 4 ≤ length`. */
  load32Unaligned(off: number): number {
    const b = this.u8;
    return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
  }

  /**
   * Plain u64 load (offset multiple of 4) as a number. Values ≥ 2^53 return {@link INVALID_U64}
   * (+Infinity), which fails every bounds check — a large value is never silently truncated.
   */
  load64(off: number): number {
    const i = off >>> 2;
    const hi = this.u32[i + 1];
    return hi < SAFE_HIGH_LIMIT ? hi * TWO_POW_32 + this.u32[i] : INVALID_U64;
  }

  /** Plain u64 store of a safe integer `value` (offset multiple of 4). */
  store64(off: number, value: number): void {
    const i = off >>> 2;
    this.u32[i] = value >>> 0;
    this.u32[i + 1] = Math.floor(value / TWO_POW_32);
  }

  /** A Uint8Array view of [off, off + len) sharing the memory (zero-copy). Bounds-checked. */
  bytes(off: number, len: number): Uint8Array {
    if (!(off >= 0 && len >= 0 && len <= this.length - off)) {
      throw new ArgumentError(`MemoryView.bytes: [${off}, ${off}+${len}) outside [0, ${this.length})`);
    }
    return new Uint8Array(this.buffer, off, len);
  }

  /** Zero [off, off + len). Bounds-checked. */
  zero(off: number, len: number): void {
    if (!(off >= 0 && len >= 0 && len <= this.length - off)) {
      throw new ArgumentError(`MemoryView.zero: [${off}, ${off}+${len}) outside [0, ${this.length})`);
    }
    this.u8.fill(0, off, off + len);
  }
}
