/**
 * The virtio-over-ivshmem header at offset 0 of the R/W section (spec §4.2): the one file that
 * owns its wire format. Both the back-end (writer of most fields) and the front-end (writer by
 * transactions, §4.3) use these offsets and the ordered accessors in {@link HeaderView};
 * test/header.test.ts pins every offset.
 */
import { TransportError } from '../errors.js';
// For its side effect: memory.js refuses a big-endian host before any view below is built.
import '../ring/memory.js';

/** `revision` u32 — written by the BE: 1. An FE refuses 0 and treats ≥ 1 as this layout. */
export const HDR_REVISION = 0x00;
/** `size` u32 — BE: 0x4C + config length rounded up to 8. */
export const HDR_SIZE = 0x04;
/** `write_transaction` u32 — FE sets to the written offset, BE clears to 0 (§4.3). */
export const HDR_WRITE_TRANSACTION = 0x08;
/** `device_features` u32 — BE: 32-bit window selected by `device_features_sel`. */
export const HDR_DEVICE_FEATURES = 0x0c;
/** `device_features_sel` u32 — txn: 0 bits 0–31, 1 bits 32–63. */
export const HDR_DEVICE_FEATURES_SEL = 0x10;
/** `driver_features` u32 — txn: window per `driver_features_sel`. */
export const HDR_DRIVER_FEATURES = 0x14;
/** `driver_features_sel` u32 — txn. */
export const HDR_DRIVER_FEATURES_SEL = 0x18;
/** `queue_sel` u32 — txn: selects the queue shown at 0x20–0x3F. */
export const HDR_QUEUE_SEL = 0x1c;
/** `queue_size` u16 — BE on select (offered max), txn (actual). 0 = absent. */
export const HDR_QUEUE_SIZE = 0x20;
/** `queue_device_vector` u16 — BE: the vector the FE rings to kick this queue. */
export const HDR_QUEUE_DEVICE_VECTOR = 0x22;
/** `queue_driver_vector` u16 — txn: the vector the BE rings for used buffers. */
export const HDR_QUEUE_DRIVER_VECTOR = 0x24;
/** `queue_enable` u16 — txn; BE on select. Linux writes it as 4 bytes (clobbering 0x28–0x29). */
export const HDR_QUEUE_ENABLE = 0x26;
/** `queue_desc` u64 — txn: descriptor table address (window offset, §4.7). */
export const HDR_QUEUE_DESC = 0x28;
/** `queue_driver` u64 — txn: available ring address. */
export const HDR_QUEUE_DRIVER = 0x30;
/** `queue_device` u64 — txn: used ring address. */
export const HDR_QUEUE_DEVICE = 0x38;
/** `config_event` u8 — BE sets bit 0, FE clears. */
export const HDR_CONFIG_EVENT = 0x40;
/** `queue_event` u8 — BE sets bit 0, FE clears. */
export const HDR_QUEUE_EVENT = 0x41;
/** reserved u16, 0. */
export const HDR_RESERVED = 0x42;
/** `device_status` u32 — txn (BE rules §4.5). */
export const HDR_DEVICE_STATUS = 0x44;
/** `config_generation` u32 — BE: odd while updating (§4.8). */
export const HDR_CONFIG_GENERATION = 0x48;
/** Start of the device configuration space. */
export const HDR_CONFIG = 0x4c;

/** Header revision this implementation writes (§4.2). */
export const HEADER_REVISION = 1;
/** Size of the header without config. */
export const HEADER_BASE_SIZE = HDR_CONFIG;

/** The honest `size` the BE publishes for a config space of `configSize` bytes (§4.2). */
export function headerSize(configSize: number): number {
  return (HEADER_BASE_SIZE + configSize + 7) & ~7;
}

/** Natural width in bytes of the header field at `offset`, or 0 if `offset` starts no field. */
export function headerFieldWidth(offset: number): 0 | 1 | 2 | 4 | 8 {
  switch (offset) {
    case HDR_QUEUE_DESC:
    case HDR_QUEUE_DRIVER:
    case HDR_QUEUE_DEVICE:
      return 8;
    case HDR_QUEUE_SIZE:
    case HDR_QUEUE_DEVICE_VECTOR:
    case HDR_QUEUE_DRIVER_VECTOR:
    case HDR_QUEUE_ENABLE:
    case HDR_RESERVED:
      return 2;
    case HDR_CONFIG_EVENT:
    case HDR_QUEUE_EVENT:
      return 1;
    default:
      return offset >= 0 && offset < HDR_CONFIG && offset % 4 === 0 ? 4 : 0;
  }
}

/**
 * Ordered access to the header at window offset 0 (the start of the R/W section, §4.2), shared by
 * both sides: every access the spec orders goes through `Atomics` on a view of the window (spec
 * Conventions), so loads are acquire and stores release; the full fence is memory.ts `fullFence`.
 * Side-specific logic lives in the subclasses: backend-header.ts (identity, queue window,
 * events) and frontend-header.ts (width-dispatched access for transactions, event clearing).
 * Offsets must be naturally aligned for their width; the 64-bit accessors use `bigint` because
 * the header's u64 fields are guest addresses (never on the per-message path).
 */
export class HeaderView {
  /** Bytes addressable through this view (BE: the header with config; FE: the R/W section). */
  readonly limit: number;
  readonly u8: Uint8Array;
  protected readonly u16: Uint16Array;
  protected readonly u32: Uint32Array;
  protected readonly u64: BigUint64Array;

  constructor(window: ArrayBuffer, limit: number) {
    if (window.byteLength < limit) {
      throw new TransportError('VSHM_ERR_HEADER_SIZE', '4.2', `R/W window of ${window.byteLength} bytes cannot hold a ${limit}-byte header`);
    }
    this.limit = limit;
    this.u8 = new Uint8Array(window, 0, limit);
    this.u16 = new Uint16Array(window, 0, limit >>> 1);
    this.u32 = new Uint32Array(window, 0, limit >>> 2);
    this.u64 = new BigUint64Array(window, 0, limit >>> 3);
  }

  load8(off: number): number {
    return Atomics.load(this.u8, off);
  }
  load16(off: number): number {
    return Atomics.load(this.u16, off >>> 1);
  }
  load32(off: number): number {
    return Atomics.load(this.u32, off >>> 2);
  }
  load64(off: number): bigint {
    return Atomics.load(this.u64, off >>> 3);
  }
  store8(off: number, v: number): void {
    Atomics.store(this.u8, off, v);
  }
  store16(off: number, v: number): void {
    Atomics.store(this.u16, off >>> 1, v);
  }
  store32(off: number, v: number): void {
    Atomics.store(this.u32, off >>> 2, v);
  }
  store64(off: number, v: bigint): void {
    Atomics.store(this.u64, off >>> 3, v);
  }
}
